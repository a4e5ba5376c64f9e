//! rename in every form.

mod common;

use common::*;
use rumpkern::Errno;

#[test]
fn simple_and_same_directory() {
    let fs = Fs::new("");
    let f = fs.root.create(b"a", 0o644, &root()).unwrap();
    f.write(b"content", 0, 0, &root()).unwrap();
    fs.root.rename(b"a", &fs.root, b"b", &root()).unwrap();
    assert_eq!(fs.root.lookup(b"a", &root()).unwrap_err(), Errno::ENOENT);
    let b = fs.root.lookup(b"b", &root()).unwrap();
    assert_eq!(b, f);
    assert_eq!(read_all(&b), b"content");
    assert_eq!(names(&fs.root), vec!["b"]);
    assert_eq!(
        fs.root.rename(b"missing", &fs.root, b"x", &root()),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        fs.root.rename(b".", &fs.root, b"x", &root()),
        Err(Errno::EINVAL)
    );
}

#[test]
fn file_over_file() {
    let fs = Fs::new("");
    let a = fs.root.create(b"a", 0o644, &root()).unwrap();
    a.write(b"A", 0, 0, &root()).unwrap();
    let b = fs.root.create(b"b", 0o644, &root()).unwrap();
    b.write(b"B", 0, 0, &root()).unwrap();
    let nodes = fs.tm.node_count();
    fs.root.rename(b"a", &fs.root, b"b", &root()).unwrap();
    assert_eq!(names(&fs.root), vec!["b"]);
    assert_eq!(read_all(&fs.root.lookup(b"b", &root()).unwrap()), b"A");
    // The replaced file lives on while referenced.
    assert_eq!(b.getattr().unwrap().nlink, 0);
    assert_eq!(read_all(&b), b"B");
    assert_eq!(fs.tm.node_count(), nodes);
    drop(b);
    assert_eq!(fs.tm.node_count(), nodes - 1);
    // A replaced file with another link survives.
    let c = fs.root.create(b"c", 0o644, &root()).unwrap();
    fs.root.link(&c, b"c2", &root()).unwrap();
    drop(c);
    fs.root.rename(b"b", &fs.root, b"c", &root()).unwrap();
    let c2 = fs.root.lookup(b"c2", &root()).unwrap();
    assert_eq!(c2.getattr().unwrap().nlink, 1);
    drop(a);
}

#[test]
fn dir_over_empty_dir_and_not_empty() {
    let fs = Fs::new("");
    let src = fs.root.mkdir(b"src", 0o755, &root()).unwrap();
    src.create(b"inside", 0o644, &root()).unwrap();
    let dst = fs.root.mkdir(b"dst", 0o755, &root()).unwrap();
    assert_eq!(fs.root.getattr().unwrap().nlink, 4);
    fs.root.rename(b"src", &fs.root, b"dst", &root()).unwrap();
    assert_eq!(
        fs.root.getattr().unwrap().nlink,
        3,
        "one subdirectory fewer"
    );
    assert_eq!(dst.getattr().unwrap().nlink, 0);
    let now = fs.root.lookup(b"dst", &root()).unwrap();
    assert_eq!(now, src);
    assert_eq!(names(&now), vec!["inside"]);
    // Onto a non-empty directory.
    let full = fs.root.mkdir(b"full", 0o755, &root()).unwrap();
    full.create(b"x", 0o644, &root()).unwrap();
    let e = fs.root.mkdir(b"e", 0o755, &root()).unwrap();
    assert_eq!(
        fs.root.rename(b"e", &fs.root, b"full", &root()),
        Err(Errno::ENOTEMPTY)
    );
    assert_eq!(names(&full), vec!["x"]);
    assert!(fs.root.lookup(b"e", &root()).is_ok());
    drop(e);
}

#[test]
fn type_mismatches() {
    let fs = Fs::new("");
    fs.root.create(b"file", 0o644, &root()).unwrap();
    fs.root.mkdir(b"dir", 0o755, &root()).unwrap();
    assert_eq!(
        fs.root.rename(b"file", &fs.root, b"dir", &root()),
        Err(Errno::EISDIR)
    );
    assert_eq!(
        fs.root.rename(b"dir", &fs.root, b"file", &root()),
        Err(Errno::ENOTDIR)
    );
    let mut n = names(&fs.root);
    n.sort();
    assert_eq!(n, vec!["dir", "file"]);
}

