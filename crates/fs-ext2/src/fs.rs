//! The mounted file system: geometry, superblock and group descriptors in
//! memory, inode I/O, corruption reporting (NetBSD `ext2fs_vfsops.c`:
//! `ext2fs_mountfs`, `ext2fs_sbupdate`, `ext2fs_cgupdate`).
//!
//! # Locking
//!
//! `Ext2Fs::meta` guards the superblock, the group descriptors and every
//! read-modify-write of a block shared between files: bitmaps, inode table
//! blocks, descriptor blocks. It is a leaf below the node mutexes
//! (`Ext2Node::inner`): take a node's mutex first, then `meta`; never the
//! other way round, never two node mutexes at once, and never the vnode
//! cache while holding either.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use rumpkern::dev::BlockDevice;
use rumpkern::kthread::Syncer;
use rumpkern::{Errno, KResult, Mount, Timespec};

use crate::bio::Bio;
use crate::format::*;

/// Lock a mutex, going on after a panic elsewhere poisoned it.
pub(crate) fn lk<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Superblock and descriptors as kept in memory.
pub(crate) struct Meta {
    pub sb: Superblock,
    pub gds: Vec<GroupDesc>,
    /// Raw descriptor table blocks (fields not decoded are kept).
    pub gd_raw: Vec<Vec<u8>>,
    /// Descriptor blocks changed since the last write-back.
    pub gd_dirty: Vec<bool>,
    pub sb_dirty: bool,
    /// Inode updates held back until the next ordering point (see
    /// [`Ext2Fs::write_inode_delayed`]): inode number -> (sequence number
    /// of the update, the inode).
    pub pending: HashMap<u32, (u64, Inode)>,
    /// Sequence number of the last held-back update.
    pub pending_seq: u64,
}

/// Held-back inode updates that make the writer start an ordering point
/// in the background (the syncer), and in its own thread (memory bound).
const PENDING_KICK: usize = 4096;
const PENDING_MAX: usize = 16384;
/// The same for directory blocks held until after a barrier
/// ([`Ext2Fs::write_after_barrier`]).
const HELD_KICK: usize = 256;
const HELD_MAX: usize = 1024;

/// One mounted ext2 file system.
pub struct Ext2Fs {
    pub(crate) bio: Bio,
    pub(crate) geo: Geometry,
    pub(crate) meta: Mutex<Meta>,
    /// Mounted read-only (then nothing is ever written).
    pub(crate) rdonly: bool,
    /// A corruption was already logged (log the first only, in detail).
    corrupt_logged: AtomicBool,
    /// Why read-write was refused (logged), if it was.
    pub(crate) ro_reason: Option<String>,
    /// Reads never update access times (`-o noatime`); otherwise they do
    /// with relatime rules.
    pub(crate) noatime: AtomicBool,
    /// What a corruption found on a read-write mount does (`s_errors`,
    /// `-o errors=`): [`ERRORS_CONTINUE`] or [`ERRORS_RO`] (remount
    /// read-only; also used for "panic", which a user-space server never
    /// does).
    pub(crate) errors: AtomicU8,
    /// The mount, for `errors=remount-ro`.
    pub(crate) mount: OnceLock<Weak<Mount>>,
    /// Serializes ordering points ([`Ext2Fs::flush_pending`]).
    epoch: Mutex<()>,
    /// Writes held-back inode updates every [`crate::bio::SYNC_INTERVAL`]
    /// (read-write mounts).
    pending_syncer: Mutex<Option<Syncer>>,
    /// Inodes whose link count drop went out as a plain delayed write
    /// ([`Ext2Fs::write_inode_unordered`]) and may not be durable yet.
    unordered: Mutex<HashMap<u32, u64>>,
    unordered_seq: std::sync::atomic::AtomicU64,
    /// Blocks and inodes of deferred frees taken by an ordering point and
    /// not yet given back (statvfs counts them free).
    inflight_free: Mutex<(u64, u64)>,
    /// What freeing such an inode gave back (its blocks, its number):
    /// reused only after the next ordering point has made the count and
    /// the entry's removal durable, so that a crash cannot bring the
    /// unlinked file back with another file's data in its blocks.
    deferred: Mutex<Vec<DeferredFree>>,
}

