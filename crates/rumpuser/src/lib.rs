//! rumpuser: the host boundary, modelled on NetBSD's `rumpuser.h`.
//!
//! This is the only crate of rumpfs that talks to the host operating system
//! for storage, time and threads. Porting rumpfs to another host means
//! rewriting this crate and nothing else. Every call returns a host errno
//! ([`Error`], Linux numbering) translated from the host's error in a single
//! place; rumpkern turns it into its own `Errno`.
//!
//! Interface version: [`RUMPUSER_VERSION`] (bumped whenever a call changes).
//!
//! # Call table
//!
//! ## Block devices (open)
//!
//! | call | what it does | errors |
//! |---|---|---|
//! | [`open_device`]`(path, &OpenOpts)` | open an image file or raw block device as a [`BlockDevice`] | `ENOENT`, `EACCES`, `EROFS` (read-write open on a read-only host fs), `EISDIR`, `ENOTBLK` (neither regular file nor block device), `EBUSY` (block device in use, e.g. mounted, when opened read-write), any other host `open`/`fstat`/`ioctl` errno |
//! | [`FileDevice::open`]`(path, &OpenOpts)` | the same, returning the concrete type (effective [`BlkIo`] policy, alignment) | as `open_device` |
//! | [`BlkIo::parse`]`(s)` | `direct`, `rangesync`, `fsync`, `cached` | `EINVAL` on any other spelling |
//!
//! Write-through policies ([`BlkIo`]); the default is [`BlkIo::DEFAULT`]
//! (`RangeSync` until benchmarks decide otherwise):
//!
//! | policy | after each write | after a delayed write (`writev_at_delayed`) | `flush()` |
//! |---|---|---|---|
//! | `Direct` | nothing: `O_DIRECT` bypasses the host cache (aligned bounce buffers when the caller's are not aligned; falls back to `RangeSync` with one warning where the host refuses `O_DIRECT`) | nothing (already on the device) | `fdatasync` (drive cache) |
//! | `RangeSync` | `sync_file_range(WAIT_BEFORE\|WRITE\|WAIT_AFTER)` on the written range | `sync_file_range(WRITE)`: write-out started, not waited for | `fdatasync` |
//! | `Fsync` | `fdatasync` | nothing | `fsync` |
//! | `Cached` | nothing: data may sit in the host cache (tests, benchmarks only) | nothing | `fsync` |
//!
//! ## Block devices (I/O, the [`BlockDevice`] trait)
//!
//! All calls take `&self` and may run concurrently. Offsets are bytes.
//!
//! | call | what it does | errors |
//! |---|---|---|
//! | `read_at(off, buf)` | read exactly `buf.len()` bytes (`pread`, short reads retried) | `EIO` past the end or on a host read error |
//! | `readv_at(off, bufs)` | read buffers laid end to end, one device request (`preadv`) | as `read_at` |
//! | `write_at(off, buf)` | write all of `buf` (`pwrite`, short writes retried), then apply the policy | `EROFS` read-only device; `EIO` past the end; `ENOSPC`, `EIO` from the host |
//! | `writev_at(off, bufs)` | write buffers laid end to end, one device request (`pwritev`) | as `write_at` |
//! | `writev_at_delayed(off, bufs)` | as `writev_at`, for write-back nobody waits on: durable at the next `flush()`, unordered until then (see the policy table) | as `write_at` |
//! | `flush()` | barrier: every completed write is durable | `EIO` (host write-back error) |
//! | `size()`, `sector_size()`, `is_read_only()` | geometry: `fstat`/`BLKGETSIZE64`, `BLKSSZGET` (512 for files) | none |
//!
//! [`FileDevice`] also tells what was opened: `blkio()` (the policy in
//! effect after a fallback), `is_block_device()`, `direct_alignment()`,
//! `path()`; none can fail.
//!
//! ## Block devices for tests
//!
//! | call | what it does | errors |
//! |---|---|---|
//! | [`MemDevice::new`]`(size)`, [`MemDevice::from_vec`]`(v)` | a device in memory (512-byte sectors) | none |
//! | [`MemDevice::with_sector_size`]`(n)` | report `n`-byte logical sectors | `EINVAL` unless a power of two in 512..=65536 |
//! | [`MemDevice::with_read_only`]`(ro)` | writes fail with `EROFS` | none |
//! | [`MemDevice::snapshot`]`()` | copy of the contents | none |
//! | [`FaultDevice::new`]`(inner)` | wrap any device; count and inject faults | none |
//! | `reads()`, `writes()`, `requests()`, `flushes()`, `dropped_writes()`, `reset_counters()` | request counters (a vectored call is one request) | none |
//! | `fail_read(n)`, `fail_write(n)` | request `n` (1-based) fails | that request: `EIO` |
//! | `stop_persisting_after(n)`, `tear_write(n, k)`, `clear_faults()`, `power_lost()` | power loss, torn write | none |
//!
//! ## Clock
//!
//! | call | what it does | errors |
//! |---|---|---|
//! | [`clock_realtime`]`()` | wall-clock time since the epoch | none |
//! | [`clock_monotonic`]`()` | monotonic time (`CLOCK_MONOTONIC`) | none |
//!
//! ## Threads
//!
//! | call | what it does | errors |
//! |---|---|---|
//! | [`thread_create`]`(name, f)` | start a named host thread | `EAGAIN` (no more threads) |
//! | [`Thread::join`]`()` | wait for it to finish | `EIO` if it panicked |
//! | [`Thread::is_finished`]`()` | has it finished? | none |

