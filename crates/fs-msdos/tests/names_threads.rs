//! Short-name modes as stored on disk, and concurrent use of one mount from
//! several threads (as p2k's FUSE workers do), judged by fsck.fat.

mod common;
use common::*;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rumpkern::Cred;

/// (has a long name before it, NT case byte) of the root entry `short11`.
fn root_entry_info(img: &Path, short11: &[u8; 11]) -> (bool, u8) {
    let b = std::fs::read(img).unwrap();
    let g = fs_msdos::format::Geometry::new(
        &fs_msdos::format::Bpb::parse(&b[..512]).unwrap(),
        b.len() as u64,
    )
    .unwrap();
    let start = g.root_offset as usize;
    for o in (start..start + g.root_entries as usize * 32).step_by(32) {
        if &b[o..o + 11] == short11 {
            let lfn = o > start && b[o - 32 + 11] == 0x0F;
            return (lfn, b[o + 12]);
        }
    }
    panic!("no entry {:?}", String::from_utf8_lossy(short11));
}

#[test]
fn shortname_modes() {
    for (opt, lower_has_lfn, case_byte) in [("", true, 0u8), ("shortname=winnt", false, 0x18)] {
        let t = TempDir::new("shortname");
        let img = t.path().join("img");
        mkfs(&img, 16, 512, 4, 16, &[]);
        let mp = mount(&img, opt);
        let r = mp.root().unwrap();
        for n in ["lower.txt", "README.TXT", "Mixed.Txt"] {
            r.create(n.as_bytes(), 0o644, &Cred::root()).unwrap();
        }
        drop(r);
        mp.unmount(false).unwrap();
        assert_eq!(
            root_entry_info(&img, b"LOWER   TXT"),
            (lower_has_lfn, case_byte),
            "{opt}"
        );
        assert_eq!(root_entry_info(&img, b"README  TXT"), (false, 0), "{opt}");
        assert!(root_entry_info(&img, b"MIXED   TXT").0, "{opt}");
        assert_fsck_clean(&img);
        // mtools shows the names we created, case included.
        let out = t.path().join("out");
        mcopy_out(&img, &out);
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["Mixed.Txt", "README.TXT", "lower.txt"], "{opt}");
        // And shortname=lower shows short-only names in lower case.
        let mp = mount(&img, "ro,shortname=lower");
        let names: Vec<String> = list(&mp.root().unwrap()).into_keys().collect();
        assert!(names.contains(&"readme.txt".to_string()), "{names:?}");
        mp.unmount(false).unwrap();
    }
}

#[test]
fn concurrent_threads() {
    let t = TempDir::new("threads");
    let img = t.path().join("img");
    mkfs(&img, 32, 512, 1, 64, &[]);
    let mp = mount(&img, "");
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for th in 0..4u64 {
        let mp = mp.clone();
        let tx = tx.clone();
        handles.push(std::thread::spawn(move || {
            let c = Cred::root();
            let r = mp.root().unwrap();
            let own = r
                .mkdir(format!("thread {th}").as_bytes(), 0o755, &c)
                .unwrap();
            for i in 0..150u64 {
                let name = format!("shared t{th} file {i}");
                let data = pattern(1000 + (i as usize * 37) % 9000, th * 1000 + i);
                let f = r.create(name.as_bytes(), 0o644, &c).unwrap();
                f.write(&data, 0, 0, &c).unwrap();
                let g = own
                    .create(format!("own {i}").as_bytes(), 0o644, &c)
                    .unwrap();
                g.write(&data, 0, 0, &c).unwrap();
                assert_eq!(read_all(&f), data);
                if i % 3 == 0 {
                    r.remove(name.as_bytes(), &c).unwrap();
                }
                if i % 5 == 0 {
                    own.rename(
                        format!("own {i}").as_bytes(),
                        &r,
                        format!("moved t{th} {i}").as_bytes(),
                        &c,
                    )
                    .unwrap();
                }
                let _ = list(&r);
            }
            tx.send(()).unwrap();
        }));
    }
    for _ in 0..4 {
        rx.recv_timeout(Duration::from_secs(240))
            .expect("threads deadlocked or died");
    }
    for h in handles {
        h.join().unwrap();
    }
    mp.unmount(false).unwrap();
    assert_fsck_clean(&img);
    let mp = mount(&img, "ro");
    let names = list(&mp.root().unwrap());
    // Per thread: 150 shared files minus 50 removed, 30 moved, its directory.
    assert_eq!(names.len(), 4 * (100 + 30 + 1));
    mp.unmount(false).unwrap();
}

