//! Crash consistency: with the fault-injecting device, stop persisting after
//! write N for many N across a workload; after each cut, `fsck.fat -a`
//! repairs the image, `fsck.fat -n` then finds it clean, and every file
//! fsynced before the cut is intact. Every other cut also tears its last
//! write part-way through a sector.

mod common;
use common::*;

use std::sync::Arc;

use rumpkern::dev::BlockDevice;
use rumpkern::{Cred, MountArgs};
use rumpuser::{FaultDevice, MemDevice};

/// The workload: returns, for each fsynced file, (name, contents, device
/// writes counted when its fsync returned).
fn workload(dev: &Arc<FaultDevice>) -> Vec<(String, Vec<u8>, u64)> {
    let c = Cred::root();
    let mut done = Vec::new();
    let Ok((mp, _)) = fs_msdos::mount(dev.clone() as Arc<dyn BlockDevice>, &MountArgs::parse(""))
    else {
        return done;
    };
    let Ok(r) = mp.root() else { return done };
    let Ok(sub) = r.mkdir(b"Sub Directory", 0o755, &c) else {
        return done;
    };
    for i in 0..8u64 {
        let name = format!("file number {i} with a long name");
        let dir = if i % 2 == 0 { &r } else { &sub };
        let data = pattern(1000 + (i as usize * 47_000), i);
        let Ok(f) = dir.create(name.as_bytes(), 0o644, &c) else {
            break;
        };
        if f.write(&data, 0, 0, &c).is_err() || f.fsync(false).is_err() {
            break;
        }
        let path = if i % 2 == 0 {
            name.clone()
        } else {
            format!("Sub Directory/{name}")
        };
        done.push((path, data, dev.writes()));
        if i == 4 {
            // Move the first (durable) file to the other directory: at any
            // cut it must survive under one of its names.
            let _ = r.rename(b"file number 0 with a long name", &sub, b"renamed zero", &c);
            let _ = sub.mkdir(b"made after", 0o755, &c);
        }
        // Churn that touches the same FAT and directory sectors.
        let _ = dir
            .create(format!("temp {i}").as_bytes(), 0o644, &c)
            .map(|t| t.write(&pattern(5000, 99), 0, 0, &c));
        if i > 0 {
            let _ = dir.remove(format!("temp {}", i - 1).as_bytes(), &c);
        }
    }
    // Power is lost here: no unmount. Dropping the mount writes back what is
    // left, which the device may drop.
    drop((r, sub));
    drop(mp);
    done
}

#[test]
fn cut_after_every_nth_write() {
    let t = TempDir::new("crash");
    let base_img = t.path().join("base");
    mkfs(&base_img, 16, 512, 4, 16, &[]);
    let base = std::fs::read(&base_img).unwrap();
    // A full run counts the writes.
    let full = Arc::new(FaultDevice::new(Arc::new(MemDevice::from_vec(
        base.clone(),
    ))));
    let files = workload(&full);
    assert_eq!(files.len(), 8);
    let total = full.writes();
    assert!(total > 20, "{total} writes");
    let step = (total / 60).max(1);
    let mut cuts = 0;
    let mut n = 1;
    while n <= total {
        let mem = Arc::new(MemDevice::from_vec(base.clone()));
        let dev = Arc::new(FaultDevice::new(mem.clone()));
        dev.stop_persisting_after(n);
        if n % 2 == 1 {
            // The last write is torn part-way through a sector.
            dev.tear_write(n, 700);
        }
        let done = workload(&dev);
        let img = t.path().join(format!("cut{n}"));
        // With a torn write n, files fsynced with exactly n writes are not durable.
        let limit = if n % 2 == 1 { n - 1 } else { n };
        std::fs::write(&img, mem.snapshot()).unwrap();
        let st = std::process::Command::new("fsck.fat")
            .arg("-a")
            .arg(&img)
            .output()
            .unwrap();
        let code = st.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 1,
            "cut {n}: fsck.fat -a exit {code}: {}",
            String::from_utf8_lossy(&st.stdout)
        );
        assert_fsck_clean(&img);
        let (mp, _) = fs_msdos::mount(open_dev(&img), &MountArgs::parse("ro")).unwrap();
        let r = mp.root().unwrap();
        for (path, data, w) in &done {
            if *w > limit {
                continue; // not durable before the cut
            }
            let find = |path: &str| {
                let mut vp = r.clone();
                for comp in path.split('/') {
                    vp = vp.lookup(comp.as_bytes(), &Cred::root()).ok()?;
                }
                Some(read_all(&vp))
            };
            let mut names = vec![path.clone()];
            if path == "file number 0 with a long name" {
                names.push("Sub Directory/renamed zero".to_string());
            }
            let intact = names.iter().any(|p| find(p).as_deref() == Some(&data[..]));
            assert!(
                intact,
                "cut {n}: {path} lost or damaged (looked for {names:?})"
            );
        }
        drop(r);
        mp.unmount(false).unwrap();
        std::fs::remove_file(&img).unwrap();
        cuts += 1;
        n += step;
    }
    assert!(cuts >= 20, "{cuts} cuts");
}
