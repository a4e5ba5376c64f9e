//! tmpfs vnode operations (NetBSD `tmpfs_vnops.c`).
//!
//! The `VnodeRef` wrappers have taken the vnode locks and done the
//! permission, sticky, name, EEXIST and EROFS checks before these run (see
//! `rumpkern::vnode`); here is what only tmpfs knows: entries, link counts,
//! times, data pages. Node locking follows the order in [`crate::node`]: one
//! node mutex at a time, never the vnode cache while one is held.

use std::any::Any;
use std::sync::Arc;

use rumpkern::types::ioflag::IO_APPEND;
use rumpkern::types::mode::{S_ISGID, S_ISUID};
use rumpkern::{
    genfs, Cred, DirEntry, DirFiller, Errno, KResult, Mount, PathConf, SetAttr, SetTime, Timespec,
};
use rumpkern::{Uio, VType, Vattr, Vnode, VnodeOps, VnodeRef};

use crate::node::{
    dirent_cost, file_read, file_truncate, file_write, Content, DirData, FileData, NewNode, Node,
    TmpfsMount, LINK_MAX, MAX_FILE_SIZE, ROOT_INO, SYMLINK_MAX,
};

/// Readdir copies this many entries at a time out of the directory, so the
/// filler never runs with the node mutex held.
const READDIR_CHUNK: usize = 128;

/// The private data of a tmpfs vnode (`v_data`): the mount and the node.
pub struct TmpVnode {
    pub(crate) tm: Arc<TmpfsMount>,
    pub(crate) node: Arc<Node>,
}

impl TmpVnode {
    /// The node's inode number.
    pub fn ino(&self) -> u64 {
        self.node.ino()
    }

    /// The tmpfs instance this vnode belongs to.
    pub fn tmpfs(&self) -> &Arc<TmpfsMount> {
        &self.tm
    }
}

fn mount_of(vp: &Vnode) -> KResult<Arc<Mount>> {
    vp.mount().ok_or(Errno::EIO)
}

fn fsid_of(vp: &Vnode) -> u64 {
    vp.mount().map(|m| m.fsid()).unwrap_or(0)
}

/// The referenced vnode of node `ino` of `tm` (from the vnode cache, or a new
/// one). Must be called with no node mutex held. Errors: ENOENT when the node
/// is gone (or unlinked and not cached).
pub(crate) fn get_vnode(tm: &Arc<TmpfsMount>, mp: &Arc<Mount>, ino: u64) -> KResult<VnodeRef> {
    mp.vcache_get(ino, || {
        let node = tm.get(ino).ok_or(Errno::ENOENT)?;
        if node.lock().nlink == 0 {
            return Err(Errno::ENOENT);
        }
        let vtype = node.vtype();
        Ok((
            vtype,
            Box::new(TmpVnode {
                tm: tm.clone(),
                node,
            }) as Box<dyn VnodeOps>,
        ))
    })
}

/// A change of content by someone other than root drops setuid, and setgid
/// when group-executable (Linux `file_remove_privs`).
fn kill_suid(mode: &mut u32) {
    *mode &= !S_ISUID;
    if *mode & (S_ISGID | 0o010) == (S_ISGID | 0o010) {
        *mode &= !S_ISGID;
    }
}

/// The TmpVnode of another vnode of the same tmpfs instance. Errors: EXDEV.
fn same_fs<'a>(tm: &Arc<TmpfsMount>, vp: &'a Vnode) -> KResult<&'a TmpVnode> {
    match vp.data::<TmpVnode>() {
        Some(t) if Arc::ptr_eq(&t.tm, tm) => Ok(t),
        _ => Err(Errno::EXDEV),
    }
}

impl TmpVnode {
    /// Free `node` now if its link count reached zero and no vnode holds it
    /// (otherwise `inactive`/`reclaim` do it when the last reference goes).
    fn maybe_free(&self, mp: &Mount, node: &Node) {
        // Read the count first: the node mutex must not be held while the
        // vcache mutex is taken (reclaim takes them the other way round).
        let nlink = node.lock().nlink;
        if nlink == 0 && !mp.vcache_contains(node.ino()) {
            self.tm.free_node(node);
        }
    }

    /// Does a read-type access update atime on this vnode's mount?
    fn atime_on(&self, vp: &Vnode) -> bool {
        !self.tm.noatime && !vp.mount().is_some_and(|m| m.is_rdonly())
    }

