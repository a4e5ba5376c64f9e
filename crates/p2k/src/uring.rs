//! FUSE over io_uring (Linux 6.14+, `CONFIG_FUSE_IO_URING`, module
//! parameter `fuse.enable_uring=1`).
//!
//! After INIT negotiated `FUSE_OVER_IO_URING`, the kernel hands every
//! request (all but FORGET, BATCH_FORGET and INTERRUPT, which stay on
//! /dev/fuse) to a per-CPU queue of ring entries the server registered,
//! and completes it on the requester's CPU: no cross-CPU wakeup per
//! request.
//!
//! One thread per possible CPU owns one io_uring (128-byte SQEs) and
//! `depth` entries of its queue. An entry is a 288-byte
//! `fuse_uring_req_header` (`in_out`, `op_in`, `fuse_uring_ent_in_out`)
//! and a payload buffer; both are handed to the kernel once by REGISTER
//! (`IORING_OP_URING_CMD` on /dev/fuse). The entry's command completes
//! when a request has been copied into it; the reply goes back into the
//! same buffers, and COMMIT_AND_FETCH sends it and waits for the next
//! request in one command.
//!
//! With more than one CPU each queue has a second thread, pinned to the
//! next CPU, with its own ring: large READs (`BULK_READ`) are handed to it
//! with `IORING_OP_MSG_RING` and it commits them, so that the kernel's copy
//! of the reply into the page cache overlaps with the reader instead of
//! taking turns with it on the reader's CPU. The kernel accepts a commit
//! for a queue's entry from any ring; the entry's next request then arrives
//! on that ring, and is handed back unless it is another large read.
//!
//! Until every queue has an entry the kernel blocks requests, and it
//! refuses REGISTER with EAGAIN until it has processed the INIT reply:
//! the threads retry for 5 s. REGISTER has no completion on success, so a
//! queue counts as registered when a request arrived on each entry or no
//! refusal came within 100 ms. At unmount every pending command completes
//! with ENOTCONN and the threads end.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as a ring entry delivers it.
pub(crate) struct RingRequest<'a> {
    pub opcode: u32,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// The opcode's own in-struct (`fuse_*_in`) at the start of the
    /// 128-byte area (meaningless for opcodes without one).
    pub op_in: &'a [u8],
    /// The other in-arguments, concatenated (names with their NULs, write
    /// data): `payload_sz` bytes.
    pub payload: &'a [u8],
}

/// What serving a request produced.
pub(crate) struct Served {
    /// `Ok(n)`: reply with the first `n` bytes of `out` as the
    /// out-arguments; `Err(e)`: reply with error `e` (a positive errno).
    pub result: Result<usize, i32>,
    /// Work to run after the reply is committed (write-behind).
    pub then: Option<Box<dyn FnOnce() + Send>>,
}

/// Serves requests; called on the queue's thread.
pub(crate) trait RingHandler: Send + Sync + 'static {
    fn handle(&self, req: &RingRequest<'_>, out: &mut [u8]) -> Served;
}

