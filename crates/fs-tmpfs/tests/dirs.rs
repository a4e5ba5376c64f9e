//! Directories, link counts, hard links, symlinks, special nodes, readdir.

mod common;

use common::*;
use rumpkern::{DirEntry, Errno, PathConf, VType};

#[test]
fn root_defaults_and_options() {
    let fs = Fs::new("");
    let va = fs.root.getattr().unwrap();
    assert_eq!(va.vtype, VType::Dir);
    assert_eq!((va.mode, va.uid, va.gid, va.nlink), (0o1777, 0, 0, 2));
    assert_eq!(va.ino, fs_tmpfs::ROOT_INO);
    // Root's ".." is itself.
    let up = fs.root.lookup(b"..", &root()).unwrap();
    assert_eq!(up, fs.root);
    let fs2 = Fs::new("uid=1000,gid=100,mode=0755");
    let va = fs2.root.getattr().unwrap();
    assert_eq!((va.mode, va.uid, va.gid), (0o755, 1000, 100));
    assert_eq!(
        rumpkern::FsType::mount(
            &fs_tmpfs::TMPFS,
            None,
            &rumpkern::MountArgs::parse("frobnicate")
        )
        .err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(rumpkern::FsType::name(&fs_tmpfs::TMPFS), "tmpfs");
    assert!(!rumpkern::FsType::needs_device(&fs_tmpfs::TMPFS));
}

#[test]
fn mkdir_rmdir_nlink() {
    let fs = Fs::new("");
    let a = fs.root.mkdir(b"a", 0o755, &root()).unwrap();
    assert_eq!(a.getattr().unwrap().nlink, 2);
    assert_eq!(fs.root.getattr().unwrap().nlink, 3);
    let b = a.mkdir(b"b", 0o755, &root()).unwrap();
    let c = a.mkdir(b"c", 0o755, &root()).unwrap();
    assert_eq!(a.getattr().unwrap().nlink, 4, "2 + two subdirectories");
    // Files do not count.
    a.create(b"f", 0o644, &root()).unwrap();
    assert_eq!(a.getattr().unwrap().nlink, 4);
    assert_eq!(a.lookup(b"..", &root()).unwrap(), fs.root);
    assert_eq!(b.lookup(b"..", &root()).unwrap(), a);
    assert_eq!(
        fs.root.mkdir(b"a", 0o755, &root()).unwrap_err(),
        Errno::EEXIST
    );
    assert_eq!(a.create(b"b", 0o644, &root()).unwrap_err(), Errno::EEXIST);
    // rmdir: non-empty, not a dir, missing.
    assert_eq!(fs.root.rmdir(b"a", &root()), Err(Errno::ENOTEMPTY));
    assert_eq!(a.rmdir(b"f", &root()), Err(Errno::ENOTDIR));
    assert_eq!(a.rmdir(b"zz", &root()), Err(Errno::ENOENT));
    assert_eq!(a.remove(b"b", &root()), Err(Errno::EISDIR));
    a.rmdir(b"b", &root()).unwrap();
    assert_eq!(a.getattr().unwrap().nlink, 3);
    assert_eq!(b.getattr().unwrap().nlink, 0);
    // A removed directory is empty for good.
    assert_eq!(b.lookup(b"..", &root()).unwrap_err(), Errno::ENOENT);
    assert_eq!(b.create(b"x", 0o644, &root()).unwrap_err(), Errno::ENOENT);
    assert_eq!(b.mkdir(b"x", 0o755, &root()).unwrap_err(), Errno::ENOENT);
    assert_eq!(list(&b).len(), 2, "only . and ..");
    a.rmdir(b"c", &root()).unwrap();
    a.remove(b"f", &root()).unwrap();
    fs.root.rmdir(b"a", &root()).unwrap();
    assert_eq!(fs.root.getattr().unwrap().nlink, 2);
    drop((a, b, c));
    assert_eq!(fs.tm.node_count(), 1, "only the root is left");
    fs.unmount();
}

#[test]
fn hard_links() {
    let fs = Fs::new("");
    let f = fs.root.create(b"f", 0o644, &root()).unwrap();
    f.write(b"shared", 0, 0, &root()).unwrap();
    let d = fs.root.mkdir(b"d", 0o755, &root()).unwrap();
    d.link(&f, b"g", &root()).unwrap();
    fs.root.link(&f, b"h", &root()).unwrap();
    assert_eq!(f.getattr().unwrap().nlink, 3);
    let g = d.lookup(b"g", &root()).unwrap();
    assert_eq!(g, f, "a link reaches the same vnode");
    assert_eq!(fs.root.link(&f, b"h", &root()), Err(Errno::EEXIST));
    assert_eq!(fs.root.link(&d, b"dl", &root()), Err(Errno::EPERM));
    fs.root.remove(b"f", &root()).unwrap();
    assert_eq!(g.getattr().unwrap().nlink, 2);
    assert_eq!(read_all(&g), b"shared");
    d.remove(b"g", &root()).unwrap();
    assert_eq!(f.getattr().unwrap().nlink, 1);
    let ino = f.ino();
    drop((f, g));
    assert!(fs.tm.contains(ino), "still linked as h");
    fs.root.remove(b"h", &root()).unwrap();
    assert!(!fs.tm.contains(ino));
    // Links across mounts.
    let other = Fs::new("");
    let o = other.root.create(b"o", 0o644, &root()).unwrap();
    assert_eq!(fs.root.link(&o, b"x", &root()), Err(Errno::EXDEV));
}

#[test]
fn symlinks() {
    let fs = Fs::new("");
    let l = fs.root.symlink(b"l", b"some/where", &root()).unwrap();
    let va = l.getattr().unwrap();
    assert_eq!(va.vtype, VType::Lnk);
    assert_eq!(va.mode, 0o777);
    assert_eq!(va.size, 10);
    assert_eq!(l.readlink().unwrap(), b"some/where");
    let long = vec![b'x'; 4095];
    let l2 = fs.root.symlink(b"long", &long, &root()).unwrap();
    assert_eq!(l2.readlink().unwrap(), long);
    assert_eq!(
        fs.root
            .symlink(b"toolong", &[b'y'; 4096], &root())
            .unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(
        fs.root.symlink(b"empty", b"", &root()).unwrap_err(),
        Errno::ENOENT
    );
    assert_eq!(
        fs.root.symlink(b"l", b"x", &root()).unwrap_err(),
        Errno::EEXIST
    );
    let f = fs.root.create(b"f", 0o644, &root()).unwrap();
    assert_eq!(f.readlink().unwrap_err(), Errno::EINVAL);
    // Hard link to a symlink.
    fs.root.link(&l, b"l2", &root()).unwrap();
    assert_eq!(l.getattr().unwrap().nlink, 2);
    assert_eq!(l.pathconf(PathConf::SymlinkMax).unwrap(), 4095);
}

#[test]
fn special_nodes() {
    let fs = Fs::new("");
    let fifo = fs
        .root
        .mknod(b"fifo", VType::Fifo, 0o644, 0, &root())
        .unwrap();
    assert_eq!(fifo.getattr().unwrap().vtype, VType::Fifo);
    let sock = fs
        .root
        .mknod(b"sock", VType::Sock, 0o600, 0, &root())
        .unwrap();
    assert_eq!(sock.getattr().unwrap().st_mode(), 0o140600);
    let chr = fs
        .root
        .mknod(b"null", VType::Chr, 0o666, 0x0103, &root())
        .unwrap();
    let va = chr.getattr().unwrap();
    assert_eq!((va.vtype, va.rdev), (VType::Chr, 0x0103));
    let blk = fs
        .root
        .mknod(b"sda", VType::Blk, 0o660, 0x0800, &root())
        .unwrap();
    assert_eq!(blk.getattr().unwrap().rdev, 0x0800);
    // Device nodes need root; fifos do not.
    let u = user(1000, 1000);
    assert_eq!(
        fs.root.mknod(b"c2", VType::Chr, 0o666, 1, &u).unwrap_err(),
        Errno::EPERM
    );
    let uf = fs.root.mknod(b"ufifo", VType::Fifo, 0o644, 0, &u).unwrap();
    assert_eq!(uf.getattr().unwrap().uid, 1000);
    // Reading a fifo through the file interface is not allowed.
    let mut b = [0u8; 1];
    assert_eq!(fifo.read(&mut b, 0).unwrap_err(), Errno::EINVAL);
    let names = names(&fs.root);
    for n in ["fifo", "sock", "null", "sda", "ufifo"] {
        assert!(names.contains(&n.to_string()));
    }
    let types: Vec<VType> = list(&fs.root).into_iter().map(|e| e.2).collect();
    assert!(
        types.contains(&VType::Fifo) && types.contains(&VType::Sock) && types.contains(&VType::Chr)
    );
}

#[test]
fn readdir_lists_dot_entries_first() {
    let fs = Fs::new("");
    let d = fs.root.mkdir(b"d", 0o755, &root()).unwrap();
    d.create(b"x", 0o644, &root()).unwrap();
    d.mkdir(b"y", 0o755, &root()).unwrap();
    let l = list(&d);
    assert_eq!(l[0], (".".to_string(), d.ino(), VType::Dir));
    assert_eq!(l[1], ("..".to_string(), fs.root.ino(), VType::Dir));
    assert_eq!(l.len(), 4);
    assert!(l.contains(&(
        "x".to_string(),
        d.lookup(b"x", &root()).unwrap().ino(),
        VType::Reg
    )));
    assert!(l.contains(&(
        "y".to_string(),
        d.lookup(b"y", &root()).unwrap().ino(),
        VType::Dir
    )));
    // The directory's size grows with its entries.
    let s0 = d.getattr().unwrap().size;
    d.create(b"z", 0o644, &root()).unwrap();
    assert!(d.getattr().unwrap().size > s0);
    assert_eq!(
        fs.root
            .lookup(b"d", &root())
            .unwrap()
            .readdir(0, &mut |_| true),
        Ok(())
    );
    let f = d.lookup(b"x", &root()).unwrap();
    assert_eq!(f.readdir(0, &mut |_| true), Err(Errno::ENOTDIR));
}

/// Read one entry at a time, resuming from the cookie of the last one.
fn next_entry(dir: &rumpkern::VnodeRef, off: u64) -> Option<(String, u64)> {
    let mut got = None;
    dir.readdir(off, &mut |e: &DirEntry<'_>| {
        if got.is_some() {
            return false; // refuse the second: one entry per call
        }
        got = Some((String::from_utf8_lossy(e.name).into_owned(), e.next_offset));
        true
    })
    .unwrap();
    got
}

#[test]
fn readdir_cookies_survive_concurrent_changes() {
    let fs = Fs::new("");
    let d = fs.root.mkdir(b"d", 0o755, &root()).unwrap();
    for i in 0..10 {
        d.create(format!("f{i}").as_bytes(), 0o644, &root())
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut off = 0;
    // Read ".", "..", f0..f3.
    for _ in 0..6 {
        let (n, next) = next_entry(&d, off).unwrap();
        seen.push(n);
        off = next;
    }
    assert_eq!(seen[..2], [".".to_string(), "..".to_string()]);
    // Remove an entry already read, the entry just read, and one not yet
    // read; add a new one.
    d.remove(b"f0", &root()).unwrap();
    d.remove(b"f3", &root()).unwrap();
    d.remove(b"f5", &root()).unwrap();
    d.create(b"new", 0o644, &root()).unwrap();
    while let Some((n, next)) = next_entry(&d, off) {
        seen.push(n);
        off = next;
    }
    let expect: Vec<String> = [
        ".", "..", "f0", "f1", "f2", "f3", "f4", "f6", "f7", "f8", "f9", "new",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        seen, expect,
        "no entry repeated or skipped, removed ones not returned"
    );
    // Resuming from the end gives nothing.
    assert_eq!(next_entry(&d, off), None);
    // A filler that refuses the first entry sees the same entry again.
    let a = next_entry(&d, 2).unwrap();
    let b = next_entry(&d, 2).unwrap();
    assert_eq!(a, b);
}

#[test]
fn long_names() {
    let fs = Fs::new("");
    let n255 = vec![b'n'; 255];
    fs.root.create(&n255, 0o644, &root()).unwrap();
    assert!(fs.root.lookup(&n255, &root()).is_ok());
    assert_eq!(
        fs.root.create(&[b'n'; 256], 0o644, &root()).unwrap_err(),
        Errno::ENAMETOOLONG
    );
    assert_eq!(fs.mp.statvfs().unwrap().namemax, 255);
}

#[test]
fn many_entries() {
    let fs = Fs::new("");
    let d = fs.root.mkdir(b"many", 0o755, &root()).unwrap();
    for i in 0..1000 {
        d.create(format!("file-{i:04}").as_bytes(), 0o644, &root())
            .unwrap();
    }
    let n = names(&d);
    assert_eq!(n.len(), 1000);
    for i in (0..1000).step_by(2) {
        d.remove(format!("file-{i:04}").as_bytes(), &root())
            .unwrap();
    }
    assert_eq!(names(&d).len(), 500);
    assert_eq!(fs.tm.node_count(), 1 + 1 + 500);
}
