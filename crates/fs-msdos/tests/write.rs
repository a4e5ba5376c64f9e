//! Read-write: workloads through the VnodeRef wrappers, then the
//! independent implementations judge the image: `fsck.fat -n` must be clean
//! and `mcopy -s -n` must extract exactly what was written.

mod common;
use common::*;

use std::path::Path;

use rumpkern::types::{ioflag, oflags};
use rumpkern::{Cred, Errno, SetAttr, SetTime, Timespec, VType, VnodeRef};

fn c() -> Cred {
    Cred::root()
}

fn write_file(d: &VnodeRef, name: &str, data: &[u8]) -> VnodeRef {
    let vp = d
        .create(name.as_bytes(), 0o644, &c())
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    let mut off = 0;
    // Uneven chunks cross cluster boundaries at odd places.
    for chunk in data.chunks(7919) {
        assert_eq!(
            vp.write(chunk, off, 0, &c())
                .unwrap_or_else(|e| panic!("{name} at {off}: {e}")),
            chunk.len()
        );
        off += chunk.len() as u64;
    }
    vp
}

/// The workload, applied to the mount and mirrored into `model`.
fn workload(r: &VnodeRef, model: &Path) {
    let m = |p: &str| model.join(p);
    std::fs::create_dir_all(model).unwrap();
    // Files with every kind of name.
    for (name, data) in [
        ("hello.txt", b"hello world\n".to_vec()),
        ("README", b"upper case 8.3 name\n".to_vec()),
        ("Mixed Case Long Name.Data", pattern(5000, 1)),
        ("ünïcødé ✓ 日本.txt", "utf-8 ✓\n".as_bytes().to_vec()),
        (".dotfile", b"dot\n".to_vec()),
        ("empty", Vec::new()),
        ("big.bin", pattern(3 << 20, 2)),
    ] {
        write_file(r, name, &data);
        std::fs::write(m(name), &data).unwrap();
    }
    // A 255-character name.
    let long: String = std::iter::repeat_n('x', 250)
        .chain(".long".chars())
        .collect();
    assert_eq!(long.chars().count(), 255);
    write_file(r, &long, b"long");
    std::fs::write(m(&long), b"long").unwrap();
    // Names that collide in their short form get ~N tails.
    for i in 0..12 {
        let n = format!("collision name {i}.text");
        write_file(r, &n, n.as_bytes());
        std::fs::write(m(&n), n.as_bytes()).unwrap();
    }
    // Append, overwrite in the middle, truncate down and up, sparse extension.
    let vp = r.lookup(b"hello.txt", &c()).unwrap();
    vp.write(b"appended\n", 0, ioflag::IO_APPEND, &c()).unwrap();
    let mut h = b"hello world\nappended\n".to_vec();
    vp.write(b"HELLO", 0, 0, &c()).unwrap();
    h[..5].copy_from_slice(b"HELLO");
    std::fs::write(m("hello.txt"), &h).unwrap();

    let big = r.lookup(b"BIG.BIN", &c()).unwrap();
    big.setattr(
        &SetAttr {
            size: Some(1_000_003),
            ..Default::default()
        },
        &c(),
        false,
    )
    .unwrap();
    let mut bd = pattern(3 << 20, 2);
    bd.truncate(1_000_003);
    big.setattr(
        &SetAttr {
            size: Some(1_200_000),
            ..Default::default()
        },
        &c(),
        false,
    )
    .unwrap();
    bd.resize(1_200_000, 0);
    // A write past the end leaves a zero-filled gap.
    big.write(b"tail", 1_300_000, 0, &c()).unwrap();
    bd.resize(1_300_000, 0);
    bd.extend_from_slice(b"tail");
    std::fs::write(m("big.bin"), &bd).unwrap();
    assert_eq!(read_all(&big), bd);
    let md = r.lookup(b"mixed case long name.data", &c()).unwrap();
    md.setattr(
        &SetAttr {
            size: Some(0),
            ..Default::default()
        },
        &c(),
        false,
    )
    .unwrap();
    md.write(b"rewritten", 0, 0, &c()).unwrap();
    std::fs::write(m("Mixed Case Long Name.Data"), b"rewritten").unwrap();

    // Directories: deep, many entries (directory growth), empty.
    let mut d = r.clone();
    let mut path = String::new();
    for lvl in 0..8 {
        let n = format!("Level {lvl}");
        d = d.mkdir(n.as_bytes(), 0o755, &c()).unwrap();
        path = if path.is_empty() {
            n
        } else {
            format!("{path}/{n}")
        };
        std::fs::create_dir_all(m(&path)).unwrap();
    }
    write_file(&d, "deep.txt", b"deep");
    std::fs::write(m(&format!("{path}/deep.txt")), b"deep").unwrap();
    let many = r.mkdir(b"many", 0o755, &c()).unwrap();
    std::fs::create_dir_all(m("many")).unwrap();
    for i in 0..300 {
        let n = format!("file with a fairly long name number {i:04}.txt");
        write_file(&many, &n, format!("{i}").as_bytes());
        std::fs::write(m(&format!("many/{n}")), format!("{i}")).unwrap();
    }
    // Unlink every third, so later creates reuse slots.
    for i in (0..300).step_by(3) {
        let n = format!("file with a fairly long name number {i:04}.txt");
        many.remove(n.as_bytes(), &c()).unwrap();
        std::fs::remove_file(m(&format!("many/{n}"))).unwrap();
    }
    for i in 0..20 {
        let n = format!("refill {i}");
        write_file(&many, &n, b"r");
        std::fs::write(m(&format!("many/{n}")), b"r").unwrap();
    }
    r.mkdir(b"emptydir", 0o755, &c()).unwrap();
    std::fs::create_dir_all(m("emptydir")).unwrap();
    let gone = r.mkdir(b"gone", 0o755, &c()).unwrap();
    write_file(&gone, "x", b"x");
    assert_eq!(r.rmdir(b"gone", &c()), Err(Errno::ENOTEMPTY));
    gone.remove(b"x", &c()).unwrap();
    drop(gone);
    r.rmdir(b"gone", &c()).unwrap();
    assert_eq!(r.lookup(b"gone", &c()).unwrap_err(), Errno::ENOENT);

    // Renames: within a directory, across directories, a directory across
    // directories (its .. must follow), over an existing file, case only.
    r.rename(b"README", r, b"readme renamed.md", &c()).unwrap();
    std::fs::rename(m("README"), m("readme renamed.md")).unwrap();
    r.rename(b".dotfile", &many, b"moved dotfile", &c())
        .unwrap();
    std::fs::rename(m(".dotfile"), m("many/moved dotfile")).unwrap();
    let l0 = r.lookup(b"Level 0", &c()).unwrap();
    r.rename(b"Level 0", &many, b"Moved Level", &c()).unwrap();
    std::fs::rename(m("Level 0"), m("many/Moved Level")).unwrap();
    let dd = l0.lookup(b"..", &c()).unwrap();
    assert_eq!(dd.ino(), many.ino(), ".. of a moved directory");
    assert_eq!(r.getattr().unwrap().nlink, 2 + 2); // many, emptydir
    write_file(r, "victim", b"to be replaced");
    r.rename(b"hello.txt", r, b"victim", &c()).unwrap();
    std::fs::rename(m("hello.txt"), m("victim")).unwrap();
    r.rename(b"empty", r, b"EMPTY", &c()).unwrap();
    std::fs::rename(m("empty"), m("EMPTY")).unwrap();
    let names: Vec<String> = list(r).into_keys().collect();
    assert!(
        names.contains(&"EMPTY".to_string()) && !names.contains(&"empty".to_string()),
        "{names:?}"
    );

    // utimes: mtime to an even second survives (FAT has 2 s resolution).
    let t = Timespec::new(1_600_000_000, 0);
    let v = r.lookup(b"victim", &c()).unwrap();
    v.setattr(
        &SetAttr {
            mtime: Some(SetTime::At(t)),
            atime: Some(SetTime::At(t)),
            ..Default::default()
        },
        &c(),
        false,
    )
    .unwrap();
    assert_eq!(v.getattr().unwrap().mtime, t);
    let f = std::fs::File::options()
        .write(true)
        .open(m("victim"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000))
        .unwrap();
}

