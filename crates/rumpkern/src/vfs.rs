//! VFS: mounts, the per-file-system VFS operations, and the registry of file
//! system types with probes for autodetection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use crate::dev::BlockDevice;
use crate::errno::{Errno, KResult};
use crate::types::*;
use crate::vnode::{VCache, VnodeOps, VnodeRef};

/// Per-file-system VFS operations (NetBSD `struct vfsops`), implemented by
/// each driver's mount data.
#[allow(unused_variables)]
pub trait VfsOps: Send + Sync + 'static {
    /// The root directory, referenced.
    fn root(&self, mp: &Arc<Mount>) -> KResult<VnodeRef>;

    /// File system statistics.
    fn statvfs(&self, mp: &Mount) -> KResult<StatVfs>;

    /// Write back everything dirty; with `wait`, return only once it is on
    /// the device.
    fn sync(&self, mp: &Mount, wait: bool) -> KResult<()> {
        Ok(())
    }

    /// The vnode of inode `ino` (NFS-style handles, fsck-like walks).
    fn vget(&self, mp: &Arc<Mount>, ino: u64) -> KResult<VnodeRef> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Last step of unmount, after every vnode was reclaimed: write back the
    /// superblock (clean flag) and release the device.
    fn unmount(&self, mp: &Mount, force: bool) -> KResult<()> {
        Ok(())
    }

    /// What a translator needs to answer a write before doing it
    /// (write-behind, see p2k), or `None` (the default): every write is
    /// done before it is answered. A file system says yes only if, short of
    /// a device error, a write to an open regular file can fail only for
    /// space ([`WriteRoom::avail_bytes`]) or size
    /// ([`WriteRoom::max_file_size`]).
    fn write_room(&self, mp: &Mount) -> Option<WriteRoom> {
        None
    }
}

/// Room for writes answered before they are done ([`VfsOps::write_room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRoom {
    /// Bytes an unprivileged writer may still allocate, data and metadata
    /// (root's reserve left out).
    pub avail_bytes: u64,
    /// Allocation unit (block or cluster) in bytes.
    pub unit: u32,
    /// Writes ending past this size may fail with `EFBIG`.
    pub max_file_size: u64,
}

impl WriteRoom {
    /// The most a write of `len` bytes at `off` can allocate on a file
    /// system of block pointers: every unit it touches, one pointer block
    /// per `unit / 4` of them and three more for the chain above.
    pub fn worst_case(&self, off: u64, len: u64) -> u64 {
        let unit = u64::from(self.unit.max(512));
        let first = off / unit;
        let last = off.saturating_add(len.max(1) - 1) / unit;
        let units = last - first + 1;
        let pointers = units / (unit / 4) + 3;
        (units + pointers).saturating_mul(unit)
    }
}

/// Generic mount flags and the file system's own options.
#[derive(Clone, Debug, Default)]
pub struct MountArgs {
    /// Mount read-only (`-o ro`).
    pub rdonly: bool,
    /// Mount even if the image is not clean (`-o force`).
    pub force: bool,
    /// File-system-specific `key[=value]` options, in order.
    pub options: Vec<(String, Option<String>)>,
}

impl MountArgs {
    /// Parse a `mount -o` style list: `ro,uid=0,size=1m`. Generic options
    /// (`ro`, `rw`, `force`) set the flags; everything else goes to `options`.
    pub fn parse(opts: &str) -> MountArgs {
        let mut a = MountArgs::default();
        a.add(opts);
        a
    }

    /// Add more `-o` options.
    pub fn add(&mut self, opts: &str) {
        for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            match o {
                "ro" | "rdonly" => self.rdonly = true,
                "rw" => self.rdonly = false,
                "force" => self.force = true,
                _ => {
                    let (k, v) = match o.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (o.to_string(), None),
                    };
                    self.options.push((k, v));
                }
            }
        }
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.options.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_deref())
    }
}

/// A mounted file system.
pub struct Mount {
    fstype: &'static str,
    fsid: u64,
    ops: OnceLock<Box<dyn VfsOps>>,
    pub(crate) vcache: VCache,
    rdonly: AtomicBool,
    failed: AtomicBool,
    unmounted: AtomicBool,
    /// Serialises renames on this mount (NetBSD `mnt_renamelock`).
    pub rename_lock: Mutex<()>,
    /// Free-form properties a driver wants to show (e.g. the volume label).
    props: RwLock<HashMap<String, String>>,
}