/// Blocks and an inode number freed at an inode's release, given back at
/// the next ordering point ([`Ext2Fs::defer_free`]).
pub(crate) struct DeferredFree {
    pub blocks: Vec<u64>,
    pub ino: u32,
    pub is_dir: bool,
}

/// `s_errors` / `errors=continue`: log, mark the superblock, go on.
pub const ERRORS_CONTINUE: u8 = 1;
/// `s_errors` / `errors=remount-ro`: also make the mount read-only.
pub const ERRORS_RO: u8 = 2;

impl Ext2Fs {
    /// Read and validate the superblock and descriptors of `dev`.
    /// `want_rw`: the caller asked for read-write; `force`: mount a dirty
    /// file system read-write anyway. Returns the file system and whether
    /// it is read-only (by request, feature or state).
    pub fn open(
        dev: Arc<dyn BlockDevice>,
        want_rw: bool,
        force: bool,
    ) -> Result<Arc<Ext2Fs>, Refusal> {
        Self::open_with(dev, want_rw, force, crate::bio::DEFAULT_CACHE_BYTES)
    }

    /// As [`Ext2Fs::open`], with a buffer cache of `cache_bytes`.
    pub fn open_with(
        dev: Arc<dyn BlockDevice>,
        want_rw: bool,
        force: bool,
        cache_bytes: usize,
    ) -> Result<Arc<Ext2Fs>, Refusal> {
        let dev_size = dev.size();
        if dev_size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(Refusal::bad(
                "device",
                format!("{dev_size} bytes: too small for an ext2 file system"),
            ));
        }
        let mut raw = vec![0u8; SUPERBLOCK_SIZE];
        dev.read_at(SUPERBLOCK_OFFSET, &mut raw)
            .map_err(|e| Refusal::bad("superblock", format!("read error {e}")))?;
        let sb = Superblock::parse(&raw)?;
        let geo = Geometry::new(&sb, dev_size)?;
        let ro_feature = sb.check_features()?;
        let mut rdonly = !want_rw;
        let mut ro_reason = None;
        if want_rw {
            if let Some(r) = &ro_feature {
                return Err(r.clone());
            }
            if dev.is_read_only() {
                return Err(Refusal::rdonly("device", "opened read-only"));
            }
            if sb.state & STATE_VALID == 0 || sb.state & STATE_ERROR != 0 {
                let what = if sb.state & STATE_ERROR != 0 {
                    "has errors"
                } else {
                    "was not cleanly unmounted"
                };
                if force {
                    log::warn!("ext2fs: file system {what} (s_state {:#x}); mounting read-write because of -o force", sb.state);
                } else {
                    let msg = format!("file system {what} (s_state {:#x}): mounted read-only; run e2fsck, or mount with -o force", sb.state);
                    log::warn!("ext2fs: {msg}");
                    ro_reason = Some(msg);
                    rdonly = true;
                }
            }
        }
        if let Some(r) = &ro_feature {
            log::info!("ext2fs: read-only: {r}");
        }
        let bio = Bio::new(dev, geo.block_size, geo.blocks_count, cache_bytes);
        let (gd_raw, gds) = load_gdt(&bio, &geo)?;
        let meta = Meta {
            sb,
            gd_dirty: vec![false; gd_raw.len()],
            gds,
            gd_raw,
            sb_dirty: false,
            pending: HashMap::new(),
            pending_seq: 0,
        };
        let fs = Arc::new(Ext2Fs {
            bio,
            geo,
            meta: Mutex::new(meta),
            rdonly,
            corrupt_logged: AtomicBool::new(false),
            noatime: AtomicBool::new(false),
            errors: AtomicU8::new(ERRORS_CONTINUE),
            mount: OnceLock::new(),
            ro_reason,
            epoch: Mutex::new(()),
            pending_syncer: Mutex::new(None),
            unordered: Mutex::new(HashMap::new()),
            unordered_seq: std::sync::atomic::AtomicU64::new(0),
            inflight_free: Mutex::new((0, 0)),
            deferred: Mutex::new(Vec::new()),
        });
        {
            let e = lk(&fs.meta).sb.errors as u8;
            fs.errors.store(
                if e == ERRORS_CONTINUE || e == 0 {
                    ERRORS_CONTINUE
                } else {
                    ERRORS_RO
                },
                Ordering::Relaxed,
            );
        }
        // A journal that needs recovery, on a read-only mount: replay it
        // in memory (the image is not changed), then read the descriptors
        // again through the replayed blocks.
        if fs.rdonly {
            let (recover, jino) = {
                let m = lk(&fs.meta);
                (
                    m.sb.has_incompat(incompat::RECOVER) && m.sb.has_compat(compat::HAS_JOURNAL),
                    le32(&m.sb.raw, 224).unwrap_or(0),
                )
            };
            if recover {
                match crate::journal::replay(&fs, jino) {
                    Ok(overlay) if !overlay.is_empty() => {
                        fs.bio.set_overlay(overlay);
                        let (gd_raw, gds) = load_gdt(&fs.bio, &fs.geo)?;
                        let mut m = lk(&fs.meta);
                        m.gd_dirty = vec![false; gd_raw.len()];
                        m.gd_raw = gd_raw;
                        m.gds = gds;
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("ext2fs: journal not replayed ({e}): recent changes may be missing or inconsistent"),
                }
            }
        }
        // The root must be a directory.
        let root = fs
            .read_inode(ROOT_INO)
            .map_err(|e| Refusal::bad("root inode", format!("unreadable: {e}")))?;
        if root.ifmt() != 0o040000 || root.links == 0 {
            return Err(Refusal::bad(
                "root inode",
                format!(
                    "mode {:o}, {} links: not a directory",
                    root.mode, root.links
                ),
            ));
        }
        {
            let mut m = lk(&fs.meta);
            // Summary counts from the descriptors (Linux does the same).
            let fb: u64 = m.gds.iter().map(|d| d.free_blocks as u64).sum();
            let fi: u64 = m.gds.iter().map(|d| d.free_inodes as u64).sum();
            if m.sb.free_blocks_count as u64 != fb || m.sb.free_inodes_count as u64 != fi {
                log::debug!(
                    "ext2fs: superblock free counts {}/{} differ from the descriptors' {fb}/{fi}",
                    m.sb.free_blocks_count,
                    m.sb.free_inodes_count
                );
            }
            m.sb.free_blocks_count = fb.min(u32::MAX as u64) as u32;
            m.sb.free_inodes_count = fi.min(u32::MAX as u64) as u32;
            if !fs.rdonly {
                // Mark the file system as in use, count the mount.
                let now = Timespec::now().sec;
                m.sb.state &= !STATE_VALID;
                m.sb.mnt_count = m.sb.mnt_count.wrapping_add(1);
                m.sb.mtime = now as u32;
                m.sb.wtime = now as u32;
                if m.sb.max_mnt_count > 0 && m.sb.mnt_count as i32 >= m.sb.max_mnt_count as i32 {
                    log::warn!(
                        "ext2fs: maximal mount count reached, running e2fsck is recommended"
                    );
                }
                m.sb_dirty = true;
                drop(m);
                fs.write_meta()
                    .map_err(|e| Refusal::bad("superblock", format!("write error {e}")))?;
                if let Err(e) = fs.bio.start_syncer() {
                    log::warn!("ext2fs: no syncer thread ({e}); delayed writes wait for sync");
                }
                let weak = Arc::downgrade(&fs);
                match Syncer::start("ext2syncer", Some(crate::bio::SYNC_INTERVAL), move || {
                    if let Some(fs) = weak.upgrade() {
                        if let Err(e) = fs.flush_pending() {
                            log::warn!("ext2fs: held-back inode updates not written: {e}");
                        }
                    }
                }) {
                    Ok(s) => *lk(&fs.pending_syncer) = Some(s),
                    Err(e) => log::warn!(
                        "ext2fs: no inode syncer thread ({e}); inode updates wait for sync"
                    ),
                }
            }
        }
        Ok(fs)
    }

