//! Read-only: images made by mkfs.fat and filled by mcopy -s read back
//! through the VnodeRef wrappers equal the tree, for FAT12/16/32, 512 and
//! 4096-byte sectors and several cluster sizes.

mod common;
use common::*;

use rumpkern::{amode, Cred, Errno, VType};

fn check(fat: u32, sector: u32, spc: u32, mb: u64, big: usize) {
    let t = TempDir::new(&format!("read{fat}-{sector}-{spc}"));
    let tree = t.path().join("tree");
    build_tree(&tree, big);
    let img = t.path().join("img");
    mkfs(&img, fat, sector, spc, mb, &["-n", "MY LABEL"]);
    mcopy_in(&img, &tree);
    let mp = mount(&img, "ro");
    assert_eq!(
        mp.prop("fattype").as_deref(),
        Some(match fat {
            12 => "FAT12",
            16 => "FAT16",
            _ => "FAT32",
        })
    );
    let r = mp.root().unwrap();
    let n = compare_tree(&r, &tree);
    assert!(n > 150, "compared {n} files");
    let sv = mp.statvfs().unwrap();
    assert_eq!(sv.label.as_deref(), Some("MY LABEL"));
    assert_eq!(mp.prop("label").as_deref(), Some("MY LABEL"));
    assert_eq!(sv.frsize, sector * spc);
    assert!(sv.bfree < sv.blocks);
    assert!(sv.readonly);
    drop(r);
    mp.unmount(false).unwrap();
}

#[test]
fn fat12_512_s8() {
    check(12, 512, 8, 14, 2 << 20);
}

#[test]
fn fat12_4096_s1() {
    check(12, 4096, 1, 14, 2 << 20);
}

#[test]
fn fat16_512_s2() {
    check(16, 512, 2, 32, 3 << 20);
}

#[test]
fn fat16_4096_s1() {
    check(16, 4096, 1, 40, 3 << 20);
}

#[test]
fn fat16_512_s64_32k_clusters() {
    check(16, 512, 64, 160, 3 << 20);
}

#[test]
fn fat32_512_s1() {
    check(32, 512, 1, 64, 4 << 20);
}

#[test]
fn fat32_4096_s1() {
    check(32, 4096, 1, 300, 4 << 20);
}

#[test]
fn fat16_512_s128_64k_clusters() {
    check(16, 512, 128, 300, 3 << 20);
}

#[test]
fn fat32_512_s8() {
    check(32, 512, 8, 300, 3 << 20);
}

/// A FAT32 layout with fewer clusters than the specification's minimum
/// (mkfs.fat warns but makes it): still FAT32, as Linux reads it.
#[test]
fn fat32_few_clusters_still_fat32() {
    let t = TempDir::new("few");
    let img = t.path().join("img");
    mkfs(&img, 32, 512, 64, 64, &[]);
    let mp = mount(&img, "ro");
    assert_eq!(mp.prop("fattype").as_deref(), Some("FAT32"));
    assert!(list(&mp.root().unwrap()).is_empty());
    mp.unmount(false).unwrap();
}

