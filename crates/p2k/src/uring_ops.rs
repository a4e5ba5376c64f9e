//! Requests that come through FUSE over io_uring ([`crate::uring`]):
//! decoded here from the kernel's wire format (uapi `linux/fuse.h`) and
//! served by the same handlers as fuser's requests
//! ([`crate::fs::P2kFs`]'s `do_*`), whose answers are encoded into the ring
//! entry's payload.
//!
//! FORGET, BATCH_FORGET, INTERRUPT and INIT never come this way (they stay
//! on /dev/fuse, where fuser serves them).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, TimeOrNow, WriteFlags,
};

use crate::fs::{P2k, P2kFs};
use crate::reply::{
    Caller, RAttr, RCreate, RData, RDir, RDirPlus, REmpty, REntry, RError, ROpen, RStatfs, RWrite,
    RXattr,
};
use crate::uring::{RingHandler, RingRequest, Served};

// Opcodes (uapi linux/fuse.h).
const LOOKUP: u32 = 1;
const GETATTR: u32 = 3;
const SETATTR: u32 = 4;
const READLINK: u32 = 5;
const SYMLINK: u32 = 6;
const MKNOD: u32 = 8;
const MKDIR: u32 = 9;
const UNLINK: u32 = 10;
const RMDIR: u32 = 11;
const RENAME: u32 = 12;
const LINK: u32 = 13;
const OPEN: u32 = 14;
const READ: u32 = 15;
const WRITE: u32 = 16;
const STATFS: u32 = 17;
const RELEASE: u32 = 18;
const FSYNC: u32 = 20;
const OPENDIR: u32 = 27;
const READDIR: u32 = 28;
const RELEASEDIR: u32 = 29;
const FSYNCDIR: u32 = 30;
const ACCESS: u32 = 34;
const CREATE: u32 = 35;
const DESTROY: u32 = 38;
const READDIRPLUS: u32 = 44;
const RENAME2: u32 = 45;

// fuse_setattr_in.valid
const FATTR_MODE: u32 = 1 << 0;
const FATTR_UID: u32 = 1 << 1;
const FATTR_GID: u32 = 1 << 2;
const FATTR_SIZE: u32 = 1 << 3;
const FATTR_ATIME: u32 = 1 << 4;
const FATTR_MTIME: u32 = 1 << 5;
const FATTR_FH: u32 = 1 << 6;
const FATTR_ATIME_NOW: u32 = 1 << 7;
const FATTR_MTIME_NOW: u32 = 1 << 8;
const FATTR_CTIME: u32 = 1 << 10;

const GETATTR_FH: u32 = 1 << 0;
const READ_LOCKOWNER: u32 = 1 << 1;
const WRITE_LOCKOWNER: u32 = 1 << 1;
const RELEASE_FLUSH: u32 = 1 << 0;
const FSYNC_FDATASYNC: u32 = 1 << 0;

/// Size of `fuse_attr`, `fuse_entry_out`, `fuse_dirent`'s fixed part.
const ATTR_LEN: usize = 88;
const ENTRY_LEN: usize = 40 + ATTR_LEN;
const DIRENT_LEN: usize = 24;

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |x| {
        let mut a = [0u8; 8];
        a.copy_from_slice(x);
        u64::from_le_bytes(a)
    })
}

/// The NUL-terminated strings at the start of `payload`.
fn names(payload: &[u8]) -> impl Iterator<Item = &OsStr> {
    payload.split(|&c| c == 0).map(OsStr::from_bytes)
}

fn time_of(secs: u64, nsecs: u32) -> SystemTime {
    let secs = secs as i64;
    let nsecs = nsecs.min(999_999_999);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nsecs)
    }
}

fn secs_of(t: SystemTime) -> (u64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            if d.subsec_nanos() == 0 {
                ((-(d.as_secs() as i64)) as u64, 0)
            } else {
                (
                    (-(d.as_secs() as i64) - 1) as u64,
                    1_000_000_000 - d.subsec_nanos(),
                )
            }
        }
    }
}

fn type_bits(kind: FileType) -> u32 {
    match kind {
        FileType::NamedPipe => libc::S_IFIFO,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
        FileType::Directory => libc::S_IFDIR,
        FileType::RegularFile => libc::S_IFREG,
        FileType::Symlink => libc::S_IFLNK,
        FileType::Socket => libc::S_IFSOCK,
    }
}

