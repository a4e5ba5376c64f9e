//! rump_msdos end to end through real FUSE, judged by others: images made
//! by `mkfs.fat -F 12/16/32` and filled with `mcopy -s` read back equal to
//! their source tree (`diff -r`); after a write workload through the mount
//! (applied in the same steps to a reference tree on the host), `fsck.fat
//! -n` is clean and `mcopy -s` extracts exactly the reference tree; a
//! whole-disk MBR image mounts its first FAT partition or the one chosen
//! with `-o partition=N`; `-o ro` gives EROFS; link, symlink and mknod give
//! EPERM. Needs dosfstools and mtools.

mod support;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

/// mtools with UTF-8 names, no geometry checks and times in UTC (the
/// driver's default zone).
fn mtools(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    c.env("TZ", "UTC")
        .env("LC_ALL", "C.UTF-8")
        .env("LANG", "C.UTF-8")
        .env("MTOOLS_SKIP_CHECK", "1");
    c
}

/// The source tree: long (up to 255 characters), mixed-case and non-ASCII
/// names, a hidden file, names with several dots, a 22-level deep path,
/// empty files and directories, sizes around sector and cluster
/// boundaries, a directory of 300 entries and one large file.
fn build_tree(root: &Path, large: usize) {
    fs::create_dir_all(root).unwrap();
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    w("Mixed Case Name.TXT", b"mixed\n");
    w("README", b"upper-case short name\n");
    w("lower.txt", b"lower-case short name\n");
    w("CamelCase", b"camel\n");
    w(&format!("{}.txt", "a".repeat(200)), b"long\n");
    w(&format!("{}.bin", "N".repeat(251)), b"255 characters\n");
    w("Grüße und Überraschungen.txt", "ä ö ü ß\n".as_bytes());
    w("日本語のファイル名.txt", "日本語\n".as_bytes());
    w("naïve café/Résumé.TXT", b"accents\n");
    w("naïve café/ΕΛΛΗΝΙΚΆ ελληνικά.doc", b"greek\n");
    w(".hidden", b"dot file\n");
    w("archive.tar.gz", b"several dots\n");
    w(
        "with space and ; + , = [ ] chars",
        b"chars long names allow\n",
    );
    w("empty.dat", b"");
    fs::create_dir_all(root.join("Empty Dir")).unwrap();
    let mut deep = String::new();
    for i in 0..22 {
        deep.push_str(&format!("Level {i:02} Deep/"));
    }
    w(&format!("{deep}bottom.txt"), b"deep\n");
    w(&format!("{deep}empty"), b"");
    for (i, size) in [1usize, 511, 512, 513, 4095, 4096, 4097, 65537, 300_000]
        .iter()
        .enumerate()
    {
        w(
            &format!("sizes/size {i} = {size}"),
            &pattern(i as u64, *size),
        );
    }
    for i in 0..300 {
        w(
            &format!("Many/file with a longish name {i:04}.txt"),
            format!("{i}\n").as_bytes(),
        );
    }
    w("large.bin", &pattern(99, large));
}

/// A sparse image of `mb` MiB formatted as FAT`fat`, filled from `tree`
/// with `mcopy -s`.
fn fat_image(img: &Path, fat: u32, mb: u64, tree: &Path) {
    let _ = fs::remove_file(img);
    fs::File::create(img).unwrap().set_len(mb << 20).unwrap();
    must(
        Command::new("mkfs.fat")
            .arg("-F")
            .arg(fat.to_string())
            .arg("-n")
            .arg("RUMPTEST")
            .arg(img),
    );
    let mut c = mtools("mcopy");
    c.arg("-s").arg("-m").arg("-i").arg(img);
    for e in fs::read_dir(tree).unwrap() {
        c.arg(e.unwrap().path());
    }
    must(c.arg("::/"));
}

