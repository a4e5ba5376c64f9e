//! A raw block device: a loop device with 4096-byte logical sectors over a
//! 16 MiB file. Needs root and loop support; skipped (with a message) only
//! when `losetup` is missing or the host has no loop devices.

mod common;

use std::process::Command;

use common::{aligned, image, pattern};
use rumpuser::{BlkIo, BlockDevice, Error, FileDevice, OpenOpts};

/// Detaches the loop device when dropped, also when the test panics.
struct LoopGuard(String);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        match Command::new("losetup").arg("-d").arg(&self.0).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("warning: losetup -d {} failed: {other:?}", self.0),
        }
    }
}

/// Attach `file` to a free loop device with 4096-byte sectors; `None`
/// (after printing why) when this host cannot do it at all.
fn attach(file: &str) -> Option<LoopGuard> {
    let out = match Command::new("losetup")
        .args(["--find", "--show", "--sector-size", "4096", file])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            println!("SKIP: losetup unavailable: {e}");
            return None;
        }
    };
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let no_loop = !std::path::Path::new("/dev/loop-control").exists()
            || msg.contains("cannot find an unused loop device")
            || msg.contains("Permission denied")
            || msg.contains("No such device");
        if no_loop {
            println!("SKIP: no loop device support here: {msg}");
            return None;
        }
        panic!("losetup failed: {msg}");
    }
    let guard = LoopGuard(String::from_utf8_lossy(&out.stdout).trim().to_string());
    assert!(
        guard.0.starts_with("/dev/loop"),
        "losetup printed {:?}",
        guard.0
    );
    Some(guard)
}

#[test]
fn loop_device_with_4k_sectors() {
    const SIZE: usize = 16 << 20;
    let backing = image("loop", SIZE, 40);
    let Some(lo) = attach(backing.as_str()) else {
        return;
    };
    let mut model = pattern(SIZE, 40);

    {
        let dev = FileDevice::open(
            &lo.0,
            &OpenOpts {
                read_only: false,
                blkio: BlkIo::Direct,
            },
        )
        .unwrap();
        assert!(dev.is_block_device());
        assert_eq!(dev.size(), SIZE as u64);
        assert_eq!(dev.sector_size(), 4096);
        assert_eq!(dev.blkio(), BlkIo::Direct);
        assert!(dev.direct_alignment() >= 4096);

        // Opened read-write, the device is claimed exclusively.
        let second = FileDevice::open(&lo.0, &OpenOpts::default());
        assert_eq!(second.err(), Some(Error(libc::EBUSY)));

        // Aligned round trip straight from the caller's buffer.
        let (mut v, s) = aligned(8192, 4096);
        v[s..s + 8192].copy_from_slice(&pattern(8192, 41));
        dev.write_at(4096 * 10, &v[s..s + 8192]).unwrap();
        model[40960..49152].copy_from_slice(&pattern(8192, 41));
        let (mut r, s) = aligned(8192, 4096);
        dev.read_at(4096 * 10, &mut r[s..s + 8192]).unwrap();
        assert_eq!(r[s..s + 8192], model[40960..49152]);

        // Unaligned: read-modify-write of 4096-byte sectors.
        let w = pattern(100, 42);
        dev.write_at(7, &w).unwrap();
        model[7..107].copy_from_slice(&w);
        let mut r = vec![0u8; 3000];
        dev.read_at(511, &mut r).unwrap();
        assert_eq!(r, model[511..3511]);

        // Vectored, unaligned, across sectors.
        let (a, b) = (pattern(5000, 43), pattern(3001, 44));
        dev.writev_at(1_000_001, &[&a, &b]).unwrap();
        model[1_000_001..1_005_001].copy_from_slice(&a);
        model[1_005_001..1_008_002].copy_from_slice(&b);

        // The end of the device, and past it.
        let mut last = vec![0u8; 4096];
        dev.read_at(SIZE as u64 - 4096, &mut last).unwrap();
        assert_eq!(last, model[SIZE - 4096..]);
        assert_eq!(dev.read_at(SIZE as u64 - 100, &mut last), Err(Error::EIO));
        dev.flush().unwrap();
    }

    // A fresh open (buffered policy this time) sees the same bytes.
    let dev = FileDevice::open(
        &lo.0,
        &OpenOpts {
            read_only: true,
            blkio: BlkIo::RangeSync,
        },
    )
    .unwrap();
    let mut all = vec![0u8; SIZE];
    dev.read_at(0, &mut all).unwrap();
    assert!(all == model, "loop device contents differ from the model");
    drop(dev);
    drop(lo);
    // And the backing file holds them once the loop device is gone.
    assert!(
        std::fs::read(&backing.0).unwrap() == model,
        "backing file differs"
    );
}
