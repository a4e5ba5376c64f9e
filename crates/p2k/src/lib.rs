//! p2k: serve any rumpkern mount through FUSE ("puffs to kernel" in NetBSD,
//! here "FUSE to vnode operations").
//!
//! # Reference rule
//!
//! The FUSE kernel module names files by *node id*. p2k keeps one node id
//! per live vnode and one counted [`VnodeRef`](rumpkern::VnodeRef) per node
//! id, exactly as NetBSD's `lib/libp2k/p2k.c` keeps a vnode referenced from
//! the moment a node is handed to the kernel until the kernel forgets it:
//!
//! * Every reply that hands the kernel an entry counts **one lookup** on that
//!   node: `lookup`, `create`, `mkdir`, `mknod`, `symlink`, `link`, and each
//!   `readdirplus` entry other than `.` and `..` (the kernel does not count
//!   those). The first lookup enters the node with a `VnodeRef`; later ones
//!   only raise the count. The count is raised *before* the reply is sent.
//! * `forget` and `batch_forget` lower the count by the number the kernel
//!   gives; at zero the node leaves the table and its `VnodeRef` is dropped
//!   (a vrele). That may inactivate the vnode and, for an unlinked file,
//!   reclaim it: the file's storage is freed only when the kernel has
//!   forgotten it and no handle holds it.
//! * Open files and directories (`open`, `create`, `opendir`) hold a second,
//!   independent `VnodeRef` in the handle table until `release` /
//!   `releasedir`, so an open-but-unlinked file lives on.
//! * The root is node id 1. It is entered when the server starts, never
//!   counted or forgotten, and dropped when the session ends.
//! * When the session ends (unmount), every remaining handle is closed and
//!   every node dropped; then the rumpkern mount is synced and unmounted.
//!
//! # Node ids and inode numbers
//!
//! fuser reports a node's id as its `st_ino`, so p2k uses the inode number
//! as node id: nothing to translate, and `stat` shows the driver's numbers.
//! Two exceptions: the root's inode and inode 1 swap places (FUSE requires
//! the root to be 1; a non-root inode 1, if the driver has one, takes the
//! root's number, which no other vnode can have), and an inode that would
//! end up as 0 (an invalid node id) becomes `u64::MAX` ([`fs::ALIAS_ID`]).
//! The vcache keeps one vnode per inode while it is referenced, so a node id
//! never names two vnodes at once; the generation number (`Vattr::gen`)
//! tells the kernel when an inode number was reused.
//!
//! # Credentials and permissions
//!
//! Each request runs with a [`Cred`](rumpkern::Cred) made of the caller's
//! uid/gid and its supplementary groups (from `/proc/<pid>/status`, read
//! only when a check needs them), and rumpkern's vnode wrappers check it on
//! every operation. Writes through a handle run with the opener's
//! credential (NetBSD's `f_cred`). `allow_other` (default when the server
//! runs as root) lets every user reach the mount; the checks then decide.
//!
//! Read-write mounts are made *without* `default_permissions`: rumpkern's
//! checks are the only ones, which saves a round trip per created or
//! removed file (the kernel invalidates the directory's attributes on every
//! change and, with `default_permissions`, fetches them again before the
//! next path walk through it: cp -R into an image made 5 requests per file
//! instead of 4). The FUSE kernel module then checks no search permission on
//! a path it has cached, so p2k never lets it cache a name in a directory
//! that not everybody may search (entry time 0 there: every walk through
//! it is a LOOKUP, checked with the caller's credential); when a directory
//! stops being searchable by everybody (chmod) or a file is renamed into
//! such a directory, the names the kernel may hold are invalidated just
//! after the reply (the kernel holds the directory's lock until then).
//! Read-only mounts keep `default_permissions`: the kernel's checks let it
//! open files without asking (see below). So do mounts whose root directory
//! not everybody may search (FAT with `dmask=077`: there every directory is
//! like the root, and no name could be cached). `-o default_permissions` /
//! `nodefault_permissions` choose explicitly.
//!
//! # Threads
//!
//! fuser 0.18 runs `threads` event loops ([`fuser::Config::n_threads`]),
//! each reading its own clone of the `/dev/fuse` descriptor
//! (`FUSE_DEV_IOC_CLONE`, [`fuser::Config::clone_fd`]): requests are
//! dispatched in parallel and concurrency is limited only by vnode and
//! buffer locks, never by a lock around the translator. p2k's own tables
//! are leaf mutexes held for a few instructions.
//!
//! `batch_forget` runs as one `forget` per node (fuser 0.18 does not export
//! the `ForgetOne` type its trait method takes, so it cannot be overridden).
//!
//! # Mounting
//!
//! As root p2k makes the mount(2) call itself ([`kmount`]) and hands the
//! `/dev/fuse` descriptor to fuser; it remembers the new mount's device
//! number and later unmounts only a mount at the mount point that still has
//! it. Ordinary users mount through the setuid `fusermount3`, which passes
//! the descriptor back (libfuse's protocol, spoken by [`kmount`] itself so
//! that FUSE over io_uring works for them too), and unmount through
//! `fusermount3 -u`, with the same device-number check. The FUSE session
//! ends when the kernel side goes away (`umount`, `fusermount3 -u`,
//! [`Unmounter::unmount`]); a busy mount is detached lazily.
//!
//! # Driver panics
//!
//! Every request handler runs its vnode operations inside
//! `std::panic::catch_unwind`. A panic replies EIO, marks the mount failed
//! ([`Mount::mark_failed`](rumpkern::Mount::mark_failed): it turns read-only,
//! so later writes get EROFS), poisons the node(s) the request named (later
//! requests on them get EIO without reaching the driver; the root is never
//! poisoned), and logs one error naming the request. The server keeps
//! answering.
//!
//! # Caching
//!
//! Only the kernel changes the file system, so its caches stay true:
//! attribute and entry timeouts (default 1 s, 30 s read-only), negative
//! entries, `FOPEN_KEEP_CACHE` on files, cached directory listings, big
//! requests (1 MiB `max_write`, the kernel's maximum readahead),
//! readdirplus. Write-only opens bypass the page cache (`FOPEN_DIRECT_IO`,
//! see `fs::fopen_flags`): nothing reads their pages, and copying into and
//! reclaiming them cost the 700 MB copy in two thirds of its time. The
//! capabilities the kernel actually grants at INIT are logged at info level.
//!
//! # Round trips
//!
//! Every request is two context switches and a wait for a server thread,
//! so p2k avoids the ones it can (measured in docs/performance.md):
//!
//! * FUSE over io_uring (modules `uring`, `uring_ops`): where the kernel
//!   offers it at INIT (Linux 6.14+ with `fuse.enable_uring=1`) and p2k
//!   holds the /dev/fuse descriptor (it mounted as root), one thread per
//!   CPU, pinned to it, registers ring entries of that CPU's queue, and the
//!   kernel hands each request to the queue of the CPU it was made on. The
//!   requester and its server thread then take turns on one CPU instead of
//!   waking a second, halted one: a STATFS round trip went from about 20 us
//!   to 7.5 us on the benchmark machine. The handlers are the same as for
//!   fuser's /dev/fuse loop (`fs::P2kFs::do_*`, generic over the reply
//!   traits of module `reply`); FORGET and INTERRUPT still come through
//!   /dev/fuse. The capability is asked for only once the queue threads
//!   run: a connection that agreed on io_uring blocks every request until
//!   all queues have registered. `P2kOptions::uring` false (`-o nouring`)
//!   keeps everything on /dev/fuse.
//! * `FLUSH` is answered `ENOSYS`: nothing is pending per descriptor in the
//!   server, and the kernel then never sends it again (one round trip less
//!   per `close`).
//! * On a read-only mount with `default_permissions`, `OPEN` and `OPENDIR`
//!   are answered `ENOSYS` ([`P2k::stateless_open`]): the kernel opens
//!   files itself (keeping its page cache and listings) and sends reads
//!   with handle 0, which p2k resolves through the node id. Nothing is
//!   written there, so no handle has to carry an opener's credential,
//!   `O_TRUNC` or an unlinked file. `cp -R` out of an image goes from four
//!   requests per file (open, read, flush, release) to one.
//! * Writes on write-only handles are answered before the driver does them
//!   (write-behind, module `wb`), where the file system says that only
//!   space and size can fail them and there is room to spare: the writer
//!   goes on while the server copies the data into the driver's cache.
//!   ENOSPC and EFBIG still come from write() itself, every later request
//!   naming the file waits for its writes, and device errors come back from
//!   the next write or fsync, as the kernel's own write-back errors do.
//!   `cp -R` of a 35,000-file tree into an ext2 image: 5-8% faster.
//! * The kernel's write-back cache (`FUSE_WRITEBACK_CACHE`) is *not* asked
//!   for: it batches large writes, but adds a `SETATTR` (the kernel writing
//!   back mtime/ctime) to every written file, and the benchmarks showed no
//!   gain on either the tree or the 700 MB copy.

