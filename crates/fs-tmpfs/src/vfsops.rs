//! tmpfs VFS operations (NetBSD `tmpfs_vfsops.c`): root, statvfs, vget,
//! sync, unmount.

use std::sync::Arc;

use rumpkern::{Errno, KResult, Mount, StatVfs, VfsOps, VnodeRef, NAME_MAX};

use crate::node::{TmpfsMount, PAGE_SIZE, ROOT_INO};
use crate::vnops::get_vnode;

/// Capacity statvfs reports for an instance without a size limit.
const UNLIMITED_BYTES: u64 = 1 << 44;
/// Node count statvfs reports for an instance without a node limit.
const UNLIMITED_NODES: u64 = 1 << 32;

/// The VFS operations of one tmpfs mount.
pub(crate) struct TmpfsVfs {
    pub(crate) tm: Arc<TmpfsMount>,
}

impl VfsOps for TmpfsVfs {
    fn root(&self, mp: &Arc<Mount>) -> KResult<VnodeRef> {
        get_vnode(&self.tm, mp, ROOT_INO)
    }

    /// Blocks are [`PAGE_SIZE`] bytes: `blocks` is the size limit, `bfree`
    /// what is left of it after data and metadata; `files`/`ffree` count
    /// nodes against the node limit.
    fn statvfs(&self, _mp: &Mount) -> KResult<StatVfs> {
        let tm = &self.tm;
        let bs = PAGE_SIZE as u64;
        let used = tm.used_bytes();
        let cap = match tm.size_limit() {
            0 => UNLIMITED_BYTES.max(used.saturating_mul(2)),
            l => l,
        };
        let blocks = cap / bs;
        let bfree = cap.saturating_sub(used) / bs;
        let nodes = tm.node_count();
        let files = match tm.max_nodes() {
            0 => UNLIMITED_NODES.max(nodes.saturating_mul(2)),
            m => m,
        };
        let ffree = files.saturating_sub(nodes);
        Ok(StatVfs {
            frsize: bs as u32,
            bsize: bs as u32,
            blocks,
            bfree,
            bavail: bfree,
            files,
            ffree,
            favail: ffree,
            fsid: 0,
            namemax: NAME_MAX as u32,
            readonly: false,
            label: None,
        })
    }

    /// Everything is in memory: nothing to write back.
    fn sync(&self, _mp: &Mount, _wait: bool) -> KResult<()> {
        Ok(())
    }

    /// The vnode of a live inode. Errors: ENOENT (never existed, or removed
    /// and no longer referenced), ESTALE for 0.
    fn vget(&self, mp: &Arc<Mount>, ino: u64) -> KResult<VnodeRef> {
        if ino == 0 {
            return Err(Errno::ESTALE);
        }
        get_vnode(&self.tm, mp, ino)
    }

    /// All vnodes are gone: drop every node (the contents of a tmpfs end
    /// with its mount).
    fn unmount(&self, _mp: &Mount, force: bool) -> KResult<()> {
        log::debug!(
            "tmpfs: unmount ({} nodes, {} bytes, force {})",
            self.tm.node_count(),
            self.tm.used_bytes(),
            force
        );
        self.tm.clear();
        Ok(())
    }
}