/// The ring threads of one connection.
pub(crate) struct Rings {
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Rings {
    /// Start one thread per possible CPU queue. Returns at once.
    pub(crate) fn start(
        fd: BorrowedFd<'_>,
        payload_size: usize,
        depth: usize,
        handler: Arc<dyn RingHandler>,
    ) -> io::Result<Rings> {
        if payload_size < MIN_PAYLOAD || payload_size > u32::MAX as usize || depth == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "io_uring: payload size below 8192 or zero depth",
            ));
        }
        let nqueues = possible_cpus();
        if nqueues > usize::from(u16::MAX) || depth > MAX_DEPTH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "io_uring: too many queues or entries",
            ));
        }
        let shared = Arc::new(Shared {
            handler,
            payload_size,
            depth,
            nqueues,
            served: AtomicU64::new(0),
            far: AtomicU64::new(0),
            registered: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::with_capacity(2 * nqueues);
        for qid in 0..nqueues {
            let spawned = Self::start_queue(&shared, fd, qid, &mut threads);
            if let Err(e) = spawned {
                // The INIT reply has not gone out yet, so no REGISTER
                // was accepted: the threads see `stop` and end.
                shared.stop.store(true, Ordering::SeqCst);
                for h in threads {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
        Ok(Rings { threads, shared })
    }

    /// Start queue `qid`'s thread and, with more than one CPU, the thread
    /// on another CPU that serves its large reads.
    fn start_queue(
        shared: &Arc<Shared>,
        fd: BorrowedFd<'_>,
        qid: usize,
        threads: &mut Vec<JoinHandle<()>>,
    ) -> io::Result<()> {
        let ents = Arc::new(Entries::new(shared.depth, shared.payload_size)?);
        let ring = Ring::new(ring_size(shared.depth))?;
        let far = if shared.nqueues > 1 {
            Some(Ring::new(ring_size(shared.depth))?)
        } else {
            None
        };
        let near_fd = ring.fd.clone();
        let far_fd = far.as_ref().map(|r| r.fd.clone());
        let dev = fd.try_clone_to_owned()?;
        let sh = Arc::clone(shared);
        let e = Arc::clone(&ents);
        threads.push(
            std::thread::Builder::new()
                .name(format!("p2k-uring-{qid}"))
                .spawn(move || {
                    pin(qid);
                    let q = Queue::new(&sh, Role::Near, ring, dev, e, qid, far_fd);
                    if let Err(err) = q.run() {
                        log::warn!("FUSE over io_uring: queue {qid}: {err}");
                    }
                })?,
        );
        if let Some(far) = far {
            let dev = fd.try_clone_to_owned()?;
            let sh = Arc::clone(shared);
            let cpu = (qid + 1) % shared.nqueues;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("p2k-uring-{qid}r"))
                    .spawn(move || {
                        pin(cpu);
                        let q = Queue::new(&sh, Role::Far, far, dev, ents, qid, Some(near_fd));
                        if let Err(err) = q.run() {
                            log::warn!("FUSE over io_uring: queue {qid} (reads): {err}");
                        }
                    })?,
            );
        }
        Ok(())
    }

    /// Requests served through the rings so far.
    pub(crate) fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Large reads served on another CPU than their queue's so far.
    pub(crate) fn served_far(&self) -> u64 {
        self.shared.far.load(Ordering::Relaxed)
    }

    /// Wait for the threads (they end with the connection).
    pub(crate) fn join(self) {
        for h in self.threads {
            if h.join().is_err() {
                log::error!("FUSE over io_uring: a queue thread panicked");
            }
        }
    }
}

/// What the queue threads share.
struct Shared {
    handler: Arc<dyn RingHandler>,
    payload_size: usize,
    depth: usize,
    nqueues: usize,
    served: AtomicU64,
    /// Requests (large reads) served by a queue's other thread.
    far: AtomicU64,
    /// Queues whose entries are all registered.
    registered: AtomicUsize,
    /// Set when `start` failed: threads still registering end.
    stop: AtomicBool,
}

// ---- FUSE ABI (include/uapi/linux/fuse.h) ----

const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;
/// `FUSE_MIN_READ_BUFFER`: the kernel's payload size is at least this.
const MIN_PAYLOAD: usize = 8192;
const OUT_HEADER_LEN: usize = 16;
/// `fuse_uring_req_header`: `in_out[128]`, `op_in[128]`, then
/// `fuse_uring_ent_in_out` {flags u64, commit_id u64, payload_sz u32,
/// padding u32, reserved u64}.
const HDR_LEN: usize = 288;
const HDR_OP_IN: usize = 128;
const HDR_ENT: usize = 256;
const HDR_COMMIT_ID: usize = HDR_ENT + 8;
const HDR_PAYLOAD_SZ: usize = HDR_ENT + 16;
/// Headers sit 64-byte aligned in one mapping per queue.
const HDR_STRIDE: usize = 320;
const MAX_DEPTH: usize = 4096;

// ---- io_uring ABI (include/uapi/linux/io_uring.h) ----

const IORING_SETUP_SQE128: u32 = 1 << 10;
const IORING_FEAT_EXT_ARG: u32 = 1 << 8;
const IORING_OP_MSG_RING: u8 = 40;
const IORING_OP_URING_CMD: u8 = 46;
/// `IORING_MSG_DATA`: MSG_RING posts a completion in the target ring.
const IORING_MSG_DATA: u64 = 0;
/// `IOSQE_CQE_SKIP_SUCCESS`: no completion on success.
const IOSQE_CQE_SKIP_SUCCESS: u8 = 1 << 6;
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_OFF_SQ_RING: libc::off_t = 0;
const IORING_OFF_CQ_RING: libc::off_t = 0x800_0000;
const IORING_OFF_SQES: libc::off_t = 0x1000_0000;
const SQE_SIZE: usize = 128;
const CQE_SIZE: usize = 16;

#[repr(C)]
#[derive(Default)]
#[allow(dead_code)] // ABI layout: not every field is read
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
#[allow(dead_code)] // ABI layout: not every field is read
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
#[allow(dead_code)] // ABI layout: not every field is read
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

/// `struct io_uring_getevents_arg`.
#[repr(C)]
#[allow(dead_code)] // ABI layout: not every field is read
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// `struct __kernel_timespec`.
#[repr(C)]
#[allow(dead_code)] // ABI layout: read by the kernel
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// A memory mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Map part of an io_uring (`MAP_SHARED`, populated).
    fn ring(fd: RawFd, len: usize, off: libc::off_t) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping at an address of the kernel's choosing;
        // the result is checked.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_err());
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// Zeroed anonymous memory, page aligned (pages come on first touch).
    fn anon(len: usize) -> io::Result<Mapping> {
        // SAFETY: as above, no file.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_err());
        }
        Ok(Mapping { ptr: p.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One io_uring with 128-byte SQEs, used by one thread.
struct Ring {
    sq_tail: *const AtomicU32,
    sq_mask: u32,
    sq_array: *mut u32,
    sqes: *mut u8,
    cq_head: *const AtomicU32,
    cq_tail: *const AtomicU32,
    cq_mask: u32,
    cqes: *const u8,
    /// Our copy of the SQ tail.
    tail: u32,
    /// SQEs queued but not yet submitted.
    to_submit: u32,
    // Unmapped after the pointers above are last used, closed last (the
    // other thread of the queue holds the descriptor to post to it).
    _maps: [Mapping; 3],
    fd: Arc<OwnedFd>,
}

// SAFETY: a ring is made on one thread and then used by exactly one other
// (it moves there once); its pointers refer to its own mappings.
unsafe impl Send for Ring {}

impl Ring {
    fn new(entries: u32) -> io::Result<Ring> {
        let mut p = Params {
            flags: IORING_SETUP_SQE128,
            ..Default::default()
        };
        // SAFETY: `p` is a valid io_uring_params for the call.
        let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, &mut p as *mut Params) };
        if r < 0 {
            return Err(last_err());
        }
        // SAFETY: io_uring_setup returned a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
        if p.features & IORING_FEAT_EXT_ARG == 0 {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let raw = fd.as_raw_fd();
        let sq = Mapping::ring(
            raw,
            p.sq_off.array as usize + p.sq_entries as usize * 4,
            IORING_OFF_SQ_RING,
        )?;
        let cq = Mapping::ring(
            raw,
            p.cq_off.cqes as usize + p.cq_entries as usize * CQE_SIZE,
            IORING_OFF_CQ_RING,
        )?;
        let sqes = Mapping::ring(raw, p.sq_entries as usize * SQE_SIZE, IORING_OFF_SQES)?;
        // SAFETY: the offsets come from the kernel and lie inside the
        // mappings just made; the ring words are 4-byte aligned.
        unsafe {
            let sq_tail = sq.ptr.add(p.sq_off.tail as usize) as *const AtomicU32;
            let tail = (*sq_tail).load(Ordering::Acquire);
            Ok(Ring {
                sq_tail,
                sq_mask: *(sq.ptr.add(p.sq_off.ring_mask as usize) as *const u32),
                sq_array: sq.ptr.add(p.sq_off.array as usize) as *mut u32,
                sqes: sqes.ptr,
                cq_head: cq.ptr.add(p.cq_off.head as usize) as *const AtomicU32,
                cq_tail: cq.ptr.add(p.cq_off.tail as usize) as *const AtomicU32,
                cq_mask: *(cq.ptr.add(p.cq_off.ring_mask as usize) as *const u32),
                cqes: cq.ptr.add(p.cq_off.cqes as usize),
                tail,
                to_submit: 0,
                _maps: [sq, cq, sqes],
                fd: Arc::new(fd),
            })
        }
    }

    /// Make room for one more SQE: submit when the ring is full (it is
    /// sized so that this does not happen in practice).
    fn room(&mut self) {
        if self.to_submit > self.sq_mask {
            if let Err(e) = self.enter(false, None) {
                log::error!("FUSE over io_uring: submit: {e}");
            }
        }
    }

    /// Queue a FUSE uring command: `iov` (two iovecs) must stay valid
    /// until the command is submitted.
    fn push_fuse_cmd(
        &mut self,
        dev: RawFd,
        cmd_op: u32,
        iov: *const libc::iovec,
        user_data: u64,
        commit_id: u64,
        qid: u16,
    ) {
        self.push(|s| {
            // SAFETY: `s` is a zeroed 128-byte SQE (see `push`).
            unsafe {
                *s = IORING_OP_URING_CMD;
                ptr::write_unaligned(s.add(4) as *mut i32, dev);
                ptr::write_unaligned(s.add(8) as *mut u32, cmd_op);
                ptr::write_unaligned(s.add(16) as *mut u64, iov as u64);
                ptr::write_unaligned(s.add(24) as *mut u32, 2);
                ptr::write_unaligned(s.add(32) as *mut u64, user_data);
                // struct fuse_uring_cmd_req {flags, commit_id, qid, padding}
                ptr::write_unaligned(s.add(48 + 8) as *mut u64, commit_id);
                ptr::write_unaligned(s.add(48 + 16) as *mut u16, qid);
            }
        });
    }

    /// Queue a message to another ring: a completion there with
    /// `user_data` (res 0), none here unless it fails (then one with
    /// `MSG_FAILED` plus `user_data` without `MSG`).
    fn push_msg(&mut self, target: RawFd, user_data: u64) {
        self.push(|s| {
            // SAFETY: `s` is a zeroed 128-byte SQE (see `push`).
            unsafe {
                *s = IORING_OP_MSG_RING;
                *s.add(1) = IOSQE_CQE_SKIP_SUCCESS;
                ptr::write_unaligned(s.add(4) as *mut i32, target);
                // off: the user_data posted; addr: the message kind; len: res.
                ptr::write_unaligned(s.add(8) as *mut u64, user_data);
                ptr::write_unaligned(s.add(16) as *mut u64, IORING_MSG_DATA);
                ptr::write_unaligned(s.add(32) as *mut u64, MSG_FAILED | (user_data & !MSG));
            }
        });
    }

    /// Queue one SQE: `fill` writes it into a zeroed slot.
    fn push(&mut self, fill: impl FnOnce(*mut u8)) {
        self.room();
        let idx = self.tail & self.sq_mask;
        // SAFETY: `idx` is inside the SQE array and the index array; the
        // slot is free: `room` submitted what a full ring held, and the
        // kernel consumes SQEs on submission.
        unsafe {
            let s = self.sqes.add(idx as usize * SQE_SIZE);
            ptr::write_bytes(s, 0, SQE_SIZE);
            fill(s);
            *self.sq_array.add(idx as usize) = idx;
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `sq_tail` points into the live SQ mapping.
        unsafe { (*self.sq_tail).store(self.tail, Ordering::Release) };
        self.to_submit += 1;
    }

    /// Submit what is queued and, with `wait`, wait for one completion
    /// (at most `timeout`). EINTR and an expired timeout return `Ok`.
    fn enter(&mut self, wait: bool, timeout: Option<Duration>) -> io::Result<()> {
        let ts = KernelTimespec {
            tv_sec: timeout.map_or(0, |t| t.as_secs() as i64),
            tv_nsec: timeout.map_or(0, |t| i64::from(t.subsec_nanos())),
        };
        let arg = GeteventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            min_wait_usec: 0,
            ts: &ts as *const KernelTimespec as u64,
        };
        let (min_complete, flags, argp, argsz) = match (wait, timeout) {
            (false, _) => (0u32, 0u32, ptr::null::<GeteventsArg>(), 0usize),
            (true, None) => (1, IORING_ENTER_GETEVENTS, ptr::null(), 0),
            (true, Some(_)) => (
                1,
                IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                &arg as *const GeteventsArg,
                std::mem::size_of::<GeteventsArg>(),
            ),
        };
        // SAFETY: our ring; `arg` and `ts` outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.fd.as_raw_fd(),
                self.to_submit,
                min_complete,
                flags,
                argp,
                argsz,
            )
        };
        if r >= 0 {
            self.to_submit -= (r as u32).min(self.to_submit);
            return Ok(());
        }
        let e = last_err();
        match e.raw_os_error() {
            Some(libc::EINTR) | Some(libc::ETIME) => Ok(()),
            _ => Err(e),
        }
    }

    fn cqe_ready(&self) -> bool {
        // SAFETY: the CQ words point into the live CQ mapping.
        unsafe {
            (*self.cq_head).load(Ordering::Relaxed) != (*self.cq_tail).load(Ordering::Acquire)
        }
    }

    /// Take one completion: (user_data, res).
    fn pop(&mut self) -> Option<(u64, i32)> {
        // SAFETY: as in `cqe_ready`; entries below the tail are written.
        unsafe {
            let head = (*self.cq_head).load(Ordering::Relaxed);
            if head == (*self.cq_tail).load(Ordering::Acquire) {
                return None;
            }
            let c = self.cqes.add((head & self.cq_mask) as usize * CQE_SIZE);
            let user_data = ptr::read_unaligned(c as *const u64);
            let res = ptr::read_unaligned(c.add(8) as *const i32);
            (*self.cq_head).store(head.wrapping_add(1), Ordering::Release);
            Some((user_data, res))
        }
    }
}

