//! Image-file devices: round trips, errors, every write-through policy,
//! O_DIRECT with unaligned requests, and the O_DIRECT fallback.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{aligned, image, image_in, pattern, TempPath};
use rumpuser::{open_device, BlkIo, BlockDevice, Error, FileDevice, OpenOpts};

/// Warnings logged by rumpuser in this test binary.
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct CaptureLog;

impl log::Log for CaptureLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            WARNINGS.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// Warnings so far that mention `path`.
fn warnings_about(path: &str) -> Vec<String> {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ = log::set_logger(&CaptureLog);
        log::set_max_level(log::LevelFilter::Warn);
    });
    WARNINGS
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains(path))
        .cloned()
        .collect()
}

const ALL: [BlkIo; 4] = [BlkIo::Direct, BlkIo::RangeSync, BlkIo::Fsync, BlkIo::Cached];

fn opts(blkio: BlkIo) -> OpenOpts {
    OpenOpts {
        read_only: false,
        blkio,
    }
}

fn read_all(dev: &dyn BlockDevice) -> Vec<u8> {
    let mut v = vec![0u8; dev.size() as usize];
    dev.read_at(0, &mut v).expect("read whole device");
    v
}

#[test]
fn image_round_trip_and_size() {
    let img = image("rt", 1 << 20, 0);
    let dev = open_device(img.as_str(), &OpenOpts::default()).unwrap();
    assert_eq!(dev.size(), 1 << 20);
    assert_eq!(dev.sector_size(), 512);
    assert!(!dev.is_read_only());

    let data = pattern(10_000, 7);
    dev.write_at(123_457, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    dev.read_at(123_457, &mut back).unwrap();
    assert_eq!(back, data);
    dev.flush().unwrap();

    // The host file holds the bytes, and nothing else changed.
    let mut expect = pattern(1 << 20, 0);
    expect[123_457..133_457].copy_from_slice(&data);
    assert_eq!(std::fs::read(&img.0).unwrap(), expect);
    assert_eq!(std::fs::metadata(&img.0).unwrap().len(), 1 << 20);
}

#[test]
fn io_past_end_is_eio_and_image_does_not_grow() {
    let img = image("eof", 8192, 1);
    let dev = open_device(img.as_str(), &OpenOpts::default()).unwrap();
    let mut buf = [0u8; 20];
    assert_eq!(dev.read_at(8192 - 10, &mut buf), Err(Error::EIO));
    assert_eq!(dev.read_at(8192, &mut buf[..1]), Err(Error::EIO));
    assert_eq!(dev.read_at(u64::MAX - 5, &mut buf), Err(Error::EIO));
    assert_eq!(dev.write_at(8190, &buf), Err(Error::EIO));
    assert_eq!(
        dev.writev_at(8000, &[&[1u8; 100], &[2u8; 100]]),
        Err(Error::EIO)
    );
    // The last bytes and an empty read at the end are fine.
    dev.read_at(8192 - 20, &mut buf).unwrap();
    assert_eq!(&buf[..], &pattern(8192, 1)[8172..]);
    dev.read_at(8192, &mut []).unwrap();
    assert_eq!(std::fs::metadata(&img.0).unwrap().len(), 8192);
}

#[test]
fn read_only_refuses_writes_with_erofs() {
    let img = image("ro", 4096, 2);
    let dev = open_device(
        img.as_str(),
        &OpenOpts {
            read_only: true,
            blkio: BlkIo::DEFAULT,
        },
    )
    .unwrap();
    assert!(dev.is_read_only());
    assert_eq!(dev.write_at(0, &[1, 2, 3]), Err(Error::EROFS));
    assert_eq!(dev.writev_at(0, &[&[1], &[2]]), Err(Error::EROFS));
    dev.flush().unwrap();
    assert_eq!(read_all(&*dev), pattern(4096, 2));
    assert_eq!(std::fs::read(&img.0).unwrap(), pattern(4096, 2));
}

#[test]
fn open_errors() {
    let missing = TempPath::new(&std::env::temp_dir(), "missing");
    assert_eq!(
        open_device(missing.as_str(), &OpenOpts::default()).err(),
        Some(Error::ENOENT)
    );
    let dir = std::env::temp_dir();
    assert_eq!(
        open_device(dir.to_str().unwrap(), &OpenOpts::default()).err(),
        Some(Error(libc::EISDIR))
    );
    assert_eq!(
        open_device("/dev/null", &OpenOpts::default()).err(),
        Some(Error(libc::ENOTBLK))
    );
}

/// Every policy writes data (plain, vectored, unaligned, delayed) that a
/// fresh open reads back, and that the host file holds.
#[test]
fn every_policy_persists_for_a_fresh_open() {
    for p in ALL {
        let size = 256 * 1024;
        let img = image(p.as_str(), size, 3);
        let mut model = pattern(size, 3);
        {
            let dev = FileDevice::open(img.as_str(), &opts(p)).unwrap();
            assert_eq!(
                dev.blkio(),
                p,
                "/tmp supports O_DIRECT, no fallback expected"
            );
            let a = pattern(4096, 10);
            dev.write_at(8192, &a).unwrap();
            model[8192..12288].copy_from_slice(&a);
            let b = pattern(333, 11);
            dev.write_at(70_001, &b).unwrap();
            model[70_001..70_334].copy_from_slice(&b);
            let (c1, c2, c3) = (pattern(1000, 12), pattern(24, 13), pattern(5000, 14));
            dev.writev_at(100_000, &[&c1, &c2, &c3]).unwrap();
            model[100_000..101_000].copy_from_slice(&c1);
            model[101_000..101_024].copy_from_slice(&c2);
            model[101_024..106_024].copy_from_slice(&c3);
            // Delayed write-back (buffer cache eviction/sync): aligned and not.
            let (d1, d2) = (pattern(4096, 15), pattern(8192, 16));
            dev.writev_at_delayed(131_072, &[&d1, &d2]).unwrap();
            model[131_072..143_360].copy_from_slice(&[d1, d2].concat());
            let e = pattern(777, 17);
            dev.writev_at_delayed(200_003, &[&e]).unwrap();
            model[200_003..200_780].copy_from_slice(&e);
            assert!(
                read_all(&dev) == model,
                "policy {p}: delayed writes read back before flush"
            );
            dev.flush().unwrap();
        }
        let fresh = open_device(img.as_str(), &opts(BlkIo::Cached)).unwrap();
        assert!(
            read_all(&*fresh) == model,
            "policy {p}: fresh open sees other bytes"
        );
        assert!(
            std::fs::read(&img.0).unwrap() == model,
            "policy {p}: host file differs"
        );
    }
}

#[test]
fn direct_unaligned_offsets_and_lengths() {
    let size = 3 << 20;
    let img = image("direct-unaligned", size, 4);
    let mut model = pattern(size, 4);
    let dev = FileDevice::open(img.as_str(), &opts(BlkIo::Direct)).unwrap();
    assert_eq!(dev.blkio(), BlkIo::Direct);
    assert!(dev.direct_alignment() >= 512 && dev.direct_alignment().is_power_of_two());

    // 100 bytes at offset 7: read-modify-write of the first sector.
    let w = pattern(100, 20);
    dev.write_at(7, &w).unwrap();
    model[7..107].copy_from_slice(&w);
    // 3000 bytes at offset 511: crosses sector boundaries at both ends.
    let mut r = vec![0u8; 3000];
    dev.read_at(511, &mut r).unwrap();
    assert_eq!(r, model[511..3511]);

    // A write with both edges in the same sector.
    let w = pattern(10, 21);
    dev.write_at(5000, &w).unwrap();
    model[5000..5010].copy_from_slice(&w);

    // An unaligned vectored write larger than one bounce piece (1 MiB).
    let bufs: Vec<Vec<u8>> = vec![pattern(700_001, 22), pattern(3, 23), pattern(900_000, 24)];
    let refs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
    let at = 1_000_003;
    dev.writev_at(at, &refs).unwrap();
    let mut o = at as usize;
    for b in &bufs {
        model[o..o + b.len()].copy_from_slice(b);
        o += b.len();
    }
    // An unaligned vectored read of the same range, in odd pieces.
    let mut r1 = vec![0u8; 17];
    let mut r2 = vec![0u8; 1_600_004 - 17];
    dev.readv_at(at, &mut [&mut r1, &mut r2]).unwrap();
    assert_eq!(r1, model[o - 1_600_004..o - 1_600_004 + 17]);
    assert!(r2[..] == model[o - 1_600_004 + 17..o]);

    // Aligned offset and length but unaligned memory: bounced, still right.
    let (mut v, s) = aligned(4096 + 1, 4096);
    let unaligned_mem = &mut v[s + 1..s + 1 + 4096];
    dev.read_at(8192, unaligned_mem).unwrap();
    assert_eq!(unaligned_mem, &model[8192..12288]);

    // Fully aligned request: the caller's buffer is used directly.
    let al = dev.direct_alignment() as usize;
    let (mut v, s) = aligned(2 * al, al);
    v[s..s + 2 * al].copy_from_slice(&pattern(2 * al, 25));
    dev.write_at(2 * al as u64, &v[s..s + 2 * al]).unwrap();
    model[2 * al..4 * al].copy_from_slice(&pattern(2 * al, 25));
    let (mut v, s) = aligned(2 * al, al);
    dev.read_at(2 * al as u64, &mut v[s..s + 2 * al]).unwrap();
    assert_eq!(v[s..s + 2 * al], model[2 * al..4 * al]);

    dev.flush().unwrap();
    drop(dev);
    assert!(std::fs::read(&img.0).unwrap() == model);
}

/// Concurrent unaligned O_DIRECT writes to distinct bytes of the same
/// sector: the read-modify-write must not lose any of them. Each thread
/// rewrites its own 16 bytes and reads them back after every write.
#[test]
fn direct_concurrent_unaligned_writes_share_sectors() {
    const ROUNDS: u32 = 1500;
    let img = image("direct-conc", 64 * 1024, 0);
    let dev = Arc::new(FileDevice::open(img.as_str(), &opts(BlkIo::Direct)).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let dev = Arc::clone(&dev);
            std::thread::spawn(move || {
                let off = 500 + t * 16; // the sector boundary at 512 runs through thread 0's bytes
                let mut back = [0u8; 16];
                for k in 0..ROUNDS {
                    let val = [(k as u8) ^ (t as u8 * 64); 16];
                    dev.write_at(off, &val).unwrap();
                    dev.read_at(off, &mut back).unwrap();
                    assert_eq!(back, val, "thread {t}, round {k}: own bytes overwritten");
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let mut back = vec![0u8; 64];
    dev.read_at(500, &mut back).unwrap();
    for (t, chunk) in back.chunks(16).enumerate() {
        assert_eq!(
            chunk,
            &[((ROUNDS - 1) as u8) ^ (t as u8 * 64); 16],
            "thread {t}'s last write lost"
        );
    }
}

/// Direct on an image whose size is not a multiple of the alignment:
/// read-only works (short aligned read at the end), read-write falls back.
#[test]
fn direct_on_unaligned_image_size() {
    let img = image("direct-odd", 5000, 5);
    let ro = FileDevice::open(
        img.as_str(),
        &OpenOpts {
            read_only: true,
            blkio: BlkIo::Direct,
        },
    )
    .unwrap();
    assert_eq!(ro.blkio(), BlkIo::Direct);
    assert_eq!(read_all(&ro), pattern(5000, 5));
    let mut tail = [0u8; 9];
    ro.read_at(4991, &mut tail).unwrap();
    assert_eq!(tail[..], pattern(5000, 5)[4991..]);
    drop(ro);

    assert!(warnings_about(img.as_str()).is_empty());
    let rw = FileDevice::open(img.as_str(), &opts(BlkIo::Direct)).unwrap();
    assert_eq!(rw.blkio(), BlkIo::RangeSync);
    assert_eq!(warnings_about(img.as_str()).len(), 1);
    rw.write_at(4990, &[9; 10]).unwrap();
    drop(rw);
    let bytes = std::fs::read(&img.0).unwrap();
    assert_eq!(bytes.len(), 5000);
    assert_eq!(bytes[4990..], [9; 10]);
}

/// A tmpfs-backed image (/dev/shm) with Direct: opens and works, whether
/// this kernel's tmpfs takes O_DIRECT (Linux >= 6.6) or refuses it.
#[test]
fn direct_on_tmpfs_opens_and_works() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        println!("SKIP: no /dev/shm on this host");
        return;
    }
    let img = image_in(shm, "shm", 64 * 1024, 6);
    let dev = FileDevice::open(img.as_str(), &opts(BlkIo::Direct)).unwrap();
    println!("tmpfs: effective blkio = {}", dev.blkio());
    assert!(matches!(dev.blkio(), BlkIo::Direct | BlkIo::RangeSync));
    let w = pattern(100, 30);
    dev.write_at(7, &w).unwrap();
    let mut r = vec![0u8; 3000];
    dev.read_at(511, &mut r).unwrap();
    let mut model = pattern(64 * 1024, 6);
    model[7..107].copy_from_slice(&w);
    assert_eq!(r, model[511..3511]);
    dev.flush().unwrap();
    drop(dev);
    assert!(std::fs::read(&img.0).unwrap() == model);
}

/// Unmounts (and removes) a private mount point when dropped.
struct MountGuard(std::path::PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// ramfs refuses O_DIRECT at open (EINVAL): the device falls back to
/// RangeSync and works.
#[test]
fn direct_falls_back_where_host_refuses_o_direct() {
    let dir = TempPath::new(&std::env::temp_dir(), "ramfs");
    std::fs::create_dir(&dir.0).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "ramfs", "rumpuser-test"])
        .arg(&dir.0)
        .status();
    if !matches!(ok, Ok(s) if s.success()) {
        let _ = std::fs::remove_dir(&dir.0);
        println!("SKIP: cannot mount ramfs here (needs root): {ok:?}");
        return;
    }
    let _guard = MountGuard(dir.0.clone());
    let img = image_in(&dir.0, "img", 32 * 1024, 8);
    assert!(warnings_about(img.as_str()).is_empty());
    let dev = FileDevice::open(img.as_str(), &opts(BlkIo::Direct)).unwrap();
    assert_eq!(
        dev.blkio(),
        BlkIo::RangeSync,
        "ramfs has no O_DIRECT: expected the fallback"
    );
    let warned = warnings_about(img.as_str());
    assert_eq!(warned.len(), 1, "exactly one warning line: {warned:?}");
    assert!(
        warned[0].contains("O_DIRECT") && warned[0].contains("rangesync"),
        "{warned:?}"
    );
    let w = pattern(100, 31);
    dev.write_at(7, &w).unwrap();
    dev.flush().unwrap();
    let mut model = pattern(32 * 1024, 8);
    model[7..107].copy_from_slice(&w);
    assert!(read_all(&dev) == model);
    drop(dev);
    assert!(std::fs::read(&img.0).unwrap() == model);
    drop(img);
}

#[test]
fn concurrent_positional_reads() {
    let size = 1 << 20;
    let img = image("conc-read", size, 9);
    let dev = open_device(
        img.as_str(),
        &OpenOpts {
            read_only: true,
            blkio: BlkIo::DEFAULT,
        },
    )
    .unwrap();
    let model = Arc::new(pattern(size, 9));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let dev = Arc::clone(&dev);
            let model = Arc::clone(&model);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 777];
                for i in 0..200u64 {
                    let off = (t * 100_003 + i * 4099) % (size as u64 - 777);
                    dev.read_at(off, &mut buf).unwrap();
                    assert_eq!(buf[..], model[off as usize..off as usize + 777]);
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
}
