//! Random namespace operations (create, mkdir, write, unlink, rmdir,
//! rename across directories and onto existing entries, case-only renames)
//! against a case-insensitive model, with remounts; the tree is compared
//! after every remount and at the end, then fsck.fat -n and mcopy judge.

mod common;
use common::*;

use std::path::Path;

use rumpkern::{Cred, Errno, VType, VnodeRef};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Clone, Debug, PartialEq)]
enum N {
    F(Vec<u8>),
    D(Dir),
}

/// A directory: entries in insertion order, looked up case-insensitively.
#[derive(Clone, Debug, PartialEq, Default)]
struct Dir(Vec<(String, N)>);

impl Dir {
    fn idx(&self, name: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|(n, _)| n.to_uppercase() == name.to_uppercase())
    }
}

const NAMES: &[&str] = &[
    "alpha",
    "Alpha",
    "ALPHA",
    "beta.txt",
    "BETA.TXT",
    "a long name with spaces",
    "A Long Name With Spaces",
    "ünï",
    "ÜNÏ",
    "x",
    "X",
    "readme.md",
    "dir one",
    "Dir One",
    "twelve chars",
    "z.tar.gz",
];

/// All directory paths of the model (as component lists).
fn dirs(d: &Dir, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for (n, e) in &d.0 {
        if let N::D(sub) = e {
            prefix.push(n.clone());
            dirs(sub, prefix, out);
            prefix.pop();
        }
    }
}

fn at<'a>(d: &'a mut Dir, path: &[String]) -> &'a mut Dir {
    let mut cur = d;
    for c in path {
        let i = cur.idx(c).unwrap();
        cur = match &mut cur.0[i].1 {
            N::D(s) => s,
            N::F(_) => panic!("not a dir"),
        };
    }
    cur
}

fn vnode(root: &VnodeRef, path: &[String]) -> VnodeRef {
    let mut v = root.clone();
    for c in path {
        v = v.lookup(c.as_bytes(), &Cred::root()).unwrap();
    }
    v
}

/// The mounted directory equals the model (names with case, types, data).
fn same(v: &VnodeRef, d: &Dir) {
    let got = list(v);
    let mut want: Vec<&String> = d.0.iter().map(|(n, _)| n).collect();
    want.sort();
    let gotn: Vec<&String> = got.keys().collect();
    assert_eq!(gotn, want);
    for (n, e) in &d.0 {
        let c = v.lookup(n.as_bytes(), &Cred::root()).unwrap();
        match e {
            N::F(data) => {
                assert_eq!(c.vtype(), VType::Reg);
                assert!(read_all(&c) == *data, "contents of {n}");
            }
            N::D(sub) => {
                assert_eq!(c.vtype(), VType::Dir);
                same(&c, sub);
            }
        }
    }
}

fn write_model(d: &Dir, host: &Path) {
    std::fs::create_dir_all(host).unwrap();
    for (n, e) in &d.0 {
        match e {
            N::F(data) => std::fs::write(host.join(n), data).unwrap(),
            N::D(sub) => write_model(sub, &host.join(n)),
        }
    }
}