    /// Log a corruption (the first one in detail) and return EIO. On a
    /// read-write mount the superblock's ERROR state is set, so the next
    /// mount knows to run e2fsck.
    pub(crate) fn corrupt(&self, what: std::fmt::Arguments<'_>) -> Errno {
        if !self.corrupt_logged.swap(true, Ordering::AcqRel) {
            log::error!("ext2fs: corrupt file system: {what}");
        } else {
            log::debug!("ext2fs: corrupt: {what}");
        }
        if !self.rdonly {
            {
                let mut m = lk(&self.meta);
                if m.sb.state & STATE_ERROR == 0 {
                    m.sb.state |= STATE_ERROR;
                    m.sb_dirty = true;
                }
            }
            if self.errors.load(Ordering::Relaxed) != ERRORS_CONTINUE {
                if let Some(mp) = self.mount.get().and_then(Weak::upgrade) {
                    if !mp.is_rdonly() {
                        log::error!("ext2fs: errors=remount-ro: the file system is now read-only");
                        mp.set_rdonly();
                    }
                }
            }
        }
        Errno::EIO
    }

    /// Geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// A copy of the superblock as kept in memory.
    pub fn superblock(&self) -> Superblock {
        lk(&self.meta).sb.clone()
    }

    /// Block and byte offset of inode `ino` in its inode table.
    fn inode_location(&self, m: &Meta, ino: u32) -> KResult<(u64, usize)> {
        if ino == 0 || ino > self.geo.inodes_count {
            // Callers check the number first; `corrupt` would take the
            // metadata lock the caller holds.
            log::error!("ext2fs: inode number {ino} out of range");
            return Err(Errno::EIO);
        }
        let g = self.geo.ino_group(ino);
        let idx = (ino - 1) % self.geo.inodes_per_group;
        let gd = m.gds.get(g as usize).ok_or(Errno::EIO)?;
        let blk = gd.inode_table + (idx / self.geo.inodes_per_block) as u64;
        let off = ((idx % self.geo.inodes_per_block) * self.geo.inode_size) as usize;
        Ok((blk, off))
    }