/// Little-endian writer over a reply buffer.
struct W<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl W<'_> {
    fn put(&mut self, b: &[u8]) -> bool {
        match self.buf.get_mut(self.len..self.len + b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.len += b.len();
                true
            }
            None => false,
        }
    }
    fn u32(&mut self, v: u32) -> bool {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> bool {
        self.put(&v.to_le_bytes())
    }
    /// `fuse_attr`.
    fn attr(&mut self, a: &FileAttr) -> bool {
        let (at, an) = secs_of(a.atime);
        let (mt, mn) = secs_of(a.mtime);
        let (ct, cn) = secs_of(a.ctime);
        self.u64(a.ino.0)
            && self.u64(a.size)
            && self.u64(a.blocks)
            && self.u64(at)
            && self.u64(mt)
            && self.u64(ct)
            && self.u32(an)
            && self.u32(mn)
            && self.u32(cn)
            && self.u32(type_bits(a.kind) | u32::from(a.perm))
            && self.u32(a.nlink)
            && self.u32(a.uid)
            && self.u32(a.gid)
            && self.u32(a.rdev)
            && self.u32(a.blksize)
            && self.u32(a.flags)
    }
    /// `fuse_entry_out`.
    fn entry(
        &mut self,
        attr_ttl: &Duration,
        entry_ttl: &Duration,
        a: &FileAttr,
        gen: Generation,
    ) -> bool {
        self.u64(a.ino.0)
            && self.u64(gen.0)
            && self.u64(entry_ttl.as_secs())
            && self.u64(attr_ttl.as_secs())
            && self.u32(entry_ttl.subsec_nanos())
            && self.u32(attr_ttl.subsec_nanos())
            && self.attr(a)
    }
    /// `fuse_open_out`.
    fn open(&mut self, fh: FileHandle, flags: FopenFlags) -> bool {
        self.u64(fh.0) && self.u32(flags.bits()) && self.u32(0)
    }
    /// `fuse_dirent` (padded to 8 bytes), if it fits under `cap`.
    fn dirent(&mut self, cap: usize, ino: u64, off: u64, kind: FileType, name: &OsStr) -> bool {
        let n = name.as_bytes();
        let size = (DIRENT_LEN + n.len()).next_multiple_of(8);
        if self.len + size > cap {
            return false;
        }
        let pad = size - DIRENT_LEN - n.len();
        self.u64(ino)
            && self.u64(off)
            && self.u32(n.len() as u32)
            && self.u32(type_bits(kind) >> 12)
            && self.put(n)
            && self.put(&[0u8; 8][..pad])
    }
}

/// Where one request's answer goes.
struct Out<'a> {
    w: W<'a>,
    result: Option<Result<usize, i32>>,
    then: Option<Box<dyn FnOnce() + Send>>,
    /// Directory listings: the size the kernel asked for.
    cap: usize,
}

impl Out<'_> {
    fn done(&mut self, ok: bool) {
        self.result = Some(if ok { Ok(self.w.len) } else { Err(libc::EIO) });
    }
}

/// A reply handle on an [`Out`]: consumed by its answer, as fuser's are.
struct U<'o, 'a>(&'o mut Out<'a>);

impl RError for U<'_, '_> {
    fn error(self, e: fuser::Errno) {
        self.0.result = Some(Err(e.code()));
    }
}

impl REmpty for U<'_, '_> {
    fn ok(self) {
        self.0.result = Some(Ok(0));
    }
}

impl REntry for U<'_, '_> {
    fn entry_with_ttls(
        self,
        attr_ttl: &Duration,
        entry_ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
    ) {
        let ok = self.0.w.entry(attr_ttl, entry_ttl, attr, gen);
        self.0.done(ok);
    }
}

impl RAttr for U<'_, '_> {
    fn attr(self, ttl: &Duration, attr: &FileAttr) {
        let w = &mut self.0.w;
        let ok = w.u64(ttl.as_secs()) && w.u32(ttl.subsec_nanos()) && w.u32(0) && w.attr(attr);
        self.0.done(ok);
    }
}

impl RData for U<'_, '_> {
    fn data(self, data: &[u8]) {
        let ok = self.0.w.put(data);
        self.0.done(ok);
    }
    const IN_PLACE: bool = true;
    fn buffer(&mut self, size: usize) -> &mut [u8] {
        let n = size.min(self.0.w.buf.len());
        &mut self.0.w.buf[..n]
    }
    fn filled(self, n: usize) {
        let ok = n <= self.0.w.buf.len();
        self.0.w.len = n.min(self.0.w.buf.len());
        self.0.done(ok);
    }
}

impl ROpen for U<'_, '_> {
    fn opened(self, fh: FileHandle, flags: FopenFlags) {
        let ok = self.0.w.open(fh, flags);
        self.0.done(ok);
    }
}

impl RCreate for U<'_, '_> {
    fn created(
        self,
        ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
        fh: FileHandle,
        flags: FopenFlags,
    ) {
        let ok = self.0.w.entry(ttl, ttl, attr, gen) && self.0.w.open(fh, flags);
        self.0.done(ok);
    }
}

