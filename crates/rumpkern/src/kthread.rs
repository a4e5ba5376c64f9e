//! Kernel threads (NetBSD `kthread(9)`) and [`Syncer`], the periodic worker
//! the buffer cache's syncer (and any driver's flush daemon) is built on.
//!
//! Threads come from the host through `rumpuser::thread_create`; nothing here
//! touches the OS directly.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use crate::errno::{Errno, KResult};
use crate::lock::{curthread_id, KCondvar, KMutex};

/// A kernel thread started with [`kthread_create`]. Dropping the handle
/// detaches the thread; [`KThread::join`] waits for it (`kthread_join`).
pub struct KThread {
    name: String,
    thread: rumpuser::Thread,
}

/// `kthread_create`: start a thread named `name` running `f`.
/// Errors: EAGAIN when the host cannot create another thread.
pub fn kthread_create(name: &str, f: impl FnOnce() + Send + 'static) -> KResult<KThread> {
    let thread = rumpuser::thread_create(name, f).map_err(Errno::from)?;
    Ok(KThread { name: name.to_string(), thread })
}

impl KThread {
    /// `kthread_join`: wait for the thread to return. EIO if it panicked.
    pub fn join(self) -> KResult<()> {
        self.thread.join().map_err(Errno::from)
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Has the thread returned?
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

impl std::fmt::Debug for KThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KThread").field("name", &self.name).finish()
    }
}

/// Monotonic time since an arbitrary start, from the host clock.
pub(crate) fn monotonic_now() -> Duration {
    let (s, ns) = rumpuser::clock_monotonic();
    Duration::new(s.max(0) as u64, ns)
}

/// State shared between a [`Syncer`] and its thread. Guarded by `state`.
struct SyncerState {
    /// Periodic interval; `None` = only kicks wake the worker.
    interval: Option<Duration>,
    /// Kicks requested (a counter, so no kick is lost while a pass runs).
    kicks: u64,
    /// Value of `kicks` when the last pass started.
    kicks_seen: u64,
    /// Passes started.
    started: u64,
    /// Passes completed.
    passes: u64,
    /// `stop()` was called.
    stop: bool,
    /// `curthread_id()` of the worker, 0 before it started.
    worker: u64,
    /// The callback panicked (the worker then stopped).
    panicked: bool,
}

struct SyncerShared {
    /// Guards [`SyncerState`]; a leaf lock (level 8 of the lock order).
    state: KMutex<SyncerState>,
    /// Wakes the worker (kick, stop) and waiters for a pass (`kick_wait`).
    cv: KCondvar,
}

/// A periodic worker thread (the shape of NetBSD's `sched_sync`): every
/// `interval` it calls the callback; [`Syncer::kick`] makes it run now;
/// [`Syncer::stop`] (or dropping the handle) stops and joins it.
///
/// The callback runs on the worker thread with no syncer lock held. A kick
/// that arrives while a pass is running causes one more pass right after it.
/// Stopping does not run a final pass: the owner does its final flush itself
/// (the buffer cache's `shutdown` syncs after stopping the syncer).
pub struct Syncer {
    shared: Arc<SyncerShared>,
    thread: Option<KThread>,
}

impl Syncer {
    /// Start a worker named `name`. `interval` of `None` or zero disables the
    /// periodic part (the callback then runs only when kicked).
    /// Errors: EAGAIN when the thread cannot be created.
    pub fn start(
        name: &str,
        interval: Option<Duration>,
        mut callback: impl FnMut() + Send + 'static,
    ) -> KResult<Syncer> {
        let interval = interval.filter(|d| !d.is_zero());
        let shared = Arc::new(SyncerShared {
            state: KMutex::new(SyncerState {
                interval,
                kicks: 0,
                kicks_seen: 0,
                started: 0,
                passes: 0,
                stop: false,
                worker: 0,
                panicked: false,
            }),
            cv: KCondvar::new(),
        });
        let sh = shared.clone();
        let thread = kthread_create(name, move || {
            let mut st = sh.state.enter();
            st.worker = curthread_id();
            let mut next = st.interval.map(|i| monotonic_now() + i);
            loop {
                if st.stop {
                    break;
                }
                let kicked = st.kicks != st.kicks_seen;
                let due = next.is_some_and(|n| monotonic_now() >= n);
                if !kicked && !due {
                    match next {
                        Some(n) => {
                            let now = monotonic_now();
                            sh.cv.timedwait(&mut st, n.saturating_sub(now));
                        }
                        None => sh.cv.wait(&mut st),
                    }
                    continue;
                }
                st.kicks_seen = st.kicks;
                st.started += 1;
                let ok = st.unlocked(|| std::panic::catch_unwind(AssertUnwindSafe(&mut callback)).is_ok());
                if !ok {
                    // A broken callback: stop, so nobody waits for passes forever.
                    log::error!("syncer callback panicked; syncer stopped");
                    st.panicked = true;
                    st.stop = true;
                    break;
                }
                st.passes += 1;
                next = st.interval.map(|i| monotonic_now() + i);
                sh.cv.broadcast();
            }
            sh.cv.broadcast();
        })?;
        Ok(Syncer { shared, thread: Some(thread) })
    }

    /// Run a pass as soon as possible (does not wait for it).
    pub fn kick(&self) {
        let mut st = self.shared.state.enter();
        st.kicks += 1;
        drop(st);
        self.shared.cv.broadcast();
    }

