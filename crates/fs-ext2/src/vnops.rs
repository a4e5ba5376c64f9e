//! Vnode operations (NetBSD `ext2fs_vnops.c`, `ext2fs_readwrite.c`,
//! `ext2fs_inode.c`, `ext2fs_rename.c`).
//!
//! # Nodes and locking
//!
//! An [`Ext2Node`] is the in-memory inode of one vnode: its number, its
//! type and the decoded on-disk inode under `inner`. Changes are written
//! to the inode table at once (`Ext2Fs::write_inode`, through the buffer
//! cache; synchronously except after a data write), so a node is never
//! dirty and reclaim has nothing to write.
//!
//! The `VnodeRef` wrappers hold the vnode locks (directory exclusive for
//! every name operation); on top of that a node's `inner` mutex guards its
//! inode. Rules (see also `fs.rs`): one `inner` at a time, `inner` before
//! the metadata lock, and no `inner` held while calling the vnode cache or
//! dropping a `VnodeRef` (inactive runs under the cache's mutex and takes
//! `inner`). Operations on a child (rmdir's victim, rename's source and
//! target) take the child's vnode lock after the parent's, per the lock
//! order.
//!
//! # Ordering of metadata writes
//!
//! See the crate documentation ("Writing and crashes"): the order is
//! chosen so that any crash leaves damage `e2fsck -p` repairs. Inodes are
//! freed in `inactive`, once the last reference goes, so open-but-unlinked
//! files keep working; their link count is already 0 on disk, which e2fsck
//! treats as deleted after a crash.

use std::any::Any;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use rumpkern::types::ioflag;
use rumpkern::types::mode::*;
use rumpkern::{
    genfs, Cred, DirEntry, DirFiller, Errno, KResult, Mount, PathConf, SetAttr, SetTime, Timespec,
    Uio, VType, Vattr, Vnode, VnodeOps, VnodeRef,
};

use crate::alloc;
use crate::bmap::{self, MapCache};
use crate::dir::{self, DirWrite};
use crate::format::*;
use crate::fs::{lk, Ext2Fs};

/// The driver data of one vnode.
pub struct Ext2Node {
    fs: Arc<Ext2Fs>,
    ino: u32,
    vtype: VType,
    inner: Mutex<Inode>,
    /// Index of a large directory (`dir::DirIndex`); taken after `inner`.
    dindex: Mutex<Option<dir::DirIndex>>,
}

static GENERATION: AtomicU32 = AtomicU32::new(0);

/// BSD file flags (`chflags`, `Vattr::flags`) this driver maps, as
/// NetBSD's ext2fs does: `UF_NODUMP` ↔ `EXT2_NODUMP_FL`, `SF_IMMUTABLE` ↔
/// `EXT2_IMMUTABLE_FL`, `SF_APPEND` ↔ `EXT2_APPEND_FL`.
pub mod bsdflags {
    /// Do not dump the file (owner may set).
    pub const UF_NODUMP: u32 = 0x0000_0001;
    /// The file may not be changed (root only).
    pub const SF_IMMUTABLE: u32 = 0x0002_0000;
    /// The file may only be appended to (root only).
    pub const SF_APPEND: u32 = 0x0004_0000;
}

/// `i_flags` → BSD flags.
fn bsd_flags(f: u32) -> u32 {
    let mut b = 0;
    if f & iflags::NODUMP != 0 {
        b |= bsdflags::UF_NODUMP;
    }
    if f & iflags::IMMUTABLE != 0 {
        b |= bsdflags::SF_IMMUTABLE;
    }
    if f & iflags::APPEND != 0 {
        b |= bsdflags::SF_APPEND;
    }
    b
}

/// Immutable or append-only: entries cannot be removed or renamed, the
/// inode cannot be linked or changed (Linux and NetBSD semantics).
const FROZEN: u32 = iflags::IMMUTABLE | iflags::APPEND;

/// Runs of new whole blocks past the end of a file of at least this many
/// bytes are written from the request straight to the device (`write`).
/// Shorter ones go through the cache, whose clustered write-back makes fewer
/// device requests for a tree of small files.
const DIRECT_MIN_BYTES: usize = 64 << 10;
/// Longest such run written with one device request.
const DIRECT_MAX_BYTES: usize = 1 << 20;

fn now() -> (i64, u32) {
    let t = Timespec::now();
    (t.sec, t.nsec)
}

fn ts(t: (i64, u32)) -> Timespec {
    Timespec::new(t.0, t.1)
}

/// VType of an inode mode; None for an invalid type.
fn vtype_of(mode: u16) -> Option<VType> {
    VType::from_mode(mode as u32)
}

fn vtype_of_ftype(ft: u8) -> Option<VType> {
    Some(match ft {
        ftype::REG => VType::Reg,
        ftype::DIR => VType::Dir,
        ftype::CHRDEV => VType::Chr,
        ftype::BLKDEV => VType::Blk,
        ftype::FIFO => VType::Fifo,
        ftype::SOCK => VType::Sock,
        ftype::SYMLINK => VType::Lnk,
        _ => return None,
    })
}

/// The ext2 node behind a vnode of this driver.
fn node(vp: &Vnode) -> KResult<&Ext2Node> {
    vp.data::<Ext2Node>().ok_or(Errno::EXDEV)
}

/// Load inode `ino` as a vnode (a vcache miss).
fn load(fs: &Arc<Ext2Fs>, ino: u32) -> KResult<(VType, Box<dyn VnodeOps>)> {
    let inode = fs.read_inode(ino)?;
    let Some(vt) = vtype_of(inode.mode) else {
        return Err(fs.corrupt(format_args!("inode {ino}: invalid mode {:o}", inode.mode)));
    };
    if inode.links == 0 {
        return Err(fs.corrupt(format_args!("inode {ino}: referenced but has no links")));
    }
    if inode.flags & iflags::INLINE_DATA != 0
        || (inode.flags & iflags::EXTENTS != 0 && !fs.geo.extents)
    {
        return Err(fs.corrupt(format_args!(
            "inode {ino}: extent or inline-data inode on a file system without those features"
        )));
    }
    if vt == VType::Dir && inode.size % fs.geo.block_size as u64 != 0 {
        log::warn!(
            "ext2fs: directory {ino}: size {} not a multiple of the block size",
            inode.size
        );
    }
    Ok((
        vt,
        Box::new(Ext2Node {
            fs: fs.clone(),
            ino,
            vtype: vt,
            inner: Mutex::new(inode),
            dindex: Mutex::new(None),
        }),
    ))
}

