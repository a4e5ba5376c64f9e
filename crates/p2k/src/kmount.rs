//! Mounting and unmounting the FUSE file system in the host kernel.
//!
//! As root, p2k makes the mount(2) call itself and hands the `/dev/fuse`
//! descriptor to fuser (`Session::from_fd`), so it knows exactly which
//! mount is its own: the device number of the new mount is read from
//! `/proc/self/mountinfo` right after mount(2), and an unmount only ever
//! detaches the top mount at the mount point if it still has that device
//! number. (fuser's own unmount-on-exit would `umount` the path again after
//! an external unmount, which could hit another file system mounted there
//! meanwhile.) Ordinary users go through fuser's fusermount3 path.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
/// the top mount there; a lazy detach if it is busy.
pub fn unmount_ours(mp: &Path, devno: &str) -> io::Result<()> {
    if devno.is_empty() || top_mount_dev(mp).as_deref() != Some(devno) {
        return Ok(());
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
            unmount_ours(Path::new("/proc"), "").is_ok(),
            "empty devno: never touches anything"
        );
        assert!(
            unmount_ours(Path::new("/proc"), "999999:999").is_ok(),
            "not ours: left alone"
        );
        assert!(top_mount_dev(Path::new("/proc")).is_some());
    }
}
