//! msdosfs: FAT12, FAT16 and FAT32 with VFAT long names (NetBSD
//! `sys/fs/msdosfs`, the Microsoft FAT specification).
//!
//! The driver is split as NetBSD's is: [`format`] (boot sector, BPB,
//! geometry, FSInfo, partition tables), [`dirent`] (directory entries, long
//! names, short-name generation, DOS times).

pub mod dirent;
pub mod format;
