//! The translator proper: fuser's `Filesystem` over a rumpkern mount.
//!
//! Every handler has the same shape: take what the request names out of the
//! node and handle tables (a cloned `VnodeRef`, i.e. one more vref for the
//! duration of the request), run the vnode operations inside
//! `P2k::guarded` (which catches driver panics), and reply outside it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use rumpkern::{
    amode, ioflag, mode, oflags, Cred, Errno, KResult, Mount, SetAttr, VType, Vattr, VnodeRef,
};

use crate::attr::{file_attr, file_type, set_time};
use crate::cred::request_cred;
use crate::reply::{
    Caller, RAttr, RCreate, RData, RDir, RDirPlus, REmpty, REntry, ROpen, RStatfs, RWrite, RXattr,
};
use crate::uring::Rings;
use crate::wb::WriteBehind;

/// The FUSE node id of the root directory.
pub const ROOT_ID: u64 = 1;

/// Node id used for a non-root vnode whose inode number cannot be used
/// directly (inode 0, or inode 1 when the root itself is inode 0).
pub const ALIAS_ID: u64 = u64::MAX;

/// Node id of inode `ino` on a mount whose root is inode `root_ino` (see
/// [`P2k::nodeid_of`]). An involution on every inode but the alias.
pub fn map_ino(root_ino: u64, ino: u64) -> u64 {
    let id = if ino == root_ino {
        ROOT_ID
    } else if ino == ROOT_ID {
        root_ino
    } else {
        ino
    };
    if id == 0 {
        ALIAS_ID
    } else {
        id
    }
}

/// One node the kernel knows: the reference that keeps the vnode alive and
/// how many lookups the kernel has counted on it.
struct Node {
    vn: VnodeRef,
    nlookup: u64,
}

/// One open file or directory.
struct Handle {
    vn: VnodeRef,
    /// Open flags (O_ACCMODE, O_APPEND, O_SYNC, ...).
    flags: i32,
    /// Credential of the opener (NetBSD's `f_cred`): writes run with it.
    cred: Cred,
}

/// Timeouts and switches of one served mount.
#[derive(Clone, Debug)]
pub(crate) struct Tunables {
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    pub debug: bool,
    /// The mount is read-only and the kernel checks permissions
    /// (`default_permissions`): opens need no server state (see
    /// [`P2k::stateless_open`]).
    pub ro_kernel_checked: bool,
    /// The kernel checks permissions itself (`default_permissions`). When it
    /// does not, it also skips search permission on cached dentries, so
    /// p2k keeps no dentry cached under a directory that someone may not
    /// search (see [`P2k::entry_ttl_in`]).
    pub kernel_checks: bool,
    /// Answer writes on write-only handles before doing them (see
    /// [`crate::wb`]).
    pub write_behind: bool,
    /// FUSE worker threads (write-behind's margin).
    pub threads: usize,
    /// Serve requests over io_uring when the kernel offers it.
    pub uring: bool,
}

/// The translator state, shared by every worker thread and kept by the
/// server after the FUSE session ends so it can drop its references before
/// unmounting the rumpkern mount.
///
/// Locks: `nodes`, `handles` and `poisoned` are leaf mutexes, held only to
/// read or change the tables. No vnode operation runs and no `VnodeRef` is
/// dropped while one is held (a last vrele may inactivate a vnode, which
/// must not happen under our locks).
pub struct P2k {
    mount: Arc<Mount>,
    root_ino: u64,
    /// Node id → node. The root is entered once with a pinned count.
    nodes: Mutex<HashMap<u64, Node>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    /// Nodes whose driver state may be damaged by a panic: every later
    /// request naming them gets EIO.
    poisoned: Mutex<HashSet<u64>>,
    panics: AtomicU64,
    tun: Tunables,
    /// Opens are answered ENOSYS (read-only mount with kernel permission
    /// checks): the kernel then opens files and directories itself (its
    /// `no_open`/`no_opendir`) and sends reads and readdirs with handle 0,
    /// which name the node instead. Set at INIT.
    stateless_open: AtomicBool,
    /// Sends cache invalidations to the kernel (set once the session
    /// exists).
    notifier: OnceLock<fuser::Notifier>,
    /// Writes answered before they are done ([`crate::wb`]).
    wb: WriteBehind,
    /// The session's /dev/fuse descriptor (a duplicate), for FUSE over
    /// io_uring; set before the session runs.
    dev_fd: OnceLock<OwnedFd>,
    /// The io_uring queues, once INIT agreed on them.
    rings: Mutex<Option<Rings>>,
}

impl fmt::Debug for P2k {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "P2k({} mount, {} nodes, {} handles)",
            self.mount.fstype(),
            self.nodes.lock().len(),
            self.handles.lock().len()
        )
    }
}

fn ferr(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.0)
}

fn name_bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

