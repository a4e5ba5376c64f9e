//! `rump_tmpfs [-o size=,uid=,gid=,mode=,nr_inodes=,noatime,ro,allow_other,attr_timeout=,...] [-f] [-d] tmpfs mountpoint`
//!
//! A memory file system served through FUSE by the fs-tmpfs driver. As
//! with NetBSD's mount_tmpfs, the special argument is ignored.

fn main() {
    rumpfs::server::server_main("rump_tmpfs", &fs_tmpfs::TMPFS)
}
