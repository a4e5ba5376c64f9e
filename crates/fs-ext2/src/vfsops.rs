//! VFS operations: root, statvfs, sync, vget, unmount (NetBSD
//! `ext2fs_vfsops.c`).

use std::sync::Arc;

use rumpkern::{Errno, KResult, Mount, StatVfs, VfsOps, VnodeRef, WriteRoom};

use crate::format::{ro_compat, NAME_LEN, ROOT_INO};
use crate::fs::lk;
use crate::fs::Ext2Fs;
use crate::vnops;

/// The mount data installed in a [`Mount`].
pub(crate) struct Ext2Vfs {
    pub fs: Arc<Ext2Fs>,
}

impl VfsOps for Ext2Vfs {
    fn root(&self, mp: &Arc<Mount>) -> KResult<VnodeRef> {
        vnops::vget(&self.fs, mp, ROOT_INO)
    }

    /// Free counts come from the superblock as kept in memory (the sum of
    /// the group descriptors' counts, kept in step by every allocation).
    fn statvfs(&self, _mp: &Mount) -> KResult<StatVfs> {
        let g = self.fs.geometry();
        let (bfree, ffree, reserved) = self.fs.counts();
        let blocks = g.blocks_count - self.fs.overhead();
        Ok(StatVfs {
            frsize: g.block_size,
            bsize: g.block_size,
            blocks,
            bfree,
            bavail: bfree.saturating_sub(reserved),
            files: g.inodes_count as u64,
            ffree,
            favail: ffree,
            fsid: 0,
            namemax: NAME_LEN as u32,
            readonly: self.fs.rdonly,
            label: self.fs.superblock().label(),
        })
    }

    /// A write to an open regular file fails only for space (blocks
    /// outside root's reserve), size (the format's limit, 2 GiB without
    /// large_file, which a revision 0 file system cannot turn on) or a
    /// device error (and EPERM for a file made immutable or append-only
    /// while open).
    fn write_room(&self, _mp: &Mount) -> Option<WriteRoom> {
        if self.fs.rdonly {
            return None;
        }
        let g = &self.fs.geo;
        let (free, reserved, large) = {
            let m = lk(&self.fs.meta);
            (
                m.sb.free_blocks_count as u64,
                m.sb.r_blocks_count as u64,
                m.sb.feature_ro_compat & ro_compat::LARGE_FILE != 0,
            )
        };
        let max = if large {
            g.max_file_size
        } else {
            g.max_file_size.min(i32::MAX as u64)
        };
        Some(WriteRoom {
            avail_bytes: free.saturating_sub(reserved).saturating_mul(g.block_size as u64),
            unit: g.block_size,
            max_file_size: max,
        })
    }

    fn sync(&self, _mp: &Mount, _wait: bool) -> KResult<()> {
        self.fs.sync()
    }

    fn vget(&self, mp: &Arc<Mount>, ino: u64) -> KResult<VnodeRef> {
        let ino = u32::try_from(ino).map_err(|_| Errno::ESTALE)?;
        if ino == 0 || ino > self.fs.geometry().inodes_count {
            return Err(Errno::ESTALE);
        }
        vnops::vget(&self.fs, mp, ino)
    }

    fn unmount(&self, _mp: &Mount, _force: bool) -> KResult<()> {
        self.fs.unmount()
    }
}
