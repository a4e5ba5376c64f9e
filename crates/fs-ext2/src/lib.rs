//! ext2fs: the second extended file system, revisions 0 and 1, read-write
//! (NetBSD `sys/ufs/ext2fs`; on-disk facts from e2fsprogs
//! `lib/ext2fs/ext2_fs.h`).
//!
//! Mount with [`EXT2FS`]`.mount(Some(dev), &args)` (or [`mount`] to also get
//! the [`Ext2Fs`]). What is supported:
//!
//! * revisions 0 and 1, block sizes 1024 to 65536, direct and single,
//!   double and triple indirect blocks, holes, fast and slow symlinks,
//!   device nodes, fifos, sockets;
//! * features `filetype`, `sparse_super`, `large_file`, `meta_bg`,
//!   `resize_inode` and `ext_attr` (left intact), `dir_index` (hashed
//!   directories are read linearly; a directory this driver changes loses
//!   its index flag, as NetBSD does, and e2fsck agrees);
//! * read-only only: `needs_recovery` (the journal's committed
//!   transactions are replayed in memory, so the mount sees the recovered
//!   file system while the image stays untouched), ext4's `extent` (extent trees are read, with
//!   every node checked), `64bit`, `flex_bg`, `metadata_csum_seed`,
//!   `ea_inode`, and read-only-compatible features this driver does not
//!   maintain (`uninit_bg`, `metadata_csum` — checksums are not verified —,
//!   `quota`, `huge_file`, `dir_nlink`, ...). So ext3 and ext4 images as
//!   mke2fs makes them mount read-only; a read-write mount of such an image
//!   is refused with EROFS and a message naming the features;
//! * refused: incompatible features it cannot read (`inline_data`,
//!   `casefold`, `encrypt`, `large_dir`, `mmp`, `compression`, ...), with
//!   EINVAL and the feature named.
//!
//! Options: `ro`, `force` (generic), `cache=SIZE` (buffer cache budget,
//! default 32 MiB), `noatime`, `errors=continue|remount-ro|panic` (what
//! a corruption met on a read-write mount does besides EIO and the
//! superblock's error state; default from `s_errors`; "panic" means
//! remount-ro here), `async` (metadata writes delayed as well,
//! like Linux's ext2 or NetBSD's `-o async`: much faster for many small
//! changes, but a crash can then need an interactive e2fsck); others are
//! logged and ignored.
//!
//! # Writing and crashes
//!
//! Metadata is written in an order that leaves, after a crash at any
//! point, only damage `e2fsck -p` repairs without asking. Two means:
//! synchronous writes, and *held-back inode updates*: an update written
//! with `Ext2Fs::write_inode_delayed` stays in memory (readers see it)
//! until the next ordering point (syncer every 5 s, `fsync`, `sync`,
//! unmount, or 4096 of them held), which first makes every dirty block
//! durable (a barrier) and only then writes the held inodes. So an inode
//! never reaches the device before the entry naming it, its data and
//! indirect blocks, or a new directory's block, without a synchronous
//! write per operation (soft dependencies by epochs). A create therefore
//! writes nothing synchronously: the new inode's first state (an empty
//! regular file, or any other node with no links yet) and its entry are
//! delayed writes in no particular order (an unattached empty inode or an
//! entry naming a free inode are both cleared by e2fsck -p); the real
//! link count, a directory's own inode (size, link count, new blocks),
//! and a written file's size and block pointers are held back. Ordering
//! that remains synchronous: a link count drops before the entry goes; a
//! rename within one directory rewrites the entry in place when the name
//! fits, otherwise the source's link count is raised while both names
//! exist; link and rename entries; pointers are cleared before blocks are
//! freed; a new indirect block hanging off another indirect block is
//! zeroed before it is linked; a synchronous inode write of an inode with
//! a held-back update is preceded by a barrier. Bitmaps, group
//! descriptors, the superblock and file data are delayed (buffer cache,
//! its syncer, `fsync`, `sync`, unmount): they can only lag behind in ways
//! e2fsck -p repairs (the crash test cuts power after every single write
//! of a workload to check this). Known window: moving a directory to
//! another parent leaves two entries for a moment, which e2fsck only
//! fixes interactively.
//!
//! # Also
//!
//! Large directories get an in-memory index (name → block) while their
//! vnode lives, so lookups and changes touch one block. Blocks reserved
//! for root (`mke2fs -m`) are honoured. BSD file flags map to ext2's as
//! NetBSD maps them (`UF_NODUMP`, `SF_IMMUTABLE`, `SF_APPEND`) and are
//! enforced. Times are clamped to what the inode holds (2038 in 128-byte
//! inodes). Deleting a file drops its extended attribute block reference.
//! statvfs counts exactly as the kernel's driver does.
//!
//! A file system that was not cleanly unmounted (or has errors recorded)
//! mounts read-only unless `-o force`. A read-write mount marks the
//! superblock "not clean" and counts the mount; unmount marks it clean
//! again. Reads update access times with Linux's relatime rules (only when
//! the access time is not newer than the modification or change time, or
//! is a day old); `-o noatime` turns that off.
//!
//! Modules, split as NetBSD's: [`format`](mod@format) (on-disk structures and
//! validation), `bio` (block I/O), [`fs`] (the mounted file system,
//! superblock and descriptors, inode I/O), `alloc` (block and inode
//! allocation), `bmap` (block map, allocation on write, truncation), `dir`
//! (directory entries), `journal` (in-memory journal replay), [`vnops`]
//! (vnode operations), `vfsops`.

