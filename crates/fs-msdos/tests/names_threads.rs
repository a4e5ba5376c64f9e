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