    /// Read inode `ino`: a held-back update if there is one, else the
    /// inode table.
    pub fn read_inode(&self, ino: u32) -> KResult<Inode> {
        let (blk, off) = {
            let m = lk(&self.meta);
            if let Some((_, i)) = m.pending.get(&ino) {
                return Ok(i.clone());
            }
            self.inode_location(&m, ino)?
        };
        // Parsed in the cache, not copied out.
        let isz = self.geo.inode_size as usize;
        self.bio
            .with_block(blk, 1, |b| match b.get(off..off + isz) {
                Some(raw) => Inode::parse(raw),
                None => Err(Errno::EIO),
            })?
    }

    /// Write inode `ino` back to the inode table, synchronously
    /// (read-modify-write of its table block under the metadata lock).
    ///
    /// An inode that keeps links is published by this write, so whatever
    /// makes it reachable must be durable first: when any update is held
    /// back (this inode's own, or a new directory's on its path, which
    /// cannot be told apart cheaply), every dirty block and then every
    /// held-back inode are made durable before (two ordering points).
    /// Without that, a hard link to a file in a new directory made the file
    /// durable before the directory, and a cut in between left an inode no
    /// entry named, which e2fsck -p does not repair. An inode with no links
    /// left needs no order: e2fsck takes it as free whatever else landed.
    pub fn write_inode(&self, ino: u32, inode: &Inode) -> KResult<()> {
        if self.rdonly {
            return Err(Errno::EROFS);
        }
        let mut m = lk(&self.meta);
        if (!m.pending.is_empty() || self.bio.has_held()) && inode.links > 0 && !self.bio.is_async() {
            drop(m);
            self.flush_pending()?;
            self.bio.barrier()?;
            m = lk(&self.meta);
        }
        // Superseded: this write carries everything the held-back one had.
        m.pending.remove(&ino);
        self.put_inode_locked(&m, ino, inode, true)
    }