pub mod attr;
pub mod cred;
pub mod fs;
pub mod kmount;
mod reply;
mod uring;
mod uring_ops;
mod wb;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{Config, Session, SessionACL};
use parking_lot::Mutex;
use rumpkern::Mount;

pub use fs::P2k;
use fs::{P2kFs, Tunables};

/// Server options (the generic part of a `rump_* -o` list).
#[derive(Clone, Debug)]
pub struct P2kOptions {
    /// Let users other than the server's own reach the mount (`allow_other`).
    /// Default: on when the server runs as root (rump servers are system
    /// services; the vnode layer checks every request's credentials), off
    /// otherwise (the kernel refuses it to ordinary users unless
    /// `user_allow_other` is in /etc/fuse.conf).
    pub allow_other: bool,
    /// How long the kernel may cache attributes. None: 1 s, or 30 s on a
    /// read-only mount.
    pub attr_timeout: Option<Duration>,
    /// How long the kernel may cache names (positive and negative). None:
    /// as `attr_timeout`.
    pub entry_timeout: Option<Duration>,
    /// Trace every request and its result with `log::debug!`.
    pub debug: bool,
    /// Worker threads reading `/dev/fuse` (0: the default, [`default_threads`]).
    pub threads: usize,
    /// Source shown in /proc/mounts (default: the file system type).
    pub fsname: Option<String>,
    /// Subtype shown as `fuse.<subtype>` (default: the file system type).
    pub subtype: Option<String>,
    /// Mount read-only (the rumpkern mount is also turned read-only).
    pub ro: bool,
    /// Let the kernel check permissions too (`default_permissions`).
    /// `None` (the default): on for read-only mounts (their opens are then
    /// stateless, see the crate doc) and for mounts whose root directory not
    /// everybody may search, off for other read-write ones, where
    /// rumpkern's checks are the only ones and p2k keeps the kernel from
    /// caching names it would let through unchecked (see the crate doc).
    pub default_permissions: Option<bool>,
    /// Answer writes on write-only handles before doing them, where the
    /// file system allows it (see the crate doc). Default: on.
    pub write_behind: bool,
    /// Take requests through FUSE over io_uring when the kernel offers it
    /// (Linux 6.14+ with `fuse.enable_uring=1`; mounts made as root): they
    /// are then served on the requester's CPU. Default: on.
    pub uring: bool,
}

