//! Helpers shared by the rumpuser integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A file path removed when dropped (also on panic).
pub struct TempPath(pub PathBuf);

impl TempPath {
    /// A fresh, unused path in `dir`.
    pub fn new(dir: &Path, tag: &str) -> TempPath {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        TempPath(dir.join(format!("rumpuser-test-{}-{tag}-{n}", std::process::id())))
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A file of `size` bytes in `dir` filled with `pattern(size, seed)`.
pub fn image_in(dir: &Path, tag: &str, size: usize, seed: u8) -> TempPath {
    let p = TempPath::new(dir, tag);
    std::fs::write(&p.0, pattern(size, seed)).expect("create image");
    p
}

/// A file of `size` bytes in the temp directory.
pub fn image(tag: &str, size: usize, seed: u8) -> TempPath {
    image_in(&std::env::temp_dir(), tag, size, seed)
}

/// A deterministic byte pattern that differs from offset to offset.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + i / 251) as u8).wrapping_add(seed))
        .collect()
}

/// A buffer of `len` bytes whose start is aligned to `align`, returned as
/// (backing storage, start index).
pub fn aligned(len: usize, align: usize) -> (Vec<u8>, usize) {
    let v = vec![0u8; len + align];
    let start = (align - v.as_ptr() as usize % align) % align;
    (v, start)
}
