//! VFS operations (NetBSD `msdosfs_vfsops.c`): finding the file system on
//! the device (partition tables), mounting with validation, the clean
//! bit, statvfs with the volume label, sync and unmount.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumpkern::buf::BufCache;
use rumpkern::dev::BlockDevice;
use rumpkern::{Errno, KResult, Mount, MountArgs, StatVfs, VfsOps, VnodeRef, NAME_MAX};

use crate::dir::DirStore;
use crate::dirent::{is_lfn, ATTR_VOLUME, SLOT_DELETED, SLOT_END};
use crate::format::{
    gpt_partitions, label_string, mbr_partitions, Bpb, FsInfo, Geometry, Partition,
};
use crate::fs::{Fs, MsdosOptions};
use crate::vnops::root_vnode;

/// How often the syncer writes back delayed writes.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(5);

fn read_dev(dev: &dyn BlockDevice, off: u64, len: usize) -> KResult<Vec<u8>> {
    let mut b = vec![0u8; len];
    dev.read_at(off, &mut b).map_err(Errno::from)?;
    Ok(b)
}

/// Does the boot sector at `off` hold a FAT file system of at most `len`
/// bytes that [`Geometry::new`] accepts?
fn fat_at(dev: &dyn BlockDevice, off: u64, len: u64) -> bool {
    match read_dev(dev, off, 512)
        .ok()
        .and_then(|b| Bpb::parse(&b).ok())
    {
        Some(bpb) => bpb.looks_like_fat() && Geometry::new(&bpb, len).is_ok(),
        None => false,
    }
}

/// The partitions of the device's MBR or GPT, if any.
fn partitions(dev: &dyn BlockDevice) -> Vec<Partition> {
    let size = dev.size();
    let Ok(s0) = read_dev(dev, 0, 512) else {
        return Vec::new();
    };
    let (mbr, gpt) = mbr_partitions(&s0, size);
    if !gpt {
        return mbr;
    }
    let read = |off: u64, len: usize| -> KResult<Vec<u8>> {
        if off.saturating_add(len as u64) > size {
            return Err(Errno::EIO);
        }
        read_dev(dev, off, len)
    };
    let mut lbs = vec![dev.sector_size() as u64];
    for l in [512u64, 4096] {
        if !lbs.contains(&l) {
            lbs.push(l);
        }
    }
    for l in lbs {
        let p = gpt_partitions(&read, l, size);
        if !p.is_empty() {
            return p;
        }
    }
    mbr
}

/// Where the FAT file system is on `dev`: (byte offset, length). The whole
/// device if it starts with a FAT boot sector, else the first partition
/// holding one, or partition `want`. Errors: EINVAL (logged).
pub fn locate(dev: &dyn BlockDevice, want: Option<u32>) -> KResult<(u64, u64)> {
    let size = dev.size();
    if want.is_none() && fat_at(dev, 0, size) {
        return Ok((0, size));
    }
    let parts = partitions(dev);
    if let Some(n) = want {
        return match parts.iter().find(|p| p.index == n) {
            Some(p) => Ok((p.offset, p.len)),
            None => {
                log::error!(
                    "msdosfs: no partition {n} on the device ({} found)",
                    parts.len()
                );
                Err(Errno::EINVAL)
            }
        };
    }
    for p in &parts {
        if fat_at(dev, p.offset, p.len) {
            log::info!("msdosfs: using partition {} at byte {}", p.index, p.offset);
            return Ok((p.offset, p.len));
        }
    }
    // Nothing recognised: let the caller report the whole-device BPB.
    Ok((0, size))
}

/// The FAT type probe: a FAT boot sector at the start or in a partition.
pub fn probe(dev: &dyn BlockDevice) -> bool {
    if dev.size() < 512 {
        return false;
    }
    if fat_at(dev, 0, dev.size()) {
        return true;
    }
    partitions(dev).iter().any(|p| fat_at(dev, p.offset, p.len))
}

