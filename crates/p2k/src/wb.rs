//! Write-behind: a WRITE on a write-only handle is answered before the
//! driver does it, and the worker thread that answered then does it.
//!
//! The writer (`cp`, say) goes on with its next request while the server
//! copies the data into the driver's cache; without this it waits for that
//! work on every write, one synchronous round trip per file. It is what the
//! kernel's own page cache does for a local file system, with the same
//! rules for what a write() may still report:
//!
//! * **Space (ENOSPC) and size (EFBIG) are still reported by write().** A
//!   write is answered early only when the file system says
//!   ([`rumpkern::VfsOps::write_room`]) that, short of a device error,
//!   nothing else can fail it, when it ends within the format's size limit,
//!   and when the space the file system has left for unprivileged writers
//!   covers, besides the most this write can allocate
//!   ([`rumpkern::WriteRoom::worst_case`]), everything reserved by writes
//!   answered early and not done yet, plus a margin for what requests
//!   already under way on the other worker threads can allocate (one
//!   `max_write` write each). Near a full file system every write is done
//!   first, so ENOSPC comes exactly where it would come without this.
//!   Operations that allocate synchronously (writes done first, creates,
//!   mkdir, symlink, link, rename, setattr) wait, while writes are
//!   outstanding, until the space left does not eat into their reserve.
//! * **Order.** Every request that names a node with a write outstanding
//!   waits until it is done (see [`crate::fs::P2k::guarded`]); so do
//!   attributes handed out for it by lookups and readdirplus, a second
//!   write to it, statfs (all writes) and the end of the session.
//! * **Device errors** (EIO while reading metadata to allocate; the data
//!   itself reaches the device later anyway, as with every delayed write)
//!   are logged and returned by the next write or fsync of the file, as the
//!   kernel returns write-back errors; close does not report them (FUSE
//!   closes are not waited for).
//!
//! Off for read-only and failed mounts, for handles opened with `O_SYNC`,
//! `O_DSYNC` or `O_APPEND` and for readable handles (whose writes go
//! through the kernel's page cache), and with `P2kOptions::write_behind`
//! false (`-o nowritebehind`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};
use rumpkern::{Errno, Mount, WriteRoom};

/// Every allocating request's bound apart from writes: a new directory
/// block and its pointer chain.
const META_UNITS: u64 = 4;

#[derive(Default)]
struct State {
    /// Node id → writes answered and not done yet.
    nodes: HashMap<u64, u32>,
    /// Bytes reserved by those writes (their worst cases).
    reserved: u64,
    /// Node id → the first error of a write answered early, not yet
    /// returned.
    errors: HashMap<u64, Errno>,
}

/// One write answered early: undone by [`WriteBehind::end`].
#[derive(Debug)]
#[must_use]
pub(crate) struct Ticket {
    id: u64,
    need: u64,
}

/// Write-behind state of one served mount.
pub(crate) struct WriteBehind {
    enabled: bool,
    /// Worker threads: how many requests can be under way at once.
    threads: u64,
    /// The largest write the kernel sends.
    max_write: u64,
    /// Writes answered and not done (the fast path's check).
    busy: AtomicUsize,
    state: Mutex<State>,
    cv: Condvar,
    early: AtomicU64,
    first: AtomicU64,
}

impl WriteBehind {
    pub(crate) fn new(enabled: bool, threads: usize, max_write: u32) -> WriteBehind {
        WriteBehind {
            enabled,
            threads: threads.max(1) as u64,
            max_write: u64::from(max_write),
            busy: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            early: AtomicU64::new(0),
            first: AtomicU64::new(0),
        }
    }

    /// What requests under way on the worker threads can allocate besides
    /// the reserved writes.
    fn margin(&self, room: &WriteRoom) -> u64 {
        let per_request = room.worst_case(0, self.max_write) + META_UNITS * u64::from(room.unit);
        self.threads.saturating_mul(per_request)
    }

    fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Wait until no write answered early is outstanding on node `id`.
    pub(crate) fn wait_node(&self, id: u64) {
        if self.idle() {
            return;
        }
        let mut st = self.state.lock();
        while st.nodes.contains_key(&id) {
            self.cv.wait(&mut st);
        }
    }

