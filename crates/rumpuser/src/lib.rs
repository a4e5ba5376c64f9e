//! rumpuser: the host boundary (NetBSD `rumpuser.h`).
//!
//! WORK IN PROGRESS: interface skeleton; backends are being filled in.

use std::fmt;

/// Version of this interface; bumped whenever a call changes.
pub const RUMPUSER_VERSION: u32 = 1;

/// A host error, as an errno number (Linux values).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error(pub i32);

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
    /// Make every completed write durable (a barrier).
    fn flush(&self) -> RuResult<()>;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Logical sector size in bytes (512 for image files).
    fn sector_size(&self) -> u32;
    /// Opened read-only?
    fn is_read_only(&self) -> bool;
}

/// Wall-clock time: (seconds, nanoseconds) since the epoch.
pub fn clock_realtime() -> (i64, u32) {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// Monotonic time: (seconds, nanoseconds) since an arbitrary start.
pub fn clock_monotonic() -> (i64, u32) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
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
        .map_err(|e| Error(e.raw_os_error().unwrap_or(libc::EAGAIN)))
}

impl Thread {
    /// Wait for the thread to finish. EIO if it panicked.
    pub fn join(self) -> RuResult<()> {
        self.handle.join().map_err(|_| Error(libc::EIO))
    }

    /// Has the thread finished?
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}