impl Default for P2kOptions {
    fn default() -> Self {
        P2kOptions {
            // SAFETY: geteuid has no preconditions and cannot fail.
            allow_other: unsafe { libc::geteuid() } == 0,
            attr_timeout: None,
            entry_timeout: None,
            debug: false,
            threads: 0,
            fsname: None,
            subtype: None,
            ro: false,
            default_permissions: None,
            write_behind: true,
            uring: true,
        }
    }
}

/// Default number of FUSE worker threads: the number of CPUs, at least 2
/// and at most 8 (a request blocked on I/O must not stall the others).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// Default attribute/entry timeout of a read-write mount.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default attribute/entry timeout of a read-only mount.
pub const DEFAULT_RO_TIMEOUT: Duration = Duration::from_secs(30);

fn to_io(e: rumpkern::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.0)
}

struct How {
    /// Our mount's device number ("major:minor"): an unmount only touches
    /// the top mount at the mount point if it still has it.
    devno: String,
    /// Mounted through fusermount3 (ordinary users): unmounted through it.
    user: bool,
    /// The session ended: nothing is left to unmount.
    done: bool,
}

/// Unmounts a served mount from any thread (signal handler thread, test,
/// another process's request).
#[derive(Clone)]
pub struct Unmounter {
    how: Arc<Mutex<How>>,
    mountpoint: PathBuf,
}

impl Unmounter {
    /// Unmount the FUSE mount; the session then ends and the server's
    /// `run` returns. A busy mount point (open files, a shell's cwd) is
    /// detached lazily (`MNT_DETACH`): it disappears from the namespace at
    /// once and the session ends when its last user goes away. Does
    /// nothing once the session has ended, or if the top mount at the mount
    /// point is no longer ours.
    pub fn unmount(&self) -> io::Result<()> {
        let how = self.how.lock();
        if how.done {
            return Ok(());
        }
        kmount::unmount_ours(&self.mountpoint, &how.devno, how.user)
    }

    /// The session is over: nothing is left to unmount.
    fn ended(&self) {
        self.how.lock().done = true;
    }

