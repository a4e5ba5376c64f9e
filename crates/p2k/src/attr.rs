//! Conversions between rumpkern's attribute types and fuser's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};
use rumpkern::{SetTime, Timespec, VType, Vattr};

/// fuser's file type for a vnode type.
pub fn file_type(t: VType) -> FileType {
    match t {
        VType::Reg => FileType::RegularFile,
        VType::Dir => FileType::Directory,
        VType::Lnk => FileType::Symlink,
        VType::Chr => FileType::CharDevice,
        VType::Blk => FileType::BlockDevice,
        VType::Fifo => FileType::NamedPipe,
        VType::Sock => FileType::Socket,
    }
}

/// A kernel timestamp as `SystemTime` (times before 1970 included).
pub fn system_time(t: Timespec) -> SystemTime {
    let nsec = t.nsec.min(999_999_999);
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, nsec)
    } else {
        // sec is negative, nsec counts forward from it.
        let back = Duration::new(t.sec.unsigned_abs(), 0);
        UNIX_EPOCH
            .checked_sub(back)
            .and_then(|s| s.checked_add(Duration::new(0, nsec)))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// A `SystemTime` as a kernel timestamp.
pub fn timespec(t: SystemTime) -> Timespec {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timespec::new(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                Timespec::new(-secs, 0)
            } else {
                Timespec::new(-secs - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

/// A setattr time from FUSE (`UTIME_NOW` arrives as `TimeOrNow::Now`).
pub fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(s) => SetTime::At(timespec(s)),
    }
}

/// The FUSE attributes of a vnode whose node id is `nodeid` (FUSE reports the
/// node id as `st_ino`, see the crate doc).
pub fn file_attr(va: &Vattr, nodeid: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(nodeid),
        size: va.size,
        blocks: va.bytes.div_ceil(512),
        atime: system_time(va.atime),
        mtime: system_time(va.mtime),
        ctime: system_time(va.ctime),
        crtime: system_time(va.birthtime),
        kind: file_type(va.vtype),
        perm: (va.mode & 0o7777) as u16,
        nlink: va.nlink,
        uid: va.uid,
        gid: va.gid,
        // FUSE carries the kernel's 32-bit "new" device encoding, which is
        // what glibc's 64-bit dev_t holds for major < 4096, minor < 2^20.
        rdev: va.rdev as u32,
        blksize: if va.blksize == 0 { 4096 } else { va.blksize },
        flags: va.flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for t in [
            Timespec::new(0, 0),
            Timespec::new(1_700_000_000, 123),
            Timespec::new(-1, 500),
            Timespec::new(-86400, 0),
        ] {
            assert_eq!(timespec(system_time(t)), t, "{t:?}");
        }
    }
}
