//! Seeded random operations checked against a model (fsx-style for file
//! data, plus a directory workload), with remounts in between; e2fsck
//! judges the image at the end of each run.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use rumpkern::{Errno, SetAttr, VType};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn fsx(img: &Path, seed: u64, ops: usize, bs: u32) {
    let mut r = Rng(seed | 1);
    let mut model: Vec<u8> = Vec::new();
    let c = cred();
    let mut mp = mount_img(img, "rw").unwrap();
    let mut f = mp.root().unwrap().create(b"fsx", 0o644, &c).unwrap();
    // Offsets reach double indirect blocks with 1 KiB blocks.
    let maxlen: u64 = if bs == 1024 { 3 << 20 } else { 12 << 20 };
    for op in 0..ops {
        match r.below(10) {
            0..=3 => {
                let off = r.below(maxlen);
                let big = r.below(4) == 0;
                let len = 1 + r.below(if big { 200_000 } else { 5000 });
                let data = pattern(len as usize, r.next() as u32);
                assert_eq!(f.write(&data, off, 0, &c).unwrap(), data.len(), "op {op}");
                let end = (off + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            }
            4 => {
                let size = r.below(maxlen);
                f.setattr(
                    &SetAttr {
                        size: Some(size),
                        ..Default::default()
                    },
                    &c,
                    true,
                )
                .unwrap();
                model.resize(size as usize, 0);
            }
            5 => {
                // Small truncation inside the last block, then grow.
                let size = (model.len() as u64).saturating_sub(r.below(bs as u64));
                f.setattr(
                    &SetAttr {
                        size: Some(size),
                        ..Default::default()
                    },
                    &c,
                    true,
                )
                .unwrap();
                model.resize(size as usize, 0);
            }
            6 => {
                // Remount: everything must survive.
                drop(f);
                mp.unmount(false).unwrap();
                mp = mount_img(img, "rw").unwrap();
                f = mp.root().unwrap().lookup(b"fsx", &c).unwrap();
            }
            _ => {
                let off = r.below(model.len() as u64 + 100);
                let len = 1 + r.below(70_000) as usize;
                let mut buf = vec![0u8; len];
                let n = f.read(&mut buf, off).unwrap();
                let want = model
                    .get(off as usize..)
                    .map(|m| &m[..m.len().min(len)])
                    .unwrap_or(&[]);
                assert_eq!(n, want.len(), "op {op}: read length at {off}");
                assert!(
                    buf[..n] == *want,
                    "op {op}: read at {off} len {len} differs from the model"
                );
            }
        }
        assert_eq!(
            f.getattr().unwrap().size,
            model.len() as u64,
            "op {op}: size"
        );
    }
    assert!(read_all(&f) == model, "final content");
    drop(f);
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(img);
    assert_eq!(code, 0, "seed {seed}: {out}");
}

#[test]
fn fsx_1k_blocks() {
    for seed in [1u64, 2, 3] {
        let t = TempDir::new("fsx1k");
        let img = t.path().join("img");
        mkimage(&img, None, 32 * 1024, 1024, &[]);
        fsx(&img, seed, 400, 1024);
    }
}

#[test]
fn fsx_4k_blocks() {
    for seed in [11u64, 12] {
        let t = TempDir::new("fsx4k");
        let img = t.path().join("img");
        mkimage(&img, None, 64 * 1024, 4096, &[]);
        fsx(&img, seed, 400, 4096);
    }
}