/// Modes, owners and times follow the mount options and the attributes.
#[test]
fn attributes_and_options() {
    let t = TempDir::new("attrs");
    let img = t.path().join("img");
    mkfs(&img, 16, 512, 4, 16, &[]);
    let f = t.path().join("f.txt");
    std::fs::write(&f, b"hello").unwrap();
    run(mtools("mcopy").arg("-i").arg(&img).arg(&f).arg("::f.txt"));
    run(mtools("mcopy").arg("-i").arg(&img).arg(&f).arg("::ro.txt"));
    run(mtools("mattrib")
        .arg("-i")
        .arg(&img)
        .arg("+r")
        .arg("::ro.txt"));
    run(mtools("mmd").arg("-i").arg(&img).arg("::d"));

    let mp = mount(&img, "ro,uid=1000,gid=100,fmask=133,dmask=022,tz=UTC");
    let r = mp.root().unwrap();
    let va = r.getattr().unwrap();
    assert_eq!(
        (va.vtype, va.mode, va.uid, va.gid),
        (VType::Dir, 0o755, 1000, 100)
    );
    assert_eq!(va.nlink, 3);
    let fv = r
        .lookup(b"F.TXT", &Cred::root())
        .unwrap()
        .getattr()
        .unwrap();
    assert_eq!((fv.mode, fv.size, fv.nlink), (0o644, 5, 1));
    let rv = r
        .lookup(b"ro.txt", &Cred::root())
        .unwrap()
        .getattr()
        .unwrap();
    assert_eq!(rv.mode, 0o444);
    // The modification time is the one mcopy stored (the host file's), to 2 s.
    let host = std::fs::metadata(&f)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (fv.mtime.sec - host).abs() <= 2,
        "mtime {} vs host {host}",
        fv.mtime.sec
    );
    // Permissions are enforced by the wrappers with these attributes.
    let other = Cred::new(2000, 2000, vec![]);
    let owner = Cred::new(1000, 100, vec![]);
    let fvp = r.lookup(b"f.txt", &owner).unwrap();
    assert_eq!(fvp.access(amode::VWRITE, &other), Err(Errno::EROFS));
    assert!(fvp.access(amode::VREAD, &other).is_ok());
    drop((r, fvp));
    mp.unmount(false).unwrap();

    // umask= sets both masks; tz= shifts the times.
    let mp = mount(&img, "ro,umask=077,tz=+02:00");
    let r = mp.root().unwrap();
    assert_eq!(r.getattr().unwrap().mode, 0o700);
    let fv2 = r
        .lookup(b"f.txt", &Cred::root())
        .unwrap()
        .getattr()
        .unwrap();
    assert_eq!(fv2.mode, 0o700);
    assert_eq!(fv.mtime.sec - fv2.mtime.sec, 7200);
    drop(r);
    mp.unmount(false).unwrap();
}

#[test]
fn lookup_rules() {
    let t = TempDir::new("lookup");
    let img = t.path().join("img");
    mkfs(&img, 32, 512, 1, 40, &[]);
    let f = t.path().join("Some Long Name.Text");
    std::fs::write(&f, b"x").unwrap();
    run(mtools("mcopy").arg("-i").arg(&img).arg(&f).arg("::"));
    let mp = mount(&img, "ro");
    let r = mp.root().unwrap();
    let c = Cred::root();
    let a = r.lookup(b"some long name.text", &c).unwrap();
    let b = r.lookup(b"SOME LONG NAME.TEXT", &c).unwrap();
    assert_eq!(a.ino(), b.ino());
    // The generated short name finds it too.
    let s = r.lookup(b"SOMELO~1.TEX", &c).unwrap();
    assert_eq!(s.ino(), a.ino());
    // Trailing dots are ignored, as on Windows and Linux.
    assert_eq!(
        r.lookup(b"Some Long Name.Text.", &c).unwrap().ino(),
        a.ino()
    );
    assert_eq!(r.lookup(b"nope", &c).unwrap_err(), Errno::ENOENT);
    assert_eq!(r.lookup(b"..", &c).unwrap().ino(), r.ino());
    let names: Vec<String> = list(&r).into_keys().collect();
    assert_eq!(names, vec!["Some Long Name.Text".to_string()]);
    drop((r, a, b, s));
    mp.unmount(false).unwrap();
}

/// A sequential read of a contiguous file reads ahead along the chain:
/// a few large device requests, not one per cluster (the chain must be
/// known past the cluster being read for that).
#[test]
fn sequential_read_is_clustered() {
    let t = TempDir::new("readahead");
    let img = t.path().join("img");
    mkfs(&img, 16, 512, 1, 32, &[]);
    let tree = t.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let data = pattern(3 << 20, 5);
    std::fs::write(tree.join("big"), &data).unwrap();
    mcopy_in(&img, &tree);
    init_log();
    let (mp, fs) = fs_msdos::mount(open_dev(&img), &rumpkern::MountArgs::parse("")).unwrap();
    let f = mp.root().unwrap().lookup(b"big", &root()).unwrap();
    let before = fs.cache.stats().dev_reads;
    let mut buf = vec![0u8; 128 << 10];
    let mut got = Vec::new();
    loop {
        let n = f.read(&mut buf, got.len() as u64).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data, "contents differ");
    let reads = fs.cache.stats().dev_reads - before;
    // 6144 clusters of 512 bytes, read ahead at most 1 MiB at a time.
    assert!(reads <= 16, "{reads} device reads for 3 MiB");
    drop(f);
    mp.unmount(false).unwrap();
}