impl P2k {
    /// Translator state for `mount`: takes a reference on its root.
    pub(crate) fn new(mount: Arc<Mount>, tun: Tunables) -> KResult<P2k> {
        let root = mount.root()?;
        let root_ino = root.ino();
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_ID,
            Node {
                vn: root,
                nlookup: 1,
            },
        );
        Ok(P2k {
            mount,
            root_ino,
            nodes: Mutex::new(nodes),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            poisoned: Mutex::new(HashSet::new()),
            panics: AtomicU64::new(0),
            wb: WriteBehind::new(tun.write_behind, tun.threads, MAX_WRITE),
            dev_fd: OnceLock::new(),
            rings: Mutex::new(None),
            tun,
            stateless_open: AtomicBool::new(false),
            notifier: OnceLock::new(),
        })
    }

    /// Where cache invalidations go (once, when the session exists).
    pub(crate) fn set_notifier(&self, n: fuser::Notifier) {
        let _ = self.notifier.set(n);
    }

    /// How long the kernel may keep a name found in directory `dvp`.
    ///
    /// Without `default_permissions` the kernel checks no search permission
    /// on a path it has cached; p2k checks it on every LOOKUP with the
    /// caller's credential. So an entry may be cached only in a directory
    /// that everybody may search (`x` for owner, group and other): there the
    /// check cannot fail. Entries in any other directory get no time at all
    /// and every path through it comes back as a LOOKUP. (A directory that
    /// becomes less searchable has its cached entries invalidated, see
    /// `setattr`.)
    pub(crate) fn entry_ttl_in(&self, dvp: &VnodeRef) -> Duration {
        if self.tun.kernel_checks {
            return self.tun.entry_ttl;
        }
        match dvp.getattr() {
            Ok(va) if va.mode & 0o111 == 0o111 => self.tun.entry_ttl,
            _ => Duration::ZERO,
        }
    }

    /// Tell the kernel to forget the names `names` in directory node
    /// `parent`, from another thread: the request that changed them may
    /// hold the directory's lock in the kernel until it is answered, and
    /// the kernel takes that lock to invalidate.
    fn invalidate_later(&self, parent: u64, names: Vec<Vec<u8>>) {
        let Some(n) = self.notifier.get().cloned() else {
            return;
        };
        if names.is_empty() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("p2k-inval".into())
            .spawn(move || {
                for name in names {
                    // ENOENT: the kernel had nothing cached under that name.
                    let _ = n.inval_entry(INodeNo(parent), OsStr::from_bytes(&name));
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread to invalidate cached names: {e}");
        }
    }

    /// After a SETATTR of node `nodeid` (`vn`): a directory that everybody
    /// could search and now not everybody can has its cached names
    /// invalidated, since they were handed out with a time to live
    /// ([`P2k::entry_ttl_in`]). Until the kernel has processed that
    /// (moments after the reply), a path it cached may still pass.
    fn searchability_changed(&self, nodeid: u64, vn: &VnodeRef, before: &Vattr, after: &Vattr) {
        if self.tun.kernel_checks
            || after.vtype != VType::Dir
            || before.mode & 0o111 != 0o111
            || after.mode & 0o111 == 0o111
        {
            return;
        }
        let mut names = Vec::new();
        let mut off = 0;
        loop {
            let mut last = None;
            let r = vn.readdir(off, &mut |de| {
                if de.name != b"." && de.name != b".." {
                    names.push(de.name.to_vec());
                }
                last = Some(de.next_offset);
                true
            });
            match (r, last) {
                (Ok(()), Some(next)) if next != off => off = next,
                _ => break,
            }
        }
        self.invalidate_later(nodeid, names);
    }

    /// The rumpkern mount being served.
    pub fn mount(&self) -> &Arc<Mount> {
        &self.mount
    }

    /// Node id of inode `ino`: the inode number itself, except that the
    /// root's inode and 1 trade places (FUSE's root is always 1) and that
    /// an inode that would map to 0 uses [`ALIAS_ID`].
    pub fn nodeid_of(&self, ino: u64) -> u64 {
        map_ino(self.root_ino, ino)
    }

    /// (attribute timeout, entry timeout) in use.
    pub fn tunables(&self) -> (Duration, Duration) {
        (self.tun.attr_ttl, self.tun.entry_ttl)
    }

    /// Nodes the kernel currently holds (root included).
    pub fn node_count(&self) -> usize {
        self.nodes.lock().len()
    }

    /// Open file and directory handles.
    pub fn handle_count(&self) -> usize {
        self.handles.lock().len()
    }

    /// Driver panics caught so far.
    pub fn panic_count(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Drop every reference the translator holds: close open handles, forget
    /// every node (the root too). Called once the FUSE session has ended.
    pub(crate) fn release_all(&self) {
        let handles: Vec<Handle> = self.handles.lock().drain().map(|(_, h)| h).collect();
        for h in &handles {
            let vn = &h.vn;
            let _ = catch_unwind(AssertUnwindSafe(|| vn.close(h.flags)));
        }
        drop(handles);
        let nodes: Vec<Node> = self.nodes.lock().drain().map(|(_, n)| n).collect();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(nodes)));
    }

    fn node(&self, nodeid: INodeNo) -> KResult<VnodeRef> {
        match self.nodes.lock().get(&nodeid.0) {
            Some(n) => Ok(n.vn.clone()),
            None => {
                log::warn!("request for unknown node id {}", nodeid.0);
                Err(Errno::ESTALE)
            }
        }
    }

    fn handle(&self, fh: FileHandle) -> KResult<(VnodeRef, i32, Cred)> {
        match self.handles.lock().get(&fh.0) {
            Some(h) => Ok((h.vn.clone(), h.flags, h.cred.clone())),
            None => Err(Errno::EBADF),
        }
    }

    /// The vnode a read-side request (read, readdir, fsync) names: its
    /// handle's, or with [`P2k::stateless_open`] and handle 0, the node's.
    fn handle_vnode(&self, ino: INodeNo, fh: FileHandle) -> KResult<VnodeRef> {
        if fh.0 == 0 && self.stateless_open.load(Ordering::Relaxed) {
            return self.node(ino);
        }
        self.handle(fh).map(|(vn, _, _)| vn)
    }

    /// Are opens answered ENOSYS (see the field's doc)? Read-only mounts
    /// with `default_permissions` only: nothing is written, so no opener
    /// credential, `O_TRUNC` or open-but-unlinked file needs a handle, and
    /// the kernel has checked the open's permissions with attributes that
    /// stay exact. Saves the OPEN and RELEASE round trips of every file
    /// (`cp -R` out of an image: four requests per file become two).
    pub fn stateless_open(&self) -> bool {
        self.stateless_open.load(Ordering::Relaxed)
    }

    fn new_handle(&self, vn: VnodeRef, flags: i32, cred: Cred) -> FileHandle {
        // The handle keeps the opener's credential as it is now (NetBSD's
        // f_cred): fetch its groups while the opener surely still exists.
        let _ = cred.groups();
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Handle { vn, flags, cred });
        FileHandle(fh)
    }

    fn close_handle(&self, fh: FileHandle) -> KResult<()> {
        let h = self.handles.lock().remove(&fh.0);
        match h {
            Some(h) => h.vn.close(h.flags),
            None => Err(Errno::EBADF),
        }
    }

    /// Count one kernel lookup on `vn` and return its node id. Must be called
    /// before the reply that hands the entry to the kernel is sent.
    fn remember(&self, vn: VnodeRef) -> u64 {
        let id = self.nodeid_of(vn.ino());
        let mut spare = None;
        {
            let mut t = self.nodes.lock();
            match t.entry(id) {
                Entry::Occupied(mut e) => {
                    let n = e.get_mut();
                    if id != ROOT_ID {
                        n.nlookup += 1;
                    }
                    if n.vn != vn {
                        // Cannot happen while we hold the old vnode (the
                        // vcache keeps one vnode per inode); keep the new.
                        log::error!(
                            "node id {id} now names another vnode ({:?} → {:?})",
                            n.vn,
                            vn
                        );
                        spare = Some(std::mem::replace(&mut n.vn, vn));
                    } else {
                        spare = Some(vn);
                    }
                }
                Entry::Vacant(e) => {
                    e.insert(Node { vn, nlookup: 1 });
                }
            }
        }
        drop(spare);
        id
    }

    /// The kernel dropped `n` lookups of `nodeid`.
    fn forget_node(&self, nodeid: u64, n: u64) {
        if nodeid == ROOT_ID {
            return;
        }
        let gone = {
            let mut t = self.nodes.lock();
            match t.get_mut(&nodeid) {
                Some(node) => {
                    node.nlookup = node.nlookup.saturating_sub(n);
                    if node.nlookup == 0 {
                        t.remove(&nodeid)
                    } else {
                        None
                    }
                }
                None => {
                    log::warn!("forget of unknown node id {nodeid}");
                    None
                }
            }
        };
        if let Some(node) = gone {
            // The last vrele may inactivate and reclaim: guard the driver.
            let _ = self.guarded("forget", &[nodeid], format_args!("{nodeid}"), move || {
                drop(node);
                Ok(())
            });
        }
    }

    /// Run driver work `f` for a request of kind `kind` touching `nodes`.
    ///
    /// A request on a poisoned node fails with EIO without calling the
    /// driver. A panic inside `f` is caught: the request gets EIO, the mount
    /// is marked failed (read-only), the nodes are poisoned (the root
    /// excepted: poisoning it would end all service) and one error is
    /// logged naming the request.
    pub(crate) fn guarded<T>(
        &self,
        kind: &'static str,
        nodes: &[u64],
        args: fmt::Arguments<'_>,
        f: impl FnOnce() -> KResult<T>,
    ) -> KResult<T> {
        // Writes answered early to these nodes land first (crate::wb).
        self.wb.wait_nodes(nodes);
        self.guarded_now(kind, nodes, args, f)
    }

    /// Keep a duplicate of the session's /dev/fuse descriptor (for FUSE
    /// over io_uring, see [`crate::uring`]).
    pub(crate) fn set_dev_fd(&self, fd: OwnedFd) {
        let _ = self.dev_fd.set(fd);
    }

    /// Stop using the io_uring queues (after the session ended): their
    /// threads end with the connection. Returns how many requests they
    /// served, and how many of those were large reads served on another
    /// CPU than the queue's.
    pub(crate) fn join_rings(&self) -> (u64, u64) {
        match self.rings.lock().take() {
            Some(r) => {
                let n = (r.served(), r.served_far());
                r.join();
                n
            }
            None => (0, 0),
        }
    }

    /// [`P2k::guarded`] without waiting for outstanding writes: for the
    /// outstanding write itself.
    fn guarded_now<T>(
        &self,
        kind: &'static str,
        nodes: &[u64],
        args: fmt::Arguments<'_>,
        f: impl FnOnce() -> KResult<T>,
    ) -> KResult<T> {
        {
            let p = self.poisoned.lock();
            if !p.is_empty() && nodes.iter().any(|n| p.contains(n)) {
                if self.tun.debug {
                    log::debug!("{kind}({args}) -> EIO (node poisoned by an earlier driver panic)");
                }
                return Err(Errno::EIO);
            }
        }
        let r = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => r,
            Err(payload) => {
                let n = self.panics.fetch_add(1, Ordering::Relaxed) + 1;
                self.mount.mark_failed();
                self.poisoned
                    .lock()
                    .extend(nodes.iter().copied().filter(|&id| id != ROOT_ID));
                log::error!(
                    "driver panic #{n} in {kind}({args}) on {} mount: {}; replying EIO, node(s) {:?} now fail with EIO, mount is now read-only",
                    self.mount.fstype(),
                    panic_message(&*payload),
                    nodes
                );
                Err(Errno::EIO)
            }
        };
        if self.tun.debug {
            match &r {
                Ok(_) => log::debug!("{kind}({args}) -> ok"),
                Err(e) => log::debug!("{kind}({args}) -> {}", e.name()),
            }
        }
        r
    }

    /// Start the io_uring queues ([`crate::uring`]) for requests of up to
    /// `max_write` bytes. Called from INIT, before its reply: the queues
    /// register once the kernel has it.
    fn start_rings(self: &Arc<Self>, max_write: u32) -> std::io::Result<()> {
        use std::os::fd::AsFd;
        let Some(fd) = self.dev_fd.get() else {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        };
        // At least max(8 KiB, max_write, max_pages pages), plus slack.
        let payload = (max_write as usize).max(256 * 4096) + 4096;
        let handler = Arc::new(crate::uring_ops::RingFs(self.clone()));
        let rings = Rings::start(fd.as_fd(), payload, RING_DEPTH, handler)?;
        *self.rings.lock() = Some(rings);
        Ok(())
    }

    fn cred<Q: Caller>(req: &Q) -> Cred {
        request_cred(req.uid(), req.gid(), req.pid())
    }

    /// Attributes of `vn` as FUSE wants them.
    fn attr_of(&self, vn: &VnodeRef) -> KResult<(FileAttr, Vattr)> {
        let id = self.nodeid_of(vn.ino());
        // Sizes and times after the writes answered early (crate::wb).
        self.wb.wait_node(id);
        let va = vn.getattr()?;
        Ok((file_attr(&va, id), va))
    }

    /// Hand `vn` to the kernel as a new entry: attributes, then one counted
    /// lookup.
    fn entry_of(&self, vn: VnodeRef) -> KResult<(FileAttr, Generation)> {
        let (attr, va) = self.attr_of(&vn)?;
        self.remember(vn);
        Ok((attr, Generation(u64::from(va.gen))))
    }

    /// Answer an entry request with the entry and the time the kernel may
    /// keep its name ([`P2k::entry_ttl_in`] of its directory).
    fn reply_entry<R: REntry>(&self, reply: R, r: KResult<(FileAttr, Generation, Duration)>) {
        match r {
            Ok((attr, gen, ttl)) => reply.entry_with_ttls(&self.tun.attr_ttl, &ttl, &attr, gen),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn reply_empty<R: REmpty>(reply: R, r: KResult<()>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(ferr(e)),
        }
    }

    fn reply_attr<R: RAttr>(&self, reply: R, r: KResult<FileAttr>) {
        match r {
            Ok(a) => reply.attr(&self.tun.attr_ttl, &a),
            Err(e) => reply.error(ferr(e)),
        }
    }
}

