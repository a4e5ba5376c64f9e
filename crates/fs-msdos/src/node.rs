//! In-memory nodes (NetBSD `struct denode`): the cached directory entry of a
//! file or directory, its cluster chain, and file data I/O (read, write,
//! truncate) through the buffer cache.
//!
//! # Locking
//!
//! [`MsdosNode::st`] (level 3) guards everything mutable of a node. It is
//! taken after the vnode lock; a thread holding a node's `st` may take a
//! directory's `st` briefly (to extend or read its cluster list) and the
//! FAT lock, never another file's, and never calls into the vcache.

use std::sync::Arc;

use rumpkern::lock::KMutex;
use rumpkern::{Errno, KResult, Timespec, Uio};

use crate::dir::{DirIndex, DirStore};
use crate::dirent::*;
use crate::fs::Fs;

/// Largest file FAT can hold.
pub const MAX_FILE_SIZE: u64 = 0xFFFF_FFFF;

/// The clusters of a chain known so far, as runs of contiguous clusters.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// (first cluster, length) in chain order.
    runs: Vec<(u32, u32)>,
    /// Index in the file of each run's first cluster.
    starts: Vec<u32>,
    len: u32,
    /// The end of chain has been seen: `len` is the whole chain.
    pub complete: bool,
}

impl Chain {
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cluster at index `i`, if known.
    pub fn get(&self, i: u32) -> Option<u32> {
        if i >= self.len {
            return None;
        }
        let k = match self.starts.binary_search(&i) {
            Ok(k) => k,
            Err(k) => k.checked_sub(1)?,
        };
        let (c, n) = *self.runs.get(k)?;
        let s = *self.starts.get(k)?;
        (i - s < n).then(|| c + (i - s))
    }

    /// Clusters contiguous on disk with index `i`, from `i` on (at most `max`).
    pub fn contiguous_from(&self, i: u32, max: u32) -> u32 {
        let k = match self.starts.binary_search(&i) {
            Ok(k) => k,
            Err(k) => match k.checked_sub(1) {
                Some(k) => k,
                None => return 0,
            },
        };
        match (self.runs.get(k), self.starts.get(k)) {
            (Some(&(_, n)), Some(&s)) if i >= s && i - s < n => (n - (i - s)).min(max),
            _ => 0,
        }
    }

    pub fn last(&self) -> Option<u32> {
        self.runs.last().map(|&(c, n)| c + n - 1)
    }

    pub fn push(&mut self, c: u32) {
        if let Some((s, n)) = self.runs.last_mut() {
            if s.checked_add(*n) == Some(c) {
                *n += 1;
                self.len += 1;
                return;
            }
        }
        self.runs.push((c, 1));
        self.starts.push(self.len);
        self.len += 1;
    }

    /// Keep the first `n` clusters.
    pub fn truncate(&mut self, n: u32) {
        while let (Some(&s), Some((_, len))) = (self.starts.last(), self.runs.last_mut()) {
            if s >= n {
                self.starts.pop();
                self.runs.pop();
            } else {
                *len = (*len).min(n - s);
                break;
            }
        }
        self.len = self.len.min(n);
    }

    /// Every cluster, in order (directories: at most a few thousand).
    pub fn to_vec(&self) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.len as usize);
        for &(c, n) in &self.runs {
            v.extend(c..c + n);
        }
        v
    }

    pub fn clear(&mut self) {
        *self = Chain::default();
    }
}