fn check(fat: u32, mb: u64, spc: u32, seed: u64, ops: usize) {
    // MSDOS_NAMES_OPS=N for a long run, MSDOS_NAMES_SEED=N to shift seeds.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let ops = env("MSDOS_NAMES_OPS").map_or(ops, |n| n as usize);
    let seed = seed.wrapping_add(env("MSDOS_NAMES_SEED").unwrap_or(0).wrapping_mul(7919));
    let t = TempDir::new(&format!("names{fat}"));
    let img = t.path().join("img");
    mkfs(&img, fat, 512, spc, mb, &[]);
    let c = Cred::root();
    let mut model = Dir::default();
    let mut mp = mount(&img, "");
    let mut rng = Rng(seed | 1);
    for op in 0..ops {
        let root = mp.root().unwrap();
        let mut all = Vec::new();
        dirs(&model, &mut Vec::new(), &mut all);
        let dpath = all[rng.below(all.len())].clone();
        let dv = vnode(&root, &dpath);
        let name = NAMES[rng.below(NAMES.len())].to_string();
        match rng.below(12) {
            0..=2 => {
                let data = pattern(rng.below(5000), op as u64);
                let md = at(&mut model, &dpath);
                match dv.create(name.as_bytes(), 0o644, &c) {
                    Ok(f) => {
                        assert!(
                            md.idx(&name).is_none(),
                            "op {op}: created {name} over an existing entry"
                        );
                        let n = match f.write(&data, 0, 0, &c) {
                            Ok(n) => n,
                            Err(Errno::ENOSPC) => 0,
                            Err(e) => panic!("op {op}: write: {e}"),
                        };
                        md.0.push((name, N::F(data[..n].to_vec())));
                    }
                    Err(Errno::ENOSPC) => assert!(md.idx(&name).is_none(), "op {op}"),
                    Err(e) => {
                        assert_eq!(e, Errno::EEXIST, "op {op}: create {name}");
                        assert!(md.idx(&name).is_some());
                    }
                }
            }
            3 => {
                let md = at(&mut model, &dpath);
                match dv.mkdir(name.as_bytes(), 0o755, &c) {
                    Ok(_) => {
                        assert!(md.idx(&name).is_none());
                        md.0.push((name, N::D(Dir::default())));
                    }
                    Err(Errno::ENOSPC) => assert!(md.idx(&name).is_none(), "op {op}"),
                    Err(e) => {
                        assert_eq!(e, Errno::EEXIST, "op {op}: mkdir {name}");
                        assert!(md.idx(&name).is_some());
                    }
                }
            }
            4..=5 => {
                let md = at(&mut model, &dpath);
                let expect = match md.idx(&name) {
                    None => Err(Errno::ENOENT),
                    Some(i) => match &md.0[i].1 {
                        N::F(_) => Ok(N::F(Vec::new())),
                        N::D(s) if s.0.is_empty() => Ok(N::D(Dir::default())),
                        N::D(_) => Err(Errno::ENOTEMPTY),
                    },
                };
                let r = match &expect {
                    Ok(N::D(_)) | Err(Errno::ENOTEMPTY) => dv.rmdir(name.as_bytes(), &c),
                    _ => dv.remove(name.as_bytes(), &c),
                };
                assert_eq!(
                    r.is_ok(),
                    expect.is_ok(),
                    "op {op}: remove {name}: {r:?} vs {expect:?}"
                );
                if let Err(e) = expect {
                    assert_eq!(r, Err(e), "op {op}: remove {name}");
                } else {
                    let i = md.idx(&name).unwrap();
                    md.0.remove(i);
                }
            }
            6..=8 => {
                // rename name in dpath to tname in tpath
                let tpath = all[rng.below(all.len())].clone();
                let tname = NAMES[rng.below(NAMES.len())].to_string();
                let tv = vnode(&root, &tpath);
                let r = dv.rename(name.as_bytes(), &tv, tname.as_bytes(), &c);
                let src_dir = at(&mut model, &dpath).clone();
                let Some(si) = src_dir.idx(&name) else {
                    assert_eq!(r, Err(Errno::ENOENT), "op {op}");
                    continue;
                };
                let src_is_dir = matches!(src_dir.0[si].1, N::D(_));
                let mut full_src = dpath.clone();
                full_src.push(src_dir.0[si].0.clone());
                let into_self = src_is_dir
                    && tpath.len() >= full_src.len()
                    && tpath[..full_src.len()]
                        .iter()
                        .zip(&full_src)
                        .all(|(a, b)| a.to_uppercase() == b.to_uppercase());
                let tdir = at(&mut model, &tpath).clone();
                let same_entry = dpath == tpath && tdir.idx(&tname) == Some(si);
                let expect: Result<(), Errno> = if same_entry {
                    Ok(())
                } else if into_self {
                    Err(Errno::EINVAL)
                } else {
                    match tdir.idx(&tname).map(|i| &tdir.0[i].1) {
                        None => Ok(()),
                        Some(N::F(_)) if src_is_dir => Err(Errno::ENOTDIR),
                        Some(N::D(_)) if !src_is_dir => Err(Errno::EISDIR),
                        Some(N::D(s)) if !s.0.is_empty() => Err(Errno::ENOTEMPTY),
                        Some(_) => Ok(()),
                    }
                };
                if r == Err(Errno::ENOSPC) && expect.is_ok() {
                    continue; // the target directory could not grow: nothing changed
                }
                assert_eq!(
                    r, expect,
                    "op {op}: rename {dpath:?}/{name} -> {tpath:?}/{tname}"
                );
                if r.is_ok() {
                    let sd = at(&mut model, &dpath);
                    let (_, node) = sd.0.remove(sd.idx(&name).unwrap());
                    let td = at(&mut model, &tpath);
                    if let Some(i) = td.idx(&tname) {
                        td.0.remove(i);
                    }
                    td.0.push((tname, node));
                }
            }
            9..=10 => {
                let md = at(&mut model, &dpath);
                if let Some(i) = md.idx(&name) {
                    if let N::F(data) = &mut md.0[i].1 {
                        let off = rng.below((data.len() + 3000).min(20_000));
                        let add = pattern(1 + rng.below(4000), op as u64 + 7);
                        let f = dv.lookup(name.as_bytes(), &c).unwrap();
                        let n = match f.write(&add, off as u64, 0, &c) {
                            Ok(n) => n,
                            Err(Errno::ENOSPC) => 0,
                            Err(e) => panic!("op {op}: write: {e}"),
                        };
                        if n > 0 {
                            if data.len() < off + n {
                                data.resize(off + n, 0);
                            }
                            data[off..off + n].copy_from_slice(&add[..n]);
                        }
                    }
                }
            }
            _ => {
                drop((root, dv));
                mp.unmount(false).unwrap();
                mp = mount(&img, "");
                same(&mp.root().unwrap(), &model);
            }
        }
    }
    same(&mp.root().unwrap(), &model);
    mp.unmount(false).unwrap();
    assert_fsck_clean(&img);
    let out = t.path().join("out");
    mcopy_out(&img, &out);
    let host = t.path().join("model");
    write_model(&model, &host);
    assert_same_tree(&out, &host);
}

#[test]
fn names_fat12() {
    check(12, 2, 1, 5, 1500);
}

#[test]
fn names_fat16() {
    check(16, 16, 1, 6, 1500);
}

#[test]
fn names_fat32() {
    check(32, 40, 1, 7, 1500);
}
