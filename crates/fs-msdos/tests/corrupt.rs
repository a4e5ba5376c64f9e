//! Hostile images: absurd BPB values are refused naming the field; broken
//! cluster chains (cycles, links past the end, free links), directory
//! cycles and bad long-name slots give EIO or a short-name fallback, never
//! a panic or a hang; and a seeded byte-corruption sweep over FAT12/16/32
//! images mounts, walks and writes each variant.

mod common;
use common::*;

use std::sync::Arc;
use std::time::Instant;

use fs_msdos::format::{Bpb, Geometry};
use rumpkern::dev::BlockDevice;
use rumpkern::{Cred, Errno, MountArgs, VType, VnodeRef};
use rumpuser::MemDevice;

fn c() -> Cred {
    Cred::root()
}

fn mem(img: &[u8]) -> Arc<dyn BlockDevice> {
    Arc::new(MemDevice::from_vec(img.to_vec()))
}

/// A FAT image with FILE.BIN (5000 bytes), a long-named file, and DIR with
/// enough entries to span several clusters.
fn base(fat: u32, mb: u64, spc: u32) -> (TempDir, Vec<u8>) {
    let t = TempDir::new(&format!("corrupt{fat}"));
    let img = t.path().join("img");
    mkfs(&img, fat, 512, spc, mb, &[]);
    let tree = t.path().join("tree");
    std::fs::create_dir_all(tree.join("DIR")).unwrap();
    std::fs::write(tree.join("FILE.BIN"), pattern(5000, 1)).unwrap();
    std::fs::write(tree.join("A Long File Name.txt"), b"long").unwrap();
    for i in 0..40 {
        std::fs::write(tree.join(format!("DIR/entry with long name {i}")), b"e").unwrap();
    }
    mcopy_in(&img, &tree);
    let data = std::fs::read(&img).unwrap();
    (t, data)
}

fn geometry(img: &[u8]) -> Geometry {
    Geometry::new(&Bpb::parse(&img[..512]).unwrap(), img.len() as u64).unwrap()
}

/// Offset of the root-directory short entry named `name11`.
fn root_entry(img: &[u8], g: &Geometry, name11: &[u8; 11]) -> usize {
    let (start, len) = if g.root_cluster == 0 {
        (g.root_offset as usize, g.root_entries as usize * 32)
    } else {
        (
            g.cluster_offset(g.root_cluster) as usize,
            g.cluster_size as usize,
        )
    };
    (start..start + len)
        .step_by(32)
        .find(|&o| &img[o..o + 11] == name11)
        .expect("entry")
}

fn start_of(img: &[u8], e: usize) -> u32 {
    (u16::from_le_bytes([img[e + 26], img[e + 27]]) as u32)
        | ((u16::from_le_bytes([img[e + 20], img[e + 21]]) as u32) << 16)
}

fn fat_get(img: &[u8], g: &Geometry, cl: u32) -> u32 {
    let f = g.fat_offset as usize;
    match g.fat_type {
        fs_msdos::format::FatType::Fat12 => {
            let p = f + (cl + cl / 2) as usize;
            let v = u16::from_le_bytes([img[p], img[p + 1]]) as u32;
            if cl & 1 == 1 {
                v >> 4
            } else {
                v & 0xFFF
            }
        }
        fs_msdos::format::FatType::Fat16 => {
            let p = f + cl as usize * 2;
            u16::from_le_bytes([img[p], img[p + 1]]) as u32
        }
        fs_msdos::format::FatType::Fat32 => {
            let p = f + cl as usize * 4;
            u32::from_le_bytes(img[p..p + 4].try_into().unwrap()) & 0x0FFF_FFFF
        }
    }
}