    /// Write inode `ino` later, and only after everything written or made
    /// dirty before this call is durable: the update is held back in
    /// memory (readers see it) until the next ordering point
    /// ([`Ext2Fs::flush_pending`]: syncer, `sync`, `fsync`, unmount, or
    /// too many held back), which first makes every dirty block durable
    /// and then writes the held-back inodes as delayed writes. So an
    /// inode never reaches the device before the directory entry naming
    /// it, the data and indirect blocks it points to, or a new
    /// directory's block (NetBSD's soft dependencies, by epochs). For
    /// every change whose loss in a crash leaves a consistent file
    /// system: a file's size, times and new block pointers after a
    /// write, a directory's inode after its entries changed, the link
    /// count of a new node. With `-o async`: a plain delayed write.
    pub fn write_inode_delayed(&self, ino: u32, inode: &Inode) -> KResult<()> {
        if self.rdonly {
            return Err(Errno::EROFS);
        }
        if self.bio.is_async() {
            let m = lk(&self.meta);
            return self.put_inode_locked(&m, ino, inode, false);
        }
        // Fail on a bad number now rather than at the ordering point.
        let n = {
            let mut m = lk(&self.meta);
            self.inode_location(&m, ino)?;
            m.pending_seq += 1;
            let seq = m.pending_seq;
            m.pending.insert(ino, (seq, inode.clone()));
            m.pending.len()
        };
        if n >= PENDING_MAX {
            self.flush_pending()?;
        } else if n == PENDING_KICK {
            if let Some(s) = lk(&self.pending_syncer).as_ref() {
                s.kick();
            }
        }
        Ok(())
    }

    /// Write inode `ino` as a plain delayed write, in no order with
    /// anything: durable at the next barrier at the latest. For a link
    /// count drop whose directory entry's removal then waits for that
    /// barrier ([`Ext2Fs::write_after_barrier`]). Returns false, writing
    /// nothing, where an update of the inode is held back (it must not
    /// overtake that one: the caller writes synchronously instead). The
    /// caller holds the node's lock, so none can be added meanwhile.
    pub fn write_inode_unordered(&self, ino: u32, inode: &Inode) -> KResult<bool> {
        if self.rdonly {
            return Err(Errno::EROFS);
        }
        let m = lk(&self.meta);
        if m.pending.contains_key(&ino) {
            return Ok(false);
        }
        self.put_inode_locked(&m, ino, inode, false)?;
        if !self.bio.is_async() {
            let seq = self.unordered_seq.fetch_add(1, Ordering::Relaxed) + 1;
            lk(&self.unordered).insert(ino, seq);
        }
        Ok(true)
    }

    /// Is `ino`'s link count drop possibly not durable yet?
    pub(crate) fn is_unordered(&self, ino: u32) -> bool {
        lk(&self.unordered).contains_key(&ino)
    }

    /// Are link count drops or held directory blocks waiting for an
    /// ordering point?
    pub(crate) fn has_unordered(&self) -> bool {
        !lk(&self.unordered).is_empty() || self.bio.has_held()
    }

    /// Free `f` at the next ordering point if its inode's link count drop
    /// may not be durable yet (true: deferred), else false (free now).
    pub(crate) fn defer_free(&self, f: DeferredFree) -> Result<bool, DeferredFree> {
        if !lk(&self.unordered).contains_key(&f.ino) {
            return Err(f);
        }
        lk(&self.deferred).push(f);
        Ok(true)
    }

    /// Are frees waiting for an ordering point (or being given back by
    /// one)?
    pub(crate) fn has_deferred_frees(&self) -> bool {
        !lk(&self.deferred).is_empty() || *lk(&self.inflight_free) != (0, 0)
    }

