//! Directories: linear scan, insertion with record splitting, removal with
//! coalescing (NetBSD `ext2fs_lookup.c`: `ext2fs_lookup`,
//! `ext2fs_direnter`, `ext2fs_dirremove`, `ext2fs_dirempty`).
//!
//! Hashed (dir_index) directories are read linearly: their leaves are
//! ordinary directory blocks and the index lives inside entries that a
//! linear scan skips (the `..` entry of block 0 covers the root of the
//! index, interior index blocks are one empty entry spanning the block).
//! A directory this driver modifies loses `EXT2_INDEX_FL` first, as NetBSD
//! does, so that e2fsck (and Linux) read it linearly from then on.
//!
//! Every entry is checked against its block (`format::dirent_at`); a bad
//! one makes the operation fail with EIO. Walks are bounded by the
//! directory's size, which is bounded by its block map.

use std::collections::HashMap;

use rumpkern::{Errno, KResult};

use crate::bmap::{self, MapCache};
use crate::format::*;
use crate::fs::Ext2Fs;

/// One entry found by a scan.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub ino: u32,
}

/// What `readdir` calls per entry: (name, inode, file type, next offset)
/// → go on?
pub(crate) type DirVisitor<'a> = dyn FnMut(&[u8], u32, u8, u64) -> bool + 'a;

/// Directories of at least this many blocks get an in-memory index.
pub(crate) const INDEX_MIN_BLOCKS: u64 = 2;
/// Directories larger than this many bytes are not indexed (memory bound).
pub(crate) const INDEX_MAX_BYTES: u64 = 64 << 20;

/// In-memory index of a large directory, kept by its node while the vnode
/// lives (NetBSD and Linux ext2 scan linearly; this makes lookups and
/// insertions in large directories cost one block instead of all of
/// them). It is built by one full scan, updated by every change this
/// driver makes (they all hold the directory's node lock), and dropped on
/// any error.
pub(crate) struct DirIndex {
    /// Name → (inode, logical block holding the entry).
    names: HashMap<Vec<u8>, (u32, u64)>,
    /// Per logical block: the largest record a new entry could take there.
    free: Vec<usize>,
}

impl DirIndex {
    fn set_free(&mut self, lbn: u64, f: usize) {
        if let Some(x) = self.free.get_mut(lbn as usize) {
            *x = f;
        }
    }
}

/// Largest record a new entry could take in directory block `blk`.
fn block_free(fs: &Ext2Fs, dino: u32, blk: &[u8]) -> KResult<usize> {
    let mut best = 0;
    scan_block(fs, dino, blk, |_, h, _| {
        let f = if h.ino == 0 {
            h.rec_len
        } else {
            h.rec_len.saturating_sub(dirent_size(h.name_len))
        };
        best = best.max(f);
        None::<()>
    })?;
    Ok(best)
}

/// Build the index of a large directory if it has none.
fn ensure_index(fs: &Ext2Fs, dino: u32, d: &Inode, ix: &mut Option<DirIndex>) -> KResult<()> {
    if ix.is_some() {
        return Ok(());
    }
    let n = dir_blocks(fs, dino, d)?;
    if n < INDEX_MIN_BLOCKS || d.size > INDEX_MAX_BYTES {
        return Ok(());
    }
    let mut x = DirIndex {
        names: HashMap::new(),
        free: Vec::with_capacity(n as usize),
    };
    let mut mc = MapCache::default();
    for lbn in 0..n {
        let Some((_, blk)) = read_dir_block(fs, dino, d, lbn, &mut mc)? else {
            x.free.push(0);
            continue;
        };
        scan_block(fs, dino, &blk, |_, h, name| {
            if h.ino != 0 {
                x.names.entry(name.to_vec()).or_insert((h.ino, lbn));
            }
            None::<()>
        })?;
        x.free.push(block_free(fs, dino, &blk)?);
    }
    *ix = Some(x);
    Ok(())
}

/// Blocks that may hold `name`: the indexed one, or all of them.
fn candidates(
    fs: &Ext2Fs,
    dino: u32,
    d: &Inode,
    ix: &mut Option<DirIndex>,
    name: &[u8],
) -> KResult<Vec<u64>> {
    ensure_index(fs, dino, d, ix)?;
    Ok(match ix.as_ref() {
        Some(x) => x.names.get(name).map(|&(_, l)| vec![l]).unwrap_or_default(),
        None => (0..dir_blocks(fs, dino, d)?).collect(),
    })
}

