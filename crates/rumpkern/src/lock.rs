//! Kernel locks: [`KMutex`], [`KRwLock`] and [`KCondvar`] (NetBSD
//! `mutex(9)`, `rwlock(9)`, `condvar(9)`), thin wrappers over parking_lot
//! with the kernel's names and semantics.
//!
//! * `mutex_enter` / `mutex_exit` are [`KMutex::enter`] and dropping (or
//!   [`KMutex::exit`]-ing) the guard; `mutex_tryenter` is [`KMutex::tryenter`];
//!   `mutex_owned` is [`KMutex::owned`] (held by the calling thread), meant for
//!   `debug_assert!`s of a function's locking precondition.
//! * `rw_enter(RW_READER | RW_WRITER)` is [`KRwLock::enter`] with [`RW_READER`]
//!   or [`RW_WRITER`] (or the typed [`KRwLock::read`] / [`KRwLock::write`]);
//!   `rw_write_held` is [`KRwLock::write_held`].
//! * `cv_wait`, `cv_timedwait`, `cv_signal`, `cv_broadcast` are the methods of
//!   [`KCondvar`]; a condvar is always used with one [`KMutex`].
//!
//! None of these locks is recursive: entering a mutex the thread already holds
//! deadlocks, as in the kernel (debug builds of callers assert `!owned()`).
//!
//! # Lock order
//!
//! The system-wide order, outermost first. A thread holding a lock of level
//! *n* may only take locks of a level greater than *n* (or, within one level,
//! by the rule that level states).
//!
//! 1. the mount's rename lock (`Mount::rename_lock`, only rename takes it);
//! 2. vnode locks: a parent directory before its child; two directories that
//!    are not parent and child (rename) in increasing inode number;
//! 3. driver-internal locks (node data, allocation maps);
//! 4. buffer locks: a [`crate::buf::Buf`] handle *is* the buffer lock (NetBSD
//!    `B_BUSY`). A thread holding several buffers takes them in an order the
//!    driver defines (for example increasing block number); the cache only
//!    detects a thread asking again for a buffer it holds (`EDEADLK`);
//! 5. the vcache mutex (`VCache::state`), held only briefly; `inactive` and
//!    `reclaim` run under it and therefore must not call back into the vcache;
//! 6. the buffer cache's syncer slot (`BufCache::syncer`), held only to start,
//!    kick or take the syncer, never across I/O;
//! 7. the buffer cache lock (`BufCache::state`, NetBSD `bufcache_lock`): a
//!    leaf, held only for hash/LRU/accounting updates, never across device I/O,
//!    never while calling out of `buf.rs`. Buffer waits sleep on it (the buffer
//!    "lock" of level 4 is a flag under it, as `B_BUSY` is under
//!    `bufcache_lock`);
//! 8. a [`crate::kthread::Syncer`]'s internal mutex: a leaf; the periodic
//!    callback runs without it.

use std::cell::Cell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
}

/// A small number naming the calling thread (NetBSD `curlwp`), never 0.
/// Used for lock-owner assertions and deadlock checks.
pub fn curthread_id() -> u64 {
    THREAD_ID.with(|c| {
        let v = c.get();
        if v != 0 {
            return v;
        }
        let v = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
        c.set(v);
        v
    })
}

// ---------------------------------------------------------------------------
// KMutex

/// A mutual-exclusion lock (NetBSD `kmutex_t`, adaptive mutex) guarding `T`.
pub struct KMutex<T: ?Sized> {
    /// `curthread_id()` of the holder, 0 when free. Written only by the holder.
    owner: AtomicU64,
    inner: Mutex<T>,
}

/// Proof of holding a [`KMutex`]; dropping it is `mutex_exit`.
pub struct KMutexGuard<'a, T: ?Sized> {
    lock: &'a KMutex<T>,
    guard: MutexGuard<'a, T>,
}

impl<T> KMutex<T> {
    /// `mutex_init`: a new, unlocked mutex.
    pub const fn new(value: T) -> Self {
        KMutex { owner: AtomicU64::new(0), inner: Mutex::new(value) }
    }

    /// Consume the mutex and return the data (`mutex_destroy`).
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> KMutex<T> {
    /// `mutex_enter`: block until the mutex is ours.
    pub fn enter(&self) -> KMutexGuard<'_, T> {
        let guard = self.inner.lock();
        self.owner.store(curthread_id(), Ordering::Relaxed);
        KMutexGuard { lock: self, guard }
    }

