//! Regular files: data, holes, truncate, append, limits, unlinked-but-open
//! files, timestamps.

mod common;

use common::*;
use fs_tmpfs::{MAX_FILE_SIZE, PAGE_SIZE};
use rumpkern::types::ioflag::IO_APPEND;
use rumpkern::types::oflags;
use rumpkern::{Errno, SetAttr, SetTime, Timespec, Uio, VType};

#[test]
fn create_write_read() {
    let fs = Fs::new("");
    let f = fs.root.create(b"hello", 0o644, &root()).unwrap();
    assert_eq!(f.vtype(), VType::Reg);
    assert_eq!(f.write(b"hello, world", 0, 0, &root()).unwrap(), 12);
    let va = f.getattr().unwrap();
    assert_eq!(va.size, 12);
    assert_eq!(va.mode, 0o644);
    assert_eq!(va.nlink, 1);
    assert_eq!(va.bytes, PAGE_SIZE as u64);
    assert_eq!(read_all(&f), b"hello, world");
    // Overwrite in the middle, read at an offset, read past the end.
    f.write(b"WORLD", 7, 0, &root()).unwrap();
    let mut b = [0u8; 5];
    assert_eq!(f.read(&mut b, 7).unwrap(), 5);
    assert_eq!(&b, b"WORLD");
    assert_eq!(f.read(&mut b, 12).unwrap(), 0);
    assert_eq!(f.read(&mut b, 1 << 40).unwrap(), 0);
    // Looked up again: the same vnode.
    let again = fs.root.lookup(b"hello", &root()).unwrap();
    assert_eq!(again, f);
    assert_eq!(fs.root.lookup(b"nope", &root()).unwrap_err(), Errno::ENOENT);
    drop((f, again));
    fs.unmount();
}

#[test]
fn write_across_pages_and_scattered() {
    let fs = Fs::new("");
    let f = fs.root.create(b"big", 0o600, &root()).unwrap();
    let data: Vec<u8> = (0..3 * PAGE_SIZE + 123)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    assert_eq!(f.write(&data, 100, 0, &root()).unwrap(), data.len());
    let all = read_all(&f);
    assert_eq!(all.len(), data.len() + 100);
    assert!(all[..100].iter().all(|&b| b == 0));
    assert_eq!(&all[100..], &data[..]);
    // A scattered read through a uio.
    let mut a = [0u8; 10];
    let mut b = [0u8; 5000];
    let mut uio = Uio::readv(vec![&mut a, &mut b], 100);
    f.read_uio(&mut uio, 0).unwrap();
    assert_eq!(uio.resid(), 0);
    drop(uio);
    assert_eq!(&a, &data[..10]);
    assert_eq!(&b[..], &data[10..5010]);
}

