//! The drivers built into the commands: one call registers every file
//! system type of the workspace with rumpkern, so `-t NAME` and
//! autodetection ([`rumpkern::vfs::probe`]) see them all.

use std::sync::Once;

/// Register every driver crate of the workspace (idempotent). Probe order:
/// ext2, FAT, then tmpfs (which takes no device and is never probed).
pub fn register_all() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        rumpkern::vfs::register(&fs_ext2::EXT2FS);
        rumpkern::vfs::register(&fs_msdos::MSDOSFS);
        rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    });
}
