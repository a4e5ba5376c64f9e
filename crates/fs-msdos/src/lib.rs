//! msdosfs: FAT12, FAT16 and FAT32 with VFAT long names, read-write
//! (NetBSD `sys/fs/msdosfs`, the Microsoft FAT specification).
//!
//! Mount with [`MSDOSFS`]`.mount(Some(dev), &args)` (or [`mount`] to also
//! get the [`Fs`]). The device may hold the file system directly or carry an
//! MBR or GPT partition table: then the first partition holding a FAT file
//! system is mounted, or the one chosen with `partition=N`.
//!
//! Options (`MountArgs`), spelled as Linux vfat spells them, with NetBSD
//! mount_msdos's letters as aliases:
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `ro` | read-only | read-write |
//! | `force` | mount read-write even when the clean bit says the volume was not cleanly unmounted | dirty → read-only |
//! | `uid=N`, `gid=N` (`u=`, `g=`) | owner of every file | 0, 0 |
//! | `umask=OCT`, `fmask=OCT`, `dmask=OCT` | permission bits removed (files / directories) | 022 |
//! | `m=OCT`, `M=OCT` | NetBSD: most permissions of files / directories | |
//! | `tz=UTC`, `tz=±HH:MM`, `time_offset=MIN` | zone of the times on disk | UTC (see below) |
//! | `shortname=lower\|win95\|winnt\|mixed` | short-name display and creation (as Linux) | `mixed` |
//! | `partition=N` | partition of a partitioned device (1-based) | first FAT partition |
//! | `quiet` | chmod/chown FAT cannot store succeed silently | EPERM |
//! | `sync` / `async` | every change on the device when its call returns / delayed write-back (syncer every 5 s, sync, fsync, unmount) | `async` |
//! | `cache=SIZE` | buffer cache budget (k, m, g suffixes; at least 4m) | 48m |
//! | `utf8`, `iocharset=utf8`, `noatime`, `relatime`, `nodev`, `nosuid`, `noexec` | accepted, no effect (names are always UTF-8) | |
//!
//! **Local time.** FAT stores local time. A driver has no access to the
//! host's time zone (it sees only rumpkern), so "local" means UTC unless a
//! `tz=` offset or `time_offset=` is given; front ends that know the zone
//! pass it as `tz=±HH:MM`.
//!
//! **Times.** Modification time (2 s resolution), creation time (10 ms)
//! and access date are kept. The access date changes on writes and with
//! utimes, not on reads (as with `noatime`); ctime shows the modification
//! time (FAT has no change time). The root directory has no entry: its
//! times are 1980-01-01 and utimes on it lasts until unmount.
//!
//! **What FAT cannot do** gives the errors Linux vfat gives: link, symlink
//! and mknod → EPERM; chown to another owner → EPERM; chmod to a mode the
//! masks and the read-only attribute cannot express → EPERM (the owner's
//! write bit maps to the read-only attribute both ways); names with
//! characters FAT forbids → EINVAL; trailing dots are dropped, as Windows
//! and Linux do.
//!
//! The clean-shutdown bit (FAT\[1\] on FAT16/FAT32) is cleared while mounted
//! read-write and set again at a clean unmount. FSInfo's free count and
//! next-free hint are used only after their signatures and ranges check out
//! (otherwise the FAT is counted), and kept up to date at sync and unmount.
//! A count that is in range but wrong is believed, as Linux and Windows
//! believe it, until an allocation finds the volume full and recounts.
//!
//! **Names.** Long names are UTF-16 on disk and UTF-8 to the user; a long
//! name whose slots have a bad checksum or sequence is ignored and the
//! short name shown. Lookup is case-insensitive (long and short names),
//! create preserves case. New names get a short name with a `~N` tail when
//! needed (`~1`..`~4`, then a hash of the long name, as Windows does);
//! also refused with EINVAL: a trailing space and the MS-DOS device names
//! (`CON`, `NUL`, `COM1`, ...), as Linux vfat refuses them. Each directory
//! keeps an in-memory index of its names and free slots, built on first use
//! and kept while its vnode is cached (also without references, within a
//! per-mount budget of [`fs::KEPT_INDEX_BUDGET`] entries and
//! [`fs::KEPT_INDEX_MAX`] per directory), so lookups and creates do not scan
//! it. Through a kernel mount (FUSE) a case-only rename (`Foo` to `foo`) is
//! a no-op: the kernel's lookup of the new name finds the same file and
//! rename(2) of a file onto itself succeeds without asking the file system;
//! rename through another name (the usual workaround on Linux vfat too).
//!
//! **Link counts.** Files have 1, directories 2 + subdirectories; a file or
//! directory removed while still open has 0 (fstat shows it).
//!
//! **Inode numbers** come from the position of the short entry (byte
//! offset / 32, like Linux's `i_pos` and NetBSD's cluster + offset); the
//! root is [`ROOT_INO`]. They are stable across mounts; a renamed file
//! keeps its number while its vnode lives. readdir cookies are slot indexes
//! (+3), stable while entries come and go.
//!
//! **Writing and crashes.** Data, FAT and directory updates go through the
//! buffer cache as delayed writes (a syncer writes them within about 5 s;
//! fsync and sync write everything). Where order matters for what fsck.fat
//! can repair it is enforced: a new directory's cluster and the zeroed
//! clusters that extend a directory reach the device before anything
//! points at them, and rename writes its new entry before it removes the
//! old one (so a crash can at worst leave both names, never neither).
//! Files fsynced before a crash survive it; `fsck.fat -a` repairs the rest
//! (lost clusters, the clean bit). Corruption found while mounted is logged
//! once, gives EIO, and leaves the volume marked dirty at unmount.
//!
//! Modules, as NetBSD splits the driver: [`format`](mod@format) (boot sector, BPB,
//! geometry, FSInfo, partition tables), [`dirent`] (directory entries, long
//! names, short names, DOS times), [`fs`] (mount state, FAT, options),
//! [`dir`] (directory scans and updates), [`node`] (nodes, file data),
//! `vnops` (vnode operations) and `vfsops` (mount, statvfs, sync, unmount).