    /// The (canonical) mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

/// A mounted, initialised FUSE session over a rumpkern mount, not yet
/// answering requests. Made by [`P2kServer::mount`]; [`P2kServer::run`]
/// serves it. Splitting the two lets a daemon report "mounted" to its
/// parent before it starts serving.
pub struct P2kServer {
    session: Session<P2kFs>,
    state: Arc<P2k>,
    unmounter: Unmounter,
}

impl P2kServer {
    /// Mount `mount` on `mountpoint` through `/dev/fuse` and complete the
    /// INIT handshake: when this returns the mount is live (requests wait
    /// until [`run`](Self::run) answers them).
    ///
    /// Errors: the mount point is missing or not a directory, `/dev/fuse`
    /// cannot be opened, the mount(2) call fails, the root vnode cannot be
    /// read.
    pub fn mount(mount: Arc<Mount>, mountpoint: &Path, opts: &P2kOptions) -> io::Result<P2kServer> {
        let mountpoint = mountpoint.canonicalize()?;
        if !mountpoint.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        if opts.ro {
            mount.set_rdonly();
        }
        let ro = opts.ro || mount.is_rdonly();
        let deflt = if ro {
            DEFAULT_RO_TIMEOUT
        } else {
            DEFAULT_TIMEOUT
        };
        let attr_ttl = opts.attr_timeout.unwrap_or(deflt);
        // Without kernel checks p2k lets the kernel cache names only in
        // directories everybody may search (fs::P2k::entry_ttl_in). Where
        // the root is not such a directory (FAT with dmask=077, say, where
        // every directory has the root's mode) that would cache nothing, so
        // the kernel checks permissions and caches as usual instead.
        let root_open = mount
            .root()
            .and_then(|r| r.getattr())
            .is_ok_and(|va| va.mode & 0o111 == 0o111);
        let kernel_checks = opts.default_permissions.unwrap_or(ro || !root_open);
        let threads = if opts.threads == 0 {
            default_threads()
        } else {
            opts.threads
        };
        let tun = Tunables {
            attr_ttl,
            entry_ttl: opts.entry_timeout.unwrap_or(attr_ttl),
            debug: opts.debug,
            ro_kernel_checked: ro && kernel_checks,
            kernel_checks,
            write_behind: opts.write_behind,
            threads,
            uring: opts.uring,
        };
        let state = Arc::new(P2k::new(mount.clone(), tun).map_err(to_io)?);

        let fstype = mount.fstype();
        let subtype = opts.subtype.clone().unwrap_or_else(|| fstype.to_string());
        let fsname = opts.fsname.clone().unwrap_or_else(|| fstype.to_string());
        let acl = if opts.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        let mut config = Config::default();
        config.acl = acl;
        config.n_threads = Some(threads);
        config.clone_fd = true;

        let dm = kmount::DirectMount {
            source: &fsname,
            subtype: &subtype,
            ro,
            allow_other: opts.allow_other,
            default_permissions: kernel_checks,
        };
        // SAFETY: geteuid has no preconditions.
        let user = unsafe { libc::geteuid() } != 0;
        // An ordinary user may still mount (CAP_SYS_ADMIN in a container):
        // fusermount3 is the way for those who may not.
        let (dev, devno, user) = match kmount::mount_direct(&mountpoint, &dm) {
            Ok((dev, devno)) => (dev, devno, false),
            Err(e)
                if user && matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) =>
            {
                let (dev, devno) = kmount::mount_fusermount(&mountpoint, &dm)?;
                (dev, devno, true)
            }
            Err(e) => return Err(e),
        };
        // For FUSE over io_uring (fuser answers INIT while it builds the
        // session, so before it is returned).
        if let Ok(fd) = dev.try_clone() {
            state.set_dev_fd(fd.into());
        }
        let session = match Session::from_fd(P2kFs(state.clone()), dev.into(), acl, config.clone())
        {
            Ok(s) => s,
            Err(e) => {
                let _ = kmount::unmount_ours(&mountpoint, &devno, user);
                return Err(e);
            }
        };
        let how = How {
            devno,
            user,
            done: false,
        };
        state.set_notifier(session.notifier());
        let unmounter = Unmounter {
            how: Arc::new(Mutex::new(how)),
            mountpoint,
        };
        log::info!(
            "serving {} on {} ({}, {} threads, attr/entry timeout {:?}/{:?}{})",
            fstype,
            unmounter.mountpoint.display(),
            if ro { "ro" } else { "rw" },
            config.n_threads.unwrap_or(1),
            state_tun(&state).0,
            state_tun(&state).1,
            if opts.allow_other {
                ", allow_other"
            } else {
                ""
            }
        );
        Ok(P2kServer {
            session,
            state,
            unmounter,
        })
    }