fn invalidate_on_error<T>(ix: &mut Option<DirIndex>, r: KResult<T>) -> KResult<T> {
    if r.is_err() {
        *ix = None;
    }
    r
}

/// Number of whole blocks in directory `d`. A directory has no holes, so
/// its size cannot exceed the storage it has (`i_blocks`); a larger size is
/// a corruption (EIO), which also bounds every directory walk by the
/// blocks really allocated.
pub(crate) fn dir_blocks(fs: &Ext2Fs, dino: u32, d: &Inode) -> KResult<u64> {
    let bs = fs.geo.block_size as u64;
    let stored = if d.flags & iflags::HUGE_FILE != 0 {
        d.blocks.saturating_mul(bs)
    } else {
        d.blocks.saturating_mul(512)
    };
    if d.size > stored {
        return Err(fs.corrupt(format_args!(
            "directory {dino}: size {} larger than its {stored} bytes of blocks",
            d.size
        )));
    }
    Ok(d.size / bs)
}

/// Read directory block `lbn` of directory `dino`; `None` for a hole
/// (a corruption e2fsck repairs; skipped by readers).
pub(crate) fn read_dir_block(
    fs: &Ext2Fs,
    dino: u32,
    d: &Inode,
    lbn: u64,
    mc: &mut MapCache,
) -> KResult<Option<(u64, Vec<u8>)>> {
    match bmap::bmap(fs, dino, d, lbn, mc)? {
        None => Ok(None),
        Some(p) => Ok(Some((p, fs.bio.bread(p)?))),
    }
}

/// Call `f(offset_in_block, header, name)` for each entry of `blk`; stops
/// early when `f` returns `Some`.
pub(crate) fn scan_block<T>(
    fs: &Ext2Fs,
    dino: u32,
    blk: &[u8],
    f: impl FnMut(usize, &DirentHdr, &[u8]) -> Option<T>,
) -> KResult<Option<T>> {
    scan_block_raw(fs, blk, f).map_err(|off| bad_entry(fs, dino, off))
}

fn bad_entry(fs: &Ext2Fs, dino: u32, off: usize) -> Errno {
    fs.corrupt(format_args!(
        "directory {dino}: bad entry at offset {off} of a block"
    ))
}

/// [`scan_block`] without side effects: a bad entry is `Err(offset)`
/// (for scans of a block still held in the cache).
fn scan_block_raw<T>(
    fs: &Ext2Fs,
    blk: &[u8],
    mut f: impl FnMut(usize, &DirentHdr, &[u8]) -> Option<T>,
) -> Result<Option<T>, usize> {
    let mut off = 0;
    while off < blk.len() {
        let h = dirent_at(blk, off, fs.geo.filetype).map_err(|_| off)?;
        let name = blk
            .get(off + DIRENT_HDR..off + DIRENT_HDR + h.name_len)
            .ok_or(off)?;
        if let Some(t) = f(off, &h, name) {
            return Ok(Some(t));
        }
        off += h.rec_len;
    }
    Ok(None)
}

/// Find `name` in directory `d` (number `dino`); through the index
/// when the directory has one (built here for a large directory).
pub(crate) fn lookup(
    fs: &Ext2Fs,
    dino: u32,
    d: &Inode,
    name: &[u8],
    ix: &mut Option<DirIndex>,
) -> KResult<Option<Found>> {
    ensure_index(fs, dino, d, ix)?;
    if let Some(x) = ix {
        return Ok(x.names.get(name).map(|&(ino, _)| Found { ino }));
    }
    let mut mc = MapCache::default();
    for lbn in 0..dir_blocks(fs, dino, d)? {
        let Some(p) = bmap::bmap(fs, dino, d, lbn, &mut mc)? else {
            continue;
        };
        // Scanned in the cache, not copied out.
        let r = fs.bio.with_block(p, 1, |blk| {
            scan_block_raw(fs, blk, |_, h, n| {
                (h.ino != 0 && n == name).then_some(Found { ino: h.ino })
            })
        })?;
        match r {
            Err(off) => return Err(bad_entry(fs, dino, off)),
            Ok(Some(f)) => return Ok(Some(f)),
            Ok(None) => {}
        }
    }
    Ok(None)
}

