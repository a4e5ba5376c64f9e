//! Vnode operations (NetBSD `msdosfs_vnops.c`, `msdosfs_lookup.c`).
//!
//! The [`VnodeRef`] wrappers have locked the vnodes and checked names and
//! permissions (against the attributes [`VnodeOps::getattr`] returns, which
//! reflect the mount's `uid`/`gid`/masks) before these are called.
//!
//! Inode numbers are derived from the position of the short entry
//! (byte offset / 32, as Linux's `i_pos` and NetBSD's `dirclust`/`diroffset`
//! do); the root is [`ROOT_INO`]. A renamed file keeps its number while its
//! vnode lives (see [`Fs::ino_for_pos`]).

use std::any::Any;
use std::sync::Arc;

use rumpkern::types::ioflag;
use rumpkern::{
    Cred, DirEntry, DirFiller, Errno, KResult, Mount, PathConf, SetAttr, SetTime, Timespec, Uio,
    VType, Vattr, Vnode, VnodeOps, VnodeRef,
};

use crate::dir::{DirStore, Found, IdxEntry};
use crate::dirent::*;
use crate::fs::{Fs, ROOT_INO};
use crate::node::{MsdosNode, NodeState};

/// The vnode of the entry at `pos` (loaded from `e` if not cached).
pub(crate) fn get_vnode(
    fs: &Arc<Fs>,
    mp: &Arc<Mount>,
    pos: u64,
    e: &ShortEntry,
    parent_ino: u64,
) -> KResult<VnodeRef> {
    let ino = fs.ino_for_pos(pos);
    mp.vcache_get(ino, || {
        let vt = if e.is_dir() { VType::Dir } else { VType::Reg };
        fs.node_loaded(ino, Some(pos));
        Ok((
            vt,
            Box::new(MsdosNode::new(
                fs.clone(),
                ino,
                Some(pos),
                e.clone(),
                parent_ino,
            )) as Box<dyn VnodeOps>,
        ))
    })
}

/// The root vnode.
pub(crate) fn root_vnode(fs: &Arc<Fs>, mp: &Arc<Mount>) -> KResult<VnodeRef> {
    mp.vcache_get(ROOT_INO, || {
        let e = ShortEntry {
            name: *b"           ",
            attr: ATTR_DIR,
            ntres: 0,
            ctime_tenth: 0,
            ctime: 0,
            cdate: 0,
            adate: 0,
            start: fs.geo.root_cluster,
            mtime: 0,
            mdate: 0,
            size: 0,
        };
        fs.node_loaded(ROOT_INO, None);
        Ok((
            VType::Dir,
            Box::new(MsdosNode::new(fs.clone(), ROOT_INO, None, e, ROOT_INO)) as Box<dyn VnodeOps>,
        ))
    })
}

fn node_of(vp: &Vnode) -> KResult<&MsdosNode> {
    vp.data::<MsdosNode>().ok_or(Errno::EXDEV)
}

/// A name as FAT stores it for a new entry, or EINVAL.
fn fat_name(name: &[u8]) -> KResult<String> {
    normalize(name)
        .filter(|n| valid_new_name(n))
        .ok_or(Errno::EINVAL)
}

fn now_dos(fs: &Fs) -> (u16, u16, u8) {
    unix_to_dos(Timespec::now(), fs.opts.tz_off)
}

impl MsdosNode {
    fn mount(&self, vp: &Vnode) -> KResult<Arc<Mount>> {
        vp.mount().ok_or(Errno::EIO)
    }

    fn store(&self) -> KResult<DirStore> {
        let mut st = self.st.enter();
        self.dir_store(&mut st)
    }

    /// Start cluster of this directory as `..` entries name it (0 = root).
    fn dotdot_cluster(&self) -> u32 {
        if self.is_root {
            0
        } else {
            self.st.enter().e.start
        }
    }