pub mod dir;
pub mod dirent;
pub mod format;
pub mod fs;
pub mod node;
mod vfsops;
mod vnops;

use std::sync::Arc;

use rumpkern::dev::BlockDevice;
use rumpkern::{Errno, FsType, KResult, Mount, MountArgs};

pub use fs::{Fs, MsdosOptions, ShortnameMode, ROOT_INO};
pub use vfsops::locate;

/// The FAT file system type.
pub struct MsdosType;

/// The FAT type: name "msdos", aliases "vfat", "fat", "msdosfs".
pub static MSDOSFS: MsdosType = MsdosType;

impl FsType for MsdosType {
    fn name(&self) -> &'static str {
        "msdos"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["vfat", "fat", "msdosfs"]
    }

    /// A FAT boot sector at the start of the device or of an MBR/GPT partition.
    fn probe(&self, dev: &dyn BlockDevice) -> bool {
        vfsops::probe(dev)
    }

    /// Mount `dev`. Errors: EINVAL (no device, a bad option, a boot sector
    /// that fails validation: the log names the field), EIO (device errors).
    fn mount(&self, dev: Option<Arc<dyn BlockDevice>>, args: &MountArgs) -> KResult<Arc<Mount>> {
        let Some(dev) = dev else {
            log::error!("msdosfs: a device is required");
            return Err(Errno::EINVAL);
        };
        mount(dev, args).map(|(mp, _)| mp)
    }
}

/// Mount `dev`; returns the mount and the file system state.
pub fn mount(dev: Arc<dyn BlockDevice>, args: &MountArgs) -> KResult<(Arc<Mount>, Arc<Fs>)> {
    vfsops::mount_dev(dev, args)
}