#[test]
fn cross_directory_updates_dotdot_and_nlink() {
    let fs = Fs::new("");
    let a = fs.root.mkdir(b"a", 0o755, &root()).unwrap();
    let b = fs.root.mkdir(b"b", 0o755, &root()).unwrap();
    let m = a.mkdir(b"m", 0o755, &root()).unwrap();
    m.create(b"payload", 0o644, &root()).unwrap();
    assert_eq!(
        (a.getattr().unwrap().nlink, b.getattr().unwrap().nlink),
        (3, 2)
    );
    a.rename(b"m", &b, b"moved", &root()).unwrap();
    assert_eq!(
        (a.getattr().unwrap().nlink, b.getattr().unwrap().nlink),
        (2, 3)
    );
    assert_eq!(m.lookup(b"..", &root()).unwrap(), b);
    let l = list(&m);
    assert_eq!(l[1].1, b.ino(), "readdir's .. follows the move");
    assert_eq!(b.lookup(b"moved", &root()).unwrap(), m);
    assert!(m.lookup(b"payload", &root()).is_ok());
    // A file across directories: no nlink change on the dirs.
    let f = a.create(b"f", 0o644, &root()).unwrap();
    a.rename(b"f", &b, b"f", &root()).unwrap();
    assert_eq!(
        (a.getattr().unwrap().nlink, b.getattr().unwrap().nlink),
        (2, 3)
    );
    assert_eq!(b.lookup(b"f", &root()).unwrap(), f);
    // A directory over an empty directory in another parent.
    let t = a.mkdir(b"t", 0o755, &root()).unwrap();
    assert_eq!(a.getattr().unwrap().nlink, 3);
    b.rename(b"moved", &a, b"t", &root()).unwrap();
    assert_eq!(
        (a.getattr().unwrap().nlink, b.getattr().unwrap().nlink),
        (3, 2)
    );
    assert_eq!(t.getattr().unwrap().nlink, 0);
    assert_eq!(m.lookup(b"..", &root()).unwrap(), a);
}

#[test]
fn onto_itself_and_hard_link_is_noop() {
    let fs = Fs::new("");
    let f = fs.root.create(b"f", 0o644, &root()).unwrap();
    fs.root.rename(b"f", &fs.root, b"f", &root()).unwrap();
    assert_eq!(names(&fs.root), vec!["f"]);
    fs.root.link(&f, b"g", &root()).unwrap();
    let ctime = f.getattr().unwrap().ctime;
    sleep_ms(5);
    fs.root.rename(b"f", &fs.root, b"g", &root()).unwrap();
    let mut n = names(&fs.root);
    n.sort();
    assert_eq!(n, vec!["f", "g"], "both links stay");
    assert_eq!(f.getattr().unwrap().nlink, 2);
    assert_eq!(f.getattr().unwrap().ctime, ctime, "nothing changed");
    let d = fs.root.mkdir(b"d", 0o755, &root()).unwrap();
    fs.root.rename(b"d", &fs.root, b"d", &root()).unwrap();
    assert_eq!(d.getattr().unwrap().nlink, 2);
}

#[test]
fn directory_into_own_subtree() {
    let fs = Fs::new("");
    let a = fs.root.mkdir(b"a", 0o755, &root()).unwrap();
    let b = a.mkdir(b"b", 0o755, &root()).unwrap();
    let c = b.mkdir(b"c", 0o755, &root()).unwrap();
    assert_eq!(fs.root.rename(b"a", &c, b"x", &root()), Err(Errno::EINVAL));
    assert_eq!(fs.root.rename(b"a", &a, b"x", &root()), Err(Errno::EINVAL));
    assert_eq!(a.rename(b"b", &c, b"x", &root()), Err(Errno::EINVAL));
    // Moving up is fine.
    b.rename(b"c", &fs.root, b"c", &root()).unwrap();
    assert_eq!(c.lookup(b"..", &root()).unwrap(), fs.root);
    assert_eq!(fs.root.getattr().unwrap().nlink, 4);
    assert_eq!(b.getattr().unwrap().nlink, 2);
}

#[test]
fn into_removed_directory() {
    let fs = Fs::new("");
    let gone = fs.root.mkdir(b"gone", 0o755, &root()).unwrap();
    fs.root.create(b"f", 0o644, &root()).unwrap();
    fs.root.rmdir(b"gone", &root()).unwrap();
    assert_eq!(
        fs.root.rename(b"f", &gone, b"f", &root()),
        Err(Errno::ENOENT)
    );
    assert!(fs.root.lookup(b"f", &root()).is_ok());
}

#[test]
fn across_mounts() {
    let a = Fs::new("");
    let b = Fs::new("");
    a.root.create(b"f", 0o644, &root()).unwrap();
    assert_eq!(
        a.root.rename(b"f", &b.root, b"f", &root()),
        Err(Errno::EXDEV)
    );
}

#[test]
fn no_leaks_after_renames() {
    let fs = Fs::new("");
    for i in 0..20 {
        fs.root
            .create(format!("f{i}").as_bytes(), 0o644, &root())
            .unwrap();
    }
    for i in 0..19 {
        fs.root
            .rename(
                format!("f{i}").as_bytes(),
                &fs.root,
                format!("f{}", i + 1).as_bytes(),
                &root(),
            )
            .unwrap();
    }
    assert_eq!(names(&fs.root), vec!["f19"]);
    assert_eq!(fs.tm.node_count(), 2);
    assert_eq!(
        fs.mp.vnode_counts().1,
        1,
        "only the root vnode is referenced"
    );
    fs.unmount();
}
