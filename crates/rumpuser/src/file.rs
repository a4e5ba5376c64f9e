//! Host block devices: regular image files and raw block devices
//! (`/dev/loopN`, `/dev/sdb1`), with the write-through policies of [`BlkIo`].
//!
//! All I/O is positional (`preadv`/`pwritev`), so every call takes `&self`
//! and calls run concurrently. Short transfers are retried to completion.
//! The device size is fixed when the device is opened: I/O past it is `EIO`,
//! an image file never grows.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{check_range, host_error, last_host_error, BlockDevice, Error, RuResult};

/// How writes reach stable storage. See the crate documentation for the
/// table of what each policy does after a write and on `flush()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlkIo {
    /// `O_DIRECT`: writes bypass the host page cache. Buffers and offsets
    /// that are not aligned to the device's direct-I/O alignment go through
    /// aligned bounce buffers (read-modify-write at unaligned edges). Where
    /// the host refuses `O_DIRECT` (`EINVAL` at open, or a writable image
    /// whose size is not a multiple of the alignment) the device falls back
    /// to [`BlkIo::RangeSync`] and logs one warning. `flush()` = `fdatasync`,
    /// which also flushes the drive's write cache.
    Direct,
    /// After each write, `sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER)` on
    /// just the written range. `flush()` = `fdatasync`.
    RangeSync,
    /// After each write, `fdatasync`. `flush()` = `fsync`.
    Fsync,
    /// No write-through: a completed write may sit in the host page cache
    /// until `flush()` (= `fsync`). For tests and benchmarks only; a host
    /// crash can lose writes the file system believes are on disk.
    Cached,
}

impl BlkIo {
    /// The default policy: `RangeSync`, the fastest of the write-through
    /// policies in the benchmarks (`bench/ext2.py --only in,bigin
    /// --rump-opts blkio=P`, full scale, 3 interleaved runs each, 2-core VM,
    /// with delayed write-back not waited for; rump_ext2fs/kernel ratios of
    /// the medians, see docs/performance.md):
    ///
    /// | policy | 35,000-file tree in | 700 MB file in |
    /// |---|---|---|
    /// | `direct` | 2.28 (11.4 s) | 0.56 (1.35 s) |
    /// | `rangesync` | 2.31 (11.7 s) | 0.47 (1.37 s) |
    /// | `fsync` | 2.71 (14.6 s) | 0.68 (1.33 s) |
    /// | `cached` | 2.26 (11.2 s) | 0.67 (1.38 s) |
    ///
    /// `direct` and `rangesync` tie within the noise; `rangesync` keeps the
    /// host's page cache and readahead for reads and works on every host
    /// file system (`direct` falls back to it where `O_DIRECT` is refused);
    /// `cached` buys nothing measurable for giving up write-through.
    pub const DEFAULT: BlkIo = BlkIo::RangeSync;

    /// Parse an option spelling: `direct`, `rangesync`, `fsync`, `cached`.
    /// Errors: `EINVAL` for anything else.
    pub fn parse(s: &str) -> RuResult<BlkIo> {
        match s {
            "direct" => Ok(BlkIo::Direct),
            "rangesync" => Ok(BlkIo::RangeSync),
            "fsync" => Ok(BlkIo::Fsync),
            "cached" => Ok(BlkIo::Cached),
            _ => Err(Error::EINVAL),
        }
    }

    /// The option spelling that [`BlkIo::parse`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            BlkIo::Direct => "direct",
            BlkIo::RangeSync => "rangesync",
            BlkIo::Fsync => "fsync",
            BlkIo::Cached => "cached",
        }
    }
}

impl Default for BlkIo {
    fn default() -> Self {
        BlkIo::DEFAULT
    }
}

impl fmt::Display for BlkIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BlkIo {
    type Err = Error;
    fn from_str(s: &str) -> RuResult<BlkIo> {
        BlkIo::parse(s)
    }
}

/// Options of [`open_device`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOpts {
    /// Open `O_RDONLY`; writes fail with `EROFS`.
    pub read_only: bool,
    /// Write-through policy.
    pub blkio: BlkIo,
}

