//! Whole-disk images: an MBR or GPT partition table (written by a few lines
//! here; sfdisk is not installed), a FAT file system made in a partition
//! with `mkfs.fat --offset`, mounted through the table.

mod common;
use common::*;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use rumpkern::{Cred, Errno, FsType, MountArgs};

fn put_mbr_entry(img: &Path, slot: usize, ptype: u8, lba: u32, sectors: u32) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut e = [0u8; 16];
    e[4] = ptype;
    e[8..12].copy_from_slice(&lba.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    f.seek(SeekFrom::Start(446 + 16 * slot as u64)).unwrap();
    f.write_all(&e).unwrap();
    f.seek(SeekFrom::Start(510)).unwrap();
    f.write_all(&[0x55, 0xAA]).unwrap();
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A GPT (protective MBR, header at LBA 1, 128 entries at LBA 2) with the
/// given (first, last) LBAs, as Microsoft basic data partitions.
fn write_gpt(img: &Path, parts: &[(u64, u64)]) {
    let size = std::fs::metadata(img).unwrap().len();
    let last_lba = size / 512 - 1;
    put_mbr_entry(img, 0, 0xEE, 1, (last_lba.min(u32::MAX as u64)) as u32);
    let basic_data: [u8; 16] = [
        0xA2, 0xA0, 0xD0, 0xEB, 0xE5, 0xB9, 0x33, 0x44, 0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99,
        0xC7,
    ];
    let mut entries = vec![0u8; 128 * 128];
    for (i, &(first, last)) in parts.iter().enumerate() {
        let e = &mut entries[i * 128..(i + 1) * 128];
        e[0..16].copy_from_slice(&basic_data);
        e[16] = i as u8 + 1; // unique GUID, enough for us
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
    }
    let mut h = vec![0u8; 92];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&1u64.to_le_bytes());
    h[32..40].copy_from_slice(&last_lba.to_le_bytes());
    h[40..48].copy_from_slice(&34u64.to_le_bytes());
    h[48..56].copy_from_slice(&(last_lba - 33).to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&128u32.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
    let hc = crc32(&h);
    h[16..20].copy_from_slice(&hc.to_le_bytes());
    let mut f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.seek(SeekFrom::Start(512)).unwrap();
    f.write_all(&h).unwrap();
    f.seek(SeekFrom::Start(1024)).unwrap();
    f.write_all(&entries).unwrap();
}

/// mkfs.fat of `sectors` 512-byte sectors at LBA `lba` of `img`.
fn mkfs_at(img: &Path, fat: u32, lba: u64, sectors: u64) {
    run(std::process::Command::new("mkfs.fat")
        .arg("-F")
        .arg(fat.to_string())
        .arg(format!("--offset={lba}"))
        .arg("-n")
        .arg("PART")
        .arg(img)
        .arg((sectors / 2).to_string()));
}

/// Copy a file into partition at byte `off` with mtools' `@@offset`.
fn mcopy_part(img: &Path, off: u64, src: &Path, dst: &str) {
    run(mtools("mcopy")
        .arg("-i")
        .arg(format!("{}@@{off}", img.display()))
        .arg(src)
        .arg(dst));
}

#[test]
fn mbr_first_fat_partition_and_choice() {
    let t = TempDir::new("mbr");
    let img = t.path().join("disk");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    // Partition 1: not FAT (zeroes); partition 2: FAT16.
    put_mbr_entry(&img, 0, 0x83, 2048, 4096);
    put_mbr_entry(&img, 1, 0x0E, 8192, 65536);
    mkfs_at(&img, 16, 8192, 65536);
    let src = t.path().join("hello.txt");
    std::fs::write(&src, b"in a partition\n").unwrap();
    mcopy_part(&img, 8192 * 512, &src, "::hello.txt");
    let mbr_before = std::fs::read(&img).unwrap()[..8192 * 512].to_vec();

    assert!(fs_msdos::MSDOSFS.probe(&*open_dev(&img)));
    // Default: the first partition holding FAT.
    let mp = mount(&img, "");
    assert_eq!(mp.prop("label").as_deref(), Some("PART"));
    let r = mp.root().unwrap();
    assert_eq!(
        read_all(&r.lookup(b"hello.txt", &Cred::root()).unwrap()),
        b"in a partition\n"
    );
    let f = r.create(b"written here.txt", 0o644, &Cred::root()).unwrap();
    f.write(b"through the table\n", 0, 0, &Cred::root())
        .unwrap();
    drop((r, f));
    mp.unmount(false).unwrap();
    // Nothing outside the partition changed.
    assert_eq!(&std::fs::read(&img).unwrap()[..8192 * 512], &mbr_before[..]);
    let out = t.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    run(mtools("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{}", img.display(), 8192 * 512))
        .arg("::written here.txt")
        .arg(&out));
    assert_eq!(
        std::fs::read(out.join("written here.txt")).unwrap(),
        b"through the table\n"
    );
    // fsck.fat on the partition's bytes.
    let part = t.path().join("part");
    std::fs::write(
        &part,
        &std::fs::read(&img).unwrap()[8192 * 512..(8192 + 65536) * 512],
    )
    .unwrap();
    assert_fsck_clean(&part);

    // partition=2 chooses it; partition=1 is not FAT; partition=3 does not exist.
    let mp = mount(&img, "ro,partition=2");
    assert!(mp
        .root()
        .unwrap()
        .lookup(b"HELLO.TXT", &Cred::root())
        .is_ok());
    mp.unmount(false).unwrap();
    for p in ["partition=1", "partition=3"] {
        let e = fs_msdos::mount(open_dev(&img), &MountArgs::parse(&format!("ro,{p}"))).err();
        assert_eq!(e, Some(Errno::EINVAL), "{p}");
    }
}

#[test]
fn gpt_partition() {
    let t = TempDir::new("gpt");
    let img = t.path().join("disk");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(80 << 20)
        .unwrap();
    let (first, n) = (2048u64, 131072u64);
    write_gpt(&img, &[(first, first + n - 1)]);
    mkfs_at(&img, 32, first, n);
    let src = t.path().join("f.bin");
    std::fs::write(&src, pattern(70_000, 4)).unwrap();
    mcopy_part(&img, first * 512, &src, "::f.bin");
    assert!(fs_msdos::MSDOSFS.probe(&*open_dev(&img)));
    let mp = mount(&img, "");
    assert_eq!(mp.prop("fattype").as_deref(), Some("FAT32"));
    let r = mp.root().unwrap();
    assert_eq!(
        read_all(&r.lookup(b"f.bin", &Cred::root()).unwrap()),
        pattern(70_000, 4)
    );
    r.mkdir(b"new dir", 0o755, &Cred::root()).unwrap();
    drop(r);
    mp.unmount(false).unwrap();
    let part = t.path().join("part");
    std::fs::write(
        &part,
        &std::fs::read(&img).unwrap()[(first * 512) as usize..((first + n) * 512) as usize],
    )
    .unwrap();
    assert_fsck_clean(&part);
    let mp = mount(&img, "ro,partition=1");
    assert!(mp.root().unwrap().lookup(b"NEW DIR", &Cred::root()).is_ok());
    mp.unmount(false).unwrap();
}

#[test]
fn not_fat_is_refused() {
    let t = TempDir::new("notfat");
    let img = t.path().join("zero");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    assert!(!fs_msdos::MSDOSFS.probe(&*open_dev(&img)));
    assert_eq!(
        fs_msdos::mount(open_dev(&img), &MountArgs::parse("ro")).err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        fs_msdos::MSDOSFS.mount(None, &MountArgs::default()).err(),
        Some(Errno::EINVAL)
    );
}