impl RWrite for U<'_, '_> {
    const DEFERS: bool = true;
    fn written(self, size: u32) {
        let ok = self.0.w.u32(size) && self.0.w.u32(0);
        self.0.done(ok);
    }
    fn written_then(self, size: u32, then: Box<dyn FnOnce() + Send>) {
        self.0.then = Some(then);
        self.written(size);
    }
}

impl RStatfs for U<'_, '_> {
    fn statfs(
        self,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        bsize: u32,
        namelen: u32,
        frsize: u32,
    ) {
        let w = &mut self.0.w;
        let ok = w.u64(blocks)
            && w.u64(bfree)
            && w.u64(bavail)
            && w.u64(files)
            && w.u64(ffree)
            && w.u32(bsize)
            && w.u32(namelen)
            && w.u32(frsize)
            && w.u32(0)
            && w.put(&[0u8; 24]);
        self.0.done(ok);
    }
}

impl RDir for U<'_, '_> {
    fn add(&mut self, ino: INodeNo, offset: u64, kind: FileType, name: &OsStr) -> bool {
        let cap = self.0.cap;
        !self.0.w.dirent(cap, ino.0, offset, kind, name)
    }
    fn ok(self) {
        self.0.result = Some(Ok(self.0.w.len));
    }
}

impl RDirPlus for U<'_, '_> {
    fn add(
        &mut self,
        ino: INodeNo,
        offset: u64,
        name: &OsStr,
        ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
    ) -> bool {
        let n = name.as_bytes().len();
        let size = ENTRY_LEN + (DIRENT_LEN + n).next_multiple_of(8);
        if self.0.w.len + size > self.0.cap {
            return true;
        }
        let start = self.0.w.len;
        let ok = self.0.w.entry(ttl, ttl, attr, gen)
            && self.0.w.dirent(self.0.cap, ino.0, offset, attr.kind, name);
        if !ok {
            self.0.w.len = start;
        }
        !ok
    }
    fn ok(self) {
        self.0.result = Some(Ok(self.0.w.len));
    }
}

impl RXattr for U<'_, '_> {}

/// The process a ring request comes from.
struct RingCaller {
    uid: u32,
    gid: u32,
    pid: u32,
}

impl Caller for RingCaller {
    fn uid(&self) -> u32 {
        self.uid
    }
    fn gid(&self) -> u32 {
        self.gid
    }
    fn pid(&self) -> u32 {
        self.pid
    }
}

/// Serves ring requests with p2k's handlers.
pub(crate) struct RingFs(pub Arc<P2k>);

impl RingHandler for RingFs {
    fn handle(&self, req: &RingRequest<'_>, out: &mut [u8]) -> Served {
        let mut o = Out {
            cap: out.len(),
            w: W { buf: out, len: 0 },
            result: None,
            then: None,
        };
        dispatch(&P2kFs(self.0.clone()), req, &mut o);
        Served {
            // A handler that answered nothing is a bug: EIO, not a hang.
            result: o.result.unwrap_or(Err(libc::EIO)),
            then: o.then,
        }
    }
}

