//! The vnode layer: vnodes, the vnode cache, reference counts, the vnode
//! lock and the vnode operations vector.
//!
//! # Reference counting
//!
//! A [`VnodeRef`] is one counted reference (NetBSD `v_usecount`): cloning it is
//! `vref`, dropping it is `vrele`. When the last reference goes, the vnode is
//! *inactivated* ([`VnodeOps::inactive`]); if that says the vnode should be
//! recycled (for example its link count is zero) it is *reclaimed* at once
//! ([`VnodeOps::reclaim`]) and leaves the cache, otherwise it stays cached
//! without references on an LRU list and is reclaimed when the list is longer
//! than the mount's limit or at unmount.
//!
//! # The vnode cache
//!
//! Keyed by inode number inside one mount (the mount is the other half of the
//! key: every mount has its own cache). [`Mount::vcache_get`] returns the cached
//! vnode or loads it once: concurrent callers for the same number wait for the
//! first loader (a `Loading` marker and a condvar), so there is never more than
//! one vnode per (mount, inode).
//!
//! # Locking
//!
//! Lock order, outermost first (also in `docs/architecture.md`):
//!
//! 1. the mount's rename lock (`Mount::rename_lock`, only rename takes it);
//! 2. vnode locks: a parent directory before its child; two directories that
//!    are not parent and child (rename) in increasing inode number;
//! 3. driver-internal locks (node data, allocation maps);
//! 4. buffer locks (`buf.rs`);
//! 5. the vcache mutex (`VCache::state`), held only briefly and never across
//!    a driver call: `inactive` and `reclaim` run outside it while the vnode
//!    is marked busy (a `vcache_get` for that number waits). A driver must
//!    not drop its last reference to a vnode while it holds a buffer that
//!    the vnode's `inactive` could need.
//!
//! The vnode lock is a reader/writer lock taken by the wrappers on
//! [`VnodeRef`] (the `VOP_*` calls), never by drivers themselves. Each method
//! of [`VnodeOps`] documents the lock state on entry as in NetBSD's
//! `vnode_if.src`: `L` = locked exclusive, `S` = locked shared, `U` = unlocked.
//! The state is the same on success and on error (our wrappers unlock).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::cred::Cred;
use crate::errno::{Errno, KResult};
use crate::genfs;
use crate::types::*;
use crate::uio::Uio;
use crate::vfs::Mount;

/// Callback readdir feeds entries to; returns `false` when it wants no more
/// (its buffer is full); the entry it refused must be offered again on the
/// next call with the same offset.
pub type DirFiller<'a> = dyn FnMut(&DirEntry<'_>) -> bool + 'a;