/// Mount the FAT file system on `dev` with `args`.
pub fn mount_dev(dev: Arc<dyn BlockDevice>, args: &MountArgs) -> KResult<(Arc<Mount>, Arc<Fs>)> {
    let opts = MsdosOptions::parse(args)?;
    let (base, len) = locate(&*dev, opts.partition)?;
    let bs = read_dev(&*dev, base, 512)
        .inspect_err(|e| log::error!("msdosfs: cannot read the boot sector: {e}"))?;
    let bpb = Bpb::parse(&bs).map_err(|r| {
        log::error!("msdosfs: mount refused: {r}");
        Errno::EINVAL
    })?;
    let geo = Geometry::new(&bpb, len).map_err(|r| {
        log::error!("msdosfs: mount refused: {r}");
        Errno::EINVAL
    })?;
    if !bpb.signature_ok {
        log::warn!("msdosfs: boot sector lacks the 0x55AA signature; mounting anyway");
    }
    let mut rdonly = args.rdonly || dev.is_read_only();
    let cache = BufCache::new(dev, opts.cache_bytes);
    let mut fsinfo = FsInfo::default();
    let mut fsinfo_ok = false;
    if let Some(sec) = geo.fsinfo_sector {
        let ss = geo.sector_size as usize;
        if let Ok(b) = cache.bread(base + sec as u64 * ss as u64, ss) {
            fsinfo_ok = FsInfo::signatures_ok(b.data());
            fsinfo = FsInfo::parse(b.data(), &geo);
            if !fsinfo_ok {
                log::info!("msdosfs: FSInfo sector {sec} has bad signatures; ignoring it");
            }
        }
    }
    let fs = Arc::new(Fs::new(
        cache,
        base,
        geo,
        opts,
        bpb.label(),
        fsinfo,
        fsinfo_ok,
    ));
    if !rdonly && !fs.is_clean()? {
        if args.force {
            log::warn!(
                "msdosfs: file system was not cleanly unmounted; mounting read-write as forced"
            );
        } else {
            log::warn!(
                "msdosfs: file system was not cleanly unmounted (run fsck.fat); mounting read-only (use -o force)"
            );
            rdonly = true;
        }
    }
    let label = volume_label(&fs).or_else(|| fs.label.clone());
    let mp = Mount::new("msdos", rdonly);
    if let Some(l) = &label {
        mp.set_prop("label", l);
    }
    mp.set_prop("fattype", fs.geo.fat_type.name());
    if !rdonly {
        fs.set_clean(false)?;
        fs.marked_dirty.store(true, Ordering::Release);
        if let Err(e) = fs.cache.start_syncer(SYNC_INTERVAL) {
            log::warn!("msdosfs: no syncer ({e}); delayed writes go out at sync and unmount only");
        }
    }
    mp.set_ops(Box::new(MsdosVfs {
        fs: fs.clone(),
        label,
    }));
    Ok((mp, fs))
}

/// The label from the root directory's volume entry, if any.
fn volume_label(fs: &Fs) -> Option<String> {
    let d = if fs.fat32() {
        let mut v = vec![fs.geo.root_cluster];
        let mut cur = fs.geo.root_cluster;
        for _ in 0..64 {
            match fs.next_cluster(cur) {
                Ok(Some(n)) => {
                    v.push(n);
                    cur = n;
                }
                _ => break,
            }
        }
        DirStore::Clusters(Arc::new(v))
    } else {
        DirStore::Root16
    };
    let mut out = None;
    let _ = fs.scan_slots(&d, 0, |rs| {
        let b = rs.raw;
        if b[0] == SLOT_END {
            return false;
        }
        if b[0] != SLOT_DELETED && !is_lfn(b) && b[11] & ATTR_VOLUME != 0 && b[11] & 0x10 == 0 {
            let mut n = [0u8; 11];
            n.copy_from_slice(&b[0..11]);
            out = label_string(&n);
            return false;
        }
        true
    });
    out
}

/// The VFS operations of one FAT mount.
pub(crate) struct MsdosVfs {
    pub(crate) fs: Arc<Fs>,
    label: Option<String>,
}

impl VfsOps for MsdosVfs {
    fn root(&self, mp: &Arc<Mount>) -> KResult<VnodeRef> {
        root_vnode(&self.fs, mp)
    }

    /// Blocks are clusters; `files`/`ffree` are 0 (FAT has no inode table).
    fn statvfs(&self, _mp: &Mount) -> KResult<StatVfs> {
        let fs = &self.fs;
        let free = fs.free_clusters()? as u64;
        Ok(StatVfs {
            frsize: fs.geo.cluster_size,
            bsize: fs.geo.cluster_size,
            blocks: fs.geo.cluster_count as u64,
            bfree: free,
            bavail: free,
            files: 0,
            ffree: 0,
            favail: 0,
            fsid: 0,
            namemax: NAME_MAX as u32,
            readonly: false,
            label: self.label.clone(),
        })
    }

    fn sync(&self, mp: &Mount, wait: bool) -> KResult<()> {
        if mp.is_rdonly() {
            return Ok(());
        }
        self.fs.update_fsinfo()?;
        self.fs.cache.sync(wait)
    }

    /// Write everything back, then restore the clean bit (only if the
    /// write-back succeeded and no corruption was seen).
    fn unmount(&self, mp: &Mount, _force: bool) -> KResult<()> {
        let fs = &self.fs;
        if mp.is_rdonly() && !fs.marked_dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        fs.update_fsinfo()?;
        fs.cache.shutdown()?;
        if fs.marked_dirty.swap(false, Ordering::AcqRel) {
            if mp.is_failed() || fs.saw_corruption() {
                log::warn!("msdosfs: corruption seen while mounted; leaving the volume marked dirty (run fsck.fat)");
            } else {
                fs.set_clean(true)?;
            }
        }
        fs.cache.sync(true)
    }
}
