//! Several threads changing one mount at once (as p2k's FUSE workers do):
//! afterwards e2fsck must find the image clean and every file must hold
//! what its thread wrote; statvfs free counts must equal what e2fsck
//! counts.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use rumpkern::{Errno, SetAttr};

fn dumpe2fs_field(img: &std::path::Path, field: &str) -> u64 {
    let out = run(Command::new("dumpe2fs").arg("-h").arg(img));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in dumpe2fs output"));
    line.split(':').nth(1).unwrap().trim().parse().unwrap()
}

#[test]
fn threads_create_write_rename_unlink() {
    let t = TempDir::new("conc");
    let img = t.path().join("img");
    mkimage(&img, None, 64 * 1024, 1024, &[]);
    let mp = mount_img(&img, "rw").unwrap();
    let c = cred();
    let root = mp.root().unwrap();
    root.mkdir(b"shared", 0o755, &c).unwrap();
    drop(root);
    let nthreads = 4;
    let handles: Vec<_> = (0..nthreads)
        .map(|th| {
            let mp = Arc::clone(&mp);
            std::thread::spawn(move || {
                let c = cred();
                let root = mp.root().unwrap();
                let own = root.mkdir(format!("t{th}").as_bytes(), 0o755, &c).unwrap();
                let shared = root.lookup(b"shared", &c).unwrap();
                for i in 0..60u32 {
                    let name = format!("f{th}_{i}");
                    let dir = if i % 2 == 0 { &own } else { &shared };
                    let f = dir.create(name.as_bytes(), 0o644, &c).unwrap();
                    let data = pattern(1000 + (i as usize * 997) % 40_000, th * 1000 + i);
                    assert_eq!(f.write(&data, 0, 0, &c).unwrap(), data.len());
                    if i % 5 == 0 {
                        f.setattr(
                            &SetAttr {
                                size: Some(500),
                                ..Default::default()
                            },
                            &c,
                            true,
                        )
                        .unwrap();
                    }
                    drop(f);
                    if i % 3 == 0 {
                        dir.remove(name.as_bytes(), &c).unwrap();
                    } else if i % 3 == 1 {
                        // Rename into the other directory.
                        let other = if i % 2 == 0 { &shared } else { &own };
                        dir.rename(name.as_bytes(), other, format!("r{th}_{i}").as_bytes(), &c)
                            .unwrap();
                    }
                    if i % 10 == 0 {
                        let sub = own.mkdir(format!("sub{i}").as_bytes(), 0o700, &c).unwrap();
                        sub.mkdir(b"x", 0o700, &c).unwrap();
                        assert_eq!(
                            own.rmdir(format!("sub{i}").as_bytes(), &c),
                            Err(Errno::ENOTEMPTY)
                        );
                        sub.rmdir(b"x", &c).unwrap();
                        drop(sub);
                        own.rmdir(format!("sub{i}").as_bytes(), &c).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Every surviving file holds its thread's data.
    let root = mp.root().unwrap();
    for th in 0..nthreads {
        for i in 0..60u32 {
            let full = pattern(1000 + (i as usize * 997) % 40_000, th * 1000 + i);
            let want = if i % 5 == 0 { &full[..500] } else { &full[..] };
            let (dir, name) = match i % 3 {
                0 => continue,
                1 => (
                    if i % 2 == 0 {
                        "shared".to_string()
                    } else {
                        format!("t{th}")
                    },
                    format!("r{th}_{i}"),
                ),
                _ => (
                    if i % 2 == 0 {
                        format!("t{th}")
                    } else {
                        "shared".to_string()
                    },
                    format!("f{th}_{i}"),
                ),
            };
            let f = root
                .lookup(dir.as_bytes(), &cred())
                .unwrap()
                .lookup(name.as_bytes(), &cred())
                .unwrap();
            assert!(read_all(&f) == want, "{dir}/{name}");
        }
    }
    drop(root);
    let st = mp.statvfs().unwrap();
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        dumpe2fs_field(&img, "Free blocks:"),
        st.bfree,
        "statvfs free blocks"
    );
    assert_eq!(
        dumpe2fs_field(&img, "Free inodes:"),
        st.ffree,
        "statvfs free inodes"
    );
}