/// The referenced vnode of inode `ino` on mount `mp`.
pub(crate) fn vget(fs: &Arc<Ext2Fs>, mp: &Arc<Mount>, ino: u32) -> KResult<VnodeRef> {
    if ino == 0 || ino > fs.geo.inodes_count || (ino < fs.geo.first_ino && ino != ROOT_INO) {
        return Err(fs.corrupt(format_args!("directory entry points at inode {ino}")));
    }
    mp.vcache_get(ino as u64, || load(fs, ino))
}

impl Ext2Node {
    /// Inode number.
    pub fn ino(&self) -> u32 {
        self.ino
    }

    /// A copy of the inode as it is now.
    pub fn inode(&self) -> Inode {
        lk(&self.inner).clone()
    }

    fn mp(&self, vp: &Vnode) -> KResult<Arc<Mount>> {
        vp.mount().ok_or(Errno::EIO)
    }

    fn write(&self, i: &Inode) -> KResult<()> {
        self.fs.write_inode(self.ino, i)
    }

    /// Write a directory's own inode after its entries changed (times,
    /// link count, size): delayed. After a crash the directory's link
    /// count or size can only be behind its entries, which e2fsck -p
    /// repairs (an entry in a block the inode does not reach yet is lost
    /// with the unfinished operation).
    fn write_dir(&self, d: &Inode) -> KResult<()> {
        self.fs.write_inode_delayed(self.ino, d)
    }

    fn vattr(&self, i: &Inode, fsid: u64) -> Vattr {
        let bs = self.fs.geo.block_size;
        let bytes = if i.flags & iflags::HUGE_FILE != 0 {
            i.blocks * bs as u64
        } else {
            i.blocks * 512
        };
        Vattr {
            vtype: self.vtype,
            mode: i.mode as u32 & ALLPERMS,
            nlink: i.links as u32,
            uid: i.uid,
            gid: i.gid,
            fsid,
            ino: self.ino as u64,
            size: i.size,
            blksize: bs,
            bytes,
            atime: ts(i.atime),
            mtime: ts(i.mtime),
            ctime: ts(i.ctime),
            birthtime: i.crtime.map(ts).unwrap_or(Timespec::ZERO),
            gen: i.generation,
            rdev: if matches!(self.vtype, VType::Chr | VType::Blk) {
                i.rdev()
            } else {
                0
            },
            flags: bsd_flags(i.flags),
        }
    }

    /// A read or a directory listing happened: update the access time
    /// with relatime rules (Linux's default), on read-write mounts without
    /// `noatime`. Failures are logged, never returned (the read worked).
    fn mark_access(&self) {
        if self.fs.rdonly || self.fs.noatime.load(Ordering::Relaxed) {
            return;
        }
        let mut i = lk(&self.inner);
        let t = now();
        if i.links == 0 || !(i.atime <= i.mtime || i.atime <= i.ctime || t.0 - i.atime.0 >= 86400) {
            return;
        }
        i.atime = t;
        // Losing an access time in a crash is harmless: delayed.
        if let Err(e) = self.fs.write_inode_delayed(self.ino, &i) {
            log::warn!("ext2fs: inode {}: access time not written: {e}", self.ino);
        }
    }

    /// Does this inode's block map hold block pointers (as opposed to a
    /// fast symlink's target or a device number)?
    fn has_block_map(&self, i: &Inode) -> bool {
        if i.flags & iflags::EXTENTS != 0 {
            return false; // an extent tree: read-only, never changed here
        }
        match self.vtype {
            VType::Reg | VType::Dir => true,
            VType::Lnk => !i.is_fast_symlink(self.fs.geo.block_size),
            _ => false,
        }
    }

    /// Before changing a directory's entries: drop the hashed index flag
    /// (the index would go stale), as NetBSD does.
    fn dir_prepare(&self, d: &mut Inode) -> KResult<()> {
        if d.flags & iflags::INDEX != 0 {
            d.flags &= !iflags::INDEX;
            self.write(d)?;
        }
        Ok(())
    }

    /// Set the size of a regular file (truncate or extend with a hole).
    fn truncate(&self, i: &mut Inode, size: u64) -> KResult<()> {
        let fs = &self.fs;
        if size > fs.geo.max_file_size {
            return Err(Errno::EFBIG);
        }
        let bs = fs.geo.block_size as u64;
        if size < i.size {
            let keep = size.div_ceil(bs);
            let freed = bmap::truncate_map(fs, self.ino, i, keep)?;
            // Zero the tail of a partial last block, so that a later
            // extension reads zeros there.
            if !size.is_multiple_of(bs) {
                let mut mc = MapCache::default();
                if let Some(p) = bmap::bmap(fs, self.ino, i, size / bs, &mut mc)? {
                    let mut b = fs.bio.bread(p)?;
                    if let Some(t) = b.get_mut((size % bs) as usize..) {
                        t.fill(0);
                    }
                    fs.bio.bwrite(p, &b)?;
                }
            }
            i.size = size;
            self.write(i)?;
            alloc::free_blocks(fs, &freed)?;
        } else {
            self.note_size(size)?;
            i.size = size;
        }
        Ok(())
    }

    /// A regular file grows to `size`: turn on large_file when it passes
    /// 2 GiB on a file system without it.
    fn note_size(&self, size: u64) -> KResult<()> {
        if size > i32::MAX as u64 {
            let mut m = lk(&self.fs.meta);
            if m.sb.feature_ro_compat & ro_compat::LARGE_FILE == 0 {
                if m.sb.rev_level < DYNAMIC_REV {
                    return Err(Errno::EFBIG);
                }
                m.sb.feature_ro_compat |= ro_compat::LARGE_FILE;
                m.sb_dirty = true;
                self.fs.write_meta_locked(&mut m)?;
            }
        }
        Ok(())
    }