/// Mutable state of a node, under [`MsdosNode::st`].
pub struct NodeState {
    /// Position of the short entry; `None` for the root and once unlinked.
    pub pos: Option<u64>,
    pub unlinked: bool,
    /// The directory entry as cached (the name field is not used).
    pub e: ShortEntry,
    pub chain: Chain,
    /// Subdirectory count, once counted (directories).
    pub nsubdirs: Option<u32>,
    /// Inode number of the parent directory, as last seen.
    pub parent_ino: u64,
    /// Times of the root directory (kept in memory only: it has no entry).
    pub root_times: Option<(Timespec, Timespec)>,
    /// Where a sequential read would continue (read-ahead heuristic).
    pub ra_next: u64,
    /// Directories: the name index, once built. Kept while the vnode is
    /// cached, within [`crate::fs::KEPT_INDEX_BUDGET`] (see
    /// [`MsdosNode::keep_or_drop_index`]).
    pub index: Option<DirIndex>,
    /// Entries charged to the kept-index budget for `index` (0: none).
    pub index_charged: usize,
    /// Directories: the cluster list, once built (replaced on growth).
    pub dstore: Option<DirStore>,
}

/// One file or directory.
pub struct MsdosNode {
    pub fs: Arc<Fs>,
    pub ino: u64,
    pub is_dir: bool,
    pub is_root: bool,
    pub st: KMutex<NodeState>,
}

impl MsdosNode {
    /// A node for the entry `e` at `pos` (None: the root).
    pub fn new(
        fs: Arc<Fs>,
        ino: u64,
        pos: Option<u64>,
        e: ShortEntry,
        parent_ino: u64,
    ) -> MsdosNode {
        let is_root = pos.is_none();
        let is_dir = is_root || e.is_dir();
        MsdosNode {
            fs,
            ino,
            is_dir,
            is_root,
            st: KMutex::new(NodeState {
                pos,
                unlinked: false,
                e,
                chain: Chain::default(),
                nsubdirs: None,
                parent_ino,
                root_times: None,
                ra_next: 0,
                index: None,
                index_charged: 0,
                dstore: None,
            }),
        }
    }

    /// Make sure the chain holds index `idx` (or is complete). EIO on a
    /// broken chain or one longer than the cluster count (a cycle).
    pub fn fill_chain(&self, st: &mut NodeState, idx: u32) -> KResult<()> {
        let fs = &self.fs;
        if st.chain.complete || st.chain.len() > idx {
            return Ok(());
        }
        let mut cur = match st.chain.last() {
            Some(c) => c,
            None => {
                let s = st.e.start;
                if s == 0 {
                    st.chain.complete = true;
                    return Ok(());
                }
                if !fs.geo.valid_cluster(s) {
                    return Err(fs.corrupt(format_args!(
                        "inode {}: first cluster {s:#x} out of range",
                        self.ino
                    )));
                }
                st.chain.push(s);
                s
            }
        };
        while st.chain.len() <= idx {
            match fs.next_cluster(cur)? {
                None => {
                    st.chain.complete = true;
                    return Ok(());
                }
                Some(n) => {
                    if st.chain.len() >= fs.geo.cluster_count {
                        return Err(fs.corrupt(format_args!(
                            "inode {}: cluster chain longer than the volume (a cycle)",
                            self.ino
                        )));
                    }
                    st.chain.push(n);
                    cur = n;
                }
            }
        }
        Ok(())
    }

    /// The cluster at file index `idx`; EIO when the chain is shorter.
    pub fn cluster_at(&self, st: &mut NodeState, idx: u32) -> KResult<u32> {
        self.fill_chain(st, idx)?;
        match st.chain.get(idx) {
            Some(c) => Ok(c),
            None => Err(self.fs.corrupt(format_args!(
                "inode {}: cluster chain of {} clusters ends before index {idx} (size {})",
                self.ino,
                st.chain.len(),
                st.e.size
            ))),
        }
    }

    /// The whole chain (directories), bounded by the directory slot limit.
    pub fn full_chain(&self, st: &mut NodeState) -> KResult<()> {
        let max_clusters =
            (MAX_DIR_SLOTS as u64 * 32).div_ceil(self.fs.geo.cluster_size as u64) as u32;
        self.fill_chain(st, max_clusters)?;
        if st.chain.len() > max_clusters {
            return Err(self.fs.corrupt(format_args!(
                "directory inode {}: chain longer than {MAX_DIR_SLOTS} entries (a cycle?)",
                self.ino
            )));
        }
        Ok(())
    }

