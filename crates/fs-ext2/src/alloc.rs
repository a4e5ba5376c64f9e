//! Block and inode allocation (NetBSD `ext2fs_alloc.c`).
//!
//! Policy, as ext2 has it: a file's blocks go near the previous block of
//! the file (or the start of its inode's group); a new file's inode goes
//! into its directory's group; a new directory goes into a group with an
//! above-average number of free inodes and, among those, the fewest
//! directories (NetBSD `ext2fs_dirpref`, an "Orlov-lite" spread). When the
//! preferred group is full, the search goes on with a quadratic rehash and
//! then linearly through every group (`ext2fs_hashalloc`).
//!
//! Bitmaps, descriptor counts and superblock counts change together under
//! the metadata lock. Bitmaps, descriptors and the superblock are written
//! later (sync, syncer): after a crash they can only be behind the inodes,
//! which `e2fsck -p` repairs without asking.

use rumpkern::{Errno, KResult};

use crate::fs::{lk, Ext2Fs, Meta};

/// First zero bit in `bm` at or after `start` and below `limit`, wrapping
/// around to 0.
fn find_zero(bm: &[u8], start: u32, limit: u32) -> Option<u32> {
    let limit = limit.min((bm.len() * 8) as u32);
    if limit == 0 {
        return None;
    }
    let start = if start >= limit { 0 } else { start };
    let scan = |from: u32, to: u32| -> Option<u32> {
        let mut i = from;
        while i < to {
            let byte = *bm.get((i / 8) as usize)?;
            if byte == 0xff && i.is_multiple_of(8) {
                i += 8;
                continue;
            }
            if byte & (1 << (i % 8)) == 0 {
                return Some(i);
            }
            i += 1;
        }
        None
    };
    scan(start, limit).or_else(|| scan(0, start))
}

fn set_bit(bm: &mut [u8], i: u32) -> KResult<bool> {
    let b = bm.get_mut((i / 8) as usize).ok_or(Errno::EIO)?;
    let was = *b & (1 << (i % 8)) != 0;
    *b |= 1 << (i % 8);
    Ok(was)
}

fn clear_bit(bm: &mut [u8], i: u32) -> KResult<bool> {
    let b = bm.get_mut((i / 8) as usize).ok_or(Errno::EIO)?;
    let was = *b & (1 << (i % 8)) != 0;
    *b &= !(1 << (i % 8));
    Ok(was)
}

fn mark_gd_dirty(fs: &Ext2Fs, m: &mut Meta, g: u32) {
    let i = (g / fs.geo.descs_per_block) as usize;
    if let Some(d) = m.gd_dirty.get_mut(i) {
        *d = true;
    }
    m.sb_dirty = true;
}

/// Is block `b` of group `g` one of that group's own metadata blocks?
fn is_group_meta(fs: &Ext2Fs, m: &Meta, g: u32, b: u64) -> bool {
    let Some(d) = m.gds.get(g as usize) else {
        return true;
    };
    b == d.block_bitmap
        || b == d.inode_bitmap
        || (b >= d.inode_table && b < d.inode_table + fs.geo.itb_per_group as u64)
        || b <= fs.geo.first_data_block as u64
}

/// Allocate one block, preferably `goal` or the next free one after it.
/// Errors: ENOSPC, EIO.
/// `resv`: the caller may use the blocks reserved for root
/// (`s_r_blocks_count`, see [`may_use_reserved`]).
pub(crate) fn alloc_block(fs: &Ext2Fs, goal: u64, resv: bool) -> KResult<u64> {
    retry_after_frees(fs, || alloc_block_once(fs, goal, resv))
}

/// `alloc` again after ENOSPC if unlinks freed space that waits for the
/// next ordering point ([`Ext2Fs::defer_free`]): run that point first.
fn retry_after_frees<T>(fs: &Ext2Fs, alloc: impl Fn() -> KResult<T>) -> KResult<T> {
    match alloc() {
        Err(Errno::ENOSPC) if fs.has_deferred_frees() => {
            fs.flush_pending()?;
            alloc()
        }
        r => r,
    }
}