    /// [`WriteBehind::wait_node`] for each of `ids`.
    pub(crate) fn wait_nodes(&self, ids: &[u64]) {
        if self.idle() {
            return;
        }
        for &id in ids {
            self.wait_node(id);
        }
    }

    /// Wait until every write answered early is done.
    pub(crate) fn wait_all(&self) {
        if self.idle() {
            return;
        }
        let mut st = self.state.lock();
        while !st.nodes.is_empty() {
            self.cv.wait(&mut st);
        }
    }

    /// May a write of `len` bytes at `off` to node `id` through a handle
    /// opened with `flags` be answered now? If so it is counted as
    /// outstanding (reserving its worst case) until [`WriteBehind::end`].
    /// Waits first for the node's earlier writes (they must land first).
    pub(crate) fn begin(
        &self,
        mount: &Mount,
        id: u64,
        off: u64,
        len: usize,
        flags: i32,
    ) -> Option<Ticket> {
        use rumpkern::oflags;
        if !self.enabled
            || len == 0
            || flags & oflags::O_ACCMODE != oflags::O_WRONLY
            || flags & (oflags::O_APPEND | oflags::O_SYNC | libc::O_DSYNC) != 0
        {
            return None;
        }
        let end = off.checked_add(len as u64)?;
        let mut st = self.state.lock();
        while st.nodes.contains_key(&id) {
            self.cv.wait(&mut st);
        }
        let room = mount.write_room()?;
        if end > room.max_file_size {
            return None;
        }
        let need = room.worst_case(off, len as u64);
        let wanted = st
            .reserved
            .saturating_add(self.margin(&room))
            .saturating_add(need);
        if room.avail_bytes < wanted {
            return None;
        }
        st.reserved += need;
        *st.nodes.entry(id).or_insert(0) += 1;
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.early.fetch_add(1, Ordering::Relaxed);
        Some(Ticket { id, need })
    }

    /// The write of `t` is done: `res` is what the driver said of `len`
    /// bytes at `off`. A failure or a short write is kept for the node's
    /// next write or fsync.
    pub(crate) fn end(&self, t: Ticket, res: Result<usize, Errno>, off: u64, len: usize) {
        let err = match res {
            Ok(n) if n == len => None,
            Ok(_) => Some(Errno::ENOSPC),
            Err(e) => Some(e),
        };
        let mut st = self.state.lock();
        if let Some(e) = err {
            log::error!(
                "write of {len} bytes at {off} to node {} failed after it was answered: {}; the next write or fsync of the file returns it",
                t.id,
                e.name()
            );
            st.errors.entry(t.id).or_insert(e);
        }
        st.reserved = st.reserved.saturating_sub(t.need);
        let gone = match st.nodes.get_mut(&t.id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        };
        if gone {
            st.nodes.remove(&t.id);
        }
        self.busy.fetch_sub(1, Ordering::AcqRel);
        MutexGuard::unlock_fair(st);
        self.cv.notify_all();
    }

    /// A write done first: counted for the statistics.
    pub(crate) fn note_synchronous(&self) {
        self.first.fetch_add(1, Ordering::Relaxed);
    }

    /// Before a request that may allocate synchronously: a write of `len`
    /// bytes at `off` (`Some((off, len))`), or a directory operation's few
    /// blocks (`None`). While writes are outstanding, wait until the space
    /// left covers its worst case without eating into their reserve.
    pub(crate) fn admit(&self, mount: &Mount, write: Option<(u64, u64)>) {
        if self.idle() {
            return;
        }
        let mut st = self.state.lock();
        loop {
            if st.reserved == 0 {
                return;
            }
            let Some(room) = mount.write_room() else {
                return;
            };
            let need = match write {
                Some((off, len)) => room.worst_case(off, len),
                None => META_UNITS * u64::from(room.unit),
            };
            let wanted = st
                .reserved
                .saturating_add(self.margin(&room))
                .saturating_add(need);
            if room.avail_bytes >= wanted {
                return;
            }
            self.cv.wait(&mut st);
        }
    }

    /// The error a write answered early met on node `id`, once.
    pub(crate) fn take_error(&self, id: u64) -> Option<Errno> {
        let mut st = self.state.lock();
        if st.errors.is_empty() {
            return None;
        }
        st.errors.remove(&id)
    }

    /// (writes answered early, writes done first).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.early.load(Ordering::Relaxed),
            self.first.load(Ordering::Relaxed),
        )
    }
}
