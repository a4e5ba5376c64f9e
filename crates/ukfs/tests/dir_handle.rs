//! ukfs directory handles ([`ukfs::Dir`], the `*at` calls) against tmpfs:
//! relative paths start at the handle's directory (not the cwd), absolute
//! ones at the root, `..` climbs from the handle, every call gives the same
//! result and the same error as the path call it stands for, permissions
//! are checked per call, and handles keep nothing referenced once dropped.

use rumpkern::types::{oflags, SetTime, Timespec};
use rumpkern::{Cred, Errno, MountArgs, VType};
use ukfs::Ukfs;

fn tmpfs() -> Ukfs {
    rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    Ukfs::mount("tmpfs", None, &MountArgs::default()).expect("mount tmpfs")
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[test]
fn relative_calls_start_at_the_handle() {
    let fs = tmpfs();
    fs.mkdir("/a", 0o755).unwrap();
    fs.mkdir("/a/b", 0o755).unwrap();
    fs.mkdir("/other", 0o755).unwrap();
    fs.write_file("/top", b"root file").unwrap();
    fs.chdir("/other").unwrap(); // must not matter to the handle

    let b = fs.open_dir("/a/b").unwrap();
    assert_eq!(b.metadata().unwrap().ino, fs.stat("/a/b").unwrap().ino);
    b.write_file("f", b"in b").unwrap();
    assert_eq!(fs.read_file("/a/b/f").unwrap(), b"in b");
    assert_eq!(fs.stat("/other/f"), Err(Errno::ENOENT));

    // `..` climbs from the handle; absolute paths start at the root.
    assert_eq!(b.stat("..").unwrap().ino, fs.stat("/a").unwrap().ino);
    assert_eq!(b.stat("../../top").unwrap().size, 9);
    assert_eq!(b.stat("/top").unwrap().ino, fs.stat("/top").unwrap().ino);
    assert_eq!(b.stat(".").unwrap().ino, b.metadata().unwrap().ino);

    // Paths with several components, and a handle opened from a handle.
    let a = fs.open_dir("/a").unwrap();
    assert_eq!(a.read_dir().unwrap().count(), 3); // . .. b
    let b2 = a.open_dir("b").unwrap();
    assert_eq!(b2.metadata().unwrap().ino, b.metadata().unwrap().ino);
    assert_eq!(a.lstat("b/f").unwrap().size, 4);
    assert_eq!(
        sorted(b2.readdir().unwrap().into_iter().map(|e| e.name).collect()),
        [&b"."[..], b"..", b"f"]
    );

    // Names: mkdir, symlink, link, mknod, rename-free removal.
    b.mkdir("sub", 0o750).unwrap();
    assert_eq!(fs.stat("/a/b/sub").unwrap().vtype, VType::Dir);
    b.symlink("f", "lf").unwrap();
    assert_eq!(b.readlink("lf").unwrap(), b"f");
    assert_eq!(b.lstat("lf").unwrap().vtype, VType::Lnk);
    assert_eq!(b.stat("lf").unwrap().vtype, VType::Reg);
    b.link("f", "hard").unwrap();
    assert_eq!(fs.stat("/a/b/hard").unwrap().nlink, 2);
    b.mknod("fifo", VType::Fifo, 0o600, 0).unwrap();
    assert_eq!(fs.lstat("/a/b/fifo").unwrap().vtype, VType::Fifo);
    b.unlink("hard").unwrap();
    b.unlink("fifo").unwrap();
    assert_eq!(fs.lstat("/a/b/hard"), Err(Errno::ENOENT));
    b.rmdir("sub").unwrap();
    assert_eq!(fs.stat("/a/b/sub"), Err(Errno::ENOENT));

    // Attributes.
    b.chmod("f", 0o600).unwrap();
    assert_eq!(fs.stat("/a/b/f").unwrap().mode & 0o7777, 0o600);
    b.lchown("lf", Some(7), Some(8)).unwrap();
    let l = fs.lstat("/a/b/lf").unwrap();
    assert_eq!((l.uid, l.gid), (7, 8));
    assert_eq!(fs.stat("/a/b/f").unwrap().uid, 0, "lchown left the target");
    let t = Timespec::new(1_234_567, 0);
    b.utimes("lf", Some(SetTime::At(t)), Some(SetTime::At(t)))
        .unwrap();
    assert_eq!(
        fs.stat("/a/b/f").unwrap().mtime,
        t,
        "utimes follows the link"
    );

    // open: O_CREAT|O_EXCL, reading back through the handle.
    let excl = oflags::O_WRONLY | oflags::O_CREAT | oflags::O_EXCL;
    b.open("new", excl, 0o644).unwrap().write_all(b"x").unwrap();
    assert_eq!(b.open("new", excl, 0o644).map(|_| ()), Err(Errno::EEXIST));
    let mut buf = [0u8; 4];
    assert_eq!(
        b.open("new", oflags::O_RDONLY, 0).unwrap().read(&mut buf),
        Ok(1)
    );
}

#[test]
fn errors_are_those_of_the_path_calls() {
    let fs = tmpfs();
    fs.mkdir("/d", 0o755).unwrap();
    fs.write_file("/d/f", b"1").unwrap();
    fs.symlink("nowhere", "/d/dangling").unwrap();
    fs.symlink("f", "/d/lf").unwrap();
    let d = fs.open_dir("/d").unwrap();

    assert_eq!(fs.open_dir("/d/f").map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(fs.open_dir("/nope").map(|_| ()), Err(Errno::ENOENT));
    assert_eq!(d.open_dir("f").map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(d.open_dir("lf").map(|_| ()), Err(Errno::ENOTDIR));
    for (rel, abs) in [
        ("f", "/d/f"),
        ("nope", "/d/nope"),
        ("dangling", "/d/dangling"),
        ("f/x", "/d/f/x"),
    ] {
        assert_eq!(d.stat(rel), fs.stat(abs), "stat {rel}");
        assert_eq!(d.lstat(rel), fs.lstat(abs), "lstat {rel}");
        assert_eq!(d.readlink(rel), fs.readlink(abs), "readlink {rel}");
    }
    assert_eq!(d.mkdir("f", 0o755), Err(Errno::EEXIST));
    assert_eq!(d.symlink("x", "f"), Err(Errno::EEXIST));
    assert_eq!(d.unlink("nope"), Err(Errno::ENOENT));
    assert_eq!(d.rmdir("f"), Err(Errno::ENOTDIR));
    assert_eq!(d.unlink("."), fs.unlink("/d/."));
    assert_eq!(d.rmdir("."), Err(Errno::EINVAL));
    assert_eq!(
        d.open("f/", oflags::O_RDONLY, 0).map(|_| ()),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(
        d.open("dangling", oflags::O_WRONLY | oflags::O_CREAT, 0o644)
            .map(|_| ()),
        Err(Errno::ENOENT)
    );

    // A handle on a directory removed meanwhile: its names are gone.
    fs.mkdir("/gone", 0o755).unwrap();
    let g = fs.open_dir("/gone").unwrap();
    fs.rmdir("/gone").unwrap();
    assert!(g.stat("x").is_err());
    assert!(g.mkdir("x", 0o755).is_err());
}

#[test]
fn permissions_are_checked_per_call() {
    let fs = tmpfs();
    fs.mkdir("/private", 0o700).unwrap();
    fs.write_file("/private/secret", b"s").unwrap();
    fs.mkdir("/listonly", 0o711).unwrap();
    fs.write_file("/listonly/f", b"f").unwrap();
    fs.set_cred(Cred::new(1000, 1000, vec![]));

    // Holding a handle needs no permission (O_PATH); using it does.
    let p = fs.open_dir("/private").unwrap();
    assert_eq!(p.stat("secret"), Err(Errno::EACCES));
    assert_eq!(p.read_dir().map(|_| ()), Err(Errno::EACCES));
    assert_eq!(p.readdir().map(|_| ()), Err(Errno::EACCES));
    assert_eq!(p.write_file("new", b"x"), Err(Errno::EACCES));
    // Search without read: names can be used, the listing cannot be read.
    let l = fs.open_dir("/listonly").unwrap();
    assert_eq!(l.stat("f").unwrap().size, 1);
    assert_eq!(l.readdir().map(|_| ()), Err(Errno::EACCES));
    assert_eq!(l.mkdir("x", 0o755), Err(Errno::EACCES));
    // Permissions changed while a handle is held apply at once.
    fs.set_cred(Cred::root());
    fs.chmod("/listonly", 0o700).unwrap();
    fs.set_cred(Cred::new(1000, 1000, vec![]));
    assert_eq!(l.stat("f"), Err(Errno::EACCES));
}

#[test]
fn handles_hold_nothing_once_dropped() {
    let fs = tmpfs();
    fs.mkdir("/a", 0o755).unwrap();
    fs.mkdir("/a/b", 0o755).unwrap();
    let mp = fs.mount_point().clone();
    let before = mp.vnode_counts().1;
    {
        let a = fs.open_dir("/a").unwrap();
        let b = a.open_dir("b").unwrap();
        let b2 = b.clone();
        b2.write_file("f", b"x").unwrap();
        let _it = b.read_dir().unwrap();
        assert!(mp.vnode_counts().1 > before);
    }
    assert_eq!(mp.vnode_counts().1, before);
    fs.unmount().unwrap();
    assert_eq!(mp.vnode_counts(), (0, 0));
}
