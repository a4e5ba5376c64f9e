//! Bounds-checked access to on-disk integers, for every driver.
//!
//! On-disk structures are untrusted input: every read of a field goes through
//! these helpers, which return `EIO` instead of panicking when the offset is
//! past the end of the buffer (a truncated or corrupt structure). Both byte
//! orders are here because FFS images come in both (NetBSD's `FFS_EI`).

use crate::errno::{Errno, KResult};

fn field<const N: usize>(b: &[u8], off: usize) -> KResult<[u8; N]> {
    let end = off.checked_add(N).ok_or(Errno::EIO)?;
    let s = b.get(off..end).ok_or(Errno::EIO)?;
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    Ok(a)
}

fn field_mut<const N: usize>(b: &mut [u8], off: usize) -> KResult<&mut [u8]> {
    let end = off.checked_add(N).ok_or(Errno::EIO)?;
    b.get_mut(off..end).ok_or(Errno::EIO)
}

/// Byte at `off`.
pub fn u8_at(b: &[u8], off: usize) -> KResult<u8> {
    b.get(off).copied().ok_or(Errno::EIO)
}

/// Little-endian `u16` at `off`.
pub fn le16(b: &[u8], off: usize) -> KResult<u16> {
    field::<2>(b, off).map(u16::from_le_bytes)
}

/// Little-endian `u32` at `off`.
pub fn le32(b: &[u8], off: usize) -> KResult<u32> {
    field::<4>(b, off).map(u32::from_le_bytes)
}

/// Little-endian `u64` at `off`.
pub fn le64(b: &[u8], off: usize) -> KResult<u64> {
    field::<8>(b, off).map(u64::from_le_bytes)
}

/// Big-endian `u16` at `off`.
pub fn be16(b: &[u8], off: usize) -> KResult<u16> {
    field::<2>(b, off).map(u16::from_be_bytes)
}

/// Big-endian `u32` at `off`.
pub fn be32(b: &[u8], off: usize) -> KResult<u32> {
    field::<4>(b, off).map(u32::from_be_bytes)
}

/// Big-endian `u64` at `off`.
pub fn be64(b: &[u8], off: usize) -> KResult<u64> {
    field::<8>(b, off).map(u64::from_be_bytes)
}

/// Store a byte at `off`.
pub fn put_u8(b: &mut [u8], off: usize, v: u8) -> KResult<()> {
    *b.get_mut(off).ok_or(Errno::EIO)? = v;
    Ok(())
}

/// Store a little-endian `u16` at `off`.
pub fn put_le16(b: &mut [u8], off: usize, v: u16) -> KResult<()> {
    field_mut::<2>(b, off)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Store a little-endian `u32` at `off`.
pub fn put_le32(b: &mut [u8], off: usize, v: u32) -> KResult<()> {
    field_mut::<4>(b, off)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Store a little-endian `u64` at `off`.
pub fn put_le64(b: &mut [u8], off: usize, v: u64) -> KResult<()> {
    field_mut::<8>(b, off)?.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Store a big-endian `u16` at `off`.
pub fn put_be16(b: &mut [u8], off: usize, v: u16) -> KResult<()> {
    field_mut::<2>(b, off)?.copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// Store a big-endian `u32` at `off`.
pub fn put_be32(b: &mut [u8], off: usize, v: u32) -> KResult<()> {
    field_mut::<4>(b, off)?.copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// Store a big-endian `u64` at `off`.
pub fn put_be64(b: &mut [u8], off: usize, v: u64) -> KResult<()> {
    field_mut::<8>(b, off)?.copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// `len` bytes at `off`, bounds-checked.
pub fn slice(b: &[u8], off: usize, len: usize) -> KResult<&[u8]> {
    let end = off.checked_add(len).ok_or(Errno::EIO)?;
    b.get(off..end).ok_or(Errno::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_orders() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le16(&b, 0), Ok(0x0201));
        assert_eq!(be16(&b, 0), Ok(0x0102));
        assert_eq!(le32(&b, 4), Ok(0x08070605));
        assert_eq!(be32(&b, 4), Ok(0x05060708));
        assert_eq!(le64(&b, 0), Ok(0x0807060504030201));
        assert_eq!(be64(&b, 0), Ok(0x0102030405060708));
        assert_eq!(u8_at(&b, 7), Ok(8));
    }

    #[test]
    fn out_of_bounds_is_eio() {
        let b = [0u8; 4];
        assert_eq!(le32(&b, 1), Err(Errno::EIO));
        assert_eq!(le16(&b, usize::MAX), Err(Errno::EIO));
        assert_eq!(u8_at(&b, 4), Err(Errno::EIO));
        assert_eq!(slice(&b, 2, 3), Err(Errno::EIO));
        let mut m = [0u8; 4];
        assert_eq!(put_le64(&mut m, 0, 1), Err(Errno::EIO));
        assert_eq!(m, [0; 4], "a failed store must not write");
    }

    #[test]
    fn stores_round_trip() {
        let mut m = [0u8; 16];
        put_le16(&mut m, 0, 0xBEEF).unwrap();
        put_be32(&mut m, 2, 0xDEADBEEF).unwrap();
        put_le64(&mut m, 6, u64::MAX - 1).unwrap();
        put_u8(&mut m, 15, 9).unwrap();
        assert_eq!(le16(&m, 0), Ok(0xBEEF));
        assert_eq!(be32(&m, 2), Ok(0xDEADBEEF));
        assert_eq!(le64(&m, 6), Ok(u64::MAX - 1));
        put_be16(&mut m, 0, 0x1234).unwrap();
        assert_eq!(m[0], 0x12);
        put_le32(&mut m, 0, 7).unwrap();
        put_be64(&mut m, 8, 1).unwrap();
        assert_eq!(be64(&m, 8), Ok(1));
        assert_eq!(slice(&m, 0, 4), Ok(&[7u8, 0, 0, 0][..]));
    }
}