    /// Create a node of type `nn.vtype` named `name` in this directory and
    /// return its vnode. Owner, group (setgid directories) and mode come
    /// from `cred` and the directory per genfs.
    fn make_node(
        &self,
        dvp: &Vnode,
        name: &[u8],
        mut nn: NewNode,
        cred: &Cred,
    ) -> KResult<VnodeRef> {
        let mp = mount_of(dvp)?;
        let fsid = fsid_of(dvp);
        let ino = {
            let mut d = self.node.lock();
            if d.nlink == 0 {
                return Err(Errno::ENOENT); // directory was removed
            }
            if d.dir()?.get(name).is_some() {
                return Err(Errno::EEXIST);
            }
            if nn.vtype == VType::Dir && d.nlink >= LINK_MAX {
                return Err(Errno::EMLINK);
            }
            let dva = self.node.vattr(&d, fsid);
            nn.uid = cred.uid;
            nn.gid = genfs::new_file_gid(&dva, cred);
            nn.mode = if nn.vtype == VType::Dir {
                genfs::new_dir_mode(&dva, nn.mode)
            } else {
                genfs::new_file_mode(nn.mode, nn.gid, cred)
            };
            let vtype = nn.vtype;
            self.tm.reserve(dirent_cost(name))?;
            let now = Timespec::now();
            let node = match self.tm.alloc_node(nn, now) {
                Ok(n) => n,
                Err(e) => {
                    self.tm.release(dirent_cost(name));
                    return Err(e);
                }
            };
            d.dir_mut()?.insert(name, node.ino(), vtype);
            if vtype == VType::Dir {
                d.nlink += 1;
            }
            d.touch_modify(now);
            node.ino()
        };
        get_vnode(&self.tm, &mp, ino)
    }

    fn new_node(vtype: VType, mode: u32, rdev: u64, content: Content) -> NewNode {
        NewNode {
            vtype,
            mode,
            uid: 0,
            gid: 0,
            rdev,
            content,
        }
    }
}