fn fsck_clean(img: &Path) {
    let o = run_timeout(
        Command::new("fsck.fat").arg("-n").arg(img),
        Duration::from_secs(120),
    );
    assert!(
        o.status.success(),
        "fsck.fat -n {}: {}{}",
        img.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `diff -r` of two trees: names, types and contents.
fn diff_r(a: &Path, b: &Path) {
    let o = run_timeout(
        Command::new("diff").arg("-r").arg(a).arg(b),
        Duration::from_secs(300),
    );
    assert!(
        o.status.success(),
        "diff -r {} {}:\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every path under `d` (relative), sorted, with "/" after directories.
fn listing(d: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut v = Vec::new();
    walk(d, d, &mut v);
    v.sort();
    v
}

/// Extract the whole image with `mcopy -s -n -m` into a fresh directory.
fn mcopy_out(img: &Path, out: &Path) {
    let _ = fs::remove_dir_all(out);
    fs::create_dir_all(out).unwrap();
    must(
        mtools("mcopy")
            .arg("-s")
            .arg("-n")
            .arg("-m")
            .arg("-i")
            .arg(img)
            .arg("::/")
            .arg(out),
    );
}

fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    r.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
}

fn set_mtime(p: &Path, sec: i64) {
    let c = cpath(p);
    let ts = [
        libc::timespec {
            tv_sec: sec,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid path and times.
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) }).expect("utimensat");
}

fn mtime(p: &Path) -> i64 {
    fs::metadata(p).unwrap().mtime()
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        Scratch(temp_dir(tag))
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn mcopy_images_read_back_equal() {
    for (fat, mb, large) in [
        (12u32, 16u64, 3usize << 20),
        (16, 64, 12 << 20),
        (32, 300, 40 << 20),
    ] {
        let sc = Scratch::new(&format!("fatread{fat}"));
        let tree = sc.path("tree");
        build_tree(&tree, large);
        let img = sc.path("img");
        fat_image(&img, fat, mb, &tree);
        let mut g = MountGuard::server_fg(&format!("fat{fat}"), "rump_msdos", &["-o", "ro"], &img);
        diff_r(&tree, &g.mp);
        assert_eq!(listing(&tree), listing(&g.mp), "FAT{fat}: names differ");
        // Lookup ignores case, readdir shows the stored case.
        assert_eq!(fs::read(g.path("mixed case name.txt")).unwrap(), b"mixed\n");
        assert_eq!(
            fs::read(g.path("NAÏVE CAFÉ/résumé.txt")).unwrap(),
            b"accents\n"
        );
        assert_eq!(
            fs::read(g.path("readme")).unwrap(),
            b"upper-case short name\n"
        );
        let st = statvfs(&g.mp);
        assert!(st.f_bsize > 0 && st.f_blocks > 0 && st.f_bfree < st.f_blocks);
        assert_eq!(g.unmount_wait().map(|s| s.success()), Some(true));
        fsck_clean(&img);
    }
}

/// The write workload, applied in the same steps to the mount and to a
/// reference tree on the host. Returns the files whose mtime it set.
fn workload(base: &Path) -> Vec<(String, i64)> {
    let p = |rel: &str| base.join(rel);
    // create + write
    fs::write(p("New File.txt"), pattern(7, 100_000)).unwrap();
    fs::write(p("Neue Größe.bin"), pattern(8, 5000)).unwrap();
    // append
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(p("lower.txt"))
        .unwrap();
    f.write_all(&pattern(9, 70_000)).unwrap();
    drop(f);
    // write in the middle, past the end (zero fill), shrink and extend
    let f = fs::OpenOptions::new()
        .write(true)
        .open(p("sizes/size 8 = 300000"))
        .unwrap();
    f.write_all_at(&pattern(10, 9000), 123_456).unwrap();
    f.write_all_at(b"past the end", 400_000).unwrap();
    drop(f);
    fs::OpenOptions::new()
        .write(true)
        .open(p("large.bin"))
        .unwrap()
        .set_len(1_234_567)
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(p("sizes/size 3 = 513"))
        .unwrap()
        .set_len(20_000)
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(p("sizes/size 6 = 4097"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p("README"))
        .unwrap();
    f.seek(SeekFrom::Start(10)).unwrap();
    f.write_all(b"rewritten\n").unwrap();
    drop(f);
    // mkdir, files in new directories
    fs::create_dir_all(p("Made Here/Sub Dir/Third Level")).unwrap();
    fs::write(p("Made Here/Sub Dir/Third Level/x.txt"), b"new deep file\n").unwrap();
    for i in 0..40 {
        fs::write(
            p(&format!("Made Here/generated entry number {i:03}")),
            pattern(i, (i as usize) * 777),
        )
        .unwrap();
    }
    // renames across directories: files, a directory, over an existing file,
    // a case-only rename
    fs::rename(p("Mixed Case Name.TXT"), p("Made Here/Moved Mixed.TXT")).unwrap();
    fs::rename(p("naïve café"), p("Made Here/Sub Dir/café déplacé")).unwrap();
    fs::rename(
        p("archive.tar.gz"),
        p("Made Here/generated entry number 005"),
    )
    .unwrap();
    fs::rename(
        p("Many/file with a longish name 0100.txt"),
        p("Empty Dir/was in Many.txt"),
    )
    .unwrap();
    // A case-only change goes through another name: rename(2) of
    // "CamelCase" to "camelcase" is a no-op in the kernel's VFS (the lookup
    // of the new name finds the same inode, `source == target`), through
    // FUSE as on Linux vfat itself.
    fs::rename(p("CamelCase"), p("camel.tmp")).unwrap();
    fs::rename(p("camel.tmp"), p("camelcase")).unwrap();
    // rmdir, unlink
    let mut deep = String::new();
    for i in 0..22 {
        deep.push_str(&format!("Level {i:02} Deep/"));
    }
    fs::remove_file(p(&format!("{deep}bottom.txt"))).unwrap();
    fs::remove_file(p(&format!("{deep}empty"))).unwrap();
    fs::remove_dir(p(&deep)).unwrap();
    for i in (0..300).step_by(3) {
        if i != 100 {
            fs::remove_file(p(&format!("Many/file with a longish name {i:04}.txt"))).unwrap();
        }
    }
    fs::remove_file(p("empty.dat")).unwrap();
    fs::create_dir(p("Made Here/to be removed")).unwrap();
    fs::remove_dir(p("Made Here/to be removed")).unwrap();
    // new names in the slots the removals freed
    for i in 0..30 {
        fs::write(p(&format!("Many/refill {i}")), format!("refill {i}\n")).unwrap();
    }
    // an open file unlinked: nlink 0, still readable and writable
    let path = p("open then unlinked");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all(b"still here").unwrap();
    fs::remove_file(&path).unwrap();
    assert_eq!(
        f.metadata().unwrap().nlink(),
        0,
        "fstat after unlink on {}",
        base.display()
    );
    let mut buf = [0u8; 10];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"still here");
    drop(f);
    // utimes (even seconds: FAT keeps 2 s)
    let times = vec![
        ("New File.txt".to_string(), 1_600_000_000),
        ("Made Here/Moved Mixed.TXT".to_string(), 1_000_000_002),
        ("lower.txt".to_string(), 1_700_000_000),
    ];
    for (rel, t) in &times {
        set_mtime(&p(rel), *t);
    }
    times
}

#[test]
fn write_workload_judged_by_fsck_and_mtools() {
    for (fat, mb) in [(12u32, 16u64), (16, 64), (32, 300)] {
        let sc = Scratch::new(&format!("fatwrite{fat}"));
        let tree = sc.path("tree");
        build_tree(&tree, 2 << 20);
        let img = sc.path("img");
        fat_image(&img, fat, mb, &tree);
        let mut g = MountGuard::server_fg(&format!("fatw{fat}"), "rump_msdos", &[], &img);
        let times = workload(&g.mp);
        workload(&tree);
        diff_r(&tree, &g.mp);
        for (rel, t) in &times {
            assert_eq!(
                mtime(&g.path(rel)),
                *t,
                "FAT{fat}: mtime of {rel} through the mount"
            );
        }
        assert_eq!(g.unmount_wait().map(|s| s.success()), Some(true));
        fsck_clean(&img);
        let out = sc.path("out");
        mcopy_out(&img, &out);
        diff_r(&tree, &out);
        assert_eq!(listing(&tree), listing(&out), "FAT{fat}: names differ");
        for (rel, t) in &times {
            assert_eq!(
                mtime(&out.join(rel)),
                *t,
                "FAT{fat}: mtime of {rel} as mtools reads it"
            );
        }
        // And mounted again, the same.
        let g = MountGuard::server_fg(&format!("fatw{fat}b"), "rump_msdos", &["-o", "ro"], &img);
        diff_r(&tree, &g.mp);
    }
}

fn put_mbr_entry(img: &Path, slot: usize, ptype: u8, lba: u32, sectors: u32) {
    let mut f = fs::OpenOptions::new()
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

/// mkfs.fat of `sectors` 512-byte sectors at LBA `lba` of `img`, one file
/// put there with mtools' `@@offset`.
fn fat_partition(img: &Path, fat: u32, lba: u64, sectors: u64, label: &str, file: &Path) {
    must(
        Command::new("mkfs.fat")
            .arg("-F")
            .arg(fat.to_string())
            .arg(format!("--offset={lba}"))
            .arg("-n")
            .arg(label)
            .arg(img)
            .arg((sectors / 2).to_string()),
    );
    must(
        mtools("mcopy")
            .arg("-i")
            .arg(format!("{}@@{}", img.display(), lba * 512))
            .arg(file)
            .arg("::/"),
    );
}

#[test]
fn whole_disk_mbr_image() {
    let sc = Scratch::new("fatmbr");
    let img = sc.path("disk");
    fs::File::create(&img).unwrap().set_len(160 << 20).unwrap();
    // Partition 1: Linux (not FAT), 2: FAT16, 3: FAT32 — as a USB stick
    // someone partitioned by hand.
    put_mbr_entry(&img, 0, 0x83, 2048, 8192);
    put_mbr_entry(&img, 1, 0x0E, 10240, 65536);
    put_mbr_entry(&img, 2, 0x0C, 77824, 200_000);
    fs::create_dir_all(sc.path("src")).unwrap();
    let two = sc.path("src/in partition two.txt");
    fs::write(&two, b"FAT16 in partition 2\n").unwrap();
    let three = sc.path("src/in partition three.txt");
    fs::write(&three, b"FAT32 in partition 3\n").unwrap();
    fat_partition(&img, 16, 10240, 65536, "PARTTWO", &two);
    fat_partition(&img, 32, 77824, 200_000, "PARTTHREE", &three);
    let head = fs::read(&img).unwrap()[..10240 * 512].to_vec();

    // Default: the first partition holding FAT (2).
    let mut g = MountGuard::server_fg("fatmbr", "rump_msdos", &[], &img);
    assert_eq!(
        fs::read(g.path("in partition two.txt")).unwrap(),
        b"FAT16 in partition 2\n"
    );
    assert!(!g.path("in partition three.txt").exists());
    fs::write(g.path("written through the table"), pattern(3, 50_000)).unwrap();
    assert_eq!(g.unmount_wait().map(|s| s.success()), Some(true));
    // -o partition=3 mounts the other one.
    let mut g = MountGuard::server_fg("fatmbr3", "rump_msdos", &["-o", "partition=3"], &img);
    assert_eq!(
        fs::read(g.path("in partition three.txt")).unwrap(),
        b"FAT32 in partition 3\n"
    );
    assert!(!g.path("written through the table").exists());
    fs::create_dir(g.path("dir in three")).unwrap();
    fs::write(g.path("dir in three/file"), b"three\n").unwrap();
    assert_eq!(g.unmount_wait().map(|s| s.success()), Some(true));
    // A partition that is not FAT, or that does not exist: the server refuses.
    for n in ["1", "4", "9"] {
        let mp = temp_dir("fatmbrbad");
        let o = run_timeout(
            Command::new(bin("rump_msdos"))
                .arg("-o")
                .arg(format!("partition={n}"))
                .arg(&img)
                .arg(&mp),
            Duration::from_secs(30),
        );
        assert!(!o.status.success(), "partition={n} mounted");
        assert!(!is_mounted(&mp));
        let _ = fs::remove_dir(&mp);
    }
    // The table and partition 1 untouched; each file system clean, and
    // mtools sees what was written in it.
    assert_eq!(&fs::read(&img).unwrap()[..10240 * 512], &head[..]);
    for (lba, name, want) in [
        (10240u64, "written through the table", pattern(3, 50_000)),
        (77824, "dir in three/file", b"three\n".to_vec()),
    ] {
        let at = format!("{}@@{}", img.display(), lba * 512);
        let o = must(mtools("mtype").arg("-i").arg(&at).arg(format!("::/{name}")));
        assert_eq!(o.stdout, want, "{name}");
        // fsck.fat has no offset option: check a copy of the partition.
        let part = sc.path("part");
        let data = fs::read(&img).unwrap();
        let len = if lba == 10240 { 65536 } else { 200_000 } * 512;
        fs::write(
            &part,
            &data[(lba * 512) as usize..(lba * 512) as usize + len],
        )
        .unwrap();
        fsck_clean(&part);
    }
}

#[test]
fn read_only_mount_gives_erofs() {
    let sc = Scratch::new("fatro");
    let tree = sc.path("tree");
    build_tree(&tree, 100_000);
    let img = sc.path("img");
    fat_image(&img, 16, 32, &tree);
    let before = fs::read(&img).unwrap();
    let mut g = MountGuard::server_fg("fatro", "rump_msdos", &["-o", "ro"], &img);
    assert_eq!(errno_of(fs::write(g.path("new"), b"x")), libc::EROFS);
    assert_eq!(
        errno_of(fs::OpenOptions::new().write(true).open(g.path("README"))),
        libc::EROFS
    );
    assert_eq!(errno_of(fs::create_dir(g.path("newdir"))), libc::EROFS);
    assert_eq!(errno_of(fs::remove_file(g.path("README"))), libc::EROFS);
    assert_eq!(errno_of(fs::remove_dir(g.path("Empty Dir"))), libc::EROFS);
    assert_eq!(
        errno_of(fs::rename(g.path("README"), g.path("Empty Dir/README"))),
        libc::EROFS
    );
    let c = cpath(&g.path("README"));
    // SAFETY: valid path.
    assert_eq!(
        cvt(unsafe { libc::truncate(c.as_ptr(), 0) }),
        Err(libc::EROFS)
    );
    assert_eq!(
        errno_of(fs::set_permissions(
            g.path("README"),
            std::os::unix::fs::PermissionsExt::from_mode(0o444)
        )),
        libc::EROFS
    );
    let st = statvfs(&g.mp);
    assert_ne!(st.f_flag & libc::ST_RDONLY, 0);
    assert_eq!(
        fs::read(g.path("README")).unwrap(),
        b"upper-case short name\n"
    );
    assert_eq!(g.unmount_wait().map(|s| s.success()), Some(true));
    assert!(
        fs::read(&img).unwrap() == before,
        "a read-only mount changed the image"
    );
}

#[test]
fn what_fat_cannot_store_gives_eperm() {
    let sc = Scratch::new("fateperm");
    let img = sc.path("img");
    fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
    must(Command::new("mkfs.fat").arg("-F").arg("16").arg(&img));
    let mut g = MountGuard::server_fg("fateperm", "rump_msdos", &[], &img);
    fs::write(g.path("file"), b"data").unwrap();
    assert_eq!(
        errno_of(fs::hard_link(g.path("file"), g.path("hard"))),
        libc::EPERM
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("file", g.path("sym"))),
        libc::EPERM
    );
    for mode in [
        libc::S_IFIFO | 0o644,
        libc::S_IFCHR | 0o644,
        libc::S_IFBLK | 0o644,
        libc::S_IFSOCK | 0o644,
    ] {
        let c = cpath(&g.path("node"));
        // SAFETY: valid path.
        assert_eq!(
            cvt(unsafe { libc::mknod(c.as_ptr(), mode, 0) }),
            Err(libc::EPERM),
            "mknod {mode:o}"
        );
    }
    // chown to another owner: EPERM; to the same owner: allowed.
    let c = cpath(&g.path("file"));
    // SAFETY: valid path.
    assert_eq!(
        cvt(unsafe { libc::chown(c.as_ptr(), 1000, 1000) }),
        Err(libc::EPERM)
    );
    // SAFETY: valid path.
    assert_eq!(cvt(unsafe { libc::chown(c.as_ptr(), 0, 0) }), Ok(0));
    // chmod: the write bit maps to the read-only attribute; other bits: EPERM.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(g.path("file"), fs::Permissions::from_mode(0o555)).unwrap();
    assert_eq!(fs::metadata(g.path("file")).unwrap().mode() & 0o777, 0o555);
    assert_eq!(
        errno_of(fs::set_permissions(
            g.path("file"),
            fs::Permissions::from_mode(0o4755)
        )),
        libc::EPERM
    );
    fs::set_permissions(g.path("file"), fs::Permissions::from_mode(0o755)).unwrap();
    // None of it left anything behind.
    let names: Vec<_> = fs::read_dir(&g.mp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["file"]);
    assert_eq!(g.unmount_wait().map(|s| s.success()), Some(true));
    fsck_clean(&img);
    let o = must(mtools("mattrib").arg("-i").arg(&img).arg("::/file"));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(" R "),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Read-write mounts leave permission checks to rumpkern unless the root
/// directory is closed to some users (dmask=077: every directory is), where
/// the kernel checks too so that it can cache names; either way a user the
/// masks shut out stays out, even of names root has just used.
#[test]
fn permission_checks_follow_the_masks() {
    let sc = Scratch::new("fatperm");
    let tree = sc.path("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), b"secret").unwrap();
    let img = sc.path("img");
    fat_image(&img, 16, 32, &tree);
    for (opts, kernel_checks) in [("rw", false), ("dmask=077,fmask=177", true)] {
        let mut g = MountGuard::server_fg(&format!("fatperm{kernel_checks}"), "rump_msdos", &["-o", opts], &img);
        let line = mount_line(&g.mp).unwrap();
        assert_eq!(line.contains("default_permissions"), kernel_checks, "{opts}: {line}");
        assert_eq!(fs::read(g.path("d/f")).unwrap(), b"secret");
        let o = as_nobody(&format!("cat {}/d/f", g.mp.display()));
        if kernel_checks {
            assert!(!o.status.success(), "{opts}: nobody read d/f");
            assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
        } else {
            assert_eq!(String::from_utf8_lossy(&o.stdout), "secret", "{opts}");
        }
        assert_eq!(g.unmount_wait().map(|s| s.success()), Some(true));
    }
    fsck_clean(&img);
}