/// The vnode operations vector, implemented by each driver's in-memory node.
///
/// `self` is the node's private data (NetBSD `v_data`); `vp` is the vnode that
/// carries it. Every method defaults to `EOPNOTSUPP`, as NetBSD vectors start
/// from `vn_default_error`. Name arguments are one path component: never
/// empty, no `/`, at most [`NAME_MAX`] bytes (the wrappers check); `.` and `..`
/// reach `lookup` only.
///
/// Permission checks are done by the wrappers (see [`VnodeRef`]) before the
/// driver is called, with [`genfs`] helpers; drivers check what only they can
/// know (e.g. a directory being non-empty).
#[allow(unused_variables)]
pub trait VnodeOps: Send + Sync + 'static {
    /// The node data as `Any`, so a driver can reach its own type in another
    /// vnode (rename's target directory, link's source).
    fn as_any(&self) -> &dyn Any;

    /// Attributes. `vp`: S.
    fn getattr(&self, vp: &Vnode) -> KResult<Vattr>;

    /// Change attributes. `vp`: L. Ownership and permission rules have been
    /// checked by the wrapper (genfs::setattr_check); `size` only for regular
    /// files (EISDIR for directories is given by the wrapper).
    /// Errors: EROFS, EFBIG, ENOSPC, EIO.
    fn setattr(&self, vp: &Vnode, sa: &SetAttr, cred: &Cred) -> KResult<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Find `name` in directory `dvp` and return a referenced vnode.
    /// `dvp`: S. `.` returns `dvp` itself, `..` the parent (root's parent is
    /// root). Errors: ENOENT, ENOTDIR, EIO.
    fn lookup(&self, dvp: &Vnode, name: &[u8]) -> KResult<VnodeRef> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Create a regular file `name` in `dvp`, owned by `cred` (group per the
    /// directory's setgid bit or `cred.gid`). `dvp`: L.
    /// Errors: EEXIST, ENOSPC, EMLINK, EROFS, EIO.
    fn create(&self, dvp: &Vnode, name: &[u8], mode: u32, cred: &Cred) -> KResult<VnodeRef> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Create a device node, fifo or socket. `dvp`: L. Errors as create.
    fn mknod(&self, dvp: &Vnode, name: &[u8], vtype: VType, mode: u32, rdev: u64, cred: &Cred) -> KResult<VnodeRef> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Create a directory. `dvp`: L. Errors as create.
    fn mkdir(&self, dvp: &Vnode, name: &[u8], mode: u32, cred: &Cred) -> KResult<VnodeRef> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Create a symbolic link to `target` (mode 0777). `dvp`: L. Errors as create
    /// plus ENAMETOOLONG for a target longer than the format allows.
    fn symlink(&self, dvp: &Vnode, name: &[u8], target: &[u8], cred: &Cred) -> KResult<VnodeRef> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Add a hard link `name` in `dvp` to `vp` (not a directory: the wrapper
    /// refuses those with EPERM). `dvp`: L, `vp`: L.
    /// Errors: EEXIST, EMLINK, ENOSPC, EXDEV (other mount), EIO.
    fn link(&self, dvp: &Vnode, vp: &Vnode, name: &[u8]) -> KResult<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Remove the non-directory entry `name` from `dvp`. `dvp`: L. The target
    /// stays alive while referenced (open-but-unlinked files).
    /// Errors: ENOENT, EISDIR (Linux `unlink` of a directory), EIO.
    fn remove(&self, dvp: &Vnode, name: &[u8]) -> KResult<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Remove the empty directory `name` from `dvp`. `dvp`: L.
    /// Errors: ENOENT, ENOTDIR, ENOTEMPTY, EBUSY (mount root), EIO.
    fn rmdir(&self, dvp: &Vnode, name: &[u8]) -> KResult<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Rename `fname` in `fdvp` to `tname` in `tdvp`, replacing a target of a
    /// compatible type. The mount's rename lock is held; `fdvp`, `tdvp`: L
    /// (one lock when they are the same vnode). The wrapper has checked
    /// write permission on both directories, the sticky rules, and that the
    /// names are not `.`/`..`; the driver checks types (EISDIR, ENOTDIR,
    /// ENOTEMPTY) and that a directory is not moved into its own subtree
    /// (EINVAL; `genfs::rename_check_ancestry` does it for any driver).
    /// Renaming an entry onto a hard link of itself succeeds and does nothing.
    fn rename(&self, fdvp: &Vnode, fname: &[u8], tdvp: &Vnode, tname: &[u8], cred: &Cred) -> KResult<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// A file is opened with `flags` (O_*). `vp`: U. Access was checked.
    fn open(&self, vp: &Vnode, flags: i32, cred: &Cred) -> KResult<()> {
        Ok(())
    }

    /// Last close of an open (one per open). `vp`: U.
    fn close(&self, vp: &Vnode, flags: i32) -> KResult<()> {
        Ok(())
    }

    /// Read at `uio.offset`; stops at end of file (a short read, not an
    /// error). `vp`: S. Errors: EISDIR, EIO.
    fn read(&self, vp: &Vnode, uio: &mut Uio<'_>, ioflag: u32) -> KResult<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Write at `uio.offset` (at end of file with IO_APPEND), extending the
    /// file. A write that runs out of space after writing something returns
    /// Ok with `uio.resid()` showing what is left. `vp`: L.
    /// Errors: ENOSPC, EFBIG, EROFS, EIO.
    fn write(&self, vp: &Vnode, uio: &mut Uio<'_>, ioflag: u32, cred: &Cred) -> KResult<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Make the file's data (and metadata unless `datasync`) durable.
    /// `vp`: L.
    fn fsync(&self, vp: &Vnode, datasync: bool) -> KResult<()> {
        Ok(())
    }

    /// List directory entries from cookie `offset` (0 = start), `.` and `..`
    /// included, feeding `filler` until it returns false or the directory
    /// ends. `vp`: S. Errors: ENOTDIR, EIO.
    fn readdir(&self, vp: &Vnode, offset: u64, filler: &mut DirFiller<'_>) -> KResult<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Symbolic link target. `vp`: S. Errors: EINVAL (not a link), EIO.
    fn readlink(&self, vp: &Vnode) -> KResult<Vec<u8>> {
        Err(Errno::EOPNOTSUPP)
    }

    /// The last reference went away. Return `true` to have the vnode
    /// reclaimed now (e.g. link count 0: free the inode here). `vp`: no
    /// reference exists and the vnode is busy in the vcache (a `vcache_get`
    /// for this number waits until inactive/reclaim are done), so this must
    /// not call `vcache_get` for its own number.
    fn inactive(&self, vp: &Vnode) -> KResult<bool> {
        Ok(false)
    }

    /// The vnode leaves the cache: write back what is dirty, free memory.
    /// Same context as `inactive`.
    fn reclaim(&self, vp: &Vnode) -> KResult<()> {
        Ok(())
    }

    /// Logical block `lbn` of the file to a device block (None = hole).
    /// `vp`: S.
    fn bmap(&self, vp: &Vnode, lbn: u64) -> KResult<Option<u64>> {
        Err(Errno::EOPNOTSUPP)
    }

    /// POSIX pathconf value. `vp`: U. Defaults from genfs.
    fn pathconf(&self, vp: &Vnode, name: PathConf) -> KResult<i64> {
        genfs::pathconf(name)
    }
}

/// A vnode: the kernel's handle on one file of one mount.
pub struct Vnode {
    ino: u64,
    vtype: VType,
    mount: Weak<Mount>,
    /// The vnode lock (taken by the `VnodeRef` wrappers only).
    lock: RwLock<()>,
    /// Counted references (`v_usecount`). Changed from 0 only under the vcache mutex.
    usecount: AtomicUsize,
    /// Set once reclaimed; operations on a stale vnode give EBADF.
    reclaimed: AtomicBool,
    /// Generation in the free list (for LRU bookkeeping).
    free_seq: AtomicU64,
    /// Being inactivated or reclaimed (outside the vcache mutex): vcache_get
    /// waits until this clears. Changed only under the vcache mutex.
    busy: AtomicBool,
    data: Box<dyn VnodeOps>,
}

impl fmt::Debug for Vnode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vnode(ino {}, {:?}, use {})", self.ino, self.vtype, self.usecount.load(Ordering::Relaxed))
    }
}

impl Vnode {
    pub fn ino(&self) -> u64 {
        self.ino
    }

    pub fn vtype(&self) -> VType {
        self.vtype
    }

    /// The driver's node data.
    pub fn ops(&self) -> &dyn VnodeOps {
        &*self.data
    }

    /// The driver's node data as its concrete type.
    pub fn data<T: 'static>(&self) -> Option<&T> {
        self.data.as_any().downcast_ref::<T>()
    }

    /// The mount this vnode belongs to.
    ///
    /// A vnode is only reachable through a reference held by someone who also
    /// holds the mount (p2k, ukfs, a driver operation in progress), so the
    /// mount is alive; `None` only after a forced teardown.
    pub fn mount(&self) -> Option<Arc<Mount>> {
        self.mount.upgrade()
    }

    /// Current reference count (for tests and diagnostics).
    pub fn usecount(&self) -> usize {
        self.usecount.load(Ordering::Acquire)
    }

    pub fn is_reclaimed(&self) -> bool {
        self.reclaimed.load(Ordering::Acquire)
    }

    /// Take the vnode lock shared (`LK_SHARED`).
    pub fn lock_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read()
    }

    /// Take the vnode lock exclusive (`LK_EXCLUSIVE`).
    pub fn lock_exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.lock.write()
    }

    /// Is the vnode lock held by anyone? (for `debug_assert!`s)
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    pub fn is_locked_exclusive(&self) -> bool {
        self.lock.is_locked_exclusive()
    }
}