static NEXT_FSID: AtomicU64 = AtomicU64::new(1);

/// Default number of unreferenced vnodes kept cached per mount.
pub const DEFAULT_MAX_FREE_VNODES: usize = 16384;

impl Mount {
    /// A new mount of type `fstype`. The driver then installs its operations
    /// with [`Mount::set_ops`] (they usually need the `Arc<Mount>` to exist).
    pub fn new(fstype: &'static str, rdonly: bool) -> Arc<Mount> {
        Self::with_cache(fstype, rdonly, DEFAULT_MAX_FREE_VNODES)
    }

    /// As `new`, keeping at most `max_free` unreferenced vnodes.
    pub fn with_cache(fstype: &'static str, rdonly: bool, max_free: usize) -> Arc<Mount> {
        Arc::new(Mount {
            fstype,
            fsid: NEXT_FSID.fetch_add(1, Ordering::Relaxed),
            ops: OnceLock::new(),
            vcache: VCache::new(max_free),
            rdonly: AtomicBool::new(rdonly),
            failed: AtomicBool::new(false),
            unmounted: AtomicBool::new(false),
            rename_lock: Mutex::new(()),
            props: RwLock::new(HashMap::new()),
        })
    }

    /// Install the VFS operations (once).
    pub fn set_ops(&self, ops: Box<dyn VfsOps>) {
        if self.ops.set(ops).is_err() {
            log::error!("{}: VFS operations installed twice; keeping the first", self.fstype);
        }
    }

    fn ops(&self) -> KResult<&dyn VfsOps> {
        if self.unmounted.load(Ordering::Acquire) {
            return Err(Errno::EIO);
        }
        self.ops.get().map(|b| &**b).ok_or(Errno::EIO)
    }

    pub fn fstype(&self) -> &'static str {
        self.fstype
    }

    pub fn fsid(&self) -> u64 {
        self.fsid
    }

    pub fn is_rdonly(&self) -> bool {
        self.rdonly.load(Ordering::Acquire)
    }

    /// Turn the mount read-only (errors=remount-ro, or a driver panic).
    pub fn set_rdonly(&self) {
        self.rdonly.store(true, Ordering::Release);
    }

    /// Has a driver failure been recorded on this mount?
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Record a driver failure: the mount becomes read-only and failed.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::Release);
        self.set_rdonly();
    }

    pub fn set_prop(&self, key: &str, value: &str) {
        self.props.write().insert(key.to_string(), value.to_string());
    }

    pub fn prop(&self, key: &str) -> Option<String> {
        self.props.read().get(key).cloned()
    }

    /// VFS_ROOT.
    pub fn root(self: &Arc<Self>) -> KResult<VnodeRef> {
        self.ops()?.root(self)
    }

    /// [`VfsOps::write_room`]; `None` as well on a read-only or failed
    /// mount.
    pub fn write_room(&self) -> Option<WriteRoom> {
        if self.is_rdonly() || self.is_failed() {
            return None;
        }
        self.ops().ok()?.write_room(self)
    }

    /// VFS_STATVFS; `fsid` and `readonly` are filled in here.
    pub fn statvfs(&self) -> KResult<StatVfs> {
        let mut s = self.ops()?.statvfs(self)?;
        s.fsid = self.fsid;
        s.readonly = self.is_rdonly();
        Ok(s)
    }

    /// VFS_SYNC.
    pub fn sync(&self, wait: bool) -> KResult<()> {
        if self.is_rdonly() && !self.is_failed() {
            return Ok(());
        }
        self.ops()?.sync(self, wait)
    }

    /// VFS_VGET.
    pub fn vget(self: &Arc<Self>, ino: u64) -> KResult<VnodeRef> {
        self.ops()?.vget(self, ino)
    }

    /// The vnode cache lookup drivers use from `lookup`, `create`, `vget`:
    /// return the cached vnode for `ino` or build it with `load`.
    pub fn vcache_get(
        self: &Arc<Self>,
        ino: u64,
        load: impl FnOnce() -> KResult<(VType, Box<dyn VnodeOps>)>,
    ) -> KResult<VnodeRef> {
        self.vcache.get(self, ino, load)
    }

    /// Is inode `ino` cached (referenced or not)?
    pub fn vcache_contains(&self, ino: u64) -> bool {
        self.vcache.contains(ino)
    }

    /// (vnodes cached, vnodes referenced): for leak tests and diagnostics.
    pub fn vnode_counts(&self) -> (usize, usize) {
        self.vcache.counts()
    }

    /// Reclaim every unreferenced vnode now. Returns how many remain.
    pub fn vflush(&self) -> usize {
        self.vcache.flush()
    }

    /// Unmount: sync, reclaim every vnode, let the driver finish. Fails with
    /// EBUSY while vnodes other than those the caller will drop are still
    /// referenced, unless `force`.
    pub fn unmount(&self, force: bool) -> KResult<()> {
        if self.unmounted.load(Ordering::Acquire) {
            return Ok(());
        }
        let ops = self.ops()?;
        let sync_err = if !self.is_rdonly() { ops.sync(self, true).err() } else { None };
        let left = self.vcache.flush();
        if left > 0 && !force {
            return Err(Errno::EBUSY);
        }
        let r = ops.unmount(self, force);
        self.unmounted.store(true, Ordering::Release);
        match (sync_err, r) {
            (_, Err(e)) => Err(e),
            (Some(e), Ok(())) => Err(e),
            (None, Ok(())) => Ok(()),
        }
    }
}

