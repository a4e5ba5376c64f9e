//! `rump_msdos [-o ro,force,uid=,gid=,umask=,dmask=,fmask=,shortname=,tz=,partition=N,...] [-f] [-d] special mountpoint`
//!
//! A FAT12/16/32 image file or block device (or a whole disk with an MBR or
//! GPT partition table) served through FUSE by the fs-msdos driver.

fn main() {
    rumpfs::server::server_main("rump_msdos", &fs_msdos::MSDOSFS)
}