    /// Free everything of an inode whose last link and last reference are
    /// gone: its blocks, then the inode.
    fn release(&self) -> KResult<()> {
        let fs = &self.fs;
        // A shared xattr block is released at once (its reference count,
        // or its freeing), so the link count drop must be durable first.
        if lk(&self.inner).file_acl != 0 && fs.is_unordered(self.ino) {
            fs.flush_pending()?;
        }
        let mut i = lk(&self.inner);
        let freed = if self.has_block_map(&i) {
            bmap::truncate_map(fs, self.ino, &mut i, 0)?
        } else {
            Vec::new()
        };
        i.block = [0; N_BLOCKS];
        i.size = 0;
        i.dtime = now().0 as u32;
        let ea = i.file_acl;
        i.file_acl = 0;
        i.blocks = 0;
        // Held back, not synchronous: the link count 0 is on the device
        // already (written before the last entry went), and e2fsck takes
        // an inode with no links as free, whatever its block pointers and
        // dtime say; so the frees below may land first.
        fs.write_inode_delayed(self.ino, &i)?;
        drop(i);
        let r2 = if ea != 0 {
            self.release_ea_block(ea)
        } else {
            Ok(())
        };
        // After an unlink whose link count drop may not be durable yet,
        // the blocks and the number wait for the next ordering point.
        let f = crate::fs::DeferredFree {
            blocks: freed,
            ino: self.ino,
            is_dir: self.vtype == VType::Dir,
        };
        let r1 = match fs.defer_free(f) {
            Ok(_) => Ok(()),
            Err(f) => alloc::free_blocks(fs, &f.blocks).and(alloc::free_inode(fs, f.ino, f.is_dir)),
        };
        r1.and(r2)
    }

    /// Drop this inode's reference to its extended attribute block (shared
    /// between inodes with equal attributes): free it with the last one.
    fn release_ea_block(&self, b: u64) -> KResult<()> {
        let fs = &self.fs;
        if !fs.geo.valid_block(b) {
            return Err(fs.corrupt(format_args!(
                "inode {}: xattr block {b} outside the file system",
                self.ino
            )));
        }
        let last = {
            let _m = lk(&fs.meta);
            let mut blk = fs.bio.bread(b)?;
            if le32(&blk, 0)? != EA_MAGIC || le32(&blk, 8)? != 1 {
                drop(_m);
                return Err(fs.corrupt(format_args!("inode {}: bad xattr block {b}", self.ino)));
            }
            let refs = le32(&blk, 4)?;
            if refs > 1 {
                put32(&mut blk, 4, refs - 1)?;
                fs.bio.bwrite(b, &blk)?;
                false
            } else {
                true
            }
        };
        if last {
            alloc::free_block(fs, b)?;
        }
        Ok(())
    }

    /// Create a node of type `ifmt` named `name` in this directory.
    /// `init` fills in type-specific content of the fresh inode (blocks
    /// it allocates are recorded in the inode, so a failure frees them).
    fn make_node(
        &self,
        dvp: &Vnode,
        name: &[u8],
        ifmt: u32,
        perm: u32,
        cred: &Cred,
        init: &dyn Fn(&Ext2Fs, u32, &mut Inode) -> KResult<()>,
    ) -> KResult<VnodeRef> {
        let fs = &self.fs;
        let mp = self.mp(dvp)?;
        let is_dir = ifmt == S_IFDIR;
        let resv = alloc::may_use_reserved(fs, cred);
        let dva = {
            let d = lk(&self.inner);
            if d.links == 0 {
                return Err(Errno::ENOENT);
            }
            if d.flags & iflags::IMMUTABLE != 0 {
                return Err(Errno::EPERM);
            }
            if is_dir && d.links as u32 >= LINK_MAX {
                return Err(Errno::EMLINK);
            }
            self.vattr(&d, 0)
        };
        if name.len() > NAME_LEN {
            return Err(Errno::ENAMETOOLONG);
        }
        let gid = genfs::new_file_gid(&dva, cred);
        let perm = if is_dir {
            genfs::new_dir_mode(&dva, perm)
        } else {
            genfs::new_file_mode(perm, gid, cred)
        };
        let ino = alloc::alloc_inode(fs, self.ino, is_dir)?;
        let t = now();
        let mut i = Inode::new_empty(fs.geo.inode_size);
        i.mode = (ifmt | (perm & ALLPERMS)) as u16;
        i.uid = cred.uid;
        i.gid = gid;
        i.links = if is_dir { 2 } else { 1 };
        i.atime = t;
        i.mtime = t;
        i.ctime = t;
        if i.extra_isize >= 24 {
            i.crtime = Some(t);
        }
        i.generation = GENERATION.fetch_add(1, Ordering::Relaxed).wrapping_add(t.1);
        let undo = |i: &mut Inode| {
            if matches!(ifmt, S_IFREG | S_IFDIR)
                || (ifmt == S_IFLNK && !i.is_fast_symlink(fs.geo.block_size))
            {
                if let Ok(freed) = bmap::truncate_map(fs, ino, i, 0) {
                    let _ = alloc::free_blocks(fs, &freed);
                }
            }
            i.links = 0;
            i.dtime = now().0 as u32;
            let _ = fs.write_inode(ino, i);
            let _ = alloc::free_inode(fs, ino, is_dir);
        };
        // Crash safety for e2fsck -p: an in-use inode that no entry names is
        // only repaired without questions when it is an empty regular file;
        // an entry naming an inode with no links is. So everything but a
        // regular file goes to disk with a link count of 0 first and gets
        // its real count once the entry exists.
        let final_links = i.links;
        if ifmt != S_IFREG {
            i.links = 0;
        }
        // Neither this first state nor the entry below needs to be on the
        // device before the other: the entry may name an inode that is
        // still free on disk, or the inode (empty, or with no links) be
        // unattached, and e2fsck -p clears either. What must wait for the
        // entry (the real link count, and any later content) is written
        // through `write_inode_delayed`, which holds it back until the
        // entry is durable.
        if let Err(e) = init(fs, ino, &mut i).and_then(|_| fs.write_new_inode(ino, &i)) {
            undo(&mut i);
            return Err(e);
        }
        // The inode is on disk; now the entry that names it.
        let r = {
            let mut d = lk(&self.inner);
            let r = self.dir_prepare(&mut d).and_then(|_| {
                dir::add_entry(
                    fs,
                    self.ino,
                    &mut d,
                    name,
                    ino,
                    ftype_of_mode(ifmt),
                    resv,
                    true,
                    &mut lk(&self.dindex),
                )
            });
            match r {
                Ok(_) => {
                    if is_dir {
                        d.links += 1;
                    }
                    d.mtime = t;
                    d.ctime = t;
                    self.write_dir(&d)
                }
                Err(e) => {
                    // add_entry may have grown the directory before failing.
                    let _ = self.write_dir(&d);
                    Err(e)
                }
            }
        };
        if let Err(e) = r {
            undo(&mut i);
            return Err(e);
        }
        if i.links != final_links {
            i.links = final_links;
            fs.write_inode_delayed(ino, &i)?;
        }
        vget(fs, &mp, ino)
    }