    /// Write directory block `bno` (delayed) only after everything dirty
    /// now is durable: held in memory until the next ordering point
    /// ([`Ext2Fs::flush_pending`]), which releases it between its two
    /// barriers. For an entry's removal after the link count drop written
    /// with [`Ext2Fs::write_inode_unordered`]: a crash can then leave the
    /// entry naming an inode with one link too few or none, which e2fsck
    /// -p repairs, never an inode without its entry. An unlink costs no
    /// synchronous write.
    pub fn write_after_barrier(&self, bno: u64, data: &[u8]) -> KResult<()> {
        let n = self.bio.bdwrite_after_barrier(bno, data)?;
        if n >= HELD_MAX {
            // The write itself is done (held): a failure here is the
            // ordering point's, reported by the next one.
            if let Err(e) = self.flush_pending() {
                log::warn!("ext2fs: ordering point after {n} held blocks: {e}");
            }
        } else if n == HELD_KICK {
            if let Some(s) = lk(&self.pending_syncer).as_ref() {
                s.kick();
            }
        }
        Ok(())
    }

    /// Write a new inode's first state, delayed and in no particular order
    /// with anything else: for an inode with no links, or an empty regular
    /// file (a crash can only leave it unattached, or leave an entry
    /// naming a free inode: e2fsck -p clears either).
    pub fn write_new_inode(&self, ino: u32, inode: &Inode) -> KResult<()> {
        if self.rdonly {
            return Err(Errno::EROFS);
        }
        let m = lk(&self.meta);
        if m.pending.contains_key(&ino) {
            drop(m);
            return self.write_inode_delayed(ino, inode);
        }
        self.put_inode_locked(&m, ino, inode, false)
    }

    /// Ordering point: make every dirty block durable, then release the
    /// directory blocks held until now ([`Ext2Fs::write_after_barrier`])
    /// and make them durable too, then write the inode updates held back
    /// until now (delayed; the next write-back takes them).
    pub fn flush_pending(&self) -> KResult<()> {
        if self.rdonly {
            return Ok(());
        }
        let _e = lk(&self.epoch);
        // Pending inodes first, held blocks last: a held block's change
        // made before an inode update was held back (a new entry before
        // its inode's link count) is then in this round's release.
        let mut snap: Vec<(u32, u64, Inode)> = {
            let m = lk(&self.meta);
            m.pending
                .iter()
                .map(|(ino, (seq, i))| (*ino, *seq, i.clone()))
                .collect()
        };
        let unordered: Vec<(u32, u64)> = lk(&self.unordered).iter().map(|(i, q)| (*i, *q)).collect();
        let deferred = {
            let mut d = lk(&self.deferred);
            let taken = std::mem::take(&mut *d);
            let mut inf = lk(&self.inflight_free);
            for f in &taken {
                inf.0 += f.blocks.len() as u64;
                inf.1 += 1;
            }
            taken
        };
        let held = self.bio.held_snapshot();
        if snap.is_empty() && held.is_empty() && unordered.is_empty() && deferred.is_empty() {
            return Ok(());
        }
        let give_back = |deferred: Vec<DeferredFree>| -> Vec<DeferredFree> {
            let mut inf = lk(&self.inflight_free);
            for f in &deferred {
                inf.0 = inf.0.saturating_sub(f.blocks.len() as u64);
                inf.1 = inf.1.saturating_sub(1);
            }
            deferred
        };
        snap.sort_unstable_by_key(|e| e.0);
        if let Err(e) = self.bio.barrier() {
            let d = give_back(deferred);
            lk(&self.deferred).extend(d);
            return Err(e);
        }
        {
            // Durable now, unless dropped again meanwhile (a second link).
            let mut u = lk(&self.unordered);
            for (ino, q) in &unordered {
                if u.get(ino) == Some(q) {
                    u.remove(ino);
                }
            }
        }
        if !held.is_empty() || !deferred.is_empty() {
            // Directory blocks whose premises the barrier made durable;
            // durable themselves before the held-back inodes (a new
            // entry in one of them comes before its inode's link count)
            // and before the unlinked inodes' blocks and numbers can be
            // reused.
            let r = self.bio.release_held(held).and_then(|_| self.bio.barrier());
            if let Err(e) = r {
                let d = give_back(deferred);
                lk(&self.deferred).extend(d);
                return Err(e);
            }
            let mut first = Ok(());
            for f in deferred {
                let r = crate::alloc::free_blocks(self, &f.blocks)
                    .and(crate::alloc::free_inode(self, f.ino, f.is_dir));
                give_back(vec![f]);
                if first.is_ok() {
                    first = r;
                }
            }
            first?;
        }
        let mut m = lk(&self.meta);
        for (ino, seq, inode) in snap {
            // Gone: a synchronous write superseded it. Newer: write the
            // state the barrier covered, keep the newer one for next time.
            let Some(cur) = m.pending.get(&ino).map(|p| p.0) else {
                continue;
            };
            self.put_inode_locked(&m, ino, &inode, false)?;
            if cur == seq {
                m.pending.remove(&ino);
            }
        }
        Ok(())
    }

