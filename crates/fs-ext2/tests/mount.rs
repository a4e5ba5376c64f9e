//! Mount-time behaviour: refused images name the field, features decide
//! read-only or refusal, the clean state and mount count, damaged images
//! give EIO and never a panic.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::*;
use fs_ext2::format::{le16, le32};
use fs_ext2::Ext2Fs;
use rumpkern::{Errno, FsType};

fn poke(img: &Path, off: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn peek(img: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(img).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

fn refusal(img: &Path, rw: bool) -> fs_ext2::Refusal {
    match Ext2Fs::open(FileDev::open(img, !rw), rw, false) {
        Ok(_) => panic!("mount of {} should have been refused", img.display()),
        Err(r) => r,
    }
}

fn debugfs_w(img: &Path, cmd: &str) {
    run_ok(
        Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(cmd)
            .arg(img),
    );
}

/// Output of `debugfs -R cmd`.
fn debugfs(img: &Path, cmd: &str) -> String {
    let out = run(Command::new("debugfs").arg("-R").arg(cmd).arg(img));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn small(t: &TempDir, bs: u32) -> std::path::PathBuf {
    let img = t.path().join("img");
    mkimage(&img, None, 4096, bs, &[]);
    img
}

#[test]
fn zeroed_superblock_is_refused() {
    let t = TempDir::new("zero");
    let img = small(&t, 1024);
    assert!(fs_ext2::EXT2FS.probe(&*FileDev::open(&img, true)));
    poke(&img, 1024, &[0u8; 1024]);
    assert!(!fs_ext2::EXT2FS.probe(&*FileDev::open(&img, true)));
    assert_eq!(refusal(&img, false).field, "s_magic");
    assert_eq!(mount_img(&img, "ro").err(), Some(Errno::EINVAL));
}

#[test]
fn absurd_block_size_is_refused() {
    let t = TempDir::new("bsize");
    let img = small(&t, 1024);
    poke(&img, 1024 + 24, &20u32.to_le_bytes());
    assert_eq!(refusal(&img, false).field, "s_log_block_size");
    assert_eq!(mount_img(&img, "ro").err(), Some(Errno::EINVAL));
}

#[test]
fn block_count_beyond_device_is_refused() {
    let t = TempDir::new("bcount");
    let img = small(&t, 1024);
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(3 << 20).unwrap();
    assert_eq!(refusal(&img, false).field, "s_blocks_count");
}

#[test]
fn inode_table_past_the_end_is_refused() {
    let t = TempDir::new("itable");
    let img = small(&t, 1024);
    // Group descriptor table at block 2 with 1 KiB blocks.
    poke(&img, 2 * 1024 + 8, &100_000u32.to_le_bytes());
    let r = refusal(&img, false);
    assert_eq!(r.field, "group 0 bg_inode_table", "{r}");
    assert_eq!(mount_img(&img, "ro").err(), Some(Errno::EINVAL));
}

#[test]
fn inode_count_mismatch_is_refused() {
    let t = TempDir::new("icount");
    let img = small(&t, 4096);
    let n = le32(&peek(&img, 1024, 4), 0).unwrap();
    poke(&img, 1024, &(n + 1).to_le_bytes());
    assert_eq!(refusal(&img, false).field, "s_inodes_count");
}

#[test]
fn directory_record_length_zero_gives_eio() {
    let t = TempDir::new("reclen");
    let img = small(&t, 1024);
    let root_blk: u64 = debugfs(&img, "blocks /")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Entry 2 ("..") of the root directory: offset 12, rec_len at +4.
    poke(&img, root_blk * 1024 + 12 + 4, &0u16.to_le_bytes());
    let mp = mount_img(&img, "ro").expect("the superblock is fine");
    let root = mp.root().unwrap();
    assert_eq!(root.lookup(b"lost+found", &cred()).err(), Some(Errno::EIO));
    assert_eq!(root.readdir(0, &mut |_| true), Err(Errno::EIO));
}

#[test]
fn block_pointer_past_the_end_gives_eio() {
    let t = TempDir::new("bptr");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), pattern(5000, 1)).unwrap();
    let img = t.path().join("img");
    mkimage(&img, Some(&tree), 4096, 1024, &[]);
    let loc = debugfs(&img, "imap /f");
    // "located at block N, offset 0xOFF"
    let blk: u64 = loc
        .split("located at block ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let off = u64::from_str_radix(loc.split("0x").nth(1).unwrap().trim(), 16).unwrap();
    poke(&img, blk * 1024 + off + 40 + 4, &9_999_999u32.to_le_bytes()); // i_block[1]
    let mp = mount_img(&img, "ro").unwrap();
    let f = mp.root().unwrap().lookup(b"f", &cred()).unwrap();
    let mut buf = vec![0u8; 5000];
    assert_eq!(f.read(&mut buf[..1024], 0).unwrap(), 1024);
    assert_eq!(f.read(&mut buf, 0), Err(Errno::EIO));
}

#[test]
fn dirty_image_mounts_read_only_unless_forced() {
    let t = TempDir::new("dirty");
    let img = small(&t, 1024);
    debugfs_w(&img, "ssv state 0");
    let mp = mount_img(&img, "rw").expect("mount");
    assert!(mp.is_rdonly(), "a dirty image must mount read-only");
    assert!(mp
        .prop("ro_reason")
        .unwrap()
        .contains("not cleanly unmounted"));
    assert_eq!(
        mp.root().unwrap().mkdir(b"x", 0o755, &cred()).err(),
        Some(Errno::EROFS)
    );
    mp.unmount(false).unwrap();
    let mp = mount_img(&img, "rw,force").expect("mount -o force");
    assert!(!mp.is_rdonly());
    mp.root().unwrap().mkdir(b"x", 0o755, &cred()).unwrap();
    mp.unmount(false).unwrap();
    // Errors recorded: read-only too.
    debugfs_w(&img, "ssv state 3");
    let mp = mount_img(&img, "rw").unwrap();
    assert!(mp.is_rdonly());
    assert!(mp.prop("ro_reason").unwrap().contains("errors"));
}

#[test]
fn clean_state_and_mount_count() {
    let t = TempDir::new("state");
    let img = small(&t, 2048);
    let sb = |img: &Path| peek(img, 1024, 1024);
    let count0 = le16(&sb(&img), 52).unwrap();
    assert_eq!(le16(&sb(&img), 58).unwrap() & 1, 1);
    let mp = mount_img(&img, "rw").unwrap();
    // While mounted read-write the image is marked not clean.
    let s = sb(&img);
    assert_eq!(le16(&s, 58).unwrap() & 1, 0, "state while mounted");
    assert_eq!(le16(&s, 52).unwrap(), count0 + 1, "mount count");
    let mtime = le32(&s, 44).unwrap() as i64;
    assert!(
        (mtime - rumpkern::Timespec::now().sec).abs() < 60,
        "mount time"
    );
    mp.root().unwrap().mkdir(b"d", 0o700, &cred()).unwrap();
    mp.unmount(false).unwrap();
    assert_eq!(le16(&sb(&img), 58).unwrap() & 1, 1, "clean after unmount");
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
    // A read-only mount changes nothing.
    let before = sb(&img);
    let mp = mount_img(&img, "ro").unwrap();
    mp.unmount(false).unwrap();
    assert_eq!(before, sb(&img));
}

#[test]
fn features_decide() {
    let t = TempDir::new("feat");
    // ext3 with a journal that needs recovery: read-only only.
    let img = t.path().join("j");
    mkimage(&img, None, 8192, 1024, &["-j"]);
    debugfs_w(&img, "feature needs_recovery");
    let r = refusal(&img, true);
    assert_eq!(
        (r.field.as_str(), r.errno),
        ("needs_recovery", Errno::EROFS),
        "{r}"
    );
    assert!(mount_img(&img, "ro").unwrap().is_rdonly());
    // A read-only compatible feature we do not maintain: read-only only.
    let img = t.path().join("q");
    mkimage(&img, None, 8192, 1024, &["-O", "quota"]);
    let r = refusal(&img, true);
    assert_eq!((r.field.as_str(), r.errno), ("quota", Errno::EROFS), "{r}");
    assert_eq!(mount_img(&img, "rw").err(), Some(Errno::EROFS));
    assert!(mount_img(&img, "ro").is_ok());
    // An incompatible feature we cannot read: refused.
    let img = t.path().join("c");
    mkimage(&img, None, 8192, 1024, &[]);
    debugfs_w(&img, "feature inline_data");
    let r = refusal(&img, false);
    assert_eq!(
        (r.field.as_str(), r.errno),
        ("inline_data", Errno::EINVAL),
        "{r}"
    );
}

#[test]
fn access_time_relatime_and_noatime() {
    use rumpkern::{SetAttr, SetTime, Timespec};
    let t = TempDir::new("atime");
    let img = small(&t, 1024);
    for (opts, updates) in [("rw", true), ("rw,noatime", false)] {
        let mp = mount_img(&img, opts).unwrap();
        let c = cred();
        let root = mp.root().unwrap();
        let f = match root.lookup(b"f", &c) {
            Ok(f) => f,
            Err(_) => root.create(b"f", 0o644, &c).unwrap(),
        };
        f.write(b"data", 0, 0, &c).unwrap();
        let old = SetTime::At(Timespec::new(1_000_000, 0));
        f.setattr(
            &SetAttr {
                atime: Some(old),
                ..Default::default()
            },
            &c,
            false,
        )
        .unwrap();
        let mut b = [0u8; 4];
        f.read(&mut b, 0).unwrap();
        let at = f.getattr().unwrap().atime.sec;
        assert_eq!(at > 1_000_000, updates, "{opts}: atime {at}");
        drop(f);
        drop(root);
        mp.unmount(false).unwrap();
    }
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
}

/// Extended attributes are left intact; deleting a file drops its
/// reference to the attribute block (freed with the last one).
#[test]
fn xattr_blocks_kept_and_released() {
    let t = TempDir::new("xattr");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    for n in ["a", "b", "c"] {
        std::fs::write(tree.join(n), n).unwrap();
        let ok = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import os; os.setxattr('{}', 'user.test', b'value-{n}' * 8)",
                tree.join(n).display()
            ))
            .status()
            .unwrap()
            .success();
        assert!(ok, "setxattr on the host");
    }
    let img = t.path().join("img");
    mkimage(&img, Some(&tree), 4096, 1024, &["-I", "128"]);
    assert!(
        debugfs(&img, "stat a").contains("File ACL: "),
        "an attribute block"
    );
    let mp = mount_img(&img, "rw").unwrap();
    let root = mp.root().unwrap();
    root.remove(b"a", &cred()).unwrap();
    root.rename(b"b", &root, b"b2", &cred()).unwrap();
    drop(root);
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
    let ea = debugfs(&img, "ea_list b2");
    assert!(ea.contains("user.test"), "attributes of b2 kept: {ea}");
}