    /// Immutable or append-only?
    fn frozen(&self) -> bool {
        lk(&self.inner).flags & FROZEN != 0
    }

    /// Look up `name` in this directory (inner taken here).
    fn find(&self, name: &[u8]) -> KResult<dir::Found> {
        let d = lk(&self.inner);
        if d.links == 0 {
            return Err(Errno::ENOENT);
        }
        dir::lookup(&self.fs, self.ino, &d, name, &mut lk(&self.dindex))?.ok_or(Errno::ENOENT)
    }

    /// Change a node's link count by `delta` (ctime too) and write it.
    fn adjust_links(&self, delta: i32) -> KResult<()> {
        let mut i = lk(&self.inner);
        let n = i.links as i32 + delta;
        if n < 0 {
            return Err(self
                .fs
                .corrupt(format_args!("inode {}: link count below zero", self.ino)));
        }
        if n as u32 > LINK_MAX {
            return Err(Errno::EMLINK);
        }
        i.links = n as u16;
        i.ctime = now();
        self.write(&i)
    }

    /// Drop one link for an unlink: the new count as a plain delayed write
    /// (true), or synchronously where an update of the inode is held back
    /// (false; see [`Ext2Fs::write_inode_unordered`]).
    fn drop_link_unordered(&self) -> KResult<bool> {
        let mut i = lk(&self.inner);
        if i.links == 0 {
            return Err(self
                .fs
                .corrupt(format_args!("inode {}: link count below zero", self.ino)));
        }
        i.links -= 1;
        i.ctime = now();
        let r = match self.fs.write_inode_unordered(self.ino, &i) {
            Ok(true) => Ok(true),
            Ok(false) => self.write(&i).map(|_| false),
            Err(e) => Err(e),
        };
        if r.is_err() {
            i.links += 1;
        }
        r
    }

    /// Remove entry `name` (pointing at `ino`) from this directory, with
    /// `dir_links` added to the directory's own link count; the directory
    /// block is written as `how` says.
    fn unlink_entry(&self, name: &[u8], ino: u32, dir_links: i32, how: DirWrite) -> KResult<()> {
        let mut d = lk(&self.inner);
        self.dir_prepare(&mut d)?;
        dir::remove_entry(&self.fs, self.ino, &d, name, ino, how, &mut lk(&self.dindex))?;
        let t = now();
        d.mtime = t;
        d.ctime = t;
        d.links = (d.links as i32 + dir_links).max(0) as u16;
        self.write_dir(&d)
    }
}

impl VnodeOps for Ext2Node {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn getattr(&self, vp: &Vnode) -> KResult<Vattr> {
        let fsid = vp.mount().map(|m| m.fsid()).unwrap_or(0);
        let i = lk(&self.inner);
        Ok(self.vattr(&i, fsid))
    }

    fn setattr(&self, _vp: &Vnode, sa: &SetAttr, cred: &Cred) -> KResult<()> {
        if self.fs.rdonly {
            return Err(Errno::EROFS);
        }
        let mut i = lk(&self.inner);
        let others = SetAttr {
            flags: None,
            ..sa.clone()
        };
        if i.flags & FROZEN != 0 && !others.is_empty() {
            return Err(Errno::EPERM);
        }
        if let Some(f) = sa.flags {
            use bsdflags::*;
            if f & !(UF_NODUMP | SF_IMMUTABLE | SF_APPEND) != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            if (f ^ bsd_flags(i.flags)) & (SF_IMMUTABLE | SF_APPEND) != 0 && !cred.is_root() {
                return Err(Errno::EPERM);
            }
            let mut e = i.flags & !(iflags::NODUMP | FROZEN);
            if f & UF_NODUMP != 0 {
                e |= iflags::NODUMP;
            }
            if f & SF_IMMUTABLE != 0 {
                e |= iflags::IMMUTABLE;
            }
            if f & SF_APPEND != 0 {
                e |= iflags::APPEND;
            }
            i.flags = e;
        }
        let t = now();
        if let Some(size) = sa.size {
            if self.vtype != VType::Reg {
                return Err(if self.vtype == VType::Dir {
                    Errno::EISDIR
                } else {
                    Errno::EINVAL
                });
            }
            if size != i.size {
                self.truncate(&mut i, size)?;
                i.mtime = t;
            }
        }
        if let Some(m) = sa.mode {
            i.mode = ((i.mode as u32 & S_IFMT) | (m & ALLPERMS)) as u16;
        }
        if let Some(u) = sa.uid {
            i.uid = u;
        }
        if let Some(g) = sa.gid {
            i.gid = g;
        }
        let set = |st: &SetTime| match st {
            SetTime::Now => t,
            SetTime::At(x) => (x.sec, x.nsec),
        };
        if let Some(a) = &sa.atime {
            i.atime = set(a);
        }
        if let Some(m) = &sa.mtime {
            i.mtime = set(m);
        }
        if let Some(b) = sa.birthtime {
            if i.crtime.is_some() {
                i.crtime = Some((b.sec, b.nsec));
            }
        }
        i.ctime = t;
        i.clamp_times();
        // Attribute changes need no ordering (a size change was written
        // synchronously by truncate before any block was freed): delayed.
        self.fs.write_inode_delayed(self.ino, &i)
    }