/// Random create/unlink/rename/mkdir/rmdir/link in a few directories,
/// checked against a model; readdir with small batches while entries
/// come and go must list every entry that existed throughout exactly once.
#[test]
fn directory_workload_against_model() {
    let t = TempDir::new("dirs");
    let img = t.path().join("img");
    mkimage(&img, None, 16 * 1024, 1024, &[]);
    let c = cred();
    let mut mp = mount_img(&img, "rw").unwrap();
    let mut r = Rng(77);
    let dirs = ["a", "b", "c"];
    {
        let root = mp.root().unwrap();
        for d in dirs {
            root.mkdir(d.as_bytes(), 0o755, &c).unwrap();
        }
    }
    // model: (dir, name) -> (is_dir, ino)
    let mut model: BTreeMap<(usize, String), (bool, u64)> = BTreeMap::new();
    for op in 0..6000 {
        let root = mp.root().unwrap();
        let di = r.below(3) as usize;
        let dv = root.lookup(dirs[di].as_bytes(), &c).unwrap();
        let name = format!("n{}_{}", r.below(400), "x".repeat(r.below(60) as usize));
        let key = (di, name.clone());
        match r.below(8) {
            0..=2 => {
                let res = dv.create(name.as_bytes(), 0o644, &c);
                match model.get(&key) {
                    Some(_) => assert_eq!(res.err(), Some(Errno::EEXIST), "op {op}"),
                    None => {
                        model.insert(key, (false, res.unwrap().ino()));
                    }
                }
            }
            3 => {
                let res = dv.mkdir(name.as_bytes(), 0o755, &c);
                match model.get(&key) {
                    Some(_) => assert_eq!(res.err(), Some(Errno::EEXIST)),
                    None => {
                        model.insert(key, (true, res.unwrap().ino()));
                    }
                }
            }
            4 => match model.get(&key) {
                Some((false, _)) => {
                    dv.remove(name.as_bytes(), &c).unwrap();
                    model.remove(&key);
                }
                Some((true, _)) => {
                    dv.rmdir(name.as_bytes(), &c).unwrap();
                    model.remove(&key);
                }
                None => assert_eq!(dv.remove(name.as_bytes(), &c), Err(Errno::ENOENT)),
            },
            5 | 6 => {
                let tj = r.below(3) as usize;
                let tv = root.lookup(dirs[tj].as_bytes(), &c).unwrap();
                let tname = format!("m{}", r.below(150));
                let tkey = (tj, tname.clone());
                let res = dv.rename(name.as_bytes(), &tv, tname.as_bytes(), &c);
                match (model.get(&key).copied(), model.get(&tkey).copied()) {
                    (None, _) => assert_eq!(res, Err(Errno::ENOENT)),
                    (Some(_), _) if key == tkey => res.unwrap(),
                    (Some((true, _)), Some((false, _))) => assert_eq!(res, Err(Errno::ENOTDIR)),
                    (Some((false, _)), Some((true, _))) => assert_eq!(res, Err(Errno::EISDIR)),
                    (Some(v), _) => {
                        res.unwrap_or_else(|e| panic!("op {op}: rename: {e}"));
                        model.remove(&key);
                        model.insert(tkey, v);
                    }
                }
            }
            _ => {
                // Remount now and then.
                if r.below(20) == 0 {
                    drop(dv);
                    drop(root);
                    mp.unmount(false).unwrap();
                    mp = mount_img(&img, "rw").unwrap();
                }
            }
        }
    }
    // Check every directory against the model, including inode numbers
    // and types, and the link counts of directories.
    let root = mp.root().unwrap();
    for (di, d) in dirs.iter().enumerate() {
        let dv = root.lookup(d.as_bytes(), &c).unwrap();
        let got = list(&dv);
        let want: BTreeMap<Vec<u8>, (u64, VType)> = model
            .iter()
            .filter(|((i, _), _)| *i == di)
            .map(|((_, n), (isdir, ino))| {
                (
                    n.as_bytes().to_vec(),
                    (*ino, if *isdir { VType::Dir } else { VType::Reg }),
                )
            })
            .collect();
        assert_eq!(got, want, "directory {d}");
        let subdirs = want.values().filter(|(_, t)| *t == VType::Dir).count() as u32;
        assert_eq!(dv.getattr().unwrap().nlink, 2 + subdirs, "links of {d}");
    }
    drop(root);
    mp.unmount(false).unwrap();
    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
}