/// Corruption found on a read-write mount is recorded (s_state ERROR), so
/// the next mount is read-only until e2fsck has run.
#[test]
fn corruption_sets_error_state() {
    let t = TempDir::new("errstate");
    let img = small(&t, 1024);
    let root_blk: u64 = debugfs(&img, "blocks /")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    poke(&img, root_blk * 1024 + 12 + 4, &0u16.to_le_bytes());
    let mp = mount_img(&img, "rw").unwrap();
    assert!(!mp.is_rdonly());
    assert_eq!(
        mp.root().unwrap().lookup(b"x", &cred()).err(),
        Some(Errno::EIO)
    );
    mp.unmount(false).unwrap();
    let state = le16(&peek(&img, 1024, 1024), 58).unwrap();
    assert_eq!(state & 3, 2, "ERROR set, VALID not (state {state:#x})");
    assert!(mount_img(&img, "rw").unwrap().is_rdonly());
}

/// Reads and writes at offsets near the top of the range: no overflow,
/// EFBIG for writes past the largest file, reads past the end are empty.
#[test]
fn extreme_offsets() {
    let t = TempDir::new("offsets");
    let img = small(&t, 1024);
    let mp = mount_img(&img, "rw").unwrap();
    let c = cred();
    let f = mp.root().unwrap().create(b"f", 0o644, &c).unwrap();
    f.write(b"abc", 0, 0, &c).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(f.read(&mut buf, u64::MAX - 10).unwrap(), 0);
    assert_eq!(f.read(&mut buf, i64::MAX as u64).unwrap(), 0);
    assert_eq!(f.write(b"x", u64::MAX - 1, 0, &c), Err(Errno::EFBIG));
    assert_eq!(
        f.write(b"x", 1 << 40, 0, &c),
        Err(Errno::EFBIG),
        "past the triple indirect limit of 1 KiB blocks"
    );
    assert_eq!(
        f.setattr(
            &rumpkern::SetAttr {
                size: Some(1 << 40),
                ..Default::default()
            },
            &c,
            true
        ),
        Err(Errno::EFBIG)
    );
    assert_eq!(f.getattr().unwrap().size, 3);
    drop(f);
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
}