    /// Add an entry named `name` with contents `e` (its name field is
    /// replaced) to this directory. Returns the position of the short entry.
    /// `ignore`: a short name that may be reused (rename). `sync`: the new
    /// slots are on the device when this returns.
    fn add_entry(
        &self,
        name: &str,
        e: &ShortEntry,
        ignore: Option<&[u8; 11]>,
        sync: bool,
    ) -> KResult<u64> {
        let fs = &self.fs;
        let mut st = self.st.enter();
        let (short, ntcase, need_lfn, start) = self.with_index(&mut st, |idx, _| {
            let (short, nt, lfn) = fs.make_short_name(name, &|s| idx.short_used(s, ignore))?;
            let n = if lfn { lfn_slot_count(name) + 1 } else { 1 };
            let start = idx.free_run(n).unwrap_or(idx.end);
            Ok::<_, Errno>((short, nt, lfn, start))
        })??;
        let mut slots = if need_lfn {
            lfn_slots(name, &short)
        } else {
            Vec::new()
        };
        let mut se = e.clone();
        se.name = short;
        se.ntres = ntcase;
        slots.push(se.encode(fs.fat32()));
        let n = slots.len() as u32;
        let mut d = self.dir_store(&mut st)?;
        if start as u64 + n as u64 > fs.dir_slots(&d) as u64 {
            d = self.extend_dir(&mut st, start as u64 + n as u64)?;
        }
        fs.write_slots(&d, start, &slots, sync)?;
        let short_slot = start + n - 1;
        let pos = match &d {
            DirStore::Root16 => fs.geo.root_offset + short_slot as u64 * 32,
            DirStore::Clusters(cl) => {
                let per = fs.geo.cluster_size / 32;
                let c = *cl.get((short_slot / per) as usize).ok_or(Errno::EIO)?;
                fs.geo.cluster_offset(c) + (short_slot % per) as u64 * 32
            }
        };
        let display = if need_lfn {
            name.to_string()
        } else {
            se.display_name(true, false)
        };
        if let Some(idx) = st.index.as_mut() {
            idx.added(IdxEntry {
                name: display,
                short,
                slot: short_slot,
                first_slot: start,
                pos,
            });
        }
        Ok(pos)
    }

    /// Remove the slots of entry `f` from this directory (and the index).
    fn delete_entry(&self, f: &Found) -> KResult<()> {
        let mut st = self.st.enter();
        let d = self.dir_store(&mut st)?;
        let r = self.fs.delete_slots(&d, f.first_slot, f.slot);
        if let Some(idx) = st.index.as_mut() {
            if r.is_err() || !idx.removed(f.slot) {
                self.drop_index(&mut st);
            }
        }
        r
    }

    /// Grow this directory to at least `need_slots` slots.
    /// ENOSPC for the fixed root or past the slot limit.
    fn extend_dir(&self, st: &mut NodeState, need_slots: u64) -> KResult<DirStore> {
        let fs = &self.fs;
        if self.is_root && !fs.fat32() {
            return Err(Errno::ENOSPC);
        }
        let per = fs.geo.cluster_size / 32;
        self.full_chain(st)?;
        let have_slots = st.chain.len() as u64 * per as u64;
        if need_slots > MAX_DIR_SLOTS as u64 {
            return Err(Errno::ENOSPC);
        }
        let extra = need_slots.saturating_sub(have_slots).div_ceil(per as u64) as u32;
        let new = fs.alloc_chain(extra, st.chain.last())?;
        // The zeroed clusters reach the device before the (delayed) FAT
        // links that make them part of the directory.
        for &c in &new {
            let mut b = fs.getblk_cluster(c)?;
            b.data_mut().fill(0);
            b.bwrite()?;
            st.chain.push(c);
        }
        st.chain.complete = true;
        let d = DirStore::Clusters(Arc::new(st.chain.to_vec()));
        st.dstore = Some(d.clone());
        Ok(d)
    }

    /// Find `name` here, case-insensitively.
    fn find(&self, name: &str) -> KResult<Option<Found>> {
        let hit = {
            let mut st = self.st.enter();
            self.with_index(&mut st, |idx, _| idx.find(name).cloned())?
        };
        let Some(h) = hit else { return Ok(None) };
        let entry = self.fs.read_entry(h.pos)?;
        Ok(Some(Found {
            name: h.name,
            entry,
            slot: h.slot,
            first_slot: h.first_slot,
            pos: h.pos,
        }))
    }

    fn vnode_for(&self, dvp: &Vnode, f: &Found) -> KResult<VnodeRef> {
        let mp = self.mount(dvp)?;
        get_vnode(&self.fs, &mp, f.pos, &f.entry, self.ino)
    }