use std::fmt;

mod fault;
mod file;
mod mem;

pub use fault::FaultDevice;
pub use file::{open_device, BlkIo, FileDevice, OpenOpts};
pub use mem::MemDevice;

/// Version of this interface; bumped whenever a call changes.
pub const RUMPUSER_VERSION: u32 = 3;

/// A host error, as an errno number (Linux values).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error(pub i32);

impl Error {
    /// I/O error.
    pub const EIO: Error = Error(libc::EIO);
    /// Read-only device.
    pub const EROFS: Error = Error(libc::EROFS);
    /// Invalid argument.
    pub const EINVAL: Error = Error(libc::EINVAL);
    /// No such file.
    pub const ENOENT: Error = Error(libc::ENOENT);
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "errno {}", self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Error {}

/// Result of every rumpuser call.
pub type RuResult<T> = Result<T, Error>;

/// The one place where host errors become rumpuser errors: the host errno
/// when there is one, otherwise the closest errno for the error kind
/// (end of file and anything unclassified are `EIO`).
pub(crate) fn host_error(e: &std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    if let Some(n) = e.raw_os_error() {
        return Error(n);
    }
    Error(match e.kind() {
        K::NotFound => libc::ENOENT,
        K::PermissionDenied => libc::EACCES,
        K::InvalidInput | K::InvalidData => libc::EINVAL,
        K::Unsupported => libc::EOPNOTSUPP,
        K::OutOfMemory => libc::ENOMEM,
        K::Interrupted => libc::EINTR,
        K::WouldBlock => libc::EAGAIN,
        _ => libc::EIO,
    })
}

/// The host errno of the last failed libc call, through [`host_error`].
pub(crate) fn last_host_error() -> Error {
    host_error(&std::io::Error::last_os_error())
}

/// A block device: positional I/O on an image file, a raw device, memory, or
/// a wrapper around another device. `&self` so reads can run concurrently.
pub trait BlockDevice: Send + Sync {
    /// Read exactly `buf.len()` bytes at byte offset `off`. Reading past the
    /// end of the device is EIO.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> RuResult<()>;
    /// Write all of `buf` at `off`. EROFS on a read-only device; EIO past the end.
    fn write_at(&self, off: u64, buf: &[u8]) -> RuResult<()>;
    /// Read a run of buffers laid end to end from `off` (one device request).
    fn readv_at(&self, off: u64, bufs: &mut [&mut [u8]]) -> RuResult<()> {
        let mut o = off;
        for b in bufs.iter_mut() {
            self.read_at(o, b)?;
            o += b.len() as u64;
        }
        Ok(())
    }
    /// Write a run of buffers laid end to end from `off` (one device request).
    fn writev_at(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
        let mut o = off;
        for b in bufs {
            self.write_at(o, b)?;
            o += b.len() as u64;
        }
        Ok(())
    }
    /// Write a run of buffers as `writev_at` does, for write-back that no
    /// caller waits on (delayed writes of a buffer cache: eviction, syncer,
    /// `sync`). The policy may return once the host has the data, without
    /// waiting for it to reach stable storage; it is durable after the
    /// next [`flush`](Self::flush), and its order against later writes is
    /// not kept until then (NetBSD's asynchronous writes give no order
    /// either; a driver that needs one uses a waited write). Default: as
    /// `writev_at`. Errors: as `writev_at`.
    fn writev_at_delayed(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
        self.writev_at(off, bufs)
    }
    /// Make every completed write durable (a barrier).
    fn flush(&self) -> RuResult<()>;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Logical sector size in bytes (512 for image files).
    fn sector_size(&self) -> u32;
    /// Opened read-only?
    fn is_read_only(&self) -> bool;
}

/// Is `[off, off + len)` inside a device of `size` bytes? `EIO` if not
/// (including offset overflow). Shared by every backend.
pub(crate) fn check_range(off: u64, len: usize, size: u64) -> RuResult<()> {
    match off.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::EIO),
    }
}

/// Wall-clock time: (seconds, nanoseconds) since the epoch.
pub fn clock_realtime() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// Monotonic time: (seconds, nanoseconds) since an arbitrary start.
pub fn clock_monotonic() -> (i64, u32) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    #[allow(clippy::unnecessary_cast)] // time_t is 32 bits on some hosts
    (ts.tv_sec as i64, ts.tv_nsec as u32)
}

/// A host thread started with [`thread_create`].
pub struct Thread {
    handle: std::thread::JoinHandle<()>,
}

/// Start a host thread named `name` running `f`. Errors: EAGAIN when the
/// host cannot create more threads.
pub fn thread_create(name: &str, f: impl FnOnce() + Send + 'static) -> RuResult<Thread> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(|handle| Thread { handle })
        .map_err(|e| match e.raw_os_error() {
            Some(_) => host_error(&e),
            None => Error(libc::EAGAIN),
        })
}

impl Thread {
    /// Wait for the thread to finish. EIO if it panicked.
    pub fn join(self) -> RuResult<()> {
        self.handle.join().map_err(|_| Error::EIO)
    }

    /// Has the thread finished?
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}