/// One counted reference to a vnode: `clone` = vref, `drop` = vrele.
pub struct VnodeRef(Arc<Vnode>);

impl Deref for VnodeRef {
    type Target = Vnode;
    fn deref(&self) -> &Vnode {
        &self.0
    }
}

impl fmt::Debug for VnodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Clone for VnodeRef {
    fn clone(&self) -> Self {
        // We already hold a reference, so the count is >= 1 and the vnode
        // cannot be inactivated concurrently.
        self.0.usecount.fetch_add(1, Ordering::AcqRel);
        VnodeRef(self.0.clone())
    }
}

impl Drop for VnodeRef {
    fn drop(&mut self) {
        let vp = &self.0;
        // Fast path: not the last reference.
        let mut cur = vp.usecount.load(Ordering::Acquire);
        while cur > 1 {
            match vp.usecount.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(c) => cur = c,
            }
        }
        // Possibly the last: decide under the vcache mutex so vcache_get
        // cannot revive it half-way.
        match vp.mount.upgrade() {
            Some(mp) => mp.vcache.vrele_last(vp),
            None => {
                vp.usecount.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl PartialEq for VnodeRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for VnodeRef {}

impl VnodeRef {
    /// Same vnode?
    pub fn same(&self, other: &Vnode) -> bool {
        std::ptr::eq(&*self.0, other)
    }

    fn check_live(&self) -> KResult<()> {
        if self.is_reclaimed() {
            Err(Errno::EBADF)
        } else {
            Ok(())
        }
    }

    fn mnt(&self) -> KResult<Arc<Mount>> {
        self.mount().ok_or(Errno::EIO)
    }

    fn check_writable(&self) -> KResult<Arc<Mount>> {
        let mp = self.mnt()?;
        if mp.is_rdonly() {
            return Err(Errno::EROFS);
        }
        Ok(mp)
    }

    // ----- VOP wrappers: locking and the "syscall layer" checks -----

    /// VOP_GETATTR.
    pub fn getattr(&self) -> KResult<Vattr> {
        self.check_live()?;
        let _l = self.lock_shared();
        self.data.getattr(self)
    }

    /// VOP_ACCESS: may `cred` access this vnode with `mode` (VREAD|VWRITE|VEXEC)?
    /// VWRITE on a read-only mount gives EROFS for files, dirs and links.
    pub fn access(&self, mode: u32, cred: &Cred) -> KResult<()> {
        self.check_live()?;
        if mode & amode::VWRITE != 0 && matches!(self.vtype, VType::Reg | VType::Dir | VType::Lnk) {
            self.check_writable()?;
        }
        let va = self.getattr()?;
        genfs::access(&va, mode, cred)
    }

    /// VOP_SETATTR with the ownership/permission rules of chmod, chown,
    /// truncate and utimes applied first. `has_write_fd`: the caller truncates
    /// through a descriptor opened for writing (ftruncate), so write
    /// permission was checked at open.
    pub fn setattr(&self, sa: &SetAttr, cred: &Cred, has_write_fd: bool) -> KResult<()> {
        self.check_live()?;
        if sa.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        let _l = self.lock_exclusive();
        let va = self.data.getattr(self)?;
        let sa = genfs::setattr_check(&va, sa, cred, has_write_fd)?;
        if sa.is_empty() {
            return Ok(());
        }
        self.data.setattr(self, &sa, cred)
    }

    /// VOP_LOOKUP with VEXEC checked on the directory.
    pub fn lookup(&self, name: &[u8], cred: &Cred) -> KResult<VnodeRef> {
        self.check_live()?;
        if self.vtype != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        genfs::check_name(name, true)?;
        let _l = self.lock_shared();
        let va = self.data.getattr(self)?;
        genfs::access(&va, amode::VEXEC, cred)?;
        if name == b"." {
            return Ok(self.clone());
        }
        self.data.lookup(self, name)
    }

    /// Common checks for operations that add an entry to this directory.
    fn dir_modify_check(&self, name: &[u8], cred: &Cred) -> KResult<()> {
        self.check_live()?;
        if self.vtype != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        genfs::check_name(name, false)?;
        self.check_writable()?;
        let va = self.data.getattr(self)?;
        genfs::access(&va, amode::VWRITE | amode::VEXEC, cred)
    }

    /// Fail with EEXIST if `name` exists in this (locked) directory.
    fn check_absent(&self, name: &[u8]) -> KResult<()> {
        match self.data.lookup(self, name) {
            Ok(_) => Err(Errno::EEXIST),
            Err(e) if e == Errno::ENOENT => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// VOP_CREATE (regular file).
    pub fn create(&self, name: &[u8], mode: u32, cred: &Cred) -> KResult<VnodeRef> {
        let _l = self.lock_exclusive();
        self.dir_modify_check(name, cred)?;
        self.check_absent(name)?;
        self.data.create(self, name, mode & mode::ALLPERMS, cred)
    }

    /// VOP_MKNOD (devices, fifos, sockets). Device nodes need root.
    pub fn mknod(&self, name: &[u8], vtype: VType, mode: u32, rdev: u64, cred: &Cred) -> KResult<VnodeRef> {
        let _l = self.lock_exclusive();
        self.dir_modify_check(name, cred)?;
        match vtype {
            VType::Chr | VType::Blk if !cred.is_root() => return Err(Errno::EPERM),
            VType::Chr | VType::Blk | VType::Fifo | VType::Sock => {}
            VType::Reg => {
                drop(_l);
                return self.create(name, mode, cred);
            }
            VType::Dir | VType::Lnk => return Err(Errno::EINVAL),
        }
        self.check_absent(name)?;
        self.data.mknod(self, name, vtype, mode & mode::ALLPERMS, rdev, cred)
    }

    /// VOP_MKDIR.
    pub fn mkdir(&self, name: &[u8], mode: u32, cred: &Cred) -> KResult<VnodeRef> {
        let _l = self.lock_exclusive();
        self.dir_modify_check(name, cred)?;
        self.check_absent(name)?;
        self.data.mkdir(self, name, mode & mode::ALLPERMS, cred)
    }

    /// VOP_SYMLINK.
    pub fn symlink(&self, name: &[u8], target: &[u8], cred: &Cred) -> KResult<VnodeRef> {
        let _l = self.lock_exclusive();
        self.dir_modify_check(name, cred)?;
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.check_absent(name)?;
        self.data.symlink(self, name, target, cred)
    }

    /// VOP_LINK: a new name `name` in this directory for `vp`.
    pub fn link(&self, vp: &VnodeRef, name: &[u8], cred: &Cred) -> KResult<()> {
        if vp.vtype == VType::Dir {
            return Err(Errno::EPERM);
        }
        match (self.mount(), vp.mount()) {
            (Some(a), Some(b)) if Arc::ptr_eq(&a, &b) => {}
            _ => return Err(Errno::EXDEV),
        }
        let _l = self.lock_exclusive();
        self.dir_modify_check(name, cred)?;
        vp.check_live()?;
        let _l2 = vp.lock_exclusive();
        self.check_absent(name)?;
        self.data.link(self, vp, name)
    }

    /// Checks for removing `name` from this locked directory: write and search
    /// permission and the sticky rule. Returns the victim's attributes.
    fn remove_check(&self, name: &[u8], cred: &Cred) -> KResult<(VnodeRef, Vattr)> {
        self.dir_modify_check(name, cred)?;
        let victim = self.data.lookup(self, name)?;
        let vva = victim.data.getattr(&victim)?;
        let dva = self.data.getattr(self)?;
        genfs::sticky_check(&dva, &vva, cred)?;
        Ok((victim, vva))
    }

    /// VOP_REMOVE (unlink of a non-directory).
    pub fn remove(&self, name: &[u8], cred: &Cred) -> KResult<()> {
        let _l = self.lock_exclusive();
        if name == b"." || name == b".." {
            return Err(Errno::EISDIR);
        }
        let (victim, _) = self.remove_check(name, cred)?;
        if victim.vtype == VType::Dir {
            return Err(Errno::EISDIR);
        }
        // Keep the victim referenced across the removal so that its last
        // vrele (below) sees the new link count and can free it.
        let r = self.data.remove(self, name);
        drop(victim);
        r
    }

    /// VOP_RMDIR.
    pub fn rmdir(&self, name: &[u8], cred: &Cred) -> KResult<()> {
        let _l = self.lock_exclusive();
        if name == b"." {
            return Err(Errno::EINVAL);
        }
        if name == b".." {
            return Err(Errno::ENOTEMPTY);
        }
        let (victim, _) = self.remove_check(name, cred)?;
        if victim.vtype != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        let r = self.data.rmdir(self, name);
        drop(victim);
        r
    }

    /// VOP_RENAME: `fname` in this directory becomes `tname` in `tdvp`.
    pub fn rename(&self, fname: &[u8], tdvp: &VnodeRef, tname: &[u8], cred: &Cred) -> KResult<()> {
        self.check_live()?;
        tdvp.check_live()?;
        let mp = self.check_writable()?;
        match tdvp.mount() {
            Some(t) if Arc::ptr_eq(&mp, &t) => {}
            _ => return Err(Errno::EXDEV),
        }
        if self.vtype != VType::Dir || tdvp.vtype != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        for n in [fname, tname] {
            if n == b"." || n == b".." {
                return Err(Errno::EINVAL);
            }
        }
        genfs::check_name(fname, false)?;
        genfs::check_name(tname, false)?;
        let _rl = mp.rename_lock.lock();
        let (_g1, _g2) = genfs::rename_lock_dirs(self, tdvp);
        let fdva = self.data.getattr(self)?;
        genfs::access(&fdva, amode::VWRITE | amode::VEXEC, cred)?;
        let source = self.data.lookup(self, fname)?;
        let sva = source.data.getattr(&source)?;
        genfs::sticky_check(&fdva, &sva, cred)?;
        let tdva = if tdvp.same(self) { fdva.clone() } else { tdvp.data.getattr(tdvp)? };
        genfs::access(&tdva, amode::VWRITE | amode::VEXEC, cred)?;
        let target = match tdvp.data.lookup(tdvp, tname) {
            Ok(target) => {
                let tva = target.data.getattr(&target)?;
                genfs::sticky_check(&tdva, &tva, cred)?;
                Some(target)
            }
            Err(e) if e == Errno::ENOENT => None,
            Err(e) => return Err(e),
        };
        // Moving a directory to another parent rewrites its "..": needs write
        // permission on the directory itself (POSIX allows, BSD requires).
        if source.vtype == VType::Dir && !tdvp.same(self) {
            genfs::access(&sva, amode::VWRITE, cred)?;
        }
        // The replaced target stays referenced until the driver is done, so
        // its last vrele sees the final link count.
        let r = self.data.rename(self, fname, tdvp, tname, cred);
        drop(target);
        drop(source);
        r
    }

    /// VOP_OPEN with the access check for `flags`.
    pub fn open(&self, flags: i32, cred: &Cred) -> KResult<()> {
        self.check_live()?;
        let acc = flags & oflags::O_ACCMODE;
        let mut mode = 0;
        if acc == oflags::O_RDONLY || acc == oflags::O_RDWR {
            mode |= amode::VREAD;
        }
        if acc == oflags::O_WRONLY || acc == oflags::O_RDWR || flags & oflags::O_TRUNC != 0 {
            mode |= amode::VWRITE;
        }
        if self.vtype == VType::Dir && mode & amode::VWRITE != 0 {
            return Err(Errno::EISDIR);
        }
        if self.vtype == VType::Lnk {
            return Err(Errno::ELOOP);
        }
        if mode != 0 {
            self.access(mode, cred)?;
        }
        self.data.open(self, flags, cred)?;
        if flags & oflags::O_TRUNC != 0 && self.vtype == VType::Reg {
            let _l = self.lock_exclusive();
            let sa = SetAttr { size: Some(0), ..Default::default() };
            if let Err(e) = self.data.setattr(self, &sa, cred) {
                let _ = self.data.close(self, flags);
                return Err(e);
            }
        }
        Ok(())
    }

    /// VOP_CLOSE.
    pub fn close(&self, flags: i32) -> KResult<()> {
        self.check_live()?;
        self.data.close(self, flags)
    }

    /// VOP_READ into `buf` at `off`; returns the bytes read (0 at end of file).
    pub fn read(&self, buf: &mut [u8], off: u64) -> KResult<usize> {
        let want = buf.len();
        let mut uio = Uio::read(buf, off);
        self.read_uio(&mut uio, 0)?;
        Ok(want - uio.resid())
    }

    /// VOP_READ with a caller-built uio.
    pub fn read_uio(&self, uio: &mut Uio<'_>, ioflag: u32) -> KResult<()> {
        self.check_live()?;
        match self.vtype {
            VType::Dir => return Err(Errno::EISDIR),
            VType::Reg => {}
            _ => return Err(Errno::EINVAL),
        }
        let _l = self.lock_shared();
        self.data.read(self, uio, ioflag)
    }

    /// VOP_WRITE of `buf` at `off`; returns the bytes written.
    pub fn write(&self, buf: &[u8], off: u64, ioflag: u32, cred: &Cred) -> KResult<usize> {
        let mut uio = Uio::write(buf, off);
        self.write_uio(&mut uio, ioflag, cred)?;
        Ok(buf.len() - uio.resid())
    }

    /// VOP_WRITE with a caller-built uio.
    pub fn write_uio(&self, uio: &mut Uio<'_>, ioflag: u32, cred: &Cred) -> KResult<()> {
        self.check_live()?;
        match self.vtype {
            VType::Dir => return Err(Errno::EISDIR),
            VType::Reg => {}
            _ => return Err(Errno::EINVAL),
        }
        self.check_writable()?;
        let _l = self.lock_exclusive();
        let want = uio.resid();
        let r = self.data.write(self, uio, ioflag, cred);
        // A partial write is a success for the part written.
        match r {
            Err(e) if uio.resid() < want && e != Errno::EIO => Ok(()),
            other => other,
        }
    }

    /// VOP_FSYNC.
    pub fn fsync(&self, datasync: bool) -> KResult<()> {
        self.check_live()?;
        let _l = self.lock_exclusive();
        self.data.fsync(self, datasync)
    }

    /// VOP_READDIR (needs read permission on the directory, checked at open).
    pub fn readdir(&self, offset: u64, filler: &mut DirFiller<'_>) -> KResult<()> {
        self.check_live()?;
        if self.vtype != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        let _l = self.lock_shared();
        self.data.readdir(self, offset, filler)
    }

    /// VOP_READLINK.
    pub fn readlink(&self) -> KResult<Vec<u8>> {
        self.check_live()?;
        if self.vtype != VType::Lnk {
            return Err(Errno::EINVAL);
        }
        let _l = self.lock_shared();
        self.data.readlink(self)
    }

    /// VOP_BMAP.
    pub fn bmap(&self, lbn: u64) -> KResult<Option<u64>> {
        self.check_live()?;
        let _l = self.lock_shared();
        self.data.bmap(self, lbn)
    }

    /// VOP_PATHCONF.
    pub fn pathconf(&self, name: PathConf) -> KResult<i64> {
        self.check_live()?;
        self.data.pathconf(self, name)
    }
}

// ----- the vnode cache -----

enum Slot {
    Loading,
    Live(Arc<Vnode>),
}

struct VcState {
    map: HashMap<u64, Slot>,
    /// Unreferenced vnodes, oldest first: (ino, free_seq at insertion).
    free: VecDeque<(u64, u64)>,
    nfree: usize,
    seq: u64,
}

/// Per-mount vnode cache (NetBSD `vcache`).
pub struct VCache {
    state: Mutex<VcState>,
    loaded: Condvar,
    /// Unreferenced vnodes kept before the oldest is reclaimed.
    max_free: usize,
}

impl VCache {
    pub(crate) fn new(max_free: usize) -> VCache {
        VCache {
            state: Mutex::new(VcState { map: HashMap::new(), free: VecDeque::new(), nfree: 0, seq: 0 }),
            loaded: Condvar::new(),
            max_free,
        }
    }

    /// Get the vnode for `ino`, loading it with `load` if it is not cached.
    pub(crate) fn get(
        &self,
        mount: &Arc<Mount>,
        ino: u64,
        load: impl FnOnce() -> KResult<(VType, Box<dyn VnodeOps>)>,
    ) -> KResult<VnodeRef> {
        let mut st = self.state.lock();
        loop {
            match st.map.get(&ino) {
                Some(Slot::Live(vp)) if vp.busy.load(Ordering::Acquire) => self.loaded.wait(&mut st),
                Some(Slot::Live(vp)) => {
                    let vp = vp.clone();
                    if vp.usecount.fetch_add(1, Ordering::AcqRel) == 0 {
                        st.nfree -= 1;
                        vp.free_seq.store(0, Ordering::Release);
                    }
                    return Ok(VnodeRef(vp));
                }
                Some(Slot::Loading) => self.loaded.wait(&mut st),
                None => break,
            }
        }
        st.map.insert(ino, Slot::Loading);
        drop(st);
        let r = load();
        let mut st = self.state.lock();
        let out = match r {
            Ok((vtype, data)) => {
                let vp = Arc::new(Vnode {
                    ino,
                    vtype,
                    mount: Arc::downgrade(mount),
                    lock: RwLock::new(()),
                    usecount: AtomicUsize::new(1),
                    reclaimed: AtomicBool::new(false),
                    free_seq: AtomicU64::new(0),
                    busy: AtomicBool::new(false),
                    data,
                });
                st.map.insert(ino, Slot::Live(vp.clone()));
                Ok(VnodeRef(vp))
            }
            Err(e) => {
                st.map.remove(&ino);
                Err(e)
            }
        };
        drop(st);
        self.loaded.notify_all();
        out
    }

    /// Is `ino` in the cache (referenced or not)?
    pub(crate) fn contains(&self, ino: u64) -> bool {
        self.state.lock().map.contains_key(&ino)
    }

    /// The last reference to `vp` may be going. `inactive` and `reclaim` run
    /// *outside* the vcache mutex (they may do I/O and take buffer locks,
    /// which rank above it); meanwhile the vnode is marked busy and
    /// `vcache_get` for its number waits.
    fn vrele_last(&self, vp: &Arc<Vnode>) {
        {
            let _st = self.state.lock();
            if vp.usecount.fetch_sub(1, Ordering::AcqRel) != 1 {
                return; // revived by vcache_get meanwhile
            }
            vp.busy.store(true, Ordering::Release);
        }
        let recycle = match vp.data.inactive(vp) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("inactive of inode {} failed: {}", vp.ino, e);
                false
            }
        };
        let mut victims = Vec::new();
        if recycle || self.max_free == 0 {
            victims.push(vp.clone());
        } else {
            let mut st = self.state.lock();
            st.seq += 1;
            let s = st.seq;
            vp.free_seq.store(s, Ordering::Release);
            vp.busy.store(false, Ordering::Release);
            st.free.push_back((vp.ino, s));
            st.nfree += 1;
            while st.nfree > self.max_free {
                let Some((ino, s)) = st.free.pop_front() else { break };
                let victim = match st.map.get(&ino) {
                    Some(Slot::Live(v))
                        if v.usecount.load(Ordering::Acquire) == 0
                            && v.free_seq.load(Ordering::Acquire) == s
                            && !v.busy.load(Ordering::Acquire) =>
                    {
                        v.clone()
                    }
                    _ => continue, // stale entry: revived or already gone
                };
                st.nfree -= 1;
                victim.busy.store(true, Ordering::Release);
                victims.push(victim);
            }
            // Keep the stale-entry queue from growing without bound.
            if st.free.len() > 2 * self.max_free.max(64) {
                let map = &st.map;
                let keep: VecDeque<(u64, u64)> = st
                    .free
                    .iter()
                    .copied()
                    .filter(|(ino, s)| matches!(map.get(ino), Some(Slot::Live(v)) if v.free_seq.load(Ordering::Acquire) == *s && v.usecount.load(Ordering::Acquire) == 0))
                    .collect();
                st.free = keep;
            }
            drop(st);
            self.loaded.notify_all();
        }
        self.reclaim_busy(&victims);
    }

    /// Reclaim vnodes already marked busy by the caller (no references),
    /// outside the mutex, then drop them from the map and wake waiters.
    fn reclaim_busy(&self, victims: &[Arc<Vnode>]) {
        if victims.is_empty() {
            return;
        }
        for v in victims {
            if let Err(e) = v.data.reclaim(v) {
                log::warn!("reclaim of inode {} failed: {}", v.ino, e);
            }
            v.reclaimed.store(true, Ordering::Release);
        }
        let mut st = self.state.lock();
        for v in victims {
            if let Some(Slot::Live(cur)) = st.map.get(&v.ino) {
                if Arc::ptr_eq(cur, v) {
                    st.map.remove(&v.ino);
                }
            }
        }
        drop(st);
        self.loaded.notify_all();
    }

    /// Reclaim every unreferenced vnode (unmount, or memory pressure).
    /// Returns how many vnodes are still in the cache (referenced ones).
    pub(crate) fn flush(&self) -> usize {
        let idle: Vec<Arc<Vnode>> = {
            let mut st = self.state.lock();
            let idle: Vec<Arc<Vnode>> = st
                .map
                .values()
                .filter_map(|s| match s {
                    Slot::Live(v) if v.usecount.load(Ordering::Acquire) == 0 && !v.busy.load(Ordering::Acquire) => {
                        Some(v.clone())
                    }
                    _ => None,
                })
                .collect();
            for v in &idle {
                v.busy.store(true, Ordering::Release);
            }
            st.free.clear();
            st.nfree = 0;
            idle
        };
        self.reclaim_busy(&idle);
        self.state.lock().map.len()
    }

    /// Number of vnodes in the cache, and how many of them are referenced.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock();
        let busy = st
            .map
            .values()
            .filter(|s| matches!(s, Slot::Live(v) if v.usecount.load(Ordering::Acquire) > 0) || matches!(s, Slot::Loading))
            .count();
        (st.map.len(), busy)
    }
}
