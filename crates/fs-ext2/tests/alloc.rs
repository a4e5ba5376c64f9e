//! Allocation policy (ext2's: directories spread over groups, files in
//! their directory's group, blocks near their inode), vget and bmap.

mod common;

use common::*;
use rumpkern::VType;

#[test]
fn directories_spread_files_stay_near() {
    let t = TempDir::new("alloc");
    let img = t.path().join("img");
    // 1 KiB blocks, 8 groups of 8 MiB.
    mkimage(&img, None, 64 * 1024, 1024, &["-N", "4096"]);
    let mp = mount_img(&img, "rw").unwrap();
    let c = cred();
    let root = mp.root().unwrap();
    let ipg = 4096 / 8;
    let group = |ino: u64| (ino - 1) / ipg;
    let mut groups = std::collections::BTreeSet::new();
    let mut dirs = Vec::new();
    for i in 0..6 {
        let d = root.mkdir(format!("d{i}").as_bytes(), 0o755, &c).unwrap();
        groups.insert(group(d.ino()));
        dirs.push(d);
    }
    assert!(
        groups.len() >= 4,
        "new directories should spread over groups: {groups:?}"
    );
    for d in &dirs {
        let g = group(d.ino());
        for k in 0..5 {
            let f = d.create(format!("f{k}").as_bytes(), 0o644, &c).unwrap();
            assert_eq!(
                group(f.ino()),
                g,
                "a file's inode goes in its directory's group"
            );
            f.write(&pattern(20_000, k), 0, 0, &c).unwrap();
            // Its blocks go in that group too (8192 blocks per group,
            // first data block 1).
            let b = f.bmap(0).unwrap().expect("block 0 mapped");
            assert_eq!((b - 1) / 8192, g, "first block of a file near its inode");
            let b19 = f.bmap(19).unwrap().expect("block 19 mapped");
            assert!(
                b19 > b && b19 - b < 64,
                "blocks of one file close together ({b} .. {b19})"
            );
        }
        // vget gives the same vnode as lookup.
        let again = mp.vget(d.ino()).unwrap();
        assert!(again == *d);
    }
    // Sockets and a hole in bmap.
    let s = root.mknod(b"sock", VType::Sock, 0o600, 0, &c).unwrap();
    assert_eq!(s.getattr().unwrap().vtype, VType::Sock);
    let h = root.create(b"holey", 0o644, &c).unwrap();
    h.write(b"x", 50_000, 0, &c).unwrap();
    assert_eq!(h.bmap(0).unwrap(), None);
    assert!(h.bmap(48).unwrap().is_some());
    drop((s, h, dirs, root));
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
}

/// Running out of blocks and inodes: ENOSPC, short writes, nothing
/// leaked, e2fsck clean; freeing makes room again.
#[test]
fn full_file_system() {
    use rumpkern::Errno;
    let t = TempDir::new("full");
    let img = t.path().join("img");
    mkimage(&img, None, 1024, 1024, &["-N", "64"]);
    let mp = mount_img(&img, "rw").unwrap();
    let c = cred();
    let root = mp.root().unwrap();
    let before = mp.statvfs().unwrap();
    // One file until the disk is full: the write comes back short.
    let f = root.create(b"filler", 0o644, &c).unwrap();
    let chunk = pattern(64 * 1024, 3);
    let mut off = 0u64;
    loop {
        match f.write(&chunk, off, 0, &c) {
            Ok(n) if n == chunk.len() => off += n as u64,
            Ok(n) => {
                off += n as u64;
                break;
            }
            Err(e) => {
                assert_eq!(e, Errno::ENOSPC);
                break;
            }
        }
        assert!(off < 2 << 20, "the disk never filled");
    }
    assert_eq!(f.getattr().unwrap().size, off);
    assert_eq!(mp.statvfs().unwrap().bfree, 0);
    assert_eq!(f.write(b"more", off, 0, &c), Err(Errno::ENOSPC));
    // Directories need a block: ENOSPC, and nothing is left behind.
    let inodes = mp.statvfs().unwrap().ffree;
    assert_eq!(root.mkdir(b"nodir", 0o755, &c).err(), Some(Errno::ENOSPC));
    assert_eq!(
        mp.statvfs().unwrap().ffree,
        inodes,
        "failed mkdir freed its inode"
    );
    assert_eq!(root.lookup(b"nodir", &c).err(), Some(Errno::ENOENT));
    // Empty files need no block: until the inodes run out (the root
    // directory's block has room for these names).
    let mut made = 0;
    loop {
        match root.create(format!("e{made}").as_bytes(), 0o644, &c) {
            Ok(_) => made += 1,
            Err(e) => {
                assert!(e == Errno::ENOSPC, "{e}");
                break;
            }
        }
        assert!(made < 100);
    }
    assert_eq!(mp.statvfs().unwrap().ffree, 0);
    // Free everything again (after a sync, so that the unlinks write
    // nothing synchronously and their frees wait for an ordering point).
    mp.sync(true).unwrap();
    drop(f);
    root.remove(b"filler", &c).unwrap();
    for i in 0..made {
        root.remove(format!("e{i}").as_bytes(), &c).unwrap();
    }
    let after = mp.statvfs().unwrap();
    assert_eq!(
        (after.bfree, after.ffree),
        (before.bfree, before.ffree),
        "everything freed"
    );
    // And usable at once: the unlinked files' blocks wait for the next
    // ordering point, which an allocation that needs them runs.
    let g = root.create(b"again", 0o644, &c).unwrap();
    let mut done = 0u64;
    while done < off {
        let k = (off - done).min(chunk.len() as u64) as usize;
        assert_eq!(g.write(&chunk[..k], done, 0, &c), Ok(k), "refilling the freed space at {done}");
        done += k as u64;
    }
    drop(g);
    root.remove(b"again", &c).unwrap();
    root.mkdir(b"now", 0o755, &c).unwrap();
    drop(root);
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
}

/// Blocks reserved for root (mke2fs -m): other users get ENOSPC while
/// statvfs shows bavail 0; root may go on.
#[test]
fn reserved_blocks_for_root() {
    use rumpkern::{Cred, Errno};
    let t = TempDir::new("resv");
    let img = t.path().join("img");
    mkimage(&img, None, 2048, 1024, &["-m", "40"]);
    let mp = mount_img(&img, "rw").unwrap();
    let root = mp.root().unwrap();
    let user = Cred::new(1000, 1000, vec![]);
    let d = root.mkdir(b"pub", 0o777, &cred()).unwrap();
    let f = d.create(b"userfile", 0o644, &user).unwrap();
    let chunk = pattern(32 * 1024, 1);
    let mut off = 0u64;
    loop {
        match f.write(&chunk, off, 0, &user) {
            Ok(n) if n == chunk.len() => off += n as u64,
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e, Errno::ENOSPC);
                break;
            }
        }
        assert!(off < 4 << 20);
    }
    let st = mp.statvfs().unwrap();
    assert_eq!(st.bavail, 0, "user stopped at the reserve");
    assert!(st.bfree > 300, "the reserve is still free: {}", st.bfree);
    // Root writes into the reserve.
    let g = d.create(b"rootfile", 0o644, &cred()).unwrap();
    assert_eq!(g.write(&chunk, 0, 0, &cred()).unwrap(), chunk.len());
    drop((f, g, d, root));
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
}