    fn lookup(&self, dvp: &Vnode, name: &[u8]) -> KResult<VnodeRef> {
        let mp = self.mp(dvp)?;
        if self.vtype != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        let f = self.find(name)?;
        if name == b"." && f.ino != self.ino {
            return Err(self.fs.corrupt(format_args!(
                "directory {}: '.' points at {}",
                self.ino, f.ino
            )));
        }
        vget(&self.fs, &mp, f.ino)
    }

    fn create(&self, dvp: &Vnode, name: &[u8], mode: u32, cred: &Cred) -> KResult<VnodeRef> {
        self.make_node(dvp, name, S_IFREG, mode, cred, &|_, _, _| Ok(()))
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
        let ifmt = match vtype {
            VType::Chr | VType::Blk | VType::Fifo | VType::Sock | VType::Reg => vtype.ifmt(),
            _ => return Err(Errno::EINVAL),
        };
        let dev = matches!(vtype, VType::Chr | VType::Blk);
        self.make_node(dvp, name, ifmt, mode, cred, &|_, _, i| {
            if dev {
                i.set_rdev(rdev);
            }
            Ok(())
        })
    }

    fn mkdir(&self, dvp: &Vnode, name: &[u8], mode: u32, cred: &Cred) -> KResult<VnodeRef> {
        let parent = self.ino;
        self.make_node(dvp, name, S_IFDIR, mode, cred, &|fs, ino, i| {
            let b = alloc::alloc_block(
                fs,
                dir::group_goal(fs, ino),
                alloc::may_use_reserved(fs, cred),
            )?;
            i.block[0] = b as u32;
            i.blocks = bmap::sectors(fs);
            i.size = fs.geo.block_size as u64;
            let blk = dir::empty_dir_block(fs, ino, parent)?;
            // Reachable once the inode has links: held back until durable.
            fs.bio.bdwrite(b, &blk)
        })
    }

    fn symlink(&self, dvp: &Vnode, name: &[u8], target: &[u8], cred: &Cred) -> KResult<VnodeRef> {
        let fs = &self.fs;
        if target.len() >= fs.geo.block_size as usize || target.len() >= rumpkern::PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.make_node(dvp, name, S_IFLNK, 0o777, cred, &|fs, ino, i| {
            i.size = target.len() as u64;
            if target.len() <= FAST_SYMLINK_MAX {
                let dst = i.raw.get_mut(40..40 + target.len()).ok_or(Errno::EIO)?;
                dst.copy_from_slice(target);
                let mut blocks = [0u32; N_BLOCKS];
                for (k, b) in blocks.iter_mut().enumerate() {
                    *b = le32(&i.raw, 40 + 4 * k)?;
                }
                i.block = blocks;
                return Ok(());
            }
            let b = alloc::alloc_block(
                fs,
                dir::group_goal(fs, ino),
                alloc::may_use_reserved(fs, cred),
            )?;
            i.block[0] = b as u32;
            i.blocks = bmap::sectors(fs);
            let mut blk = vec![0u8; fs.geo.block_size as usize];
            blk.get_mut(..target.len())
                .ok_or(Errno::EIO)?
                .copy_from_slice(target);
            // Reachable once the inode has links: held back until durable.
            fs.bio.bdwrite(b, &blk)
        })
    }

    fn link(&self, _dvp: &Vnode, vp: &Vnode, name: &[u8]) -> KResult<()> {
        let n = node(vp)?;
        if !Arc::ptr_eq(&n.fs, &self.fs) {
            return Err(Errno::EXDEV);
        }
        {
            let d = lk(&self.inner);
            if d.links == 0 {
                return Err(Errno::ENOENT);
            }
            if d.flags & iflags::IMMUTABLE != 0 {
                return Err(Errno::EPERM);
            }
        }
        let ft = {
            let i = lk(&n.inner);
            if i.links == 0 {
                return Err(Errno::ENOENT);
            }
            if i.flags & FROZEN != 0 {
                return Err(Errno::EPERM);
            }
            if i.links as u32 >= LINK_MAX {
                return Err(Errno::EMLINK);
            }
            ftype_of_mode(i.ifmt())
        };
        // The count goes up (synchronously) before the entry exists: a
        // crash in between leaves a count one too high, which e2fsck -p
        // fixes. So the entry's block only has to come later: delayed.
        n.adjust_links(1)?;
        let r = {
            let mut d = lk(&self.inner);
            let r = self.dir_prepare(&mut d).and_then(|_| {
                dir::add_entry(
                    &self.fs,
                    self.ino,
                    &mut d,
                    name,
                    n.ino,
                    ft,
                    true,
                    true,
                    &mut lk(&self.dindex),
                )
            });
            let t = now();
            d.mtime = t;
            d.ctime = t;
            let w = self.write_dir(&d);
            r.and(w)
        };
        if let Err(e) = r {
            let _ = n.adjust_links(-1);
            return Err(e);
        }
        Ok(())
    }

