//! The buffer cache (NetBSD `vfs_bio.c`): cached, locked, variable-size
//! blocks of one block device, with delayed write-back and clustered I/O.
//!
//! # Model
//!
//! A buffer is named by its device **byte offset** (`blkno` here is a byte
//! offset, whatever block size the driver uses) and has the size given when it
//! is obtained, so FFS fragments and blocks, ext2 blocks and FAT sectors all
//! live in one cache. Obtaining a buffer ([`BufCache::getblk`],
//! [`BufCache::bread`], [`BufCache::bread_cluster`]) returns a [`Buf`] handle
//! that *is* the buffer lock (NetBSD `B_BUSY`): while it is held nobody else
//! can get that buffer (they sleep until it is released), and the holder has
//! the data to itself, without copies ([`Buf::data`], [`Buf::data_mut`]).
//! A buffer is released in one of four ways:
//!
//! * [`Buf::brelse`] (or dropping the handle): no write. The contents stay
//!   cached as they are, dirty if they were dirty (as in NetBSD, modifying a
//!   buffer and then `brelse`-ing it leaves the change in the cache only).
//!   A buffer created by `getblk` and never written is discarded, since its
//!   zeroes were never the disk's contents.
//! * [`Buf::bwrite`]: write now, wait, return the device's error.
//! * [`Buf::bdwrite`]: delayed write: mark dirty and release; written by
//!   [`BufCache::sync`], by the syncer, or before eviction.
//! * [`Buf::bawrite`]: asynchronous write: marked dirty and *queued*: if a
//!   syncer is running it is kicked and writes the buffer (clustered with any
//!   contiguous dirty neighbours) within moments; without a syncer the buffer
//!   is written at once by the calling thread after it has been released.
//!   Either way the caller does not see the result: an error is remembered
//!   and returned by the next `sync`, like a failed delayed write.
//!
//! `getblk` of an existing offset with a *different* size writes the old
//! buffer back if it is dirty, drops it and creates the new one (so a fragment
//! that grows into a block reads the old fragment's bytes back from disk).
//! Buffers of different offsets must not overlap (drivers address their blocks
//! consistently); the cache does not detect overlaps.
//!
//! # Budget and eviction
//!
//! The bytes of all cached buffers (held, loading, being written or idle)
//! never exceed the budget given to [`BufCache::new`]. A buffer that would
//! exceed it first evicts idle buffers in least-recently-used order (writing
//! dirty ones first, in one clustered request with their contiguous dirty
//! neighbours). If every buffer is held or under I/O the caller sleeps until
//! one is released. Rule for the cases where sleeping cannot help (tested):
//! a request larger than the whole budget, or of size 0, is `EINVAL`; when
//! nothing can free space because every held buffer belongs to the caller or
//! to threads that are themselves waiting for space, the caller gets `ENOMEM`
//! instead of a deadlock. A budget of at least (threads × buffers each holds
//! at once × largest buffer) never sees `ENOMEM`.
//!
//! # Write-back and errors
//!
//! [`BufCache::sync`] writes every dirty buffer in increasing offset order,
//! coalescing runs of contiguous dirty buffers into one `writev_at` request
//! (at most [`MAX_CLUSTER_BYTES`] each), then flushes the device if `wait`.
//! Buffers held by someone at that moment are skipped (their holder releases
//! them later, still dirty; a driver calls `sync` without holding buffers);
//! buffers being written by another thread are waited for when `wait`.
//! A failed write keeps the buffers dirty. Failures of writes nobody waited
//! for (syncer, `bawrite`, eviction) are logged once and remembered: the next
//! `sync` returns the error (once).
//!
//! The syncer ([`BufCache::start_syncer`]) is a [`Syncer`] thread that every
//! `interval` writes the buffers dirty for at least `interval` (and their
//! contiguous dirty neighbours) plus every `bawrite` buffer. It stops on
//! [`BufCache::shutdown`] (which then syncs) or when the cache is dropped.
//!
//! # Locking
//!
//! Lock order (see `lock.rs` for the system-wide order):
//!
//! 1. buffer locks ([`Buf`] handles), in an order of the driver's choosing;
//!    asking again for a buffer one holds is `EDEADLK`;
//! 2. `BufCache::syncer` (the syncer slot), only to start, kick or take it;
//! 3. `BufCache::state` (NetBSD `bufcache_lock`), a leaf: the hash table, the
//!    LRU list, the dirty set, the byte accounting and every field of every
//!    cache entry are guarded by it. It is never held across device I/O,
//!    memory zeroing or a call out of this module; waits for a busy buffer
//!    sleep on one of `waitq` (hashed by offset) and waits for space on
//!    `space_cv`, both with this lock.
//!
//! Per-entry fields (all under `state`), as `sys/sys/buf.h` tags them:
//! `size` (fixed for the entry's life), `data` (present iff the entry is idle;
//! a holder or an I/O owns the bytes otherwise), `busy`, `dirty_at`,
//! `async_write`, `inval`, and the LRU links. An entry is on the LRU list iff
//! it is not held by a [`Buf`]; entries under cache I/O stay on it and are
//! skipped by eviction.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::dev::BlockDevice;
use crate::errno::{Errno, KResult};
use crate::kthread::{monotonic_now, Syncer};
use crate::lock::{curthread_id, KCondvar, KMutex, KMutexGuard};

/// Largest single device request the cache issues for a clustered read or
/// write (NetBSD `MAXPHYS` is 64 KiB; our hosts take far more).
pub const MAX_CLUSTER_BYTES: usize = 1 << 20;

/// Number of condvars that buffer waits are hashed onto.
const NWAITQ: usize = 64;

/// "No entry" in the LRU links (no buffer can start at `u64::MAX`: its end
/// would overflow, which `check_args` refuses).
const NIL: u64 = u64::MAX;

/// Hasher for byte offsets: a multiply and a fold, so that aligned offsets
/// (low bits zero) still spread over the table.
#[derive(Default)]
struct OffHasher(u64);

impl Hasher for OffHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29) ^ (self.0 >> 47)
    }
}

type OffMap<V> = HashMap<u64, V, BuildHasherDefault<OffHasher>>;

fn waitq_slot(off: u64) -> usize {
    let mut h = OffHasher::default();
    h.write_u64(off);
    (h.finish() % NWAITQ as u64) as usize
}

/// Who owns a cache entry's bytes right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Busy {
    /// Idle: the cache has the data; the entry is on the LRU list.
    No,
    /// Held by a [`Buf`] of the thread with this `curthread_id()` (including
    /// a buffer being read in by its future holder).
    Held(u64),
    /// Under I/O started by the cache itself (write-back, read-ahead).
    Io,
}

/// One cached buffer. Every field is guarded by `BufCache::state`.
struct Entry {
    /// Bytes; fixed for the entry's life.
    size: usize,
    /// The contents when idle (`busy == No`); `None` while held or under I/O.
    data: Option<Vec<u8>>,
    busy: Busy,
    /// When it became dirty (monotonic), `None` when clean (NetBSD `B_DELWRI`).
    dirty_at: Option<Duration>,
    /// Queued by `bawrite` (NetBSD `B_ASYNC`).
    async_write: bool,
    /// Drop when released / when its I/O ends (NetBSD `B_INVAL`).
    inval: bool,
    /// LRU links (offsets), valid when `on_lru`.
    prev: u64,
    next: u64,
    on_lru: bool,
}

