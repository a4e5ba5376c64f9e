//! Read-ahead for commands that walk a whole tree.
//!
//! The walks of the commands are sequential: on a cold cache each
//! directory (and each host file copied in) costs a synchronous read when
//! the command gets to it, one after the other. The helpers here walk the
//! same tree ahead of the command in another thread, in the order the
//! command will want it (names sorted, depth first), so that the data is
//! cached when the command gets there and reads overlap the command's own
//! work:
//!
//! - [`Prefetcher`] reads the directories of a tree in the image through
//!   the same [`Ukfs`] (`fsu_ls -R`);
//! - [`HostPrefetcher`] stats the entries of a host tree and asks the host
//!   to read its regular files ahead (`posix_fadvise(WILLNEED)`), staying
//!   a bounded amount ahead of the copy (`fsu_ecp -i -R`).
//!
//! They only read: nothing the command prints or copies comes from them,
//! and their errors are ignored (the command meets them itself). Symbolic
//! links are not followed, so they end on any tree.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rumpkern::types::VType;
use ukfs::{Dir, Ukfs};

/// Reader threads. One: more of them only contend with the command for
/// the vnode and buffer caches (fsu_ls -lR of 35,000 files, warm cache:
/// 104 ms with one, 148 ms with three; cold, one already overlaps the
/// reads with the listing).
const THREADS: usize = 1;

struct Queue<'a> {
    /// Directories still to read, the next one the command will want first.
    todo: VecDeque<Dir<'a>>,
    /// Threads reading a directory now (they may add more work).
    busy: usize,
}

/// Directory read-ahead in the image (see the module doc).
pub struct Prefetcher<'a> {
    q: Mutex<Queue<'a>>,
    cv: Condvar,
    stop: AtomicBool,
}

impl<'a> Prefetcher<'a> {
    /// A prefetcher that will walk the trees under `roots` (paths in `fs`;
    /// ones that are not directories are skipped).
    pub fn new(fs: &'a Ukfs, roots: &[Vec<u8>]) -> Prefetcher<'a> {
        let todo = roots.iter().filter_map(|p| fs.open_dir(p).ok()).collect();
        Prefetcher {
            q: Mutex::new(Queue { todo, busy: 0 }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// Run the reader threads in `scope` until the walk is done or
    /// [`Prefetcher::stop`] is called.
    pub fn spawn<'s>(&'s self, scope: &'s std::thread::Scope<'s, '_>) {
        for _ in 0..THREADS {
            scope.spawn(move || self.worker());
        }
    }

    /// Tell the threads to finish (they end after the directory they are
    /// reading); the scope then joins them.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.lock().todo.clear();
        self.cv.notify_all();
    }

    /// The queue (a poisoned lock is still usable: the queue holds no
    /// invariant a panicking reader could break half-way).
    fn lock(&self) -> MutexGuard<'_, Queue<'a>> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn worker(&self) {
        loop {
            let d = {
                let mut q = self.lock();
                loop {
                    if self.stop.load(Ordering::Acquire) {
                        return;
                    }
                    if let Some(d) = q.todo.pop_front() {
                        q.busy += 1;
                        break d;
                    }
                    if q.busy == 0 {
                        self.cv.notify_all();
                        return;
                    }
                    q = self.cv.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let subdirs = self.read(&d);
            drop(d);
            let mut q = self.lock();
            q.busy -= 1;
            // Depth first: this directory's subdirectories come before
            // whatever was queued after it.
            for s in subdirs.into_iter().rev() {
                q.todo.push_front(s);
            }
            self.cv.notify_all();
        }
    }

    /// Read directory `d` (and the attributes of its subdirectories, which
    /// a long listing wants next); returns its subdirectories in name order.
    fn read(&self, d: &Dir<'a>) -> Vec<Dir<'a>> {
        let Ok(ents) = d.readdir() else {
            return Vec::new();
        };
        let mut names: Vec<Vec<u8>> = ents
            .into_iter()
            .filter(|e| e.vtype == VType::Dir && e.name != b"." && e.name != b"..")
            .map(|e| e.name)
            .collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            // readdir said directory, so no symlink is followed here; its
            // attributes are what a long listing of `d` asks for next.
            if let Ok(sub) = d.open_dir(&n) {
                let _ = sub.metadata();
                out.push(sub);
            }
        }
        out
    }
}

/// How far [`HostPrefetcher`] may run ahead of the copy.
const HOST_LEAD_BYTES: u64 = 64 << 20;
const HOST_LEAD_FILES: u64 = 4096;

/// Host read-ahead for a copy into the image (see the module doc). The
/// copy reports what it has read with [`HostPrefetcher::consumed`].
#[derive(Default)]
pub struct HostPrefetcher {
    issued_bytes: AtomicU64,
    issued_files: AtomicU64,
    done_bytes: AtomicU64,
    done_files: AtomicU64,
    stop: AtomicBool,
}

impl HostPrefetcher {
    /// A prefetcher with nothing issued yet.
    pub fn new() -> HostPrefetcher {
        HostPrefetcher::default()
    }

    /// The copy has read one more regular file, of `bytes` bytes.
    pub fn consumed(&self, bytes: u64) {
        self.done_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.done_files.fetch_add(1, Ordering::AcqRel);
    }

    /// Stop the walk (at the next entry).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Walk the host trees `roots` in order (run this in its own thread).
    pub fn run(&self, roots: &[&[u8]]) {
        for r in roots {
            if self.stopped() {
                return;
            }
            self.walk(r);
        }
    }

    fn walk(&self, p: &[u8]) {
        let Ok(m) = std::fs::symlink_metadata(OsStr::from_bytes(p)) else {
            return;
        };
        let ft = m.file_type();
        if ft.is_file() {
            self.file(p, m.len());
        } else if ft.is_dir() {
            let Ok(rd) = std::fs::read_dir(OsStr::from_bytes(p)) else {
                return;
            };
            let mut names: Vec<Vec<u8>> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().as_bytes().to_vec())
                .collect();
            names.sort();
            for n in names {
                if self.stopped() {
                    return;
                }
                self.walk(&super::join(p, &n));
            }
        }
        // Anything else has nothing to read ahead (and a fifo must not be
        // opened).
    }

    /// Ask the host to read regular file `p` (`len` bytes) ahead, once the
    /// copy is close enough.
    fn file(&self, p: &[u8], len: u64) {
        loop {
            if self.stopped() {
                return;
            }
            let bytes = self.issued_bytes.load(Ordering::Acquire);
            let files = self.issued_files.load(Ordering::Acquire);
            let ahead_b = bytes.saturating_sub(self.done_bytes.load(Ordering::Acquire));
            let ahead_f = files.saturating_sub(self.done_files.load(Ordering::Acquire));
            if ahead_b < HOST_LEAD_BYTES && ahead_f < HOST_LEAD_FILES {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.issued_bytes.fetch_add(len, Ordering::AcqRel);
        self.issued_files.fetch_add(1, Ordering::AcqRel);
        if len == 0 {
            return;
        }
        if let Ok(f) = std::fs::File::open(OsStr::from_bytes(p)) {
            // SAFETY: advice on a descriptor we own; no memory is passed.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
            }
        }
    }
}