    /// `mutex_tryenter`: take the mutex if it is free, never block.
    pub fn tryenter(&self) -> Option<KMutexGuard<'_, T>> {
        let guard = self.inner.try_lock()?;
        self.owner.store(curthread_id(), Ordering::Relaxed);
        Some(KMutexGuard { lock: self, guard })
    }

    /// `mutex_exit`: release (the same as dropping the guard).
    pub fn exit(guard: KMutexGuard<'_, T>) {
        drop(guard);
    }

    /// Is the mutex held by anyone? (racy unless the caller holds it; for
    /// assertions and statistics).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// `mutex_owned`: is the mutex held by the calling thread?
    pub fn owned(&self) -> bool {
        self.inner.is_locked() && self.owner.load(Ordering::Relaxed) == curthread_id()
    }

    /// Mutable access without locking (we have the only reference).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: Default> Default for KMutex<T> {
    fn default() -> Self {
        KMutex::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for KMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KMutex").field("locked", &self.is_locked()).finish()
    }
}

impl<'a, T: ?Sized> KMutexGuard<'a, T> {
    /// Release the mutex while running `f`, then take it again (for doing I/O
    /// or calling out without holding a leaf lock).
    pub fn unlocked<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.lock.owner.store(0, Ordering::Relaxed);
        let r = MutexGuard::unlocked(&mut self.guard, f);
        self.lock.owner.store(curthread_id(), Ordering::Relaxed);
        r
    }

    /// The mutex this guard holds.
    pub fn mutex(&self) -> &'a KMutex<T> {
        self.lock
    }
}

impl<T: ?Sized> Drop for KMutexGuard<'_, T> {
    fn drop(&mut self) {
        // Cleared before the inner guard (a field) unlocks.
        self.lock.owner.store(0, Ordering::Relaxed);
    }
}

impl<T: ?Sized> Deref for KMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for KMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

// ---------------------------------------------------------------------------
// KCondvar

/// A condition variable (NetBSD `kcondvar_t`). Waits release the mutex
/// atomically and re-take it before returning; wake-ups may be spurious, so
/// callers re-check their condition in a loop, as in the kernel.
#[derive(Default)]
pub struct KCondvar {
    inner: Condvar,
}

impl KCondvar {
    /// `cv_init`.
    pub const fn new() -> Self {
        KCondvar { inner: Condvar::new() }
    }

    /// `cv_wait`: sleep until signalled.
    pub fn wait<T: ?Sized>(&self, guard: &mut KMutexGuard<'_, T>) {
        guard.lock.owner.store(0, Ordering::Relaxed);
        self.inner.wait(&mut guard.guard);
        guard.lock.owner.store(curthread_id(), Ordering::Relaxed);
    }

    /// `cv_timedwait`: sleep until signalled or until `timeout` has passed.
    /// Returns `true` if it timed out (NetBSD's `EWOULDBLOCK`), `false` if woken.
    pub fn timedwait<T: ?Sized>(&self, guard: &mut KMutexGuard<'_, T>, timeout: Duration) -> bool {
        guard.lock.owner.store(0, Ordering::Relaxed);
        let r = self.inner.wait_for(&mut guard.guard, timeout);
        guard.lock.owner.store(curthread_id(), Ordering::Relaxed);
        r.timed_out()
    }

    /// `cv_wait` in a loop until `cond` is false (checked under the mutex).
    pub fn wait_while<T: ?Sized>(&self, guard: &mut KMutexGuard<'_, T>, mut cond: impl FnMut(&mut T) -> bool) {
        while cond(&mut *guard) {
            self.wait(guard);
        }
    }

    /// `cv_signal`: wake one waiter. Returns whether one was woken.
    pub fn signal(&self) -> bool {
        self.inner.notify_one()
    }

    /// `cv_broadcast`: wake all waiters. Returns how many were woken.
    pub fn broadcast(&self) -> usize {
        self.inner.notify_all()
    }
}

impl fmt::Debug for KCondvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KCondvar")
    }
}

// ---------------------------------------------------------------------------
// KRwLock

/// How to enter a [`KRwLock`] (NetBSD `krw_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RwOp {
    /// Shared access.
    Reader,
    /// Exclusive access.
    Writer,
}

/// `rw_enter(rw, RW_READER)`.
pub const RW_READER: RwOp = RwOp::Reader;
/// `rw_enter(rw, RW_WRITER)`.
pub const RW_WRITER: RwOp = RwOp::Writer;