/// Set a FAT entry in every copy.
fn fat_set(img: &mut [u8], g: &Geometry, cl: u32, v: u32) {
    for k in 0..g.num_fats as usize {
        let f = g.fat_offset as usize + k * g.fat_bytes as usize;
        match g.fat_type {
            fs_msdos::format::FatType::Fat12 => {
                let p = f + (cl + cl / 2) as usize;
                let old = u16::from_le_bytes([img[p], img[p + 1]]);
                let n = if cl & 1 == 1 {
                    (old & 0x000F) | ((v as u16) << 4)
                } else {
                    (old & 0xF000) | (v as u16 & 0xFFF)
                };
                img[p..p + 2].copy_from_slice(&n.to_le_bytes());
            }
            fs_msdos::format::FatType::Fat16 => {
                let p = f + cl as usize * 2;
                img[p..p + 2].copy_from_slice(&(v as u16).to_le_bytes());
            }
            fs_msdos::format::FatType::Fat32 => {
                let p = f + cl as usize * 4;
                img[p..p + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

fn refused(img: &[u8]) -> Errno {
    fs_msdos::mount(mem(img), &MountArgs::parse("ro"))
        .err()
        .expect("mount must be refused")
}

#[test]
fn absurd_bpb_values_are_refused() {
    let (_t, img) = base(16, 16, 4);
    let mut z = img.clone();
    z[13] = 0;
    assert_eq!(refused(&z), Errno::EINVAL);
    assert_eq!(
        Geometry::new(&Bpb::parse(&z[..512]).unwrap(), z.len() as u64)
            .unwrap_err()
            .field,
        "BPB_SecPerClus"
    );
    let mut z = img.clone();
    z[16] = 0;
    assert_eq!(refused(&z), Errno::EINVAL);
    let mut z = img.clone();
    z[11..13].copy_from_slice(&100u16.to_le_bytes());
    assert_eq!(refused(&z), Errno::EINVAL);
    let mut z = img.clone();
    z[14..16].copy_from_slice(&0u16.to_le_bytes());
    assert_eq!(refused(&z), Errno::EINVAL);
    // Sizes past the device: a truncated image.
    let short = img[..img.len() / 2].to_vec();
    assert_eq!(refused(&short), Errno::EINVAL);
    let e = Geometry::new(&Bpb::parse(&short[..512]).unwrap(), short.len() as u64).unwrap_err();
    assert_eq!(e.field, "BPB_TotSec32");
    // FAT too small for the clusters.
    let mut z = img.clone();
    z[22..24].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(refused(&z), Errno::EINVAL);
    // FAT32: root cluster out of range, FSInfo outside the reserved area.
    let (_t2, img32) = base(32, 40, 1);
    let mut z = img32.clone();
    z[44..48].copy_from_slice(&0x0FFF_FFF0u32.to_le_bytes());
    assert_eq!(refused(&z), Errno::EINVAL);
    let mut z = img32.clone();
    z[48..50].copy_from_slice(&500u16.to_le_bytes());
    assert_eq!(refused(&z), Errno::EINVAL);
    // An invalid FSInfo free count is ignored (statvfs counts instead).
    let mut z = img32.clone();
    let g = geometry(&z);
    let fi = 512 * u16::from_le_bytes([z[48], z[49]]) as usize;
    let real = fs_msdos::mount(mem(&img32), &MountArgs::parse("ro"))
        .unwrap()
        .0
        .statvfs()
        .unwrap()
        .bfree;
    z[fi + 488..fi + 492].copy_from_slice(&(g.cluster_count + 100).to_le_bytes());
    let mp = fs_msdos::mount(mem(&z), &MountArgs::parse("ro")).unwrap().0;
    assert_eq!(mp.statvfs().unwrap().bfree, real);
}

#[test]
fn broken_chains_give_eio() {
    for fat in [12, 16, 32] {
        let (_t, img) = base(
            fat,
            match fat {
                12 => 6,
                16 => 16,
                _ => 40,
            },
            if fat == 32 { 1 } else { 4 },
        );
        let g = geometry(&img);
        let e = root_entry(&img, &g, b"FILE    BIN");
        let c1 = start_of(&img, e);
        let c2 = fat_get(&img, &g, c1);
        let mut variants = Vec::new();
        // Cycle, with a size that would need far more clusters.
        let mut z = img.clone();
        fat_set(&mut z, &g, c2, c1);
        z[e + 28..e + 32].copy_from_slice(&(64u32 << 20).to_le_bytes());
        variants.push(("cycle", z));
        // A link past the last cluster.
        let mut z = img.clone();
        fat_set(&mut z, &g, c1, g.max_cluster() + 1);
        variants.push(("past the end", z));
        // A link to a free cluster.
        let mut z = img.clone();
        fat_set(&mut z, &g, c1, 0);
        variants.push(("free link", z));
        // A chain that ends before the size.
        let mut z = img.clone();
        fat_set(&mut z, &g, c1, g.fat_type.eoc());
        variants.push(("short chain", z));
        // First cluster out of range.
        let mut z = img.clone();
        z[e + 26..e + 28].copy_from_slice(&0xFFF0u16.to_le_bytes());
        z[e + 20..e + 22].copy_from_slice(&0u16.to_le_bytes());
        variants.push(("bad start", z));
        for (what, z) in variants {
            let (mp, _) = fs_msdos::mount(mem(&z), &MountArgs::parse("ro")).unwrap();
            let r = mp.root().unwrap();
            let f = r.lookup(b"FILE.BIN", &c()).unwrap();
            let _ = f.getattr();
            let mut buf = vec![0u8; 1 << 20];
            let t0 = Instant::now();
            let mut res = Ok(0);
            let mut off = 0u64;
            for _ in 0..100 {
                res = f.read(&mut buf, off);
                match res {
                    Ok(0) | Err(_) => break,
                    Ok(n) => off += n as u64,
                }
            }
            assert_eq!(res, Err(Errno::EIO), "FAT{fat} {what}");
            assert!(
                t0.elapsed().as_secs() < 10,
                "FAT{fat} {what}: took {:?}",
                t0.elapsed()
            );
        }
    }
}

#[test]
fn directory_cycle_and_bad_long_names() {
    for fat in [16, 32] {
        let (_t, img) = base(fat, if fat == 32 { 40 } else { 16 }, 1);
        let g = geometry(&img);
        let e = root_entry(&img, &g, b"DIR        ");
        let d1 = start_of(&img, e);
        // Walk DIR's chain to its last cluster and point it back at the first.
        let mut last = d1;
        let mut n = 1;
        loop {
            let v = fat_get(&img, &g, last);
            if v >= g.fat_type.eoc_min() {
                break;
            }
            last = v;
            n += 1;
        }
        assert!(n >= 2, "DIR spans {n} clusters");
        let mut z = img.clone();
        fat_set(&mut z, &g, last, d1);
        let (mp, _) = fs_msdos::mount(mem(&z), &MountArgs::parse("ro")).unwrap();
        let r = mp.root().unwrap();
        let d = r.lookup(b"DIR", &c()).unwrap();
        let t0 = Instant::now();
        assert_eq!(d.lookup(b"no such name", &c()).unwrap_err(), Errno::EIO);
        assert_eq!(d.readdir(2, &mut |_| true), Err(Errno::EIO));
        assert!(t0.elapsed().as_secs() < 10);
        drop((r, d));

        // Bad checksum in the long name of "A Long File Name.txt": the short
        // name shows instead; a missing slot in the sequence likewise.
        let (root_start, root_len) = if g.root_cluster == 0 {
            (g.root_offset as usize, g.root_entries as usize * 32)
        } else {
            (
                g.cluster_offset(g.root_cluster) as usize,
                g.cluster_size as usize,
            )
        };
        let lfn_slot = (root_start..root_start + root_len)
            .step_by(32)
            .find(|&o| {
                img[o + 11] == 0x0F && img[o] & 0x40 != 0 && {
                    let u: Vec<u16> = [1usize, 3, 5, 7, 9]
                        .iter()
                        .map(|&k| u16::from_le_bytes([img[o + k], img[o + k + 1]]))
                        .collect();
                    String::from_utf16_lossy(&u) == "ame.t"
                }
            })
            .expect("LFN slot");
        let mut z = img.clone();
        z[lfn_slot + 13] ^= 0x55;
        let (mp, _) = fs_msdos::mount(mem(&z), &MountArgs::parse("ro")).unwrap();
        let names: Vec<String> = list(&mp.root().unwrap()).into_keys().collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("ALONGF") || n.starts_with("ALONGF~")),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n == "A Long File Name.txt"),
            "{names:?}"
        );
        let mut z = img.clone();
        z[lfn_slot] = 0x41 + 5; // ordinal that does not match the sequence
        let (mp, _) = fs_msdos::mount(mem(&z), &MountArgs::parse("ro")).unwrap();
        let names: Vec<String> = list(&mp.root().unwrap()).into_keys().collect();
        assert!(
            !names.iter().any(|n| n == "A Long File Name.txt"),
            "{names:?}"
        );
    }
}

/// Walk everything reachable (bounded), reading every file; errors allowed.
fn walk(d: &VnodeRef, depth: u32, budget: &mut u32) {
    if depth > 12 || *budget == 0 {
        return;
    }
    let mut names = Vec::new();
    let mut off = 0;
    for _ in 0..100 {
        let mut got = 0;
        let r = d.readdir(off, &mut |e| {
            got += 1;
            off = e.next_offset;
            names.push((e.name.to_vec(), e.vtype));
            names.len() < 3000
        });
        if r.is_err() || got == 0 || names.len() >= 3000 {
            break;
        }
    }
    for (n, _) in names {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        if n == b"." || n == b".." {
            let _ = d.lookup(&n, &c());
            continue;
        }
        let Ok(vp) = d.lookup(&n, &c()) else { continue };
        let _ = vp.getattr();
        if vp.vtype() == VType::Dir {
            walk(&vp, depth + 1, budget);
        } else {
            let mut buf = vec![0u8; 65536];
            let mut off = 0u64;
            for _ in 0..64 {
                match vp.read(&mut buf, off) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => off += k as u64,
                }
            }
        }
    }
}

/// Seeded corruptions of five kinds, in turn: random bytes in the metadata
/// areas (boot sector, FATs, root directory, first data clusters);
/// cross-linked chains; FAT entries set to out-of-range, free, bad,
/// reserved or cyclic values; a directory whose end marker is gone (its
/// slack filled with garbage entries); long-name slots with bad ordinals
/// and checksums. 700 variants per FAT type. Each is mounted read-only and
/// walked, then mounted read-write (forced) and written.
#[test]
fn seeded_corruption_sweep() {
    let mut total = 0;
    let t0 = Instant::now();
    for (fat, mb, spc) in [(12u32, 4u64, 4u32), (16, 16, 4), (32, 34, 1)] {
        let (_t, img) = base(fat, mb, spc);
        let g = geometry(&img);
        let meta_end = (g.data_offset + 64 * g.cluster_size as u64).min(img.len() as u64) as usize;
        let file = start_of(&img, root_entry(&img, &g, b"FILE    BIN"));
        let dir = start_of(&img, root_entry(&img, &g, b"DIR        "));
        // Clusters in use by the test tree (to aim FAT corruption at them).
        let used: Vec<u32> = (2..=g.max_cluster())
            .filter(|&cl| fat_get(&img, &g, cl) != 0)
            .collect();
        let (root_start, root_len) = if g.root_cluster == 0 {
            (g.root_offset as usize, g.root_entries as usize * 32)
        } else {
            (
                g.cluster_offset(g.root_cluster) as usize,
                g.cluster_size as usize,
            )
        };
        for seed in 0..700u64 {
            let mut z = img.clone();
            let rnd = pattern(64, seed * 31 + fat as u64);
            let r32 = |k: usize| {
                u32::from_le_bytes([
                    rnd[k % 61],
                    rnd[k % 61 + 1],
                    rnd[k % 61 + 2],
                    rnd[k % 61 + 3],
                ])
            };
            match seed % 5 {
                0 => {
                    let nflips = 1 + (rnd[0] as usize % 16);
                    for k in 0..nflips {
                        let pos = r32(1 + k * 3) as usize;
                        let at = match k % 4 {
                            0 => pos % 512,
                            1 => g.fat_offset as usize + pos % (2 * g.fat_bytes as usize).max(1),
                            _ => pos % meta_end,
                        };
                        if at < z.len() {
                            z[at] = rnd[(k * 7) % 64];
                        }
                    }
                }
                1 => {
                    // Cross-link: a cluster of one chain points into another.
                    let a = used[r32(1) as usize % used.len()];
                    let b = if rnd[5] & 1 == 0 { file } else { dir };
                    fat_set(&mut z, &g, a, b);
                    if rnd[6] & 1 == 0 {
                        fat_set(&mut z, &g, b, a);
                    }
                }
                2 => {
                    for k in 0..1 + (rnd[0] as usize % 4) {
                        let a = used[r32(1 + k * 4) as usize % used.len()];
                        let v = match rnd[10 + k] % 6 {
                            0 => g.max_cluster() + 1 + r32(20 + k) % 1000,
                            1 => 0,
                            2 => g.fat_type.bad(),
                            3 => 1,
                            4 => a,
                            _ => r32(30 + k) & g.fat_type.mask(),
                        };
                        fat_set(&mut z, &g, a, v);
                    }
                }
                3 => {
                    // No end marker: garbage entries to the end of DIR's first
                    // cluster, or the root's region.
                    let (start, len) = if rnd[0] & 1 == 0 {
                        (g.cluster_offset(dir) as usize, g.cluster_size as usize)
                    } else {
                        (root_start, root_len)
                    };
                    let garbage = pattern(len, seed);
                    for o in (start..start + len).step_by(32) {
                        if z[o] == 0 {
                            z[o..o + 32].copy_from_slice(&garbage[o - start..o - start + 32]);
                            if z[o] == 0 {
                                z[o] = b'G';
                            }
                        }
                    }
                }
                _ => {
                    // Long-name slots: bad ordinals and checksums.
                    for o in (root_start..root_start + root_len).step_by(32) {
                        if z[o + 11] == 0x0F && z[o] != 0xE5 {
                            match rnd[(o / 32) % 64] % 4 {
                                0 => z[o] = rnd[1],
                                1 => z[o + 13] = rnd[2],
                                2 => z[o] = 0x40 | (rnd[3] & 0x3F),
                                _ => {}
                            }
                        }
                    }
                }
            }
            total += 1;
            // One device for both mounts: the read-only one writes nothing.
            let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::from_vec(z));
            if let Ok((mp, _)) = fs_msdos::mount(dev.clone(), &MountArgs::parse("ro")) {
                if let Ok(r) = mp.root() {
                    let mut budget = 4000;
                    walk(&r, 0, &mut budget);
                    let _ = mp.statvfs();
                }
                let _ = mp.unmount(true);
            }
            if let Ok((mp, _)) = fs_msdos::mount(dev, &MountArgs::parse("force")) {
                if let Ok(r) = mp.root() {
                    if let Ok(f) = r.create(b"new file", 0o644, &c()) {
                        let _ = f.write(&pattern(10000, seed), 0, 0, &c());
                    }
                    let _ = r.mkdir(b"new dir", 0o755, &c());
                    let _ = r.rename(b"FILE.BIN", &r, b"renamed", &c());
                    let _ = r.remove(b"A Long File Name.txt", &c());
                    if let Ok(d) = r.lookup(b"DIR", &c()) {
                        let _ = d.remove(b"entry with long name 3", &c());
                        let _ = r.rename(b"DIR", &r, b"DIR2", &c());
                    }
                    let mut budget = 2000;
                    walk(&r, 0, &mut budget);
                }
                let _ = mp.unmount(true);
            }
        }
    }
    assert_eq!(total, 2100);
    assert!(
        t0.elapsed().as_secs() < 300,
        "sweep took {:?}",
        t0.elapsed()
    );
}
