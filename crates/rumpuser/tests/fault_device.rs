//! FaultDevice: injected failures, power loss, torn writes, request counts.

use std::sync::Arc;

use rumpuser::{BlockDevice, Error, FaultDevice, MemDevice};

fn setup(size: usize) -> (Arc<MemDevice>, FaultDevice) {
    let mem = Arc::new(MemDevice::new(size));
    let fault = FaultDevice::new(mem.clone());
    (mem, fault)
}

#[test]
fn fails_the_third_write_only() {
    let (mem, dev) = setup(4096);
    dev.write_at(0, &[1; 10]).unwrap();
    dev.write_at(10, &[2; 10]).unwrap();
    dev.fail_write(3);
    assert_eq!(dev.write_at(20, &[3; 10]), Err(Error::EIO));
    dev.write_at(30, &[4; 10]).unwrap();
    assert_eq!(dev.writes(), 4);
    let snap = mem.snapshot();
    assert_eq!(snap[0..10], [1; 10]);
    assert_eq!(snap[10..20], [2; 10]);
    assert_eq!(
        snap[20..30],
        [0; 10],
        "the failed write must not reach the device"
    );
    assert_eq!(snap[30..40], [4; 10]);
}

#[test]
fn fails_the_nth_read() {
    let (_mem, dev) = setup(4096);
    dev.write_at(0, &[9; 8]).unwrap();
    dev.fail_read(2);
    let mut b = [0u8; 8];
    dev.read_at(0, &mut b).unwrap();
    assert_eq!(b, [9; 8]);
    assert_eq!(
        dev.readv_at(0, &mut [&mut b[..4], &mut [0u8; 4][..]]),
        Err(Error::EIO)
    );
    dev.read_at(0, &mut b).unwrap();
    assert_eq!(dev.reads(), 3);
}

#[test]
fn stops_persisting_after_write_two() {
    let (mem, dev) = setup(4096);
    dev.stop_persisting_after(2);
    for i in 0..5u8 {
        dev.write_at(u64::from(i) * 100, &[i + 1; 100]).unwrap();
    }
    dev.writev_at(1000, &[&[7; 10], &[8; 10]]).unwrap();
    dev.flush().unwrap();
    assert!(dev.power_lost());
    assert_eq!(dev.writes(), 6);
    assert_eq!(dev.dropped_writes(), 4);
    let snap = mem.snapshot();
    assert_eq!(snap[0..100], [1; 100]);
    assert_eq!(snap[100..200], [2; 100]);
    assert!(
        snap[200..].iter().all(|&b| b == 0),
        "writes after number 2 must be dropped"
    );
    // Dropped writes are still checked like real ones.
    assert_eq!(dev.write_at(4090, &[1; 10]), Err(Error::EIO));
}

#[test]
fn tears_a_write() {
    let (mem, dev) = setup(8192);
    dev.write_at(0, &[1; 4096]).unwrap();
    dev.tear_write(2, 1000);
    dev.write_at(0, &[2; 4096]).unwrap();
    let snap = mem.snapshot();
    assert_eq!(snap[..1000], [2; 1000]);
    assert!(
        snap[1000..4096].iter().all(|&b| b == 1),
        "bytes after the tear keep old data"
    );

    // A vectored write torn in its second buffer.
    dev.tear_write(3, 700);
    dev.writev_at(4096, &[&[3; 512], &[4; 512]]).unwrap();
    let snap = mem.snapshot();
    assert_eq!(snap[4096..4608], [3; 512]);
    assert_eq!(snap[4608..4796], [4; 188]);
    assert!(snap[4796..].iter().all(|&b| b == 0));
}

#[test]
fn counts_vectored_calls_as_one_request_and_forwards_them_as_one() {
    let mem: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(1 << 16));
    let inner = Arc::new(FaultDevice::new(mem));
    let outer = FaultDevice::new(inner.clone());
    let bufs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 4096]).collect();
    let refs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
    outer.writev_at(0, &refs).unwrap();
    assert_eq!(
        (outer.writes(), inner.writes()),
        (1, 1),
        "writev_at is one request"
    );

    let mut out: Vec<Vec<u8>> = vec![vec![0; 4096]; 8];
    let mut outs: Vec<&mut [u8]> = out.iter_mut().map(|b| &mut b[..]).collect();
    outer.readv_at(0, &mut outs).unwrap();
    assert_eq!(
        (outer.reads(), inner.reads()),
        (1, 1),
        "readv_at is one request"
    );
    assert_eq!(out, bufs);

    let mut one = [0u8; 4096];
    outer.read_at(4096 * 3, &mut one).unwrap();
    assert_eq!(one, [3; 4096]);
    assert_eq!(outer.requests(), 3);
    assert_eq!(inner.requests(), 3);
    outer.flush().unwrap();
    assert_eq!((outer.flushes(), inner.flushes()), (1, 1));
    outer.reset_counters();
    assert_eq!((outer.reads(), outer.writes(), outer.flushes()), (0, 0, 0));
}

#[test]
fn clear_faults_and_read_only_inner() {
    let (_mem, dev) = setup(512);
    dev.fail_write(1);
    dev.clear_faults();
    dev.write_at(0, &[1]).unwrap();
    let ro = FaultDevice::new(Arc::new(MemDevice::new(512).with_read_only(true)));
    assert!(ro.is_read_only());
    assert_eq!(ro.write_at(0, &[1]), Err(Error::EROFS));
    assert_eq!((ro.size(), ro.sector_size()), (512, 512));
}
