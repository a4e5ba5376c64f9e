//! Journal replay in memory, for read-only mounts of ext3/ext4 file
//! systems that need recovery (JBD2 format; e2fsprogs `e2fsck/recovery.c`,
//! Linux `fs/jbd2/recovery.c`).
//!
//! The journal is not written back: its committed transactions are
//! replayed into an overlay (file system block → newest journaled copy)
//! that block reads consult, so a read-only mount sees what the kernel or
//! e2fsck would see after recovery, and the image stays untouched.
//!
//! The classic three passes: scan (find the last committed transaction),
//! revoke (collect revoked blocks with the transaction that revoked them),
//! replay (newest copy of every journaled block not revoked by the same or
//! a later transaction). Everything read from the journal is checked; a
//! malformed journal ends the scan there (as recovery does), a bad block
//! number is skipped. Work is bounded by the journal's length.

use std::collections::HashMap;

use rumpkern::{Errno, KResult};

use crate::bmap::{self, MapCache};
use crate::format::*;
use crate::fs::Ext2Fs;

const JBD2_MAGIC: u32 = 0xC03B_3998;
const BT_DESCRIPTOR: u32 = 1;
const BT_COMMIT: u32 = 2;
const BT_SB_V1: u32 = 3;
const BT_SB_V2: u32 = 4;
const BT_REVOKE: u32 = 5;

const FEAT_INCOMPAT_64BIT: u32 = 0x2;
const FEAT_INCOMPAT_CSUM_V2: u32 = 0x8;
const FEAT_INCOMPAT_CSUM_V3: u32 = 0x10;

const TAG_ESCAPE: u32 = 1;
const TAG_SAME_UUID: u32 = 2;
const TAG_LAST: u32 = 8;

fn be32(b: &[u8], off: usize) -> KResult<u32> {
    let s = b
        .get(off..off.checked_add(4).ok_or(Errno::EIO)?)
        .ok_or(Errno::EIO)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be16(b: &[u8], off: usize) -> KResult<u16> {
    let s = b
        .get(off..off.checked_add(2).ok_or(Errno::EIO)?)
        .ok_or(Errno::EIO)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

/// The journal inode, its geometry and tag format.
struct Journal<'a> {
    fs: &'a Ext2Fs,
    inode: Inode,
    mc: MapCache,
    first: u32,
    maxlen: u32,
    incompat: u32,
    tag_bytes: usize,
    tail_bytes: usize,
}

/// One journaled block of a committed transaction.
struct Tagged {
    fs_block: u64,
    journal_pos: u32,
    escaped: bool,
    seq: u32,
}

impl Journal<'_> {
    /// Read journal block `pos` (logical block of the journal inode).
    fn read(&mut self, pos: u32) -> KResult<Vec<u8>> {
        let p = bmap::bmap(self.fs, JOURNAL_INO, &self.inode, pos as u64, &mut self.mc)?
            .ok_or(Errno::EIO)?;
        self.fs.bio.bread_raw(p)
    }

    /// The position after `pos`, wrapping at the end of the log area.
    fn next(&self, pos: u32) -> u32 {
        let n = pos + 1;
        if n >= self.maxlen {
            self.first
        } else {
            n
        }
    }

    /// Tags of a descriptor block: (fs block, flags).
    fn tags(&self, blk: &[u8]) -> KResult<Vec<(u64, u32)>> {
        let mut out = Vec::new();
        let mut off = 12;
        let end = blk.len().saturating_sub(self.tail_bytes);
        while off + self.tag_bytes <= end {
            let lo = be32(blk, off)? as u64;
            let (flags, hi) = if self.incompat & FEAT_INCOMPAT_CSUM_V3 != 0 {
                (be32(blk, off + 4)?, be32(blk, off + 8)? as u64)
            } else {
                let f = be16(blk, off + 6)? as u32;
                let hi = if self.incompat & FEAT_INCOMPAT_64BIT != 0 {
                    be32(blk, off + 8)? as u64
                } else {
                    0
                };
                (f, hi)
            };
            let hi = if self.incompat & FEAT_INCOMPAT_64BIT != 0 {
                hi
            } else {
                0
            };
            out.push(((hi << 32) | lo, flags));
            off += self.tag_bytes;
            if flags & TAG_SAME_UUID == 0 {
                off += 16;
            }
            if flags & TAG_LAST != 0 {
                break;
            }
        }
        Ok(out)
    }
}