/// Is directory `d` empty (only `.`, `..` and unused entries)?
pub(crate) fn is_empty(
    fs: &Ext2Fs,
    dino: u32,
    d: &Inode,
    ix: &mut Option<DirIndex>,
) -> KResult<bool> {
    ensure_index(fs, dino, d, ix)?;
    if let Some(x) = ix {
        return Ok(x.names.keys().all(|n| n == b"." || n == b".."));
    }
    let mut mc = MapCache::default();
    for lbn in 0..dir_blocks(fs, dino, d)? {
        let Some((_, blk)) = read_dir_block(fs, dino, d, lbn, &mut mc)? else {
            continue;
        };
        let r = scan_block(fs, dino, &blk, |_, h, n| {
            (h.ino != 0 && n != b"." && n != b"..").then_some(())
        })?;
        if r.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Entries of directory `d` from byte offset `start`: calls
/// `f(name, ino, ftype, next_offset)` until it returns false. An offset
/// that does not fall on an entry (the directory changed since the cookie
/// was handed out) resumes at the next entry of its block.
pub(crate) fn readdir(
    fs: &Ext2Fs,
    dino: u32,
    d: &Inode,
    start: u64,
    f: &mut DirVisitor<'_>,
) -> KResult<()> {
    let bs = fs.geo.block_size as u64;
    let mut mc = MapCache::default();
    let mut lbn = start / bs;
    let n = dir_blocks(fs, dino, d)?;
    while lbn < n {
        let base = lbn * bs;
        if let Some((_, blk)) = read_dir_block(fs, dino, d, lbn, &mut mc)? {
            let stopped = scan_block(fs, dino, &blk, |off, h, n| {
                let pos = base + off as u64;
                if pos < start || h.ino == 0 {
                    return None;
                }
                let next = pos + h.rec_len as u64;
                if f(n, h.ino, h.ftype, next) {
                    None
                } else {
                    Some(())
                }
            })?;
            if stopped.is_some() {
                return Ok(());
            }
        }
        lbn += 1;
    }
    Ok(())
}

/// Rewrite the inode number (and type) of the entry named `name`; returns
/// the old inode number. Errors: ENOENT, EIO.
pub(crate) fn set_entry(
    fs: &Ext2Fs,
    dino: u32,
    d: &Inode,
    name: &[u8],
    ino: u32,
    ftype: u8,
    ix: &mut Option<DirIndex>,
) -> KResult<u32> {
    let r = (|| {
        let mut mc = MapCache::default();
        for lbn in candidates(fs, dino, d, ix, name)? {
            let Some((p, mut blk)) = read_dir_block(fs, dino, d, lbn, &mut mc)? else {
                continue;
            };
            let hit = scan_block(fs, dino, &blk, |off, h, n| {
                (h.ino != 0 && n == name).then_some((off, *h))
            })?;
            if let Some((off, h)) = hit {
                let nh = DirentHdr {
                    ino,
                    ftype: if fs.geo.filetype { ftype } else { 0 },
                    ..h
                };
                put_dirent(&mut blk, off, &nh, fs.geo.filetype)?;
                fs.bio.bwrite(p, &blk)?;
                if let Some(x) = ix.as_mut() {
                    x.names.insert(name.to_vec(), (ino, lbn));
                }
                return Ok(h.ino);
            }
        }
        Err(Errno::ENOENT)
    })();
    invalidate_on_error(ix, r)
}

/// Rename the entry `old` (pointing at `ino`) to `new` inside its own
/// record, if the record is long enough: one block write. Returns false
/// (nothing changed) when it is not. Errors: ENOENT, EIO.
pub(crate) fn rename_in_place(
    fs: &Ext2Fs,
    dino: u32,
    d: &Inode,
    old: &[u8],
    new: &[u8],
    ino: u32,
    ix: &mut Option<DirIndex>,
) -> KResult<bool> {
    let r = (|| {
        let mut mc = MapCache::default();
        for lbn in candidates(fs, dino, d, ix, old)? {
            let Some((p, mut blk)) = read_dir_block(fs, dino, d, lbn, &mut mc)? else {
                continue;
            };
            let hit = scan_block(fs, dino, &blk, |off, h, n| {
                (h.ino != 0 && n == old).then_some((off, *h))
            })?;
            let Some((off, h)) = hit else { continue };
            if h.ino != ino {
                return Err(Errno::ENOENT);
            }
            if h.rec_len < dirent_size(new.len()) {
                return Ok(false);
            }
            write_entry(
                &mut blk,
                off,
                h.rec_len,
                new,
                h.ino,
                h.ftype,
                fs.geo.filetype,
            )?;
            fs.bio.bwrite(p, &blk)?;
            if let Some(x) = ix.as_mut() {
                x.names.remove(old);
                x.names.insert(new.to_vec(), (ino, lbn));
                x.set_free(lbn, block_free(fs, dino, &blk)?);
            }
            return Ok(true);
        }
        Err(Errno::ENOENT)
    })();
    invalidate_on_error(ix, r)
}

/// How a changed directory block is written.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum DirWrite {
    /// Now (synchronously).
    Sync,
    /// A delayed write: for a change that only has to come after changes
    /// already durable.
    Delayed,
    /// Delayed, and only after the next barrier
    /// ([`Ext2Fs::write_after_barrier`]): for a change that has to come
    /// after a delayed write just made.
    AfterBarrier,
}

/// Remove the entry `name` (which must point at `ino`): the space goes to
/// the previous entry of its block, or the entry is marked unused when it
/// is the first. The block is written as `how` says. Returns the removed
/// entry's type. Errors: ENOENT, EIO.
pub(crate) fn remove_entry(
    fs: &Ext2Fs,
    dino: u32,
    d: &Inode,
    name: &[u8],
    ino: u32,
    how: DirWrite,
    ix: &mut Option<DirIndex>,
) -> KResult<u8> {
    let r = (|| {
        let mut mc = MapCache::default();
        for lbn in candidates(fs, dino, d, ix, name)? {
            let Some((p, mut blk)) = read_dir_block(fs, dino, d, lbn, &mut mc)? else {
                continue;
            };
            let mut prev: Option<(usize, DirentHdr)> = None;
            let hit = scan_block(fs, dino, &blk, |off, h, n| {
                if h.ino != 0 && n == name {
                    return Some((off, *h, prev));
                }
                prev = Some((off, *h));
                None
            })?;
            let Some((off, h, prev)) = hit else { continue };
            if h.ino != ino {
                return Err(Errno::ENOENT);
            }
            match prev {
                Some((poff, ph)) => {
                    let nh = DirentHdr {
                        rec_len: ph.rec_len + h.rec_len,
                        ..ph
                    };
                    put_dirent(&mut blk, poff, &nh, fs.geo.filetype)?;
                }
                None => {
                    let nh = DirentHdr { ino: 0, ..h };
                    put_dirent(&mut blk, off, &nh, fs.geo.filetype)?;
                }
            }
            match how {
                DirWrite::Sync => fs.bio.bwrite(p, &blk)?,
                DirWrite::Delayed => fs.bio.bdwrite(p, &blk)?,
                DirWrite::AfterBarrier => fs.write_after_barrier(p, &blk)?,
            }
            if let Some(x) = ix.as_mut() {
                x.names.remove(name);
                x.set_free(lbn, block_free(fs, dino, &blk)?);
            }
            return Ok(h.ftype);
        }
        Err(Errno::ENOENT)
    })();
    invalidate_on_error(ix, r)
}

/// Add the entry `name` → `ino` to directory `d`, in the first block with
/// room (splitting an entry's slack), else in a new block appended to the
/// directory. `d.size`, `d.block`, `d.blocks` may change: the caller
/// writes the inode. `resv`: the caller may use root's reserved blocks.
/// Returns true if the directory grew. `delayed`: the block is written
/// later (a new node's entry, which needs no order: see `make_node`);
/// otherwise synchronously. Errors: ENOSPC, EFBIG, EIO.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_entry(
    fs: &Ext2Fs,
    dino: u32,
    d: &mut Inode,
    name: &[u8],
    ino: u32,
    ftype: u8,
    resv: bool,
    delayed: bool,
    ix: &mut Option<DirIndex>,
) -> KResult<bool> {
    ensure_index(fs, dino, d, ix)?;
    let r = add_entry_inner(fs, dino, d, name, ino, ftype, resv, delayed, ix);
    invalidate_on_error(ix, r)
}

