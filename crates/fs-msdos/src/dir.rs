//! Directories: where a directory's slots are, reading entries with their
//! long names, finding a name, and adding, rewriting and deleting entries
//! (NetBSD `msdosfs_lookup.c`: `createde`, `removede`, `uniqdosname`).
//!
//! A directory is either the fixed root directory of FAT12/16
//! ([`DirStore::Root16`]) or a cluster chain ([`DirStore::Clusters`]).
//! Slots are numbered from 0 in storage order; a directory never has more
//! than [`MAX_DIR_SLOTS`] of them (the specification's limit), which bounds
//! every scan. The caller holds the directory's vnode lock (shared to read,
//! exclusive to change); each slot update is a read-modify-write of one
//! held buffer.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use rumpkern::{Errno, KResult};

use crate::dirent::*;
use crate::fs::{Fs, ShortnameMode};

/// Where a directory's slots live.
#[derive(Clone, Debug)]
pub enum DirStore {
    /// The fixed root directory of FAT12/16.
    Root16,
    /// A chain of clusters, in order.
    Clusters(Arc<Vec<u32>>),
}

/// One entry found in a directory.
#[derive(Clone, Debug)]
pub struct Found {
    /// The name shown: the long name if valid, else the short name.
    pub name: String,
    pub entry: ShortEntry,
    /// Slot of the short entry.
    pub slot: u32,
    /// First slot of the entry (its first LFN slot, or `slot`).
    pub first_slot: u32,
    /// Byte offset (in the file system) of the short entry.
    pub pos: u64,
}

/// What a slot scan callback sees.
pub struct RawSlot<'a> {
    pub slot: u32,
    pub pos: u64,
    pub raw: &'a [u8; 32],
}

impl Fs {
    /// Number of slots of a directory.
    pub fn dir_slots(&self, d: &DirStore) -> u32 {
        match d {
            DirStore::Root16 => self.geo.root_entries.min(MAX_DIR_SLOTS),
            DirStore::Clusters(c) => {
                let per = (self.geo.cluster_size / 32) as u64;
                (c.len() as u64 * per).min(MAX_DIR_SLOTS as u64) as u32
            }
        }
    }

    /// The buffer (offset, size) holding slot `s`, and the slot's byte
    /// offset inside it.
    fn slot_block(&self, d: &DirStore, s: u32) -> KResult<(u64, usize, usize)> {
        let byte = s as u64 * 32;
        match d {
            DirStore::Root16 => {
                let ss = self.geo.sector_size as u64;
                let blk = byte - byte % ss;
                Ok((
                    self.geo.root_offset + blk,
                    ss as usize,
                    (byte - blk) as usize,
                ))
            }
            DirStore::Clusters(cl) => {
                let cs = self.geo.cluster_size as u64;
                let idx = (byte / cs) as usize;
                let c = *cl.get(idx).ok_or(Errno::EIO)?;
                if !self.geo.valid_cluster(c) {
                    return Err(self.corrupt(format_args!("directory cluster {c} out of range")));
                }
                Ok((
                    self.geo.cluster_offset(c),
                    cs as usize,
                    (byte % cs) as usize,
                ))
            }
        }
    }

    /// The buffer (offset, size) that holds the entry at byte offset `pos`
    /// (consistent with `Fs::slot_block`), and the offset inside it.
    pub fn pos_block(&self, pos: u64) -> KResult<(u64, usize, usize)> {
        if pos >= self.geo.data_offset {
            let cs = self.geo.cluster_size as u64;
            let rel = pos - self.geo.data_offset;
            let blk = self.geo.data_offset + rel - rel % cs;
            Ok((blk, cs as usize, (rel % cs) as usize))
        } else if pos >= self.geo.root_offset {
            let ss = self.geo.sector_size as u64;
            let rel = pos - self.geo.root_offset;
            Ok((
                self.geo.root_offset + rel - rel % ss,
                ss as usize,
                (rel % ss) as usize,
            ))
        } else {
            Err(self.corrupt(format_args!(
                "directory entry position {pos} before the root directory"
            )))
        }
    }