    /// A handle that unmounts this server from another thread.
    pub fn unmounter(&self) -> Unmounter {
        self.unmounter.clone()
    }

    /// The translator state (node and handle counts, the mount).
    pub fn state(&self) -> &Arc<P2k> {
        &self.state
    }

    /// Answer requests until the file system is unmounted (`umount`,
    /// `fusermount3 -u`, [`Unmounter::unmount`]), then drop every vnode
    /// reference and sync and unmount the rumpkern mount.
    ///
    /// Errors: the FUSE channel failed (other than by unmount), or the
    /// rumpkern unmount failed (e.g. EIO writing back); a mount that is
    /// still busy after every reference was dropped is force-unmounted with
    /// a warning.
    pub fn run(self) -> io::Result<()> {
        let P2kServer {
            session,
            state,
            unmounter,
        } = self;
        let served = session.run();
        if let Err(e) = &served {
            // The channel failed without an unmount: take the mount away.
            log::error!(
                "FUSE session on {} failed: {e}",
                unmounter.mountpoint.display()
            );
            let _ = unmounter.unmount();
        }
        unmounter.ended();
        let (via_ring, far) = state.join_rings();
        if via_ring > 0 {
            log::info!(
                "{via_ring} requests served through FUSE over io_uring, \
                 {far} large reads of them on another CPU than the reader's"
            );
        }
        let r = finish(&state);
        served.and(r)
    }
}

fn state_tun(p: &P2k) -> (Duration, Duration) {
    p.tunables()
}

/// Release everything the translator holds, then unmount the rumpkern mount.
fn finish(state: &P2k) -> io::Result<()> {
    state.release_all();
    let mount = state.mount();
    match mount.unmount(false) {
        Ok(()) => Ok(()),
        Err(e) if e == rumpkern::Errno::EBUSY => {
            let (cached, busy) = mount.vnode_counts();
            log::warn!("{} mount still has {busy} referenced vnode(s) of {cached} after the session; forcing unmount", mount.fstype());
            mount.unmount(true).map_err(to_io)
        }
        Err(e) => {
            log::error!("unmounting the {} mount failed: {e}", mount.fstype());
            Err(to_io(e))
        }
    }
}

/// Serve `mount` on `mountpoint` until it is unmounted; then sync and
/// unmount the rumpkern mount. Blocks the calling thread.
pub fn serve(mount: Arc<Mount>, mountpoint: &Path, opts: &P2kOptions) -> io::Result<()> {
    P2kServer::mount(mount, mountpoint, opts)?.run()
}

/// A mount served from a background thread (tests, embedding programs).
/// Dropping it unmounts and waits for the server to finish.
pub struct P2kSession {
    thread: Option<JoinHandle<io::Result<()>>>,
    unmounter: Unmounter,
    state: Arc<P2k>,
}

/// Mount and serve in a background thread; returns once the mount is live.
pub fn spawn(mount: Arc<Mount>, mountpoint: &Path, opts: &P2kOptions) -> io::Result<P2kSession> {
    let server = P2kServer::mount(mount, mountpoint, opts)?;
    let unmounter = server.unmounter();
    let state = server.state().clone();
    let thread = std::thread::Builder::new()
        .name("p2k-session".into())
        .spawn(move || server.run())?;
    Ok(P2kSession {
        thread: Some(thread),
        unmounter,
        state,
    })
}

impl P2kSession {
    /// The rumpkern mount being served.
    pub fn mount(&self) -> &Arc<Mount> {
        self.state.mount()
    }

    /// The translator state (node/handle counts, panics caught).
    pub fn state(&self) -> &Arc<P2k> {
        &self.state
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        self.unmounter.mountpoint()
    }

    /// A handle to unmount from elsewhere.
    pub fn unmounter(&self) -> Unmounter {
        self.unmounter.clone()
    }

    /// Has the server thread finished (e.g. after an external umount)?
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Unmount and wait for the server; returns what the server returned.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    /// Wait for the server to end by itself (after `umount` from outside).
    pub fn join(mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("p2k server thread panicked"))?,
            None => Ok(()),
        }
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let u = self.unmounter.unmount();
        let r = t
            .join()
            .map_err(|_| io::Error::other("p2k server thread panicked"))?;
        u.and(r)
    }
}

impl Drop for P2kSession {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            log::warn!("unmounting {}: {e}", self.unmounter.mountpoint.display());
        }
    }
}
