//! A block device in memory, for tests of the other crates.

use parking_lot::RwLock;

use crate::{check_range, BlockDevice, Error, RuResult};

/// A fixed-size block device held in a `Vec<u8>` behind a `RwLock`:
/// concurrent readers, one writer at a time. A vectored request is done
/// under one lock acquisition, so it is atomic with respect to others.
/// Reads and writes past the end are `EIO`; `flush()` does nothing.
#[derive(Debug)]
pub struct MemDevice {
    data: RwLock<Vec<u8>>,
    size: u64,
    sector: u32,
    read_only: bool,
}

impl MemDevice {
    /// A zero-filled device of `size` bytes, 512-byte sectors, writable.
    pub fn new(size: usize) -> MemDevice {
        MemDevice::from_vec(vec![0; size])
    }

    /// A device holding `data` (its length is the device size).
    pub fn from_vec(data: Vec<u8>) -> MemDevice {
        MemDevice {
            size: data.len() as u64,
            data: RwLock::new(data),
            sector: 512,
            read_only: false,
        }
    }

    /// Report `sector` as the logical sector size. Errors: `EINVAL` unless
    /// it is a power of two from 512 to 65536.
    pub fn with_sector_size(mut self, sector: u32) -> RuResult<MemDevice> {
        if !sector.is_power_of_two() || !(512..=65536).contains(&sector) {
            return Err(Error::EINVAL);
        }
        self.sector = sector;
        Ok(self)
    }

    /// Make the device read-only (writes fail with `EROFS`) or writable.
    pub fn with_read_only(mut self, read_only: bool) -> MemDevice {
        self.read_only = read_only;
        self
    }

    /// A copy of the whole contents.
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.read().clone()
    }
}

impl BlockDevice for MemDevice {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> RuResult<()> {
        self.readv_at(off, &mut [buf])
    }

    fn write_at(&self, off: u64, buf: &[u8]) -> RuResult<()> {
        self.writev_at(off, &[buf])
    }

    fn readv_at(&self, off: u64, bufs: &mut [&mut [u8]]) -> RuResult<()> {
        let data = self.data.read();
        let total = bufs.iter().map(|b| b.len()).sum();
        check_range(off, total, self.size)?;
        let mut at = off as usize;
        for b in bufs.iter_mut() {
            b.copy_from_slice(&data[at..at + b.len()]);
            at += b.len();
        }
        Ok(())
    }

    fn writev_at(&self, off: u64, bufs: &[&[u8]]) -> RuResult<()> {
        if self.read_only {
            return Err(Error::EROFS);
        }
        let mut data = self.data.write();
        let total = bufs.iter().map(|b| b.len()).sum();
        check_range(off, total, self.size)?;
        let mut at = off as usize;
        for b in bufs {
            data[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        Ok(())
    }

    fn flush(&self) -> RuResult<()> {
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn sector_size(&self) -> u32 {
        self.sector
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }
}