    /// Visit raw slots from `start` in order; `f` returns false to stop.
    /// The buffer of the slot is held during the call.
    pub fn scan_slots(
        &self,
        d: &DirStore,
        start: u32,
        mut f: impl FnMut(RawSlot<'_>) -> bool,
    ) -> KResult<()> {
        let n = self.dir_slots(d);
        let mut s = start;
        while s < n {
            let (off, size, inb) = self.slot_block(d, s)?;
            // Read ahead over the run of contiguous clusters that follows.
            let ahead = match d {
                DirStore::Root16 => 8,
                DirStore::Clusters(cl) => {
                    let i = (s as u64 * 32 / self.geo.cluster_size as u64) as usize;
                    let mut k = 1;
                    while k < 64
                        && cl
                            .get(i + k)
                            .is_some_and(|&c| Some(c) == cl.get(i).map(|&f| f + k as u32))
                    {
                        k += 1;
                    }
                    k
                }
            };
            let b = self.bread_ahead(off, size, ahead)?;
            let data = b.data();
            let mut p = inb;
            while p + 32 <= data.len() && s < n {
                let mut raw = [0u8; 32];
                raw.copy_from_slice(&data[p..p + 32]);
                if !f(RawSlot {
                    slot: s,
                    pos: off + p as u64,
                    raw: &raw,
                }) {
                    return Ok(());
                }
                p += 32;
                s += 1;
            }
        }
        Ok(())
    }

    /// Visit the entries (files and directories, not `.`/`..`, not the
    /// volume label) from slot `start`, with long names checked; stops at
    /// the end marker. `f` returns false to stop.
    pub fn scan_entries(
        &self,
        d: &DirStore,
        start: u32,
        mut f: impl FnMut(&Found) -> bool,
    ) -> KResult<()> {
        let mut lfn = LfnBuilder::default();
        let (use_case, lower) = match self.opts.shortname {
            ShortnameMode::Lower => (false, true),
            ShortnameMode::Win95 => (false, false),
            ShortnameMode::WinNt | ShortnameMode::Mixed => (true, false),
        };
        self.scan_slots(d, start, |rs| {
            let b = rs.raw;
            match b[0] {
                SLOT_END => return false,
                SLOT_DELETED => {
                    lfn.reset();
                    return true;
                }
                _ => {}
            }
            if is_lfn(b) {
                lfn.push(b, rs.slot);
                return true;
            }
            let e = ShortEntry::parse(b);
            if e.attr & ATTR_VOLUME != 0 || e.is_dot() {
                lfn.reset();
                return true;
            }
            let (name, first_slot) = match lfn.finish(&e.name) {
                Some((n, first)) => (n, first),
                None => (e.display_name(use_case, lower), rs.slot),
            };
            if name.is_empty() || name == "." || name == ".." {
                return true;
            }
            f(&Found {
                name,
                entry: e,
                slot: rs.slot,
                first_slot,
                pos: rs.pos,
            })
        })
    }

    /// Find the subdirectory whose first cluster is `c`.
    pub fn dir_find_cluster(&self, d: &DirStore, c: u32) -> KResult<Option<Found>> {
        let mut out = None;
        self.scan_entries(d, 0, |f| {
            if f.entry.is_dir() && f.entry.start == c {
                out = Some(f.clone());
                return false;
            }
            true
        })?;
        Ok(out)
    }

    /// Does the directory hold any entry besides `.` and `..`?
    pub fn dir_is_empty(&self, d: &DirStore) -> KResult<bool> {
        let mut empty = true;
        self.scan_entries(d, 0, |_| {
            empty = false;
            false
        })?;
        Ok(empty)
    }

    /// Number of subdirectories (for the link count).
    pub fn dir_count_subdirs(&self, d: &DirStore) -> KResult<u32> {
        let mut n = 0;
        self.scan_entries(d, 0, |f| {
            if f.entry.is_dir() {
                n += 1;
            }
            true
        })?;
        Ok(n)
    }

    /// The short name and NT case bits for a new entry `name`, and whether
    /// a long name must be stored too. `used` says whether a short name is
    /// taken in the directory. Tails: `~1`..`~4` on the basis name, then
    /// (as Windows does) two basis characters, four hex digits of a hash of
    /// the long name and `~1`..`~9`, then any free `~N`.
    pub fn make_short_name(
        &self,
        name: &str,
        used: &dyn Fn(&[u8; 11]) -> bool,
    ) -> KResult<([u8; 11], u8, bool)> {
        let b = basis(name);
        if !b.lossy {
            let s = short_name(&b.base, &b.ext, 0);
            if !used(&s) {
                if b.exact_upper {
                    return Ok((s, 0, false));
                }
                if self.opts.shortname == ShortnameMode::WinNt {
                    if let Some(bits) = b.nt_case {
                        return Ok((s, bits, false));
                    }
                }
                return Ok((s, 0, true));
            }
        }
        for n in 1..=4u32 {
            let s = short_name(&b.base, &b.ext, n);
            if !used(&s) {
                return Ok((s, 0, true));
            }
        }
        let mut h: u16 = 0;
        for u in name.encode_utf16() {
            h = h.rotate_left(3) ^ u.wrapping_mul(0x9E37);
        }
        for salt in 0..16u16 {
            let hv = h.wrapping_add(salt.wrapping_mul(0x3D1B));
            let mut hb: Vec<u8> = b.base.iter().copied().take(2).collect();
            hb.extend_from_slice(format!("{hv:04X}").as_bytes());
            for n in 1..=9u32 {
                let s = short_name(&hb, &b.ext, n);
                if !used(&s) {
                    return Ok((s, 0, true));
                }
            }
        }
        for n in 5..1_000_000u32 {
            let s = short_name(&b.base, &b.ext, n);
            if !used(&s) {
                return Ok((s, 0, true));
            }
        }
        Err(Errno::ENOSPC)
    }

    /// Build the name index of a directory (one scan).
    pub fn build_index(&self, d: &DirStore) -> KResult<DirIndex> {
        let mut idx = DirIndex {
            end: self.dir_slots(d),
            ..Default::default()
        };
        let mut ended = false;
        self.scan_slots(d, 0, |rs| {
            let b = rs.raw;
            if b[0] == SLOT_END {
                idx.end = rs.slot;
                ended = true;
                return false;
            }
            if b[0] == SLOT_DELETED {
                idx.free.insert(rs.slot);
            } else if !is_lfn(b) {
                let mut n = [0u8; 11];
                n.copy_from_slice(&b[0..11]);
                *idx.shorts.entry(n).or_insert(0) += 1;
            }
            true
        })?;
        let _ = ended;
        let mut entries = Vec::new();
        self.scan_entries(d, 0, |f| {
            entries.push(IdxEntry {
                name: f.name.clone(),
                short: f.entry.name,
                slot: f.slot,
                first_slot: f.first_slot,
                pos: f.pos,
            });
            true
        })?;
        idx.by_name.reserve(entries.len());
        idx.by_short.reserve(entries.len());
        idx.entries.reserve(entries.len());
        for e in entries {
            idx.insert(e);
        }
        log::trace!("msdosfs: directory indexed: {} entries", idx.len());
        Ok(idx)
    }

    /// Write `slots` starting at slot `start`; with `sync`, on the device
    /// when this returns (rename writes its new entry so before removing
    /// the old one).
    pub fn write_slots(
        &self,
        d: &DirStore,
        start: u32,
        slots: &[[u8; 32]],
        sync: bool,
    ) -> KResult<()> {
        let mut i = 0usize;
        while i < slots.len() {
            let s = start + i as u32;
            let (off, size, inb) = self.slot_block(d, s)?;
            let mut b = self.bread(off, size)?;
            let data = b.data_mut();
            let mut p = inb;
            while p + 32 <= data.len() && i < slots.len() {
                data[p..p + 32].copy_from_slice(&slots[i]);
                p += 32;
                i += 1;
            }
            if sync {
                b.bwrite()?;
            } else {
                b.bdwrite();
            }
        }
        Ok(())
    }

    /// Mark slots `first..=last` deleted.
    pub fn delete_slots(&self, d: &DirStore, first: u32, last: u32) -> KResult<()> {
        let mut s = first;
        while s <= last {
            let (off, size, inb) = self.slot_block(d, s)?;
            let mut b = self.bread(off, size)?;
            let data = b.data_mut();
            let mut p = inb;
            while p + 32 <= data.len() && s <= last {
                data[p] = SLOT_DELETED;
                p += 32;
                s += 1;
            }
            b.bdwrite();
        }
        Ok(())
    }

    /// Read the short entry at `pos`.
    pub fn read_entry(&self, pos: u64) -> KResult<ShortEntry> {
        let (off, size, inb) = self.pos_block(pos)?;
        let b = self.bread(off, size)?;
        let raw: [u8; 32] = b
            .data()
            .get(inb..inb + 32)
            .and_then(|s| s.try_into().ok())
            .ok_or(Errno::EIO)?;
        Ok(ShortEntry::parse(&raw))
    }

    /// Rewrite the short entry at `pos` (name kept as stored unless
    /// `keep_name` is false).
    pub fn write_entry(&self, pos: u64, e: &ShortEntry) -> KResult<()> {
        let (off, size, inb) = self.pos_block(pos)?;
        let mut b = self.bread(off, size)?;
        let fat32 = self.fat32();
        let d = b.data_mut().get_mut(inb..inb + 32).ok_or(Errno::EIO)?;
        if d[0] == SLOT_DELETED || d[0] == SLOT_END {
            // The entry went away under us (should not happen): leave it.
            return Err(self.corrupt(format_args!(
                "entry at {pos} is free while its file is live"
            )));
        }
        let mut enc = e.encode(fat32);
        enc[0..11].copy_from_slice(&d[0..11]);
        d.copy_from_slice(&enc);
        b.bdwrite();
        Ok(())
    }
}

/// A small multiply-rotate hasher (the "Fx" hash of rustc) for the name
/// index: its keys come from the directory being indexed, and a directory
/// holds at most 65,536 entries, so flooding costs at most that; SipHash
/// was a fifth of the time of listing a large tree.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// One entry of a [`DirIndex`].
#[derive(Clone, Debug)]
pub struct IdxEntry {
    pub name: String,
    pub short: [u8; 11],
    pub slot: u32,
    pub first_slot: u32,
    pub pos: u64,
}

/// The in-memory name index of a directory (NetBSD keeps none; Linux has
/// the dcache): case-folded long and short names to entries, the short
/// names in use, and the free slots, so that lookup, create and the `~N`
/// search do not scan the directory. Built by one scan, kept up to date by
/// every change the driver makes, dropped when the directory's vnode goes
/// inactive.
#[derive(Default)]
pub struct DirIndex {
    by_name: FxMap<String, u32>,
    by_short: FxMap<String, u32>,
    entries: FxMap<u32, IdxEntry>,
    /// Raw short names in use (with counts; dot entries and labels too).
    shorts: FxMap<[u8; 11], u32>,
    /// Deleted slots below `end`.
    free: BTreeSet<u32>,
    /// First slot of the free area at the end (the end marker).
    pub end: u32,
    /// Two entries fold to the same name (a corrupt or foreign directory):
    /// removals then drop the whole index.
    dups: bool,
}

impl DirIndex {
    fn insert(&mut self, e: IdxEntry) {
        let lname = fold(&e.name);
        let sname = fold(&short_display(&e.short));
        if self.by_name.contains_key(&lname) || self.by_short.contains_key(&sname) {
            self.dups = true;
        }
        self.by_name.entry(lname).or_insert(e.slot);
        self.by_short.entry(sname).or_insert(e.slot);
        self.entries.insert(e.slot, e);
    }