/// Number of possible CPUs (the kernel's queue count).
fn possible_cpus() -> usize {
    let parsed = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            let mut n = 0usize;
            for part in s.trim().split(',').filter(|p| !p.is_empty()) {
                let (a, b) = match part.split_once('-') {
                    Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
                    None => {
                        let a = part.parse::<usize>().ok()?;
                        (a, a)
                    }
                };
                n += b.checked_sub(a)? + 1;
            }
            Some(n)
        });
    match parsed {
        Some(n) if n > 0 => n,
        // SAFETY: sysconf has no memory effects.
        _ => (unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }).max(1) as usize,
    }
}

/// Pin the calling thread to `cpu` (fails when it is offline: ignored).
fn pin(cpu: usize) {
    if cpu >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; `cpu` is in range.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

const REGISTER_FOR: Duration = Duration::from_secs(5);
const REGISTER_RETRY: Duration = Duration::from_millis(5);
/// A REGISTER not refused within this long counts as accepted.
const REGISTER_QUIET: Duration = Duration::from_millis(100);

/// Where an entry is, as one of its queue's threads sees it.
#[derive(Clone, Copy, PartialEq)]
enum EntState {
    /// REGISTER to be (re)sent at this time.
    Retry(Instant),
    /// REGISTER sent at this time, no completion yet.
    Registering(Instant),
    /// A command of this thread's ring is with the kernel.
    Live,
    /// The queue's other thread has it.
    Away,
    /// Its command completed for good.
    Done,
}

/// Completions that are not an entry's: bit 63 marks a message from the
/// queue's other thread (bits 0-31: the entry it hands over).
const MSG: u64 = 1 << 63;
/// The other thread ended: end too.
const MSG_STOP: u64 = MSG | 1 << 62;
/// A message of ours could not be posted (the rest of the bits: which).
const MSG_FAILED: u64 = 1 << 61;

/// READs of at least this many bytes go to the queue's other thread.
///
/// The kernel copies a reply into the page cache while it commits it, on
/// the committing thread's CPU. A queue's thread shares its CPU with the
/// requester, so for a large sequential read (readahead) that copy, and
/// the read itself, would not overlap with the reader's own work. Served
/// and committed from a thread pinned to another CPU, they do: the entry
/// is handed over with a message (`IORING_OP_MSG_RING`), the other thread
/// commits it through its own ring, and the entry's next request arrives
/// there; unless that is another large read, it is handed back.
const BULK_READ: u32 = 64 << 10;

const FUSE_READ: u32 = 15;

/// SQEs per ring: commits and messages for every entry, twice over.
fn ring_size(depth: usize) -> u32 {
    (4 * depth + 8).next_power_of_two() as u32
}

/// The entries of one queue: their headers and payload buffers, shared by
/// the queue's two threads. An entry is used by one thread at a time: the
/// one whose ring completed its command or that was handed it.
struct Entries {
    headers: Mapping,
    payloads: Vec<Mapping>,
    iovs: Vec<[libc::iovec; 2]>,
    size: usize,
}

// SAFETY: plain memory; which thread touches an entry is decided by who
// holds it (see above), and the kernel's accesses are ordered by the
// commands' submission and completion.
unsafe impl Send for Entries {}
unsafe impl Sync for Entries {}

impl Entries {
    fn new(depth: usize, size: usize) -> io::Result<Entries> {
        let page = 4096;
        let headers = Mapping::anon((depth * HDR_STRIDE).div_ceil(page) * page)?;
        let mut payloads = Vec::with_capacity(depth);
        let mut iovs = Vec::with_capacity(depth);
        for i in 0..depth {
            let p = Mapping::anon(size.div_ceil(page) * page)?;
            iovs.push([
                libc::iovec {
                    // SAFETY: header `i` lies inside `headers`.
                    iov_base: unsafe { headers.ptr.add(i * HDR_STRIDE) }.cast(),
                    iov_len: HDR_LEN,
                },
                libc::iovec {
                    iov_base: p.ptr.cast(),
                    iov_len: size,
                },
            ]);
            payloads.push(p);
        }
        Ok(Entries {
            headers,
            payloads,
            iovs,
            size,
        })
    }

    /// Entry `i`'s header and payload.
    ///
    /// # Safety
    /// The caller holds entry `i` (see `Entries`), and uses the slices
    /// only while it does.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, i: usize) -> (&mut [u8], &mut [u8]) {
        (
            std::slice::from_raw_parts_mut(self.headers.ptr.add(i * HDR_STRIDE), HDR_LEN),
            std::slice::from_raw_parts_mut(self.payloads[i].ptr, self.size),
        )
    }
}