    fn remove(&self, dvp: &Vnode, name: &[u8]) -> KResult<()> {
        let mp = self.mp(dvp)?;
        let f = self.find(name)?;
        let vp = vget(&self.fs, &mp, f.ino)?;
        if vp.vtype() == VType::Dir {
            return Err(Errno::EISDIR);
        }
        let n = node(&vp)?;
        if self.frozen() || n.frozen() {
            return Err(Errno::EPERM);
        }
        // The link count drops before the entry goes (a crash in between
        // leaves an entry naming an unlinked inode, which e2fsck -p clears;
        // the other order would leave an unattached inode). The count is a
        // plain delayed write and the entry's removal waits for the next
        // barrier, which makes the count durable first
        // (`Ext2Fs::write_after_barrier`); where an update of the inode is
        // held back already, the count is written synchronously and the
        // removal is a plain delayed write. (The inode number cannot be
        // reused on the device first: a new inode is held back until
        // every dirty block, and every held directory block, is durable.)
        let r = n.drop_link_unordered().and_then(|unordered| {
            let how = if unordered {
                DirWrite::AfterBarrier
            } else {
                DirWrite::Delayed
            };
            self.unlink_entry(name, f.ino, 0, how).inspect_err(|_| {
                let _ = n.adjust_links(1);
            })
        });
        drop(vp);
        r
    }

    fn rmdir(&self, dvp: &Vnode, name: &[u8]) -> KResult<()> {
        let mp = self.mp(dvp)?;
        let f = self.find(name)?;
        let vp = vget(&self.fs, &mp, f.ino)?;
        let r = (|| {
            if vp.vtype() != VType::Dir {
                return Err(Errno::ENOTDIR);
            }
            if vp.ino() == dvp.ino() {
                return Err(Errno::EINVAL);
            }
            let _vl = vp.lock_exclusive();
            let n = node(&vp)?;
            if self.frozen() || n.frozen() {
                return Err(Errno::EPERM);
            }
            // The drops of the children's link counts, and their entries'
            // removals held in this directory's blocks, become durable
            // first: once the directory is gone on the device, e2fsck does
            // not read its blocks, and a child whose count drop was lost
            // would be an inode without an entry.
            if self.fs.has_unordered() {
                self.fs.flush_pending()?;
            }
            // Empty check and the link count to 0 together, then the entry
            // (a crash in between leaves an entry naming an unlinked
            // directory, which e2fsck -p clears).
            let saved = {
                let mut i = lk(&n.inner);
                if !dir::is_empty(&self.fs, n.ino, &i, &mut lk(&n.dindex))? {
                    return Err(Errno::ENOTEMPTY);
                }
                let saved = i.links;
                i.links = 0;
                i.ctime = now();
                n.write(&i)?;
                saved
            };
            self.unlink_entry(name, n.ino, -1, DirWrite::Sync).inspect_err(|_| {
                let mut i = lk(&n.inner);
                i.links = saved;
                let _ = n.write(&i);
            })
        })();
        drop(vp);
        r
    }

    fn rename(
        &self,
        fdvp: &Vnode,
        fname: &[u8],
        tdvp: &Vnode,
        tname: &[u8],
        cred: &Cred,
    ) -> KResult<()> {
        let fs = &self.fs;
        let mp = self.mp(fdvp)?;
        let tdir = node(tdvp)?;
        let fdir = self;
        if !Arc::ptr_eq(&tdir.fs, fs) {
            return Err(Errno::EXDEV);
        }
        let src = fdir.find(fname)?;
        let tgt = match tdir.find(tname) {
            Ok(t) => Some(t),
            Err(e) if e == Errno::ENOENT => None,
            Err(e) => return Err(e),
        };
        if tgt.as_ref().is_some_and(|t| t.ino == src.ino) {
            return Ok(()); // hard links of the same file: nothing to do
        }
        let svp = vget(fs, &mp, src.ino)?;
        let tvp = match &tgt {
            Some(t) => Some(vget(fs, &mp, t.ino)?),
            None => None,
        };
        let r = (|| {
            let sdir = svp.vtype() == VType::Dir;
            let moved = sdir && fdvp.ino() != tdvp.ino();
            if sdir {
                genfs::rename_check_ancestry(&svp, tdvp)?;
            }
            let _sl = svp.lock_exclusive();
            let snode = node(&svp)?;
            let _tl;
            if let Some(tvp) = &tvp {
                let tdirp = tvp.vtype() == VType::Dir;
                if sdir && !tdirp {
                    return Err(Errno::ENOTDIR);
                }
                if !sdir && tdirp {
                    return Err(Errno::EISDIR);
                }
                if tvp.ino() == fdvp.ino() || tvp.ino() == tdvp.ino() {
                    return Err(Errno::ENOTEMPTY); // the source's own parent
                }
                _tl = tvp.lock_exclusive();
                if tdirp {
                    let tn = node(tvp)?;
                    let i = lk(&tn.inner);
                    if !dir::is_empty(fs, tn.ino, &i, &mut lk(&tn.dindex))? {
                        return Err(Errno::ENOTEMPTY);
                    }
                }
            }
            if moved && tvp.is_none() {
                let d = lk(&tdir.inner);
                if d.links as u32 >= LINK_MAX {
                    return Err(Errno::EMLINK);
                }
            }
            if fdir.frozen() || snode.frozen() || lk(&tdir.inner).flags & iflags::IMMUTABLE != 0 {
                return Err(Errno::EPERM);
            }
            if let Some(tvp) = &tvp {
                if node(tvp)?.frozen() || tdir.frozen() {
                    return Err(Errno::EPERM);
                }
            }
            let ft = ftype_of_mode(svp.vtype().ifmt());
            // Same directory, no target, the new name fits the old record:
            // one block write renames atomically.
            if fdvp.ino() == tdvp.ino() && tvp.is_none() {
                let mut d = lk(&fdir.inner);
                fdir.dir_prepare(&mut d)?;
                if dir::rename_in_place(
                    fs,
                    fdir.ino,
                    &d,
                    fname,
                    tname,
                    src.ino,
                    &mut lk(&fdir.dindex),
                )? {
                    let t = now();
                    d.mtime = t;
                    d.ctime = t;
                    fdir.write_dir(&d)?;
                    drop(d);
                    let mut i = lk(&snode.inner);
                    i.ctime = t;
                    return snode.write(&i);
                }
            }
            // 1. One more link while both names exist (crash safety).
            snode.adjust_links(1)?;
            // 2. The new name.
            let step2 = match &tvp {
                Some(tvp) => (|| {
                    let tn = node(tvp)?;
                    let tdirp = tvp.vtype() == VType::Dir;
                    // The replaced file loses its link before its entry is
                    // rewritten (crash: an entry naming an unlinked inode,
                    // which e2fsck -p clears; never an unattached inode).
                    let saved = {
                        let mut i = lk(&tn.inner);
                        let saved = i.links;
                        i.links = if tdirp { 0 } else { i.links.saturating_sub(1) };
                        i.ctime = now();
                        tn.write(&i)?;
                        saved
                    };
                    let mut d = lk(&tdir.inner);
                    let r = tdir.dir_prepare(&mut d).and_then(|_| {
                        dir::set_entry(fs, tdir.ino, &d, tname, src.ino, ft, &mut lk(&tdir.dindex))
                    });
                    if let Err(e) = r {
                        drop(d);
                        let mut i = lk(&tn.inner);
                        i.links = saved;
                        let _ = tn.write(&i);
                        return Err(e);
                    }
                    let t = now();
                    d.mtime = t;
                    d.ctime = t;
                    // A replaced directory's ".." no longer counts; a
                    // moved-in directory's does.
                    if tdirp && !moved {
                        d.links = d.links.saturating_sub(1);
                    }
                    tdir.write_dir(&d)
                })(),
                None => (|| {
                    let mut d = lk(&tdir.inner);
                    tdir.dir_prepare(&mut d)?;
                    let r = dir::add_entry(
                        fs,
                        tdir.ino,
                        &mut d,
                        tname,
                        src.ino,
                        ft,
                        alloc::may_use_reserved(fs, cred),
                        false,
                        &mut lk(&tdir.dindex),
                    );
                    if r.is_ok() {
                        let t = now();
                        d.mtime = t;
                        d.ctime = t;
                        if moved {
                            d.links += 1;
                        }
                    }
                    let w = tdir.write_dir(&d);
                    r.and(w).map(|_| ())
                })(),
            };
            if let Err(e) = step2 {
                let _ = snode.adjust_links(-1);
                return Err(e);
            }
            // 3. The old name goes.
            fdir.unlink_entry(fname, src.ino, if moved { -1 } else { 0 }, DirWrite::Sync)?;
            // 4. Back to the right link count; a moved directory's "..".
            let mut i = lk(&snode.inner);
            i.links = i.links.saturating_sub(1);
            i.ctime = now();
            if moved {
                dir::set_entry(
                    fs,
                    snode.ino,
                    &i,
                    b"..",
                    tdir.ino,
                    ftype::DIR,
                    &mut lk(&snode.dindex),
                )?;
            }
            snode.write(&i)
        })();
        drop(tvp);
        drop(svp);
        r
    }