    /// Where this directory's slots are.
    pub fn dir_store(&self, st: &mut NodeState) -> KResult<DirStore> {
        if self.is_root && !self.fs.fat32() {
            return Ok(DirStore::Root16);
        }
        if st.e.start == 0 {
            return Err(self
                .fs
                .corrupt(format_args!("directory inode {} has no cluster", self.ino)));
        }
        if let Some(d) = &st.dstore {
            return Ok(d.clone());
        }
        self.full_chain(st)?;
        let d = DirStore::Clusters(Arc::new(st.chain.to_vec()));
        st.dstore = Some(d.clone());
        Ok(d)
    }

    /// Run `f` with this directory's name index (built on first use) and
    /// its store.
    pub fn with_index<R>(
        &self,
        st: &mut NodeState,
        f: impl FnOnce(&mut DirIndex, &DirStore) -> R,
    ) -> KResult<R> {
        let d = self.dir_store(st)?;
        if st.index.is_none() {
            st.index = Some(self.fs.build_index(&d)?);
        }
        match st.index.as_mut() {
            Some(idx) => Ok(f(idx, &d)),
            None => Err(Errno::EIO),
        }
    }

    /// Drop the name index (rebuilt on next use) and its budget charge.
    pub fn drop_index(&self, st: &mut NodeState) {
        st.index = None;
        if st.index_charged > 0 {
            self.fs.uncharge_kept_index(st.index_charged);
            st.index_charged = 0;
        }
    }

    /// The last reference went: keep the name index if the mount's budget
    /// allows (walkers such as fsu_ls and fsu_ecp look names up from the
    /// root, so a directory goes inactive between its entries, and
    /// rebuilding the index every time made listing a directory
    /// quadratic), otherwise drop it.
    pub fn keep_or_drop_index(&self, st: &mut NodeState) {
        let n = match &st.index {
            Some(idx) => idx.len().max(1),
            None => return self.drop_index(st),
        };
        if st.index_charged == n {
            return;
        }
        if st.index_charged > 0 {
            self.fs.uncharge_kept_index(st.index_charged);
            st.index_charged = 0;
        }
        if self.fs.charge_kept_index(n) {
            st.index_charged = n;
        } else {
            st.index = None;
        }
    }

    /// Write the cached entry back to the directory (nothing for the root
    /// or an unlinked node).
    pub fn write_back(&self, st: &NodeState) -> KResult<()> {
        match st.pos {
            Some(p) if !st.unlinked => self.fs.write_entry(p, &st.e),
            _ => Ok(()),
        }
    }

    /// Set the modification time (and archive bit) to now.
    pub fn touch_mtime(&self, st: &mut NodeState) {
        let (d, t, _) = unix_to_dos(Timespec::now(), self.fs.opts.tz_off);
        st.e.mdate = d;
        st.e.mtime = t;
        st.e.adate = d;
        if !self.is_dir {
            st.e.attr |= ATTR_ARCH;
        }
    }

    /// Clusters allocated (for `bytes` in getattr): the chain length,
    /// counted up to what the size needs (files) or whole (directories).
    pub fn allocated_clusters(&self, st: &mut NodeState) -> KResult<u32> {
        if self.is_dir {
            if self.is_root && !self.fs.fat32() {
                return Ok(0);
            }
            self.full_chain(st)?;
        } else {
            let need = (st.e.size as u64).div_ceil(self.fs.geo.cluster_size as u64) as u32;
            if need > 0 {
                self.fill_chain(st, need - 1)?;
            }
        }
        Ok(st.chain.len())
    }

    // -- data --------------------------------------------------------------