impl Default for OpenOpts {
    /// Read-write with [`BlkIo::DEFAULT`].
    fn default() -> Self {
        OpenOpts {
            read_only: false,
            blkio: BlkIo::DEFAULT,
        }
    }
}

/// Open the image file or raw block device at `path`.
///
/// Size comes from `fstat` for files and `BLKGETSIZE64` for block devices;
/// the logical sector size from `BLKSSZGET` (512 for files). A block device
/// opened read-write is opened `O_EXCL`, so a device the host has mounted is
/// refused with `EBUSY`.
///
/// Errors: `ENOENT`, `EACCES`, `EROFS`, `EISDIR`, `ENOTBLK` (not a regular
/// file or block device), `EBUSY`, other host errnos of `open`/`ioctl`.
pub fn open_device(path: &str, opts: &OpenOpts) -> RuResult<Arc<dyn BlockDevice>> {
    Ok(Arc::new(FileDevice::open(path, opts)?))
}

/// Largest bounce buffer used for one piece of an unaligned `O_DIRECT`
/// request; longer requests are done in pieces of this size.
const BOUNCE_MAX: u64 = 1 << 20;

/// Most iovecs handed to one `preadv`/`pwritev` (Linux `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// A block device backed by a host file descriptor (image file or raw
/// block device). Made by [`open_device`] / [`FileDevice::open`].
pub struct FileDevice {
    file: File,
    path: String,
    size: u64,
    sector: u32,
    /// Effective policy (after a possible `O_DIRECT` fallback).
    blkio: BlkIo,
    /// Direct-I/O alignment of offsets, lengths and memory (a power of
    /// two, at least 512); meaningful for `BlkIo::Direct` only.
    align: u64,
    read_only: bool,
    block_device: bool,
    /// Serializes unaligned `O_DIRECT` writes, whose read-modify-write of
    /// the edge sectors would otherwise lose a concurrent write that shares
    /// a sector with them.
    rmw: Mutex<()>,
}

impl fmt::Debug for FileDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDevice")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("sector", &self.sector)
            .field("blkio", &self.blkio)
            .field("read_only", &self.read_only)
            .field("block_device", &self.block_device)
            .finish()
    }
}

fn open_fd(path: &str, read_only: bool, direct: bool, excl: bool) -> std::io::Result<File> {
    let mut flags = 0;
    if direct {
        flags |= libc::O_DIRECT;
    }
    if excl {
        flags |= libc::O_EXCL;
    }
    OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(flags)
        .open(path)
}

impl FileDevice {
    /// Open `path`; see [`open_device`] for what is done and the errors.
    pub fn open(path: &str, opts: &OpenOpts) -> RuResult<FileDevice> {
        let meta = std::fs::metadata(path).map_err(|e| host_error(&e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            return Err(Error(libc::EISDIR));
        }
        if !ft.is_file() && !ft.is_block_device() {
            return Err(Error(libc::ENOTBLK));
        }
        // O_EXCL on a block device (without O_CREAT) claims it exclusively.
        let excl = ft.is_block_device() && !opts.read_only;
        let mut blkio = opts.blkio;
        loop {
            let direct = blkio == BlkIo::Direct;
            let file = match open_fd(path, opts.read_only, direct, excl) {
                Ok(f) => f,
                Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    log::warn!(
                        "{path}: host refuses O_DIRECT (EINVAL at open); using blkio=rangesync"
                    );
                    blkio = BlkIo::RangeSync;
                    continue;
                }
                Err(e) => return Err(host_error(&e)),
            };
            let meta = file.metadata().map_err(|e| host_error(&e))?;
            let block_device = meta.file_type().is_block_device();
            if !block_device && !meta.file_type().is_file() {
                return Err(Error(libc::ENOTBLK));
            }
            let fd = file.as_raw_fd();
            let (size, sector) = if block_device {
                (blk_size(fd)?, blk_sector_size(fd)?)
            } else {
                (meta.len(), 512)
            };
            let mut align = u64::from(sector.max(512));
            if direct {
                match dio_align(fd) {
                    Some((_, 0)) if !block_device => {
                        log::warn!(
                            "{path}: host file system has no direct I/O; using blkio=rangesync"
                        );
                        blkio = BlkIo::RangeSync;
                        continue;
                    }
                    Some((mem, offset)) => align = align.max(u64::from(mem)).max(u64::from(offset)),
                    None => {}
                }
                align = align.next_power_of_two();
                if !opts.read_only && size % align != 0 {
                    log::warn!(
                        "{path}: size {size} is not a multiple of the O_DIRECT alignment {align}; \
                         using blkio=rangesync"
                    );
                    blkio = BlkIo::RangeSync;
                    continue;
                }
            }
            return Ok(FileDevice {
                file,
                path: path.to_string(),
                size,
                sector,
                blkio,
                align,
                read_only: opts.read_only,
                block_device,
                rmw: Mutex::new(()),
            });
        }
    }