#![warn(missing_docs)]

mod alloc;
mod bio;
mod bmap;
mod dir;
pub mod format;
pub mod fs;
mod journal;
mod vfsops;
pub mod vnops;

use std::sync::Arc;

use rumpkern::dev::BlockDevice;
use rumpkern::{Errno, FsType, KResult, Mount, MountArgs};

pub use format::Refusal;
pub use fs::Ext2Fs;
pub use vnops::Ext2Node;

/// The ext2 file system type (register it with `rumpkern::vfs::register`).
pub struct Ext2Type;

/// The ext2 type: name "ext2fs", aliases "ext2", "ext3", "ext4".
pub static EXT2FS: Ext2Type = Ext2Type;

/// Mount options this driver knows (others are logged and ignored; the
/// front ends handle their own, such as `blkio=` and `cache=`).
const KNOWN_OPTIONS: &[&str] = &[
    "noatime", "relatime", "errors", "blkio", "cache", "async", "sync",
];

impl FsType for Ext2Type {
    fn name(&self) -> &'static str {
        "ext2fs"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["ext2", "ext3", "ext4"]
    }

    /// The superblock magic at offset 1024 and a geometry that validates.
    fn probe(&self, dev: &dyn BlockDevice) -> bool {
        let mut raw = vec![0u8; format::SUPERBLOCK_SIZE];
        if dev.size() < format::SUPERBLOCK_OFFSET + raw.len() as u64
            || dev.read_at(format::SUPERBLOCK_OFFSET, &mut raw).is_err()
        {
            return false;
        }
        match format::Superblock::parse(&raw) {
            Ok(sb) => format::Geometry::new(&sb, dev.size()).is_ok(),
            Err(_) => false,
        }
    }

    /// Mount `dev`. Errors: ENODEV without a device; EINVAL for a
    /// corrupt superblock or an unsupported incompatible feature; EROFS
    /// when read-write was asked for but only read-only is possible (the
    /// log says which field or feature).
    fn mount(&self, dev: Option<Arc<dyn BlockDevice>>, args: &MountArgs) -> KResult<Arc<Mount>> {
        mount(dev, args).map(|(mp, _)| mp)
    }
}

/// Mount and also return the [`Ext2Fs`] (for statistics and tests).
pub fn mount(
    dev: Option<Arc<dyn BlockDevice>>,
    args: &MountArgs,
) -> KResult<(Arc<Mount>, Arc<Ext2Fs>)> {
    let dev = dev.ok_or(Errno::ENODEV)?;
    let mut cache = bio::DEFAULT_CACHE_BYTES;
    for (k, v) in &args.options {
        if k == "cache" {
            cache = v.as_deref().and_then(parse_size).ok_or_else(|| {
                log::error!(
                    "ext2fs: cache={}: not a size (N with k, m or g)",
                    v.as_deref().unwrap_or("")
                );
                Errno::EINVAL
            })?;
        } else if !KNOWN_OPTIONS.contains(&k.as_str()) {
            log::warn!("ext2fs: ignoring unknown option {k}");
        }
    }
    // Every option is checked before the device is touched.
    let errors = match args.get("errors") {
        None => None,
        Some(Some("continue")) => Some(fs::ERRORS_CONTINUE),
        Some(Some("remount-ro" | "panic")) => Some(fs::ERRORS_RO),
        Some(v) => {
            log::error!(
                "ext2fs: errors={}: continue, remount-ro or panic",
                v.unwrap_or("")
            );
            return Err(Errno::EINVAL);
        }
    };
    let fs = Ext2Fs::open_with(dev, !args.rdonly, args.force, cache).map_err(|r| {
        log::error!("ext2fs: cannot mount: {r}");
        r.errno
    })?;
    if args.get("async").is_some() && args.get("sync").is_none() {
        fs.bio.set_async(true);
    }
    if let Some(e) = errors {
        fs.errors.store(e, std::sync::atomic::Ordering::Relaxed);
    }
    if args.get("noatime").is_some() {
        fs.noatime.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let mp = Mount::new("ext2fs", fs.rdonly);
    if let Some(why) = &fs.ro_reason {
        mp.set_prop("ro_reason", why);
    }
    let _ = fs.mount.set(Arc::downgrade(&mp));
    mp.set_ops(Box::new(vfsops::Ext2Vfs { fs: fs.clone() }));
    Ok((mp, fs))
}

/// `N` with an optional k/m/g suffix (powers of 1024).
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1usize << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("64m"), Some(64 << 20));
        assert_eq!(super::parse_size("100"), Some(100));
        assert_eq!(super::parse_size("x"), None);
        assert_eq!(super::parse_size(""), None);
    }
}
