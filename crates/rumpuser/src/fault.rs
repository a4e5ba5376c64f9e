//! A fault-injecting, request-counting wrapper around any block device
//! (NetBSD's `rumpblk.c` has the same built in), used by tests to prove
//! crash consistency and clustered I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{check_range, BlockDevice, Error, RuResult};

/// What is planned to go wrong. Request numbers are 1-based and count from
/// the creation of the [`FaultDevice`] (or the last
/// [`FaultDevice::reset_counters`]).
#[derive(Clone, Copy, Debug, Default)]
struct Plan {
    fail_read: Option<u64>,
    fail_write: Option<u64>,
    persist_limit: Option<u64>,
    tear: Option<(u64, usize)>,
}

/// What happens to one write request.
enum Fate {
    Forward,
    Fail,
    Drop,
    Tear(usize),
}

/// Wraps a device, counts its requests and injects faults.
///
/// Counting: every `read_at`/`readv_at` is one read request and every
/// `write_at`/`writev_at` one write request, whatever the number of
/// buffers; vectored calls reach the inner device as one vectored call, so
/// a test can prove that I/O was clustered. Failed, dropped and torn writes
/// count too.
///
/// Faults (each applies to one request number; numbers are 1-based):
/// - [`fail_read`](Self::fail_read) / [`fail_write`](Self::fail_write):
///   that request returns `EIO` and never reaches the inner device;
/// - [`stop_persisting_after`](Self::stop_persisting_after)`(n)`: writes
///   after the n-th report success but are silently dropped, and flushes
///   do nothing (power loss; later reads see the inner device unchanged);
/// - [`tear_write`](Self::tear_write)`(n, k)`: only the first `k` bytes of
///   write n reach the inner device; the write reports success. Combine with
///   `stop_persisting_after(n)` for a write torn by a power loss.
///
/// Range and `EROFS` checks are made before any fault, as the device would.
pub struct FaultDevice {
    inner: Arc<dyn BlockDevice>,
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    dropped: AtomicU64,
    plan: Mutex<Plan>,
}

impl FaultDevice {
    /// Wrap `inner`, with no faults planned and all counters at zero.
    pub fn new(inner: Arc<dyn BlockDevice>) -> FaultDevice {
        FaultDevice {
            inner,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            plan: Mutex::new(Plan::default()),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }

    /// Read requests so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Write requests so far (including failed, dropped and torn ones).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Data requests so far: `reads() + writes()` (flushes not included).
    pub fn requests(&self) -> u64 {
        self.reads() + self.writes()
    }

    /// Flush requests so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    /// Writes dropped because of [`stop_persisting_after`](Self::stop_persisting_after).
    pub fn dropped_writes(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Set every counter back to zero; later request numbers count from 1.
    pub fn reset_counters(&self) {
        for c in [&self.reads, &self.writes, &self.flushes, &self.dropped] {
            c.store(0, Ordering::SeqCst);
        }
    }

    /// Read request number `n` fails with `EIO`.
    pub fn fail_read(&self, n: u64) {
        self.plan.lock().fail_read = Some(n);
    }

    /// Write request number `n` fails with `EIO` (nothing is written).
    pub fn fail_write(&self, n: u64) {
        self.plan.lock().fail_write = Some(n);
    }

    /// Writes after number `n` succeed without reaching the inner device.
    pub fn stop_persisting_after(&self, n: u64) {
        self.plan.lock().persist_limit = Some(n);
    }

    /// Only the first `keep` bytes of write number `n` reach the device.
    pub fn tear_write(&self, n: u64, keep: usize) {
        self.plan.lock().tear = Some((n, keep));
    }

    /// Cancel every planned fault (counters are kept).
    pub fn clear_faults(&self) {
        *self.plan.lock() = Plan::default();
    }

    /// Has the simulated power loss happened (a write past the limit)?
    pub fn power_lost(&self) -> bool {
        matches!(self.plan.lock().persist_limit, Some(n) if self.writes() > n)
    }

    fn read_fate(&self) -> RuResult<()> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if self.plan.lock().fail_read == Some(n) {
            return Err(Error::EIO);
        }
        Ok(())
    }

    fn write_fate(&self, off: u64, len: usize) -> RuResult<Fate> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.inner.is_read_only() {
            return Err(Error::EROFS);
        }
        check_range(off, len, self.inner.size())?;
        let plan = *self.plan.lock();
        Ok(if plan.fail_write == Some(n) {
            Fate::Fail
        } else if matches!(plan.persist_limit, Some(lim) if n > lim) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
            Fate::Drop
        } else {
            match plan.tear {
                Some((t, keep)) if t == n => Fate::Tear(keep.min(len)),
                _ => Fate::Forward,
            }
        })
    }
}

impl BlockDevice for FaultDevice {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> RuResult<()> {
        self.read_fate()?;
        self.inner.read_at(off, buf)
    }

    fn readv_at(&self, off: u64, bufs: &mut [&mut [u8]]) -> RuResult<()> {
        self.read_fate()?;
        self.inner.readv_at(off, bufs)
    }

    fn write_at(&self, off: u64, buf: &[u8]) -> RuResult<()> {
        match self.write_fate(off, buf.len())? {
            Fate::Forward => self.inner.write_at(off, buf),
            Fate::Fail => Err(Error::EIO),
            Fate::Drop => Ok(()),
            Fate::Tear(keep) => self.inner.write_at(off, &buf[..keep]),
        }
    }

    fn writev_at(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
        let total = bufs.iter().map(|b| b.len()).sum();
        match self.write_fate(off, total)? {
            Fate::Forward => self.inner.writev_at(off, bufs),
            Fate::Fail => Err(Error::EIO),
            Fate::Drop => Ok(()),
            Fate::Tear(mut keep) => {
                let mut torn: Vec<&[u8]> = Vec::new();
                for b in bufs {
                    if keep == 0 {
                        break;
                    }
                    let n = keep.min(b.len());
                    torn.push(&b[..n]);
                    keep -= n;
                }
                self.inner.writev_at(off, &torn)
            }
        }
    }

    fn flush(&self) -> RuResult<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        if self.power_lost() {
            return Ok(());
        }
        self.inner.flush()
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }

    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
}