    /// The policy in effect (differs from the requested one after an
    /// `O_DIRECT` fallback).
    pub fn blkio(&self) -> BlkIo {
        self.blkio
    }

    /// Path the device was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Is this a raw block device (not an image file)?
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// Alignment of `O_DIRECT` transfers (offset, length and memory).
    pub fn direct_alignment(&self) -> u64 {
        self.align
    }

    /// Does a request at `off` with these buffers need a bounce buffer?
    fn needs_bounce(&self, off: u64, mut bufs: impl Iterator<Item = (usize, usize)>) -> bool {
        let a = self.align as usize;
        if !off.is_multiple_of(self.align) {
            return true;
        }
        bufs.any(|(addr, len)| addr % a != 0 || len % a != 0)
    }

    /// `preadv`/`pwritev` of `iov` at `off` until all is transferred.
    /// A read that meets end of file after at least `min` bytes is complete.
    fn rw_full(
        &self,
        mut off: u64,
        iov: &mut [libc::iovec],
        write: bool,
        min: usize,
    ) -> RuResult<()> {
        let fd = self.file.as_raw_fd();
        let mut i = 0;
        let mut done = 0usize;
        loop {
            while i < iov.len() && iov[i].iov_len == 0 {
                i += 1;
            }
            if i == iov.len() {
                return Ok(());
            }
            let cnt = (iov.len() - i).min(IOV_MAX) as libc::c_int;
            let ptr = iov[i..].as_ptr();
            let n = if write {
                // SAFETY: every iovec from index i on describes a live buffer
                // the caller borrows for this call (cnt of them, in bounds).
                unsafe { libc::pwritev(fd, ptr, cnt, off as libc::off_t) }
            } else {
                // SAFETY: as above; for reads the buffers were borrowed
                // mutably, so the kernel may write into them.
                unsafe { libc::preadv(fd, ptr, cnt, off as libc::off_t) }
            };
            if n < 0 {
                let e = last_host_error();
                if e.0 == libc::EINTR {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                // End of file (read), or a write that made no progress.
                return if !write && done >= min {
                    Ok(())
                } else {
                    Err(Error::EIO)
                };
            }
            let mut n = n as usize;
            done += n;
            off += n as u64;
            while n > 0 {
                let len = iov[i].iov_len;
                if n >= len {
                    n -= len;
                    iov[i].iov_len = 0;
                    i += 1;
                } else {
                    iov[i].iov_base =
                        (iov[i].iov_base as *mut u8).wrapping_add(n) as *mut libc::c_void;
                    iov[i].iov_len -= n;
                    n = 0;
                }
            }
        }
    }

    fn read_iov(&self, off: u64, bufs: &mut [&mut [u8]]) -> RuResult<()> {
        let total = bufs.iter().map(|b| b.len()).sum();
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        self.rw_full(off, &mut iov, false, total)
    }

    fn write_iov(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
        let mut iov: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        self.rw_full(off, &mut iov, true, 0)
    }

    /// Read aligned `[pos, pos + buf.len())`; EOF is tolerated after the
    /// device's end (only on an image whose size is not aligned).
    fn read_aligned(&self, pos: u64, buf: &mut [u8]) -> RuResult<()> {
        let min = (self.size.min(pos + buf.len() as u64) - pos) as usize;
        let mut iov = [libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        }];
        self.rw_full(pos, &mut iov, false, min)
    }