    /// The parent of this directory (`..`): read our `..` entry for the
    /// parent's cluster, the parent's `..` for the grandparent, and find the
    /// parent's entry there (as NetBSD does).
    fn lookup_dotdot(&self, dvp: &Vnode) -> KResult<VnodeRef> {
        let fs = &self.fs;
        let mp = self.mount(dvp)?;
        if self.is_root {
            return root_vnode(fs, &mp);
        }
        let my = self.store()?;
        let pc = self.dotdot_of(&my)?;
        if pc == 0 || fs.fat32() && pc == fs.geo.root_cluster {
            return root_vnode(fs, &mp);
        }
        if !fs.geo.valid_cluster(pc) {
            return Err(fs.corrupt(format_args!(
                "directory inode {}: `..` names cluster {pc:#x}",
                self.ino
            )));
        }
        let parent_store = DirStore::Clusters(Arc::new(self.chain_of(pc)?));
        let gc = self.dotdot_of(&parent_store)?;
        let gstore = if gc == 0 || fs.fat32() && gc == fs.geo.root_cluster {
            match fs.fat32() {
                true => DirStore::Clusters(Arc::new(self.chain_of(fs.geo.root_cluster)?)),
                false => DirStore::Root16,
            }
        } else {
            DirStore::Clusters(Arc::new(self.chain_of(gc)?))
        };
        match fs.dir_find_cluster(&gstore, pc)? {
            Some(f) => get_vnode(fs, &mp, f.pos, &f.entry, ROOT_INO),
            None => Err(fs.corrupt(format_args!(
                "directory at cluster {pc} not found in its parent"
            ))),
        }
    }

    /// The cluster list of a directory chain starting at `c` (bounded).
    fn chain_of(&self, c: u32) -> KResult<Vec<u32>> {
        let fs = &self.fs;
        let max = (MAX_DIR_SLOTS as u64 * 32).div_ceil(fs.geo.cluster_size as u64) as u32;
        let mut v = vec![c];
        let mut cur = c;
        while let Some(n) = fs.next_cluster(cur)? {
            if v.len() as u32 >= max.min(fs.geo.cluster_count) {
                return Err(fs.corrupt(format_args!("directory chain at {c} too long (a cycle?)")));
            }
            v.push(n);
            cur = n;
        }
        Ok(v)
    }

    /// The cluster a directory's `..` entry (slot 1) names.
    fn dotdot_of(&self, d: &DirStore) -> KResult<u32> {
        let mut out = None;
        self.fs.scan_slots(d, 1, |rs| {
            if &rs.raw[0..11] == b"..         " {
                out = Some(ShortEntry::parse(rs.raw).start);
            }
            false
        })?;
        out.ok_or_else(|| {
            self.fs.corrupt(format_args!(
                "directory inode {} has no `..` entry",
                self.ino
            ))
        })
    }

    /// Mark the node of entry `f` (in this directory) unlinked; its clusters
    /// are freed when its last reference goes.
    fn unlink_node(&self, dvp: &Vnode, f: &Found) -> KResult<()> {
        let vp = self.vnode_for(dvp, f)?;
        let n = node_of(&vp)?;
        {
            let mut st = n.st.enter();
            st.unlinked = true;
            st.pos = None;
        }
        self.fs.node_moved(vp.ino(), Some(f.pos), None);
        Ok(())
    }

    fn subdirs(&self, st: &mut NodeState) -> KResult<u32> {
        if let Some(n) = st.nsubdirs {
            return Ok(n);
        }
        let d = self.dir_store(st)?;
        let n = self.fs.dir_count_subdirs(&d)?;
        st.nsubdirs = Some(n);
        Ok(n)
    }

    fn adjust_subdirs(&self, delta: i32) {
        let mut st = self.st.enter();
        if let Some(n) = st.nsubdirs.as_mut() {
            *n = n.saturating_add_signed(delta);
        }
    }

    fn new_entry(&self, attr: u8, start: u32) -> ShortEntry {
        let (d, t, tenth) = now_dos(&self.fs);
        ShortEntry {
            name: [b' '; 11],
            attr,
            ntres: 0,
            ctime_tenth: tenth,
            ctime: t,
            cdate: d,
            adate: d,
            start,
            mtime: t,
            mdate: d,
            size: 0,
        }
    }

    /// With `-o sync`, put every change on the device before returning.
    fn sync_if_asked(&self) -> KResult<()> {
        if self.fs.opts.sync {
            self.fs.cache.sync(true)?;
        }
        Ok(())
    }