impl VnodeOps for TmpVnode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn getattr(&self, vp: &Vnode) -> KResult<Vattr> {
        let n = self.node.lock();
        Ok(self.node.vattr(&n, fsid_of(vp)))
    }

    fn setattr(&self, _vp: &Vnode, sa: &SetAttr, cred: &Cred) -> KResult<()> {
        // Validate everything before changing anything.
        if let Some(f) = sa.flags {
            if f != 0 {
                return Err(Errno::EOPNOTSUPP); // no chflags on tmpfs
            }
        }
        if let Some(size) = sa.size {
            if self.node.vtype() != VType::Reg {
                return Err(if self.node.vtype() == VType::Dir {
                    Errno::EISDIR
                } else {
                    Errno::EINVAL
                });
            }
            if size > MAX_FILE_SIZE {
                return Err(Errno::EFBIG);
            }
        }
        let now = Timespec::now();
        let mut n = self.node.lock();
        if let Some(size) = sa.size {
            file_truncate(&self.tm, &mut n, size)?;
            // As Linux's truncate: mtime and ctime change even when the
            // size does not.
            n.mtime = now;
            // A truncate by someone other than root drops setuid/setgid
            // like a write (unless this same request sets the mode).
            if !cred.is_root() && sa.mode.is_none() {
                kill_suid(&mut n.mode);
            }
        }
        if let Some(m) = sa.mode {
            n.mode = m & rumpkern::types::mode::ALLPERMS;
        }
        if let Some(u) = sa.uid {
            n.uid = u;
        }
        if let Some(g) = sa.gid {
            n.gid = g;
        }
        let when = |t: SetTime| match t {
            SetTime::Now => now,
            SetTime::At(ts) => ts,
        };
        if let Some(t) = sa.atime {
            n.atime = when(t);
        }
        if let Some(t) = sa.mtime {
            n.mtime = when(t);
        }
        if let Some(t) = sa.birthtime {
            n.birthtime = t;
        }
        n.ctime = now;
        Ok(())
    }

    fn lookup(&self, dvp: &Vnode, name: &[u8]) -> KResult<VnodeRef> {
        let mp = mount_of(dvp)?;
        let ino = {
            let d = self.node.lock();
            let dir = d.dir()?;
            if d.nlink == 0 {
                return Err(Errno::ENOENT); // removed directory: empty
            }
            match name {
                b"." => self.node.ino(),
                b".." => dir.parent,
                _ => dir.get(name).ok_or(Errno::ENOENT)?.ino,
            }
        };
        get_vnode(&self.tm, &mp, ino)
    }

    fn create(&self, dvp: &Vnode, name: &[u8], mode: u32, cred: &Cred) -> KResult<VnodeRef> {
        let nn = Self::new_node(VType::Reg, mode, 0, Content::File(FileData::default()));
        self.make_node(dvp, name, nn, cred)
    }

    fn mknod(
        &self,
        dvp: &Vnode,
        name: &[u8],
        vtype: VType,
        mode: u32,
        rdev: u64,
        cred: &Cred,
    ) -> KResult<VnodeRef> {
        let (content, rdev) = match vtype {
            VType::Chr | VType::Blk => (Content::Special, rdev),
            VType::Fifo | VType::Sock => (Content::Special, 0),
            VType::Reg => (Content::File(FileData::default()), 0),
            VType::Dir | VType::Lnk => return Err(Errno::EINVAL),
        };
        self.make_node(dvp, name, Self::new_node(vtype, mode, rdev, content), cred)
    }

    fn mkdir(&self, dvp: &Vnode, name: &[u8], mode: u32, cred: &Cred) -> KResult<VnodeRef> {
        let nn = Self::new_node(
            VType::Dir,
            mode,
            0,
            Content::Dir(DirData::new(self.node.ino())),
        );
        self.make_node(dvp, name, nn, cred)
    }

    fn symlink(&self, dvp: &Vnode, name: &[u8], target: &[u8], cred: &Cred) -> KResult<VnodeRef> {
        if target.len() > SYMLINK_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let nn = Self::new_node(VType::Lnk, 0o777, 0, Content::Link(target.to_vec()));
        self.make_node(dvp, name, nn, cred)
    }

    fn link(&self, _dvp: &Vnode, vp: &Vnode, name: &[u8]) -> KResult<()> {
        let src = same_fs(&self.tm, vp)?;
        if src.node.vtype() == VType::Dir {
            return Err(Errno::EPERM);
        }
        {
            let d = self.node.lock();
            if d.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            if d.dir()?.get(name).is_some() {
                return Err(Errno::EEXIST);
            }
        }
        self.tm.reserve(dirent_cost(name))?;
        let now = Timespec::now();
        {
            let mut s = src.node.lock();
            let err = if s.nlink == 0 {
                Some(Errno::ENOENT) // unlinked while open: no new names
            } else if s.nlink >= LINK_MAX {
                Some(Errno::EMLINK)
            } else {
                None
            };
            if let Some(e) = err {
                drop(s);
                self.tm.release(dirent_cost(name));
                return Err(e);
            }
            s.nlink += 1;
            s.ctime = now;
        }
        // The directory's entries cannot have changed: its vnode is locked
        // exclusive for the whole operation.
        let mut d = self.node.lock();
        d.dir_mut()?.insert(name, src.node.ino(), src.node.vtype());
        d.touch_modify(now);
        Ok(())
    }

    fn remove(&self, dvp: &Vnode, name: &[u8]) -> KResult<()> {
        let mp = mount_of(dvp)?;
        let now = Timespec::now();
        let ino = {
            let mut d = self.node.lock();
            let dir = d.dir_mut()?;
            let ent = dir.get(name).ok_or(Errno::ENOENT)?;
            if ent.vtype == VType::Dir {
                return Err(Errno::EISDIR);
            }
            let ino = ent.ino;
            dir.remove(name);
            d.touch_modify(now);
            ino
        };
        self.tm.release(dirent_cost(name));
        let Some(node) = self.tm.get(ino) else {
            log::error!(
                "tmpfs: entry {:?} points at missing inode {}",
                String::from_utf8_lossy(name),
                ino
            );
            return Err(Errno::EIO);
        };
        {
            let mut n = node.lock();
            n.nlink = n.nlink.saturating_sub(1);
            n.ctime = now;
        }
        self.maybe_free(&mp, &node);
        Ok(())
    }

    fn rmdir(&self, dvp: &Vnode, name: &[u8]) -> KResult<()> {
        let mp = mount_of(dvp)?;
        let now = Timespec::now();
        let ino = {
            let d = self.node.lock();
            let ent = d.dir()?.get(name).ok_or(Errno::ENOENT)?;
            if ent.vtype != VType::Dir {
                return Err(Errno::ENOTDIR);
            }
            ent.ino
        };
        if ino == ROOT_INO {
            return Err(Errno::EBUSY);
        }
        let Some(victim) = self.tm.get(ino) else {
            return Err(Errno::EIO);
        };
        {
            // Emptiness and death decided together under the victim's mutex,
            // so a concurrent create inside it either lands first (ENOTEMPTY
            // here) or sees nlink 0 (ENOENT there).
            let mut v = victim.lock();
            if !v.dir()?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            v.nlink = 0;
            v.ctime = now;
        }
        {
            let mut d = self.node.lock();
            d.dir_mut()?.remove(name);
            d.nlink = d.nlink.saturating_sub(1);
            d.touch_modify(now);
        }
        self.tm.release(dirent_cost(name));
        self.maybe_free(&mp, &victim);
        Ok(())
    }

    fn rename(
        &self,
        fdvp: &Vnode,
        fname: &[u8],
        tdvp: &Vnode,
        tname: &[u8],
        _cred: &Cred,
    ) -> KResult<()> {
        let mp = mount_of(fdvp)?;
        let tdv = same_fs(&self.tm, tdvp)?;
        let same_dir = Arc::ptr_eq(&self.node, &tdv.node);

        let (sino, svtype) = {
            let d = self.node.lock();
            let ent = d.dir()?.get(fname).ok_or(Errno::ENOENT)?;
            (ent.ino, ent.vtype)
        };
        let target = {
            let d = tdv.node.lock();
            if d.nlink == 0 {
                return Err(Errno::ENOENT); // target directory was removed
            }
            d.dir()?.get(tname).map(|e| (e.ino, e.vtype))
        };
        let sdir = svtype == VType::Dir;
        // A directory may not move into its own subtree (checked first, as
        // Linux does).
        if sdir && !same_dir {
            let src = self.lookup(fdvp, fname)?;
            genfs::rename_check_ancestry(&src, tdvp)?;
        }
        if let Some((tino, tvtype)) = target {
            if tino == sino {
                return Ok(()); // same entry or another link to the same inode
            }
            match (sdir, tvtype == VType::Dir) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                _ => {}
            }
        }
        if sdir && !same_dir && target.is_none() {
            let tlinks = tdv.node.lock().nlink;
            if tlinks >= LINK_MAX {
                return Err(Errno::EMLINK);
            }
        }
        let Some(snode) = self.tm.get(sino) else {
            return Err(Errno::EIO);
        };
        let tnode = match target {
            Some((tino, _)) => Some(self.tm.get(tino).ok_or(Errno::EIO)?),
            None => None,
        };

        let now = Timespec::now();
        // Last check that can fail: the target directory must be empty. From
        // here on nothing fails.
        if let Some(t) = &tnode {
            let mut tn = t.lock();
            if t.vtype() == VType::Dir {
                if !tn.dir()?.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
                tn.nlink = 0;
            } else {
                tn.nlink = tn.nlink.saturating_sub(1);
            }
            tn.ctime = now;
        }
        let tdir_replaced = tnode.as_ref().is_some_and(|t| t.vtype() == VType::Dir);

        // Take the source entry out of its directory.
        {
            let mut d = self.node.lock();
            d.dir_mut()?.remove(fname);
            if sdir && !same_dir {
                d.nlink = d.nlink.saturating_sub(1);
            }
            d.touch_modify(now);
        }
        // Put it into the target directory, replacing the target.
        {
            let mut d = tdv.node.lock();
            let dir = d.dir_mut()?;
            if tnode.is_some() {
                dir.remove(tname);
            }
            dir.insert(tname, sino, svtype);
            if tdir_replaced {
                d.nlink = d.nlink.saturating_sub(1);
            }
            if sdir && !same_dir {
                d.nlink += 1;
            }
            d.touch_modify(now);
        }
        // Account names: the source's old name goes, the replaced target's
        // entry goes, the new name comes (never ENOSPC for a rename).
        self.tm.release(dirent_cost(fname));
        if tnode.is_some() {
            self.tm.release(dirent_cost(tname));
        }
        self.tm.charge(dirent_cost(tname));
        {
            let mut s = snode.lock();
            s.ctime = now;
            if sdir && !same_dir {
                if let Content::Dir(dd) = &mut s.content {
                    dd.parent = tdv.node.ino();
                }
            }
        }
        if let Some(t) = &tnode {
            self.maybe_free(&mp, t);
        }
        Ok(())
    }

    fn read(&self, vp: &Vnode, uio: &mut Uio<'_>, _ioflag: u32) -> KResult<()> {
        if self.node.vtype() != VType::Reg {
            return Err(if self.node.vtype() == VType::Dir {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        if uio.resid() == 0 {
            return Ok(());
        }
        let atime = self.atime_on(vp);
        let mut n = self.node.lock();
        file_read(&n, uio)?;
        if atime {
            n.atime = Timespec::now();
        }
        Ok(())
    }

    fn write(&self, _vp: &Vnode, uio: &mut Uio<'_>, ioflag: u32, cred: &Cred) -> KResult<()> {
        if self.node.vtype() != VType::Reg {
            return Err(if self.node.vtype() == VType::Dir {
                Errno::EISDIR
            } else {
                Errno::EINVAL
            });
        }
        if uio.resid() == 0 {
            return Ok(());
        }
        let mut n = self.node.lock();
        if ioflag & IO_APPEND != 0 {
            uio.offset = n.size;
        }
        let want = uio.resid();
        let r = file_write(&self.tm, &mut n, uio);
        if uio.resid() < want {
            let now = Timespec::now();
            n.touch_modify(now);
            if !cred.is_root() {
                kill_suid(&mut n.mode);
            }
            return Ok(()); // partial write on ENOSPC is a success
        }
        r
    }

    fn readdir(&self, vp: &Vnode, offset: u64, filler: &mut DirFiller<'_>) -> KResult<()> {
        let atime = self.atime_on(vp);
        let (me, parent) = {
            let mut d = self.node.lock();
            let parent = d.dir()?.parent;
            if atime {
                d.atime = Timespec::now();
            }
            (self.node.ino(), parent)
        };
        let mut off = offset;
        if off == 0 {
            if !filler(&DirEntry {
                ino: me,
                name: b".",
                vtype: VType::Dir,
                next_offset: 1,
            }) {
                return Ok(());
            }
            off = 1;
        }
        if off == 1 {
            if !filler(&DirEntry {
                ino: parent,
                name: b"..",
                vtype: VType::Dir,
                next_offset: 2,
            }) {
                return Ok(());
            }
            off = 2;
        }
        loop {
            let chunk: Vec<(u64, crate::node::DirEnt)> = {
                let d = self.node.lock();
                d.dir()?
                    .entries
                    .range(off..)
                    .take(READDIR_CHUNK)
                    .map(|(c, e)| (*c, e.clone()))
                    .collect()
            };
            if chunk.is_empty() {
                return Ok(());
            }
            for (cookie, e) in chunk {
                let next = cookie + 1;
                if !filler(&DirEntry {
                    ino: e.ino,
                    name: &e.name,
                    vtype: e.vtype,
                    next_offset: next,
                }) {
                    return Ok(());
                }
                off = next;
            }
        }
    }

    fn readlink(&self, vp: &Vnode) -> KResult<Vec<u8>> {
        let atime = self.atime_on(vp);
        let mut n = self.node.lock();
        let Content::Link(t) = &n.content else {
            return Err(Errno::EINVAL);
        };
        let t = t.clone();
        if atime {
            n.atime = Timespec::now();
        }
        Ok(t)
    }

    fn inactive(&self, _vp: &Vnode) -> KResult<bool> {
        Ok(self.node.lock().nlink == 0)
    }

    fn reclaim(&self, _vp: &Vnode) -> KResult<()> {
        // free_node does nothing while the node still has links: a vnode
        // leaving the cache is not the file going away.
        self.tm.free_node(&self.node);
        Ok(())
    }

    fn pathconf(&self, _vp: &Vnode, name: PathConf) -> KResult<i64> {
        Ok(match name {
            PathConf::LinkMax => LINK_MAX as i64,
            PathConf::SymlinkMax => SYMLINK_MAX as i64,
            PathConf::FileSizeBits => 64,
            other => return genfs::pathconf(other),
        })
    }
}