    fn read(&self, _vp: &Vnode, uio: &mut Uio<'_>, _ioflag: u32) -> KResult<()> {
        let fs = &self.fs;
        let inode = lk(&self.inner).clone();
        let size = inode.size;
        let bs = fs.geo.block_size as u64;
        let mut mc = MapCache::default();
        while uio.resid() > 0 && uio.offset < size {
            let off = uio.offset;
            let lbn = off / bs;
            let boff = (off % bs) as usize;
            let n = ((bs as usize - boff) as u64)
                .min(size - off)
                .min(uio.resid() as u64) as usize;
            match bmap::bmap(fs, self.ino, &inode, lbn, &mut mc)? {
                None => {
                    uio.uiomove_zero(n);
                }
                Some(p) => {
                    let end = off.saturating_add(uio.resid() as u64).min(size);
                    let ahead = (end - lbn * bs).div_ceil(bs).min((1 << 20) / bs) as usize;
                    // Straight from the cached block into the caller's buffer.
                    fs.bio
                        .with_block(p, ahead, |b| match b.get(boff..boff + n) {
                            Some(src) => {
                                uio.uiomove_out(src);
                                Ok(())
                            }
                            None => Err(Errno::EIO),
                        })??;
                }
            }
        }
        self.mark_access();
        Ok(())
    }