    /// ENOENT when this directory was removed (entries cannot be added to it).
    fn check_linked(&self) -> KResult<()> {
        if self.st.enter().unlinked {
            return Err(Errno::ENOENT);
        }
        Ok(())
    }

    fn touch_dir(&self) {
        if self.is_root {
            return;
        }
        let mut st = self.st.enter();
        self.touch_mtime(&mut st);
        let _ = self.write_back(&st);
    }
}

impl VnodeOps for MsdosNode {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn getattr(&self, vp: &Vnode) -> KResult<Vattr> {
        let fs = &self.fs;
        let mut st = self.st.enter();
        let o = &fs.opts;
        let (vtype, mut mode) = if self.is_dir {
            (VType::Dir, 0o777 & !o.dmask)
        } else {
            (VType::Reg, 0o777 & !o.fmask)
        };
        if !self.is_dir && st.e.attr & ATTR_RO != 0 {
            mode &= !0o222;
        }
        let tz = o.tz_off;
        let (atime, mtime, birth) = if self.is_root {
            let z = dos_to_unix(0, 0, 0, 0);
            let (a, mt) = st.root_times.unwrap_or((z, z));
            (a, mt, z)
        } else {
            (
                dos_to_unix(st.e.adate, 0, 0, tz),
                dos_to_unix(st.e.mdate, st.e.mtime, 0, tz),
                dos_to_unix(st.e.cdate, st.e.ctime, st.e.ctime_tenth, tz),
            )
        };
        let cs = fs.geo.cluster_size as u64;
        // Files: the clusters their size needs (as Linux reports it; no
        // chain walk, so stat of a large file stays cheap and a broken
        // chain shows when the data is read). Directories: their chain.
        let clusters = if self.is_dir {
            self.allocated_clusters(&mut st).map_or(0, |n| n as u64)
        } else {
            (st.e.size as u64).div_ceil(cs)
        };
        // An unlinked node still open has no name left: fstat shows nlink
        // 0, as on every Unix file system.
        let (size, nlink) = if self.is_dir {
            let size = if self.is_root && !fs.fat32() {
                fs.geo.root_entries as u64 * 32
            } else {
                clusters * cs
            };
            let nlink = if st.unlinked {
                0
            } else {
                2 + self.subdirs(&mut st).unwrap_or(0)
            };
            (size, nlink)
        } else {
            (st.e.size as u64, if st.unlinked { 0 } else { 1 })
        };
        Ok(Vattr {
            vtype,
            mode,
            nlink,
            uid: o.uid,
            gid: o.gid,
            fsid: vp.mount().map(|m| m.fsid()).unwrap_or(0),
            ino: self.ino,
            size,
            blksize: fs.geo.cluster_size,
            bytes: clusters * cs,
            atime,
            mtime,
            ctime: mtime,
            birthtime: birth,
            gen: 0,
            rdev: 0,
            flags: 0,
        })
    }

