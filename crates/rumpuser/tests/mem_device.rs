//! MemDevice basics.

use rumpuser::{BlockDevice, Error, MemDevice};

#[test]
fn new_is_zeroed_and_round_trips() {
    let dev = MemDevice::new(8192);
    assert_eq!(dev.size(), 8192);
    assert_eq!(dev.sector_size(), 512);
    assert!(!dev.is_read_only());
    assert!(dev.snapshot().iter().all(|&b| b == 0));
    dev.write_at(100, b"hello").unwrap();
    let mut b = [0u8; 5];
    dev.read_at(100, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    dev.writev_at(8190, &[&[1], &[2]]).unwrap();
    let mut x = [0u8; 1];
    let mut y = [0u8; 1];
    dev.readv_at(8190, &mut [&mut x, &mut y]).unwrap();
    assert_eq!((x, y), ([1], [2]));
    dev.flush().unwrap();
    let snap = dev.snapshot();
    assert_eq!(&snap[100..105], b"hello");
    assert_eq!(snap[8190..], [1, 2]);
}

#[test]
fn bounds_are_eio() {
    let dev = MemDevice::from_vec(vec![7; 1000]);
    assert_eq!(dev.size(), 1000);
    let mut b = [0u8; 10];
    assert_eq!(dev.read_at(995, &mut b), Err(Error::EIO));
    assert_eq!(dev.write_at(1000, &[1]), Err(Error::EIO));
    assert_eq!(dev.write_at(u64::MAX, &[1]), Err(Error::EIO));
    assert_eq!(dev.writev_at(990, &[&[1; 5], &[2; 6]]), Err(Error::EIO));
    assert_eq!(
        dev.snapshot(),
        vec![7; 1000],
        "a refused vectored write changes nothing"
    );
    dev.read_at(990, &mut b).unwrap();
    assert_eq!(b, [7; 10]);
}

#[test]
fn sector_size_and_read_only() {
    let dev = MemDevice::new(1 << 16).with_sector_size(4096).unwrap();
    assert_eq!(dev.sector_size(), 4096);
    assert_eq!(
        MemDevice::new(10).with_sector_size(1000).err(),
        Some(Error::EINVAL)
    );
    assert_eq!(
        MemDevice::new(10).with_sector_size(256).err(),
        Some(Error::EINVAL)
    );
    let ro = MemDevice::from_vec(vec![1, 2, 3]).with_read_only(true);
    assert!(ro.is_read_only());
    assert_eq!(ro.write_at(0, &[9]), Err(Error::EROFS));
    assert_eq!(ro.snapshot(), vec![1, 2, 3]);
}