fn alloc_block_once(fs: &Ext2Fs, goal: u64, resv: bool) -> KResult<u64> {
    if fs.rdonly {
        return Err(Errno::EROFS);
    }
    let geo = &fs.geo;
    let mut m = lk(&fs.meta);
    if m.sb.free_blocks_count == 0 || (!resv && m.sb.free_blocks_count <= m.sb.r_blocks_count) {
        return Err(Errno::ENOSPC);
    }
    let goal = if geo.valid_block(goal) {
        goal
    } else {
        geo.first_data_block as u64 + 1
    };
    let g0 = geo.block_group(goal).min(geo.groups - 1);
    for k in 0..geo.groups {
        let g = (g0 + k) % geo.groups;
        let Some(d) = m.gds.get(g as usize) else {
            continue;
        };
        if d.free_blocks == 0 {
            continue;
        }
        let (bbno, nfree) = (d.block_bitmap, d.free_blocks);
        let first = geo.group_first_block(g);
        let start = if k == 0 { (goal - first) as u32 } else { 0 };
        // In place in the cached bitmap block (no copy per allocation).
        let found = fs.bio.update(bbno, false, false, |bm| {
            let Some(bit) = find_zero(bm, start, geo.blocks_in_group(g)) else {
                return (Ok(None), false);
            };
            let b = first + bit as u64;
            if is_group_meta(fs, &m, g, b) {
                return (Ok(Some((b, false))), false);
            }
            match set_bit(bm, bit) {
                Ok(_) => (Ok(Some((b, true))), true),
                Err(e) => (Err(e), false),
            }
        })?;
        let b = match found? {
            None => {
                // Descriptor says free blocks, bitmap says none.
                drop(m);
                return Err(fs.corrupt(format_args!(
                    "group {g}: bg_free_blocks_count {nfree} but the block bitmap is full"
                )));
            }
            Some((b, false)) => {
                drop(m);
                return Err(fs.corrupt(format_args!(
                    "group {g}: block bitmap marks metadata block {b} free"
                )));
            }
            Some((b, true)) => b,
        };
        if let Some(d) = m.gds.get_mut(g as usize) {
            d.free_blocks -= 1;
        }
        m.sb.free_blocks_count = m.sb.free_blocks_count.saturating_sub(1);
        mark_gd_dirty(fs, &mut m, g);
        return Ok(b);
    }
    Err(Errno::ENOSPC)
}

/// May `cred` allocate the reserved blocks? Root, the reserved user
/// (`s_def_resuid`) and members of the reserved group (`s_def_resgid`), as
/// Linux decides.
pub(crate) fn may_use_reserved(fs: &Ext2Fs, cred: &rumpkern::Cred) -> bool {
    let m = lk(&fs.meta);
    cred.is_root() || cred.uid == m.sb.def_resuid as u32 || cred.groupmember(m.sb.def_resgid as u32)
}

/// Return block `b` to the free pool. A block already free is a
/// corruption (logged; counts left alone).
pub(crate) fn free_block(fs: &Ext2Fs, b: u64) -> KResult<()> {
    if fs.rdonly {
        return Err(Errno::EROFS);
    }
    let geo = &fs.geo;
    if !geo.valid_block(b) {
        return Err(fs.corrupt(format_args!("freeing block {b} outside the file system")));
    }
    let mut m = lk(&fs.meta);
    let g = geo.block_group(b);
    let Some(d) = m.gds.get(g as usize) else {
        return Err(Errno::EIO);
    };
    if is_group_meta(fs, &m, g, b) {
        drop(m);
        return Err(fs.corrupt(format_args!("freeing metadata block {b} of group {g}")));
    }
    let bbno = d.block_bitmap;
    let mut bm = fs.bio.bread(bbno)?;
    let bit = (b - geo.group_first_block(g)) as u32;
    if !clear_bit(&mut bm, bit)? {
        drop(m);
        return Err(fs.corrupt(format_args!("freeing free block {b}")));
    }
    fs.bio.bdwrite(bbno, &bm)?;
    if let Some(d) = m.gds.get_mut(g as usize) {
        d.free_blocks = (d.free_blocks + 1).min(geo.blocks_in_group(g));
    }
    m.sb.free_blocks_count = m.sb.free_blocks_count.saturating_add(1);
    mark_gd_dirty(fs, &mut m, g);
    Ok(())
}

/// Free a list of blocks, going on after errors; returns the first error.
pub(crate) fn free_blocks(fs: &Ext2Fs, blocks: &[u64]) -> KResult<()> {
    let mut first = Ok(());
    for &b in blocks {
        if let Err(e) = free_block(fs, b) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

/// The group for a new directory: above-average free inodes, then the
/// fewest directories, then the most free blocks (NetBSD `ext2fs_dirpref`).
fn dirpref(fs: &Ext2Fs, m: &Meta) -> u32 {
    let n = fs.geo.groups as u64;
    let avg = m.gds.iter().map(|d| d.free_inodes as u64).sum::<u64>() / n.max(1);
    let mut best: Option<(u32, u32, u32)> = None; // (group, dirs, free blocks)
    for (g, d) in m.gds.iter().enumerate() {
        if d.free_inodes == 0 || (d.free_inodes as u64) < avg {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, dirs, fb)) => {
                d.used_dirs < dirs || (d.used_dirs == dirs && d.free_blocks > fb)
            }
        };
        if better {
            best = Some((g as u32, d.used_dirs, d.free_blocks));
        }
    }
    best.map(|b| b.0).unwrap_or(0)
}

/// Allocate an inode for a new file in the directory `parent` (a
/// directory when `is_dir`). Errors: ENOSPC, EIO.
pub(crate) fn alloc_inode(fs: &Ext2Fs, parent: u32, is_dir: bool) -> KResult<u32> {
    retry_after_frees(fs, || alloc_inode_once(fs, parent, is_dir))
}