    fn setattr(&self, vp: &Vnode, sa: &SetAttr, _cred: &Cred) -> KResult<()> {
        let fs = &self.fs;
        let o = &fs.opts;
        // What FAT cannot store: another owner, modes other than the masks allow.
        if (sa.uid.is_some_and(|u| u != o.uid) || sa.gid.is_some_and(|g| g != o.gid)) && !o.quiet {
            return Err(Errno::EPERM);
        }
        if sa.flags.is_some_and(|f| f != 0) {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut new_ro = None;
        if let Some(md) = sa.mode {
            let mask = if self.is_dir { o.dmask } else { o.fmask };
            let cur = self.getattr(vp)?.mode;
            let perm = md & !mask & 0o777;
            let rx = 0o555;
            let ok_rest = md & !0o777 == 0 && perm & rx == cur & rx;
            let w = perm & 0o222;
            let full_w = 0o222 & !mask;
            let ok_w = if self.is_dir {
                w == full_w
            } else {
                w == 0 || w == full_w
            };
            if !(ok_rest && ok_w) {
                if !o.quiet {
                    return Err(Errno::EPERM);
                }
            } else if !self.is_dir {
                new_ro = Some(w == 0);
            }
        }
        let mut st = self.st.enter();
        if let Some(size) = sa.size {
            if self.is_dir {
                return Err(Errno::EISDIR);
            }
            self.truncate(&mut st, size)?;
        }
        if let Some(ro) = new_ro {
            if ro {
                st.e.attr |= ATTR_RO;
            } else {
                st.e.attr &= !ATTR_RO;
            }
        }
        let now = Timespec::now();
        let t = |x: SetTime| match x {
            SetTime::Now => now,
            SetTime::At(t) => t,
        };
        if self.is_root {
            let z = dos_to_unix(0, 0, 0, 0);
            let (mut a, mut mt) = st.root_times.unwrap_or((z, z));
            if let Some(x) = sa.atime {
                a = t(x);
            }
            if let Some(x) = sa.mtime {
                mt = t(x);
            }
            st.root_times = Some((a, mt));
            return Ok(());
        }
        let sync = self.fs.opts.sync;
        if let Some(x) = sa.atime {
            st.e.adate = unix_to_dos(t(x), o.tz_off).0;
        }
        if let Some(x) = sa.mtime {
            let (d, tm, _) = unix_to_dos(t(x), o.tz_off);
            st.e.mdate = d;
            st.e.mtime = tm;
        }
        if let Some(b) = sa.birthtime {
            let (d, tm, tenth) = unix_to_dos(b, o.tz_off);
            st.e.cdate = d;
            st.e.ctime = tm;
            st.e.ctime_tenth = tenth;
        }
        self.write_back(&st)?;
        drop(st);
        if sync {
            self.fs.cache.sync(true)?;
        }
        Ok(())
    }

    fn lookup(&self, dvp: &Vnode, name: &[u8]) -> KResult<VnodeRef> {
        if !self.is_dir {
            return Err(Errno::ENOTDIR);
        }
        if name == b".." {
            return self.lookup_dotdot(dvp);
        }
        let name = match normalize(name) {
            Some(n) => n,
            None => return Err(Errno::ENOENT),
        };
        match self.find(&name)? {
            Some(f) => self.vnode_for(dvp, &f),
            None => Err(Errno::ENOENT),
        }
    }

    fn create(&self, dvp: &Vnode, name: &[u8], mode: u32, _cred: &Cred) -> KResult<VnodeRef> {
        let name = fat_name(name)?;
        self.check_linked()?;
        let attr = ATTR_ARCH | if mode & 0o222 == 0 { ATTR_RO } else { 0 };
        let e = self.new_entry(attr, 0);
        let pos = self.add_entry(&name, &e, None, false)?;
        self.touch_dir();
        self.sync_if_asked()?;
        let e = self.fs.read_entry(pos)?;
        let mp = self.mount(dvp)?;
        get_vnode(&self.fs, &mp, pos, &e, self.ino)
    }

    fn mknod(
        &self,
        _dvp: &Vnode,
        _n: &[u8],
        _t: VType,
        _m: u32,
        _r: u64,
        _c: &Cred,
    ) -> KResult<VnodeRef> {
        Err(Errno::EPERM)
    }

    fn symlink(&self, _dvp: &Vnode, _n: &[u8], _t: &[u8], _c: &Cred) -> KResult<VnodeRef> {
        Err(Errno::EPERM)
    }

    fn link(&self, _dvp: &Vnode, _vp: &Vnode, _n: &[u8]) -> KResult<()> {
        Err(Errno::EPERM)
    }

    fn mkdir(&self, dvp: &Vnode, name: &[u8], _mode: u32, _cred: &Cred) -> KResult<VnodeRef> {
        let fs = &self.fs;
        let name = fat_name(name)?;
        self.check_linked()?;
        let c = *fs.alloc_chain(1, None)?.first().ok_or(Errno::EIO)?;
        let r = (|| {
            let e = self.new_entry(ATTR_DIR, c);
            let mut dot = e.clone();
            dot.name = *b".          ";
            let mut dotdot = e.clone();
            dotdot.name = *b"..         ";
            dotdot.start = self.dotdot_cluster();
            let mut b = fs.getblk_cluster(c)?;
            let data = b.data_mut();
            data.fill(0);
            data[0..32].copy_from_slice(&dot.encode(fs.fat32()));
            data[32..64].copy_from_slice(&dotdot.encode(fs.fat32()));
            // The new directory's cluster is on the device before the entry
            // that points at it.
            b.bwrite()?;
            self.add_entry(&name, &e, None, false)
        })();
        let pos = match r {
            Ok(p) => p,
            Err(e) => {
                let _ = fs.free_chain(c);
                return Err(e);
            }
        };
        self.adjust_subdirs(1);
        self.touch_dir();
        self.sync_if_asked()?;
        let e = fs.read_entry(pos)?;
        let mp = self.mount(dvp)?;
        get_vnode(fs, &mp, pos, &e, self.ino)
    }

    fn remove(&self, dvp: &Vnode, name: &[u8]) -> KResult<()> {
        let name = normalize(name).ok_or(Errno::ENOENT)?;
        let f = self.find(&name)?.ok_or(Errno::ENOENT)?;
        if f.entry.is_dir() {
            return Err(Errno::EISDIR);
        }
        self.unlink_node(dvp, &f)?;
        self.delete_entry(&f)?;
        self.touch_dir();
        self.sync_if_asked()
    }

    fn rmdir(&self, dvp: &Vnode, name: &[u8]) -> KResult<()> {
        let fs = &self.fs;
        let name = normalize(name).ok_or(Errno::ENOENT)?;
        let f = self.find(&name)?.ok_or(Errno::ENOENT)?;
        if !f.entry.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let vp = self.vnode_for(dvp, &f)?;
        let child = node_of(&vp)?;
        if !fs.dir_is_empty(&child.store()?)? {
            return Err(Errno::ENOTEMPTY);
        }
        self.unlink_node(dvp, &f)?;
        self.delete_entry(&f)?;
        self.adjust_subdirs(-1);
        self.touch_dir();
        self.sync_if_asked()
    }

    fn rename(
        &self,
        fdvp: &Vnode,
        fname: &[u8],
        tdvp: &Vnode,
        tname: &[u8],
        _cred: &Cred,
    ) -> KResult<()> {
        let fs = &self.fs;
        let tdir = node_of(tdvp)?;
        if !Arc::ptr_eq(&tdir.fs, fs) {
            return Err(Errno::EXDEV);
        }
        let fname = normalize(fname).ok_or(Errno::ENOENT)?;
        let tname = fat_name(tname)?;
        tdir.check_linked()?;
        let src = self.find(&fname)?.ok_or(Errno::ENOENT)?;
        let svp = self.vnode_for(fdvp, &src)?;
        let snode = node_of(&svp)?;
        let same_dir = std::ptr::eq(self, tdir);
        // A directory into its own subtree: EINVAL before any type check
        // (the order Linux's rename gives).
        if src.entry.is_dir() && !same_dir {
            rumpkern::genfs::rename_check_ancestry(&svp, tdvp)?;
        }
        let target = tdir.find(&tname)?;
        if let Some(t) = &target {
            if same_dir && t.pos == src.pos {
                // Same entry (a change of case, or the very same name).
                if t.name == tname {
                    return Ok(());
                }
            } else {
                match (src.entry.is_dir(), t.entry.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => {}
                }
            }
        }
        let replacing = target
            .as_ref()
            .filter(|t| !(same_dir && t.pos == src.pos))
            .cloned();
        if let Some(t) = &replacing {
            if t.entry.is_dir() {
                let tvp = tdir.vnode_for(tdvp, t)?;
                if !fs.dir_is_empty(&node_of(&tvp)?.store()?)? {
                    return Err(Errno::ENOTEMPTY);
                }
            }
        }
        // The new entry is written (to the device) first, so that running
        // out of directory space leaves everything as it was; then the
        // replaced target and the old entry go.
        let mut sst = snode.st.enter();
        let ignore = if same_dir {
            Some(&src.entry.name)
        } else {
            None
        };
        let mut e = sst.e.clone();
        if !snode.is_dir {
            e.attr |= ATTR_ARCH;
        }
        let new_pos = tdir.add_entry(&tname, &e, ignore, true)?;
        self.delete_entry(&src)?;
        // The node keeps its inode number at the new place.
        let old = sst.pos;
        sst.pos = Some(new_pos);
        sst.e = fs.read_entry(new_pos)?;
        sst.parent_ino = tdir.ino;
        drop(sst);
        fs.node_moved(svp.ino(), old, Some(new_pos));
        if let Some(t) = &replacing {
            tdir.unlink_node(tdvp, t)?;
            tdir.delete_entry(t)?;
            if t.entry.is_dir() {
                tdir.adjust_subdirs(-1);
            }
        }
        if snode.is_dir && !same_dir {
            // Point `..` at the new parent.
            let mut st = snode.st.enter();
            let d = snode.dir_store(&mut st)?;
            drop(st);
            let pc = tdir.dotdot_cluster();
            let pc = if fs.fat32() && pc == fs.geo.root_cluster {
                0
            } else {
                pc
            };
            let mut dd = None;
            fs.scan_slots(&d, 1, |rs| {
                if &rs.raw[0..11] == b"..         " {
                    dd = Some((rs.pos, ShortEntry::parse(rs.raw)));
                }
                false
            })?;
            match dd {
                Some((p, mut de)) => {
                    de.start = pc;
                    fs.write_entry(p, &de)?;
                }
                None => return Err(fs.corrupt(format_args!("moved directory has no `..` entry"))),
            }
            self.adjust_subdirs(-1);
            tdir.adjust_subdirs(1);
        }
        self.touch_dir();
        if !same_dir {
            tdir.touch_dir();
        }
        self.sync_if_asked()
    }

    fn read(&self, _vp: &Vnode, uio: &mut Uio<'_>, _ioflag: u32) -> KResult<()> {
        if self.is_dir {
            return Err(Errno::EISDIR);
        }
        MsdosNode::read(self, uio)
    }

    fn write(&self, _vp: &Vnode, uio: &mut Uio<'_>, iof: u32, _cred: &Cred) -> KResult<()> {
        if self.is_dir {
            return Err(Errno::EISDIR);
        }
        let sync = iof & (ioflag::IO_SYNC | ioflag::IO_DSYNC) != 0 || self.fs.opts.sync;
        MsdosNode::write(self, uio, iof & ioflag::IO_APPEND != 0, sync)
    }

    fn fsync(&self, _vp: &Vnode, _datasync: bool) -> KResult<()> {
        self.fs.update_fsinfo()?;
        self.fs.cache.sync(true)
    }

    fn readdir(&self, _vp: &Vnode, offset: u64, filler: &mut DirFiller<'_>) -> KResult<()> {
        let fs = &self.fs;
        let mut off = offset;
        if off == 0 {
            if !filler(&DirEntry {
                ino: self.ino,
                name: b".",
                vtype: VType::Dir,
                next_offset: 1,
            }) {
                return Ok(());
            }
            off = 1;
        }
        if off == 1 {
            let parent = if self.is_root {
                ROOT_INO
            } else {
                self.st.enter().parent_ino
            };
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
        let start = (off - 2).min(u32::MAX as u64) as u32;
        let d = self.store()?;
        fs.scan_entries(&d, start, |f| {
            let vt = if f.entry.is_dir() {
                VType::Dir
            } else {
                VType::Reg
            };
            let ino = fs.ino_for_pos(f.pos);
            filler(&DirEntry {
                ino,
                name: f.name.as_bytes(),
                vtype: vt,
                next_offset: f.slot as u64 + 3,
            })
        })
    }

    fn inactive(&self, _vp: &Vnode) -> KResult<bool> {
        let mut st = self.st.enter();
        if st.unlinked {
            self.drop_index(&mut st);
        } else {
            self.keep_or_drop_index(&mut st);
        }
        if st.unlinked {
            let start = st.e.start;
            drop(st);
            self.fs.free_chain(start)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn reclaim(&self, _vp: &Vnode) -> KResult<()> {
        self.drop_index(&mut self.st.enter());
        self.fs.node_gone(self.ino);
        Ok(())
    }

    /// Logical cluster `lbn` of the file to its data cluster number (FAT's
    /// block address; byte offset = data area + (cluster - 2) x cluster size).
    fn bmap(&self, _vp: &Vnode, lbn: u64) -> KResult<Option<u64>> {
        let mut st = self.st.enter();
        let cs = self.fs.geo.cluster_size as u64;
        if lbn.saturating_mul(cs) >= st.e.size as u64 || lbn > u32::MAX as u64 {
            return Ok(None);
        }
        Ok(Some(self.cluster_at(&mut st, lbn as u32)? as u64))
    }

    fn pathconf(&self, _vp: &Vnode, name: PathConf) -> KResult<i64> {
        Ok(match name {
            PathConf::LinkMax => 1,
            PathConf::NameMax => LFN_MAX as i64,
            PathConf::FileSizeBits => 33,
            PathConf::SymlinkMax => 0,
            other => return rumpkern::genfs::pathconf(other),
        })
    }
}