/// chflags: immutable and append-only files (BSD flags mapped to ext2's,
/// as NetBSD does), enforced; e2fsck and debugfs see the ext2 flags.
#[test]
fn immutable_and_append_only() {
    use fs_ext2::vnops::bsdflags::*;
    use rumpkern::types::ioflag::IO_APPEND;
    use rumpkern::{Cred, SetAttr};
    let t = TempDir::new("flags");
    let img = small(&t, 1024);
    let mp = mount_img(&img, "rw").unwrap();
    let c = cred();
    let user = Cred::new(1000, 1000, vec![]);
    let root = mp.root().unwrap();
    let f = root.create(b"imm", 0o666, &c).unwrap();
    f.write(b"data", 0, 0, &c).unwrap();
    let set = |v: &rumpkern::VnodeRef, fl: u32, who: &Cred| {
        v.setattr(
            &SetAttr {
                flags: Some(fl),
                ..Default::default()
            },
            who,
            false,
        )
    };
    set(&f, SF_IMMUTABLE, &c).unwrap();
    assert_eq!(f.getattr().unwrap().flags, SF_IMMUTABLE);
    assert_eq!(f.write(b"x", 0, 0, &c), Err(Errno::EPERM));
    assert_eq!(
        f.setattr(
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
            &c,
            false
        ),
        Err(Errno::EPERM)
    );
    assert_eq!(root.remove(b"imm", &c), Err(Errno::EPERM));
    assert_eq!(root.rename(b"imm", &root, b"other", &c), Err(Errno::EPERM));
    assert_eq!(root.link(&f, b"imm2", &c), Err(Errno::EPERM));
    let a = root.create(b"app", 0o644, &c).unwrap();
    set(&a, SF_APPEND | UF_NODUMP, &c).unwrap();
    assert_eq!(a.write(b"x", 0, 0, &c), Err(Errno::EPERM));
    assert_eq!(a.write(b"one", 0, IO_APPEND, &c).unwrap(), 3);
    assert_eq!(a.write(b"two", 0, IO_APPEND, &c).unwrap(), 3);
    assert_eq!(
        a.setattr(
            &SetAttr {
                size: Some(0),
                ..Default::default()
            },
            &c,
            true
        ),
        Err(Errno::EPERM)
    );
    // Owners may set user flags, only root system flags.
    let u = root.create(b"users", 0o644, &c).unwrap();
    u.setattr(
        &SetAttr {
            uid: Some(1000),
            gid: Some(1000),
            ..Default::default()
        },
        &c,
        false,
    )
    .unwrap();
    set(&u, UF_NODUMP, &user).unwrap();
    assert_eq!(set(&u, SF_APPEND, &user), Err(Errno::EPERM));
    drop((f, a, u, root));
    mp.unmount(false).unwrap();
    assert!(
        debugfs(&img, "stat imm").contains("Flags: 0x10"),
        "EXT2_IMMUTABLE_FL on disk"
    );
    assert!(
        debugfs(&img, "stat app").contains("Flags: 0x60"),
        "EXT2_APPEND_FL|EXT2_NODUMP_FL on disk"
    );
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
    // Only root clears system flags; then everything works again.
    let mp = mount_img(&img, "rw").unwrap();
    let root = mp.root().unwrap();
    let f = root.lookup(b"imm", &c).unwrap();
    set(&f, 0, &c).unwrap();
    f.write(b"x", 0, 0, &c).unwrap();
    drop(f);
    root.remove(b"imm", &c).unwrap();
}