    /// Unaligned `O_DIRECT` read through bounce buffers.
    fn direct_read(&self, off: u64, bufs: &mut [&mut [u8]], total: usize) -> RuResult<()> {
        let a = self.align;
        let end = off + total as u64;
        let mut pos = off;
        while pos < end {
            let w0 = pos / a * a;
            let w1 = round_up(end, a).min(w0 + bounce_max(a));
            let mut bounce = AlignedBuf::new((w1 - w0) as usize, a as usize);
            self.read_aligned(w0, bounce.as_mut())?;
            let piece_end = w1.min(end);
            scatter(
                bufs,
                (pos - off) as usize,
                &bounce.as_ref()[(pos - w0) as usize..(piece_end - w0) as usize],
            );
            pos = piece_end;
        }
        Ok(())
    }

    /// Unaligned `O_DIRECT` write through bounce buffers, reading the
    /// partly written edge sectors first.
    fn direct_write(&self, off: u64, bufs: &[&[u8]], total: usize) -> RuResult<()> {
        let a = self.align;
        let end = off + total as u64;
        let _rmw = if !off.is_multiple_of(a) || !end.is_multiple_of(a) {
            Some(self.rmw.lock())
        } else {
            None
        };
        let mut pos = off;
        while pos < end {
            let w0 = pos / a * a;
            let w1 = round_up(end, a).min(w0 + bounce_max(a));
            let len = (w1 - w0) as usize;
            let mut bounce = AlignedBuf::new(len, a as usize);
            let piece_end = w1.min(end);
            if pos > w0 {
                self.read_aligned(w0, &mut bounce.as_mut()[..a as usize])?;
            }
            if piece_end < w1 && (w1 - a > w0 || pos == w0) {
                self.read_aligned(w1 - a, &mut bounce.as_mut()[len - a as usize..])?;
            }
            gather(
                bufs,
                (pos - off) as usize,
                &mut bounce.as_mut()[(pos - w0) as usize..(piece_end - w0) as usize],
            );
            let mut iov = [libc::iovec {
                iov_base: bounce.as_mut().as_mut_ptr() as *mut libc::c_void,
                iov_len: len,
            }];
            self.rw_full(w0, &mut iov, true, 0)?;
            pos = piece_end;
        }
        Ok(())
    }