/// A reader/writer lock (NetBSD `krwlock_t`) guarding `T`. Writers are not
/// starved by a stream of readers (parking_lot's fair policy).
pub struct KRwLock<T: ?Sized> {
    /// `curthread_id()` of the write holder, 0 otherwise.
    writer: AtomicU64,
    inner: RwLock<T>,
}

/// Shared access to a [`KRwLock`]; dropping it is `rw_exit`.
pub type KRwReadGuard<'a, T> = RwLockReadGuard<'a, T>;

/// Exclusive access to a [`KRwLock`]; dropping it is `rw_exit`.
pub struct KRwWriteGuard<'a, T: ?Sized> {
    lock: &'a KRwLock<T>,
    guard: RwLockWriteGuard<'a, T>,
}

/// What [`KRwLock::enter`] returns: either kind of hold.
pub enum KRwGuard<'a, T: ?Sized> {
    /// Entered with [`RW_READER`].
    Reader(KRwReadGuard<'a, T>),
    /// Entered with [`RW_WRITER`].
    Writer(KRwWriteGuard<'a, T>),
}

impl<T> KRwLock<T> {
    /// `rw_init`.
    pub const fn new(value: T) -> Self {
        KRwLock { writer: AtomicU64::new(0), inner: RwLock::new(value) }
    }

    /// Consume the lock and return the data.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> KRwLock<T> {
    /// `rw_enter(op)`.
    pub fn enter(&self, op: RwOp) -> KRwGuard<'_, T> {
        match op {
            RwOp::Reader => KRwGuard::Reader(self.read()),
            RwOp::Writer => KRwGuard::Writer(self.write()),
        }
    }

    /// `rw_tryenter(op)`: never blocks.
    pub fn tryenter(&self, op: RwOp) -> Option<KRwGuard<'_, T>> {
        match op {
            RwOp::Reader => self.inner.try_read().map(KRwGuard::Reader),
            RwOp::Writer => self.inner.try_write().map(|g| KRwGuard::Writer(self.wrap_write(g))),
        }
    }

    /// `rw_enter(RW_READER)`, typed.
    pub fn read(&self) -> KRwReadGuard<'_, T> {
        self.inner.read()
    }

    /// `rw_enter(RW_WRITER)`, typed.
    pub fn write(&self) -> KRwWriteGuard<'_, T> {
        let g = self.inner.write();
        self.wrap_write(g)
    }

    fn wrap_write<'a>(&'a self, guard: RwLockWriteGuard<'a, T>) -> KRwWriteGuard<'a, T> {
        self.writer.store(curthread_id(), Ordering::Relaxed);
        KRwWriteGuard { lock: self, guard }
    }

    /// `rw_lock_held`: held by anyone, shared or exclusive (racy; assertions).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Held exclusively by anyone (racy; assertions).
    pub fn is_write_locked(&self) -> bool {
        self.inner.is_locked_exclusive()
    }

    /// `rw_write_held`: held exclusively by the calling thread.
    pub fn write_held(&self) -> bool {
        self.inner.is_locked_exclusive() && self.writer.load(Ordering::Relaxed) == curthread_id()
    }

    /// Mutable access without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: Default> Default for KRwLock<T> {
    fn default() -> Self {
        KRwLock::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for KRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KRwLock").field("locked", &self.is_locked()).field("write", &self.is_write_locked()).finish()
    }
}

impl<'a, T: ?Sized> KRwWriteGuard<'a, T> {
    /// `rw_downgrade`: turn the exclusive hold into a shared one atomically.
    pub fn downgrade(self) -> KRwReadGuard<'a, T> {
        let me = std::mem::ManuallyDrop::new(self);
        me.lock.writer.store(0, Ordering::Relaxed);
        // SAFETY: `me` is never used or dropped again; we move the inner
        // guard out exactly once.
        let guard = unsafe { std::ptr::read(&me.guard) };
        RwLockWriteGuard::downgrade(guard)
    }
}

impl<T: ?Sized> Drop for KRwWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.writer.store(0, Ordering::Relaxed);
    }
}

impl<T: ?Sized> Deref for KRwWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for KRwWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized> KRwGuard<'_, T> {
    /// Entered as writer?
    pub fn is_writer(&self) -> bool {
        matches!(self, KRwGuard::Writer(_))
    }

    /// Mutable access, only for a writer hold (`None` for a reader).
    pub fn get_mut(&mut self) -> Option<&mut T> {
        match self {
            KRwGuard::Reader(_) => None,
            KRwGuard::Writer(g) => Some(&mut **g),
        }
    }
}