    /// Kick and wait until a pass that started after this call has finished.
    /// Returns false at once if the worker is stopped (or if called from the
    /// callback, which would wait for itself); true once the pass is done.
    pub fn kick_wait(&self) -> bool {
        let mut st = self.shared.state.enter();
        if st.stop || st.worker == curthread_id() {
            return false;
        }
        st.kicks += 1;
        // Passes are numbered in start order and complete in order: the first
        // pass to start after this point is number `started + 1`.
        let target = st.started + 1;
        self.shared.cv.broadcast();
        while st.passes < target {
            if st.stop {
                return false;
            }
            self.shared.cv.wait(&mut st);
        }
        true
    }

    /// Passes completed so far.
    pub fn passes(&self) -> u64 {
        self.shared.state.enter().passes
    }

    /// The periodic interval (`None` = disabled).
    pub fn interval(&self) -> Option<Duration> {
        self.shared.state.enter().interval
    }

    /// Stop the worker and wait for it to finish (a pass in progress
    /// completes first). Idempotent. Errors: EIO if the callback panicked.
    /// Called from the worker thread itself (the callback dropped the last
    /// reference to the syncer's owner), it only asks the worker to stop.
    pub fn stop(&mut self) -> KResult<()> {
        let (worker, panicked) = {
            let mut st = self.shared.state.enter();
            st.stop = true;
            (st.worker, st.panicked)
        };
        self.shared.cv.broadcast();
        let Some(t) = self.thread.take() else { return Ok(()) };
        if worker == curthread_id() {
            return Ok(());
        }
        t.join()?;
        if panicked || self.shared.state.enter().panicked {
            return Err(Errno::EIO);
        }
        Ok(())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::error!("syncer thread ended abnormally: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    #[test]
    fn kthread_runs_and_joins() {
        let v = Arc::new(AtomicU64::new(0));
        let v2 = v.clone();
        let t = kthread_create("ktest", move || {
            v2.store(42, Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!(t.name(), "ktest");
        t.join().unwrap();
        assert_eq!(v.load(Ordering::SeqCst), 42);
    }

    #[test]
    fn kthread_panic_is_eio() {
        let t = kthread_create("kpanic", || panic!("expected test panic")).unwrap();
        assert_eq!(t.join(), Err(Errno::EIO));
    }

    #[test]
    fn syncer_runs_periodically() {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let s = Syncer::start("syncer-test", Some(Duration::from_millis(10)), move || {
            n2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let t0 = Instant::now();
        while n.load(Ordering::SeqCst) < 5 {
            assert!(t0.elapsed() < Duration::from_secs(5), "periodic callback did not run");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Not a busy loop: over 100 ms at 10 ms interval there are far fewer
        // than 100 passes.
        let before = s.passes();
        std::thread::sleep(Duration::from_millis(100));
        let during = s.passes() - before;
        assert!((1..=20).contains(&during), "passes in 100ms: {during}");
        drop(s);
    }

    #[test]
    fn syncer_kick_without_interval() {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let mut s = Syncer::start("syncer-kick", None, move || {
            n2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        assert_eq!(s.interval(), None);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(n.load(Ordering::SeqCst), 0, "no periodic pass when disabled");
        assert!(s.kick_wait());
        assert_eq!(n.load(Ordering::SeqCst), 1);
        s.kick();
        let t0 = Instant::now();
        while n.load(Ordering::SeqCst) < 2 {
            assert!(t0.elapsed() < Duration::from_secs(5), "kick did not run a pass");
            std::thread::sleep(Duration::from_millis(1));
        }
        s.stop().unwrap();
        let after = n.load(Ordering::SeqCst);
        s.kick();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(n.load(Ordering::SeqCst), after, "no pass after stop");
        assert!(!s.kick_wait());
        s.stop().unwrap(); // idempotent
    }

    #[test]
    fn syncer_zero_interval_is_disabled_and_stop_is_prompt() {
        let n = Arc::new(AtomicU64::new(0));
        let n2 = n.clone();
        let s = Syncer::start("syncer-zero", Some(Duration::ZERO), move || {
            n2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(n.load(Ordering::SeqCst), 0);
        let t0 = Instant::now();
        drop(s);
        assert!(t0.elapsed() < Duration::from_secs(1));
        // A long interval must not delay stop either.
        let s = Syncer::start("syncer-long", Some(Duration::from_secs(3600)), || {}).unwrap();
        let t0 = Instant::now();
        drop(s);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn syncer_callback_panic_stops_it() {
        let mut s = Syncer::start("syncer-panic", None, || panic!("expected test panic")).unwrap();
        assert!(!s.kick_wait(), "the pass did not complete normally");
        assert_eq!(s.stop(), Err(Errno::EIO));
    }

    #[test]
    fn syncer_stop_from_callback_does_not_deadlock() {
        // The callback owns the last handle and drops it: stop() runs on the
        // worker itself and must not join itself.
        let slot: Arc<KMutex<Option<Syncer>>> = Arc::new(KMutex::new(None));
        let slot2 = slot.clone();
        let done = Arc::new(AtomicU64::new(0));
        let done2 = done.clone();
        let s = Syncer::start("syncer-self", Some(Duration::from_millis(5)), move || {
            let taken = slot2.enter().take();
            drop(taken);
            done2.store(1, Ordering::SeqCst);
        })
        .unwrap();
        *slot.enter() = Some(s);
        let t0 = Instant::now();
        while done.load(Ordering::SeqCst) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(slot.enter().is_none());
    }
}
