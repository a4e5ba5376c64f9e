//! Size and inode limits, statvfs, the vnode cache, unmount, concurrency.

mod common;

use std::sync::Arc;

use common::*;
use fs_tmpfs::node::{DIRENT_COST, NODE_COST};
use fs_tmpfs::PAGE_SIZE;
use rumpkern::{Errno, SetAttr};

#[test]
fn size_limit_enospc_and_statvfs() {
    let fs = Fs::new("size=64k");
    let s0 = fs.mp.statvfs().unwrap();
    assert_eq!((s0.frsize, s0.bsize), (4096, 4096));
    assert_eq!(s0.blocks, 16);
    // Only the root node's metadata is charged: less than one block.
    assert_eq!(s0.bfree, 15);
    assert_eq!(s0.bavail, s0.bfree);
    assert_eq!(fs.tm.used_bytes(), NODE_COST);

    let f = fs.root.create(b"fill", 0o644, &root()).unwrap();
    assert_eq!(fs.tm.used_bytes(), 2 * NODE_COST + DIRENT_COST + 4);
    // 64 KiB of data cannot fit next to the metadata: a short write of
    // 15 pages, then ENOSPC.
    let data = vec![7u8; 64 * 1024];
    let n = f.write(&data, 0, 0, &root()).unwrap();
    assert_eq!(n, 15 * PAGE_SIZE, "partial write up to the limit");
    assert_eq!(
        f.write(&data[n..], n as u64, 0, &root()),
        Err(Errno::ENOSPC)
    );
    assert_eq!(f.getattr().unwrap().size, n as u64);
    let s1 = fs.mp.statvfs().unwrap();
    assert_eq!(s1.bfree, 0);
    // Overwriting allocated pages needs no space.
    assert_eq!(f.write(&[1u8; 100], 0, 0, &root()).unwrap(), 100);
    // New files fail too when their metadata does not fit: fill the rest.
    let mut k = 0;
    let err = loop {
        match fs.root.create(format!("e{k}").as_bytes(), 0o644, &root()) {
            Ok(_) => k += 1,
            Err(e) => break e,
        }
        assert!(k < 1000, "the limit must stop creates");
    };
    assert_eq!(err, Errno::ENOSPC);
    // Truncating gives the space back.
    f.setattr(
        &SetAttr {
            size: Some(0),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let s2 = fs.mp.statvfs().unwrap();
    assert!(s2.bfree >= 14, "pages freed: {s2:?}");
    assert_eq!(f.write(&data[..8192], 0, 0, &root()).unwrap(), 8192);
    // Removing a file with data gives the space back when it goes.
    let used = fs.tm.used_bytes();
    fs.root.remove(b"fill", &root()).unwrap();
    assert_eq!(
        fs.tm.used_bytes(),
        used - DIRENT_COST - 4,
        "only the entry while referenced"
    );
    drop(f);
    assert_eq!(
        fs.tm.used_bytes(),
        used - DIRENT_COST - 4 - NODE_COST - 8192
    );
}

#[test]
fn sparse_growth_is_free_under_a_limit() {
    let fs = Fs::new("size=16k");
    let f = fs.root.create(b"s", 0o644, &root()).unwrap();
    f.setattr(
        &SetAttr {
            size: Some(1 << 30),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    assert_eq!(f.write(b"x", 1 << 29, 0, &root()).unwrap(), 1);
    assert_eq!(f.getattr().unwrap().bytes, PAGE_SIZE as u64);
}

#[test]
fn inode_limit() {
    let fs = Fs::new("nr_inodes=4");
    let s = fs.mp.statvfs().unwrap();
    assert_eq!((s.files, s.ffree), (4, 3));
    let a = fs.root.create(b"a", 0o644, &root()).unwrap();
    fs.root.mkdir(b"b", 0o755, &root()).unwrap();
    fs.root.symlink(b"c", b"a", &root()).unwrap();
    assert_eq!(fs.mp.statvfs().unwrap().ffree, 0);
    assert_eq!(
        fs.root.create(b"d", 0o644, &root()).unwrap_err(),
        Errno::ENOSPC
    );
    // Hard links need no inode.
    fs.root.link(&a, b"a2", &root()).unwrap();
    fs.root.rmdir(b"b", &root()).unwrap();
    assert_eq!(fs.mp.statvfs().unwrap().ffree, 1);
    fs.root.create(b"d", 0o644, &root()).unwrap();
}

#[test]
fn unlimited_statvfs_is_sane() {
    let fs = Fs::new("");
    let s = fs.mp.statvfs().unwrap();
    assert!(s.blocks > 1 << 20);
    assert!(s.bfree <= s.blocks && s.bfree > 0);
    assert!(s.files > 1 << 20);
    assert_eq!(s.ffree, s.files - 1);
    assert_eq!(s.namemax, 255);
    assert!(!s.readonly);
}

#[test]
fn vnode_cache_and_unmount() {
    let fs = Fs::new("");
    {
        let d = fs.root.mkdir(b"d", 0o755, &root()).unwrap();
        let f = d.create(b"f", 0o644, &root()).unwrap();
        f.write(b"abc", 0, 0, &root()).unwrap();
        let _l = d.symlink(b"l", b"f", &root()).unwrap();
        let _again = fs.walk("d/f").unwrap();
        assert!(fs.mp.vnode_counts().1 >= 4);
    }
    assert_eq!(fs.mp.vnode_counts().1, 1, "only root referenced");
    // A referenced vnode blocks unmount.
    let held = fs.walk("d/f").unwrap();
    assert_eq!(fs.mp.unmount(false), Err(Errno::EBUSY));
    drop(held);
    // Data survives the vnodes leaving the cache.
    assert!(fs.mp.vflush() >= 1);
    assert_eq!(read_all(&fs.walk("d/f").unwrap()), b"abc");
    assert_eq!(fs.mp.vnode_counts().1, 1);
    let mp = fs.mp.clone();
    let tm = fs.tm.clone();
    fs.unmount();
    assert_eq!(mp.vnode_counts(), (0, 0));
    assert_eq!(tm.node_count(), 0, "unmount frees every node");
    assert!(mp.root().is_err());
}

#[test]
fn registers_and_mounts_through_registry() {
    rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    let t = rumpkern::vfs::lookup_type("tmpfs").expect("registered");
    let mp = t
        .mount(None, &rumpkern::MountArgs::parse("size=1m"))
        .unwrap();
    assert_eq!(mp.fstype(), "tmpfs");
    let r = mp.root().unwrap();
    let f = r.create(b"x", 0o644, &root()).unwrap();
    assert_eq!(fs_tmpfs::tmpfs_of(&f).unwrap().node_count(), 2);
    assert_eq!(mp.statvfs().unwrap().blocks, 256);
}

#[test]
fn concurrent_creates_writes_and_removes() {
    let fs = Arc::new(Fs::new(""));
    let mut threads = Vec::new();
    for t in 0..4u8 {
        let fs = fs.clone();
        threads.push(std::thread::spawn(move || {
            let d = fs
                .root
                .mkdir(format!("t{t}").as_bytes(), 0o755, &root())
                .unwrap();
            for i in 0..200u32 {
                let name = format!("f{i}");
                let f = d.create(name.as_bytes(), 0o644, &root()).unwrap();
                let payload = vec![t; (i as usize % 5) * 1000 + 1];
                f.write(&payload, 0, 0, &root()).unwrap();
                assert_eq!(read_all(&f), payload);
                // Rename into the shared root, then remove every other one.
                let shared = format!("t{t}-{i}");
                d.rename(name.as_bytes(), &fs.root, shared.as_bytes(), &root())
                    .unwrap();
                if i % 2 == 0 {
                    fs.root.remove(shared.as_bytes(), &root()).unwrap();
                }
                // Readers of the root alongside.
                let _ = names(&fs.root);
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(names(&fs.root).len(), 4 + 4 * 100);
    assert_eq!(fs.tm.node_count(), 1 + 4 + 4 * 100);
    assert_eq!(fs.root.getattr().unwrap().nlink, 2 + 4);
    assert_eq!(fs.mp.vnode_counts().1, 1);
}

#[test]
fn concurrent_directory_renames_and_rmdirs() {
    let fs = Arc::new(Fs::new(""));
    let a = fs.root.mkdir(b"a", 0o755, &root()).unwrap();
    let b = fs.root.mkdir(b"b", 0o755, &root()).unwrap();
    for i in 0..8 {
        a.mkdir(format!("d{i}").as_bytes(), 0o755, &root()).unwrap();
    }
    let mut threads = Vec::new();
    // Movers: shuttle d0..d7 between a and b, one direction each.
    for t in 0..2u32 {
        let fs = fs.clone();
        threads.push(std::thread::spawn(move || {
            let a = fs.walk("a").unwrap();
            let b = fs.walk("b").unwrap();
            for round in 0..300u32 {
                let name = format!("d{}", (round + t) % 8);
                let (from, to) = if (round / 8 + t) % 2 == 0 {
                    (&a, &b)
                } else {
                    (&b, &a)
                };
                match from.rename(name.as_bytes(), to, name.as_bytes(), &root()) {
                    Ok(()) | Err(Errno::ENOENT) | Err(Errno::ENOTEMPTY) => {}
                    Err(e) => panic!("rename: {e:?}"),
                }
            }
        }));
    }
    // Workers: create and remove inside the moving directories, walk "..".
    for t in 0..2u32 {
        let fs = fs.clone();
        threads.push(std::thread::spawn(move || {
            for round in 0..300u32 {
                let name = format!("d{}", round % 8);
                for parent in ["a", "b"] {
                    let Ok(d) = fs.walk(&format!("{parent}/{name}")) else {
                        continue;
                    };
                    let f = format!("w{t}");
                    match d.create(f.as_bytes(), 0o644, &root()) {
                        Ok(_) | Err(Errno::EEXIST) => {}
                        Err(e) => panic!("create: {e:?}"),
                    }
                    let up = d.lookup(b"..", &root()).unwrap();
                    assert_eq!(up.vtype(), rumpkern::VType::Dir);
                    let _ = names(&d);
                    let _ = d.remove(f.as_bytes(), &root());
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    // Every directory is in exactly one parent, and link counts add up.
    let mut total = names(&a);
    total.extend(names(&b));
    total.sort();
    assert_eq!(total, (0..8).map(|i| format!("d{i}")).collect::<Vec<_>>());
    let na = a.getattr().unwrap().nlink as usize;
    let nb = b.getattr().unwrap().nlink as usize;
    assert_eq!(na + nb, 4 + 8);
    for n in names(&a) {
        assert_eq!(
            a.lookup(n.as_bytes(), &root())
                .unwrap()
                .lookup(b"..", &root())
                .unwrap(),
            a
        );
    }
    drop((a, b));
    assert_eq!(fs.mp.vnode_counts().1, 1);
}
