//! `rump_ext2fs [-o ro,force,blkio=direct|rangesync|fsync|cached,cache=SIZE,...] [-f] [-d] special mountpoint`
//!
//! An ext2 image file or block device served through FUSE by the fs-ext2
//! driver (NetBSD's rump_ext2fs).

fn main() {
    rumpfs::server::server_main("rump_ext2fs", &fs_ext2::EXT2FS)
}
