//! What a request handler needs from its transport: who is asking
//! ([`Caller`]) and how to answer (one trait per kind of reply). fuser's
//! reply types implement them for /dev/fuse, [`crate::uring_ops`] for
//! FUSE over io_uring, so [`crate::fs::P2kFs`]'s handlers serve both.

use std::ffi::OsStr;
use std::time::Duration;

use fuser::{
    FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request,
};

/// The process a request comes from.
pub(crate) trait Caller {
    fn uid(&self) -> u32;
    fn gid(&self) -> u32;
    fn pid(&self) -> u32;
}

impl Caller for Request {
    fn uid(&self) -> u32 {
        Request::uid(self)
    }
    fn gid(&self) -> u32 {
        Request::gid(self)
    }
    fn pid(&self) -> u32 {
        Request::pid(self)
    }
}

/// Every reply can be an error.
pub(crate) trait RError {
    fn error(self, e: fuser::Errno);
}

pub(crate) trait REmpty: RError {
    fn ok(self);
}

pub(crate) trait REntry: RError {
    fn entry_with_ttls(
        self,
        attr_ttl: &Duration,
        entry_ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
    );
}

pub(crate) trait RAttr: RError {
    fn attr(self, ttl: &Duration, attr: &FileAttr);
}

pub(crate) trait RData: RError {
    fn data(self, data: &[u8]);
    /// The transport's own reply buffer can be filled in place
    /// ([`RData::buffer`], [`RData::filled`]): no copy through a bounce
    /// buffer.
    const IN_PLACE: bool = false;
    /// Room for up to `size` bytes of reply data (with `IN_PLACE`).
    fn buffer(&mut self, _size: usize) -> &mut [u8] {
        &mut []
    }
    /// Answer with the first `n` bytes of [`RData::buffer`].
    fn filled(self, n: usize)
    where
        Self: Sized,
    {
        let _ = n;
        self.data(&[]);
    }
}

pub(crate) trait ROpen: RError {
    fn opened(self, fh: FileHandle, flags: FopenFlags);
}

pub(crate) trait RCreate: RError {
    fn created(
        self,
        ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
        fh: FileHandle,
        flags: FopenFlags,
    );
}

pub(crate) trait RWrite: RError {
    /// `written_then` runs its work only after the handler returns, so the
    /// work must own its data.
    const DEFERS: bool = false;
    fn written(self, size: u32);
    /// Answer `size` now and run `then` after the answer is on its way
    /// (write-behind): at once for /dev/fuse, after the ring entry is
    /// committed for io_uring.
    fn written_then(self, size: u32, then: Box<dyn FnOnce() + Send>);
}

pub(crate) trait RStatfs: RError {
    #[allow(clippy::too_many_arguments)]
    fn statfs(
        self,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        bsize: u32,
        namelen: u32,
        frsize: u32,
    );
}

pub(crate) trait RDir: RError {
    /// True when the entry did not fit (not added).
    fn add(&mut self, ino: INodeNo, offset: u64, kind: FileType, name: &OsStr) -> bool;
    fn ok(self);
}

pub(crate) trait RDirPlus: RError {
    /// True when the entry did not fit (not added).
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        ino: INodeNo,
        offset: u64,
        name: &OsStr,
        ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
    ) -> bool;
    fn ok(self);
}

pub(crate) trait RXattr: RError {}

macro_rules! fuser_error {
    ($($t:ty),*) => {$(
        impl RError for $t {
            fn error(self, e: fuser::Errno) {
                <$t>::error(self, e)
            }
        }
    )*};
}

fuser_error!(
    ReplyEmpty,
    ReplyEntry,
    ReplyAttr,
    ReplyData,
    ReplyOpen,
    ReplyCreate,
    ReplyWrite,
    ReplyStatfs,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyXattr
);

impl REmpty for ReplyEmpty {
    fn ok(self) {
        ReplyEmpty::ok(self)
    }
}

impl REntry for ReplyEntry {
    fn entry_with_ttls(
        self,
        attr_ttl: &Duration,
        entry_ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
    ) {
        ReplyEntry::entry_with_ttls(self, attr_ttl, entry_ttl, attr, gen)
    }
}

impl RAttr for ReplyAttr {
    fn attr(self, ttl: &Duration, attr: &FileAttr) {
        ReplyAttr::attr(self, ttl, attr)
    }
}

impl RData for ReplyData {
    fn data(self, data: &[u8]) {
        ReplyData::data(self, data)
    }
}

impl ROpen for ReplyOpen {
    fn opened(self, fh: FileHandle, flags: FopenFlags) {
        ReplyOpen::opened(self, fh, flags)
    }
}

impl RCreate for ReplyCreate {
    fn created(
        self,
        ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
        fh: FileHandle,
        flags: FopenFlags,
    ) {
        ReplyCreate::created(self, ttl, attr, gen, fh, flags)
    }
}

impl RWrite for ReplyWrite {
    fn written(self, size: u32) {
        ReplyWrite::written(self, size)
    }
    fn written_then(self, size: u32, then: Box<dyn FnOnce() + Send>) {
        ReplyWrite::written(self, size);
        then();
    }
}

impl RStatfs for ReplyStatfs {
    fn statfs(
        self,
        blocks: u64,
        bfree: u64,
        bavail: u64,
        files: u64,
        ffree: u64,
        bsize: u32,
        namelen: u32,
        frsize: u32,
    ) {
        ReplyStatfs::statfs(
            self, blocks, bfree, bavail, files, ffree, bsize, namelen, frsize,
        )
    }
}

impl RDir for ReplyDirectory {
    fn add(&mut self, ino: INodeNo, offset: u64, kind: FileType, name: &OsStr) -> bool {
        ReplyDirectory::add(self, ino, offset, kind, name)
    }
    fn ok(self) {
        ReplyDirectory::ok(self)
    }
}

impl RDirPlus for ReplyDirectoryPlus {
    fn add(
        &mut self,
        ino: INodeNo,
        offset: u64,
        name: &OsStr,
        ttl: &Duration,
        attr: &FileAttr,
        gen: Generation,
    ) -> bool {
        ReplyDirectoryPlus::add(self, ino, offset, name, ttl, attr, gen)
    }
    fn ok(self) {
        ReplyDirectoryPlus::ok(self)
    }
}

impl RXattr for ReplyXattr {}
