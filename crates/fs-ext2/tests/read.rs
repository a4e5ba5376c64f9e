//! Images made by the real mke2fs from a source tree, mounted read-only
//! in-process and compared with the tree, entry by entry.

mod common;

use common::*;

fn check(bs: u32, extra: &[&str], big: bool) {
    let t = TempDir::new("read");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    build_tree(&tree, big);
    let img = t.path().join("img");
    mkimage(
        &img,
        Some(&tree),
        if big { 64 * 1024 } else { 32 * 1024 },
        bs,
        extra,
    );
    let mp = mount_img(&img, "ro").expect("mount");
    let root = mp.root().unwrap();
    let n = compare(&tree, &root, true);
    let many = root.lookup(b"many", &cred()).unwrap();
    let flags = iflags(&many);
    if !extra.contains(&"-r") {
        assert!(
            flags & INDEX_FL != 0,
            "the 'many' directory should be hashed (flags {flags:#x})"
        );
    }
    drop(many);
    assert!(n > 400, "only {n} entries compared");
    let st = mp.statvfs().unwrap();
    assert_eq!(st.frsize, bs);
    assert!(st.bfree > 0 && st.bfree < st.blocks);
    drop(root);
    mp.unmount(false).unwrap();
    // A read-only mount writes nothing.
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn block_size_1024_with_20mb_file() {
    check(1024, &[], true);
}

#[test]
fn block_size_2048() {
    check(2048, &[], false);
}

#[test]
fn block_size_4096() {
    check(4096, &[], false);
}

#[test]
fn revision_0() {
    check(1024, &["-r", "0"], false);
}

#[test]
fn no_resize_inode_small_inodes() {
    check(4096, &["-O", "^resize_inode", "-I", "128"], false);
}

#[test]
fn ext3_with_clean_journal_reads() {
    let t = TempDir::new("ext3");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    build_tree(&tree, false);
    let img = t.path().join("img");
    mkimage(&img, Some(&tree), 32 * 1024, 1024, &["-j"]);
    let mp = mount_img(&img, "ro").expect("mount ext3 read-only");
    let root = mp.root().unwrap();
    compare(&tree, &root, true);
}

/// The comparison itself notices a difference (so the tests above can fail).
#[test]
fn comparison_detects_changes() {
    let t = TempDir::new("detect");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    build_tree(&tree, false);
    let img = t.path().join("img");
    mkimage(&img, Some(&tree), 32 * 1024, 4096, &[]);
    let mp = mount_img(&img, "ro").expect("mount");
    let root = mp.root().unwrap();
    std::fs::write(tree.join("sizes/f5000"), b"changed").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compare(&tree, &root, true)));
    assert!(r.is_err(), "a changed file went unnoticed");
}

/// ext4 as mke2fs makes it today (extent, 64bit, flex_bg, metadata_csum,
/// huge_file, dir_nlink, extra_isize, a journal): read-only, read right;
/// read-write refused with EROFS naming the features.
#[test]
fn ext4_reads_read_only() {
    for bs in [1024, 4096] {
        let t = TempDir::new("ext4");
        let tree = t.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        build_tree(&tree, bs == 1024);
        let img = t.path().join("img");
        mkimage_t(&img, Some(&tree), 96 * 1024, bs, "ext4", &[]);
        assert_eq!(mount_img(&img, "rw").err(), Some(rumpkern::Errno::EROFS));
        let r = match fs_ext2::Ext2Fs::open(FileDev::open(&img, false), true, false) {
            Err(r) => r,
            Ok(_) => panic!("ext4 must not mount read-write"),
        };
        assert!(
            r.field.contains("extent") && r.field.contains("flex_bg"),
            "{r}"
        );
        let mp = mount_img(&img, "ro").expect("mount ext4 read-only");
        let root = mp.root().unwrap();
        compare(&tree, &root, true);
        // The fragmented file has a deep extent tree.
        let f = root.lookup(b"fragmented", &cred()).unwrap();
        assert!(iflags(&f) & 0x80000 != 0, "extent flag");
        drop(f);
        drop(root);
        mp.unmount(false).unwrap();
        let (code, out) = e2fsck(&img);
        assert_eq!(code, 0, "{out}");
    }
}

/// 64 KiB blocks (directory record lengths of 65536 are stored as 65535):
/// read, then written and judged by e2fsck (no kernel can mount these on
/// 4 KiB pages).
#[test]
fn block_size_65536() {
    let t = TempDir::new("64k");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    build_tree(&tree, false);
    let img = t.path().join("img");
    mkimage(&img, Some(&tree), 128 * 1024, 65536, &[]);
    let mp = mount_img(&img, "rw").expect("mount");
    let root = mp.root().unwrap();
    compare(&tree, &root, true);
    let c = cred();
    let d = root.mkdir(b"new", 0o755, &c).unwrap();
    for i in 0..300 {
        let f = d
            .create(
                format!("file-{i}-{}", "y".repeat(i % 100)).as_bytes(),
                0o644,
                &c,
            )
            .unwrap();
        f.write(&pattern(i * 1000, i as u32), 0, 0, &c).unwrap();
    }
    for i in (0..300).step_by(3) {
        d.remove(format!("file-{i}-{}", "y".repeat(i % 100)).as_bytes(), &c)
            .unwrap();
    }
    root.remove(b"sparse", &c).unwrap();
    drop((d, root));
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
}

/// statvfs as the kernel's ext2 reports it for the same image (`stat -f`):
/// total blocks after overhead, free, available, inodes, free inodes.
#[test]
fn statvfs_matches_kernel() {
    for (bs, extra) in [
        (1024u32, vec![]),
        (4096, vec!["-m", "10"]),
        (2048, vec!["-O", "^sparse_super,^resize_inode"]),
        (1024, vec!["-O", "meta_bg,^resize_inode"]),
        (4096, vec!["-j"]),
    ] {
        let t = TempDir::new("statvfs");
        let tree = t.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        build_tree(&tree, false);
        let img = t.path().join("img");
        mkimage(&img, Some(&tree), 64 * 1024, bs, &extra);
        let mp = mount_img(&img, "ro").unwrap();
        let ours = mp.statvfs().unwrap();
        mp.unmount(false).unwrap();
        let g = kernel_mount_ro(t.path(), &img);
        let out = run(std::process::Command::new("stat")
            .args(["-f", "-c", "%S %b %f %a %c %d"])
            .arg(&g.0));
        drop(g);
        let k: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(
            vec![
                ours.frsize as u64,
                ours.blocks,
                ours.bfree,
                ours.bavail,
                ours.files,
                ours.ffree
            ],
            k,
            "block size {bs} {extra:?}: ours vs kernel (bsize blocks bfree bavail files ffree)"
        );
    }
}
