//! Mounting and unmounting the FUSE file system in the host kernel.
//!
//! As root, p2k makes the mount(2) call itself and hands the `/dev/fuse`
//! descriptor to fuser (`Session::from_fd`), so it knows exactly which
//! mount is its own: the device number of the new mount is read from
//! `/proc/self/mountinfo` right after mount(2), and an unmount only ever
//! detaches the top mount at the mount point if it still has that device
//! number. (fuser's own unmount-on-exit would `umount` the path again after
//! an external unmount, which could hit another file system mounted there
//! meanwhile.)
//!
//! Ordinary users cannot mount, and often cannot open /dev/fuse either:
//! the setuid `fusermount3` (fuse3) does both for them and passes the
//! descriptor back over a socket named in `_FUSE_COMMFD` (libfuse's
//! protocol). p2k speaks that protocol itself ([`mount_fusermount`])
//! rather than through fuser, so that it holds the descriptor before the
//! INIT reply goes out, as FUSE over io_uring needs; unmounting goes
//! through `fusermount3 -u`, with the same device-number check.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// What the direct mount needs.
pub struct DirectMount<'a> {
    pub source: &'a str,
    pub subtype: &'a str,
    pub ro: bool,
    pub allow_other: bool,
    pub default_permissions: bool,
}

/// Open /dev/fuse and mount it on `mp` (canonical). Returns the device
/// descriptor and the new mount's device number ("major:minor").
pub fn mount_direct(mp: &Path, m: &DirectMount<'_>) -> io::Result<(File, String)> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    "/dev/fuse does not exist (is the fuse module loaded?)",
                )
            } else {
                e
            }
        })?;
    let rootmode = std::fs::metadata(mp)?.mode() & libc::S_IFMT;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={rootmode:o},user_id={uid},group_id={gid}",
        dev.as_raw_fd()
    );
    if m.allow_other {
        data.push_str(",allow_other");
    }
    if m.default_permissions {
        data.push_str(",default_permissions");
    }
    if !m.subtype.is_empty() {
        data.push_str(",subtype=");
        data.push_str(m.subtype);
    }
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
    if m.ro {
        flags |= libc::MS_RDONLY;
    }
    let (src, target, fstype, cdata) = (
        cstr(m.source.as_bytes())?,
        cstr(mp.as_os_str().as_bytes())?,
        cstr(b"fuse")?,
        cstr(data.as_bytes())?,
    );
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            cdata.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let devno = top_mount_dev(mp).unwrap_or_default();
    Ok((dev, devno))
}

/// The setuid helper of fuse3.
const FUSERMOUNT: &str = "fusermount3";

/// `-o` value for fusermount3: commas and backslashes in a value escaped.
fn fusermount_opts(m: &DirectMount<'_>) -> String {
    let esc = |v: &str| v.replace('\\', "\\\\").replace(',', "\\,");
    let mut o = vec![
        if m.ro { "ro" } else { "rw" }.to_string(),
        "nosuid".to_string(),
        "nodev".to_string(),
        format!("fsname={}", esc(m.source)),
    ];
    if !m.subtype.is_empty() {
        o.push(format!("subtype={}", esc(m.subtype)));
    }
    if m.allow_other {
        o.push("allow_other".to_string());
    }
    if m.default_permissions {
        o.push("default_permissions".to_string());
    }
    o.join(",")
}