#[allow(clippy::too_many_arguments)]
fn add_entry_inner(
    fs: &Ext2Fs,
    dino: u32,
    d: &mut Inode,
    name: &[u8],
    ino: u32,
    ftype: u8,
    resv: bool,
    delayed: bool,
    ix: &mut Option<DirIndex>,
) -> KResult<bool> {
    let put = |p: u64, blk: &[u8]| {
        if delayed {
            fs.bio.bdwrite(p, blk)
        } else {
            fs.bio.bwrite(p, blk)
        }
    };
    let need = dirent_size(name.len());
    let ft = if fs.geo.filetype { ftype } else { 0 };
    let bs = fs.geo.block_size as usize;
    let mut mc = MapCache::default();
    let nblocks = dir_blocks(fs, dino, d)?;
    let cands: Vec<u64> = match ix.as_ref() {
        Some(x) => x
            .free
            .iter()
            .enumerate()
            .filter(|(_, f)| **f >= need)
            .map(|(l, _)| l as u64)
            .collect(),
        None => (0..nblocks).collect(),
    };
    for lbn in cands {
        let Some((p, mut blk)) = read_dir_block(fs, dino, d, lbn, &mut mc)? else {
            continue;
        };
        let slot = scan_block(fs, dino, &blk, |off, h, _| {
            if h.ino == 0 && h.rec_len >= need {
                return Some((off, *h, true));
            }
            let used = dirent_size(h.name_len);
            (h.ino != 0 && h.rec_len >= used + need).then_some((off, *h, false))
        })?;
        let Some((off, h, unused)) = slot else {
            continue;
        };
        let (eoff, rec_len) = if unused {
            (off, h.rec_len)
        } else {
            let used = dirent_size(h.name_len);
            put_dirent(
                &mut blk,
                off,
                &DirentHdr { rec_len: used, ..h },
                fs.geo.filetype,
            )?;
            (off + used, h.rec_len - used)
        };
        write_entry(&mut blk, eoff, rec_len, name, ino, ft, fs.geo.filetype)?;
        put(p, &blk)?;
        if let Some(x) = ix.as_mut() {
            x.names.entry(name.to_vec()).or_insert((ino, lbn));
            x.set_free(lbn, block_free(fs, dino, &blk)?);
        }
        return Ok(false);
    }
    // Append a block.
    let goal = match nblocks.checked_sub(1) {
        Some(l) => bmap::bmap(fs, dino, d, l, &mut mc)?
            .map(|b| b + 1)
            .unwrap_or(0),
        None => 0,
    };
    let goal = if goal == 0 {
        group_goal(fs, dino)
    } else {
        goal
    };
    let (p, _) = bmap::bmap_alloc(fs, dino, d, nblocks, goal, &mut mc, resv)?;
    let mut blk = vec![0u8; bs];
    write_entry(&mut blk, 0, bs, name, ino, ft, fs.geo.filetype)?;
    // Reachable through the directory's inode, whose update (`write_dir`)
    // is held back until this block is durable.
    put(p, &blk)?;
    d.size += bs as u64;
    if let Some(x) = ix.as_mut() {
        x.names.entry(name.to_vec()).or_insert((ino, nblocks));
        if x.free.len() as u64 == nblocks {
            x.free.push(block_free(fs, dino, &blk)?);
        } else {
            *ix = None;
        }
    }
    Ok(true)
}