    /// Read file data at `uio.offset` up to the end of file.
    pub fn read(&self, uio: &mut Uio<'_>) -> KResult<()> {
        let fs = &self.fs;
        let cs = fs.geo.cluster_size as u64;
        let mut st = self.st.enter();
        let size = st.e.size as u64;
        while uio.resid() > 0 && uio.offset < size {
            let off = uio.offset;
            let idx = (off / cs) as u32;
            let within = (off % cs) as usize;
            let c = self.cluster_at(&mut st, idx)?;
            let n = ((cs as usize - within) as u64)
                .min(size - off)
                .min(uio.resid() as u64) as usize;
            // Sequential reads read ahead along the contiguous run, up to
            // what the file has; random reads read what they need.
            let left = ((size - off).div_ceil(cs)).min(u32::MAX as u64) as u32;
            let want = (uio.resid() as u64).div_ceil(cs).min(u32::MAX as u64) as u32;
            let max_ahead = (rumpkern::buf::MAX_CLUSTER_BYTES as u64 / cs).max(1) as u32;
            let limit = if off == st.ra_next {
                max_ahead
            } else {
                want.clamp(1, max_ahead)
            };
            let span = left.min(limit).max(1);
            if span > 1 {
                // Know the chain as far as the read-ahead may go (the
                // chain is otherwise walked only up to the index needed,
                // and every cluster would be its own device read). A
                // broken link past `idx` is reported when it is needed.
                let _ = self.fill_chain(&mut st, idx.saturating_add(span - 1));
            }
            let ahead = st.chain.contiguous_from(idx, span).max(1);
            let b = fs.bread_cluster(c, ahead as usize)?;
            let data = b.data().get(within..within + n).ok_or(Errno::EIO)?;
            if uio.uiomove_out(data) == 0 {
                break;
            }
            st.ra_next = uio.offset;
        }
        Ok(())
    }

    /// Make sure the file has clusters for `nclusters` indexes, allocating
    /// (linked after the last) as needed. Returns the count it had before.
    /// ENOSPC when not enough are free (then nothing is allocated).
    fn ensure_clusters(&self, st: &mut NodeState, nclusters: u32) -> KResult<u32> {
        if nclusters == 0 {
            return Ok(0);
        }
        self.fill_chain(st, nclusters - 1)?;
        let have = st.chain.len();
        if have >= nclusters {
            return Ok(have);
        }
        if !st.chain.complete {
            return Err(Errno::EIO);
        }
        let prev = st.chain.last();
        let new = self.fs.alloc_chain(nclusters - have, prev)?;
        if prev.is_none() {
            if let Some(&first) = new.first() {
                st.e.start = first;
                // The entry must point at the chain (written with the size below).
            }
        }
        for c in new {
            st.chain.push(c);
        }
        st.chain.complete = true;
        Ok(have)
    }

    /// Write bytes `[off, off+len)` produced by `fill` (which fills the
    /// slice it is given and returns how much it filled), extending the
    /// file. Returns the bytes written. Allocates what it can: on ENOSPC
    /// the write is cut to the clusters available.
    fn write_range(
        &self,
        st: &mut NodeState,
        off: u64,
        len: u64,
        sync: bool,
        mut fill: impl FnMut(&mut [u8]) -> usize,
    ) -> KResult<u64> {
        let fs = &self.fs;
        let cs = fs.geo.cluster_size as u64;
        if len == 0 {
            return Ok(0);
        }
        let mut end = off + len;
        let need = end.div_ceil(cs) as u32;
        let had = match self.ensure_clusters(st, need) {
            Ok(h) => h,
            Err(e) if e == Errno::ENOSPC => {
                // Use what is free, if anything beyond the current end.
                let free = fs.free_clusters().unwrap_or(0);
                let have = st.chain.len();
                let can = have.saturating_add(free);
                let can_end = (can as u64 * cs).min(end);
                if can_end <= off {
                    return Err(Errno::ENOSPC);
                }
                end = can_end;
                self.ensure_clusters(st, end.div_ceil(cs) as u32)?
            }
            Err(e) => return Err(e),
        };
        let mut pos = off;
        while pos < end {
            let idx = (pos / cs) as u32;
            let within = (pos % cs) as usize;
            let n = ((cs - within as u64).min(end - pos)) as usize;
            let c = self.cluster_at(st, idx)?;
            let whole = within == 0 && n == cs as usize;
            let mut b = if whole || idx >= had {
                fs.getblk_cluster(c)?
            } else {
                fs.bread_cluster(c, 1)?
            };
            let dst = b.data_mut().get_mut(within..within + n).ok_or(Errno::EIO)?;
            let got = fill(dst);
            if sync {
                b.bwrite()?;
            } else {
                b.bdwrite();
            }
            pos += got as u64;
            if got < n {
                break;
            }
        }
        if pos > st.e.size as u64 {
            st.e.size = pos as u32;
        }
        Ok(pos - off)
    }

