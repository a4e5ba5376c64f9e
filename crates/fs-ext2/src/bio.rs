//! Block I/O for the driver: the one place that talks to the device.
//!
//! A thin layer over [`rumpkern::dev::BlockDevice`] reading and writing
//! whole file system blocks (and the byte ranges of the superblock). Every
//! other module goes through it, so moving to the shared buffer cache
//! (`rumpkern::buf`) is a change to this file only.
//!
//! There is no caching here: a read goes to the device, a write is on the
//! device (as durable as the device makes it) when the call returns, which
//! gives the synchronous metadata ordering the driver relies on. Callers
//! that read-modify-write a block shared with other files (bitmaps, inode
//! table blocks, descriptor blocks) hold the mount's metadata lock.

use std::sync::Arc;

use rumpkern::dev::BlockDevice;
use rumpkern::{Errno, KResult};

/// Block reader/writer for one mounted file system.
pub struct Bio {
    dev: Arc<dyn BlockDevice>,
    bsize: u32,
    nblocks: u64,
}

impl Bio {
    /// Blocks of `bsize` bytes on `dev`, of which the file system has
    /// `nblocks` (reads and writes beyond are refused with EIO).
    pub fn new(dev: Arc<dyn BlockDevice>, bsize: u32, nblocks: u64) -> Bio {
        Bio {
            dev,
            bsize,
            nblocks,
        }
    }

    /// The device.
    pub fn dev(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    /// Block size.
    pub fn bsize(&self) -> usize {
        self.bsize as usize
    }

    fn check(&self, bno: u64) -> KResult<u64> {
        if bno >= self.nblocks {
            log::error!(
                "ext2fs: block {bno} beyond the file system ({} blocks)",
                self.nblocks
            );
            return Err(Errno::EIO);
        }
        bno.checked_mul(self.bsize as u64).ok_or(Errno::EIO)
    }

    /// Read block `bno` into a new buffer.
    pub fn bread(&self, bno: u64) -> KResult<Vec<u8>> {
        let mut b = vec![0u8; self.bsize as usize];
        self.bread_into(bno, &mut b)?;
        Ok(b)
    }

    /// Read block `bno` into `buf` (exactly one block long).
    pub fn bread_into(&self, bno: u64, buf: &mut [u8]) -> KResult<()> {
        if buf.len() != self.bsize as usize {
            return Err(Errno::EINVAL);
        }
        let off = self.check(bno)?;
        self.dev.read_at(off, buf).map_err(Errno::from)
    }

    /// Write one block at `bno`.
    pub fn bwrite(&self, bno: u64, data: &[u8]) -> KResult<()> {
        if data.len() != self.bsize as usize {
            return Err(Errno::EINVAL);
        }
        let off = self.check(bno)?;
        self.dev.write_at(off, data).map_err(Errno::from)
    }

    /// Write `count` zero blocks from `bno`.
    pub fn bzero(&self, bno: u64, count: u64) -> KResult<()> {
        let z = vec![0u8; self.bsize as usize];
        for i in 0..count {
            self.bwrite(bno.checked_add(i).ok_or(Errno::EIO)?, &z)?;
        }
        Ok(())
    }

    /// Read bytes at a device offset (the superblock).
    pub fn read_bytes(&self, off: u64, buf: &mut [u8]) -> KResult<()> {
        self.dev.read_at(off, buf).map_err(Errno::from)
    }

    /// Write bytes at a device offset (the superblock).
    pub fn write_bytes(&self, off: u64, data: &[u8]) -> KResult<()> {
        self.dev.write_at(off, data).map_err(Errno::from)
    }

    /// Make every completed write durable.
    pub fn flush(&self) -> KResult<()> {
        self.dev.flush().map_err(Errno::from)
    }
}
