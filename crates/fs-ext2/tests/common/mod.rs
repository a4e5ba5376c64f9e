//! Shared test helpers: a file-backed block device, temporary
//! directories, a source tree with every kind of file, image creation with
//! the real mke2fs, and a comparison walk through the vnode wrappers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rumpkern::dev::BlockDevice;
use rumpkern::{Cred, Mount, MountArgs, VType, VnodeRef};

/// An image file as a block device.
pub struct FileDev {
    f: File,
    size: u64,
    ro: bool,
}

impl FileDev {
    pub fn open(p: &Path, ro: bool) -> Arc<dyn BlockDevice> {
        let f = OpenOptions::new()
            .read(true)
            .write(!ro)
            .open(p)
            .expect("open image");
        let size = f.metadata().unwrap().len();
        Arc::new(FileDev { f, size, ro })
    }
}

fn ioerr(e: std::io::Error) -> rumpuser::Error {
    rumpuser::Error(e.raw_os_error().unwrap_or(5))
}

impl BlockDevice for FileDev {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> rumpuser::RuResult<()> {
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.size)
        {
            return Err(rumpuser::Error(5));
        }
        self.f.read_exact_at(buf, off).map_err(ioerr)
    }
    fn write_at(&self, off: u64, buf: &[u8]) -> rumpuser::RuResult<()> {
        if self.ro {
            return Err(rumpuser::Error(30));
        }
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.size)
        {
            return Err(rumpuser::Error(5));
        }
        self.f.write_all_at(buf, off).map_err(ioerr)
    }
    fn flush(&self) -> rumpuser::RuResult<()> {
        self.f.sync_data().map_err(ioerr)
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn is_read_only(&self) -> bool {
        self.ro
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "fs-ext2-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    out
}

pub fn run_ok(cmd: &mut Command) {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deterministic file content.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

fn set_mtime(p: &Path, sec: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(sec);
    let f = File::open(p).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// Build the source tree: long names, deep paths, hard links, fast and
/// slow symlinks, sparse files (one reaching triple indirect blocks with
/// 1 KiB blocks), a 20 MB file, a fifo, device nodes, odd modes and owners.
pub fn build_tree(root: &Path, big: bool) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    };
    w("empty", b"");
    w("one", b"x");
    for (i, n) in [
        1023usize, 1024, 1025, 4095, 4096, 4097, 5000, 65536, 100_000,
    ]
    .iter()
    .enumerate()
    {
        w(&format!("sizes/f{n}"), &pattern(*n, i as u32));
    }
    let long = "L".repeat(255);
    w(&format!("longnames/{long}"), b"long name");
    w(&format!("longnames/{}", "m".repeat(200)), b"m");
    let deep: Vec<String> = (0..30)
        .map(|i| format!("d{i:02}_{}", "x".repeat(20)))
        .collect();
    w(&format!("{}/leaf", deep.join("/")), b"deep leaf");
    w("links/orig", b"hard linked");
    std::fs::hard_link(root.join("links/orig"), root.join("links/second")).unwrap();
    std::fs::create_dir_all(root.join("other")).unwrap();
    std::fs::hard_link(root.join("links/orig"), root.join("other/third")).unwrap();
    std::os::unix::fs::symlink("orig", root.join("links/fast")).unwrap();
    std::os::unix::fs::symlink("a".repeat(59), root.join("links/fast59")).unwrap();
    std::os::unix::fs::symlink("b".repeat(60), root.join("links/slow60")).unwrap();
    std::os::unix::fs::symlink(format!("/{}", "c/".repeat(150)), root.join("links/slow301"))
        .unwrap();
    std::os::unix::fs::symlink("../sizes/f1023", root.join("links/rel")).unwrap();
    // Sparse files.
    {
        let f = File::create(root.join("sparse")).unwrap();
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(b"middle", 3 << 20).unwrap();
        f.write_all_at(b"end", (10 << 20) - 3).unwrap();
        let f = File::create(root.join("sparse_tind")).unwrap();
        f.write_all_at(b"dind", 20 << 20).unwrap();
        f.write_all_at(b"tind", 70 << 20).unwrap();
        f.set_len(80 << 20).unwrap();
        // Many small pieces: a deep extent tree on ext4, scattered
        // indirect blocks on ext2.
        let f = File::create(root.join("fragmented")).unwrap();
        for k in 0..1500u64 {
            f.write_all_at(&pattern(100, k as u32), k * 8192 + (k % 7) * 100)
                .unwrap();
        }
        let f = File::create(root.join("hole_only")).unwrap();
        f.set_len(123457).unwrap();
    }
    if big {
        let mut f = File::create(root.join("big20m")).unwrap();
        for i in 0..20 {
            f.write_all(&pattern(1 << 20, 100 + i)).unwrap();
        }
    }
    run_ok(Command::new("mkfifo").arg(root.join("fifo")));
    run_ok(
        Command::new("mknod")
            .arg(root.join("null"))
            .args(["c", "1", "3"]),
    );
    run_ok(
        Command::new("mknod")
            .arg(root.join("blk"))
            .args(["b", "7", "200"]),
    );
    // Modes and owners.
    std::fs::set_permissions(root.join("one"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(root.join("sticky")).unwrap();
    std::fs::set_permissions(root.join("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(root.join("sizes/f1025"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(root.join("links/fast"), Some(42), Some(43)).unwrap();
    std::os::unix::fs::chown(root.join("other"), Some(70000), Some(80000)).unwrap();
    // Many entries in one directory (several directory blocks; hashed
    // with dir_index).
    for i in 0..400 {
        w(
            &format!("many/entry_{i:04}_{}", "n".repeat(i % 40)),
            format!("{i}").as_bytes(),
        );
    }
    // Times, bottom-up so that directory times stay.
    let mut all = Vec::new();
    collect(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (k, p) in all.iter().enumerate() {
        let md = std::fs::symlink_metadata(p).unwrap();
        if md.file_type().is_symlink() || md.file_type().is_fifo_like() {
            continue;
        }
        set_mtime(p, 1_000_000_000 + k as u64 * 7919);
    }
    set_mtime(root, 1_200_000_000);
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo() || self.is_char_device() || self.is_block_device() || self.is_socket()
    }
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let q = e.path();
        out.push(q.clone());
        if e.file_type().unwrap().is_dir() {
            collect(&q, out);
        }
    }
}

/// Make an ext2 image of `tree` with mke2fs.
pub fn mkimage(img: &Path, tree: Option<&Path>, size_kb: u64, bs: u32, extra: &[&str]) {
    mkimage_t(img, tree, size_kb, bs, "ext2", extra)
}

/// Make an image of type `fstype` (ext2, ext3, ext4) of `tree` with mke2fs.
pub fn mkimage_t(
    img: &Path,
    tree: Option<&Path>,
    size_kb: u64,
    bs: u32,
    fstype: &str,
    extra: &[&str],
) {
    let mut c = Command::new("mke2fs");
    c.args(["-q", "-F", "-t", fstype, "-b", &bs.to_string()]);
    c.args(extra);
    if let Some(t) = tree {
        c.arg("-d").arg(t);
    }
    c.arg(img).arg(format!("{size_kb}k"));
    run_ok(&mut c);
    if tree.is_some() {
        // mke2fs -d writes linear directories; e2fsck -D builds the hashed
        // indexes (dir_index), so the htree case is read and written too.
        let out = run(Command::new("e2fsck").arg("-fyD").arg(img));
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "e2fsck -fyD: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// EXT2_INDEX_FL (hashed directory) in an inode's `i_flags`.
pub const INDEX_FL: u32 = 0x1000;

/// The on-disk `i_flags` of a vnode of this driver.
pub fn iflags(vp: &VnodeRef) -> u32 {
    vp.data::<fs_ext2::Ext2Node>()
        .expect("an ext2 vnode")
        .inode()
        .flags
}

pub fn mount_img(img: &Path, opts: &str) -> rumpkern::KResult<Arc<Mount>> {
    let _ = env_logger::builder().is_test(true).try_init();
    let args = MountArgs::parse(opts);
    let dev = FileDev::open(img, args.rdonly);
    rumpkern::FsType::mount(&fs_ext2::EXT2FS, Some(dev), &args)
}

pub fn cred() -> Cred {
    Cred::root()
}

/// Names in directory `vp` (without `.` and `..`), through readdir with a
/// small buffer so that cookies are exercised.
pub fn list(vp: &VnodeRef) -> BTreeMap<Vec<u8>, (u64, VType)> {
    let mut out = BTreeMap::new();
    let mut off = 0u64;
    let mut dots = 0;
    loop {
        let mut got = 0;
        let mut next = off;
        vp.readdir(off, &mut |e| {
            if got == 7 {
                return false;
            }
            got += 1;
            next = e.next_offset;
            if e.name == b"." || e.name == b".." {
                dots += 1;
            } else {
                assert!(
                    out.insert(e.name.to_vec(), (e.ino, e.vtype)).is_none(),
                    "duplicate entry {:?}",
                    String::from_utf8_lossy(e.name)
                );
            }
            true
        })
        .expect("readdir");
        if got == 0 {
            break;
        }
        off = next;
    }
    assert_eq!(dots, 2, ". and .. must be listed once each");
    out
}

/// Read a whole file through the wrapper.
pub fn read_all(vp: &VnodeRef) -> Vec<u8> {
    let size = vp.getattr().unwrap().size as usize;
    let mut out = vec![0u8; size];
    let mut off = 0;
    while off < size {
        let n = vp
            .read(&mut out[off..(off + 777_777).min(size)], off as u64)
            .expect("read");
        assert!(n > 0, "short read at {off} of {size}");
        off += n;
    }
    let mut extra = [0u8; 10];
    assert_eq!(
        vp.read(&mut extra, size as u64).unwrap(),
        0,
        "read past EOF"
    );
    out
}

/// Compare the tree under `src` with directory `vp`, recursively: names,
/// types, contents, link targets, modes, owners, link counts, sizes and
/// mtimes (seconds; mke2fs stores no nanoseconds). Returns the number of
/// entries compared.
pub fn compare(src: &Path, vp: &VnodeRef, check_times: bool) -> usize {
    let ours = list(vp);
    let mut theirs = BTreeSet::new();
    for e in std::fs::read_dir(src).unwrap() {
        theirs.insert(e.unwrap().file_name().into_encoded_bytes());
    }
    let ours_names: BTreeSet<Vec<u8>> = ours
        .keys()
        .filter(|n| *n != b"lost+found")
        .cloned()
        .collect();
    assert_eq!(ours_names, theirs, "entries of {}", src.display());
    let mut n = 0;
    for name in theirs {
        let p = src.join(std::ffi::OsStr::from_encoded_bytes_unchecked_safe(&name));
        let child = vp
            .lookup(&name, &cred())
            .unwrap_or_else(|e| panic!("lookup {}: {e}", p.display()));
        let md = std::fs::symlink_metadata(&p).unwrap();
        let va = child.getattr().unwrap();
        assert_eq!(va.st_mode(), md.mode(), "mode of {}", p.display());
        assert_eq!(va.uid, md.uid(), "uid of {}", p.display());
        assert_eq!(va.gid, md.gid(), "gid of {}", p.display());
        assert_eq!(va.nlink as u64, md.nlink(), "nlink of {}", p.display());
        assert_eq!(va.ino, child.ino());
        assert_eq!(ours[&name].0, va.ino, "readdir ino of {}", p.display());
        assert_eq!(ours[&name].1, va.vtype, "readdir type of {}", p.display());
        if check_times && !md.file_type().is_symlink() {
            assert_eq!(va.mtime.sec, md.mtime(), "mtime of {}", p.display());
        }
        let ft = md.file_type();
        if ft.is_dir() {
            n += compare(&p, &child, check_times);
        } else {
            assert_eq!(va.size, md.size(), "size of {}", p.display());
            if ft.is_file() {
                let data = read_all(&child);
                assert!(
                    data == std::fs::read(&p).unwrap(),
                    "content of {}",
                    p.display()
                );
            } else if ft.is_symlink() {
                let t = child.readlink().unwrap();
                assert_eq!(
                    t,
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                    "target of {}",
                    p.display()
                );
            } else if ft.is_fifo_like() {
                use std::os::unix::fs::FileTypeExt;
                if ft.is_char_device() || ft.is_block_device() {
                    assert_eq!(va.rdev, md.rdev(), "rdev of {}", p.display());
                }
            }
        }
        n += 1;
    }
    n
}

/// Helper trait: OsStr from bytes on Unix.
pub trait OsStrBytes {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr;
}
impl OsStrBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(b)
    }
}

/// Run `e2fsck -fn` on an image; returns (exit status, output).
pub fn e2fsck(img: &Path) -> (i32, String) {
    let out = run(Command::new("e2fsck").arg("-fn").arg(img));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A kernel mount, unmounted when dropped (also when a test fails).
pub struct KernelMount(pub PathBuf);

impl Drop for KernelMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mount `img` read-only with the kernel's ext2 driver (a loop device) on a
/// new directory `mnt` under `dir`.
pub fn kernel_mount_ro(dir: &Path, img: &Path) -> KernelMount {
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "ext2", "-o", "loop,ro"])
        .arg(img)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "kernel loop mount of {} failed", img.display());
    KernelMount(mnt)
}