#[test]
fn sparse_holes_cost_nothing() {
    let fs = Fs::new("");
    let f = fs.root.create(b"sparse", 0o644, &root()).unwrap();
    let tib = 1u64 << 40;
    assert_eq!(f.write(b"end", tib, 0, &root()).unwrap(), 3);
    let va = f.getattr().unwrap();
    assert_eq!(va.size, tib + 3);
    assert_eq!(
        va.bytes, PAGE_SIZE as u64,
        "one page for a 1 TiB sparse file"
    );
    let mut buf = vec![0xffu8; 8192];
    assert_eq!(f.read(&mut buf, 12345).unwrap(), 8192);
    assert!(buf.iter().all(|&b| b == 0), "holes read as zeros");
    let mut tail = [0u8; 16];
    assert_eq!(f.read(&mut tail, tib - 2).unwrap(), 5);
    assert_eq!(&tail[..5], b"\0\0end");
    // Growing with setattr allocates nothing either.
    let g = fs.root.create(b"grown", 0o644, &root()).unwrap();
    g.setattr(
        &SetAttr {
            size: Some(1 << 50),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let va = g.getattr().unwrap();
    assert_eq!((va.size, va.bytes), (1 << 50, 0));
}

#[test]
fn truncate_down_then_up_reads_zeros() {
    let fs = Fs::new("");
    let f = fs.root.create(b"t", 0o644, &root()).unwrap();
    let data = vec![0x5au8; 3 * PAGE_SIZE];
    f.write(&data, 0, 0, &root()).unwrap();
    assert_eq!(f.getattr().unwrap().bytes, 3 * PAGE_SIZE as u64);
    let used = fs.tm.used_bytes();
    // Down to the middle of the first page.
    f.setattr(
        &SetAttr {
            size: Some(100),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let va = f.getattr().unwrap();
    assert_eq!(va.size, 100);
    assert_eq!(va.bytes, PAGE_SIZE as u64, "pages past the end are freed");
    assert_eq!(fs.tm.used_bytes(), used - 2 * PAGE_SIZE as u64);
    // Back up: everything past 100 reads as zeros, including the old tail of
    // the first page.
    f.setattr(
        &SetAttr {
            size: Some(2 * PAGE_SIZE as u64 + 7),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let all = read_all(&f);
    assert_eq!(all.len(), 2 * PAGE_SIZE + 7);
    assert!(all[..100].iter().all(|&b| b == 0x5a));
    assert!(
        all[100..].iter().all(|&b| b == 0),
        "truncate up reads zeros"
    );
    // O_TRUNC through open.
    f.open(oflags::O_RDWR | oflags::O_TRUNC, &root()).unwrap();
    assert_eq!(f.getattr().unwrap().size, 0);
    assert_eq!(f.getattr().unwrap().bytes, 0);
    // Truncating a directory.
    let d = fs.root.mkdir(b"d", 0o755, &root()).unwrap();
    assert_eq!(
        d.setattr(
            &SetAttr {
                size: Some(0),
                ..Default::default()
            },
            &root(),
            false
        ),
        Err(Errno::EISDIR)
    );
}

#[test]
fn append_and_size_limits() {
    let fs = Fs::new("");
    let f = fs.root.create(b"log", 0o644, &root()).unwrap();
    f.write(b"one\n", 0, 0, &root()).unwrap();
    // IO_APPEND ignores the offset.
    f.write(b"two\n", 0, IO_APPEND, &root()).unwrap();
    f.write(b"three\n", 2, IO_APPEND, &root()).unwrap();
    assert_eq!(read_all(&f), b"one\ntwo\nthree\n");
    // Writing at the largest offset: EFBIG; just below it: a short write.
    assert_eq!(f.write(b"x", MAX_FILE_SIZE, 0, &root()), Err(Errno::EFBIG));
    assert_eq!(f.write(b"xyz", MAX_FILE_SIZE - 1, 0, &root()).unwrap(), 1);
    assert_eq!(f.getattr().unwrap().size, MAX_FILE_SIZE);
    assert_eq!(
        f.setattr(
            &SetAttr {
                size: Some(MAX_FILE_SIZE + 1),
                ..Default::default()
            },
            &root(),
            false
        ),
        Err(Errno::EFBIG)
    );
    // Zero-length write changes nothing.
    let m = f.getattr().unwrap().mtime;
    sleep_ms(5);
    assert_eq!(f.write(b"", 0, 0, &root()).unwrap(), 0);
    assert_eq!(f.getattr().unwrap().mtime, m);
}

#[test]
fn write_drops_setuid_for_non_root() {
    let fs = Fs::new("");
    let f = fs.root.create(b"suid", 0o6775, &root()).unwrap();
    f.setattr(
        &SetAttr {
            uid: Some(1000),
            gid: Some(1000),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    f.setattr(
        &SetAttr {
            mode: Some(0o6777),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    f.write(b"x", 0, 0, &root()).unwrap();
    assert_eq!(f.getattr().unwrap().mode, 0o6777, "root keeps the bits");
    f.write(b"y", 0, 0, &user(1000, 1000)).unwrap();
    assert_eq!(f.getattr().unwrap().mode, 0o0777);
    // Truncate too; setgid without group-execute stays (mandatory locking
    // marker on Linux).
    f.setattr(
        &SetAttr {
            mode: Some(0o6767),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let sz = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    f.setattr(&sz, &user(1000, 1000), true).unwrap();
    assert_eq!(f.getattr().unwrap().mode, 0o2767);
    f.setattr(
        &SetAttr {
            mode: Some(0o6777),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    f.setattr(&sz, &root(), false).unwrap();
    assert_eq!(f.getattr().unwrap().mode, 0o6777, "root keeps the bits");
}

#[test]
fn unlinked_open_file_lives_until_last_reference() {
    let fs = Fs::new("");
    let before = fs.tm.node_count();
    let f = fs.root.create(b"ghost", 0o644, &root()).unwrap();
    f.write(&vec![1u8; 3 * PAGE_SIZE], 0, 0, &root()).unwrap();
    let ino = f.ino();
    assert_eq!(fs.tm.node_count(), before + 1);
    let used_with_file = fs.tm.used_bytes();
    fs.root.remove(b"ghost", &root()).unwrap();
    assert_eq!(
        fs.root.lookup(b"ghost", &root()).unwrap_err(),
        Errno::ENOENT
    );
    // Still readable, writable, and stat-able.
    let va = f.getattr().unwrap();
    assert_eq!(va.nlink, 0);
    assert_eq!(va.size, 3 * PAGE_SIZE as u64);
    f.write(b"still here", 0, 0, &root()).unwrap();
    let mut b = [0u8; 10];
    f.read(&mut b, 0).unwrap();
    assert_eq!(&b, b"still here");
    assert!(fs.tm.contains(ino));
    assert_eq!(fs.tm.node_count(), before + 1);
    // No new names for an unlinked file.
    assert_eq!(fs.root.link(&f, b"back", &root()), Err(Errno::ENOENT));
    // vget cannot resurrect it from the table, only the cached vnode exists.
    let clone = f.clone();
    drop(f);
    assert!(fs.tm.contains(ino), "one reference left");
    drop(clone);
    assert!(!fs.tm.contains(ino), "freed with the last reference");
    assert_eq!(fs.tm.node_count(), before);
    assert!(fs.tm.used_bytes() < used_with_file - 3 * PAGE_SIZE as u64 + 1);
    assert_eq!(fs.mp.vget(ino).unwrap_err(), Errno::ENOENT);
    assert!(!fs.mp.vcache_contains(ino));
    fs.unmount();
}

#[test]
fn vget_finds_live_nodes() {
    let fs = Fs::new("");
    let f = fs.root.create(b"f", 0o644, &root()).unwrap();
    let ino = f.ino();
    drop(f);
    // Force the vnode out of the cache; the node stays.
    fs.mp.vflush();
    assert!(!fs.mp.vcache_contains(ino));
    assert!(fs.tm.contains(ino));
    let v = fs.mp.vget(ino).unwrap();
    assert_eq!(v.ino(), ino);
    assert_eq!(v.getattr().unwrap().nlink, 1);
    assert_eq!(fs.mp.vget(999_999).unwrap_err(), Errno::ENOENT);
    assert_eq!(fs.mp.vget(0).unwrap_err(), Errno::ESTALE);
}

fn times(vp: &rumpkern::VnodeRef) -> (Timespec, Timespec, Timespec, Timespec) {
    let va = vp.getattr().unwrap();
    (va.atime, va.mtime, va.ctime, va.birthtime)
}

#[test]
fn timestamps() {
    let fs = Fs::new("");
    let d = fs.root.mkdir(b"d", 0o777, &root()).unwrap();
    let (_, dm0, dc0, _) = times(&d);
    sleep_ms(10);
    // create: all four on the new node, mtime+ctime on the parent.
    let f = d.create(b"f", 0o666, &root()).unwrap();
    let (a, m, c, b) = times(&f);
    assert!(a == m && m == c && c == b, "create sets all four times");
    assert!(b.nsec != 0 || b.sec != 0);
    let (_, dm1, dc1, _) = times(&d);
    assert!(dm1 > dm0 && dc1 > dc0);
    assert_eq!(dm1, b);
    // write: mtime+ctime, not atime.
    sleep_ms(10);
    f.write(b"data", 0, 0, &root()).unwrap();
    let (a1, m1, c1, b1) = times(&f);
    assert_eq!(a1, a);
    assert!(m1 > m && c1 > c);
    assert_eq!(b1, b);
    // read: atime only.
    sleep_ms(10);
    let mut buf = [0u8; 4];
    f.read(&mut buf, 0).unwrap();
    let (a2, m2, c2, _) = times(&f);
    assert!(a2 > a1);
    assert_eq!((m2, c2), (m1, c1));
    // chmod: ctime only.
    sleep_ms(10);
    f.setattr(
        &SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let (a3, m3, c3, _) = times(&f);
    assert_eq!((a3, m3), (a2, m2));
    assert!(c3 > c2);
    // chown: ctime.
    sleep_ms(10);
    f.setattr(
        &SetAttr {
            uid: Some(5),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let (_, _, c4, _) = times(&f);
    assert!(c4 > c3);
    // utimes with explicit times (nanoseconds kept), and with Now.
    let t = Timespec::new(1_000_000_000, 123_456_789);
    f.setattr(
        &SetAttr {
            atime: Some(SetTime::At(t)),
            mtime: Some(SetTime::At(Timespec::new(5, 6))),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let (a5, m5, c5, _) = times(&f);
    assert_eq!(a5, t);
    assert_eq!(m5, Timespec::new(5, 6));
    assert!(c5 >= c4);
    sleep_ms(10);
    f.setattr(
        &SetAttr {
            mtime: Some(SetTime::Now),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let (a6, m6, c6, _) = times(&f);
    assert_eq!(a6, t);
    assert!(m6 > c5 && c6 == m6);
    // truncate: mtime+ctime.
    sleep_ms(10);
    f.setattr(
        &SetAttr {
            size: Some(1),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let (_, m7, c7, _) = times(&f);
    assert!(m7 > m6 && c7 > c6);
    // link: ctime on the node, mtime+ctime on the dir.
    sleep_ms(10);
    let (_, dm2, dc2, _) = times(&d);
    d.link(&f, b"f2", &root()).unwrap();
    let (_, m8, c8, _) = times(&f);
    assert_eq!(m8, m7);
    assert!(c8 > c7);
    let (_, dm3, dc3, _) = times(&d);
    assert!(dm3 > dm2 && dc3 > dc2);
    // unlink: same.
    sleep_ms(10);
    d.remove(b"f2", &root()).unwrap();
    let (_, _, c9, _) = times(&f);
    assert!(c9 > c8);
    let (_, dm4, dc4, _) = times(&d);
    assert!(dm4 > dm3 && dc4 > dc3);
    // rename: ctime on the node, mtime+ctime on both directories.
    sleep_ms(10);
    let (_, rm0, rc0, _) = times(&fs.root);
    d.rename(b"f", &fs.root, b"moved", &root()).unwrap();
    let (_, _, c10, _) = times(&f);
    assert!(c10 > c9);
    let (_, dm5, dc5, _) = times(&d);
    assert!(dm5 > dm4 && dc5 > dc4);
    let (_, rm1, rc1, _) = times(&fs.root);
    assert!(rm1 > rm0 && rc1 > rc0);
}

#[test]
fn noatime_option() {
    let fs = Fs::new("noatime");
    let f = fs.root.create(b"f", 0o644, &root()).unwrap();
    f.write(b"abc", 0, 0, &root()).unwrap();
    let a0 = f.getattr().unwrap().atime;
    sleep_ms(5);
    let mut b = [0u8; 3];
    f.read(&mut b, 0).unwrap();
    assert_eq!(f.getattr().unwrap().atime, a0);
}
