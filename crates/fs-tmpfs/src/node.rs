//! tmpfs nodes and the per-mount node table (NetBSD `tmpfs_subr.c`,
//! `tmpfs.h`).
//!
//! # Data structures
//!
//! A [`TmpfsMount`] owns a table `ino → Arc<Node>` of every live node and the
//! space/inode counters. Inode numbers come from a 64-bit counter and are
//! never reused, so a stale vnode or file handle can never alias a newer file.
//!
//! A [`Node`] has an immutable inode number and type, and its mutable state
//! (attributes and content) in `Node::inner`. Regular file data is sparse: a
//! `BTreeMap` of [`PAGE_SIZE`] pages, holes are absent pages and read as
//! zeros. A directory keeps its entries in a `BTreeMap` keyed by a cookie that
//! is never reused within the directory (readdir offsets stay valid across
//! concurrent inserts and removes) plus a `HashMap` name → cookie for lookup.
//!
//! # Locking
//!
//! Lock order (after the vnode locks the `VnodeRef` wrappers take):
//!
//! 1. at most one `Node::inner` mutex at a time;
//! 2. `TmpfsMount::table` (a leaf: nothing is locked while it is held);
//!
//! and never the vnode cache (`Mount::vcache_get`, dropping a `VnodeRef`)
//! while either is held: `inactive`/`reclaim` run under the vcache mutex and
//! take these locks.
//!
//! Directory contents change only under the directory's exclusive vnode lock
//! (create, remove, rename, ...), so a driver operation may read a directory,
//! drop its mutex and come back to it without the entry set changing. A
//! directory's *removal* (rmdir, rename over it) is decided under that
//! directory's own mutex (emptiness check and `nlink = 0` together), and
//! creation in a directory checks `nlink != 0` under the same mutex.
//!
//! # Space accounting
//!
//! The `size=` limit covers data and metadata: every allocated data page
//! ([`PAGE_SIZE`]), every node ([`NODE_COST`]), every directory entry
//! ([`DIRENT_COST`] + name length) and every symlink target (its length).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rumpkern::types::mode::ALLPERMS;
use rumpkern::{Errno, KResult, Timespec, Uio, VType, Vattr};

/// Size of one data page of a regular file.
pub const PAGE_SIZE: usize = 4096;
/// Largest file size (and write end offset): `i64::MAX`, what `off_t` holds.
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;
/// Largest link count of a node (files: hard links; directories:
/// 2 + subdirectories). EMLINK beyond.
pub const LINK_MAX: u32 = i32::MAX as u32;
/// Longest symbolic link target (PATH_MAX - 1).
pub const SYMLINK_MAX: usize = 4095;
/// Inode number of the root directory.
pub const ROOT_INO: u64 = 2;
/// Bytes charged against the size limit for each node.
pub const NODE_COST: u64 = 128;
/// Bytes charged for each directory entry, on top of its name length.
pub const DIRENT_COST: u64 = 16;
/// Directory size reported per entry (`.` and `..` included).
pub const DIR_ENTRY_SIZE: u64 = 32;
/// First cookie of a real entry; 1 and 2 continue after `.` and `..`.
const FIRST_COOKIE: u64 = 3;

/// Lock a mutex, going on after a panic elsewhere poisoned it: node state is
/// kept consistent at every step, and p2k turns a driver panic into EIO.
pub(crate) fn lk<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes a directory entry named `name` costs against the size limit.
pub(crate) fn dirent_cost(name: &[u8]) -> u64 {
    DIRENT_COST + name.len() as u64
}

/// Sparse regular file data.
#[derive(Default)]
pub(crate) struct FileData {
    /// Page index → page; absent pages are holes.
    pub pages: BTreeMap<u64, Box<[u8]>>,
}

/// One directory entry.
#[derive(Clone)]
pub(crate) struct DirEnt {
    pub name: Vec<u8>,
    pub ino: u64,
    pub vtype: VType,
}

/// Directory contents.
pub(crate) struct DirData {
    /// Cookie → entry, in creation order.
    pub entries: BTreeMap<u64, DirEnt>,
    /// Name → cookie.
    pub names: HashMap<Vec<u8>, u64>,
    /// Next cookie to hand out (never reused).
    pub next_cookie: u64,
    /// Inode of `..` (the root's is itself).
    pub parent: u64,
}