fn dispatch(fs: &P2kFs, r: &RingRequest<'_>, o: &mut Out<'_>) {
    let who = RingCaller {
        uid: r.uid,
        gid: r.gid,
        pid: r.pid,
    };
    let ino = INodeNo(r.nodeid);
    let a = r.op_in;
    let mut nm = names(r.payload);
    let mut name = || nm.next().unwrap_or_default();
    match r.opcode {
        LOOKUP => fs.do_lookup(&who, ino, name(), U(o)),
        GETATTR => {
            let fh = (u32_at(a, 0) & GETATTR_FH != 0).then(|| FileHandle(u64_at(a, 8)));
            fs.do_getattr(&who, ino, fh, U(o))
        }
        SETATTR => {
            let valid = u32_at(a, 0);
            let has = |f: u32| valid & f != 0;
            let when = |set: u32, now: u32, secs: usize, nsecs: usize| {
                has(set).then(|| {
                    if has(now) {
                        TimeOrNow::Now
                    } else {
                        TimeOrNow::SpecificTime(time_of(u64_at(a, secs), u32_at(a, nsecs)))
                    }
                })
            };
            fs.do_setattr(
                &who,
                ino,
                has(FATTR_MODE).then(|| u32_at(a, 68)),
                has(FATTR_UID).then(|| u32_at(a, 76)),
                has(FATTR_GID).then(|| u32_at(a, 80)),
                has(FATTR_SIZE).then(|| u64_at(a, 16)),
                when(FATTR_ATIME, FATTR_ATIME_NOW, 32, 56),
                when(FATTR_MTIME, FATTR_MTIME_NOW, 40, 60),
                has(FATTR_CTIME).then(|| time_of(u64_at(a, 48), u32_at(a, 64))),
                has(FATTR_FH).then(|| FileHandle(u64_at(a, 8))),
                None,
                None,
                None,
                None,
                U(o),
            )
        }
        READLINK => fs.do_readlink(&who, ino, U(o)),
        SYMLINK => {
            let link = name();
            let target = name();
            fs.do_symlink(&who, ino, link, Path::new(target), U(o))
        }
        MKNOD => fs.do_mknod(
            &who,
            ino,
            name(),
            u32_at(a, 0),
            u32_at(a, 8),
            u32_at(a, 4),
            U(o),
        ),
        MKDIR => fs.do_mkdir(&who, ino, name(), u32_at(a, 0), u32_at(a, 4), U(o)),
        UNLINK => fs.do_unlink(&who, ino, name(), U(o)),
        RMDIR => fs.do_rmdir(&who, ino, name(), U(o)),
        RENAME | RENAME2 => {
            let newdir = INodeNo(u64_at(a, 0));
            let flags = if r.opcode == RENAME2 {
                RenameFlags::from_bits_retain(u32_at(a, 8))
            } else {
                RenameFlags::empty()
            };
            let old = name();
            let new = name();
            fs.do_rename(&who, ino, old, newdir, new, flags, U(o))
        }
        LINK => fs.do_link(&who, INodeNo(u64_at(a, 0)), ino, name(), U(o)),
        OPEN => fs.do_open(&who, ino, OpenFlags(u32_at(a, 0) as i32), U(o)),
        OPENDIR => fs.do_opendir(&who, ino, OpenFlags(u32_at(a, 0) as i32), U(o)),
        READ => {
            let lock = (u32_at(a, 20) & READ_LOCKOWNER != 0).then(|| LockOwner(u64_at(a, 24)));
            fs.do_read(
                &who,
                ino,
                FileHandle(u64_at(a, 0)),
                u64_at(a, 8),
                u32_at(a, 16),
                OpenFlags(u32_at(a, 32) as i32),
                lock,
                U(o),
            )
        }
        WRITE => {
            let size = u32_at(a, 16) as usize;
            let wflags = u32_at(a, 20);
            let lock = (wflags & WRITE_LOCKOWNER != 0).then(|| LockOwner(u64_at(a, 24)));
            match r.payload.get(..size) {
                Some(data) => fs.do_write(
                    &who,
                    ino,
                    FileHandle(u64_at(a, 0)),
                    u64_at(a, 8),
                    data,
                    WriteFlags::from_bits_retain(wflags),
                    OpenFlags(u32_at(a, 32) as i32),
                    lock,
                    U(o),
                ),
                None => U(o).error(fuser::Errno::EIO),
            }
        }
        STATFS => fs.do_statfs(&who, ino, U(o)),
        RELEASE | RELEASEDIR => {
            let fh = FileHandle(u64_at(a, 0));
            let flags = OpenFlags(u32_at(a, 8) as i32);
            if r.opcode == RELEASE {
                let rflags = u32_at(a, 12);
                fs.do_release(
                    &who,
                    ino,
                    fh,
                    flags,
                    None,
                    rflags & RELEASE_FLUSH != 0,
                    U(o),
                )
            } else {
                fs.do_releasedir(&who, ino, fh, flags, U(o))
            }
        }
        FSYNC => fs.do_fsync(
            &who,
            ino,
            FileHandle(u64_at(a, 0)),
            u32_at(a, 8) & FSYNC_FDATASYNC != 0,
            U(o),
        ),
        FSYNCDIR => fs.do_fsyncdir(
            &who,
            ino,
            FileHandle(u64_at(a, 0)),
            u32_at(a, 8) & FSYNC_FDATASYNC != 0,
            U(o),
        ),
        READDIR | READDIRPLUS => {
            o.cap = o.cap.min(u32_at(a, 16) as usize);
            let fh = FileHandle(u64_at(a, 0));
            let off = u64_at(a, 8);
            if r.opcode == READDIR {
                fs.do_readdir(&who, ino, fh, off, U(o))
            } else {
                fs.do_readdirplus(&who, ino, fh, off, U(o))
            }
        }
        ACCESS => fs.do_access(
            &who,
            ino,
            AccessFlags::from_bits_retain(u32_at(a, 0) as i32),
            U(o),
        ),
        CREATE => fs.do_create(
            &who,
            ino,
            name(),
            u32_at(a, 4),
            u32_at(a, 8),
            u32_at(a, 0) as i32,
            U(o),
        ),
        DESTROY => REmpty::ok(U(o)),
        // FLUSH and the xattr requests get ENOSYS from the handlers too
        // (the kernel then stops sending them); the rest p2k does not serve.
        _ => U(o).error(fuser::Errno::ENOSYS),
    }
}
