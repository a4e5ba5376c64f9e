//! fsx-style random operations on a few files (writes at random offsets
//! with holes, truncates up and down, reads compared with a model),
//! remounting now and then; at the end fsck.fat -n is clean and mcopy
//! extracts exactly the model.

mod common;
use common::*;

use std::path::Path;

use rumpkern::types::ioflag;
use rumpkern::{Cred, Mount, SetAttr};
use std::sync::Arc;

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

fn run_ops(img: &Path, seed: u64, ops: usize, max_size: u64) -> Vec<(String, Vec<u8>)> {
    let c = Cred::root();
    let names = ["alpha.dat", "Beta File.bin", "gamma", "DELTA.TXT"];
    let mut model: Vec<Vec<u8>> = vec![Vec::new(); names.len()];
    let mut mp: Arc<Mount> = mount(img, "");
    {
        let r = mp.root().unwrap();
        for n in names {
            r.create(n.as_bytes(), 0o644, &c).unwrap();
        }
    }
    let mut rng = Rng(seed | 1);
    for op in 0..ops {
        let i = rng.below(names.len() as u64) as usize;
        let r = mp.root().unwrap();
        let vp = r.lookup(names[i].as_bytes(), &c).unwrap();
        let m = &mut model[i];
        match rng.below(10) {
            0..=3 => {
                let off = rng.below(max_size);
                let lim = if rng.below(4) == 0 { 70_000 } else { 3000 };
                let len = 1 + rng.below(lim);
                let data = pattern(len as usize, rng.next());
                let app = rng.below(8) == 0;
                let n = vp
                    .write(&data, off, if app { ioflag::IO_APPEND } else { 0 }, &c)
                    .unwrap();
                assert_eq!(n, data.len());
                let at = if app { m.len() } else { off as usize };
                if m.len() < at + data.len() {
                    m.resize(at + data.len(), 0);
                }
                m[at..at + data.len()].copy_from_slice(&data);
            }
            4..=5 => {
                let size = if rng.below(3) == 0 {
                    0
                } else {
                    rng.below(max_size)
                };
                vp.setattr(
                    &SetAttr {
                        size: Some(size),
                        ..Default::default()
                    },
                    &c,
                    false,
                )
                .unwrap();
                m.resize(size as usize, 0);
            }
            6..=8 => {
                let off = rng.below(m.len() as u64 + 100);
                let len = 1 + rng.below(100_000) as usize;
                let mut buf = vec![0u8; len];
                let n = vp.read(&mut buf, off).unwrap();
                let end = (off as usize + len).min(m.len());
                let want = if (off as usize) < m.len() {
                    &m[off as usize..end]
                } else {
                    &[][..]
                };
                assert_eq!(
                    n,
                    want.len(),
                    "op {op}: read length of {} at {off}",
                    names[i]
                );
                assert!(
                    &buf[..n] == want,
                    "op {op}: data of {} at {off}+{len}",
                    names[i]
                );
            }
            _ => {
                drop((vp, r));
                if rng.below(2) == 0 {
                    mp.unmount(false).unwrap();
                    mp = mount(img, "");
                } else {
                    mp.sync(true).unwrap();
                }
                continue;
            }
        }
        assert_eq!(
            vp.getattr().unwrap().size,
            m.len() as u64,
            "op {op}: size of {}",
            names[i]
        );
    }
    mp.unmount(false).unwrap();
    names.iter().map(|s| s.to_string()).zip(model).collect()
}

fn check(fat: u32, sector: u32, spc: u32, mb: u64, seed: u64) {
    let t = TempDir::new(&format!("fsx{fat}"));
    let img = t.path().join("img");
    mkfs(&img, fat, sector, spc, mb, &[]);
    // MSDOS_FSX_OPS=100000 for a long run.
    let ops = std::env::var("MSDOS_FSX_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2500);
    // MSDOS_FSX_SEED=N shifts the seeds.
    let shift: u64 = std::env::var("MSDOS_FSX_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let files = run_ops(
        &img,
        seed.wrapping_add(shift.wrapping_mul(1_000_003)),
        ops,
        600_000,
    );
    assert_fsck_clean(&img);
    let out = t.path().join("out");
    mcopy_out(&img, &out);
    let model = t.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    for (n, d) in files {
        std::fs::write(model.join(n), d).unwrap();
    }
    assert_same_tree(&out, &model);
}

#[test]
fn random_fat12() {
    check(12, 512, 4, 6, 11);
}

#[test]
fn random_fat16() {
    check(16, 512, 1, 16, 22);
}

#[test]
fn random_fat32_4k() {
    check(32, 4096, 1, 300, 33);
}
