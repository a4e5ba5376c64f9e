//! VFS operations: root, statvfs, sync, vget, unmount (NetBSD
//! `ext2fs_vfsops.c`).

use std::sync::Arc;

use rumpkern::{Errno, KResult, Mount, StatVfs, VfsOps, VnodeRef};

use crate::format::{NAME_LEN, ROOT_INO};
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
