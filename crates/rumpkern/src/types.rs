//! Plain data that crosses the vnode interface: file types, attributes,
//! times, directory entries, file system statistics.

/// Vnode type (NetBSD `enum vtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VType {
    Reg,
    Dir,
    Lnk,
    Chr,
    Blk,
    Fifo,
    Sock,
}

/// File type bits of `st_mode` (`S_IFMT` and friends, POSIX values).
pub mod mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFSOCK: u32 = 0o140000;
    pub const S_IFLNK: u32 = 0o120000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_IFBLK: u32 = 0o060000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFCHR: u32 = 0o020000;
    pub const S_IFIFO: u32 = 0o010000;
    pub const S_ISUID: u32 = 0o4000;
    pub const S_ISGID: u32 = 0o2000;
    pub const S_ISVTX: u32 = 0o1000;
    /// Permission bits plus setuid/setgid/sticky.
    pub const ALLPERMS: u32 = 0o7777;
}

impl VType {
    /// The `S_IFMT` bits for this type.
    pub fn ifmt(self) -> u32 {
        use mode::*;
        match self {
            VType::Reg => S_IFREG,
            VType::Dir => S_IFDIR,
            VType::Lnk => S_IFLNK,
            VType::Chr => S_IFCHR,
            VType::Blk => S_IFBLK,
            VType::Fifo => S_IFIFO,
            VType::Sock => S_IFSOCK,
        }
    }

    /// Type from the `S_IFMT` bits of a mode; `None` for an invalid type.
    pub fn from_mode(m: u32) -> Option<VType> {
        use mode::*;
        Some(match m & S_IFMT {
            S_IFREG => VType::Reg,
            S_IFDIR => VType::Dir,
            S_IFLNK => VType::Lnk,
            S_IFCHR => VType::Chr,
            S_IFBLK => VType::Blk,
            S_IFIFO => VType::Fifo,
            S_IFSOCK => VType::Sock,
            _ => return None,
        })
    }

    /// `d_type` value (DT_*) as readdir reports it.
    pub fn dtype(self) -> u8 {
        match self {
            VType::Fifo => 1,
            VType::Chr => 2,
            VType::Dir => 4,
            VType::Blk => 6,
            VType::Reg => 8,
            VType::Lnk => 10,
            VType::Sock => 12,
        }
    }
}

/// Seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

impl Timespec {
    pub const ZERO: Timespec = Timespec { sec: 0, nsec: 0 };

    pub fn new(sec: i64, nsec: u32) -> Timespec {
        Timespec { sec, nsec }
    }

    /// Wall-clock time now (through rumpuser).
    pub fn now() -> Timespec {
        let (sec, nsec) = rumpuser::clock_realtime();
        Timespec { sec, nsec }
    }
}

/// Attributes of a vnode (NetBSD `struct vattr`), as getattr returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vattr {
    pub vtype: VType,
    /// Permission bits plus setuid/setgid/sticky (no type bits).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// File system id (the mount's `fsid`).
    pub fsid: u64,
    /// Inode number.
    pub ino: u64,
    pub size: u64,
    /// Preferred I/O block size.
    pub blksize: u32,
    /// Bytes of storage actually allocated.
    pub bytes: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub birthtime: Timespec,
    /// Generation number (NFS-style handles).
    pub gen: u32,
    /// Device number for Chr/Blk nodes.
    pub rdev: u64,
    /// File flags (chflags); 0 where the format has none.
    pub flags: u32,
}

impl Vattr {
    /// `st_mode`: type bits | permission bits.
    pub fn st_mode(&self) -> u32 {
        self.vtype.ifmt() | (self.mode & mode::ALLPERMS)
    }
}

/// How setattr sets a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    /// The current time (`utimes(path, NULL)`, `UTIME_NOW`).
    Now,
    /// An explicit time.
    At(Timespec),
}

/// A setattr request (NetBSD: a vattr with VNOVAL in the fields left alone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    /// Only for file systems that keep it and for the server's own use.
    pub birthtime: Option<Timespec>,
    pub flags: Option<u32>,
}

impl SetAttr {
    pub fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }
}

/// One directory entry, as readdir hands it to its consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry<'a> {
    pub ino: u64,
    pub name: &'a [u8],
    pub vtype: VType,
    /// Cookie that continues the listing *after* this entry.
    pub next_offset: u64,
}

/// File system statistics (statvfs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatVfs {
    /// Fundamental block size (f_frsize).
    pub frsize: u32,
    /// Preferred I/O size (f_bsize).
    pub bsize: u32,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
    pub fsid: u64,
    pub namemax: u32,
    pub readonly: bool,
    /// Volume label where the format has one.
    pub label: Option<String>,
}

/// Open flags a vnode sees in open/close (subset of O_*; values are Linux's).
pub mod oflags {
    pub const O_RDONLY: i32 = 0;
    pub const O_WRONLY: i32 = 1;
    pub const O_RDWR: i32 = 2;
    pub const O_ACCMODE: i32 = 3;
    pub const O_CREAT: i32 = 0o100;
    pub const O_EXCL: i32 = 0o200;
    pub const O_TRUNC: i32 = 0o1000;
    pub const O_APPEND: i32 = 0o2000;
    pub const O_NONBLOCK: i32 = 0o4000;
    pub const O_SYNC: i32 = 0o4010000;
    pub const O_DIRECTORY: i32 = 0o200000;
    pub const O_NOFOLLOW: i32 = 0o400000;
}

/// I/O flags for read/write (NetBSD `IO_*`).
pub mod ioflag {
    /// Append: the write goes to the end of file whatever the offset.
    pub const IO_APPEND: u32 = 0x01;
    /// Synchronous: data and metadata are on the device when the call returns.
    pub const IO_SYNC: u32 = 0x02;
    /// Data-only synchronous (O_DSYNC).
    pub const IO_DSYNC: u32 = 0x04;
}

/// Access mode bits for `access` (VREAD/VWRITE/VEXEC as R_OK/W_OK/X_OK).
pub mod amode {
    pub const VREAD: u32 = 4;
    pub const VWRITE: u32 = 2;
    pub const VEXEC: u32 = 1;
}

/// pathconf names (POSIX `_PC_*`, Linux values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathConf {
    LinkMax,
    NameMax,
    PathMax,
    PipeBuf,
    ChownRestricted,
    NoTrunc,
    FileSizeBits,
    SymlinkMax,
}

/// Largest name component we accept anywhere (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Largest path (PATH_MAX).
pub const PATH_MAX: usize = 4096;