/// Everything `BufCache::state` guards.
struct State {
    map: OffMap<Entry>,
    /// Least recently used end of the LRU list.
    lru_head: u64,
    /// Most recently used end.
    lru_tail: u64,
    /// Offsets of dirty entries, sorted (for clustered write-back).
    dirty: BTreeSet<u64>,
    dirty_bytes: usize,
    /// Bytes of all entries; never above the budget.
    bytes: usize,
    peak: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
    /// Sleepers per `waitq` slot (so releases only broadcast when needed).
    waitq_waiters: [u32; NWAITQ],
    /// Threads sleeping for space: (thread, bytes wanted).
    space_waiting: Vec<(u64, usize)>,
    /// First error of a write nobody waited for, returned by the next sync.
    delayed_error: Option<Errno>,
    /// `delayed_error` has been logged.
    error_logged: bool,
}

impl State {
    fn lru_push_tail(&mut self, off: u64) {
        let tail = self.lru_tail;
        let Some(e) = self.map.get_mut(&off) else { return };
        if e.on_lru {
            return;
        }
        e.prev = tail;
        e.next = NIL;
        e.on_lru = true;
        match self.map.get_mut(&tail) {
            Some(t) if tail != NIL => t.next = off,
            _ => self.lru_head = off,
        }
        self.lru_tail = off;
    }

    fn lru_remove(&mut self, off: u64) {
        let Some(e) = self.map.get_mut(&off) else { return };
        if !e.on_lru {
            return;
        }
        e.on_lru = false;
        let (p, n) = (e.prev, e.next);
        match self.map.get_mut(&p) {
            Some(pe) if p != NIL => pe.next = n,
            _ => self.lru_head = n,
        }
        match self.map.get_mut(&n) {
            Some(ne) if n != NIL => ne.prev = p,
            _ => self.lru_tail = p,
        }
    }

    fn set_dirty(&mut self, off: u64, now: Duration) {
        let Some(e) = self.map.get_mut(&off) else { return };
        if e.dirty_at.is_none() {
            e.dirty_at = Some(now);
            self.dirty_bytes += e.size;
            self.dirty.insert(off);
        }
    }

    fn set_clean(&mut self, off: u64) {
        let Some(e) = self.map.get_mut(&off) else { return };
        e.async_write = false;
        if e.dirty_at.take().is_some() {
            self.dirty_bytes -= e.size;
            self.dirty.remove(&off);
        }
    }

    /// Take an entry out of the cache (it must not be under someone else's I/O).
    fn remove_entry(&mut self, off: u64) {
        self.lru_remove(off);
        self.set_clean(off);
        if let Some(e) = self.map.remove(&off) {
            self.bytes -= e.size;
        }
    }

    fn insert_entry(&mut self, off: u64, size: usize, busy: Busy) {
        self.map.insert(
            off,
            Entry {
                size,
                data: None,
                busy,
                dirty_at: None,
                async_write: false,
                inval: false,
                prev: NIL,
                next: NIL,
                on_lru: false,
            },
        );
        self.bytes += size;
        self.peak = self.peak.max(self.bytes);
    }

    /// The least recently used idle entry.
    fn lru_victim(&self) -> Option<u64> {
        let mut cur = self.lru_head;
        while cur != NIL {
            let e = self.map.get(&cur)?;
            if e.busy == Busy::No {
                return Some(cur);
            }
            cur = e.next;
        }
        None
    }

    /// Nothing can ever free space for `me`: no cache I/O in flight, and every
    /// held buffer belongs to `me` or to a thread stuck waiting for space.
    fn space_deadlocked(&self, me: u64, budget: usize) -> bool {
        let stuck =
            |t: u64| t == me || self.space_waiting.iter().any(|&(w, want)| w == t && self.bytes + want > budget);
        self.map.values().all(|e| match e.busy {
            Busy::Io => false,
            Busy::Held(t) => stuck(t),
            Busy::No => false,
        })
    }

    fn record_error(&mut self, e: Errno, what: &str) {
        if self.delayed_error.is_none() {
            self.delayed_error = Some(e);
        }
        if !self.error_logged {
            self.error_logged = true;
            log::error!("buffer cache: {what} failed: {e}; buffers stay dirty, the next sync reports it");
        }
    }
}

/// Counters of a [`BufCache`], for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufStats {
    /// Lookups that found the buffer cached.
    pub hits: u64,
    /// Lookups that had to create it.
    pub misses: u64,
    /// Read requests issued to the device (a clustered read counts once).
    pub dev_reads: u64,
    /// Write requests issued to the device (a clustered write counts once).
    pub dev_writes: u64,
    /// Bytes read from the device.
    pub bytes_read: u64,
    /// Bytes written to the device.
    pub bytes_written: u64,
    /// Bytes of all cached buffers now.
    pub bytes_cached: usize,
    /// Highest `bytes_cached` ever.
    pub peak_bytes: usize,
    /// The budget.
    pub budget: usize,
    /// Buffers cached now.
    pub buffers: usize,
    /// Dirty buffers now.
    pub dirty_buffers: usize,
    /// Bytes of dirty buffers now.
    pub dirty_bytes: usize,
    /// Buffers evicted to make room.
    pub evictions: u64,
}

/// How a held buffer goes back to the cache.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    /// `brelse`: as it is (discarded if it never held valid data).
    Keep,
    /// `bdwrite` / `bawrite`: dirty (async = queued for the syncer).
    Dirty { async_write: bool },
    /// After `bwrite`: clean on success, dirty on failure.
    Written { ok: bool },
    /// Out of the cache, whatever it held.
    Invalidate,
}

/// Which dirty buffers a write-back pass writes.
#[derive(Clone, Copy)]
enum Flush {
    /// All of them (`sync`).
    All,
    /// Dirty since `before` or earlier, or queued by `bawrite` (the syncer).
    Aged { before: Duration },
}

/// The buffer cache of one block device. See the module documentation.
pub struct BufCache {
    /// The device; shared with the driver, which may also do unbuffered I/O.
    dev: Arc<dyn BlockDevice>,
    /// Byte budget; immutable.
    budget: usize,
    /// The cache lock (`bufcache_lock`) and everything it guards.
    state: KMutex<State>,
    /// Sleep queues for busy buffers, hashed by offset; used with `state`.
    waitq: [KCondvar; NWAITQ],
    /// Sleep queue for space under the budget; used with `state`.
    space_cv: KCondvar,
    /// Device request counters (updated without any lock).
    dev_reads: AtomicU64,
    dev_writes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    /// The syncer, if started. Taken out of the slot before it is stopped.
    syncer: KMutex<Option<Syncer>>,
}

impl BufCache {
    /// A cache of at most `budget_bytes` of buffers on `dev`.
    pub fn new(dev: Arc<dyn BlockDevice>, budget_bytes: usize) -> Arc<BufCache> {
        Arc::new(BufCache {
            dev,
            budget: budget_bytes,
            state: KMutex::new(State {
                map: OffMap::default(),
                lru_head: NIL,
                lru_tail: NIL,
                dirty: BTreeSet::new(),
                dirty_bytes: 0,
                bytes: 0,
                peak: 0,
                hits: 0,
                misses: 0,
                evictions: 0,
                waitq_waiters: [0; NWAITQ],
                space_waiting: Vec::new(),
                delayed_error: None,
                error_logged: false,
            }),
            waitq: std::array::from_fn(|_| KCondvar::new()),
            space_cv: KCondvar::new(),
            dev_reads: AtomicU64::new(0),
            dev_writes: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            syncer: KMutex::new(None),
        })
    }