/// Mount through `fusermount3` (ordinary users): it opens /dev/fuse,
/// mounts it on `mp` (canonical) and sends the descriptor back. Returns
/// the descriptor and the new mount's device number. fusermount3's own
/// message (say, allow_other without user_allow_other in /etc/fuse.conf)
/// is the error's text.
pub fn mount_fusermount(mp: &Path, m: &DirectMount<'_>) -> io::Result<(File, String)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two new descriptors we own.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let theirs_raw = theirs.as_raw_fd();
    let before = top_mount_dev(mp);
    let mut cmd = Command::new(FUSERMOUNT);
    cmd.arg("-o")
        .arg(fusermount_opts(m))
        .arg("--")
        .arg(mp)
        .env("_FUSE_COMMFD", theirs_raw.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only fcntl, which is async-signal-safe, runs in the child
    // between fork and exec; it lets the child keep its end.
    unsafe {
        cmd.pre_exec(move || {
            let fl = libc::fcntl(theirs_raw, libc::F_GETFD);
            if fl < 0 || libc::fcntl(theirs_raw, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                e.kind(),
                "fusermount3 not found: ordinary users mount FUSE file systems through it (install fuse3)",
            )
        } else {
            e
        }
    })?;
    drop(theirs);
    // Returns at EOF too: fusermount3 exits without sending on failure.
    let fd = recv_fd(&ours);
    let out = child.wait_with_output();
    let failed = match (fd, out) {
        (Ok(Some(fd)), Ok(out)) if out.status.success() => {
            let devno = top_mount_dev(mp).unwrap_or_default();
            return Ok((File::from(fd), devno));
        }
        (Ok(_), Ok(out)) => {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if msg.is_empty() {
                io::Error::other(format!(
                    "{FUSERMOUNT} failed ({}) without passing a /dev/fuse descriptor",
                    out.status
                ))
            } else {
                io::Error::other(msg)
            }
        }
        (Err(e), _) | (_, Err(e)) => e,
    };
    // A mount fusermount3 may have made nobody serves: take it away.
    if let Some(devno) = top_mount_dev(mp).filter(|d| Some(d) != before.as_ref()) {
        let _ = fusermount_unmount(mp, &devno);
    }
    Err(failed)
}

/// Receive one descriptor (SCM_RIGHTS) from `sock`; `None` at EOF.
fn recv_fd(sock: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    // Room for one int, aligned as cmsghdr wants.
    let mut cbuf = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: a zeroed msghdr is valid; the buffers outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: `msg` points at live buffers of the sizes given.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(None);
        }
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control data the
        // kernel wrote into `cbuf`, within `msg_controllen`.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        let mut got = None;
        while !c.is_null() {
            // SAFETY: `c` points at a complete cmsghdr (see above).
            unsafe {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let n = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize) / 4;
                    let data = libc::CMSG_DATA(c) as *const libc::c_int;
                    for k in 0..n {
                        // The first descriptor is the one wanted; any
                        // other passed along is closed with its OwnedFd.
                        let owned = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(k)));
                        if got.is_none() {
                            got = Some(owned);
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        return Ok(got);
    }
}

/// Undo mountinfo's octal escapes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
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

/// Device number ("major:minor") of the top-most mount at `mp`.
pub fn top_mount_dev(mp: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mp.as_os_str().as_bytes();
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && unescape(f[4]) == want).then(|| f[2].to_string())
    })
}

/// Unmount our mount at `mp` (device `devno`): nothing if it is no longer
/// the top mount there; a lazy detach if it is busy. `user`: through
/// `fusermount3 -u` (a mount made by [`mount_fusermount`]).
pub fn unmount_ours(mp: &Path, devno: &str, user: bool) -> io::Result<()> {
    if devno.is_empty() || top_mount_dev(mp).as_deref() != Some(devno) {
        return Ok(());
    }
    if user {
        return fusermount_unmount(mp, devno);
    }
    let c = cstr(mp.as_os_str().as_bytes())?;
    // SAFETY: valid path.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EBUSY) => {
            log::warn!(
                "{}: busy; detaching it (the server exits when the last user leaves)",
                mp.display()
            );
            lazy_unmount(mp)
        }
        Some(libc::EINVAL) => Ok(()), // already gone
        _ => Err(e),
    }
}

/// `fusermount3 -u`, and `-u -z` (lazy) when our mount (`devno`) is still
/// there after it (busy: fusermount3 says so only in words).
fn fusermount_unmount(mp: &Path, devno: &str) -> io::Result<()> {
    let run = |lazy: bool| -> io::Result<(bool, String)> {
        let mut c = Command::new(FUSERMOUNT);
        c.arg("-u");
        if lazy {
            c.arg("-z");
        }
        let out = c
            .arg("--")
            .arg(mp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    };
    let (ok, msg) = run(false)?;
    if ok {
        return Ok(());
    }
    if top_mount_dev(mp).as_deref() != Some(devno) {
        return Ok(()); // gone meanwhile
    }
    log::warn!(
        "{}: {msg}; detaching it (the server exits when the last user leaves)",
        mp.display()
    );
    let (ok, msg) = run(true)?;
    if ok {
        return Ok(());
    }
    Err(io::Error::other(format!("{FUSERMOUNT} -u -z: {msg}")))
}

/// `umount -l`.
pub fn lazy_unmount(mp: &Path) -> io::Result<()> {
    let c = cstr(mp.as_os_str().as_bytes())?;
    // SAFETY: valid path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo() {
        assert_eq!(unescape("/a\\040b"), b"/a b");
        assert!(top_mount_dev(Path::new("/proc")).is_some());
        assert!(top_mount_dev(Path::new("/no/such/mount")).is_none());
        assert!(
            unmount_ours(Path::new("/proc"), "", false).is_ok(),
            "empty devno: never touches anything"
        );
        assert!(
            unmount_ours(Path::new("/proc"), "999999:999", true).is_ok(),
            "not ours: left alone"
        );
        assert!(top_mount_dev(Path::new("/proc")).is_some());
    }

    #[test]
    fn fusermount_options_escape_commas() {
        let m = DirectMount {
            source: "a,b\\c",
            subtype: "ext2",
            ro: true,
            allow_other: true,
            default_permissions: false,
        };
        assert_eq!(
            fusermount_opts(&m),
            "ro,nosuid,nodev,fsname=a\\,b\\\\c,subtype=ext2,allow_other"
        );
    }
}