/// Walkers (readdir, lookup, stat, read, `..`) race with threads that
/// create, rename directories back and forth between two parents, write
/// and remove: no deadlock, no error other than the races explain
/// (ENOENT), and fsck.fat is clean afterwards.
#[test]
fn walkers_race_renames() {
    use rumpkern::{Errno, VType, VnodeRef};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn walk(d: &VnodeRef, depth: u32) {
        if depth > 8 {
            return;
        }
        let mut names = Vec::new();
        let _ = d.readdir(0, &mut |e| {
            names.push(e.name.to_vec());
            true
        });
        for n in names {
            match d.lookup(&n, &Cred::root()) {
                Ok(v) => {
                    let _ = v.getattr().unwrap();
                    if n == b"." || n == b".." {
                        continue;
                    }
                    if v.vtype() == VType::Dir {
                        walk(&v, depth + 1);
                    } else {
                        let mut b = vec![0u8; 8192];
                        let _ = v.read(&mut b, 0).unwrap();
                    }
                }
                Err(e) => assert_eq!(e, Errno::ENOENT, "lookup race"),
            }
        }
    }

    let t = TempDir::new("race");
    let img = t.path().join("img");
    mkfs(&img, 16, 512, 4, 32, &[]);
    let mp = mount(&img, "");
    let c = Cred::root();
    {
        let r = mp.root().unwrap();
        let a = r.mkdir(b"left", 0o755, &c).unwrap();
        r.mkdir(b"right", 0o755, &c).unwrap();
        for i in 0..10 {
            let d = a.mkdir(format!("mover {i}").as_bytes(), 0o755, &c).unwrap();
            d.create(b"inside", 0o644, &c)
                .unwrap()
                .write(b"data", 0, 0, &c)
                .unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let walks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let mut hs = Vec::new();
    for w in 0..2 {
        let (mp, stop, tx, walks) = (mp.clone(), stop.clone(), tx.clone(), walks.clone());
        hs.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                walk(&mp.root().unwrap(), 0);
                walks.fetch_add(1, Ordering::Relaxed);
            }
            tx.send(format!("walker {w}")).unwrap();
        }));
    }
    {
        let (mp, tx, walks) = (mp.clone(), tx.clone(), walks.clone());
        hs.push(std::thread::spawn(move || {
            let c = Cred::root();
            let r = mp.root().unwrap();
            let l = r.lookup(b"left", &c).unwrap();
            let rt = r.lookup(b"right", &c).unwrap();
            let mut round = 0;
            // Keep going until the walkers have raced with us for a while
            // (and stop after an even number of rounds).
            while round < 200 || walks.load(Ordering::Relaxed) < 100 || round % 2 == 1 {
                assert!(round < 1_000_000);
                let (from, to) = if round % 2 == 0 { (&l, &rt) } else { (&rt, &l) };
                for i in 0..10 {
                    from.rename(
                        format!("mover {i}").as_bytes(),
                        to,
                        format!("mover {i}").as_bytes(),
                        &c,
                    )
                    .unwrap();
                }
                round += 1;
            }
            tx.send("renamer".to_string()).unwrap();
        }));
    }
    {
        let (mp, tx) = (mp.clone(), tx.clone());
        hs.push(std::thread::spawn(move || {
            let c = Cred::root();
            // (The fixed FAT16 root has 512 slots: churn in a subdirectory.)
            let r = mp.root().unwrap().mkdir(b"churn", 0o755, &c).unwrap();
            for i in 0..1000 {
                let n = format!("churn {i}");
                let f = r.create(n.as_bytes(), 0o644, &c).unwrap();
                f.write(&pattern(3000, i), 0, 0, &c).unwrap();
                if i % 2 == 0 {
                    r.remove(n.as_bytes(), &c).unwrap();
                }
            }
            tx.send("churner".to_string()).unwrap();
        }));
    }
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(240))
            .expect("writers deadlocked or died");
    }
    stop.store(true, Ordering::Relaxed);
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(240))
            .expect("walkers deadlocked or died");
    }
    for h in hs {
        h.join().unwrap();
    }
    let r = mp.root().unwrap();
    let l = r.lookup(b"left", &c).unwrap();
    assert_eq!(
        list(&l).len(),
        10,
        "all movers back in left after an even number of rounds"
    );
    assert_eq!(list(&r).len(), 3);
    assert_eq!(list(&r.lookup(b"churn", &c).unwrap()).len(), 500);
    drop((r, l));
    mp.unmount(false).unwrap();
    assert_fsck_clean(&img);
}