fn check(fat: u32, sector: u32, spc: u32, mb: u64) {
    let t = TempDir::new(&format!("write{fat}-{sector}-{spc}"));
    let img = t.path().join("img");
    mkfs(&img, fat, sector, spc, mb, &[]);
    let model = t.path().join("model");
    {
        let mp = mount(&img, "");
        let r = mp.root().unwrap();
        workload(&r, &model);
        // Everything reads back before unmount too.
        compare_tree(&r, &model);
        drop(r);
        mp.unmount(false).unwrap();
    }
    assert_fsck_clean(&img);
    let out = t.path().join("out");
    mcopy_out(&img, &out);
    assert_same_tree(&out, &model);
    // mtools keeps the modification time we set.
    let mt = std::fs::metadata(out.join("victim"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mt.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        1_600_000_000
    );
    // And a fresh mount reads the same.
    let mp = mount(&img, "ro");
    compare_tree(&mp.root().unwrap(), &model);
    mp.unmount(false).unwrap();
}

#[test]
fn write_fat12() {
    check(12, 512, 8, 14);
}

#[test]
fn write_fat12_4k_sectors() {
    check(12, 4096, 1, 14);
}

#[test]
fn write_fat16() {
    check(16, 512, 4, 32);
}

#[test]
fn write_fat16_4k_sectors() {
    check(16, 4096, 2, 64);
}

#[test]
fn write_fat32() {
    check(32, 512, 1, 64);
}

#[test]
fn write_fat32_4k_sectors_64k_clusters() {
    // 64 KiB clusters need a large (sparse) image to reach FAT32's
    // minimum cluster count, which mtools relies on.
    check(32, 4096, 16, 4200);
}

/// FAT[1]'s clean bit: cleared while mounted read-write, restored at
/// unmount; a dirty image mounts read-only unless forced.
#[test]
fn clean_bit() {
    for (fat, off, bit) in [(16u32, 2usize, 0x8000u32), (32, 4, 0x0800_0000)] {
        let t = TempDir::new("clean");
        let img = t.path().join("img");
        mkfs(&img, fat, 512, 4, 64, &[]);
        let fat1 = |img: &Path| -> u32 {
            let b = std::fs::read(img).unwrap();
            let rsvd = u16::from_le_bytes([b[14], b[15]]) as usize * 512;
            let mut v = [0u8; 4];
            v[..off].copy_from_slice(&b[rsvd + off..rsvd + 2 * off]);
            u32::from_le_bytes(v)
        };
        assert_ne!(fat1(&img) & bit, 0, "mkfs.fat leaves it clean");
        let mp = mount(&img, "");
        assert!(!mp.is_rdonly());
        assert_eq!(fat1(&img) & bit, 0, "dirty while mounted");
        // A second mount of the dirty image: read-only, or read-write with force.
        let mp2 = mount(&img, "");
        assert!(mp2.is_rdonly(), "dirty image must mount read-only");
        mp2.unmount(false).unwrap();
        mp.unmount(false).unwrap();
        assert_ne!(fat1(&img) & bit, 0, "clean after unmount");
        assert_fsck_clean(&img);
        // Make it dirty by hand: forced mounts read-write.
        let mp = mount(&img, "");
        drop(mp); // no unmount: stays dirty
        let mp = mount(&img, "force");
        assert!(!mp.is_rdonly());
        mp.unmount(false).unwrap();
        assert_ne!(fat1(&img) & bit, 0);
    }
}

/// What FAT cannot do gets Linux vfat's errno.
#[test]
fn unsupported_operations() {
    let t = TempDir::new("unsupported");
    let img = t.path().join("img");
    mkfs(&img, 16, 512, 4, 16, &[]);
    let mp = mount(&img, "uid=1000,gid=1000,fmask=022");
    let r = mp.root().unwrap();
    let owner = Cred::new(1000, 1000, vec![]);
    let f = write_file(&r, "f", b"x");
    assert_eq!(r.link(&f, b"hard", &c()), Err(Errno::EPERM));
    assert_eq!(r.symlink(b"sym", b"f", &c()).unwrap_err(), Errno::EPERM);
    assert_eq!(
        r.mknod(b"fifo", VType::Fifo, 0o644, 0, &c()).unwrap_err(),
        Errno::EPERM
    );
    assert_eq!(
        r.mknod(b"dev", VType::Chr, 0o644, 0x101, &c()).unwrap_err(),
        Errno::EPERM
    );
    // chown to another owner: EPERM, even for root; to the same owner: fine.
    assert_eq!(
        f.setattr(
            &SetAttr {
                uid: Some(5),
                ..Default::default()
            },
            &c(),
            false
        ),
        Err(Errno::EPERM)
    );
    assert!(f
        .setattr(
            &SetAttr {
                uid: Some(1000),
                gid: Some(1000),
                ..Default::default()
            },
            &c(),
            false
        )
        .is_ok());
    // chmod: write permission <-> read-only attribute; other changes EPERM.
    f.setattr(
        &SetAttr {
            mode: Some(0o555),
            ..Default::default()
        },
        &owner,
        false,
    )
    .unwrap();
    assert_eq!(f.getattr().unwrap().mode, 0o555);
    assert_eq!(f.open(oflags::O_WRONLY, &owner), Err(Errno::EACCES));
    f.setattr(
        &SetAttr {
            mode: Some(0o755),
            ..Default::default()
        },
        &owner,
        false,
    )
    .unwrap();
    assert_eq!(f.getattr().unwrap().mode, 0o755);
    assert_eq!(
        f.setattr(
            &SetAttr {
                mode: Some(0o700),
                ..Default::default()
            },
            &owner,
            false
        ),
        Err(Errno::EPERM)
    );
    assert_eq!(
        f.setattr(
            &SetAttr {
                mode: Some(0o4755),
                ..Default::default()
            },
            &owner,
            false
        ),
        Err(Errno::EPERM)
    );
    // Names FAT cannot hold.
    for bad in [
        "a:b",
        "x*",
        "q?",
        "<",
        "pipe|",
        "back\\slash",
        "quo\"te",
        "...",
        "ctl\u{1}",
        "trailing ",
        "CON",
        "nul.txt",
        "COM3",
    ] {
        assert_eq!(
            r.create(bad.as_bytes(), 0o644, &c()).unwrap_err(),
            Errno::EINVAL,
            "{bad:?}"
        );
        assert_eq!(
            r.mkdir(bad.as_bytes(), 0o755, &c()).unwrap_err(),
            Errno::EINVAL,
            "{bad:?}"
        );
    }
    assert_eq!(
        r.create(&[0xff, 0xfe], 0o644, &c()).unwrap_err(),
        Errno::EINVAL
    );
    let n256 = "y".repeat(256);
    assert_eq!(
        r.create(n256.as_bytes(), 0o644, &c()).unwrap_err(),
        Errno::ENAMETOOLONG
    );
    // Files end at 4 GiB - 1.
    assert_eq!(
        f.setattr(
            &SetAttr {
                size: Some(1 << 32),
                ..Default::default()
            },
            &c(),
            false
        ),
        Err(Errno::EFBIG)
    );
    assert_eq!(f.write(b"x", 0xFFFF_FFFF, 0, &c()), Err(Errno::EFBIG));
    assert_eq!(f.getattr().unwrap().size, 1);
    // Case-insensitive: creating a case variant is EEXIST.
    assert_eq!(r.create(b"F", 0o644, &c()).unwrap_err(), Errno::EEXIST);
    drop((r, f));
    mp.unmount(false).unwrap();
    assert_fsck_clean(&img);
}

/// Running out of space: ENOSPC, partial writes, a full fixed root.
#[test]
fn enospc() {
    let t = TempDir::new("enospc");
    let img = t.path().join("img");
    mkfs(&img, 12, 512, 4, 1, &["-r", "16"]);
    let mp = mount(&img, "");
    let r = mp.root().unwrap();
    let free = mp.statvfs().unwrap().bfree * 2048;
    let f = r.create(b"fill", 0o644, &c()).unwrap();
    let data = pattern(free as usize + 10000, 5);
    let n = f.write(&data, 0, 0, &c()).unwrap();
    assert_eq!(n as u64, free, "a write stops at the space left");
    assert_eq!(f.write(b"more", n as u64, 0, &c()), Err(Errno::ENOSPC));
    assert_eq!(mp.statvfs().unwrap().bfree, 0);
    // The fixed FAT12 root has 16 slots: fill them.
    let mut made = 1;
    loop {
        match r.create(format!("F{made}").as_bytes(), 0o644, &c()) {
            Ok(_) => made += 1,
            Err(e) => {
                assert_eq!(e, Errno::ENOSPC);
                break;
            }
        }
    }
    // "fill" took two slots (long name + short name), F1..F14 one each.
    assert_eq!(made, 15);
    assert_eq!(read_all(&f), data[..n].to_vec());
    drop((r, f));
    mp.unmount(false).unwrap();
    assert_fsck_clean(&img);
}

/// An open file that is unlinked keeps its data until the last reference
/// goes; then its clusters are free.
#[test]
fn unlinked_while_open() {
    let t = TempDir::new("unlinked");
    let img = t.path().join("img");
    mkfs(&img, 16, 512, 4, 16, &[]);
    let mp = mount(&img, "");
    let r = mp.root().unwrap();
    let before = mp.statvfs().unwrap().bfree;
    let f = write_file(&r, "open file", &pattern(100_000, 9));
    assert!(mp.statvfs().unwrap().bfree < before);
    r.remove(b"open file", &c()).unwrap();
    assert_eq!(r.lookup(b"open file", &c()).unwrap_err(), Errno::ENOENT);
    // A new file in the freed slot gets its own inode number.
    let g = write_file(&r, "open file", b"new");
    assert_ne!(g.ino(), f.ino());
    assert_eq!(read_all(&f), pattern(100_000, 9));
    // No name left: nlink 0 (pjdfstest unlink::open_file_not_freed).
    assert_eq!(f.getattr().unwrap().nlink, 0);
    assert_eq!(g.getattr().unwrap().nlink, 1);
    let d = r.mkdir(b"gone", 0o755, &c()).unwrap();
    assert_eq!(d.getattr().unwrap().nlink, 2);
    r.rmdir(b"gone", &c()).unwrap();
    assert_eq!(d.getattr().unwrap().nlink, 0);
    drop(d);
    drop(f);
    assert_eq!(mp.statvfs().unwrap().bfree, before - 1);
    drop((r, g));
    mp.unmount(false).unwrap();
    assert_fsck_clean(&img);
}

/// Directory semantics around rename and readdir that POSIX callers rely on.
#[test]
fn rename_rules_and_cookies() {
    let t = TempDir::new("renamerules");
    let img = t.path().join("img");
    mkfs(&img, 32, 512, 1, 64, &[]);
    let mp = mount(&img, "");
    let r = mp.root().unwrap();
    let a = r.mkdir(b"a", 0o755, &c()).unwrap();
    let b = a.mkdir(b"b", 0o755, &c()).unwrap();
    // Into its own subtree: EINVAL.
    assert_eq!(r.rename(b"a", &b, b"x", &c()), Err(Errno::EINVAL));
    assert_eq!(r.rename(b"a", &a, b"x", &c()), Err(Errno::EINVAL));
    // Over an empty directory: replaced; over a non-empty one: ENOTEMPTY;
    // directory over file: ENOTDIR; file over directory: EISDIR.
    r.mkdir(b"empty", 0o755, &c()).unwrap();
    let full = r.mkdir(b"full", 0o755, &c()).unwrap();
    write_file(&full, "f", b"f");
    write_file(&r, "file", b"file");
    assert_eq!(r.rename(b"a", &r, b"full", &c()), Err(Errno::ENOTEMPTY));
    assert_eq!(r.rename(b"a", &r, b"file", &c()), Err(Errno::ENOTDIR));
    assert_eq!(r.rename(b"file", &r, b"full", &c()), Err(Errno::EISDIR));
    r.rename(b"a", &r, b"empty", &c()).unwrap();
    assert_eq!(r.lookup(b"a", &c()).unwrap_err(), Errno::ENOENT);
    let e = r.lookup(b"empty", &c()).unwrap();
    assert_eq!(
        e.ino(),
        a.ino(),
        "the moved directory keeps its inode number"
    );
    assert!(e.lookup(b"b", &c()).is_ok());
    // Entries cannot be added to a removed directory.
    let gone = r.mkdir(b"gone", 0o755, &c()).unwrap();
    r.rmdir(b"gone", &c()).unwrap();
    assert_eq!(gone.create(b"x", 0o644, &c()).unwrap_err(), Errno::ENOENT);
    assert_eq!(gone.mkdir(b"x", 0o755, &c()).unwrap_err(), Errno::ENOENT);
    drop(gone);

    // readdir cookies survive removals of entries already returned and
    // additions: every entry present throughout is seen exactly once.
    let d = r.mkdir(b"cookies", 0o755, &c()).unwrap();
    for i in 0..100 {
        write_file(&d, &format!("entry {i}"), b"");
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut off = 0u64;
    let mut round = 0;
    loop {
        let mut batch = Vec::new();
        d.readdir(off, &mut |e| {
            batch.push((String::from_utf8(e.name.to_vec()).unwrap(), e.next_offset));
            batch.len() < 10
        })
        .unwrap();
        if batch.is_empty() {
            break;
        }
        for (n, _) in &batch {
            assert!(seen.insert(n.clone()), "{n} returned twice");
        }
        off = batch.last().unwrap().1;
        // Remove what was just returned, add new ones.
        for (n, _) in &batch {
            if n.starts_with("entry") {
                d.remove(n.as_bytes(), &c()).unwrap();
            }
        }
        write_file(&d, &format!("added {round}"), b"");
        round += 1;
    }
    for i in 0..100 {
        assert!(seen.contains(&format!("entry {i}")), "entry {i} missed");
    }
    drop((r, a, b, e, full, d));
    mp.unmount(false).unwrap();
    assert_fsck_clean(&img);
}

/// FSInfo: an unknown or invalid free count is not trusted, and what we
/// leave behind is the real count (fsck.fat checks it).
#[test]
fn fsinfo_kept_up_to_date() {
    for bad in [u32::MAX, 0x7FFF_FFFF] {
        let t = TempDir::new("fsinfo");
        let img = t.path().join("img");
        mkfs(&img, 32, 512, 1, 64, &[]);
        let mut b = std::fs::read(&img).unwrap();
        let fi = 512 * u16::from_le_bytes([b[48], b[49]]) as usize;
        b[fi + 488..fi + 492].copy_from_slice(&bad.to_le_bytes());
        std::fs::write(&img, &b).unwrap();
        let mp = mount(&img, "");
        let r = mp.root().unwrap();
        write_file(&r, "some data", &pattern(300_000, 1));
        r.mkdir(b"a dir", 0o755, &c()).unwrap();
        drop(r);
        mp.unmount(false).unwrap();
        assert_fsck_clean(&img);
        let b = std::fs::read(&img).unwrap();
        let free = u32::from_le_bytes(b[fi + 488..fi + 492].try_into().unwrap());
        let mp = mount(&img, "ro");
        assert_eq!(free as u64, mp.statvfs().unwrap().bfree);
        mp.unmount(false).unwrap();
    }
}

/// `-o sync`: changes are on the device when the call returns (mtools sees
/// them while the file system is still mounted).
#[test]
fn sync_option() {
    let t = TempDir::new("syncopt");
    let img = t.path().join("img");
    mkfs(&img, 16, 512, 4, 16, &[]);
    let mp = mount(&img, "sync,cache=8m");
    let r = mp.root().unwrap();
    let f = write_file(&r, "synced file.txt", b"on the device\n");
    r.mkdir(b"synced dir", 0o755, &c()).unwrap();
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    run(mtools("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(&img)
        .arg("::synced file.txt")
        .arg(&out));
    assert_eq!(
        std::fs::read(out.join("synced file.txt")).unwrap(),
        b"on the device\n"
    );
    let listing = run(mtools("mdir").arg("-b").arg("-i").arg(&img).arg("::"));
    assert!(listing.contains("synced dir"), "{listing}");
    drop((r, f));
    mp.unmount(false).unwrap();
    assert_fsck_clean(&img);
}

/// One FAT, three FATs: every copy is kept in step (fsck.fat compares them).
#[test]
fn fat_copy_counts() {
    for (fat, nf) in [(16u32, "1"), (16, "3"), (32, "1"), (32, "3"), (12, "3")] {
        let t = TempDir::new("fats");
        let img = t.path().join("img");
        mkfs(
            &img,
            fat,
            512,
            4,
            match fat {
                12 => 6,
                16 => 16,
                _ => 300,
            },
            &["-f", nf],
        );
        let model = t.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        let mp = mount(&img, "");
        let r = mp.root().unwrap();
        for i in 0..20 {
            let name = format!("file {i}");
            let data = pattern(i * 3000, i as u64);
            write_file(&r, &name, &data);
            std::fs::write(model.join(&name), &data).unwrap();
        }
        for i in (0..20).step_by(4) {
            r.remove(format!("file {i}").as_bytes(), &c()).unwrap();
            std::fs::remove_file(model.join(format!("file {i}"))).unwrap();
        }
        drop(r);
        mp.unmount(false).unwrap();
        // fsck.fat handles 1 or 2 FATs; with 3, compare the copies here.
        if nf != "3" {
            assert_fsck_clean(&img);
        }
        let b = std::fs::read(&img).unwrap();
        let g = fs_msdos::format::Geometry::new(
            &fs_msdos::format::Bpb::parse(&b[..512]).unwrap(),
            b.len() as u64,
        )
        .unwrap();
        let copy = |k: u64| {
            let o = (g.fat_offset + k * g.fat_bytes) as usize;
            b[o..o + g.fat_bytes as usize].to_vec()
        };
        for k in 1..g.num_fats as u64 {
            assert!(
                copy(k) == copy(0),
                "FAT{fat} with {nf} FATs: copy {k} differs"
            );
        }
        let out = t.path().join("out");
        mcopy_out(&img, &out);
        assert_same_tree(&out, &model);
    }
}

/// A directory keeps its name index while cached without references
/// (walkers look names up from the root, so the directory goes inactive
/// between entries), within the mount's budget; it stays correct across
/// changes made after it was kept, and is released at reclaim.
#[test]
fn name_index_kept_while_cached() {
    let t = TempDir::new("keptindex");
    let img = t.path().join("img");
    mkfs(&img, 32, 512, 1, 64, &[]);
    init_log();
    let (mp, fs) = fs_msdos::mount(open_dev(&img), &rumpkern::MountArgs::parse("")).unwrap();
    let r = mp.root().unwrap();
    let d = r.mkdir(b"dir", 0o755, &c()).unwrap();
    for i in 0..50 {
        write_file(&d, &format!("File {i}"), b"x");
    }
    drop(d);
    // Kept: the root's and dir's indexes are charged.
    let kept = fs.kept_index_entries();
    assert!(kept >= 50, "kept {kept}");
    // Changes through a new reference to the cached directory use the kept
    // index and keep it right.
    let d = r.lookup(b"DIR", &c()).unwrap();
    d.remove(b"file 7", &c()).unwrap();
    write_file(&d, "New One", b"y");
    assert_eq!(d.lookup(b"file 7", &c()).unwrap_err(), Errno::ENOENT);
    assert_eq!(read_all(&d.lookup(b"new one", &c()).unwrap()), b"y");
    drop(d);
    let d = r.lookup(b"dir", &c()).unwrap();
    assert_eq!(d.lookup(b"FILE 7", &c()).unwrap_err(), Errno::ENOENT);
    assert!(d.lookup(b"file 49", &c()).is_ok());
    assert_eq!(
        d.create(b"NEW ONE", 0o644, &c()).map(|_| ()),
        Err(Errno::EEXIST)
    );
    drop(d);
    // A directory larger than the per-directory limit does not keep it.
    let big = r.mkdir(b"big", 0o755, &c()).unwrap();
    for i in 0..(fs_msdos::fs::KEPT_INDEX_MAX + 10) {
        big.create(format!("f{i}").as_bytes(), 0o644, &c()).unwrap();
    }
    let before = fs.kept_index_entries();
    drop(big);
    assert_eq!(fs.kept_index_entries(), before);
    drop(r);
    mp.unmount(false).unwrap();
    assert_eq!(fs.kept_index_entries(), 0, "released at reclaim");
    assert_fsck_clean(&img);
}
