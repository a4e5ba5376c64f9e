//! The vnode cache and reference counting: one vnode per (mount, inode)
//! under concurrent loads, inactive on last vrele, reclaim of recycled and
//! of LRU-evicted vnodes, the busy state during inactive, unmount.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use parking_lot::Mutex;
use rumpkern::*;

#[derive(Default)]
struct Counters {
    loads: AtomicUsize,
    inactive: AtomicUsize,
    reclaim: AtomicUsize,
    /// Inodes whose inactive asks for recycling (link count 0).
    dead: Mutex<Vec<u64>>,
    /// Sleep in inactive (to widen the busy window).
    slow_inactive_ms: AtomicUsize,
}

struct Node {
    c: Arc<Counters>,
}

impl VnodeOps for Node {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn getattr(&self, vp: &Vnode) -> KResult<Vattr> {
        Ok(Vattr {
            vtype: vp.vtype(),
            mode: 0o755,
            nlink: 1,
            uid: 0,
            gid: 0,
            fsid: 0,
            ino: vp.ino(),
            size: 0,
            blksize: 512,
            bytes: 0,
            atime: Timespec::ZERO,
            mtime: Timespec::ZERO,
            ctime: Timespec::ZERO,
            birthtime: Timespec::ZERO,
            gen: 0,
            rdev: 0,
            flags: 0,
        })
    }
    fn inactive(&self, vp: &Vnode) -> KResult<bool> {
        let ms = self.c.slow_inactive_ms.load(Ordering::Relaxed);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms as u64));
        }
        self.c.inactive.fetch_add(1, Ordering::SeqCst);
        Ok(self.c.dead.lock().contains(&vp.ino()))
    }
    fn reclaim(&self, _vp: &Vnode) -> KResult<()> {
        self.c.reclaim.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Ops;
impl VfsOps for Ops {
    fn root(&self, _mp: &Arc<Mount>) -> KResult<VnodeRef> {
        Err(Errno::EOPNOTSUPP)
    }
    fn statvfs(&self, _mp: &Mount) -> KResult<StatVfs> {
        Ok(StatVfs::default())
    }
}

fn setup(max_free: usize) -> (Arc<Mount>, Arc<Counters>) {
    let mp = Mount::with_cache("test", false, max_free);
    mp.set_ops(Box::new(Ops));
    (mp, Arc::new(Counters::default()))
}

fn get(mp: &Arc<Mount>, c: &Arc<Counters>, ino: u64) -> VnodeRef {
    mp.vcache_get(ino, || {
        c.loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        Ok((VType::Reg, Box::new(Node { c: c.clone() })))
    })
    .expect("vcache_get")
}

#[test]
fn one_vnode_per_inode_under_concurrent_loads() {
    let (mp, c) = setup(100);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (mp, c, b) = (mp.clone(), c.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                let v = get(&mp, &c, 42);
                (Arc::as_ptr(&mp) as usize, &*v as *const Vnode as usize, v)
            })
        })
        .collect();
    let refs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(c.loads.load(Ordering::SeqCst), 1, "loaded more than once");
    assert!(refs.windows(2).all(|w| w[0].1 == w[1].1), "two vnodes for one inode");
    assert_eq!(refs[0].2.usecount(), 8);
    drop(refs);
    assert_eq!(c.inactive.load(Ordering::SeqCst), 1);
    assert_eq!(mp.vnode_counts(), (1, 0));
}

#[test]
fn vref_vrele_inactive_and_cached_reuse() {
    let (mp, c) = setup(100);
    let a = get(&mp, &c, 7);
    let b = a.clone();
    assert_eq!(a.usecount(), 2);
    drop(b);
    assert_eq!(c.inactive.load(Ordering::SeqCst), 0, "inactive before the last vrele");
    drop(a);
    assert_eq!(c.inactive.load(Ordering::SeqCst), 1);
    assert_eq!(c.reclaim.load(Ordering::SeqCst), 0, "a live file was reclaimed at once");
    // Cached without references: a new get does not load again.
    let a = get(&mp, &c, 7);
    assert_eq!(c.loads.load(Ordering::SeqCst), 1);
    assert!(!a.is_reclaimed());
}

#[test]
fn recycled_vnode_is_reclaimed_at_last_vrele() {
    let (mp, c) = setup(100);
    let a = get(&mp, &c, 9);
    c.dead.lock().push(9);
    drop(a);
    assert_eq!(c.reclaim.load(Ordering::SeqCst), 1);
    assert!(!mp.vcache_contains(9));
    let _again = get(&mp, &c, 9);
    assert_eq!(c.loads.load(Ordering::SeqCst), 2, "a reclaimed vnode was reused");
}

#[test]
fn lru_limit_reclaims_oldest_unreferenced() {
    let (mp, c) = setup(4);
    for ino in 1..=10 {
        drop(get(&mp, &c, ino));
    }
    assert_eq!(mp.vnode_counts().0, 4);
    assert_eq!(c.reclaim.load(Ordering::SeqCst), 6);
    // The newest four survive.
    for ino in 7..=10 {
        assert!(mp.vcache_contains(ino), "inode {ino} evicted out of LRU order");
    }
    // A referenced vnode is never evicted.
    let keep = get(&mp, &c, 1);
    for ino in 20..30 {
        drop(get(&mp, &c, ino));
    }
    assert!(mp.vcache_contains(1));
    assert!(!keep.is_reclaimed());
}

#[test]
fn get_waits_while_inactive_runs() {
    let (mp, c) = setup(100);
    c.slow_inactive_ms.store(100, Ordering::SeqCst);
    c.dead.lock().push(5);
    let a = get(&mp, &c, 5);
    let t = {
        let (mp, c) = (mp.clone(), c.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            get(&mp, &c, 5)
        })
    };
    drop(a); // inactive sleeps 100 ms, then the vnode is reclaimed
    let b = t.join().unwrap();
    // The second get must not have revived the dying vnode.
    assert!(!b.is_reclaimed());
    assert_eq!(c.loads.load(Ordering::SeqCst), 2);
}

#[test]
fn unmount_busy_then_clean() {
    let (mp, c) = setup(100);
    let a = get(&mp, &c, 3);
    drop(get(&mp, &c, 4));
    assert_eq!(mp.unmount(false), Err(Errno::EBUSY));
    drop(a);
    assert_eq!(mp.unmount(false), Ok(()));
    assert_eq!(mp.vnode_counts(), (0, 0));
    assert_eq!(c.reclaim.load(Ordering::SeqCst), 2);
}