    fn put_inode_locked(&self, m: &Meta, ino: u32, inode: &Inode, sync: bool) -> KResult<()> {
        let bytes = inode.to_bytes()?;
        let (blk, off) = self.inode_location(m, ino)?;
        self.bio.update(blk, sync, false, |b| {
            match b.get_mut(off..off + bytes.len()) {
                Some(dst) => {
                    dst.copy_from_slice(&bytes);
                    (Ok(()), true)
                }
                None => (Err(Errno::EIO), false),
            }
        })?
    }

    /// Write back the superblock and changed descriptor blocks.
    pub fn write_meta(&self) -> KResult<()> {
        if self.rdonly {
            return Ok(());
        }
        let mut m = lk(&self.meta);
        self.write_meta_locked(&mut m)
    }

    pub(crate) fn write_meta_locked(&self, m: &mut Meta) -> KResult<()> {
        for i in 0..m.gd_raw.len() {
            if !m.gd_dirty.get(i).copied().unwrap_or(false) {
                continue;
            }
            let per = self.geo.descs_per_block;
            let mut blk = m.gd_raw.get(i).cloned().ok_or(Errno::EIO)?;
            for j in 0..per {
                let g = (i as u32) * per + j;
                let Some(d) = m.gds.get(g as usize) else {
                    break;
                };
                let off = (j * self.geo.desc_size) as usize;
                d.store(blk.get_mut(off..).ok_or(Errno::EIO)?, self.geo.is64)?;
            }
            self.bio
                .bwrite(self.geo.gdt_block_location(i as u32), &blk)?;
            if let Some(r) = m.gd_raw.get_mut(i) {
                *r = blk;
            }
            if let Some(d) = m.gd_dirty.get_mut(i) {
                *d = false;
            }
        }
        if m.sb_dirty {
            m.sb.wtime = Timespec::now().sec as u32;
            let bytes = m.sb.to_bytes();
            self.bio.write_bytes(SUPERBLOCK_OFFSET, &bytes)?;
            m.sb_dirty = false;
        }
        Ok(())
    }

    /// Write everything back and make it durable.
    pub fn sync(&self) -> KResult<()> {
        if self.rdonly {
            return Ok(());
        }
        self.flush_pending()?;
        self.bio.flush()?;
        self.write_meta()?;
        self.bio.flush()
    }

    /// Last step of unmount: mark the file system clean (unless an error
    /// was recorded) and write everything back.
    pub fn unmount(&self) -> KResult<()> {
        if self.rdonly {
            return Ok(());
        }
        {
            let mut m = lk(&self.meta);
            if m.sb.state & STATE_ERROR == 0 {
                m.sb.state |= STATE_VALID;
            }
            m.sb_dirty = true;
        }
        if let Some(mut s) = lk(&self.pending_syncer).take() {
            let _ = s.stop();
        }
        // Data and metadata blocks first, the clean superblock last.
        self.flush_pending()?;
        self.bio.shutdown()?;
        self.write_meta()?;
        self.bio.flush()
    }