    /// Zero `[from, to)` (extending the file to `to`).
    fn zero_fill(&self, st: &mut NodeState, from: u64, to: u64) -> KResult<()> {
        if to <= from {
            return Ok(());
        }
        let done = self.write_range(st, from, to - from, false, |d| {
            d.fill(0);
            d.len()
        })?;
        if done < to - from {
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    /// Write `uio` at its offset (at the end with `append`).
    pub fn write(&self, uio: &mut Uio<'_>, append: bool, sync: bool) -> KResult<()> {
        let mut st = self.st.enter();
        if append {
            uio.offset = st.e.size as u64;
        }
        let off = uio.offset;
        if uio.resid() == 0 {
            return Ok(());
        }
        if off >= MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let room = MAX_FILE_SIZE - off;
        if (uio.resid() as u64) > room {
            uio.truncate_resid(room as usize);
        }
        let size = st.e.size as u64;
        let r = (|| {
            if off > size {
                self.zero_fill(&mut st, size, off)?;
            }
            let len = uio.resid() as u64;
            self.write_range(&mut st, off, len, sync, |d| uio.uiomove_in(d))
        })();
        if r.is_err() && st.e.size as u64 != size && uio.offset == off {
            // Nothing of the caller's data went in (e.g. ENOSPC while
            // zero-filling up to the offset): leave the size as it was.
            let _ = self.truncate(&mut st, size);
        }
        self.touch_mtime(&mut st);
        let wb = self.write_back(&st);
        r?;
        wb?;
        if sync {
            self.fs.cache.sync(true)?;
        }
        Ok(())
    }

    /// Change the size to `new` (shrinking frees clusters, growing zero-fills).
    pub fn truncate(&self, st: &mut NodeState, new: u64) -> KResult<()> {
        if new > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let size = st.e.size as u64;
        let cs = self.fs.geo.cluster_size as u64;
        if new < size {
            let keep = new.div_ceil(cs) as u32;
            if keep == 0 {
                let start = st.e.start;
                st.e.start = 0;
                st.e.size = 0;
                st.chain.clear();
                self.write_back(st)?;
                self.fs.free_chain(start)?;
            } else {
                let last = self.cluster_at(st, keep - 1)?;
                st.e.size = new as u32;
                self.write_back(st)?;
                self.fs.truncate_chain_after(last)?;
                st.chain.truncate(keep);
                st.chain.complete = true;
            }
        } else if new > size {
            self.zero_fill(st, size, new)?;
        }
        self.touch_mtime(st);
        self.write_back(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_runs() {
        let mut c = Chain::default();
        for x in [5, 6, 7, 10, 11, 3] {
            c.push(x);
        }
        assert_eq!(c.len(), 6);
        assert_eq!(c.get(0), Some(5));
        assert_eq!(c.get(2), Some(7));
        assert_eq!(c.get(3), Some(10));
        assert_eq!(c.get(5), Some(3));
        assert_eq!(c.get(6), None);
        assert_eq!(c.contiguous_from(1, 100), 2);
        assert_eq!(c.contiguous_from(3, 1), 1);
        assert_eq!(c.to_vec(), vec![5, 6, 7, 10, 11, 3]);
        c.truncate(4);
        assert_eq!(c.to_vec(), vec![5, 6, 7, 10]);
        assert_eq!(c.last(), Some(10));
        c.truncate(0);
        assert!(c.is_empty());
        assert_eq!(c.last(), None);
    }
}