/// An ext3 image whose journal needs recovery: read-only mounts replay the
/// committed transactions in memory (revokes honoured) and see what
/// e2fsck's recovery produces; the image itself is not changed.
#[test]
fn journal_replayed_in_memory_read_only() {
    let t = TempDir::new("journal");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), b"original content\n").unwrap();
    std::fs::write(tree.join("r"), b"revoked stays\n").unwrap();
    let img = t.path().join("img");
    mkimage_t(&img, Some(&tree), 8192, 1024, "ext3", &[]);
    let fblk: u64 = debugfs(&img, "blocks /f")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let rblk: u64 = debugfs(&img, "blocks /r")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let root_blk: u64 = debugfs(&img, "blocks /")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // New contents: f's data, a root directory block where "f" is renamed
    // "g" (a metadata block), and r's data (revoked by a later transaction).
    let mut newf = b"journaled content\n".to_vec();
    newf.resize(1024, 0);
    let mut dirblk = peek(&img, root_blk * 1024, 1024);
    let mut off = 0;
    while off < 1024 {
        let rec = le16(&dirblk, off + 4).unwrap() as usize;
        if dirblk[off + 6] == 1 && dirblk[off + 8] == b'f' {
            dirblk[off + 8] = b'g';
        }
        off += rec.max(8);
    }
    let mut newr = b"should not appear\n".to_vec();
    newr.resize(1024, 0);
    // `jw -b A,B FILE` takes the blocks' new contents from FILE, in order.
    let mut both = newf.clone();
    both.extend_from_slice(&dirblk);
    std::fs::write(t.path().join("newf_dir"), &both).unwrap();
    std::fs::write(t.path().join("newr"), &newr).unwrap();
    let script = format!(
        "jo\njw -b {fblk},{root_blk} {}\njc\njo\njw -b {rblk} {}\njc\njo\njw -r {rblk}\njc\n",
        t.path().join("newf_dir").display(),
        t.path().join("newr").display()
    );
    std::fs::write(t.path().join("script"), &script).unwrap();
    let out = run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(t.path().join("script"))
        .arg(&img));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&run(Command::new("dumpe2fs").arg("-h").arg(&img)).stdout)
            .contains("needs_recovery")
    );
    let before = std::fs::read(&img).unwrap();

    // Read-write is refused; read-only replays.
    assert_eq!(mount_img(&img, "rw").err(), Some(Errno::EROFS));
    let mp = mount_img(&img, "ro").unwrap();
    let root = mp.root().unwrap();
    assert_eq!(
        root.lookup(b"f", &cred()).err(),
        Some(Errno::ENOENT),
        "the journaled directory block renamed f"
    );
    let g = root.lookup(b"g", &cred()).unwrap();
    assert_eq!(read_all(&g), b"journaled content"); // 17 bytes: the old size
    let r = root.lookup(b"r", &cred()).unwrap();
    assert_eq!(read_all(&r), b"revoked stays\n");
    drop((g, r, root));
    mp.unmount(false).unwrap();
    assert!(
        std::fs::read(&img).unwrap() == before,
        "a read-only mount changed the image"
    );

    // e2fsck's recovery agrees.
    let out = run(Command::new("e2fsck").arg("-fy").arg(&img));
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mp = mount_img(&img, "ro").unwrap();
    let root = mp.root().unwrap();
    assert_eq!(
        read_all(&root.lookup(b"g", &cred()).unwrap())[..17],
        b"journaled content"[..]
    );
    assert_eq!(
        read_all(&root.lookup(b"r", &cred()).unwrap()),
        b"revoked stays\n"
    );
}