/// IO_* flags for an open file's O_* flags.
fn io_flags(open_flags: i32) -> u32 {
    let mut f = 0;
    if open_flags & oflags::O_APPEND != 0 {
        f |= ioflag::IO_APPEND;
    }
    if open_flags & oflags::O_SYNC == oflags::O_SYNC {
        f |= ioflag::IO_SYNC;
    } else if open_flags & libc::O_DSYNC != 0 {
        f |= ioflag::IO_DSYNC;
    }
    f
}

/// FOPEN_* flags for a file opened with `open_flags`.
///
/// Every open keeps the kernel's page cache (`FOPEN_KEEP_CACHE`: only the
/// kernel changes files). A write-only open also bypasses it
/// (`FOPEN_DIRECT_IO`): its writes would otherwise be copied into page-cache
/// pages that nothing reads through that descriptor, and the 700 MB copy in
/// spent most of its time allocating, copying and reclaiming them (2.75 s →
/// 0.95 s, docs/performance.md). The kernel still invalidates cached pages
/// of the written range, so readers through other descriptors stay
/// coherent, and a write-only descriptor cannot be mmapped, so direct I/O
/// changes nothing a program can observe.
fn fopen_flags(open_flags: i32) -> FopenFlags {
    if open_flags & oflags::O_ACCMODE == oflags::O_WRONLY {
        FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::FOPEN_KEEP_CACHE
    }
}