    /// Free blocks, free inodes, reserved blocks (statvfs).
    pub fn counts(&self) -> (u64, u64, u64) {
        // Frees waiting for the next ordering point count as done: they
        // are (an allocation that needs them runs that point first).
        let (db, di) = {
            let d = lk(&self.deferred);
            let inf = lk(&self.inflight_free);
            d.iter()
                .fold(*inf, |(b, i), f| (b + f.blocks.len() as u64, i + 1))
        };
        let m = lk(&self.meta);
        (
            m.sb.free_blocks_count as u64 + db,
            m.sb.free_inodes_count as u64 + di,
            m.sb.r_blocks_count as u64,
        )
    }

    /// Blocks used by metadata that never holds file data, counted as
    /// the kernel's ext4 driver counts them for statfs
    /// (`ext4_calculate_overhead`): the area before the first group; per
    /// group the superblock and descriptor copies (meta_bg: one descriptor
    /// block in the first, second and last group of each meta group), the
    /// reserved descriptor blocks, the bitmaps and the inode table; and an
    /// internal journal.
    pub fn overhead(&self) -> u64 {
        let g = &self.geo;
        let (reserved, first_meta_bg, journal_ino, has_journal) = {
            let m = lk(&self.meta);
            (
                m.sb.reserved_gdt_blocks as u64,
                m.sb.first_meta_bg,
                le32(&m.sb.raw, 224).unwrap_or(0),
                m.sb.has_compat(compat::HAS_JOURNAL),
            )
        };
        let mut o = g.first_data_block as u64;
        for grp in 0..g.groups {
            let has_super = g.group_has_super(grp);
            o += has_super as u64;
            if !g.meta_bg || (grp / g.descs_per_block) < first_meta_bg {
                if has_super {
                    o += if g.meta_bg {
                        first_meta_bg as u64
                    } else {
                        g.gdt_blocks as u64
                    };
                    o += reserved;
                }
            } else {
                let first = grp - grp % g.descs_per_block;
                let last = first + g.descs_per_block - 1;
                if grp == first || grp == first + 1 || grp == last {
                    o += 1;
                }
            }
            o += 2 + g.itb_per_group as u64;
        }
        if has_journal && journal_ino != 0 && journal_ino <= g.inodes_count {
            if let Ok(j) = self.read_inode(journal_ino) {
                o += j.size >> g.block_shift;
            }
        }
        o.min(g.blocks_count)
    }
}

/// Read and check the group descriptor table.
fn load_gdt(bio: &Bio, geo: &Geometry) -> Result<(Vec<Vec<u8>>, Vec<GroupDesc>), Refusal> {
    let mut gd_raw = Vec::with_capacity(geo.gdt_blocks as usize);
    let mut gds = Vec::with_capacity(geo.groups as usize);
    for i in 0..geo.gdt_blocks {
        let loc = geo.gdt_block_location(i);
        if loc >= geo.blocks_count {
            return Err(Refusal::bad(
                "group descriptors",
                format!("descriptor block {i} at {loc}, past the end"),
            ));
        }
        let b = bio
            .bread(loc)
            .map_err(|e| Refusal::bad("group descriptors", format!("read error {e}")))?;
        for j in 0..geo.descs_per_block {
            let g = i * geo.descs_per_block + j;
            if g >= geo.groups {
                break;
            }
            let off = (j * geo.desc_size) as usize;
            let d = b
                .get(off..)
                .and_then(|s| GroupDesc::parse(s, geo.is64).ok())
                .ok_or_else(|| Refusal::bad("group descriptors", "short block"))?;
            d.check(g, geo)?;
            gds.push(d);
        }
        gd_raw.push(b);
    }
    Ok((gd_raw, gds))
}