/// Times beyond what an inode holds are clamped (as Linux does): 2038 in
/// 128-byte inodes; nanoseconds and 2446 in large ones.
#[test]
fn time_limits() {
    use rumpkern::{SetAttr, SetTime, Timespec};
    for (isize, want_max, nsec) in [
        ("128", i32::MAX as i64, 0u32),
        ("256", i32::MIN as i64 + (1 << 34) - 1, 999_999_999),
    ] {
        let t = TempDir::new("times");
        let img = t.path().join("img");
        mkimage(&img, None, 4096, 1024, &["-I", isize]);
        let mp = mount_img(&img, "rw").unwrap();
        let c = cred();
        let f = mp.root().unwrap().create(b"f", 0o644, &c).unwrap();
        let far = SetTime::At(Timespec::new(1 << 40, 123_456_789));
        let near = SetTime::At(Timespec::new(1_700_000_000, 123_456_789));
        f.setattr(
            &SetAttr {
                mtime: Some(far),
                atime: Some(near),
                ..Default::default()
            },
            &c,
            false,
        )
        .unwrap();
        let va = f.getattr().unwrap();
        assert_eq!(
            (va.mtime.sec, va.mtime.nsec),
            (want_max, nsec),
            "-I {isize}"
        );
        assert_eq!(va.atime.nsec, if isize == "256" { 123_456_789 } else { 0 });
        drop(f);
        mp.unmount(false).unwrap();
        let mp = mount_img(&img, "ro").unwrap();
        let va = mp
            .root()
            .unwrap()
            .lookup(b"f", &c)
            .unwrap()
            .getattr()
            .unwrap();
        assert_eq!(
            (va.mtime.sec, va.mtime.nsec),
            (want_max, nsec),
            "-I {isize} after remount"
        );
        assert_eq!(va.atime.sec, 1_700_000_000);
    }
}