/// The fuser `Filesystem`: a thin owner of the shared [`P2k`] state.
pub(crate) struct P2kFs(pub Arc<P2k>);

/// Capabilities p2k asks for when the kernel offers them.
///
/// Not `FUSE_ATOMIC_O_TRUNC`: with it the kernel passes O_TRUNC along in
/// OPEN and the server truncates before the kernel has checked write
/// access for the truncation, so `open(O_RDONLY|O_TRUNC)` of a program
/// being run emptied it (killing the program) and only then failed with
/// ETXTBSY. Without it the kernel truncates through SETATTR after its
/// checks (one request more per truncating open of an existing file).
const WANTED: &[(InitFlags, &str)] = &[
    (InitFlags::FUSE_ASYNC_READ, "async reads"),
    (InitFlags::FUSE_BIG_WRITES, "big writes"),
    (InitFlags::FUSE_DO_READDIRPLUS, "readdirplus"),
    (InitFlags::FUSE_READDIRPLUS_AUTO, "adaptive readdirplus"),
    (
        InitFlags::FUSE_PARALLEL_DIROPS,
        "parallel lookups/readdir in one directory",
    ),
    (InitFlags::FUSE_CACHE_SYMLINKS, "symlink caching"),
    (InitFlags::FUSE_MAX_PAGES, "max_pages (big requests)"),
];

const MAX_WRITE: u32 = 1 << 20;

/// The largest write answered before it is done when the transport needs
/// its data copied for that (see `P2kFs::do_write`).
const WB_COPY_MAX: usize = 256 << 10;
const MAX_BACKGROUND: u16 = 64;