    /// The device under the cache.
    pub fn dev(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BufStats {
        let st = self.state.enter();
        BufStats {
            hits: st.hits,
            misses: st.misses,
            dev_reads: self.dev_reads.load(Ordering::Relaxed),
            dev_writes: self.dev_writes.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            bytes_cached: st.bytes,
            peak_bytes: st.peak,
            budget: self.budget,
            buffers: st.map.len(),
            dirty_buffers: st.dirty.len(),
            dirty_bytes: st.dirty_bytes,
            evictions: st.evictions,
        }
    }

    fn check_args(&self, off: u64, size: usize) -> KResult<()> {
        if size == 0 || size > self.budget || off.checked_add(size as u64).is_none() {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    // -- sleeping and waking (all with `state` held) ------------------------

    fn wait_buf(&self, st: &mut KMutexGuard<'_, State>, off: u64) {
        let q = waitq_slot(off);
        st.waitq_waiters[q] += 1;
        self.waitq[q].wait(st);
        st.waitq_waiters[q] -= 1;
    }

    fn wake_buf(&self, st: &State, off: u64) {
        let q = waitq_slot(off);
        if st.waitq_waiters[q] > 0 {
            self.waitq[q].broadcast();
        }
    }

    fn wake_space(&self, st: &State) {
        if !st.space_waiting.is_empty() {
            self.space_cv.broadcast();
        }
    }

    // -- getting buffers -----------------------------------------------------

    /// Make room for `size` more bytes under the budget, evicting idle
    /// buffers (writing dirty ones first) or sleeping. On return `st` is held
    /// and `bytes + size <= budget`; the lock may have been dropped meanwhile.
    fn make_space(&self, st: &mut KMutexGuard<'_, State>, size: usize, me: u64) -> KResult<()> {
        let mut failures = 0;
        loop {
            if st.bytes + size <= self.budget {
                return Ok(());
            }
            if let Some(victim) = st.lru_victim() {
                let dirty = st.map.get(&victim).is_some_and(|e| e.dirty_at.is_some());
                if !dirty {
                    st.remove_entry(victim);
                    st.evictions += 1;
                    continue;
                }
                let run = self.run_around(st, victim);
                if let Err(e) = self.write_run(st, &run) {
                    st.record_error(e, "write-back before eviction");
                    // Let other victims go first next time.
                    for &o in &run {
                        st.lru_remove(o);
                        st.lru_push_tail(o);
                    }
                    failures += 1;
                    if failures > 3 {
                        return Err(e);
                    }
                }
                continue;
            }
            if st.space_deadlocked(me, self.budget) {
                log::warn!(
                    "buffer cache: {size} bytes wanted, budget {} exhausted by buffers held by waiting threads",
                    self.budget
                );
                return Err(Errno::ENOMEM);
            }
            st.space_waiting.push((me, size));
            self.space_cv.wait(st);
            if let Some(i) = st.space_waiting.iter().position(|&(t, s)| t == me && s == size) {
                st.space_waiting.swap_remove(i);
            }
        }
    }

    /// Room for `size` bytes by evicting clean idle buffers only (no I/O, no
    /// sleeping): for read-ahead, which is optional.
    fn make_space_clean(&self, st: &mut State, size: usize) -> bool {
        while st.bytes + size > self.budget {
            match st.lru_victim() {
                Some(v) if st.map.get(&v).is_some_and(|e| e.dirty_at.is_none()) => {
                    st.remove_entry(v);
                    st.evictions += 1;
                }
                _ => return false,
            }
        }
        true
    }

    /// Lock buffer `off` of `size` bytes for the caller. `Ok(Some(data))`:
    /// cached (a hit); `Ok(None)`: a new entry was created, held by the
    /// caller, without data (a miss).
    fn acquire(&self, off: u64, size: usize) -> KResult<Option<Vec<u8>>> {
        self.check_args(off, size)?;
        let me = curthread_id();
        let mut st = self.state.enter();
        loop {
            let (busy, esize, dirty) = match st.map.get(&off) {
                Some(e) => (e.busy, e.size, e.dirty_at.is_some()),
                None => {
                    self.make_space(&mut st, size, me)?;
                    if st.map.contains_key(&off) {
                        continue; // created by someone else while we made room
                    }
                    st.insert_entry(off, size, Busy::Held(me));
                    st.misses += 1;
                    return Ok(None);
                }
            };
            match busy {
                Busy::Held(t) if t == me => return Err(Errno::EDEADLK),
                Busy::Held(_) | Busy::Io => self.wait_buf(&mut st, off),
                Busy::No if esize != size => {
                    // Resize: write back, drop, then create it anew.
                    if dirty {
                        self.write_run(&mut st, &[off])?;
                    } else {
                        st.remove_entry(off);
                        self.wake_space(&st);
                    }
                }
                Busy::No => {
                    st.lru_remove(off);
                    st.hits += 1;
                    let e = st.map.get_mut(&off).ok_or(Errno::EIO)?;
                    e.busy = Busy::Held(me);
                    return Ok(Some(e.data.take().unwrap_or_else(|| vec![0; size])));
                }
            }
        }
    }

    /// `getblk`: the buffer at `off`, without reading it: cached contents if
    /// it is cached, zeroes otherwise (for a caller that fills all of it).
    /// Sleeps while another thread holds the buffer.
    /// Errors: EINVAL (size 0 or above the budget), EDEADLK (the caller
    /// already holds it), ENOMEM (budget exhausted, see module doc), the
    /// device's error when a resize or eviction write-back fails.
    pub fn getblk(self: &Arc<Self>, off: u64, size: usize) -> KResult<Buf> {
        match self.acquire(off, size)? {
            Some(data) => Ok(self.handle(off, data, true)),
            None => Ok(self.handle(off, vec![0; size], false)),
        }
    }

    /// `bread`: the buffer at `off`, read from the device if not cached.
    /// Errors: as `getblk`, plus the device's read error (EIO; nothing is
    /// cached then).
    pub fn bread(self: &Arc<Self>, off: u64, size: usize) -> KResult<Buf> {
        self.bread_cluster(off, size, 1)
    }

    /// `breadn` as a cluster read: the buffer at `off`, and when it is not
    /// cached, also the following `count - 1` buffers of the same size, read
    /// together with ONE device request and cached (read-ahead). Read-ahead
    /// stops before the first buffer already cached, at the end of the
    /// device, at [`MAX_CLUSTER_BYTES`], and where room would need a write or
    /// a wait. A cached first buffer is returned without any read-ahead.
    /// Errors: as `bread`.
    pub fn bread_cluster(self: &Arc<Self>, off: u64, size: usize, count: usize) -> KResult<Buf> {
        if let Some(data) = self.acquire(off, size)? {
            return Ok(self.handle(off, data, true));
        }
        // Miss: we hold the entry for `off`. Add read-ahead entries.
        let dev_size = self.dev.size();
        let fit = (dev_size.saturating_sub(off) / size as u64).min((MAX_CLUSTER_BYTES / size) as u64) as usize;
        let n = count.min(fit).max(1);
        let mut ahead: Vec<u64> = Vec::new();
        if n > 1 {
            let mut st = self.state.enter();
            for i in 1..n as u64 {
                let o = off + i * size as u64;
                if st.map.contains_key(&o) || !self.make_space_clean(&mut st, size) {
                    break;
                }
                st.insert_entry(o, size, Busy::Io);
                st.lru_push_tail(o);
                ahead.push(o);
            }
        }
        // The I/O, without the lock: straight into the buffers.
        let mut first = vec![0u8; size];
        let mut rest: Vec<Vec<u8>> = ahead.iter().map(|_| vec![0u8; size]).collect();
        let res = if rest.is_empty() {
            self.dev.read_at(off, &mut first)
        } else {
            let mut iov: Vec<&mut [u8]> = Vec::with_capacity(rest.len() + 1);
            iov.push(&mut first);
            iov.extend(rest.iter_mut().map(|b| &mut b[..]));
            self.dev.readv_at(off, &mut iov)
        };
        self.dev_reads.fetch_add(1, Ordering::Relaxed);
        if res.is_ok() {
            self.bytes_read.fetch_add((size * (1 + ahead.len())) as u64, Ordering::Relaxed);
        }
        let mut st = self.state.enter();
        for (o, data) in ahead.iter().zip(rest) {
            let Some(e) = st.map.get_mut(o) else { continue };
            e.busy = Busy::No;
            if res.is_ok() && !e.inval {
                e.data = Some(data);
            } else {
                st.remove_entry(*o);
            }
            self.wake_buf(&st, *o);
        }
        if let Err(e) = res {
            st.remove_entry(off);
            self.wake_buf(&st, off);
            self.wake_space(&st);
            return Err(e.into());
        }
        if !ahead.is_empty() {
            self.wake_space(&st);
        }
        drop(st);
        Ok(self.handle(off, first, true))
    }

    fn handle(self: &Arc<Self>, off: u64, data: Vec<u8>, valid: bool) -> Buf {
        Buf { cache: self.clone(), off, data, valid, released: false }
    }

    /// Give a held buffer back.
    fn release(&self, off: u64, data: Vec<u8>, valid: bool, how: Release) {
        let mut st = self.state.enter();
        let drop_it = match st.map.get(&off) {
            None => return,
            Some(e) => e.inval || how == Release::Invalidate || (how == Release::Keep && !valid),
        };
        if drop_it {
            st.remove_entry(off);
        } else {
            match how {
                Release::Dirty { async_write } => {
                    st.set_dirty(off, monotonic_now());
                    if async_write {
                        if let Some(e) = st.map.get_mut(&off) {
                            e.async_write = true;
                        }
                    }
                }
                Release::Written { ok: true } => st.set_clean(off),
                Release::Written { ok: false } => st.set_dirty(off, monotonic_now()),
                Release::Keep | Release::Invalidate => {}
            }
            if let Some(e) = st.map.get_mut(&off) {
                e.data = Some(data);
                e.busy = Busy::No;
            }
            st.lru_push_tail(off);
        }
        self.wake_buf(&st, off);
        self.wake_space(&st);
    }

    // -- write-back ----------------------------------------------------------

    /// The run of contiguous dirty idle buffers around `off` (itself dirty
    /// and idle), in offset order, at most `MAX_CLUSTER_BYTES` (or `off` alone).
    fn run_around(&self, st: &State, off: u64) -> Vec<u64> {
        let idle_dirty = |o: u64| st.map.get(&o).filter(|e| e.busy == Busy::No && e.dirty_at.is_some()).map(|e| e.size);
        let Some(size) = idle_dirty(off) else { return vec![off] };
        let mut total = size;
        let mut start = off;
        let mut back = Vec::new();
        while let Some(&p) = st.dirty.range(..start).next_back() {
            match idle_dirty(p) {
                Some(s) if p + s as u64 == start && total + s <= MAX_CLUSTER_BYTES => {
                    total += s;
                    start = p;
                    back.push(p);
                }
                _ => break,
            }
        }
        back.reverse();
        back.push(off);
        self.extend_run(st, back, off + size as u64, total)
    }

    /// Extend `run` (ending at `end`, `total` bytes) forward over contiguous
    /// dirty idle buffers.
    fn extend_run(&self, st: &State, mut run: Vec<u64>, mut end: u64, mut total: usize) -> Vec<u64> {
        while let Some(e) = st.map.get(&end) {
            if e.busy != Busy::No || e.dirty_at.is_none() || total + e.size > MAX_CLUSTER_BYTES {
                break;
            }
            run.push(end);
            total += e.size;
            end += e.size as u64;
        }
        run
    }

    /// Write the idle dirty buffers `run` (contiguous, in order) with one
    /// device request. The lock is dropped during the I/O; the buffers are
    /// `Io`-busy meanwhile (still on the LRU list). Success cleans them;
    /// failure leaves them dirty. Buffers invalidated meanwhile are dropped.
    fn write_run(&self, st: &mut KMutexGuard<'_, State>, run: &[u64]) -> KResult<()> {
        let mut bufs: Vec<(u64, Vec<u8>)> = Vec::with_capacity(run.len());
        for &o in run {
            let Some(e) = st.map.get_mut(&o) else { break };
            if e.busy != Busy::No || e.dirty_at.is_none() {
                break;
            }
            let Some(d) = e.data.take() else { break };
            e.busy = Busy::Io;
            bufs.push((o, d));
        }
        if bufs.is_empty() {
            return Ok(());
        }
        let start = bufs[0].0;
        let total: usize = bufs.iter().map(|(_, d)| d.len()).sum();
        // Nobody waits on this write (eviction, syncer, sync, bawrite):
        // the device may skip its per-write wait; `sync(wait)` flushes.
        let res = st.unlocked(|| {
            let iov: Vec<&[u8]> = bufs.iter().map(|(_, d)| &d[..]).collect();
            self.dev.writev_at_delayed(start, &iov)
        });
        self.dev_writes.fetch_add(1, Ordering::Relaxed);
        if res.is_ok() {
            self.bytes_written.fetch_add(total as u64, Ordering::Relaxed);
        }
        for (o, d) in bufs {
            let Some(e) = st.map.get_mut(&o) else { continue };
            e.busy = Busy::No;
            e.data = Some(d);
            let inval = e.inval;
            if res.is_ok() {
                st.set_clean(o);
            }
            if inval {
                st.remove_entry(o);
            }
            self.wake_buf(st, o);
        }
        self.wake_space(st);
        res.map_err(Errno::from)
    }

    /// Write back the dirty buffers `which` selects, clustered, in offset
    /// order. Returns the first error (buffers stay dirty).
    fn flush(&self, which: Flush, wait_io: bool) -> KResult<()> {
        let mut first_err = None;
        let mut st = self.state.enter();
        let mut cursor = 0u64;
        loop {
            // The next dirty buffer at or after `cursor` that qualifies.
            let mut start = None;
            let mut io_wait = None;
            for &o in st.dirty.range(cursor..) {
                let Some(e) = st.map.get(&o) else { continue };
                let wanted = match which {
                    Flush::All => true,
                    Flush::Aged { before } => e.async_write || e.dirty_at.is_some_and(|t| t <= before),
                };
                if !wanted {
                    continue;
                }
                match e.busy {
                    Busy::No => {
                        start = Some((o, e.size));
                        break;
                    }
                    Busy::Io if wait_io => {
                        io_wait = Some(o);
                        break;
                    }
                    _ => {} // held by a user: skipped (module doc)
                }
            }
            if let Some(o) = io_wait {
                // Another thread is writing it; wait and look again.
                self.wait_buf(&mut st, o);
                cursor = o;
                continue;
            }
            let Some((o, size)) = start else { break };
            let run = self.extend_run(&st, vec![o], o + size as u64, size);
            let end = run.last().and_then(|l| st.map.get(l).map(|e| *l + e.size as u64)).unwrap_or(o + size as u64);
            if let Err(e) = self.write_run(&mut st, &run) {
                first_err.get_or_insert(e);
            }
            cursor = end;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Write back every dirty buffer (clustered, in offset order); with
    /// `wait`, also wait for write-backs other threads have in flight and
    /// flush the device (a barrier). Buffers held at the time are skipped.
    /// Errors: the first write error of this call, else the remembered error
    /// of an earlier unwaited write (returned once), else the flush error.
    pub fn sync(&self, wait: bool) -> KResult<()> {
        let res = self.flush(Flush::All, wait);
        let remembered = {
            let mut st = self.state.enter();
            st.error_logged = false;
            st.delayed_error.take()
        };
        let flushed = if wait { self.dev.flush().map_err(Errno::from) } else { Ok(()) };
        res?;
        if let Some(e) = remembered {
            return Err(e);
        }
        flushed
    }

    /// One syncer pass: buffers dirty for at least `age` and `bawrite` ones.
    fn syncer_pass(&self, age: Duration) {
        let before = monotonic_now().saturating_sub(age);
        if let Err(e) = self.flush(Flush::Aged { before }, false) {
            self.state.enter().record_error(e, "delayed write");
        }
    }

    /// Write one `bawrite` buffer now in the calling thread (no syncer).
    fn write_async_now(&self, off: u64) {
        let mut st = self.state.enter();
        let qualifies = st.map.get(&off).is_some_and(|e| e.busy == Busy::No && e.dirty_at.is_some());
        if !qualifies {
            return;
        }
        let run = self.run_around(&st, off);
        if let Err(e) = self.write_run(&mut st, &run) {
            st.record_error(e, "asynchronous write");
        }
    }

    /// Start the syncer: every `interval` it writes back buffers that have
    /// been dirty for at least `interval`, and it writes `bawrite` buffers
    /// when kicked. A zero interval disables the periodic part: passes then
    /// run only when a `bawrite` kicks them, and such a pass writes every dirty
    /// buffer (all are at least zero old). Replaces
    /// (stops) a syncer started before. Errors: EAGAIN (no thread).
    pub fn start_syncer(self: &Arc<Self>, interval: Duration) -> KResult<()> {
        let weak = Arc::downgrade(self);
        let syncer = Syncer::start("bufsyncer", Some(interval), move || {
            if let Some(cache) = weak.upgrade() {
                cache.syncer_pass(interval);
            }
        })?;
        let old = self.syncer.enter().replace(syncer);
        drop(old);
        Ok(())
    }

    /// Stop the syncer (if any) and sync with `wait`. The cache stays usable.
    /// Errors: as `sync`.
    pub fn shutdown(&self) -> KResult<()> {
        let s = self.syncer.enter().take();
        drop(s);
        self.sync(true)
    }

    // -- invalidation -----------------------------------------------------------

    /// `binval`: drop the buffer at `off` from the cache *without writing it*
    /// (its blocks were freed). A held or in-flight buffer is dropped when
    /// released / when its I/O ends.
    pub fn binval(&self, off: u64) {
        let mut st = self.state.enter();
        let Some(e) = st.map.get_mut(&off) else { return };
        if e.busy == Busy::No {
            st.remove_entry(off);
            self.wake_space(&st);
        } else {
            e.inval = true;
        }
    }

    /// `binval` on every buffer starting in `[start, start + len)`
    /// (O(number of cached buffers)).
    pub fn invalidate_range(&self, start: u64, len: u64) {
        let end = start.saturating_add(len);
        let mut st = self.state.enter();
        let offs: Vec<u64> = st.map.keys().copied().filter(|&o| o >= start && o < end).collect();
        for o in offs {
            let Some(e) = st.map.get_mut(&o) else { continue };
            if e.busy == Busy::No {
                st.remove_entry(o);
            } else {
                e.inval = true;
            }
        }
        self.wake_space(&st);
    }

    /// Before the caller writes `[start, start + len)` on the device itself
    /// (bypassing the cache): drop every buffer starting there at a multiple
    /// of `step` bytes from `start`, first waiting for the ones held by
    /// other threads or under the cache's own I/O. Afterwards no cached copy
    /// can shadow the new contents and no write-back already under way can
    /// land after them; the caller must keep others from creating buffers
    /// in the range until its write is done (a driver's file lock does).
    /// Dirty contents are discarded. Errors: `EDEADLK` if the caller itself
    /// holds a buffer of the range (buffers before it are dropped already),
    /// `EINVAL` for a zero `step`.
    pub fn purge_range(&self, start: u64, len: u64, step: usize) -> KResult<()> {
        if step == 0 {
            return Err(Errno::EINVAL);
        }
        let me = curthread_id();
        let end = start.saturating_add(len);
        let mut st = self.state.enter();
        let mut o = start;
        let mut removed = false;
        while o < end {
            match st.map.get(&o).map(|e| e.busy) {
                None => {}
                Some(Busy::No) => {
                    st.remove_entry(o);
                    removed = true;
                }
                Some(Busy::Held(t)) if t == me => {
                    if removed {
                        self.wake_space(&st);
                    }
                    return Err(Errno::EDEADLK);
                }
                Some(_) => {
                    self.wait_buf(&mut st, o);
                    continue; // look at the same offset again
                }
            }
            o = o.saturating_add(step as u64);
        }
        if removed {
            self.wake_space(&st);
        }
        Ok(())
    }

    fn kick_syncer(&self) -> bool {
        match &*self.syncer.enter() {
            Some(s) => {
                s.kick();
                true
            }
            None => false,
        }
    }
}

impl Drop for BufCache {
    fn drop(&mut self) {
        let s = self.syncer.get_mut().take();
        drop(s);
        if !self.state.get_mut().dirty.is_empty() {
            if let Err(e) = self.sync(true) {
                log::error!("buffer cache: final sync failed: {e}");
            }
        }
    }
}

impl std::fmt::Debug for BufCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufCache").field("stats", &self.stats()).finish()
    }
}

/// A held buffer: the buffer's lock and exclusive access to its bytes.
/// Dropping it is [`Buf::brelse`].
pub struct Buf {
    cache: Arc<BufCache>,
    off: u64,
    /// The bytes, owned by the handle while it is held (no copy in or out).
    data: Vec<u8>,
    /// The bytes are the disk's (or were filled to be written); false for a
    /// fresh `getblk` buffer until it is written.
    valid: bool,
    released: bool,
}

impl Buf {
    /// Device byte offset (the buffer's name).
    pub fn blkno(&self) -> u64 {
        self.off
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The contents.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The contents, for changing. Marks nothing: release with `bdwrite`,
    /// `bawrite` or `bwrite` to have the change written.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The cache this buffer belongs to.
    pub fn cache(&self) -> &Arc<BufCache> {
        &self.cache
    }

    fn take(&mut self) -> Vec<u8> {
        self.released = true;
        std::mem::take(&mut self.data)
    }

    /// `brelse`: release without writing (see the module doc).
    pub fn brelse(self) {}

    /// Release and drop the buffer from the cache without writing it
    /// (`brelse` with `B_INVAL`): for blocks that were freed.
    pub fn invalidate(mut self) {
        let data = self.take();
        self.cache.release(self.off, data, self.valid, Release::Invalidate);
    }

    /// `bdwrite`: mark dirty and release; written later (sync, syncer,
    /// eviction).
    pub fn bdwrite(mut self) {
        let data = self.take();
        self.cache.release(self.off, data, true, Release::Dirty { async_write: false });
    }

    /// `bawrite`: release and have it written soon, not waiting for it; an
    /// error is reported by the next `sync` (see the module doc).
    pub fn bawrite(mut self) {
        let data = self.take();
        let (cache, off) = (self.cache.clone(), self.off);
        cache.release(off, data, true, Release::Dirty { async_write: true });
        if !cache.kick_syncer() {
            cache.write_async_now(off);
        }
    }

    /// `bwrite`: write now and wait, then release (clean on success; dirty,
    /// to be retried by sync, on failure). Errors: the device's (EIO, EROFS).
    pub fn bwrite(mut self) -> KResult<()> {
        let res = self.cache.dev.write_at(self.off, &self.data);
        self.cache.dev_writes.fetch_add(1, Ordering::Relaxed);
        if res.is_ok() {
            self.cache.bytes_written.fetch_add(self.data.len() as u64, Ordering::Relaxed);
        }
        let data = self.take();
        self.cache.release(self.off, data, true, Release::Written { ok: res.is_ok() });
        res.map_err(Errno::from)
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if !self.released {
            let data = self.take();
            self.cache.release(self.off, data, self.valid, Release::Keep);
        }
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buf").field("blkno", &self.off).field("size", &self.data.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use rumpuser::{Error, RuResult};
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    /// A memory device counting requests (a clustered request counts once).
    struct MemDev {
        data: Mutex<Vec<u8>>,
        reads: AtomicU64,
        writes: AtomicU64,
        flushes: AtomicU64,
        fail_writes: AtomicBool,
        /// (offset, length) of every write request.
        write_log: Mutex<Vec<(u64, usize)>>,
        /// Writes that came through `writev_at_delayed`.
        delayed: AtomicU64,
    }

    impl MemDev {
        /// `size` bytes; the first 8 bytes of every 1 KiB hold its index.
        fn new(size: usize) -> Arc<MemDev> {
            let mut data = vec![0u8; size];
            for (i, chunk) in data.chunks_mut(1024).enumerate() {
                chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
            }
            Arc::new(MemDev {
                data: Mutex::new(data),
                reads: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                flushes: AtomicU64::new(0),
                fail_writes: AtomicBool::new(false),
                write_log: Mutex::new(Vec::new()),
                delayed: AtomicU64::new(0),
            })
        }
        fn bytes(&self, off: u64, len: usize) -> Vec<u8> {
            self.data.lock()[off as usize..off as usize + len].to_vec()
        }
        fn range(&self, off: u64, len: usize) -> RuResult<std::ops::Range<usize>> {
            let end = off.checked_add(len as u64).ok_or(Error(Errno::EIO.0))?;
            if end > self.data.lock().len() as u64 {
                return Err(Error(Errno::EIO.0));
            }
            Ok(off as usize..end as usize)
        }
    }

    impl BlockDevice for MemDev {
        fn read_at(&self, off: u64, buf: &mut [u8]) -> RuResult<()> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let r = self.range(off, buf.len())?;
            buf.copy_from_slice(&self.data.lock()[r]);
            Ok(())
        }
        fn write_at(&self, off: u64, buf: &[u8]) -> RuResult<()> {
            self.writev_at(off, &[buf])
        }
        fn readv_at(&self, off: u64, bufs: &mut [&mut [u8]]) -> RuResult<()> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let r = self.range(off, total)?;
            let data = self.data.lock();
            let mut p = r.start;
            for b in bufs.iter_mut() {
                b.copy_from_slice(&data[p..p + b.len()]);
                p += b.len();
            }
            Ok(())
        }
        fn writev_at(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            if self.fail_writes.load(Ordering::SeqCst) {
                return Err(Error(Errno::EIO.0));
            }
            let r = self.range(off, total)?;
            self.write_log.lock().push((off, total));
            let mut data = self.data.lock();
            let mut p = r.start;
            for b in bufs {
                data[p..p + b.len()].copy_from_slice(b);
                p += b.len();
            }
            Ok(())
        }
        fn writev_at_delayed(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
            self.delayed.fetch_add(1, Ordering::SeqCst);
            self.writev_at(off, bufs)
        }
        fn flush(&self) -> RuResult<()> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn size(&self) -> u64 {
            self.data.lock().len() as u64
        }
        fn sector_size(&self) -> u32 {
            512
        }
        fn is_read_only(&self) -> bool {
            false
        }
    }

    const K4: usize = 4096;

    fn cache(dev: &Arc<MemDev>, budget: usize) -> Arc<BufCache> {
        BufCache::new(dev.clone(), budget)
    }

    fn tag(b: &[u8]) -> u64 {
        u64::from_le_bytes(b[..8].try_into().unwrap())
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !cond() {
            assert!(t0.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn hit_and_miss() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let b = c.bread(8 * K4 as u64, K4).unwrap();
        assert_eq!(b.blkno(), 8 * K4 as u64);
        assert_eq!(b.size(), K4);
        assert_eq!(tag(b.data()), 32); // 32nd KiB
        b.brelse();
        let b = c.bread(8 * K4 as u64, K4).unwrap();
        assert_eq!(tag(b.data()), 32);
        drop(b);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.dev_reads), (1, 1, 1));
        assert_eq!(dev.reads.load(Ordering::SeqCst), 1);
        assert_eq!((s.buffers, s.bytes_cached), (1, K4));
    }

    #[test]
    fn bdwrite_then_sync_writes_device() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let mut b = c.getblk(2 * K4 as u64, K4).unwrap();
        assert!(b.data().iter().all(|&x| x == 0), "new getblk buffer is zeroed");
        b.data_mut().fill(0xab);
        b.bdwrite();
        assert_eq!(dev.writes.load(Ordering::SeqCst), 0, "delayed");
        assert_eq!(c.stats().dirty_buffers, 1);
        // Cached copy is the new one.
        assert_eq!(c.bread(2 * K4 as u64, K4).unwrap().data()[100], 0xab);
        c.sync(true).unwrap();
        assert_eq!(dev.bytes(2 * K4 as u64, K4), vec![0xab; K4]);
        assert_eq!(dev.writes.load(Ordering::SeqCst), 1);
        assert_eq!(dev.flushes.load(Ordering::SeqCst), 1);
        let s = c.stats();
        assert_eq!((s.dirty_buffers, s.dirty_bytes, s.dev_writes), (0, 0, 1));
        // Nothing left to write.
        c.sync(false).unwrap();
        assert_eq!(dev.writes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn getblk_then_brelse_is_not_cached() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let b = c.getblk(0, K4).unwrap();
        drop(b);
        assert_eq!(c.stats().buffers, 0, "never-valid zero buffer discarded");
        assert_eq!(tag(c.bread(0, K4).unwrap().data()), 0);
        assert_eq!(tag(c.bread(K4 as u64, K4).unwrap().data()), 4);
    }

    #[test]
    fn bwrite_is_synchronous() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let mut b = c.getblk(0, K4).unwrap();
        b.data_mut()[..4].copy_from_slice(b"abcd");
        b.bwrite().unwrap();
        assert_eq!(&dev.bytes(0, 4), b"abcd");
        assert_eq!(c.stats().dirty_buffers, 0);
        assert_eq!(&c.bread(0, K4).unwrap().data()[..4], b"abcd");
        assert_eq!(c.stats().hits, 1);
    }

    #[test]
    fn cluster_read_is_one_request() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let b = c.bread_cluster(16 * K4 as u64, K4, 16).unwrap();
        assert_eq!(tag(b.data()), 64);
        drop(b);
        assert_eq!(dev.reads.load(Ordering::SeqCst), 1);
        for i in 0..16u64 {
            let b = c.bread((16 + i) * K4 as u64, K4).unwrap();
            assert_eq!(tag(b.data()), (16 + i) * 4, "block {i} holds its own data");
        }
        assert_eq!(dev.reads.load(Ordering::SeqCst), 1, "all 16 were cached by the cluster read");
        let s = c.stats();
        assert_eq!((s.dev_reads, s.hits, s.misses, s.buffers), (1, 16, 1, 16));
        // A cluster read stops before a cached block: 8 blocks before block 16.
        c.bread_cluster(8 * K4 as u64, K4, 16).unwrap().brelse();
        assert_eq!(c.stats().buffers, 24);
        assert_eq!(dev.reads.load(Ordering::SeqCst), 2);
        // And at the end of the device.
        let last = (1 << 20) - 2 * K4 as u64;
        c.bread_cluster(last, K4, 16).unwrap().brelse();
        assert_eq!(c.stats().buffers, 26);
    }

    #[test]
    fn clustered_sync_write() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 128 * K4);
        for i in 0..32u64 {
            let mut b = c.getblk(i * K4 as u64, K4).unwrap();
            b.data_mut().fill(i as u8 + 1);
            b.bdwrite();
        }
        c.sync(true).unwrap();
        assert_eq!(dev.writes.load(Ordering::SeqCst), 1, "32 contiguous dirty blocks, one request");
        assert_eq!(*dev.write_log.lock(), vec![(0, 32 * K4)]);
        for i in 0..32u64 {
            assert_eq!(dev.bytes(i * K4 as u64, K4), vec![i as u8 + 1; K4]);
        }
        // Two separate runs (written in reverse order) = two requests.
        dev.write_log.lock().clear();
        for i in (40..48u64).chain(60..64).rev() {
            let mut b = c.getblk(i * K4 as u64, K4).unwrap();
            b.data_mut().fill(0x55);
            b.bdwrite();
        }
        c.sync(true).unwrap();
        assert_eq!(*dev.write_log.lock(), vec![(40 * K4 as u64, 8 * K4), (60 * K4 as u64, 4 * K4)]);
        assert_eq!(c.stats().dev_writes, 3);
    }

    #[test]
    fn dirty_buffers_survive_eviction() {
        let dev = MemDev::new(1 << 20);
        let budget = 4 * K4;
        let c = cache(&dev, budget);
        for i in 0..16u64 {
            let mut b = c.getblk(i * K4 as u64, K4).unwrap();
            b.data_mut().fill(0x80 | i as u8);
            b.bdwrite();
            assert!(c.stats().bytes_cached <= budget);
        }
        let s = c.stats();
        assert!(s.evictions >= 12);
        assert!(s.peak_bytes <= budget);
        // Evicted dirty buffers were written, clustered with their neighbours.
        let requests = dev.writes.load(Ordering::SeqCst);
        assert!((1..12).contains(&requests), "eviction writes are clustered: {requests} requests");
        for i in 0..16u64 {
            let b = c.bread(i * K4 as u64, K4).unwrap();
            assert_eq!(b.data()[7], 0x80 | i as u8, "block {i} read back");
        }
        c.sync(true).unwrap();
        for i in 0..16u64 {
            assert_eq!(dev.bytes(i * K4 as u64, K4), vec![0x80 | i as u8; K4]);
        }
    }

    #[test]
    fn variable_sizes_and_resize() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let mut small = c.getblk(0, 1024).unwrap();
        small.data_mut().fill(1);
        small.bdwrite();
        let big = c.bread(K4 as u64, K4).unwrap();
        assert_eq!(big.size(), K4);
        drop(big);
        let small = c.bread(0, 1024).unwrap();
        assert_eq!(small.size(), 1024);
        assert_eq!(small.data(), &[1u8; 1024][..]);
        drop(small);
        assert_eq!(c.stats().bytes_cached, 1024 + K4);
        // The fragment grows into a block: the dirty 1 KiB is written back
        // first, so the 4 KiB buffer starts with it.
        let grown = c.bread(0, K4).unwrap();
        assert_eq!(grown.size(), K4);
        assert_eq!(&grown.data()[..1024], &[1u8; 1024][..]);
        assert_eq!(tag(&grown.data()[1024..]), 1, "rest from the device");
        drop(grown);
        let s = c.stats();
        assert_eq!((s.buffers, s.bytes_cached, s.dirty_buffers), (2, 2 * K4, 0));
        assert_eq!(dev.bytes(0, 1024), vec![1u8; 1024]);
    }

    #[test]
    fn budget_never_exceeded_under_concurrent_load() {
        let dev = MemDev::new(4 << 20);
        let budget = 24 * K4;
        let c = cache(&dev, budget);
        c.start_syncer(Duration::from_millis(3)).unwrap();
        // Block k lives at k*4096; blocks with k % 4 == 0 are 1 KiB buffers.
        let size_of = |k: u64| if k & 3 == 0 { 1024 } else { K4 };
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut x = 0x9e3779b97f4a7c15u64 ^ (t + 1);
                    for _ in 0..3000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let k = x % 256;
                        let (off, size) = (k * K4 as u64, size_of(k));
                        match (x >> 20) % 16 {
                            0..=3 => {
                                let mut b = c.getblk(off, size).unwrap();
                                b.data_mut()[..8].copy_from_slice(&(k * 4).to_le_bytes());
                                b.data_mut()[8] = t as u8;
                                b.bdwrite();
                            }
                            4..=6 => {
                                let mut b = c.bread(off, size).unwrap();
                                b.data_mut()[8] = t as u8;
                                b.bawrite();
                            }
                            7 => c.sync(x & 1 == 0).unwrap(),
                            8..=10 => {
                                let b = c.bread_cluster(off, size, 8).unwrap();
                                assert_eq!(tag(b.data()), k * 4, "block {k}");
                            }
                            _ => {
                                let b = c.bread(off, size).unwrap();
                                assert_eq!(tag(b.data()), k * 4, "block {k}");
                            }
                        }
                        assert!(c.stats().bytes_cached <= budget);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        c.shutdown().unwrap();
        let s = c.stats();
        assert!(s.peak_bytes <= budget, "peak {} > budget {budget}", s.peak_bytes);
        assert!(s.peak_bytes > budget / 2, "the load did fill the cache");
        assert!(s.evictions > 0);
        assert_eq!(s.dirty_buffers, 0);
        for k in 0..256u64 {
            assert_eq!(tag(&dev.bytes(k * K4 as u64, 8)), k * 4, "device block {k}");
        }
    }

    #[test]
    fn syncer_writes_back_without_sync() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        c.start_syncer(Duration::from_millis(20)).unwrap();
        let mut b = c.getblk(0, K4).unwrap();
        b.data_mut().fill(0x77);
        b.bdwrite();
        wait_for("syncer write-back", || dev.bytes(0, K4) == vec![0x77; K4]);
        wait_for("clean state", || c.stats().dirty_buffers == 0);
        c.shutdown().unwrap();
    }

    #[test]
    fn bawrite_is_written_soon() {
        // Without a syncer: written by the caller right after release.
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let mut b = c.getblk(0, K4).unwrap();
        b.data_mut().fill(3);
        b.bawrite();
        assert_eq!(dev.bytes(0, K4), vec![3; K4]);
        assert_eq!(c.stats().dirty_buffers, 0);
        // With a syncer (long interval: only the kick can explain the write).
        c.start_syncer(Duration::from_secs(3600)).unwrap();
        let mut b = c.getblk(K4 as u64, K4).unwrap();
        b.data_mut().fill(4);
        b.bawrite();
        wait_for("bawrite via syncer", || dev.bytes(K4 as u64, K4) == vec![4; K4]);
        // A bdwrite buffer is not written by that syncer before its time.
        let mut b = c.getblk(8 * K4 as u64, K4).unwrap();
        b.data_mut().fill(5);
        b.bdwrite();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(c.stats().dirty_buffers, 1);
        drop(c); // drop syncs
        assert_eq!(dev.bytes(8 * K4 as u64, K4), vec![5; K4]);
    }

    #[test]
    fn delayed_write_error_surfaces_from_sync() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let mut b = c.getblk(0, K4).unwrap();
        b.data_mut().fill(9);
        b.bdwrite();
        dev.fail_writes.store(true, Ordering::SeqCst);
        assert_eq!(c.sync(true), Err(Errno::EIO));
        assert_eq!(c.stats().dirty_buffers, 1, "stays dirty after a failed write");
        dev.fail_writes.store(false, Ordering::SeqCst);
        c.sync(true).unwrap();
        assert_eq!(dev.bytes(0, K4), vec![9; K4]);

        // Failure in the syncer (nobody waiting): remembered, reported once.
        let recorded = |c: &BufCache| c.state.enter().delayed_error.is_some();
        dev.fail_writes.store(true, Ordering::SeqCst);
        c.start_syncer(Duration::from_millis(5)).unwrap();
        let mut b = c.getblk(K4 as u64, K4).unwrap();
        b.data_mut().fill(10);
        b.bdwrite();
        wait_for("a failed syncer write", || recorded(&c));
        assert_eq!(c.stats().dirty_buffers, 1);
        dev.fail_writes.store(false, Ordering::SeqCst);
        assert_eq!(c.sync(true), Err(Errno::EIO), "the remembered error is returned");
        assert_eq!(dev.bytes(K4 as u64, K4), vec![10; K4], "and the data written by this sync");
        c.sync(true).unwrap(); // reported once

        // The same for bawrite through the syncer (no periodic pass).
        c.start_syncer(Duration::from_secs(3600)).unwrap();
        dev.fail_writes.store(true, Ordering::SeqCst);
        let mut b = c.getblk(2 * K4 as u64, K4).unwrap();
        b.data_mut().fill(11);
        b.bawrite();
        wait_for("a failed bawrite", || recorded(&c));
        dev.fail_writes.store(false, Ordering::SeqCst);
        assert_eq!(c.sync(true), Err(Errno::EIO));
        assert_eq!(dev.bytes(2 * K4 as u64, K4), vec![11; K4]);
        c.shutdown().unwrap();
    }

    #[test]
    fn same_block_serialises_between_threads() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let b = c.bread(0, K4).unwrap();
        assert_eq!(c.getblk(0, K4).err(), Some(Errno::EDEADLK), "same thread asking again");
        let c2 = c.clone();
        let got = Arc::new(AtomicBool::new(false));
        let got2 = got.clone();
        let t = std::thread::spawn(move || {
            let mut b = c2.bread(0, K4).unwrap();
            got2.store(true, Ordering::SeqCst);
            assert_eq!(b.data()[9], 0xee, "sees the first holder's change");
            b.data_mut()[10] = 0xdd;
            b.bdwrite();
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!got.load(Ordering::SeqCst), "second thread waits while the buffer is held");
        let mut b = b;
        b.data_mut()[9] = 0xee;
        b.brelse();
        t.join().unwrap();
        assert_eq!(c.bread(0, K4).unwrap().data()[10], 0xdd);
    }

    #[test]
    fn budget_rules_einval_and_enomem() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 2 * K4);
        assert_eq!(c.getblk(0, 0).err(), Some(Errno::EINVAL));
        assert_eq!(c.getblk(0, 3 * K4).err(), Some(Errno::EINVAL));
        assert_eq!(c.getblk(u64::MAX - 10, 512).err(), Some(Errno::EINVAL));
        let a = c.bread(0, K4).unwrap();
        let b = c.bread(K4 as u64, K4).unwrap();
        // Everything held by this thread: no one can free space.
        assert_eq!(c.bread(2 * K4 as u64, K4).err(), Some(Errno::ENOMEM));
        // Held by another thread: we wait until it releases.
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            let x = c2.bread(2 * K4 as u64, K4).unwrap();
            tag(x.data())
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "waits for space");
        drop(a);
        assert_eq!(t.join().unwrap(), 8);
        drop(b);
        assert!(c.stats().peak_bytes <= 2 * K4);
    }

    #[test]
    fn read_error_caches_nothing() {
        let dev = MemDev::new(64 * 1024);
        let c = cache(&dev, 64 * K4);
        assert_eq!(c.bread(64 * 1024, K4).err(), Some(Errno::EIO));
        let s = c.stats();
        assert_eq!((s.buffers, s.bytes_cached), (0, 0));
    }

    #[test]
    fn write_back_is_delayed_bwrite_is_not() {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        let mut b = c.getblk(0, K4).unwrap();
        b.data_mut().fill(1);
        b.bwrite().unwrap();
        assert_eq!(dev.delayed.load(Ordering::SeqCst), 0, "bwrite waits: not a delayed write");
        for i in 1..4u64 {
            let mut b = c.getblk(i * K4 as u64, K4).unwrap();
            b.data_mut().fill(2);
            b.bdwrite();
        }
        c.sync(true).unwrap();
        assert_eq!(dev.delayed.load(Ordering::SeqCst), 1, "one clustered delayed write");
        assert_eq!(dev.bytes(K4 as u64, 3 * K4), vec![2u8; 3 * K4]);
        assert!(dev.flushes.load(Ordering::SeqCst) >= 1, "sync(wait) flushes the device");
    }

    /// A cache over a 1 MiB device with blocks 0..4 dirty, never written.
    fn four_dirty_blocks() -> (Arc<MemDev>, Arc<BufCache>) {
        let dev = MemDev::new(1 << 20);
        let c = cache(&dev, 64 * K4);
        for i in 0..4u64 {
            let mut b = c.getblk(i * K4 as u64, K4).unwrap();
            b.data_mut().fill(0xcc);
            b.bdwrite();
        }
        (dev, c)
    }

    #[test]
    fn binval_discards_without_writing() {
        let (dev, c) = four_dirty_blocks();
        c.binval(0);
        let held = c.bread(K4 as u64, K4).unwrap();
        c.invalidate_range(K4 as u64, 2 * K4 as u64); // blocks 1 (held) and 2
        drop(held); // dropped on release
        assert_eq!(c.stats().buffers, 1);
        c.sync(true).unwrap();
        assert_eq!(*dev.write_log.lock(), vec![(3 * K4 as u64, K4)]);
        assert_eq!(tag(c.bread(0, K4).unwrap().data()), 0, "re-read from the device");
        let b = c.bread(0, K4).unwrap();
        b.invalidate();
        assert_eq!(c.stats().buffers, 1);
    }

    #[test]
    fn purge_range_waits_for_holders_and_drops_dirty() {
        let (dev, c) = four_dirty_blocks();
        // Another thread holds block 2 for a while, then writes it.
        let held = c.bread(2 * K4 as u64, K4).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            c2.purge_range(K4 as u64, 3 * K4 as u64, K4).unwrap();
            tx.send(()).unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "purge_range did not wait for the holder");
        held.bwrite().unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        t.join().unwrap();
        // Blocks 1..=3 are gone (dirty 1 and 3 never written); 0 stays.
        assert_eq!(c.stats().buffers, 1);
        c.sync(true).unwrap();
        let log = dev.write_log.lock().clone();
        assert_eq!(log, vec![(2 * K4 as u64, K4), (0, K4)]);
        // Holding a buffer of the range oneself is EDEADLK, not a hang.
        let mine = c.getblk(0, K4).unwrap();
        assert_eq!(c.purge_range(0, K4 as u64, K4), Err(Errno::EDEADLK));
        drop(mine);
        assert_eq!(c.purge_range(0, K4 as u64, 0), Err(Errno::EINVAL));
    }
}