/// errors=remount-ro: a corruption met on a read-write mount turns the
/// mount read-only at once (EROFS afterwards); the error state is saved.
#[test]
fn errors_remount_ro() {
    let t = TempDir::new("errorsro");
    let img = small(&t, 1024);
    let root_blk: u64 = debugfs(&img, "blocks /")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    poke(&img, root_blk * 1024 + 12 + 4, &0u16.to_le_bytes());
    assert_eq!(
        mount_img(&img, "rw,errors=bogus").err(),
        Some(Errno::EINVAL)
    );
    let mp = mount_img(&img, "rw,errors=remount-ro").unwrap();
    let root = mp.root().unwrap();
    assert_eq!(root.lookup(b"x", &cred()).err(), Some(Errno::EIO));
    assert!(mp.is_rdonly(), "remounted read-only");
    assert_eq!(root.mkdir(b"d", 0o755, &cred()).err(), Some(Errno::EROFS));
    drop(root);
    mp.unmount(false).unwrap();
    assert_eq!(
        le16(&peek(&img, 1024, 1024), 58).unwrap() & 3,
        2,
        "ERROR recorded"
    );
    // errors=continue (the default from mke2fs): stays writable.
    let mp = mount_img(&img, "rw,force,errors=continue").unwrap();
    let root = mp.root().unwrap();
    assert_eq!(root.lookup(b"x", &cred()).err(), Some(Errno::EIO));
    assert!(!mp.is_rdonly());
}