impl DirData {
    pub fn new(parent: u64) -> DirData {
        DirData {
            entries: BTreeMap::new(),
            names: HashMap::new(),
            next_cookie: FIRST_COOKIE,
            parent,
        }
    }

    /// The entry named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&DirEnt> {
        self.names.get(name).and_then(|c| self.entries.get(c))
    }

    /// Add an entry (the caller checked it is absent).
    pub fn insert(&mut self, name: &[u8], ino: u64, vtype: VType) {
        let c = self.next_cookie;
        self.next_cookie += 1;
        self.entries.insert(
            c,
            DirEnt {
                name: name.to_vec(),
                ino,
                vtype,
            },
        );
        self.names.insert(name.to_vec(), c);
    }

    /// Remove the entry named `name`, returning it.
    pub fn remove(&mut self, name: &[u8]) -> Option<DirEnt> {
        let c = self.names.remove(name)?;
        self.entries.remove(&c)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a node holds besides its attributes.
pub(crate) enum Content {
    File(FileData),
    Dir(DirData),
    Link(Vec<u8>),
    /// Devices, fifos, sockets.
    Special,
}

/// Mutable state of a node (guarded by `Node::inner`).
pub(crate) struct NodeInner {
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub birthtime: Timespec,
    pub rdev: u64,
    pub content: Content,
}

impl NodeInner {
    pub fn dir(&self) -> KResult<&DirData> {
        match &self.content {
            Content::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    pub fn dir_mut(&mut self) -> KResult<&mut DirData> {
        match &mut self.content {
            Content::Dir(d) => Ok(d),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Set mtime and ctime to `now` (a content change).
    pub fn touch_modify(&mut self, now: Timespec) {
        self.mtime = now;
        self.ctime = now;
    }

    /// Bytes this node's content costs against the size limit.
    fn content_cost(&self) -> u64 {
        match &self.content {
            Content::File(f) => f.pages.len() as u64 * PAGE_SIZE as u64,
            Content::Link(t) => t.len() as u64,
            Content::Dir(d) => d.entries.values().map(|e| dirent_cost(&e.name)).sum(),
            Content::Special => 0,
        }
    }
}

/// One file, directory, link or special node.
pub struct Node {
    pub(crate) ino: u64,
    pub(crate) vtype: VType,
    pub(crate) inner: Mutex<NodeInner>,
}

impl Node {
    pub fn ino(&self) -> u64 {
        self.ino
    }

    pub fn vtype(&self) -> VType {
        self.vtype
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeInner> {
        lk(&self.inner)
    }

    /// Attributes as getattr reports them (`n` is this node's locked state).
    pub(crate) fn vattr(&self, n: &NodeInner, fsid: u64) -> Vattr {
        let (size, bytes) = match &n.content {
            Content::File(f) => (n.size, f.pages.len() as u64 * PAGE_SIZE as u64),
            Content::Dir(d) => ((d.entries.len() as u64 + 2) * DIR_ENTRY_SIZE, 0),
            Content::Link(t) => (t.len() as u64, 0),
            Content::Special => (0, 0),
        };
        Vattr {
            vtype: self.vtype,
            mode: n.mode & ALLPERMS,
            nlink: n.nlink,
            uid: n.uid,
            gid: n.gid,
            fsid,
            ino: self.ino,
            size,
            blksize: PAGE_SIZE as u32,
            bytes,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            birthtime: n.birthtime,
            gen: 1,
            rdev: n.rdev,
            flags: 0,
        }
    }
}

/// Attributes of a node about to be created.
pub(crate) struct NewNode {
    pub vtype: VType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub content: Content,
}

/// The mount-wide state of one tmpfs instance.
pub struct TmpfsMount {
    /// Every live node (nlink > 0, or still referenced by a vnode).
    table: Mutex<HashMap<u64, Arc<Node>>>,
    next_ino: AtomicU64,
    /// Bytes charged (data pages, nodes, entries, link targets).
    used: AtomicU64,
    /// Size limit in bytes; 0 = unlimited.
    size_limit: u64,
    /// Live nodes.
    nodes: AtomicU64,
    /// Node limit; 0 = unlimited.
    max_nodes: u64,
    /// `noatime`: reads do not update atime.
    pub(crate) noatime: bool,
}

impl TmpfsMount {
    /// A new instance with its root directory (`uid`, `gid`, `mode`).
    pub(crate) fn new(
        size_limit: u64,
        max_nodes: u64,
        uid: u32,
        gid: u32,
        mode: u32,
        noatime: bool,
    ) -> Arc<TmpfsMount> {
        let tm = Arc::new(TmpfsMount {
            table: Mutex::new(HashMap::new()),
            next_ino: AtomicU64::new(ROOT_INO + 1),
            used: AtomicU64::new(0),
            size_limit,
            nodes: AtomicU64::new(0),
            max_nodes,
            noatime,
        });
        let now = Timespec::now();
        let root = Node {
            ino: ROOT_INO,
            vtype: VType::Dir,
            inner: Mutex::new(NodeInner {
                mode: mode & ALLPERMS,
                uid,
                gid,
                nlink: 2,
                size: 0,
                atime: now,
                mtime: now,
                ctime: now,
                birthtime: now,
                rdev: 0,
                content: Content::Dir(DirData::new(ROOT_INO)),
            }),
        };
        // The root is charged even when the limit is smaller than a node.
        tm.used.fetch_add(NODE_COST, Ordering::AcqRel);
        tm.nodes.fetch_add(1, Ordering::AcqRel);
        lk(&tm.table).insert(ROOT_INO, Arc::new(root));
        tm
    }

    /// Number of live nodes (the root included). A node leaves when its link
    /// count is zero and no vnode references it any more.
    pub fn node_count(&self) -> u64 {
        self.nodes.load(Ordering::Acquire)
    }

    /// Bytes charged against the size limit.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The size limit in bytes (0 = unlimited).
    pub fn size_limit(&self) -> u64 {
        self.size_limit
    }

    /// The node limit (0 = unlimited).
    pub fn max_nodes(&self) -> u64 {
        self.max_nodes
    }

    /// Is inode `ino` in the node table?
    pub fn contains(&self, ino: u64) -> bool {
        lk(&self.table).contains_key(&ino)
    }

    /// The node `ino`, if live.
    pub(crate) fn get(&self, ino: u64) -> Option<Arc<Node>> {
        lk(&self.table).get(&ino).cloned()
    }

    /// Charge `n` bytes. Errors: ENOSPC past the size limit.
    pub(crate) fn reserve(&self, n: u64) -> KResult<()> {
        let limit = self.size_limit;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                let nu = u.checked_add(n)?;
                if limit != 0 && nu > limit {
                    None
                } else {
                    Some(nu)
                }
            })
            .map(|_| ())
            .map_err(|_| Errno::ENOSPC)
    }

    /// Charge `n` bytes whatever the limit (operations that must not fail
    /// for space, like rename to a longer name).
    pub(crate) fn charge(&self, n: u64) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    /// Give back `n` charged bytes.
    pub(crate) fn release(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Allocate a node with link count 1 (2 for a directory), all four times
    /// `now`, and enter it in the table. Errors: ENOSPC (size or node limit).
    pub(crate) fn alloc_node(&self, nn: NewNode, now: Timespec) -> KResult<Arc<Node>> {
        let max = self.max_nodes;
        self.nodes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                if max != 0 && c >= max {
                    None
                } else {
                    Some(c + 1)
                }
            })
            .map_err(|_| Errno::ENOSPC)?;
        let extra = match &nn.content {
            Content::Link(t) => t.len() as u64,
            _ => 0,
        };
        if let Err(e) = self.reserve(NODE_COST + extra) {
            self.nodes.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        let ino = self.next_ino.fetch_add(1, Ordering::AcqRel);
        let size = match &nn.content {
            Content::Link(t) => t.len() as u64,
            _ => 0,
        };
        let node = Arc::new(Node {
            ino,
            vtype: nn.vtype,
            inner: Mutex::new(NodeInner {
                mode: nn.mode & ALLPERMS,
                uid: nn.uid,
                gid: nn.gid,
                nlink: if nn.vtype == VType::Dir { 2 } else { 1 },
                size,
                atime: now,
                mtime: now,
                ctime: now,
                birthtime: now,
                rdev: nn.rdev,
                content: nn.content,
            }),
        });
        lk(&self.table).insert(ino, node.clone());
        Ok(node)
    }

    /// Free a node whose link count is zero: its content is released and it
    /// leaves the table. The root is never freed. Idempotent.
    pub(crate) fn free_node(&self, node: &Node) {
        if node.ino == ROOT_INO {
            return;
        }
        let cost = {
            let mut n = node.lock();
            if n.nlink != 0 {
                return;
            }
            let c = n.content_cost();
            n.content = Content::Special;
            n.size = 0;
            c
        };
        let removed = lk(&self.table).remove(&node.ino).is_some();
        if removed {
            self.release(cost + NODE_COST);
            self.nodes.fetch_sub(1, Ordering::AcqRel);
        } else {
            self.release(cost);
        }
    }

    /// Drop every node (unmount): memory goes now, not when the last
    /// `Arc<Mount>` does.
    pub(crate) fn clear(&self) {
        let nodes: Vec<Arc<Node>> = lk(&self.table).drain().map(|(_, n)| n).collect();
        for n in nodes {
            let mut g = n.lock();
            g.content = Content::Special;
        }
        self.used.store(0, Ordering::Release);
        self.nodes.store(0, Ordering::Release);
    }
}

// ----- regular file data -----

/// Read `n.size`-bounded data at `uio.offset` into `uio`; holes read as zeros.
pub(crate) fn file_read(n: &NodeInner, uio: &mut Uio<'_>) -> KResult<()> {
    let Content::File(f) = &n.content else {
        return Err(Errno::EINVAL);
    };
    let size = n.size;
    while uio.resid() > 0 && uio.offset < size {
        let off = uio.offset;
        let pidx = off / PAGE_SIZE as u64;
        let poff = (off % PAGE_SIZE as u64) as usize;
        let len = ((PAGE_SIZE - poff) as u64)
            .min(size - off)
            .min(uio.resid() as u64) as usize;
        let moved = match f.pages.get(&pidx) {
            Some(p) => uio.uiomove_out(&p[poff..poff + len]),
            None => uio.uiomove_zero(len),
        };
        if moved == 0 {
            break;
        }
    }
    Ok(())
}

/// Write `uio` at `uio.offset`, allocating pages (charged to `tm`) and
/// growing `n.size`, stopping at [`MAX_FILE_SIZE`] (EFBIG). Returns the first
/// error (ENOSPC, EFBIG) after writing what fit, with `uio.resid()` showing
/// what is left; the caller turns a partial write into success.
pub(crate) fn file_write(tm: &TmpfsMount, n: &mut NodeInner, uio: &mut Uio<'_>) -> KResult<()> {
    let NodeInner { content, size, .. } = n;
    let Content::File(f) = content else {
        return Err(Errno::EINVAL);
    };
    let mut err = None;
    while uio.resid() > 0 {
        let off = uio.offset;
        if off >= MAX_FILE_SIZE {
            err = Some(Errno::EFBIG);
            break;
        }
        let pidx = off / PAGE_SIZE as u64;
        let poff = (off % PAGE_SIZE as u64) as usize;
        let len = ((PAGE_SIZE - poff) as u64)
            .min(uio.resid() as u64)
            .min(MAX_FILE_SIZE - off) as usize;
        let page = match f.pages.entry(pidx) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                if let Err(er) = tm.reserve(PAGE_SIZE as u64) {
                    err = Some(er);
                    break;
                }
                e.insert(vec![0u8; PAGE_SIZE].into_boxed_slice())
            }
        };
        let moved = uio.uiomove_in(&mut page[poff..poff + len]);
        if moved == 0 {
            break;
        }
        if uio.offset > *size {
            *size = uio.offset;
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Set the file size to `new`: pages past the end are freed and the tail of
/// the last partial page zeroed (so growing again reads zeros); growing
/// allocates nothing.
pub(crate) fn file_truncate(tm: &TmpfsMount, n: &mut NodeInner, new: u64) -> KResult<()> {
    if new > MAX_FILE_SIZE {
        return Err(Errno::EFBIG);
    }
    let NodeInner { content, size, .. } = n;
    let Content::File(f) = content else {
        return Err(Errno::EINVAL);
    };
    if new < *size {
        let first_gone = new.div_ceil(PAGE_SIZE as u64);
        let gone = f.pages.split_off(&first_gone);
        tm.release(gone.len() as u64 * PAGE_SIZE as u64);
        let poff = (new % PAGE_SIZE as u64) as usize;
        if poff != 0 {
            if let Some(p) = f.pages.get_mut(&(new / PAGE_SIZE as u64)) {
                p[poff..].fill(0);
            }
        }
    }
    *size = new;
    Ok(())
}
