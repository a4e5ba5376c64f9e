//! ext2fs: the second extended file system (NetBSD `sys/ufs/ext2fs`).
//!
//! Work in progress: [`format`] holds the on-disk structures.

pub mod format;