fn write_entry(
    blk: &mut [u8],
    off: usize,
    rec_len: usize,
    name: &[u8],
    ino: u32,
    ft: u8,
    filetype: bool,
) -> KResult<()> {
    put_dirent(
        blk,
        off,
        &DirentHdr {
            ino,
            rec_len,
            name_len: name.len(),
            ftype: ft,
        },
        filetype,
    )?;
    let dst = blk
        .get_mut(off + DIRENT_HDR..off + DIRENT_HDR + name.len())
        .ok_or(Errno::EIO)?;
    dst.copy_from_slice(name);
    Ok(())
}

/// The first block of inode `ino`'s group: the allocation goal for a file
/// with no blocks yet.
pub(crate) fn group_goal(fs: &Ext2Fs, ino: u32) -> u64 {
    fs.geo.group_first_block(fs.geo.ino_group(ino))
}

/// A new directory's first block: `.` and `..`.
pub(crate) fn empty_dir_block(fs: &Ext2Fs, ino: u32, parent: u32) -> KResult<Vec<u8>> {
    let bs = fs.geo.block_size as usize;
    let mut blk = vec![0u8; bs];
    let ft = if fs.geo.filetype { ftype::DIR } else { 0 };
    write_entry(&mut blk, 0, 12, b".", ino, ft, fs.geo.filetype)?;
    write_entry(&mut blk, 12, bs - 12, b"..", parent, ft, fs.geo.filetype)?;
    Ok(blk)
}