/// A queue's two threads.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// Registers the entries, pinned to the queue's CPU, serves all but
    /// large reads.
    Near,
    /// Pinned to another CPU: serves the large reads.
    Far,
}

/// One thread of a queue: its ring and its view of the entries.
struct Queue<'a> {
    sh: &'a Shared,
    role: Role,
    qid: u16,
    // The ring is closed before the buffers it may refer to are unmapped.
    ring: Ring,
    dev: OwnedFd,
    /// The other thread's ring, for messages (closed before the buffers
    /// go, should this thread hold the last reference to both).
    peer: Option<Arc<OwnedFd>>,
    ents: Arc<Entries>,
    state: Vec<EntState>,
    /// The request's payload, copied out of the entry (the reply goes into
    /// the entry's buffer).
    inbuf: Vec<u8>,
}

impl<'a> Queue<'a> {
    fn new(
        sh: &'a Shared,
        role: Role,
        ring: Ring,
        dev: OwnedFd,
        ents: Arc<Entries>,
        qid: usize,
        peer: Option<Arc<OwnedFd>>,
    ) -> Queue<'a> {
        let first = match role {
            Role::Near => EntState::Retry(Instant::now()),
            Role::Far => EntState::Away,
        };
        Queue {
            sh,
            role,
            qid: qid as u16,
            ring,
            dev,
            state: vec![first; ents.iovs.len()],
            ents,
            peer,
            inbuf: Vec::new(),
        }
    }

    fn run(mut self) -> io::Result<()> {
        let deadline = Instant::now() + REGISTER_FOR;
        let mut registered = self.role == Role::Far;
        let mut refusals = 0u32;
        let mut end: Option<io::Result<()>> = None;
        let mut told_to_stop = false;
        while end.is_none() {
            if !registered {
                if self.sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                registered = self.register_step();
                if registered {
                    log::debug!(
                        "FUSE over io_uring: queue {} registered ({refusals} EAGAIN refusals)",
                        self.qid
                    );
                    let n = self.sh.registered.fetch_add(1, Ordering::SeqCst) + 1;
                    if n == self.sh.nqueues {
                        log::info!(
                            "FUSE over io_uring: {n} queues x {} entries registered",
                            self.sh.depth
                        );
                    }
                }
            }
            let timeout = if registered {
                None
            } else {
                Some(REGISTER_RETRY)
            };
            if let Err(e) = self.ring.enter(true, timeout) {
                end = Some(Err(e));
                break;
            }
            while let Some((user_data, res)) = self.ring.pop() {
                if user_data == MSG_STOP {
                    told_to_stop = true;
                    end.get_or_insert(Ok(()));
                    continue;
                }
                if user_data & MSG_FAILED != 0 {
                    log::warn!(
                        "FUSE over io_uring: queue {}: message to the other thread not posted: {}",
                        self.qid,
                        io::Error::from_raw_os_error(-res)
                    );
                    // An entry not handed over after all: serve it here.
                    let i = (user_data & 0xffff_ffff) as usize;
                    if user_data & (MSG_STOP & !MSG) == 0
                        && i < self.state.len()
                        && self.state[i] == EntState::Away
                        && end.is_none()
                    {
                        if let Err(e) = self.serve(i) {
                            end = Some(Err(e));
                        }
                    }
                    continue;
                }
                if user_data & MSG != 0 {
                    // An entry handed over, its request not yet answered.
                    let i = (user_data & 0xffff_ffff) as usize;
                    if i < self.state.len() && self.state[i] == EntState::Away && end.is_none() {
                        if let Err(e) = self.serve(i) {
                            end = Some(Err(e));
                        }
                    }
                    continue;
                }
                let i = user_data as usize;
                if i >= self.state.len() {
                    continue;
                }
                if res == 0 {
                    let r = if self.hand_over(i) {
                        Ok(())
                    } else {
                        self.serve(i)
                    };
                    if let Err(e) = r {
                        end = Some(Err(e));
                    }
                    continue;
                }
                let errno = -res;
                if errno == libc::EAGAIN && matches!(self.state[i], EntState::Registering(_)) {
                    refusals += 1;
                    let now = Instant::now();
                    if now >= deadline {
                        self.state[i] = EntState::Done;
                        end = Some(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "REGISTER still refused (EAGAIN) after 5 s",
                        )));
                    } else {
                        self.state[i] = EntState::Retry(now + REGISTER_RETRY);
                    }
                    continue;
                }
                let was_registering = matches!(self.state[i], EntState::Registering(_));
                self.state[i] = EntState::Done;
                if end.is_some() {
                    continue;
                }
                end = Some(match errno {
                    // The connection is gone (a mount that ended before its
                    // queues registered is no failure either).
                    libc::ENOTCONN | libc::ENODEV | libc::ECONNABORTED => {
                        if was_registering && !registered {
                            log::debug!(
                                "FUSE over io_uring: queue {}: connection ended before REGISTER",
                                self.qid
                            );
                        }
                        Ok(())
                    }
                    libc::ECANCELED if registered || !was_registering => Ok(()),
                    _ => {
                        let e = io::Error::from_raw_os_error(errno);
                        if was_registering {
                            Err(io::Error::new(e.kind(), format!("REGISTER: {e}")))
                        } else {
                            log::error!(
                                "FUSE over io_uring: queue {}: command failed: {e}",
                                self.qid
                            );
                            Ok(())
                        }
                    }
                });
            }
        }
        // The other thread may hold no command that could end it.
        if !told_to_stop {
            if let Some(peer) = &self.peer {
                self.ring.push_msg(peer.as_raw_fd(), MSG_STOP);
                let _ = self.ring.enter(false, None);
            }
        }
        self.drain();
        end.unwrap_or(Ok(()))
    }

    /// Send due REGISTERs; true when every entry counts as registered.
    fn register_step(&mut self) -> bool {
        let now = Instant::now();
        let mut all = true;
        for i in 0..self.state.len() {
            match self.state[i] {
                EntState::Retry(at) if at <= now => {
                    let iov = self.ents.iovs[i].as_ptr();
                    self.ring.push_fuse_cmd(
                        self.dev.as_raw_fd(),
                        FUSE_IO_URING_CMD_REGISTER,
                        iov,
                        i as u64,
                        0,
                        self.qid,
                    );
                    self.state[i] = EntState::Registering(now);
                    all = false;
                }
                EntState::Registering(at) if now.duration_since(at) >= REGISTER_QUIET => {
                    self.state[i] = EntState::Live;
                }
                EntState::Live | EntState::Done | EntState::Away => {}
                _ => all = false,
            }
        }
        all
    }

    /// Hand entry `i`, whose request just arrived, to the other thread
    /// when it is that thread's kind of request. True when handed.
    fn hand_over(&mut self, i: usize) -> bool {
        let Some(peer) = &self.peer else {
            return false;
        };
        // SAFETY: the entry's command completed on our ring: we hold it.
        let (hdr, _) = unsafe { self.ents.get(i) };
        let bulk = le_u32(hdr, 4) == FUSE_READ && le_u32(hdr, HDR_OP_IN + 16) >= BULK_READ;
        if bulk == (self.role == Role::Far) {
            return false;
        }
        self.state[i] = EntState::Away;
        self.ring.push_msg(peer.as_raw_fd(), MSG | i as u64);
        true
    }

    /// Serve the request in entry `i` and commit the reply.
    fn serve(&mut self, i: usize) -> io::Result<()> {
        let size = self.ents.size;
        // SAFETY: the kernel completed the entry's command on our ring, or
        // the other thread handed the entry over: it is ours until the
        // next command on it. Header and payload do not overlap.
        let (hdr, out) = unsafe { self.ents.get(i) };
        let commit_id = le_u64(hdr, HDR_COMMIT_ID);
        let payload_sz = (le_u32(hdr, HDR_PAYLOAD_SZ) as usize).min(size);
        self.inbuf.clear();
        self.inbuf.extend_from_slice(&out[..payload_sz]);
        let (in_out, rest) = hdr.split_at_mut(HDR_OP_IN);
        let unique = le_u64(in_out, 8);
        let req = RingRequest {
            opcode: le_u32(in_out, 4),
            nodeid: le_u64(in_out, 16),
            uid: le_u32(in_out, 24),
            gid: le_u32(in_out, 28),
            pid: le_u32(in_out, 32),
            op_in: &rest[..HDR_ENT - HDR_OP_IN],
            payload: &self.inbuf,
        };
        let handler = &self.sh.handler;
        let served = catch_unwind(AssertUnwindSafe(|| handler.handle(&req, out)));
        let (error, len, then) = match served {
            Ok(Served {
                result: Ok(n),
                then,
            }) if n <= size => (0, n, then),
            Ok(Served {
                result: Ok(n),
                then,
            }) => {
                log::error!(
                    "FUSE over io_uring: reply of {n} bytes exceeds the {size}-byte buffer"
                );
                (-libc::EIO, 0, then)
            }
            Ok(Served {
                result: Err(e),
                then,
            }) if e > 0 && e < 512 => (-e, 0, then),
            Ok(Served {
                result: Err(_),
                then,
            }) => (-libc::EIO, 0, then),
            Err(_) => {
                log::error!(
                    "FUSE over io_uring: handler panicked (opcode {})",
                    req.opcode
                );
                (-libc::EIO, 0, None)
            }
        };
        // struct fuse_out_header {len u32, error i32, unique u64}
        in_out[0..4].copy_from_slice(&((OUT_HEADER_LEN + len) as u32).to_le_bytes());
        in_out[4..8].copy_from_slice(&error.to_le_bytes());
        in_out[8..16].copy_from_slice(&unique.to_le_bytes());
        rest[HDR_PAYLOAD_SZ - HDR_OP_IN..HDR_PAYLOAD_SZ - HDR_OP_IN + 4]
            .copy_from_slice(&(len as u32).to_le_bytes());
        let iov = self.ents.iovs[i].as_ptr();
        self.ring.push_fuse_cmd(
            self.dev.as_raw_fd(),
            FUSE_IO_URING_CMD_COMMIT_AND_FETCH,
            iov,
            i as u64,
            commit_id,
            self.qid,
        );
        self.state[i] = EntState::Live;
        self.sh.served.fetch_add(1, Ordering::Relaxed);
        if self.role == Role::Far {
            self.sh.far.fetch_add(1, Ordering::Relaxed);
        }
        // Without follow-up work or more completions, the commit goes with
        // the next wait (one system call).
        if then.is_some() || self.ring.cqe_ready() {
            self.ring.enter(false, None)?;
        }
        if let Some(f) = then {
            if catch_unwind(AssertUnwindSafe(f)).is_err() {
                log::error!("FUSE over io_uring: follow-up work panicked");
            }
        }
        Ok(())
    }

    /// After the end: collect the other entries' completions (for at most
    /// a second) so the kernel is done with the buffers before they go.
    fn drain(&mut self) {
        let until = Instant::now() + Duration::from_secs(1);
        while self
            .state
            .iter()
            .any(|s| matches!(s, EntState::Live | EntState::Registering(_)))
        {
            let now = Instant::now();
            if now >= until || self.ring.enter(true, Some(until - now)).is_err() {
                break;
            }
            while let Some((user_data, _)) = self.ring.pop() {
                if let Some(s) = self.state.get_mut(user_data as usize) {
                    *s = EntState::Done;
                }
            }
        }
    }
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}