/// Ring entries per CPU queue (FUSE over io_uring).
const RING_DEPTH: usize = 2;

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The request handlers, generic over the transport (`crate::reply`); their
/// arguments are fuser's `Filesystem` methods' own.
#[allow(clippy::too_many_arguments)]
impl P2kFs {
    pub(crate) fn do_lookup<Q: Caller, R: REntry>(
        &self,
        req: &Q,
        parent: INodeNo,
        name: &OsStr,
        reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "lookup",
            &[parent.0],
            format_args!("{}, {:?}", parent.0, name),
            || {
                let dvp = p.node(parent)?;
                let found = match dvp.lookup(name_bytes(name), &P2k::cred(req)) {
                    Ok(vn) => Some(p.entry_of(vn)?),
                    // A negative entry the kernel may cache (same rule as
                    // positive ones): every change goes through the kernel,
                    // so it stays true.
                    Err(e) if e == Errno::ENOENT => None,
                    Err(e) => return Err(e),
                };
                Ok((found, p.entry_ttl_in(&dvp)))
            },
        );
        match r {
            Ok((Some((a, g)), ttl)) => p.reply_entry(reply, Ok((a, g, ttl))),
            Ok((None, ttl)) => {
                let mut neg = file_attr(&empty_vattr(), 0);
                neg.ino = INodeNo(0);
                reply.entry_with_ttls(&Duration::ZERO, &ttl, &neg, Generation(0));
            }
            Err(e) => reply.error(ferr(e)),
        }
    }

    // batch_forget: fuser 0.18 does not export `ForgetOne`, so the trait's
    // default (one `forget` call per node of the batch) is what runs.

    pub(crate) fn do_getattr<Q: Caller, R: RAttr>(
        &self,
        _req: &Q,
        ino: INodeNo,
        _fh: Option<FileHandle>,
        reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded("getattr", &[ino.0], format_args!("{}", ino.0), || {
            let vn = p.node(ino)?;
            Ok(p.attr_of(&vn)?.0)
        });
        p.reply_attr(reply, r);
    }

    pub(crate) fn do_setattr<Q: Caller, R: RAttr>(
        &self,
        req: &Q,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: R,
    ) {
        let p = &self.0;
        p.wb.admit(&p.mount, None);
        let sa = SetAttr {
            mode: mode.map(|m| m & mode::ALLPERMS),
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            ..Default::default()
        };
        let r = p.guarded(
            "setattr",
            &[ino.0],
            format_args!("{}, {sa:?}, fh {fh:?}", ino.0),
            || {
                let vn = p.node(ino)?;
                // ftruncate: write permission was checked when the handle was opened.
                let has_write_fd = match fh {
                    Some(fh) => p
                        .handle(fh)
                        .map(|(_, fl, _)| fl & oflags::O_ACCMODE != oflags::O_RDONLY)
                        .unwrap_or(false),
                    None => false,
                };
                let before = vn.getattr()?;
                vn.setattr(&sa, &P2k::cred(req), has_write_fd)?;
                let (attr, after) = p.attr_of(&vn)?;
                p.searchability_changed(ino.0, &vn, &before, &after);
                Ok(attr)
            },
        );
        p.reply_attr(reply, r);
    }

    pub(crate) fn do_readlink<Q: Caller, R: RData>(&self, _req: &Q, ino: INodeNo, reply: R) {
        let p = &self.0;
        let r = p.guarded("readlink", &[ino.0], format_args!("{}", ino.0), || {
            p.node(ino)?.readlink()
        });
        match r {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(ferr(e)),
        }
    }

    pub(crate) fn do_mknod<Q: Caller, R: REntry>(
        &self,
        req: &Q,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: R,
    ) {
        let p = &self.0;
        p.wb.admit(&p.mount, None);
        let r = p.guarded(
            "mknod",
            &[parent.0],
            format_args!("{}, {name:?}, {mode:o}, rdev {rdev:#x}", parent.0),
            || {
                let dvp = p.node(parent)?;
                let vtype = VType::from_mode(mode).ok_or(Errno::EINVAL)?;
                let perm = mode & !umask & mode::ALLPERMS;
                let cred = P2k::cred(req);
                let vn = match vtype {
                    VType::Reg => dvp.create(name_bytes(name), perm, &cred)?,
                    _ => dvp.mknod(name_bytes(name), vtype, perm, u64::from(rdev), &cred)?,
                };
                let (a, g) = p.entry_of(vn)?;
                Ok((a, g, p.entry_ttl_in(&dvp)))
            },
        );
        p.reply_entry(reply, r);
    }

    pub(crate) fn do_mkdir<Q: Caller, R: REntry>(
        &self,
        req: &Q,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: R,
    ) {
        let p = &self.0;
        p.wb.admit(&p.mount, None);
        let r = p.guarded(
            "mkdir",
            &[parent.0],
            format_args!("{}, {name:?}, {mode:o}", parent.0),
            || {
                let dvp = p.node(parent)?;
                let vn = dvp.mkdir(
                    name_bytes(name),
                    mode & !umask & mode::ALLPERMS,
                    &P2k::cred(req),
                )?;
                let (a, g) = p.entry_of(vn)?;
                Ok((a, g, p.entry_ttl_in(&dvp)))
            },
        );
        p.reply_entry(reply, r);
    }

    pub(crate) fn do_unlink<Q: Caller, R: REmpty>(
        &self,
        req: &Q,
        parent: INodeNo,
        name: &OsStr,
        reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "unlink",
            &[parent.0],
            format_args!("{}, {name:?}", parent.0),
            || p.node(parent)?.remove(name_bytes(name), &P2k::cred(req)),
        );
        P2k::reply_empty(reply, r);
    }

    pub(crate) fn do_rmdir<Q: Caller, R: REmpty>(
        &self,
        req: &Q,
        parent: INodeNo,
        name: &OsStr,
        reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "rmdir",
            &[parent.0],
            format_args!("{}, {name:?}", parent.0),
            || p.node(parent)?.rmdir(name_bytes(name), &P2k::cred(req)),
        );
        P2k::reply_empty(reply, r);
    }

    pub(crate) fn do_symlink<Q: Caller, R: REntry>(
        &self,
        req: &Q,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: R,
    ) {
        let p = &self.0;
        p.wb.admit(&p.mount, None);
        let r = p.guarded(
            "symlink",
            &[parent.0],
            format_args!("{}, {link_name:?} -> {target:?}", parent.0),
            || {
                let dvp = p.node(parent)?;
                let vn = dvp.symlink(
                    name_bytes(link_name),
                    target.as_os_str().as_bytes(),
                    &P2k::cred(req),
                )?;
                let (a, g) = p.entry_of(vn)?;
                Ok((a, g, p.entry_ttl_in(&dvp)))
            },
        );
        p.reply_entry(reply, r);
    }

    pub(crate) fn do_rename<Q: Caller, R: REmpty>(
        &self,
        req: &Q,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: R,
    ) {
        let p = &self.0;
        p.wb.admit(&p.mount, None);
        let r = p.guarded(
            "rename",
            &[parent.0, newparent.0],
            format_args!(
                "{}, {name:?} -> {}, {newname:?}, flags {flags:?}",
                parent.0, newparent.0
            ),
            || {
                // RENAME_NOREPLACE / EXCHANGE / WHITEOUT cannot be done
                // atomically through VOP_RENAME: refuse rather than ignore.
                if !flags.is_empty() {
                    return Err(Errno::EINVAL);
                }
                let fdvp = p.node(parent)?;
                let tdvp = p.node(newparent)?;
                fdvp.rename(
                    name_bytes(name),
                    &tdvp,
                    name_bytes(newname),
                    &P2k::cred(req),
                )?;
                // The kernel moves its cached entry, keeping the time it got
                // in the old directory; one in a directory not everybody may
                // search must not stay (entry_ttl_in).
                if !p.tun.kernel_checks && p.entry_ttl_in(&tdvp).is_zero() {
                    p.invalidate_later(newparent.0, vec![name_bytes(newname).to_vec()]);
                }
                Ok(())
            },
        );
        P2k::reply_empty(reply, r);
    }

    pub(crate) fn do_link<Q: Caller, R: REntry>(
        &self,
        req: &Q,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: R,
    ) {
        let p = &self.0;
        p.wb.admit(&p.mount, None);
        let r = p.guarded(
            "link",
            &[ino.0, newparent.0],
            format_args!("{} -> {}, {newname:?}", ino.0, newparent.0),
            || {
                let vn = p.node(ino)?;
                let tdvp = p.node(newparent)?;
                tdvp.link(&vn, name_bytes(newname), &P2k::cred(req))?;
                let (a, g) = p.entry_of(vn)?;
                Ok((a, g, p.entry_ttl_in(&tdvp)))
            },
        );
        p.reply_entry(reply, r);
    }

    pub(crate) fn do_open<Q: Caller, R: ROpen>(
        &self,
        req: &Q,
        ino: INodeNo,
        flags: OpenFlags,
        reply: R,
    ) {
        let p = &self.0;
        if p.stateless_open() {
            // The kernel takes this as success and stops sending opens.
            reply.error(fuser::Errno::ENOSYS);
            return;
        }
        let r = p.guarded(
            "open",
            &[ino.0],
            format_args!("{}, flags {:#o}", ino.0, flags.0),
            || {
                let vn = p.node(ino)?;
                let cred = P2k::cred(req);
                vn.open(flags.0, &cred)?;
                Ok(p.new_handle(vn, flags.0, cred))
            },
        );
        match r {
            // Only the kernel changes files, so its page cache stays valid
            // across opens.
            Ok(fh) => reply.opened(fh, fopen_flags(flags.0)),
            Err(e) => reply.error(ferr(e)),
        }
    }

    pub(crate) fn do_create<Q: Caller, R: RCreate>(
        &self,
        req: &Q,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: R,
    ) {
        let p = &self.0;
        p.wb.admit(&p.mount, None);
        let r = p.guarded(
            "create",
            &[parent.0],
            format_args!("{}, {name:?}, {mode:o}, flags {flags:#o}", parent.0),
            || {
                let dvp = p.node(parent)?;
                let cred = P2k::cred(req);
                let perm = mode & !umask & mode::ALLPERMS;
                let vn = match dvp.create(name_bytes(name), perm, &cred) {
                    Ok(vn) => {
                        // The creating open may write whatever the new mode says
                        // (POSIX; NetBSD vn_open skips VOP_ACCESS after create).
                        vn.ops().open(&vn, flags & !oflags::O_TRUNC, &cred)?;
                        vn
                    }
                    Err(e) if e == Errno::EEXIST && flags & oflags::O_EXCL == 0 => {
                        // Lost a race with another creator: open what is there
                        // (after its writes answered early: O_TRUNC comes last).
                        let vn = dvp.lookup(name_bytes(name), &cred)?;
                        p.wb.wait_node(p.nodeid_of(vn.ino()));
                        vn.open(flags & !(oflags::O_CREAT | oflags::O_EXCL), &cred)?;
                        vn
                    }
                    Err(e) => return Err(e),
                };
                let (attr, va) = match p.attr_of(&vn) {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = vn.close(flags);
                        return Err(e);
                    }
                };
                p.remember(vn.clone());
                let fh = p.new_handle(vn, flags, cred);
                Ok((
                    attr,
                    Generation(u64::from(va.gen)),
                    fh,
                    p.entry_ttl_in(&dvp),
                ))
            },
        );
        match r {
            Ok((attr, gen, fh, ttl)) => reply.created(&ttl, &attr, gen, fh, fopen_flags(flags)),
            Err(e) => reply.error(ferr(e)),
        }
    }

    pub(crate) fn do_read<Q: Caller, R: RData>(
        &self,
        _req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        mut reply: R,
    ) {
        let p = &self.0;
        let args = format_args!("{}, fh {}, off {offset}, size {size}", ino.0, fh.0);
        if R::IN_PLACE {
            // Straight into the transport's buffer (io_uring's payload).
            let r = p.guarded("read", &[ino.0], args, || {
                let vn = p.handle_vnode(ino, fh)?;
                vn.read(reply.buffer(size as usize), offset)
            });
            return match r {
                Ok(n) => reply.filled(n),
                Err(e) => reply.error(ferr(e)),
            };
        }
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let size = size as usize;
            if buf.len() < size {
                buf.resize(size, 0);
            }
            let r = p.guarded("read", &[ino.0], args, || {
                let vn = p.handle_vnode(ino, fh)?;
                vn.read(&mut buf[..size], offset)
            });
            match r {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(ferr(e)),
            }
        });
    }

    pub(crate) fn do_write<Q: Caller, R: RWrite>(
        &self,
        _req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: R,
    ) {
        let p = &self.0;
        let len = data.len();
        let args = format_args!("{}, fh {}, off {offset}, size {len}", ino.0, fh.0);
        p.wb.wait_node(ino.0);
        if let Some(e) = p.wb.take_error(ino.0) {
            return reply.error(ferr(e));
        }
        let (vn, flags, cred) = match p.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(ferr(e)),
        };
        // A transport that runs the rest after its answer goes (io_uring)
        // needs the data copied: only for writes up to WB_COPY_MAX.
        let early = !R::DEFERS || len <= WB_COPY_MAX;
        if let Some(t) = early
            .then(|| p.wb.begin(&p.mount, ino.0, offset, len, flags))
            .flatten()
        {
            // Answered now, done next (crate::wb).
            if !R::DEFERS {
                reply.written(len as u32);
                let r = p.guarded_now("write", &[ino.0], args, || {
                    vn.write(data, offset, io_flags(flags), &cred)
                });
                p.wb.end(t, r, offset, len);
                return;
            }
            let p = p.clone();
            let data = data.to_vec();
            let id = ino.0;
            let fhn = fh.0;
            reply.written_then(
                len as u32,
                Box::new(move || {
                    let args = format_args!("{id}, fh {fhn}, off {offset}, size {len}");
                    let r = p.guarded_now("write", &[id], args, || {
                        vn.write(&data, offset, io_flags(flags), &cred)
                    });
                    p.wb.end(t, r, offset, len);
                }),
            );
            return;
        }
        p.wb.note_synchronous();
        p.wb.admit(&p.mount, Some((offset, len as u64)));
        let r = p.guarded("write", &[ino.0], args, || {
            vn.write(data, offset, io_flags(flags), &cred)
        });
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(ferr(e)),
        }
    }

    pub(crate) fn do_flush<Q: Caller, R: REmpty>(
        &self,
        _req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: R,
    ) {
        // Nothing is pending per descriptor in the server (the kernel
        // writes back its own dirty pages before it would send this), so
        // close has no error to report. ENOSYS makes the kernel stop
        // sending FLUSH (its `no_flush`) and take every later close as
        // successful: one round trip less per close.
        if self.0.tun.debug {
            log::debug!("flush({}, fh {}) -> ENOSYS (no more flushes)", ino.0, fh.0);
        }
        reply.error(fuser::Errno::ENOSYS);
    }

    pub(crate) fn do_release<Q: Caller, R: REmpty>(
        &self,
        _req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: R,
    ) {
        let p = &self.0;
        // Its writes land before the handle (and maybe the file) goes.
        p.wb.wait_node(ino.0);
        // The handle goes even on a poisoned node: release is never retried.
        let r = p.guarded(
            "release",
            &[],
            format_args!("{}, fh {}", ino.0, fh.0),
            || p.close_handle(fh),
        );
        P2k::reply_empty(reply, r);
    }

    pub(crate) fn do_fsync<Q: Caller, R: REmpty>(
        &self,
        _req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "fsync",
            &[ino.0],
            format_args!("{}, fh {}, datasync {datasync}", ino.0, fh.0),
            || {
                let vn = p.handle_vnode(ino, fh)?;
                vn.fsync(datasync)?;
                // A write answered early that failed (crate::wb).
                match p.wb.take_error(ino.0) {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            },
        );
        P2k::reply_empty(reply, r);
    }

    pub(crate) fn do_opendir<Q: Caller, R: ROpen>(
        &self,
        req: &Q,
        ino: INodeNo,
        flags: OpenFlags,
        reply: R,
    ) {
        let p = &self.0;
        if p.stateless_open() {
            // As in open: the kernel keeps (and caches) the listing itself.
            reply.error(fuser::Errno::ENOSYS);
            return;
        }
        let r = p.guarded(
            "opendir",
            &[ino.0],
            format_args!("{}, flags {:#o}", ino.0, flags.0),
            || {
                let vn = p.node(ino)?;
                if vn.vtype() != VType::Dir {
                    return Err(Errno::ENOTDIR);
                }
                let cred = P2k::cred(req);
                let fl = flags.0 & !oflags::O_ACCMODE; // a directory is read, never written
                vn.open(fl | oflags::O_RDONLY, &cred)?;
                Ok(p.new_handle(vn, fl, cred))
            },
        );
        match r {
            // The kernel invalidates its cached listing whenever it changes
            // the directory, and only the kernel changes it.
            Ok(fh) => reply.opened(
                fh,
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(e) => reply.error(ferr(e)),
        }
    }

    pub(crate) fn do_readdir<Q: Caller, R: RDir>(
        &self,
        _req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "readdir",
            &[ino.0],
            format_args!("{}, fh {}, off {offset}", ino.0, fh.0),
            || {
                let vn = p.handle_vnode(ino, fh)?;
                vn.readdir(offset, &mut |de| {
                    let full = reply.add(
                        INodeNo(p.nodeid_of(de.ino)),
                        de.next_offset,
                        file_type(de.vtype),
                        OsStr::from_bytes(de.name),
                    );
                    !full
                })
            },
        );
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(ferr(e)),
        }
    }

    pub(crate) fn do_readdirplus<Q: Caller, R: RDirPlus>(
        &self,
        req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "readdirplus",
            &[ino.0],
            format_args!("{}, fh {}, off {offset}", ino.0, fh.0),
            || {
                let dvp = p.handle_vnode(ino, fh)?;
                // Gather a batch of names first: looking entries up takes the
                // directory lock, which readdir holds while it feeds us.
                let mut batch: Vec<(Vec<u8>, u64, VType, u64)> = Vec::new();
                let mut budget: usize = 32 * 1024; // glibc's getdents buffer
                dvp.readdir(offset, &mut |de| {
                    let cost = (152 + de.name.len()).next_multiple_of(8); // fuse_direntplus
                    if budget < cost && !batch.is_empty() {
                        return false;
                    }
                    budget = budget.saturating_sub(cost);
                    batch.push((de.name.to_vec(), de.ino, de.vtype, de.next_offset));
                    true
                })?;
                let cred = P2k::cred(req);
                let ttl = p.entry_ttl_in(&dvp);
                for (name, ino, vtype, next) in batch {
                    if name == b"." || name == b".." {
                        // The kernel does not count lookups for these.
                        let mut a = file_attr(&empty_vattr(), p.nodeid_of(ino));
                        a.kind = FileType::Directory;
                        if reply.add(
                            INodeNo(a.ino.0),
                            next,
                            OsStr::from_bytes(&name),
                            &Duration::ZERO,
                            &a,
                            Generation(0),
                        ) {
                            break;
                        }
                        continue;
                    }
                    let vn = match dvp.lookup(&name, &cred) {
                        Ok(vn) => vn,
                        // Gone since the listing, or unreadable: skip it.
                        Err(_) => continue,
                    };
                    let id = p.nodeid_of(vn.ino());
                    // Sizes after the writes answered early (crate::wb).
                    p.wb.wait_node(id);
                    let va = match vn.getattr() {
                        Ok(va) => va,
                        Err(_) => continue,
                    };
                    let _ = vtype;
                    let a = file_attr(&va, id);
                    if reply.add(
                        INodeNo(id),
                        next,
                        OsStr::from_bytes(&name),
                        &ttl,
                        &a,
                        Generation(u64::from(va.gen)),
                    ) {
                        break; // did not fit: not sent, not counted
                    }
                    p.remember(vn);
                }
                Ok(())
            },
        );
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(ferr(e)),
        }
    }

    pub(crate) fn do_releasedir<Q: Caller, R: REmpty>(
        &self,
        _req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "releasedir",
            &[],
            format_args!("{}, fh {}", ino.0, fh.0),
            || p.close_handle(fh),
        );
        P2k::reply_empty(reply, r);
    }

    pub(crate) fn do_fsyncdir<Q: Caller, R: REmpty>(
        &self,
        _req: &Q,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "fsyncdir",
            &[ino.0],
            format_args!("{}, fh {}, datasync {datasync}", ino.0, fh.0),
            || {
                let vn = p.handle_vnode(ino, fh)?;
                vn.fsync(datasync)
            },
        );
        P2k::reply_empty(reply, r);
    }

    pub(crate) fn do_statfs<Q: Caller, R: RStatfs>(&self, _req: &Q, ino: INodeNo, reply: R) {
        let p = &self.0;
        // Free counts after every write answered early (crate::wb).
        p.wb.wait_all();
        let r = p.guarded("statfs", &[], format_args!("{}", ino.0), || {
            p.mount.statvfs()
        });
        match r {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namemax, s.frsize,
            ),
            Err(e) => reply.error(ferr(e)),
        }
    }

    // Extended attributes: rumpkern has no VOP for them yet. ENOSYS (not
    // EOPNOTSUPP) makes the kernel stop asking (it then answers EOPNOTSUPP
    // itself), which saves a round trip per write for security.capability.
    pub(crate) fn do_setxattr<Q: Caller, R: REmpty>(
        &self,
        _req: &Q,
        ino: INodeNo,
        name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: R,
    ) {
        log::debug!("setxattr({}, {name:?}) -> ENOSYS", ino.0);
        reply.error(fuser::Errno::ENOSYS);
    }

    pub(crate) fn do_getxattr<Q: Caller, R: RXattr>(
        &self,
        _req: &Q,
        ino: INodeNo,
        name: &OsStr,
        _size: u32,
        reply: R,
    ) {
        log::debug!("getxattr({}, {name:?}) -> ENOSYS", ino.0);
        reply.error(fuser::Errno::ENOSYS);
    }

    pub(crate) fn do_listxattr<Q: Caller, R: RXattr>(
        &self,
        _req: &Q,
        ino: INodeNo,
        _size: u32,
        reply: R,
    ) {
        log::debug!("listxattr({}) -> ENOSYS", ino.0);
        reply.error(fuser::Errno::ENOSYS);
    }

    pub(crate) fn do_removexattr<Q: Caller, R: REmpty>(
        &self,
        _req: &Q,
        ino: INodeNo,
        name: &OsStr,
        reply: R,
    ) {
        log::debug!("removexattr({}, {name:?}) -> ENOSYS", ino.0);
        reply.error(fuser::Errno::ENOSYS);
    }

    pub(crate) fn do_access<Q: Caller, R: REmpty>(
        &self,
        req: &Q,
        ino: INodeNo,
        mask: AccessFlags,
        reply: R,
    ) {
        let p = &self.0;
        let r = p.guarded(
            "access",
            &[ino.0],
            format_args!("{}, mask {mask:?}", ino.0),
            || {
                let vn = p.node(ino)?;
                let mut m = 0;
                if mask.contains(AccessFlags::R_OK) {
                    m |= amode::VREAD;
                }
                if mask.contains(AccessFlags::W_OK) {
                    m |= amode::VWRITE;
                }
                if mask.contains(AccessFlags::X_OK) {
                    m |= amode::VEXEC;
                }
                if m == 0 {
                    vn.getattr().map(|_| ())
                } else {
                    vn.access(m, &P2k::cred(req))
                }
            },
        );
        P2k::reply_empty(reply, r);
    }
}

