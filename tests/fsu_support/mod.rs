//! Shared helpers of the fs-utils tests: a source tree with known content,
//! images built from it by the format's own tools, running the commands.

#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A fresh scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("fsu-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Run a fs-utils command (`name` as Cargo built it) with `args`, in the
/// C locale and UTC, with umask 022 inherited from `sh -c`.
pub fn fsu(name: &str, args: &[&str]) -> Output {
    fsu_stdin(name, args, None)
}

/// As [`fsu`] with `input` on standard input.
pub fn fsu_stdin(name: &str, args: &[&str], input: Option<&[u8]>) -> Output {
    let exe = match name {
        "fsu_ls" => env!("CARGO_BIN_EXE_fsu_ls"),
        "fsu_cat" => env!("CARGO_BIN_EXE_fsu_cat"),
        "fsu_ecp" => env!("CARGO_BIN_EXE_fsu_ecp"),
        "fsu_write" => env!("CARGO_BIN_EXE_fsu_write"),
        "fsu_mkdir" => env!("CARGO_BIN_EXE_fsu_mkdir"),
        "fsu_rm" => env!("CARGO_BIN_EXE_fsu_rm"),
        _ => panic!("unknown command {name}"),
    };
    let mut c = Command::new(exe);
    c.args(args)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .env_remove("RUST_LOG")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn fs-utils command");
    if let Some(i) = input {
        // A command that fails early does not read its input.
        match child.stdin.take().unwrap().write_all(i) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.unwrap(),
        }
    }
    child.wait_with_output().unwrap()
}

/// Output that must have succeeded: its stdout.
pub fn ok(o: Output) -> Vec<u8> {
    assert!(
        o.status.success(),
        "failed ({:?}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run a host tool; panics with its output when it fails.
pub fn sh(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

/// Set the access and modification times of `p` (not following symlinks).
pub fn set_mtime(p: &Path, sec: i64) {
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
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
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Content of the big file: deterministic, not compressible by pattern.
pub fn big_content(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Make the test tree under `root`: nested directories, files with known
/// content, modes and times, a fast and a slow symlink, a hard link, an
/// empty file, a name with spaces, hidden files; with `unix`, also a fifo
/// and owners that are not in /etc/passwd.
pub fn make_tree(root: &Path, unix: bool) {
    let t = now();
    fs::create_dir_all(root.join("docs/deep/er")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("hello.txt"), b"hello, world\n").unwrap();
    fs::write(root.join("docs/readme"), b"read me\nsecond line\n").unwrap();
    fs::write(root.join("docs/deep/er/leaf.bin"), big_content(300_000)).unwrap();
    fs::write(root.join("docs/empty-file"), b"").unwrap();
    fs::write(root.join("with space.txt"), b"spaces\n").unwrap();
    fs::write(root.join(".hidden"), b"hidden\n").unwrap();
    fs::write(root.join("exec.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("exec.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(root.join("hello.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(root.join("docs/readme"), fs::Permissions::from_mode(0o600)).unwrap();
    if unix {
        fs::hard_link(root.join("hello.txt"), root.join("docs/hello-link")).unwrap();
        std::os::unix::fs::symlink("hello.txt", root.join("short-link")).unwrap();
        // Longer than 60 bytes: a slow symlink (target in a data block).
        let long = format!("docs/{}deep/er/leaf.bin", "./".repeat(40));
        std::os::unix::fs::symlink(&long, root.join("long-link")).unwrap();
        std::os::unix::fs::symlink("docs/deep", root.join("dir-link")).unwrap();
        let c = CString::new(root.join("docs/fifo").as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        for (name, kind, maj, min) in [
            ("docs/tty", libc::S_IFCHR, 4, 64),
            ("docs/disk", libc::S_IFBLK, 259, 70000),
        ] {
            let c = CString::new(root.join(name).as_os_str().as_encoded_bytes()).unwrap();
            let r = unsafe { libc::mknod(c.as_ptr(), kind | 0o660, libc::makedev(maj, min)) };
            assert_eq!(r, 0, "mknod {name} (needs root)");
        }
        fs::set_permissions(
            root.join("docs/deep/er/leaf.bin"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::lchown(root.join("docs/readme"), Some(4321), Some(8765)).unwrap();
        fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    }
    // Times: old (another year), recent, and directories last.
    for (p, tm) in [
        ("hello.txt", 1_600_000_000),
        ("docs/readme", t - 3600),
        ("docs/deep/er/leaf.bin", 1_500_000_000),
        ("docs/empty-file", t - 7200),
        ("with space.txt", t - 60),
        (".hidden", 1_400_000_000),
        ("exec.sh", t - 86_400),
    ] {
        set_mtime(&root.join(p), tm);
    }
    if unix {
        set_mtime(&root.join("short-link"), t - 500);
        set_mtime(&root.join("docs/fifo"), t - 800);
    }
    for (p, tm) in [
        ("docs/deep/er", t - 100_000),
        ("docs/deep", 1_550_000_000),
        ("docs", t - 10),
        ("empty", 1_450_000_000),
    ] {
        set_mtime(&root.join(p), tm);
    }
}

/// An ext2 image of `tree` made by mke2fs -d.
pub fn ext2_image(tree: &Path, img: &Path, extra: &[&str]) {
    let _ = fs::remove_file(img);
    sh(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2"])
        .args(extra)
        .arg("-d")
        .arg(tree)
        .arg(img)
        .arg("16M"));
}

/// A FAT image holding `tree` (mkfs.fat + mcopy -s).
pub fn fat_image(tree: &Path, img: &Path) {
    let _ = fs::remove_file(img);
    sh(Command::new("mkfs.fat").arg("-C").arg(img).arg("16384"));
    let mut c = Command::new("mcopy");
    c.arg("-s").arg("-p").arg("-m").arg("-i").arg(img);
    for e in fs::read_dir(tree).unwrap() {
        c.arg(e.unwrap().path());
    }
    c.arg("::/");
    sh(&mut c);
}

/// `e2fsck -fn`: panics with its report unless the image is clean.
pub fn e2fsck_clean(img: &Path) {
    let o = Command::new("e2fsck").arg("-fn").arg(img).output().unwrap();
    assert!(
        o.status.success(),
        "e2fsck -fn {}: {}{}",
        img.display(),
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// A plain description of a tree for comparisons: relative path → (type
/// char, mode bits, size or target, mtime seconds, content hash).
pub fn describe(root: &Path, with_times: bool) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, with_times, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, p: &Path, with_times: bool, out: &mut Vec<String>) {
    let mut names: Vec<_> = fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for n in names {
        let c = p.join(&n);
        let m = fs::symlink_metadata(&c).unwrap();
        let rel = c.strip_prefix(root).unwrap().display().to_string();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "d".to_string()
        } else if ft.is_symlink() {
            format!("l -> {}", fs::read_link(&c).unwrap().display())
        } else if ft.is_file() {
            let data = fs::read(&c).unwrap();
            let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            format!("f {} {h:x}", data.len())
        } else {
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else if ft.is_fifo() {
                "p"
            } else {
                "s"
            };
            format!("{kind} {:x}", m.rdev())
        };
        let t = if with_times && !ft.is_symlink() {
            format!(" t={}", m.mtime())
        } else {
            String::new()
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.push(format!("{rel}: {what} mode={mode:o}{t}"));
        if ft.is_dir() {
            walk(root, &c, with_times, out);
        }
    }
}