/// Replay the journal of `fs` into a block overlay. Returns an empty map
/// when the journal is clean. Errors: EIO when the journal itself cannot
/// be read (the caller then mounts without replay, with a warning).
pub(crate) fn replay(fs: &Ext2Fs, journal_ino: u32) -> KResult<HashMap<u64, Vec<u8>>> {
    if journal_ino != JOURNAL_INO {
        log::warn!("ext2fs: journal in inode {journal_ino}, not {JOURNAL_INO}: not replayed");
        return Err(Errno::EOPNOTSUPP);
    }
    let inode = fs.read_inode(journal_ino)?;
    let bs = fs.geo.block_size as usize;
    let mut j = Journal {
        fs,
        inode,
        mc: MapCache::default(),
        first: 0,
        maxlen: 0,
        incompat: 0,
        tag_bytes: 8,
        tail_bytes: 0,
    };
    let sb = j.read(0)?;
    let btype = be32(&sb, 4)?;
    if be32(&sb, 0)? != JBD2_MAGIC || (btype != BT_SB_V1 && btype != BT_SB_V2) {
        log::warn!("ext2fs: journal superblock has no JBD2 magic");
        return Err(Errno::EIO);
    }
    if be32(&sb, 12)? as usize != bs {
        log::warn!("ext2fs: journal block size differs from the file system's");
        return Err(Errno::EIO);
    }
    j.maxlen = be32(&sb, 16)?;
    j.first = be32(&sb, 20)?;
    let mut seq = be32(&sb, 24)?;
    let start = be32(&sb, 28)?;
    let journal_blocks = (j.inode.size / bs as u64).min(u32::MAX as u64) as u32;
    if j.first == 0 || j.first >= j.maxlen || j.maxlen > journal_blocks {
        log::warn!(
            "ext2fs: journal superblock geometry invalid (first {}, maxlen {})",
            j.first,
            j.maxlen
        );
        return Err(Errno::EIO);
    }
    if start == 0 {
        return Ok(HashMap::new());
    }
    if btype == BT_SB_V2 {
        j.incompat = be32(&sb, 0x28)?;
    }
    let csum = j.incompat & (FEAT_INCOMPAT_CSUM_V2 | FEAT_INCOMPAT_CSUM_V3) != 0;
    j.tag_bytes = if j.incompat & FEAT_INCOMPAT_CSUM_V3 != 0 {
        16
    } else {
        let base = if csum { 14 } else { 12 };
        if j.incompat & FEAT_INCOMPAT_64BIT != 0 {
            base
        } else {
            base - 4
        }
    };
    j.tail_bytes = if csum { 4 } else { 0 };
    let revoke_rec = if j.incompat & FEAT_INCOMPAT_64BIT != 0 {
        8
    } else {
        4
    };

    // Pass 1 (scan) and 2 (revoke) together: walk committed transactions.
    let mut pos = start;
    let mut tagged: Vec<Tagged> = Vec::new();
    let mut pending: Vec<Tagged> = Vec::new();
    let mut revoked: HashMap<u64, u32> = HashMap::new();
    let mut pending_revoked: Vec<u64> = Vec::new();
    let mut steps = 0u32;
    let mut committed = 0u32;
    if start < j.first || start >= j.maxlen {
        log::warn!("ext2fs: journal start {start} outside the log");
        return Err(Errno::EIO);
    }
    while steps < j.maxlen {
        let blk = match j.read(pos) {
            Ok(b) => b,
            Err(_) => break,
        };
        if be32(&blk, 0)? != JBD2_MAGIC || be32(&blk, 8)? != seq {
            break;
        }
        match be32(&blk, 4)? {
            BT_DESCRIPTOR => {
                let tags = j.tags(&blk)?;
                for (fs_block, flags) in tags {
                    pos = j.next(pos);
                    steps += 1;
                    pending.push(Tagged {
                        fs_block,
                        journal_pos: pos,
                        escaped: flags & TAG_ESCAPE != 0,
                        seq,
                    });
                }
            }
            BT_COMMIT => {
                tagged.append(&mut pending);
                for b in pending_revoked.drain(..) {
                    let e = revoked.entry(b).or_insert(seq);
                    *e = (*e).max(seq);
                }
                committed += 1;
                seq = seq.wrapping_add(1);
            }
            BT_REVOKE => {
                let count = (be32(&blk, 12)? as usize).min(bs);
                let mut off = 16;
                while off + revoke_rec <= count {
                    let b = if revoke_rec == 8 {
                        ((be32(&blk, off)? as u64) << 32) | be32(&blk, off + 4)? as u64
                    } else {
                        be32(&blk, off)? as u64
                    };
                    pending_revoked.push(b);
                    off += revoke_rec;
                }
            }
            _ => break,
        }
        pos = j.next(pos);
        steps += 1;
    }
    // Pass 3: replay, oldest first, so newer copies win.
    let mut overlay = HashMap::new();
    for t in tagged {
        if revoked.get(&t.fs_block).is_some_and(|&rs| rs >= t.seq) {
            continue;
        }
        if !fs.geo.valid_block(t.fs_block) && t.fs_block != fs.geo.first_data_block as u64 {
            log::warn!(
                "ext2fs: journal names block {} outside the file system; skipped",
                t.fs_block
            );
            continue;
        }
        let mut data = j.read(t.journal_pos)?;
        if t.escaped {
            if let Some(s) = data.get_mut(0..4) {
                s.copy_from_slice(&JBD2_MAGIC.to_be_bytes());
            }
        }
        overlay.insert(t.fs_block, data);
    }
    log::warn!(
        "ext2fs: journal needs recovery: {committed} committed transaction(s), {} block(s) replayed in memory (the image is not changed)",
        overlay.len()
    );
    Ok(overlay)
}
