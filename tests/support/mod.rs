//! Test support for end-to-end FUSE tests: private mount points, a guard
//! that always unmounts and stops the server the test started, commands
//! with timeouts, bounded polls.
//!
//! Every test makes its own mount point with `mkdtemp` under /tmp, so tests
//! run in parallel safely; the guard only ever signals the one server
//! process it knows (its own child, or the daemon whose command line names
//! the test's unique mount point).

#![allow(dead_code)]

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Path of a binary of this package (built by cargo for integration tests).
pub fn bin(name: &str) -> PathBuf {
    match name {
        "rump_tmpfs" => PathBuf::from(env!("CARGO_BIN_EXE_rump_tmpfs")),
        "rump_ext2fs" => PathBuf::from(env!("CARGO_BIN_EXE_rump_ext2fs")),
        "rump_msdos" => PathBuf::from(env!("CARGO_BIN_EXE_rump_msdos")),
        other => panic!("unknown binary {other}"),
    }
}

/// A fresh, empty directory under /tmp (`mkdtemp`).
pub fn temp_dir(tag: &str) -> PathBuf {
    let tmpl = CString::new(format!("/tmp/rumpfs-{tag}-XXXXXX")).unwrap();
    let mut buf = tmpl.into_bytes_with_nul();
    // SAFETY: buf is a writable NUL-terminated template.
    let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
    assert!(!p.is_null(), "mkdtemp: {}", std::io::Error::last_os_error());
    buf.pop();
    PathBuf::from(String::from_utf8(buf).unwrap())
}

/// Undo mountinfo's octal escapes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(
                ((b[i + 1] - b'0') as u32 * 64
                    + (b[i + 2] - b'0') as u32 * 8
                    + (b[i + 3] - b'0') as u32) as u8,
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The mountinfo line for `mp` (fields after the separator included).
pub fn mount_line(mp: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mp.as_os_str().as_bytes();
    info.lines()
        .find(|l| l.split(' ').nth(4).map(unescape).as_deref() == Some(want))
        .map(str::to_string)
}

pub fn is_mounted(mp: &Path) -> bool {
    mount_line(mp).is_some()
}

/// Poll `cond` every 20 ms for at most `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Run `cmd` with a timeout, capturing its output. Panics on timeout
/// (after killing the command).
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let to = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let te = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = wait_child(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("command {cmd:?} timed out after {timeout:?}");
    });
    Output {
        status,
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
    }
}

/// Wait for a child at most `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Run a shell command line as user nobody (uid/gid 65534, no groups).
pub fn as_nobody(script: &str) -> Output {
    run_timeout(
        Command::new("setpriv").args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ]),
        Duration::from_secs(20),
    )
}