    /// The policy's work after a successful write of `[off, off + len)`.
    fn after_write(&self, off: u64, len: usize) -> RuResult<()> {
        match self.blkio {
            BlkIo::Direct | BlkIo::Cached => Ok(()),
            BlkIo::Fsync => self.file.sync_data().map_err(|e| host_error(&e)),
            BlkIo::RangeSync => {
                let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                loop {
                    // SAFETY: sync_file_range only takes integers; the fd is
                    // owned by self.file and open.
                    let r = unsafe {
                        libc::sync_file_range(self.file.as_raw_fd(), off as _, len as _, flags)
                    };
                    if r == 0 {
                        return Ok(());
                    }
                    let e = last_host_error();
                    match e.0 {
                        libc::EINTR => continue,
                        // Host without ranged sync for this file: sync it all.
                        libc::ENOSYS | libc::EOPNOTSUPP | libc::ESPIPE => {
                            return self.file.sync_data().map_err(|e| host_error(&e))
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    fn do_read(&self, off: u64, bufs: &mut [&mut [u8]]) -> RuResult<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        check_range(off, total, self.size)?;
        if total == 0 {
            return Ok(());
        }
        if self.blkio == BlkIo::Direct
            && self.needs_bounce(off, bufs.iter().map(|b| (b.as_ptr() as usize, b.len())))
        {
            self.direct_read(off, bufs, total)
        } else {
            self.read_iov(off, bufs)
        }
    }

    /// The policy's work after a successful delayed write (see
    /// [`BlockDevice::writev_at_delayed`]): `RangeSync` starts the
    /// write-out of the range without waiting for it; the others do
    /// nothing (`Direct` writes have already reached the device; `Fsync`
    /// and `Cached` leave it to `flush`).
    fn after_delayed_write(&self, off: u64, len: usize) -> RuResult<()> {
        if self.blkio != BlkIo::RangeSync {
            return Ok(());
        }
        loop {
            // SAFETY: sync_file_range only takes integers; the fd is owned
            // by self.file and open.
            let r = unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    off as _,
                    len as _,
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            if r == 0 {
                return Ok(());
            }
            let e = last_host_error();
            match e.0 {
                libc::EINTR => continue,
                // No ranged write-out here: flush() will write it.
                libc::ENOSYS | libc::EOPNOTSUPP | libc::ESPIPE => return Ok(()),
                _ => return Err(e),
            }
        }
    }

    fn do_write(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
        self.do_write_how(off, bufs, false)
    }

    fn do_write_how(&self, off: u64, bufs: &[&[u8]], delayed: bool) -> RuResult<()> {
        if self.read_only {
            return Err(Error::EROFS);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        check_range(off, total, self.size)?;
        if total == 0 {
            return Ok(());
        }
        if self.blkio == BlkIo::Direct
            && self.needs_bounce(off, bufs.iter().map(|b| (b.as_ptr() as usize, b.len())))
        {
            self.direct_write(off, bufs, total)?;
        } else {
            self.write_iov(off, bufs)?;
        }
        if delayed {
            self.after_delayed_write(off, total)
        } else {
            self.after_write(off, total)
        }
    }
}

impl BlockDevice for FileDevice {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> RuResult<()> {
        self.do_read(off, &mut [buf])
    }

    fn write_at(&self, off: u64, buf: &[u8]) -> RuResult<()> {
        self.do_write(off, &[buf])
    }

    fn readv_at(&self, off: u64, bufs: &mut [&mut [u8]]) -> RuResult<()> {
        self.do_read(off, bufs)
    }

    fn writev_at(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
        self.do_write(off, bufs)
    }

    fn writev_at_delayed(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
        self.do_write_how(off, bufs, true)
    }

    fn flush(&self) -> RuResult<()> {
        if self.read_only {
            return Ok(());
        }
        let r = match self.blkio {
            BlkIo::Direct | BlkIo::RangeSync => self.file.sync_data(),
            BlkIo::Fsync | BlkIo::Cached => self.file.sync_all(),
        };
        r.map_err(|e| host_error(&e))
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn sector_size(&self) -> u32 {
        self.sector
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }
}

fn round_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Bounce piece size: `BOUNCE_MAX` rounded down to the alignment, at least
/// one aligned unit.
fn bounce_max(a: u64) -> u64 {
    (BOUNCE_MAX / a * a).max(a)
}

/// Copy `src` into the concatenation of `bufs`, starting at byte `at` of it.
fn scatter(bufs: &mut [&mut [u8]], mut at: usize, mut src: &[u8]) {
    for b in bufs.iter_mut() {
        if src.is_empty() {
            return;
        }
        if at >= b.len() {
            at -= b.len();
            continue;
        }
        let n = (b.len() - at).min(src.len());
        b[at..at + n].copy_from_slice(&src[..n]);
        src = &src[n..];
        at = 0;
    }
}

/// Fill `dst` from the concatenation of `bufs`, starting at byte `at` of it.
fn gather(bufs: &[&[u8]], mut at: usize, mut dst: &mut [u8]) {
    for b in bufs {
        if dst.is_empty() {
            return;
        }
        if at >= b.len() {
            at -= b.len();
            continue;
        }
        let n = (b.len() - at).min(dst.len());
        dst[..n].copy_from_slice(&b[at..at + n]);
        dst = &mut dst[n..];
        at = 0;
    }
}

/// A zeroed buffer whose start is aligned to a power of two (a slice of a
/// slightly larger `Vec`, so no unsafe allocation is needed).
struct AlignedBuf {
    v: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize, align: usize) -> AlignedBuf {
        let v = vec![0u8; len + align];
        let addr = v.as_ptr() as usize;
        let start = (align - addr % align) % align;
        AlignedBuf { v, start, len }
    }

    fn as_ref(&self) -> &[u8] {
        &self.v[self.start..self.start + self.len]
    }

    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.v[self.start..self.start + self.len]
    }
}

/// `_IOR(0x12, 114, size_t)`: block device size in bytes (u64).
const BLKGETSIZE64: libc::Ioctl = {
    #[cfg(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "sparc",
        target_arch = "sparc64"
    ))]
    const READ: u64 = 2 << 29;
    #[cfg(not(any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )))]
    const READ: u64 = 2 << 30;
    (READ | ((std::mem::size_of::<usize>() as u64) << 16) | (0x12 << 8) | 114) as libc::Ioctl
};

/// Size of a block device (`BLKGETSIZE64`).
fn blk_size(fd: libc::c_int) -> RuResult<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 stores one u64 through the pointer, which points
    // at a local u64.
    let r = unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size as *mut u64) };
    if r < 0 {
        return Err(last_host_error());
    }
    Ok(size)
}