impl Filesystem for P2kFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let offered = config.capabilities();
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        for (flag, what) in WANTED {
            if config.add_capabilities(*flag).is_ok() {
                granted.push(*what);
            } else {
                refused.push(*what);
            }
        }
        let max_write = match config.set_max_write(MAX_WRITE) {
            Ok(_) => MAX_WRITE,
            Err(m) => {
                let _ = config.set_max_write(m);
                m
            }
        };
        // Ask for as much readahead as the kernel allows.
        let readahead = match config.set_max_readahead(u32::MAX) {
            Ok(_) => u32::MAX,
            Err(m) => {
                let _ = config.set_max_readahead(m);
                m
            }
        };
        let _ = config.set_max_background(MAX_BACKGROUND);
        // FUSE over io_uring: offered only where the kernel has it switched
        // on (module parameter fuse.enable_uring); needs our own descriptor.
        // Asked for only once the queues are started: a connection that
        // agreed on it waits for every queue to register.
        if offered.contains(InitFlags::FUSE_OVER_IO_URING) {
            if !self.0.tun.uring {
                refused.push("FUSE over io_uring (-o nouring)");
            } else if self.0.dev_fd.get().is_none() {
                refused.push(
                    "FUSE over io_uring (no descriptor of our own: not mounted by us as root)",
                );
            } else {
                match self.0.start_rings(max_write) {
                    Ok(()) => match config.add_capabilities(InitFlags::FUSE_OVER_IO_URING) {
                        Ok(()) => granted.push("FUSE over io_uring"),
                        Err(_) => {
                            log::warn!("FUSE over io_uring: the kernel took its offer back");
                        }
                    },
                    Err(e) => log::warn!("FUSE over io_uring offered but not started: {e}"),
                }
            }
        }
        let stateless = self.0.tun.ro_kernel_checked
            && offered.contains(InitFlags::FUSE_NO_OPEN_SUPPORT)
            && offered.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        self.0.stateless_open.store(stateless, Ordering::Relaxed);
        if stateless {
            granted.push("stateless opens (read-only, kernel-checked)");
        }
        log::info!(
            "FUSE INIT: kernel ABI {:?}, kernel offers {:?}; p2k uses: {}; not offered: {}; max_write {} (kernel may cap to max_pages), max_readahead {}",
            config.kernel_abi(),
            offered,
            granted.join(", "),
            if refused.is_empty() { "none".to_string() } else { refused.join(", ") },
            max_write,
            readahead
        );
        Ok(())
    }

    fn destroy(&mut self) {
        self.0.wb.wait_all();
        let (early, first) = self.0.wb.counts();
        log::info!(
            "write-behind: {early} writes answered before they were done, {first} done first"
        );
        log::debug!("FUSE session ended ({:?})", self.0);
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.do_lookup(req, parent, name, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.forget_node(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.do_getattr(_req, ino, _fh, reply);
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.do_setattr(
            req, ino, mode, uid, gid, size, atime, mtime, _ctime, fh, _crtime, _chgtime, _bkuptime,
            _flags, reply,
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.do_readlink(_req, ino, reply);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.do_mknod(req, parent, name, mode, umask, rdev, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.do_mkdir(req, parent, name, mode, umask, reply);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.do_unlink(req, parent, name, reply);
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.do_rmdir(req, parent, name, reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.do_symlink(req, parent, link_name, target, reply);
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.do_rename(req, parent, name, newparent, newname, flags, reply);
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.do_link(req, ino, newparent, newname, reply);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.do_open(req, ino, flags, reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.do_create(req, parent, name, mode, umask, flags, reply);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.do_read(_req, ino, fh, offset, size, _flags, _lock_owner, reply);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.do_write(
            _req,
            ino,
            fh,
            offset,
            data,
            _write_flags,
            _flags,
            _lock_owner,
            reply,
        );
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.do_flush(_req, ino, fh, _lock_owner, reply);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.do_release(_req, ino, fh, _flags, _lock_owner, _flush, reply);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.do_fsync(_req, ino, fh, datasync, reply);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.do_opendir(req, ino, flags, reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.do_readdir(_req, ino, fh, offset, reply);
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.do_readdirplus(req, ino, fh, offset, reply);
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.do_releasedir(_req, ino, fh, _flags, reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.do_fsyncdir(_req, ino, fh, datasync, reply);
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.do_statfs(_req, ino, reply);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.do_setxattr(_req, ino, name, _value, _flags, _position, reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, _size: u32, reply: ReplyXattr) {
        self.do_getxattr(_req, ino, name, _size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, _size: u32, reply: ReplyXattr) {
        self.do_listxattr(_req, ino, _size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.do_removexattr(_req, ino, name, reply);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.do_access(req, ino, mask, reply);
    }
}

/// Attributes for entries that carry none (negative lookups, `.`/`..` in
/// readdirplus, which the kernel does not link).
fn empty_vattr() -> Vattr {
    use rumpkern::Timespec;
    Vattr {
        vtype: VType::Reg,
        mode: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        fsid: 0,
        ino: 0,
        size: 0,
        blksize: 4096,
        bytes: 0,
        atime: Timespec::ZERO,
        mtime: Timespec::ZERO,
        ctime: Timespec::ZERO,
        birthtime: Timespec::ZERO,
        gen: 0,
        rdev: 0,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        // Root inode 2 (ffs, ext2): root and inode 1 trade places.
        assert_eq!(map_ino(2, 2), 1);
        assert_eq!(map_ino(2, 1), 2);
        assert_eq!(map_ino(2, 77), 77);
        // Root inode 1 (tmpfs): identity.
        assert_eq!(map_ino(1, 1), 1);
        assert_eq!(map_ino(1, 5), 5);
        // Root inode 0: inode 1 would become 0, which FUSE forbids.
        assert_eq!(map_ino(0, 0), 1);
        assert_eq!(map_ino(0, 1), ALIAS_ID);
        // A non-root inode 0.
        assert_eq!(map_ino(2, 0), ALIAS_ID);
        for root in [1u64, 2, 128, 1 << 40] {
            for ino in [1u64, 2, 3, 128, 1 << 40] {
                assert_eq!(
                    map_ino(root, map_ino(root, ino)),
                    ino,
                    "involution: root {root}, ino {ino}"
                );
            }
        }
    }

    #[test]
    fn ioflags() {
        assert_eq!(io_flags(oflags::O_WRONLY), 0);
        assert_eq!(
            io_flags(oflags::O_WRONLY | oflags::O_APPEND),
            ioflag::IO_APPEND
        );
        assert_eq!(io_flags(oflags::O_RDWR | oflags::O_SYNC), ioflag::IO_SYNC);
        assert_eq!(io_flags(oflags::O_RDWR | libc::O_DSYNC), ioflag::IO_DSYNC);
    }
}