/// The pid of the process whose command line contains `needle` and whose
/// executable is named `exe` (a backgrounded server, found by its unique
/// mount point).
pub fn find_server_pid(exe: &str, needle: &Path) -> Option<i32> {
    let needle = needle.as_os_str().as_bytes();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|&b| b == 0);
        let Some(arg0) = args.next() else { continue };
        if !arg0.ends_with(exe.as_bytes()) {
            continue;
        }
        if args.any(|a| a == needle) {
            // Skip zombies: they have no mount to serve.
            if let Ok(st) = std::fs::read_to_string(e.path().join("stat")) {
                if st
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
                {
                    continue;
                }
            }
            return Some(pid);
        }
    }
    None
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => !st
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn umount_path(mp: &Path, flags: i32) -> i32 {
    let c = CString::new(mp.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

/// Owns a test's mount point and the server serving it. On drop (also
/// while unwinding from a failed assertion): unmount (retrying, `umount -l`
/// as the last resort), stop the server process it started (SIGTERM, then
/// SIGKILL), remove the mount point.
pub struct MountGuard {
    pub mp: PathBuf,
    child: Option<Child>,
    pid: Option<i32>,
}

impl MountGuard {
    /// A guard for a fresh mount point, nothing mounted yet.
    pub fn new(tag: &str) -> MountGuard {
        MountGuard {
            mp: temp_dir(tag),
            child: None,
            pid: None,
        }
    }

    /// Start `rump_tmpfs [args] tmpfs MP` in the background (the default
    /// mode) and expect it to exit 0 with the mount live.
    pub fn rump_tmpfs(tag: &str, args: &[&str]) -> MountGuard {
        let mut g = MountGuard::new(tag);
        let out = g.run_server("rump_tmpfs", args);
        assert!(
            out.status.success(),
            "rump_tmpfs failed: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // It returned only once the mount was live: no polling needed.
        assert!(
            is_mounted(&g.mp),
            "rump_tmpfs returned but {} is not mounted",
            g.mp.display()
        );
        g.pid = find_server_pid("rump_tmpfs", &g.mp);
        assert!(
            g.pid.is_some(),
            "no rump_tmpfs process serves {}",
            g.mp.display()
        );
        g
    }

    /// Run a server command in the background mode; returns its output.
    pub fn run_server(&mut self, exe: &str, args: &[&str]) -> Output {
        let mut c = Command::new(bin(exe));
        c.args(args).arg("tmpfs").arg(&self.mp);
        let out = run_timeout(&mut c, Duration::from_secs(30));
        if out.status.success() {
            self.pid = find_server_pid(exe, &self.mp);
        }
        out
    }

    /// Start `rump_tmpfs -f [args] tmpfs MP` as a child and wait (bounded)
    /// for the mount to appear.
    pub fn rump_tmpfs_fg(tag: &str, args: &[&str]) -> MountGuard {
        let mut g = MountGuard::new(tag);
        let child = Command::new(bin("rump_tmpfs"))
            .arg("-f")
            .args(args)
            .arg("tmpfs")
            .arg(&g.mp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rump_tmpfs -f");
        g.pid = Some(child.id() as i32);
        g.child = Some(child);
        let mp = g.mp.clone();
        assert!(
            wait_for(Duration::from_secs(20), || is_mounted(&mp)),
            "rump_tmpfs -f did not mount {}",
            g.mp.display()
        );
        g
    }

    /// Start `EXE -f [args] SPECIAL MP` (any rump server) as a child and
    /// wait (bounded) for the mount to appear.
    pub fn server_fg(tag: &str, exe: &str, args: &[&str], special: &Path) -> MountGuard {
        MountGuard::spawn_fg(tag, exe, args, special, None, false)
    }

    /// [`MountGuard::server_fg`] with `RUST_LOG=info` and the server's
    /// standard error written to `log`.
    pub fn server_fg_logged(tag: &str, exe: &str, args: &[&str], special: &Path, log: &Path) -> MountGuard {
        MountGuard::spawn_fg(tag, exe, args, special, Some(log), false)
    }

    /// [`MountGuard::server_fg_logged`] with the server run as `nobody`
    /// (uid/gid 65534, no groups) on a mount point it owns: an ordinary
    /// user's mount, made through fusermount3. `special` must be readable
    /// (and, read-write, writable) by nobody.
    pub fn server_fg_as_nobody(tag: &str, exe: &str, args: &[&str], special: &Path, log: &Path) -> MountGuard {
        MountGuard::spawn_fg(tag, exe, args, special, Some(log), true)
    }

    fn spawn_fg(tag: &str, exe: &str, args: &[&str], special: &Path, log: Option<&Path>, nobody: bool) -> MountGuard {
        let mut g = MountGuard::new(tag);
        let mut cmd = if nobody {
            std::os::unix::fs::chown(&g.mp, Some(65534), Some(65534)).unwrap();
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(bin(exe));
            c
        } else {
            Command::new(bin(exe))
        };
        cmd.arg("-f").args(args).arg(special).arg(&g.mp).stdin(Stdio::null()).stdout(Stdio::null());
        match log {
            Some(l) => {
                let f = std::fs::File::create(l).unwrap_or_else(|e| panic!("{}: {e}", l.display()));
                cmd.env("RUST_LOG", "info").stderr(Stdio::from(f));
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {exe}: {e}"));
        g.pid = Some(child.id() as i32);
        g.child = Some(child);
        let mp = g.mp.clone();
        let ok = wait_for(Duration::from_secs(20), || {
            is_mounted(&mp)
                || g.child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
        });
        assert!(
            ok && is_mounted(&g.mp),
            "{exe} -f did not mount {} on {}",
            special.display(),
            g.mp.display()
        );
        g
    }

    /// Unmount and wait for the server to write back and exit; returns its
    /// exit status. After this the image is complete and clean.
    pub fn unmount_wait(&mut self) -> Option<ExitStatus> {
        let mp = self.mp.clone();
        assert!(
            wait_for(Duration::from_secs(10), || umount_path(&mp, 0) == 0
                || !is_mounted(&mp)),
            "cannot unmount {}",
            mp.display()
        );
        self.wait_exit(Duration::from_secs(120))
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }

    /// The server's pid, if one was started.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    /// Wait for the foreground child to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let st = wait_child(child, timeout);
        if st.is_some() {
            self.child = None;
            self.pid = None;
        }
        st
    }

    /// Forget the server (it was seen to exit).
    pub fn server_gone(&mut self) {
        self.pid = None;
        self.child = None;
    }

    fn cleanup(&mut self) {
        if is_mounted(&self.mp) {
            let mp = self.mp.clone();
            let ok = wait_for(Duration::from_secs(5), || {
                umount_path(&mp, 0) == 0 || !is_mounted(&mp)
            });
            if !ok {
                eprintln!("MountGuard: {} busy; lazy unmount", self.mp.display());
                umount_path(&self.mp, libc::MNT_DETACH);
            }
        }
        if let Some(pid) = self.pid.take() {
            if !wait_for(Duration::from_secs(5), || !pid_alive(pid)) {
                // SAFETY: signalling the one server this guard started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                if !wait_for(Duration::from_secs(3), || !pid_alive(pid)) {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            if wait_child(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !is_mounted(&self.mp) {
            let _ = std::fs::remove_dir(&self.mp);
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `stat(2)` of a path (no symlink following with `lstat`).
pub fn lstat(p: &Path) -> libc::stat {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: st is written by lstat on success.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(
            libc::lstat(c.as_ptr(), &mut st),
            0,
            "lstat {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        st
    }
}

/// `statvfs(3)` of a path.
pub fn statvfs(p: &Path) -> libc::statvfs {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: st is written on success.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(
            libc::statvfs(c.as_ptr(), &mut st),
            0,
            "statvfs {}",
            p.display()
        );
        st
    }
}

/// Run a libc call returning -1/errno; Ok(ret) or Err(errno).
pub fn cvt(r: i32) -> Result<i32, i32> {
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// A path as a C string.
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// What `compare_trees` checks besides names, types and contents.
#[derive(Clone, Copy)]
pub struct CompareOpts {
    pub owners: bool,
    pub nlink: bool,
    pub file_mtime: bool,
    pub dir_mtime: bool,
}

impl CompareOpts {
    pub const ALL: CompareOpts = CompareOpts {
        owners: true,
        nlink: true,
        file_mtime: true,
        dir_mtime: true,
    };
}

fn read_chunk(p: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut v = Vec::new();
    f.take(len as u64).read_to_end(&mut v).unwrap();
    v
}

/// Compare two trees entry by entry (lstat fields and contents; symlink
/// targets; device numbers), ignoring `lost+found` at the top of either.
/// Returns a list of differences (empty = equal). Files over 64 MiB are
/// compared at their start, middle and end (1 MiB each).
pub fn compare_trees(a: &Path, b: &Path, o: CompareOpts) -> Vec<String> {
    let mut diffs = Vec::new();
    compare_dir(a, b, o, &mut diffs, true);
    diffs
}

fn names(d: &Path, top: bool) -> Vec<std::ffi::OsString> {
    let mut v: Vec<_> = std::fs::read_dir(d)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display()))
        .map(|e| e.unwrap().file_name())
        .filter(|n| !(top && n == "lost+found"))
        .collect();
    v.sort();
    v
}

fn compare_dir(a: &Path, b: &Path, o: CompareOpts, diffs: &mut Vec<String>, top: bool) {
    let (na, nb) = (names(a, top), names(b, top));
    if na != nb {
        diffs.push(format!(
            "{}: entries differ: {:?} vs {:?}",
            b.display(),
            na,
            nb
        ));
        return;
    }
    for n in na {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (sa, sb) = (lstat(&pa), lstat(&pb));
        let mut d = |what: &str, x: String, y: String| {
            if x != y {
                diffs.push(format!("{}: {what} {x} vs {y}", pb.display()));
            }
        };
        d(
            "mode",
            format!("{:o}", sa.st_mode),
            format!("{:o}", sb.st_mode),
        );
        if o.owners {
            d(
                "owner",
                format!("{}:{}", sa.st_uid, sa.st_gid),
                format!("{}:{}", sb.st_uid, sb.st_gid),
            );
        }
        let fmt = sa.st_mode & libc::S_IFMT;
        let is_dir = fmt == libc::S_IFDIR;
        if o.nlink && !is_dir {
            d("nlink", sa.st_nlink.to_string(), sb.st_nlink.to_string());
        }
        if (is_dir && o.dir_mtime) || (!is_dir && o.file_mtime && fmt != libc::S_IFLNK) {
            d("mtime", sa.st_mtime.to_string(), sb.st_mtime.to_string());
        }
        match fmt {
            libc::S_IFREG => {
                d("size", sa.st_size.to_string(), sb.st_size.to_string());
                if sa.st_size == sb.st_size {
                    let size = sa.st_size as u64;
                    let same = if size <= 64 << 20 {
                        std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap()
                    } else {
                        [0, size / 2, size - (1 << 20)].iter().all(|&off| {
                            read_chunk(&pa, off, 1 << 20) == read_chunk(&pb, off, 1 << 20)
                        })
                    };
                    if !same {
                        diffs.push(format!("{}: contents differ", pb.display()));
                    }
                }
            }
            libc::S_IFLNK => d(
                "link target",
                format!("{:?}", std::fs::read_link(&pa).unwrap()),
                format!("{:?}", std::fs::read_link(&pb).unwrap()),
            ),
            libc::S_IFCHR | libc::S_IFBLK => {
                d("rdev", sa.st_rdev.to_string(), sb.st_rdev.to_string())
            }
            libc::S_IFDIR => compare_dir(&pa, &pb, o, diffs, false),
            _ => {}
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), for file contents.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Run a command to completion (bounded); panics with its output on failure.
pub fn must(cmd: &mut Command) -> Output {
    let out = run_timeout(cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{:?} failed: {:?}\n{}{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A kernel loop mount (read-only) that is always undone.
pub struct KernelMount {
    pub mp: PathBuf,
}

impl KernelMount {
    pub fn new(fstype: &str, image: &Path) -> KernelMount {
        let mp = temp_dir("kmount");
        must(
            Command::new("mount")
                .args(["-t", fstype, "-o", "loop,ro"])
                .arg(image)
                .arg(&mp),
        );
        KernelMount { mp }
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let mp = self.mp.clone();
        if !wait_for(Duration::from_secs(5), || {
            umount_path(&mp, 0) == 0 || !is_mounted(&mp)
        }) {
            umount_path(&mp, libc::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(&self.mp);
    }
}