/// Logical sector size of a block device (`BLKSSZGET`).
fn blk_sector_size(fd: libc::c_int) -> RuResult<u32> {
    let mut ssz: libc::c_int = 0;
    // SAFETY: BLKSSZGET stores one int through the pointer, which points at
    // a local c_int.
    let r = unsafe { libc::ioctl(fd, libc::BLKSSZGET, &mut ssz as *mut libc::c_int) };
    if r < 0 {
        return Err(last_host_error());
    }
    match u32::try_from(ssz) {
        Ok(s) if s.is_power_of_two() && s >= 512 => Ok(s),
        _ => Err(Error::EIO),
    }
}

/// Direct-I/O alignment the host reports (`statx` `STATX_DIOALIGN`):
/// `Some((memory, offset))`, `Some((_, 0))` when the file cannot do direct
/// I/O, `None` when the host does not say.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn dio_align(fd: libc::c_int) -> Option<(u32, u32)> {
    // SAFETY: statx is plain old data (integers only); all-zero is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a valid NUL-terminated empty string, used with
    // AT_EMPTY_PATH on an open fd; statx writes only into `stx`.
    let r = unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if r != 0 || stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return None;
    }
    Some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn dio_align(_fd: libc::c_int) -> Option<(u32, u32)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_spellings() {
        for p in [BlkIo::Direct, BlkIo::RangeSync, BlkIo::Fsync, BlkIo::Cached] {
            assert_eq!(BlkIo::parse(p.as_str()), Ok(p));
            assert_eq!(p.to_string().parse::<BlkIo>(), Ok(p));
        }
        assert_eq!(BlkIo::parse("Direct"), Err(Error::EINVAL));
        assert_eq!(BlkIo::parse(""), Err(Error::EINVAL));
        assert_eq!(BlkIo::DEFAULT, BlkIo::RangeSync);
        assert_eq!(OpenOpts::default().blkio, BlkIo::DEFAULT);
    }

    #[test]
    fn blkgetsize64_value() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(BLKGETSIZE64, 0x8008_1272);
    }

    #[test]
    fn scatter_gather_cross_buffers() {
        let mut a = [0u8; 3];
        let mut b = [0u8; 4];
        {
            let mut bufs: [&mut [u8]; 2] = [&mut a, &mut b];
            scatter(&mut bufs, 2, &[1, 2, 3]);
        }
        assert_eq!(a, [0, 0, 1]);
        assert_eq!(b, [2, 3, 0, 0]);
        let mut out = [0u8; 4];
        gather(&[&a, &b], 1, &mut out);
        assert_eq!(out, [0, 1, 2, 3]);
    }

    #[test]
    fn aligned_buf_is_aligned() {
        for align in [512usize, 4096] {
            let mut b = AlignedBuf::new(1000, align);
            assert_eq!(b.as_mut().as_ptr() as usize % align, 0);
            assert_eq!(b.as_ref().len(), 1000);
        }
    }
}