impl<T: ?Sized> Deref for KRwGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            KRwGuard::Reader(g) => g,
            KRwGuard::Writer(g) => g,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn mutex_contention_counts_exactly() {
        let m = Arc::new(KMutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let mut g = m.enter();
                        assert!(m.owned());
                        // Non-atomic read-modify-write: only correct under mutual exclusion.
                        let v = *g;
                        std::hint::black_box(());
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.enter(), 40_000);
    }

    #[test]
    fn owned_and_tryenter() {
        let m = Arc::new(KMutex::new(()));
        assert!(!m.is_locked());
        assert!(!m.owned());
        let g = m.enter();
        assert!(m.is_locked());
        assert!(m.owned());
        let m2 = m.clone();
        std::thread::spawn(move || {
            assert!(m2.is_locked());
            assert!(!m2.owned(), "another thread must not appear as owner");
            assert!(m2.tryenter().is_none());
        })
        .join()
        .unwrap();
        KMutex::exit(g);
        assert!(!m.is_locked());
        assert!(m.tryenter().is_some());
    }

    #[test]
    fn condvar_timedwait_times_out() {
        let m = KMutex::new(false);
        let cv = KCondvar::new();
        let mut g = m.enter();
        let t0 = Instant::now();
        let timed_out = cv.timedwait(&mut g, Duration::from_millis(50));
        assert!(timed_out);
        assert!(t0.elapsed() >= Duration::from_millis(45));
        assert!(m.owned(), "mutex re-taken after the wait");
    }

    #[test]
    fn condvar_signal_wakes_waiter() {
        let pair = Arc::new((KMutex::new(false), KCondvar::new()));
        let p = pair.clone();
        let waiter = std::thread::spawn(move || {
            let (m, cv) = &*p;
            let mut g = m.enter();
            let mut woke_by_signal = false;
            while !*g {
                if !cv.timedwait(&mut g, Duration::from_secs(10)) {
                    woke_by_signal = true;
                }
            }
            woke_by_signal
        });
        std::thread::sleep(Duration::from_millis(20));
        {
            let (m, cv) = &*pair;
            *m.enter() = true;
            cv.signal();
        }
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn condvar_broadcast_wakes_all() {
        let pair = Arc::new((KMutex::new(0u32), KCondvar::new()));
        let woken = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let p = pair.clone();
                let w = woken.clone();
                std::thread::spawn(move || {
                    let (m, cv) = &*p;
                    let mut g = m.enter();
                    cv.wait_while(&mut g, |go| *go == 0);
                    w.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        {
            let (m, cv) = &*pair;
            *m.enter() = 1;
            cv.broadcast();
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn rwlock_readers_share_writers_exclude() {
        let l = Arc::new(KRwLock::new(0u64));
        let r1 = l.enter(RW_READER);
        let r2 = l.read();
        assert!(l.is_locked());
        assert!(!l.is_write_locked());
        assert!(l.tryenter(RW_WRITER).is_none());
        assert_eq!(*r1 + *r2, 0);
        drop((r1, r2));
        {
            let mut w = l.enter(RW_WRITER);
            assert!(w.is_writer());
            *w.get_mut().unwrap() = 7;
            assert!(l.write_held());
            assert!(l.tryenter(RW_READER).is_none());
        }
        assert!(!l.write_held());
        let mut r = l.enter(RW_READER);
        assert!(r.get_mut().is_none());
        assert_eq!(*r, 7);
        drop(r);

        // Contended writers keep a non-atomic counter exact.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        if i % 2 == 0 {
                            let mut w = l.write();
                            let v = *w;
                            *w = v + 1;
                        } else {
                            let r = l.read();
                            assert!(*r >= 7);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*l.read(), 7 + 4 * 2_500);
    }

    #[test]
    fn rwlock_downgrade_keeps_shared_hold() {
        let l = KRwLock::new(1);
        let mut w = l.write();
        *w = 2;
        let r = w.downgrade();
        assert!(!l.write_held());
        assert!(l.is_locked());
        assert!(l.tryenter(RW_WRITER).is_none());
        assert!(l.tryenter(RW_READER).is_some());
        assert_eq!(*r, 2);
    }
}