    fn write(&self, _vp: &Vnode, uio: &mut Uio<'_>, ioflag: u32, cred: &Cred) -> KResult<()> {
        let fs = &self.fs;
        if fs.rdonly {
            return Err(Errno::EROFS);
        }
        let resv = alloc::may_use_reserved(fs, cred);
        let mut i = lk(&self.inner);
        if i.flags & iflags::IMMUTABLE != 0
            || (i.flags & iflags::APPEND != 0 && ioflag & ioflag::IO_APPEND == 0)
        {
            return Err(Errno::EPERM);
        }
        if ioflag & ioflag::IO_APPEND != 0 {
            uio.offset = i.size;
        }
        if uio.resid() == 0 {
            return Ok(());
        }
        let max = fs.geo.max_file_size;
        if uio.offset >= max {
            return Err(Errno::EFBIG);
        }
        let room = max - uio.offset;
        if (uio.resid() as u64) > room {
            uio.truncate_resid(room as usize);
        }
        let end = uio.offset + uio.resid() as u64;
        if end > i.size {
            self.note_size(end)?;
        }
        let bs = fs.geo.block_size as u64;
        let mut mc = MapCache::default();
        let mut goal = 0u64;
        let mut err = None;
        while uio.resid() > 0 {
            let off = uio.offset;
            let lbn = off / bs;
            let boff = (off % bs) as usize;
            let n = (bs as usize - boff).min(uio.resid());
            if goal == 0 {
                goal = match lbn.checked_sub(1) {
                    Some(prev) => bmap::bmap(fs, self.ino, &i, prev, &mut mc)
                        .ok()
                        .flatten()
                        .map(|b| b + 1)
                        .unwrap_or(0),
                    None => 0,
                };
                if goal == 0 {
                    goal = dir::group_goal(fs, self.ino);
                }
            }
            let (p, fresh) = match bmap::bmap_alloc(fs, self.ino, &mut i, lbn, goal, &mut mc, resv)
            {
                Ok(x) => x,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
            goal = p + 1;
            // A run of new whole blocks at or past the end of the file goes
            // from the request's buffer to the device (Bio::write_direct):
            // no copy into the cache, no per-block bookkeeping; nothing can
            // read those blocks before the write lands (the file's lock is
            // held, they are past its end).
            if fresh && boff == 0 && off >= i.size && uio.resid() >= DIRECT_MIN_BYTES {
                let max = (uio.resid() / bs as usize).min(DIRECT_MAX_BYTES / bs as usize) as u64;
                let mut run = 1u64;
                while run < max {
                    // Allocated but not next to the run, not new, or not
                    // allocated at all (an error the next round meets again):
                    // the run ends; the loop writes the rest through the cache.
                    match bmap::bmap_alloc(fs, self.ino, &mut i, lbn + run, p + run, &mut mc, resv)
                    {
                        Ok((q, true)) if q == p + run => run += 1,
                        _ => break,
                    }
                }
                let bytes = run as usize * bs as usize;
                if bytes >= DIRECT_MIN_BYTES {
                    let data = uio.take_in(bytes);
                    if let Err(e) = fs.bio.write_direct(p, &data) {
                        err = Some(e);
                        break;
                    }
                    goal = p + run;
                    if uio.offset > i.size {
                        i.size = uio.offset;
                    }
                    continue;
                }
                // Too short a run: its blocks are allocated now (so not
                // `fresh` in the next rounds) and each is written whole
                // through the cache, so nothing stale shows.
            }
            // Straight into the cached block: read first only when part of
            // an existing block is kept.
            let full = n == bs as usize;
            let r = fs.bio.update(p, false, fresh || full, |data| {
                if fresh && !full {
                    data.fill(0);
                }
                match data.get_mut(boff..boff + n) {
                    Some(dst) => {
                        uio.uiomove_in(dst);
                        (Ok(()), true)
                    }
                    None => (Err(Errno::EIO), false),
                }
            });
            if let Err(e) = r.and_then(|r| r) {
                err = Some(e);
                break;
            }
            if uio.offset > i.size {
                i.size = uio.offset;
            }
        }
        let t = now();
        i.mtime = t;
        i.ctime = t;
        if !cred.is_root() && i.mode as u32 & (S_ISUID | S_ISGID) != 0 {
            let mut m = i.mode as u32 & !S_ISUID;
            if m & 0o010 != 0 {
                m &= !S_ISGID;
            }
            i.mode = m as u16;
        }
        fs.write_inode_delayed(self.ino, &i)?;
        if ioflag & (ioflag::IO_SYNC | ioflag::IO_DSYNC) != 0 {
            fs.sync()?;
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn fsync(&self, _vp: &Vnode, _datasync: bool) -> KResult<()> {
        self.fs.sync()
    }

    fn readdir(&self, _vp: &Vnode, offset: u64, filler: &mut DirFiller<'_>) -> KResult<()> {
        let fs = &self.fs;
        let d = lk(&self.inner).clone();
        if d.links == 0 {
            return Ok(());
        }
        let mut err = None;
        dir::readdir(fs, self.ino, &d, offset, &mut |name, ino, ft, next| {
            let vt = match vtype_of_ftype(ft) {
                Some(v) => v,
                None => match fs.read_inode(ino).ok().and_then(|i| vtype_of(i.mode)) {
                    Some(v) => v,
                    None => {
                        err = Some(fs.corrupt(format_args!(
                            "directory {}: entry for inode {ino} of unknown type",
                            self.ino
                        )));
                        return false;
                    }
                },
            };
            filler(&DirEntry {
                ino: ino as u64,
                name,
                vtype: vt,
                next_offset: next,
            })
        })?;
        if offset == 0 {
            self.mark_access();
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn readlink(&self, _vp: &Vnode) -> KResult<Vec<u8>> {
        let fs = &self.fs;
        let i = lk(&self.inner).clone();
        if self.vtype != VType::Lnk {
            return Err(Errno::EINVAL);
        }
        let len = i.size as usize;
        if i.is_fast_symlink(fs.geo.block_size) {
            if len > N_BLOCKS * 4 {
                return Err(fs.corrupt(format_args!("fast symlink {}: size {len}", self.ino)));
            }
            return Ok(i.raw.get(40..40 + len).ok_or(Errno::EIO)?.to_vec());
        }
        if i.size > fs.geo.block_size as u64 || len >= rumpkern::PATH_MAX {
            return Err(fs.corrupt(format_args!("symlink {}: size {}", self.ino, i.size)));
        }
        let mut mc = MapCache::default();
        match bmap::bmap(fs, self.ino, &i, 0, &mut mc)? {
            None => Err(fs.corrupt(format_args!("symlink {}: no data block", self.ino))),
            Some(p) => Ok(fs.bio.bread(p)?.get(..len).ok_or(Errno::EIO)?.to_vec()),
        }
    }

    fn inactive(&self, _vp: &Vnode) -> KResult<bool> {
        let gone = lk(&self.inner).links == 0;
        if gone && !self.fs.rdonly {
            self.release()?;
        }
        Ok(gone)
    }

    fn bmap(&self, _vp: &Vnode, lbn: u64) -> KResult<Option<u64>> {
        let i = lk(&self.inner).clone();
        let mapped = match self.vtype {
            VType::Reg | VType::Dir => true,
            VType::Lnk => !i.is_fast_symlink(self.fs.geo.block_size),
            _ => false,
        };
        if !mapped {
            return Err(Errno::EINVAL);
        }
        let mut mc = MapCache::default();
        bmap::bmap(&self.fs, self.ino, &i, lbn, &mut mc)
    }

    fn pathconf(&self, _vp: &Vnode, name: PathConf) -> KResult<i64> {
        match name {
            PathConf::LinkMax => Ok(LINK_MAX as i64),
            PathConf::NameMax => Ok(NAME_LEN as i64),
            PathConf::FileSizeBits => Ok(64),
            PathConf::SymlinkMax => {
                Ok((self.fs.geo.block_size as i64 - 1).min(rumpkern::PATH_MAX as i64 - 1))
            }
            n => genfs::pathconf(n),
        }
    }
}
