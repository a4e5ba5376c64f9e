//! Shared helpers of the fs-msdos tests: temporary directories, images made
//! with the real mkfs.fat and filled with mcopy, the mount, and walking a
//! mount through the VnodeRef wrappers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rumpkern::dev::BlockDevice;
use rumpkern::{Cred, Mount, MountArgs, VType, VnodeRef};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

static SEQ: AtomicU32 = AtomicU32::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "fs-msdos-{}-{}-{}",
            tag,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
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

/// Run a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// mtools environment: UTF-8 names, no geometry checks, times in UTC (the
/// driver's default zone).
pub fn mtools(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    c.env("TZ", "UTC")
        .env("LC_ALL", "C.UTF-8")
        .env("LANG", "C.UTF-8")
        .env("MTOOLS_SKIP_CHECK", "1");
    c
}

/// A sparse image of `mb` MiB formatted with mkfs.fat.
pub fn mkfs(img: &Path, fat: u32, sector: u32, spc: u32, mb: u64, extra: &[&str]) {
    let _ = std::fs::remove_file(img);
    let f = std::fs::File::create(img).unwrap();
    f.set_len(mb << 20).unwrap();
    drop(f);
    let mut c = Command::new("mkfs.fat");
    c.arg("-F")
        .arg(fat.to_string())
        .arg("-S")
        .arg(sector.to_string())
        .arg("-s")
        .arg(spc.to_string());
    c.args(extra).arg(img);
    run(&mut c);
}

/// Deterministic pseudo-random bytes.
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The test tree: long, mixed-case and non-ASCII names, a deep path, empty
/// files and directories, a directory with many entries, a large file.
pub fn build_tree(root: &Path, big: usize) {
    let w = |p: &str, data: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    w("Long File Name With Spaces.txt", b"long name\n");
    w("MixedCase.TXT", b"mixed\n");
    w("lower.txt", b"lower\n");
    w("UPPER.TXT", b"upper\n");
    w("ünïcødé-файл-日本語.txt", "non-ascii ✓\n".as_bytes());
    w(".hidden", b"dot file\n");
    w("a.b.c.d", b"dots\n");
    w("empty", b"");
    w("a/b/c/d/e/f/g/h/i/j/deep file.txt", b"deep\n");
    w("big.bin", &pattern(big, 7));
    w("odd size.dat", &pattern(12345, 3));
    for i in 0..150 {
        w(
            &format!("many/entry number {i:03} with a long name.txt"),
            format!("{i}\n").as_bytes(),
        );
    }
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    std::fs::create_dir_all(root.join("Dir With Spaces/Sub")).unwrap();
    w("Dir With Spaces/Sub/x", b"x");
}

/// Copy the tree into the image with mcopy -s.
pub fn mcopy_in(img: &Path, tree: &Path) {
    let mut c = mtools("mcopy");
    c.arg("-s").arg("-i").arg(img);
    for e in std::fs::read_dir(tree).unwrap() {
        c.arg(e.unwrap().path());
    }
    c.arg("::");
    run(&mut c);
}

/// Extract the whole image with mcopy -s -n into `out`.
pub fn mcopy_out(img: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let mut c = mtools("mcopy");
    c.arg("-s")
        .arg("-n")
        .arg("-m")
        .arg("-i")
        .arg(img)
        .arg("::*")
        .arg(out);
    // An empty image has nothing to copy; mcopy then fails: tolerate that.
    let o = c.output().unwrap();
    if !o.status.success() {
        let listing = mtools("mdir")
            .arg("-i")
            .arg(img)
            .arg("-b")
            .arg("::")
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&listing.stdout).trim().is_empty(),
            "mcopy out failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `diff -r a b` is empty.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// fsck.fat -n exits 0 and reports nothing to fix.
pub fn assert_fsck_clean(img: &Path) {
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(img)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "fsck.fat -n failed ({}):\n{text}",
        out.status
    );
}

pub fn open_dev(img: &Path) -> Arc<dyn BlockDevice> {
    let opts = rumpuser::OpenOpts {
        read_only: false,
        blkio: rumpuser::BlkIo::Cached,
    };
    rumpuser::open_device(img.to_str().unwrap(), &opts).unwrap()
}

pub fn mount(img: &Path, opts: &str) -> Arc<Mount> {
    init_log();
    fs_msdos::mount(open_dev(img), &MountArgs::parse(opts))
        .unwrap()
        .0
}

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

pub fn root() -> Cred {
    Cred::root()
}

/// All entries of a directory (without `.` and `..`): name -> (type, ino).
pub fn list(dvp: &VnodeRef) -> BTreeMap<String, (VType, u64)> {
    let mut out = BTreeMap::new();
    let mut off = 0u64;
    loop {
        let mut got = 0;
        let mut last = off;
        dvp.readdir(off, &mut |e| {
            got += 1;
            last = e.next_offset;
            let n = String::from_utf8(e.name.to_vec()).unwrap();
            if n != "." && n != ".." {
                assert!(
                    out.insert(n.clone(), (e.vtype, e.ino)).is_none(),
                    "duplicate entry {n}"
                );
            }
            got < 7 // small batches exercise the cookies
        })
        .unwrap();
        if got == 0 {
            break;
        }
        off = last;
    }
    out
}

/// Whole contents of a file vnode.
pub fn read_all(vp: &VnodeRef) -> Vec<u8> {
    let size = vp.getattr().unwrap().size as usize;
    let mut buf = vec![0u8; size + 100];
    let mut done = 0;
    loop {
        let n = vp.read(&mut buf[done..], done as u64).unwrap();
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    assert_eq!(done, size, "read returned a different length than getattr");
    buf
}

/// Compare the mounted directory `dvp` with host directory `host`:
/// names, types and contents. Returns the number of files compared.
pub fn compare_tree(dvp: &VnodeRef, host: &Path) -> usize {
    let mut want: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(host).unwrap() {
        let e = e.unwrap();
        want.insert(e.file_name().into_string().unwrap(), e.path());
    }
    let got = list(dvp);
    let gn: Vec<&String> = got.keys().collect();
    let wn: Vec<&String> = want.keys().collect();
    assert_eq!(gn, wn, "listing of {}", host.display());
    let mut n = 0;
    for (name, (vt, ino)) in &got {
        let hp = &want[name];
        let vp = dvp.lookup(name.as_bytes(), &root()).unwrap();
        assert_eq!(vp.ino(), *ino, "readdir and lookup inode numbers of {name}");
        // Case-insensitive lookup finds the same vnode.
        let up = dvp.lookup(name.to_uppercase().as_bytes(), &root()).unwrap();
        assert_eq!(up.ino(), vp.ino(), "upper-case lookup of {name}");
        if hp.is_dir() {
            assert_eq!(*vt, VType::Dir, "{name}");
            let dd = vp.lookup(b"..", &root()).unwrap();
            assert_eq!(dd.ino(), dvp.ino(), ".. of {name}");
            n += compare_tree(&vp, hp);
        } else {
            assert_eq!(*vt, VType::Reg, "{name}");
            let data = read_all(&vp);
            assert!(
                data == std::fs::read(hp).unwrap(),
                "contents of {}",
                hp.display()
            );
            n += 1;
        }
    }
    n
}
