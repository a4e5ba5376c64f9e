//! Creates and writes need no synchronous write: the entries and new
//! inodes are delayed, link counts and sizes held back until an ordering
//! point; after sync everything is on the device and e2fsck finds it clean.

mod common;

use std::sync::Arc;

use common::*;
use rumpkern::dev::BlockDevice;
use rumpkern::{FsType, MountArgs};
use rumpuser::{FaultDevice, MemDevice};

#[test]
fn creates_write_nothing_synchronously() {
    let t = TempDir::new("ordering");
    let img = t.path().join("img");
    mkimage(&img, None, 8 * 1024, 1024, &[]);
    let mem = Arc::new(MemDevice::from_vec(std::fs::read(&img).unwrap()));
    let fault = Arc::new(FaultDevice::new(mem.clone()));
    let dev: Arc<dyn BlockDevice> = fault.clone();
    let mp = fs_ext2::EXT2FS
        .mount(Some(dev), &MountArgs::parse("rw"))
        .unwrap();
    let c = cred();
    let root = mp.root().unwrap();
    let before = fault.writes();
    let d = root.mkdir(b"d", 0o755, &c).unwrap();
    for i in 0..40u32 {
        let f = d.create(format!("f{i}").as_bytes(), 0o644, &c).unwrap();
        // 20 KiB: past the 12 direct blocks, so an indirect block too.
        f.write(&pattern(20_000, i), 0, 0, &c).unwrap();
        d.symlink(format!("l{i}").as_bytes(), b"target", &c).unwrap();
    }
    let during = fault.writes() - before;
    assert!(
        during < 10,
        "{during} device writes for 40 creates (expected none before a sync)"
    );
    // Held-back state is what readers see.
    let f = d.lookup(b"f7", &c).unwrap();
    assert_eq!(read_all(&f), pattern(20_000, 7));
    drop(f);
    assert_eq!(d.getattr().unwrap().nlink, 2);
    let flushes = fault.flushes();
    mp.sync(true).unwrap();
    assert!(fault.writes() > before + during, "sync wrote nothing");
    assert!(fault.flushes() > flushes, "sync flushed nothing");
    // A crash now (no unmount) loses nothing and needs no repair.
    drop(d);
    drop(root);
    drop(mp);
    let cut = t.path().join("cut");
    std::fs::write(&cut, mem.snapshot()).unwrap();
    let (code, out) = e2fsck(&cut);
    assert_eq!(code, 0, "not clean after sync:\n{out}");
    let mp = mount_img(&cut, "ro").unwrap();
    let d = mp.root().unwrap().lookup(b"d", &cred()).unwrap();
    for i in 0..40u32 {
        let f = d.lookup(format!("f{i}").as_bytes(), &cred()).unwrap();
        assert_eq!(read_all(&f), pattern(20_000, i));
    }
}