/// A file system type: name, probe, and mount (NetBSD `struct vfsops`'s
/// `vfs_mount` plus a probe for autodetection).
pub trait FsType: Send + Sync + 'static {
    /// Name as `-t` spells it: "tmpfs", "ext2fs", "msdos", "ffs", "cd9660".
    fn name(&self) -> &'static str;

    /// Other names accepted for `-t` (e.g. "ext2", "vfat").
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Does `dev` hold this file system? Must be cheap, read-only, and never
    /// fail loudly on garbage.
    fn probe(&self, dev: &dyn BlockDevice) -> bool {
        let _ = dev;
        false
    }

    /// Does this type need a device (false for tmpfs)?
    fn needs_device(&self) -> bool {
        true
    }

    /// Mount `dev` (None for memory file systems).
    fn mount(&self, dev: Option<Arc<dyn BlockDevice>>, args: &MountArgs) -> KResult<Arc<Mount>>;
}

static REGISTRY: RwLock<Vec<&'static dyn FsType>> = RwLock::new(Vec::new());

/// Register a file system type (idempotent).
pub fn register(t: &'static dyn FsType) {
    let mut r = REGISTRY.write();
    if !r.iter().any(|x| x.name() == t.name()) {
        r.push(t);
    }
}

/// The type named `name` (or one of its aliases).
pub fn lookup_type(name: &str) -> Option<&'static dyn FsType> {
    REGISTRY.read().iter().copied().find(|t| t.name() == name || t.aliases().contains(&name))
}

/// Names of all registered types.
pub fn type_names() -> Vec<&'static str> {
    REGISTRY.read().iter().map(|t| t.name()).collect()
}

/// The first registered type whose probe recognises `dev`.
pub fn probe(dev: &dyn BlockDevice) -> Option<&'static dyn FsType> {
    REGISTRY.read().iter().copied().find(|t| t.needs_device() && t.probe(dev))
}

#[cfg(test)]
mod tests {
    use super::WriteRoom;

    #[test]
    fn write_room_worst_case() {
        let r = WriteRoom {
            avail_bytes: 0,
            unit: 1024,
            max_file_size: u64::MAX,
        };
        // One byte: its block plus three for the pointer chain.
        assert_eq!(r.worst_case(0, 1), 4 * 1024);
        // Straddling a block boundary touches two blocks.
        assert_eq!(r.worst_case(1023, 2), 5 * 1024);
        // 1 MiB of 1 KiB blocks: 1024 blocks, 4 pointer blocks (256 each), 3.
        assert_eq!(r.worst_case(0, 1 << 20), (1024 + 4 + 3) * 1024);
        // Empty writes count as one byte; units below 512 as 512.
        assert_eq!(r.worst_case(5, 0), 4 * 1024);
        let tiny = WriteRoom { unit: 1, ..r };
        assert_eq!(tiny.worst_case(0, 1), 4 * 512);
    }
}