fn alloc_inode_once(fs: &Ext2Fs, parent: u32, is_dir: bool) -> KResult<u32> {
    if fs.rdonly {
        return Err(Errno::EROFS);
    }
    let geo = &fs.geo;
    let mut m = lk(&fs.meta);
    if m.sb.free_inodes_count == 0 {
        return Err(Errno::ENOSPC);
    }
    let pref = if is_dir {
        dirpref(fs, &m)
    } else {
        geo.ino_group(parent).min(geo.groups - 1)
    };
    // Candidate order: preferred, quadratic rehash, then linear (computed
    // as it goes: no allocation per create).
    let groups = geo.groups as u64;
    let rehash = std::iter::successors(Some((pref as u64, 1u64)), |&(g, i)| {
        (i < groups).then(|| ((g + i) % groups, i * 2))
    })
    .map(|(g, _)| g as u32);
    let linear = (0..geo.groups).map(|k| (pref + 1 + k) % geo.groups);
    for g in rehash.chain(linear) {
        let Some(d) = m.gds.get(g as usize) else {
            continue;
        };
        if d.free_inodes == 0 {
            continue;
        }
        let (ibno, nfree) = (d.inode_bitmap, d.free_inodes);
        let start = if g == 0 { geo.first_ino - 1 } else { 0 };
        // In place in the cached bitmap block (no copy per allocation).
        let found = fs.bio.update(ibno, false, false, |bm| {
            let Some(mut bit) = find_zero(bm, start, geo.inodes_per_group) else {
                return (Ok(Err(())), false);
            };
            if g == 0 && bit < geo.first_ino - 1 {
                // Wrapped into the reserved inodes: look past them only.
                match find_zero(bm, geo.first_ino - 1, geo.inodes_per_group)
                    .filter(|b| *b >= geo.first_ino - 1)
                {
                    Some(b) => bit = b,
                    None => return (Ok(Ok(None)), false),
                }
            }
            match set_bit(bm, bit) {
                Ok(_) => (Ok(Ok(Some(bit))), true),
                Err(e) => (Err(e), false),
            }
        })?;
        let bit = match found? {
            Err(()) => {
                drop(m);
                return Err(fs.corrupt(format_args!(
                    "group {g}: bg_free_inodes_count {nfree} but the inode bitmap is full"
                )));
            }
            Ok(None) => continue,
            Ok(Some(bit)) => bit,
        };
        if let Some(d) = m.gds.get_mut(g as usize) {
            d.free_inodes -= 1;
            if is_dir {
                d.used_dirs += 1;
            }
        }
        m.sb.free_inodes_count = m.sb.free_inodes_count.saturating_sub(1);
        mark_gd_dirty(fs, &mut m, g);
        return Ok(g * geo.inodes_per_group + bit + 1);
    }
    Err(Errno::ENOSPC)
}

/// Return inode `ino` (a directory when `is_dir`) to the free pool.
pub(crate) fn free_inode(fs: &Ext2Fs, ino: u32, is_dir: bool) -> KResult<()> {
    if fs.rdonly {
        return Err(Errno::EROFS);
    }
    let geo = &fs.geo;
    if ino < geo.first_ino || ino > geo.inodes_count {
        return Err(fs.corrupt(format_args!("freeing reserved or invalid inode {ino}")));
    }
    let mut m = lk(&fs.meta);
    let g = geo.ino_group(ino);
    let Some(d) = m.gds.get(g as usize) else {
        return Err(Errno::EIO);
    };
    let ibno = d.inode_bitmap;
    let mut bm = fs.bio.bread(ibno)?;
    if !clear_bit(&mut bm, (ino - 1) % geo.inodes_per_group)? {
        drop(m);
        return Err(fs.corrupt(format_args!("freeing free inode {ino}")));
    }
    fs.bio.bdwrite(ibno, &bm)?;
    if let Some(d) = m.gds.get_mut(g as usize) {
        d.free_inodes = (d.free_inodes + 1).min(geo.inodes_per_group);
        if is_dir {
            d.used_dirs = d.used_dirs.saturating_sub(1);
        }
    }
    m.sb.free_inodes_count = m.sb.free_inodes_count.saturating_add(1);
    mark_gd_dirty(fs, &mut m, g);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_search() {
        let mut bm = vec![0xffu8; 4];
        assert_eq!(find_zero(&bm, 0, 32), None);
        bm[2] = 0xfb; // bit 18 free
        assert_eq!(find_zero(&bm, 0, 32), Some(18));
        assert_eq!(find_zero(&bm, 19, 32), Some(18)); // wraps
        assert_eq!(find_zero(&bm, 0, 18), None);
        assert!(!set_bit(&mut bm, 18).unwrap());
        assert!(set_bit(&mut bm, 18).unwrap());
        assert!(clear_bit(&mut bm, 18).unwrap());
        assert_eq!(set_bit(&mut bm, 99), Err(Errno::EIO));
    }
}
