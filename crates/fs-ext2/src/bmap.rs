//! Logical to physical block mapping through the inode's block map: 12
//! direct pointers, then single, double and triple indirect blocks
//! (NetBSD `ext2fs_bmap.c`, `ext2fs_balloc.c`, and the truncate half of
//! `ext2fs_inode.c`).
//!
//! Every pointer read from an indirect block is checked to lie inside the
//! file system; a bad one is a corruption (EIO), never followed. The depth
//! is fixed (at most three levels), so no walk can loop.

use rumpkern::{Errno, KResult};

use crate::alloc;
use crate::format::*;
use crate::fs::Ext2Fs;

/// Indexes inside each level of indirect blocks on the way to a logical
/// block (at most three; empty for a direct block). A fixed array: no
/// allocation per block mapped.
#[derive(Clone, Copy)]
pub(crate) struct Path {
    idx: [usize; 3],
    len: usize,
}

impl Path {
    fn new(idx: &[usize]) -> Path {
        let mut p = Path {
            idx: [0; 3],
            len: idx.len().min(3),
        };
        p.idx[..p.len].copy_from_slice(&idx[..p.len]);
        p
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl IntoIterator for Path {
    type Item = usize;
    type IntoIter = std::iter::Take<std::array::IntoIter<usize, 3>>;
    fn into_iter(self) -> Self::IntoIter {
        self.idx.into_iter().take(self.len)
    }
}

/// Where logical block `lbn` hangs: the `i_block` slot and the indexes
/// inside each level of indirect blocks (empty for direct blocks).
pub(crate) fn lbn_path(fs: &Ext2Fs, lbn: u64) -> KResult<(usize, Path)> {
    let apb = fs.geo.addr_per_block as u64;
    if lbn < NDIR_BLOCKS as u64 {
        return Ok((lbn as usize, Path::new(&[])));
    }
    let mut q = lbn - NDIR_BLOCKS as u64;
    if q < apb {
        return Ok((IND_BLOCK, Path::new(&[q as usize])));
    }
    q -= apb;
    if q < apb * apb {
        return Ok((
            DIND_BLOCK,
            Path::new(&[(q / apb) as usize, (q % apb) as usize]),
        ));
    }
    q -= apb * apb;
    if q < apb * apb * apb {
        return Ok((
            TIND_BLOCK,
            Path::new(&[
                (q / (apb * apb)) as usize,
                ((q / apb) % apb) as usize,
                (q % apb) as usize,
            ]),
        ));
    }
    Err(Errno::EFBIG)
}

/// A few indirect blocks kept for the length of one operation, so a
/// sequential read does not re-read the same indirect block per data block.
#[derive(Default)]
pub(crate) struct MapCache {
    ents: Vec<(u64, Vec<u8>)>,
}

impl MapCache {
    fn get(&mut self, fs: &Ext2Fs, bno: u64) -> KResult<&[u8]> {
        if let Some(i) = self.ents.iter().position(|(b, _)| *b == bno) {
            return Ok(&self.ents[i].1);
        }
        let data = fs.bio.bread(bno)?;
        if self.ents.len() >= 4 {
            self.ents.remove(0);
        }
        self.ents.push((bno, data));
        let last = self.ents.len() - 1;
        Ok(&self.ents[last].1)
    }

    /// Pointer `idx` of indirect block `bno` was set to `val` on the
    /// device copy too: keep a cached copy in step.
    fn set(&mut self, bno: u64, idx: usize, val: u32) {
        for (b, data) in self.ents.iter_mut() {
            if *b == bno {
                let _ = put32(data, idx * 4, val);
            }
        }
    }
}

/// Check a pointer found in the block map of inode `ino`.
fn check_ptr(fs: &Ext2Fs, ino: u32, p: u64) -> KResult<u64> {
    if fs.geo.valid_block(p) {
        Ok(p)
    } else {
        Err(fs.corrupt(format_args!(
            "inode {ino}: block pointer {p} outside the file system"
        )))
    }
}

/// Physical block of logical block `lbn` of `inode` (number `ino`);
/// `None` for a hole. Handles both the classic block map and, on file
/// systems with the extent feature (read-only), extent trees.
pub(crate) fn bmap(
    fs: &Ext2Fs,
    ino: u32,
    inode: &Inode,
    lbn: u64,
    mc: &mut MapCache,
) -> KResult<Option<u64>> {
    if inode.flags & iflags::EXTENTS != 0 {
        return extent_bmap(fs, ino, inode, lbn, mc);
    }
    let (slot, path) = match lbn_path(fs, lbn) {
        Ok(x) => x,
        Err(_) => return Ok(None), // beyond what a block map can address
    };
    let mut p = inode.block.get(slot).copied().ok_or(Errno::EIO)? as u64;
    for idx in path {
        if p == 0 {
            return Ok(None);
        }
        check_ptr(fs, ino, p)?;
        let b = mc.get(fs, p)?;
        p = le32(b, idx * 4)? as u64;
    }
    if p == 0 {
        return Ok(None);
    }
    check_ptr(fs, ino, p).map(Some)
}

/// Magic number of an extent tree node header.
const EXT_MAGIC: u16 = 0xF30A;
/// Deepest extent tree ext4 builds (and we follow).
const EXT_MAX_DEPTH: u16 = 5;
/// Extent lengths above this mark uninitialized (preallocated) extents,
/// which read as zeros.
const EXT_INIT_MAX_LEN: u32 = 32768;

/// Look `lbn` up in the extent tree rooted in `i_block` (ext4
/// `ext4_ext_find_extent`, read-only). Every node's header is checked
/// (magic, entry counts against the node size, depth strictly
/// decreasing), so a corrupt tree gives EIO and no walk can loop.
fn extent_bmap(
    fs: &Ext2Fs,
    ino: u32,
    inode: &Inode,
    lbn: u64,
    mc: &mut MapCache,
) -> KResult<Option<u64>> {
    if !fs.geo.extents {
        return Err(fs.corrupt(format_args!(
            "inode {ino}: extent flag on a file system without extents"
        )));
    }
    let Ok(lbn) = u32::try_from(lbn) else {
        return Ok(None);
    };
    let mut node: Vec<u8> = inode
        .raw
        .get(40..40 + N_BLOCKS * 4)
        .ok_or(Errno::EIO)?
        .to_vec();
    let mut want_depth: Option<u16> = None;
    loop {
        let bad = |what: &str| fs.corrupt(format_args!("inode {ino}: extent tree: {what}"));
        if le16(&node, 0)? != EXT_MAGIC {
            return Err(bad("bad node magic"));
        }
        let entries = le16(&node, 2)? as usize;
        let max = le16(&node, 4)? as usize;
        let depth = le16(&node, 6)?;
        if max > (node.len() - 12) / 12
            || entries > max
            || depth > EXT_MAX_DEPTH
            || want_depth.is_some_and(|d| d != depth)
        {
            return Err(bad("bad node header"));
        }
        if depth == 0 {
            for k in 0..entries {
                let e = 12 + 12 * k;
                let first = le32(&node, e)?;
                let raw_len = le16(&node, e + 4)? as u32;
                let (len, uninit) = if raw_len > EXT_INIT_MAX_LEN {
                    (raw_len - EXT_INIT_MAX_LEN, true)
                } else {
                    (raw_len, false)
                };
                let start = ((le16(&node, e + 6)? as u64) << 32) | le32(&node, e + 8)? as u64;
                if lbn >= first && (lbn as u64) < first as u64 + len as u64 {
                    if uninit {
                        return Ok(None);
                    }
                    let p = start + (lbn - first) as u64;
                    return check_ptr(fs, ino, p).map(Some);
                }
            }
            return Ok(None);
        }
        // Index node: the last entry starting at or before lbn.
        let mut child = None;
        for k in 0..entries {
            let e = 12 + 12 * k;
            if le32(&node, e)? > lbn {
                break;
            }
            child = Some(((le16(&node, e + 8)? as u64) << 32) | le32(&node, e + 4)? as u64);
        }
        let Some(c) = child else { return Ok(None) };
        check_ptr(fs, ino, c)?;
        node = mc.get(fs, c)?.to_vec();
        want_depth = Some(depth - 1);
    }
}

/// Sectors (i_blocks units) of one block.
pub(crate) fn sectors(fs: &Ext2Fs) -> u64 {
    (fs.geo.block_size / 512) as u64
}

/// Physical block of `lbn` in `inode` (number `ino`), allocating it and any
/// missing indirect blocks (zero-filled before they are linked). Returns
/// (block, newly allocated). The caller writes the inode afterwards
/// (`i_block` and `i_blocks` change here) and fills a new data block
/// completely before anyone reads it.
pub(crate) fn bmap_alloc(
    fs: &Ext2Fs,
    ino: u32,
    inode: &mut Inode,
    lbn: u64,
    goal: u64,
    mc: &mut MapCache,
    resv: bool,
) -> KResult<(u64, bool)> {
    let (slot, path) = lbn_path(fs, lbn)?;
    let mut goal = goal;
    let cur = *inode.block.get(slot).ok_or(Errno::EIO)? as u64;
    let mut p = if cur == 0 {
        let b = alloc::alloc_block(fs, goal, resv)?;
        inode.blocks += sectors(fs);
        if !path.is_empty() {
            // Linked from the inode, whose update is held back until
            // this block is durable (`write_inode_delayed`): delayed.
            if let Err(e) = fs.bio.bzero_delayed(b) {
                let _ = alloc::free_block(fs, b);
                inode.blocks -= sectors(fs);
                return Err(e);
            }
        }
        if let Some(s) = inode.block.get_mut(slot) {
            *s = b as u32;
        }
        if path.is_empty() {
            return Ok((b, true));
        }
        b
    } else {
        let p = check_ptr(fs, ino, cur)?;
        if path.is_empty() {
            return Ok((p, false));
        }
        p
    };
    goal = p + 1;
    let n = path.len();
    for (level, idx) in path.into_iter().enumerate() {
        let last = level + 1 == n;
        let next = le32(mc.get(fs, p)?, idx * 4)? as u64;
        if next != 0 {
            let next = check_ptr(fs, ino, next)?;
            if last {
                return Ok((next, false));
            }
            p = next;
            goal = p + 1;
            continue;
        }
        let nb = alloc::alloc_block(fs, goal, resv)?;
        inode.blocks += sectors(fs);
        if !last {
            if let Err(e) = fs.bio.bzero(nb, 1) {
                let _ = alloc::free_block(fs, nb);
                inode.blocks -= sectors(fs);
                return Err(e);
            }
        }
        // Link it into the indirect block, in place in the cache (no copy
        // of the indirect block per allocated block). A new indirect
        // block was zeroed synchronously above, so the pointer to it (or
        // to a data block) may be written later.
        let r = fs
            .bio
            .update(p, false, false, |ib| match put32(ib, idx * 4, nb as u32) {
                Ok(()) => (Ok(()), true),
                Err(e) => (Err(e), false),
            })
            .and_then(|r| r);
        if r.is_ok() {
            mc.set(p, idx, nb as u32);
        }
        if let Err(e) = r {
            let _ = alloc::free_block(fs, nb);
            inode.blocks -= sectors(fs);
            return Err(e);
        }
        if last {
            return Ok((nb, true));
        }
        p = nb;
        goal = nb + 1;
    }
    Err(Errno::EIO)
}

/// Number of logical blocks one pointer at `level` covers (0 = a data
/// block itself).
fn span(fs: &Ext2Fs, level: u32) -> u64 {
    (fs.geo.addr_per_block as u64).pow(level)
}

/// Free every block of the subtree rooted at `p` (an indirect block of
/// `level` >= 1 or a data block at level 0) whose logical block is at
/// least `keep`; the subtree starts at logical block `first`. Returns
/// whether the pointer `p` itself was freed (its slot must be cleared).
/// Freed blocks are pushed to `freed`.
fn trunc_tree(
    fs: &Ext2Fs,
    ino: u32,
    p: u64,
    level: u32,
    first: u64,
    keep: u64,
    freed: &mut Vec<u64>,
) -> KResult<bool> {
    if !fs.geo.valid_block(p) {
        // Do not free garbage; drop the pointer.
        fs.corrupt(format_args!(
            "inode {ino}: block pointer {p} outside the file system (dropped)"
        ));
        return Ok(first >= keep);
    }
    if level == 0 {
        if first >= keep {
            freed.push(p);
            return Ok(true);
        }
        return Ok(false);
    }
    let child_span = span(fs, level - 1);
    let mut b = fs.bio.bread(p)?;
    let mut changed = false;
    for i in 0..fs.geo.addr_per_block as usize {
        let cfirst = first + i as u64 * child_span;
        if cfirst + child_span <= keep {
            continue; // entirely kept
        }
        let c = le32(&b, i * 4)? as u64;
        if c == 0 {
            continue;
        }
        if trunc_tree(fs, ino, c, level - 1, cfirst, keep, freed)? {
            put32(&mut b, i * 4, 0)?;
            changed = true;
        }
    }
    if first >= keep {
        freed.push(p);
        return Ok(true);
    }
    if changed {
        fs.bio.bwrite(p, &b)?;
    }
    Ok(false)
}

/// Cut the block map of `inode` down to its first `keep` logical blocks.
/// Clears the pointers (indirect blocks written, `inode.block` and
/// `inode.blocks` updated) and returns the blocks to free; the caller
/// writes the inode first and frees them after (so a crash leaves blocks
/// marked used but unreferenced, which e2fsck repairs, never a block
/// referenced twice).
pub(crate) fn truncate_map(
    fs: &Ext2Fs,
    ino: u32,
    inode: &mut Inode,
    keep: u64,
) -> KResult<Vec<u64>> {
    let mut freed = Vec::new();
    let apb = fs.geo.addr_per_block as u64;
    let starts = [
        (IND_BLOCK, 1u32, NDIR_BLOCKS as u64),
        (DIND_BLOCK, 2, NDIR_BLOCKS as u64 + apb),
        (TIND_BLOCK, 3, NDIR_BLOCKS as u64 + apb + apb * apb),
    ];
    for i in 0..NDIR_BLOCKS {
        let p = inode.block[i] as u64;
        if p != 0 && i as u64 >= keep {
            if fs.geo.valid_block(p) {
                freed.push(p);
            } else {
                fs.corrupt(format_args!(
                    "inode {ino}: block pointer {p} outside the file system (dropped)"
                ));
            }
            inode.block[i] = 0;
        }
    }
    for (slot, level, first) in starts {
        let p = inode.block[slot] as u64;
        if p == 0 || first + span(fs, level) <= keep {
            continue;
        }
        if trunc_tree(fs, ino, p, level, first, keep, &mut freed)? {
            inode.block[slot] = 0;
        }
    }
    inode.blocks = inode
        .blocks
        .saturating_sub(freed.len() as u64 * sectors(fs));
    Ok(freed)
}