    /// The entry named `name` (case-insensitive, long or short name); the
    /// first in slot order when both kinds match different entries.
    pub fn find(&self, name: &str) -> Option<&IdxEntry> {
        let f = fold(name);
        let a = self.by_name.get(&f).copied();
        let b = self.by_short.get(&f).copied();
        let slot = match (a, b) {
            (Some(x), Some(y)) => x.min(y),
            (x, y) => x.or(y)?,
        };
        self.entries.get(&slot)
    }

    /// Is the short name taken? (`ignore` may be reused.)
    pub fn short_used(&self, s: &[u8; 11], ignore: Option<&[u8; 11]>) -> bool {
        match self.shorts.get(s) {
            None | Some(0) => false,
            Some(1) if ignore == Some(s) => false,
            Some(_) => true,
        }
    }

    /// First slot of `n` consecutive free slots below the end, if any.
    pub fn free_run(&self, n: u32) -> Option<u32> {
        let mut start = 0;
        let mut len = 0;
        let mut prev = None;
        for &s in &self.free {
            if prev.is_some_and(|p: u32| p + 1 == s) {
                len += 1;
            } else {
                start = s;
                len = 1;
            }
            if len >= n {
                return Some(start);
            }
            prev = Some(s);
        }
        // A run touching the end continues into the trailing free area.
        if len > 0 && start + len == self.end {
            return Some(start);
        }
        None
    }

    /// Record a new entry written at `first_slot..=slot`.
    pub fn added(&mut self, e: IdxEntry) {
        for s in e.first_slot..=e.slot {
            self.free.remove(&s);
        }
        if e.slot + 1 > self.end {
            self.end = e.slot + 1;
        }
        *self.shorts.entry(e.short).or_insert(0) += 1;
        self.insert(e);
    }

    /// Record the removal of the entry whose short entry is at `slot`.
    /// Returns false when the index must be dropped instead.
    pub fn removed(&mut self, slot: u32) -> bool {
        if self.dups {
            return false;
        }
        let Some(e) = self.entries.remove(&slot) else {
            return false;
        };
        self.by_name.remove(&fold(&e.name));
        self.by_short.remove(&fold(&short_display(&e.short)));
        if let Some(c) = self.shorts.get_mut(&e.short) {
            *c = c.saturating_sub(1);
        }
        for s in e.first_slot..=e.slot {
            if s < self.end {
                self.free.insert(s);
            }
        }
        true
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `BASE.EXT` of a raw short name, as stored (for short-name lookups).
fn short_display(n: &[u8; 11]) -> String {
    let mut e = ShortEntry::parse(&[b' '; 32]);
    e.name = *n;
    e.display_name(false, false)
}
