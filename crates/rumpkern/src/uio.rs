//! `Uio`: a scatter/gather transfer between a file and the caller's buffers
//! (NetBSD `struct uio` + `uiomove`).
//!
//! A read fills the caller's buffers (`UioRw::Read`); a write drains them
//! (`UioRw::Write`). The file system moves bytes with [`Uio::uiomove_out`]
//! (file → caller, reads) and [`Uio::uiomove_in`] (caller → file, writes); both
//! advance `offset` and shrink `resid` by what they moved.

/// Direction of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UioRw {
    Read,
    Write,
}

enum Iov<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Iov<'_> {
    fn len(&self) -> usize {
        match self {
            Iov::Read(b) => b.len(),
            Iov::Write(b) => b.len(),
        }
    }
}

/// A transfer in progress.
pub struct Uio<'a> {
    iov: Vec<Iov<'a>>,
    /// Index of the current iovec and position inside it.
    cur: usize,
    pos: usize,
    /// File offset of the next byte.
    pub offset: u64,
    resid: usize,
    rw: UioRw,
}

impl<'a> Uio<'a> {
    /// A read of `buf.len()` bytes at `offset` into `buf`.
    pub fn read(buf: &'a mut [u8], offset: u64) -> Uio<'a> {
        Uio::readv(vec![buf], offset)
    }

    /// A scattered read into several buffers.
    pub fn readv(bufs: Vec<&'a mut [u8]>, offset: u64) -> Uio<'a> {
        let resid = bufs.iter().map(|b| b.len()).sum();
        Uio { iov: bufs.into_iter().map(Iov::Read).collect(), cur: 0, pos: 0, offset, resid, rw: UioRw::Read }
    }

    /// A write of `buf` at `offset`.
    pub fn write(buf: &'a [u8], offset: u64) -> Uio<'a> {
        Uio::writev(vec![buf], offset)
    }

    /// A gathered write from several buffers.
    pub fn writev(bufs: Vec<&'a [u8]>, offset: u64) -> Uio<'a> {
        let resid = bufs.iter().map(|b| b.len()).sum();
        Uio { iov: bufs.into_iter().map(Iov::Write).collect(), cur: 0, pos: 0, offset, resid, rw: UioRw::Write }
    }

    pub fn rw(&self) -> UioRw {
        self.rw
    }

    /// Bytes still to transfer.
    pub fn resid(&self) -> usize {
        self.resid
    }

    fn skip_empty(&mut self) {
        while self.cur < self.iov.len() && self.pos >= self.iov[self.cur].len() {
            self.cur += 1;
            self.pos = 0;
        }
    }

    /// Copy file data in `data` out to the caller (a read). Moves
    /// `min(data.len(), resid)` bytes and returns that count.
    ///
    /// Panics in debug builds if this is a write uio (a kernel bug, not input).
    pub fn uiomove_out(&mut self, data: &[u8]) -> usize {
        debug_assert_eq!(self.rw, UioRw::Read);
        let mut done = 0;
        while done < data.len() && self.resid > 0 {
            self.skip_empty();
            let Some(Iov::Read(dst)) = self.iov.get_mut(self.cur) else { break };
            let n = (dst.len() - self.pos).min(data.len() - done);
            dst[self.pos..self.pos + n].copy_from_slice(&data[done..done + n]);
            self.pos += n;
            done += n;
            self.resid -= n;
        }
        self.offset += done as u64;
        done
    }

    /// Zero-fill up to `n` bytes of the caller's buffers (a read of a hole).
    pub fn uiomove_zero(&mut self, n: usize) -> usize {
        debug_assert_eq!(self.rw, UioRw::Read);
        let mut done = 0;
        while done < n && self.resid > 0 {
            self.skip_empty();
            let Some(Iov::Read(dst)) = self.iov.get_mut(self.cur) else { break };
            let k = (dst.len() - self.pos).min(n - done);
            dst[self.pos..self.pos + k].fill(0);
            self.pos += k;
            done += k;
            self.resid -= k;
        }
        self.offset += done as u64;
        done
    }

    /// Copy the caller's data into `dst` (a write). Moves
    /// `min(dst.len(), resid)` bytes and returns that count.
    pub fn uiomove_in(&mut self, dst: &mut [u8]) -> usize {
        debug_assert_eq!(self.rw, UioRw::Write);
        let mut done = 0;
        while done < dst.len() && self.resid > 0 {
            self.skip_empty();
            let Some(Iov::Write(src)) = self.iov.get(self.cur) else { break };
            let n = (src.len() - self.pos).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&src[self.pos..self.pos + n]);
            self.pos += n;
            done += n;
            self.resid -= n;
        }
        self.offset += done as u64;
        done
    }

    /// The next `n` bytes of the caller's data (a write), as slices of the
    /// caller's buffers, without copying them; advances like `uiomove_in`.
    /// Returns fewer bytes when less than `n` is left. For drivers that
    /// hand whole blocks straight to the device.
    pub fn take_in(&mut self, n: usize) -> Vec<&'a [u8]> {
        debug_assert_eq!(self.rw, UioRw::Write);
        let mut out = Vec::new();
        let mut done = 0;
        while done < n && self.resid > 0 {
            self.skip_empty();
            let Some(Iov::Write(src)) = self.iov.get(self.cur) else { break };
            let src: &'a [u8] = src;
            let k = (src.len() - self.pos).min(n - done);
            out.push(&src[self.pos..self.pos + k]);
            self.pos += k;
            done += k;
            self.resid -= k;
        }
        self.offset += done as u64;
        out
    }

    /// Drop `n` bytes of the transfer without moving them (used when a write
    /// is cut short, e.g. by EFBIG at the size limit).
    pub fn truncate_resid(&mut self, keep: usize) {
        if keep < self.resid {
            // Shorten from the end: walk the iovecs and cut.
            let mut left = self.pos_total() + keep;
            for v in self.iov.iter_mut() {
                let l = v.len();
                let k = l.min(left);
                left -= k;
                match v {
                    Iov::Read(b) => *b = &mut std::mem::take(b)[..k],
                    Iov::Write(b) => *b = &b[..k],
                }
            }
            self.resid = keep;
        }
    }

    fn pos_total(&self) -> usize {
        self.iov[..self.cur.min(self.iov.len())].iter().map(|v| v.len()).sum::<usize>() + self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_in_returns_the_callers_slices() {
        let a = *b"abc";
        let b = *b"defgh";
        let mut u = Uio::writev(vec![&a, &b], 100);
        let mut one = [0u8; 1];
        assert_eq!(u.uiomove_in(&mut one), 1);
        let got = u.take_in(5);
        assert_eq!(got, vec![&b"bc"[..], &b"def"[..]]);
        assert_eq!(u.offset, 106);
        assert_eq!(u.resid(), 2);
        assert_eq!(u.take_in(10), vec![&b"gh"[..]]);
        assert_eq!(u.resid(), 0);
        assert!(u.take_in(1).is_empty());
    }

    #[test]
    fn scatter_read() {
        let mut a = [0u8; 3];
        let mut b = [0u8; 4];
        let mut u = Uio::readv(vec![&mut a, &mut b], 10);
        assert_eq!(u.resid(), 7);
        assert_eq!(u.uiomove_out(b"hello"), 5);
        assert_eq!(u.offset, 15);
        assert_eq!(u.uiomove_zero(10), 2);
        assert_eq!(u.resid(), 0);
        assert_eq!(u.uiomove_out(b"x"), 0);
        drop(u);
        assert_eq!(&a, b"hel");
        assert_eq!(&b, b"lo\0\0");
    }

    #[test]
    fn gather_write() {
        let mut u = Uio::writev(vec![b"ab", b"", b"cde"], 0);
        let mut d = [0u8; 4];
        assert_eq!(u.uiomove_in(&mut d), 4);
        assert_eq!(&d, b"abcd");
        let mut e = [0u8; 4];
        assert_eq!(u.uiomove_in(&mut e), 1);
        assert_eq!(e[0], b'e');
        assert_eq!(u.offset, 5);
    }

    #[test]
    fn truncate() {
        let mut u = Uio::writev(vec![b"abc", b"def"], 0);
        let mut d = [0u8; 2];
        u.uiomove_in(&mut d);
        u.truncate_resid(2);
        assert_eq!(u.resid(), 2);
        let mut e = [0u8; 8];
        assert_eq!(u.uiomove_in(&mut e), 2);
        assert_eq!(&e[..2], b"cd");
    }
}
