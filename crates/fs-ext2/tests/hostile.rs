//! Hostile images: seeded corruptions of small ext2 (and ext4) images —
//! bit flips and targeted damage to the superblock, group descriptors,
//! inode tables and everything after — mounted in-process and walked
//! completely (readdir, lookup, getattr, read, readlink), some also
//! written to. Whatever happens must be an error code: no panic, no hang
//! (each image is bounded in time).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rumpkern::dev::BlockDevice;
use rumpkern::{FsType, MountArgs, VType, VnodeRef};

/// An image in memory.
struct MemDev(Mutex<Vec<u8>>);

impl BlockDevice for MemDev {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> rumpuser::RuResult<()> {
        let d = self.0.lock().unwrap();
        let s = d
            .get(off as usize..off as usize + buf.len())
            .ok_or(rumpuser::Error(5))?;
        buf.copy_from_slice(s);
        Ok(())
    }
    fn write_at(&self, off: u64, buf: &[u8]) -> rumpuser::RuResult<()> {
        let mut d = self.0.lock().unwrap();
        let s = d
            .get_mut(off as usize..off as usize + buf.len())
            .ok_or(rumpuser::Error(5))?;
        s.copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> rumpuser::RuResult<()> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn is_read_only(&self) -> bool {
        false
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn small_tree(root: &std::path::Path) {
    std::fs::create_dir_all(root.join("d1/d2/d3")).unwrap();
    std::fs::write(root.join("small"), b"small file").unwrap();
    std::fs::write(root.join("d1/ind"), pattern(300 * 1024, 1)).unwrap();
    std::fs::write(root.join("d1/d2/mid"), pattern(20 * 1024, 2)).unwrap();
    std::fs::write(root.join("d1/d2/d3/deep"), b"deep").unwrap();
    std::os::unix::fs::symlink("small", root.join("fast")).unwrap();
    std::os::unix::fs::symlink("x".repeat(100), root.join("slow")).unwrap();
    std::fs::hard_link(root.join("small"), root.join("d1/hard")).unwrap();
    for i in 0..120 {
        std::fs::write(
            root.join(format!("d1/e{i:03}_{}", "q".repeat(i % 30))),
            b"e",
        )
        .unwrap();
    }
    run_ok(std::process::Command::new("mkfifo").arg(root.join("fifo")));
}

/// Walk everything reachable; every error is accepted, bounded work.
fn walk(vp: &VnodeRef, depth: usize, budget: &mut usize, deadline: Instant) {
    if depth > 24 || *budget == 0 || Instant::now() > deadline {
        return;
    }
    let mut names = Vec::new();
    let mut off = 0;
    for _ in 0..64 {
        let mut got = 0;
        let mut next = off;
        let r = vp.readdir(off, &mut |e| {
            if got >= 64 {
                return false;
            }
            got += 1;
            next = e.next_offset;
            if e.name != b"." && e.name != b".." {
                names.push(e.name.to_vec());
            }
            true
        });
        if r.is_err() || got == 0 || next <= off {
            break;
        }
        off = next;
    }
    let c = cred();
    for n in names.iter().take(300) {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(child) = vp.lookup(n, &c) else {
            continue;
        };
        let Ok(va) = child.getattr() else { continue };
        match child.vtype() {
            VType::Dir => walk(&child, depth + 1, budget, deadline),
            VType::Reg => {
                let mut buf = vec![0u8; 64 * 1024];
                let mut o = 0u64;
                while o < va.size.min(1 << 20) {
                    match child.read(&mut buf, o) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => o += k as u64,
                    }
                }
                // A far-away read (holes, huge sizes).
                let _ = child.read(&mut buf[..100], va.size.saturating_sub(50));
            }
            VType::Lnk => {
                let _ = child.readlink();
            }
            _ => {}
        }
    }
}

/// A few writes on a (possibly corrupt) read-write mount.
fn scribble(mp: &Arc<rumpkern::Mount>) {
    let c = cred();
    let Ok(root) = mp.root() else { return };
    if let Ok(f) = root.create(b"newfile", 0o644, &c) {
        let _ = f.write(&pattern(70_000, 5), 0, 0, &c);
        let _ = f.setattr(
            &rumpkern::SetAttr {
                size: Some(1000),
                ..Default::default()
            },
            &c,
            true,
        );
    }
    let _ = root.mkdir(b"newdir", 0o755, &c);
    let _ = root.remove(b"small", &c);
    let _ = root.remove(b"fast", &c);
    if let Ok(d1) = root.lookup(b"d1", &c) {
        let _ = d1.remove(b"ind", &c);
        let _ = d1.remove(b"e005_qqqqq", &c);
        let _ = d1.rename(b"d2", &root, b"moved", &c);
    }
    let _ = root.rmdir(b"newdir", &c);
    let _ = root.symlink(b"sl", &[b'z'; 300], &c);
}

fn base_image(fstype: &str, bs: u32, journal_pending: bool) -> Vec<u8> {
    let t = TempDir::new("hostile-base");
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    small_tree(&tree);
    let img = t.path().join("img");
    mkimage_t(&img, Some(&tree), 2048, bs, fstype, &["-N", "256"]);
    if journal_pending {
        // Two committed transactions (a data block and the root directory
        // block rewritten with their own contents, then a revoke) left
        // for recovery: read-only mounts replay them in memory.
        let out = run(std::process::Command::new("debugfs")
            .arg("-R")
            .arg("blocks /small")
            .arg(&img));
        let fblk: u64 = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let base = std::fs::read(&img).unwrap();
        let bsz = bs as usize;
        std::fs::write(
            t.path().join("blk"),
            &base[fblk as usize * bsz..(fblk as usize + 1) * bsz],
        )
        .unwrap();
        let script = format!(
            "jo\njw -b {fblk} {b}\njc\njo\njw -b {fblk} {b}\njc\njo\njw -r {fblk}\njc\n",
            b = t.path().join("blk").display()
        );
        std::fs::write(t.path().join("script"), script).unwrap();
        run_ok(
            std::process::Command::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(t.path().join("script"))
                .arg(&img),
        );
    }
    std::fs::read(&img).unwrap()
}

fn corrupt(base: &[u8], seed: u64, bs: usize) -> Vec<u8> {
    let mut img = base.to_vec();
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let used = (img.len() / 4).max(64 * 1024); // metadata and data live early
    let n = 1 + r.below(6);
    for _ in 0..n {
        let kind = r.below(10);
        let off = match kind {
            0..=2 => 1024 + r.below(1024) as usize, // superblock
            3 => bs.max(2048) + r.below(bs as u64 * 2) as usize, // descriptors and after
            4..=5 => r.below((used / 8) as u64) as usize, // early metadata
            _ => r.below(used as u64) as usize,     // anywhere used
        };
        let Some(b) = img.get_mut(off) else { continue };
        match r.below(4) {
            0 => *b ^= 1 << r.below(8),
            1 => *b = r.next() as u8,
            2 => *b = 0,
            _ => *b = 0xff,
        }
    }
    img
}

/// Where the interesting structures of a base image are (byte offsets):
/// every used inode, every directory block, every indirect block.
struct Targets {
    inodes: Vec<usize>,
    dir_blocks: Vec<usize>,
    ind_blocks: Vec<usize>,
    inode_size: usize,
    bs: usize,
    blocks: u64,
    max_ino: u32,
}

fn targets(base: &[u8]) -> Targets {
    use fs_ext2::format::{le32, Geometry, GroupDesc, Superblock};
    let sb = Superblock::parse(&base[1024..2048]).unwrap();
    let geo = Geometry::new(&sb, base.len() as u64).unwrap();
    let bs = geo.block_size as usize;
    let gdt = (geo.first_data_block as usize + 1) * bs;
    let inode_off = |ino: u32| {
        let g = (ino - 1) / geo.inodes_per_group;
        let idx = ((ino - 1) % geo.inodes_per_group) as usize;
        let d =
            GroupDesc::parse(&base[gdt + g as usize * geo.desc_size as usize..], geo.is64).unwrap();
        d.inode_table as usize * bs + idx * geo.inode_size as usize
    };
    let mut t = Targets {
        inodes: Vec::new(),
        dir_blocks: Vec::new(),
        ind_blocks: Vec::new(),
        inode_size: geo.inode_size as usize,
        bs,
        blocks: geo.blocks_count,
        max_ino: geo.inodes_count,
    };
    // Walk the base image with the driver itself to find the inodes.
    let dev: Arc<dyn BlockDevice> = Arc::new(MemDev(Mutex::new(base.to_vec())));
    let mp = fs_ext2::EXT2FS
        .mount(Some(dev), &MountArgs::parse("ro"))
        .unwrap();
    let mut stack = vec![mp.root().unwrap()];
    while let Some(d) = stack.pop() {
        t.inodes.push(inode_off(d.ino() as u32));
        let size = d.getattr().unwrap().size;
        for lbn in 0..size / bs as u64 {
            if let Ok(Some(b)) = d.bmap(lbn) {
                t.dir_blocks.push(b as usize * bs);
            }
        }
        for (name, (ino, vt)) in list(&d) {
            let off = inode_off(ino as u32);
            if vt == VType::Dir {
                stack.push(d.lookup(&name, &cred()).unwrap());
                continue;
            }
            t.inodes.push(off);
            if vt == VType::Reg {
                for k in [12usize, 13] {
                    let p = le32(base, off + 40 + 4 * k).unwrap() as usize;
                    if p != 0 && p * bs < base.len() {
                        t.ind_blocks.push(p * bs);
                        if k == 13 {
                            let c = le32(base, p * bs).unwrap() as usize;
                            if c != 0 && c * bs < base.len() {
                                t.ind_blocks.push(c * bs);
                            }
                        }
                    }
                }
            }
        }
    }
    drop(stack);
    mp.unmount(true).unwrap();
    // The journal's first blocks (superblock, descriptors, data, commits)
    // when it is block-mapped (ext3).
    let jo = inode_off(8);
    if le32(base, jo + 32).unwrap() & 0x80000 == 0 {
        for k in 0..8 {
            let p = le32(base, jo + 40 + 4 * k).unwrap() as usize;
            if p != 0 && p * bs < base.len() {
                t.ind_blocks.push(p * bs);
            }
        }
    }
    t
}

/// Targeted damage: inode fields, directory entries (including entries
/// pointing at other inodes: cycles, links to directories), indirect
/// block pointers (past the end, at metadata, at themselves).
fn corrupt_targeted(base: &[u8], t: &Targets, seed: u64) -> Vec<u8> {
    let mut img = base.to_vec();
    let mut r = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    let put = |img: &mut Vec<u8>, off: usize, v: u32, len: usize| {
        if let Some(s) = img.get_mut(off..off + len) {
            s.copy_from_slice(&v.to_le_bytes()[..len]);
        }
    };
    let n = 1 + r.below(4);
    for _ in 0..n {
        let pick = |r: &mut Rng, v: &Vec<usize>| v.get(r.below(v.len() as u64) as usize).copied();
        let nasty = |r: &mut Rng| -> u32 {
            match r.below(7) {
                0 => 0,
                1 => u32::MAX,
                2 => t.blocks as u32,
                3 => (t.blocks as u32).wrapping_sub(1),
                4 => 1 + r.below(8) as u32,
                5 => r.below(t.max_ino as u64 + 2) as u32,
                _ => r.next() as u32,
            }
        };
        match r.below(3) {
            0 => {
                let Some(off) = pick(&mut r, &t.inodes) else {
                    continue;
                };
                // mode, size, links, blocks, flags, i_block[k], size_high, file_acl
                let fields: [(usize, usize); 8] = [
                    (0, 2),
                    (4, 4),
                    (26, 2),
                    (28, 4),
                    (32, 4),
                    (40 + 4 * r.below(15) as usize, 4),
                    (108, 4),
                    (104, 4),
                ];
                let (fo, fl) = fields[r.below(fields.len() as u64) as usize];
                let v = nasty(&mut r);
                put(&mut img, off + fo, v, fl);
                let _ = t.inode_size;
            }
            1 => {
                let Some(off) = pick(&mut r, &t.dir_blocks) else {
                    continue;
                };
                let at = off + (r.below(t.bs as u64 / 4) as usize) * 4;
                match r.below(3) {
                    0 => {
                        let v = r.below(t.max_ino as u64 + 2) as u32;
                        put(&mut img, at, v, 4)
                    }
                    1 => {
                        let v = nasty(&mut r) & 0xffff;
                        put(&mut img, at + 4, v, 2)
                    }
                    _ => {
                        let v = r.next() as u32;
                        put(&mut img, at + 6, v, 2)
                    }
                }
            }
            _ => {
                let Some(off) = pick(&mut r, &t.ind_blocks) else {
                    continue;
                };
                let at = off + (r.below(t.bs as u64 / 4) as usize) * 4;
                let v = if r.below(4) == 0 {
                    (off / t.bs) as u32
                } else {
                    nasty(&mut r)
                };
                put(&mut img, at, v, 4);
            }
        }
    }
    img
}

#[test]
fn thousands_of_corrupt_images() {
    let _ = env_logger::builder().is_test(true).try_init();
    let bases = [
        (base_image("ext2", 1024, false), 1024usize),
        (base_image("ext2", 4096, false), 4096),
        (base_image("ext4", 1024, false), 1024),
        (base_image("ext3", 1024, true), 1024),
    ];
    let tg: Vec<Targets> = bases.iter().map(|(b, _)| targets(b)).collect();
    for t in &tg {
        assert!(
            t.inodes.len() > 100 && !t.dir_blocks.is_empty(),
            "targets found: {} inodes, {} dir blocks",
            t.inodes.len(),
            t.dir_blocks.len()
        );
    }
    assert!(!tg[0].ind_blocks.is_empty(), "indirect blocks found");
    let per = std::env::var("EXT2_HOSTILE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(700u64);
    let mut mounted = 0;
    let start = Instant::now();
    for (bi, (base, bs)) in bases.iter().enumerate() {
        for seed in 0..per {
            let img = if seed % 2 == 0 {
                corrupt(base, seed * 31 + bi as u64, *bs)
            } else {
                corrupt_targeted(base, &tg[bi], seed * 17 + bi as u64)
            };
            let t0 = Instant::now();
            let rw = seed % 3 == 0;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let dev: Arc<dyn BlockDevice> = Arc::new(MemDev(Mutex::new(img)));
                let args = MountArgs::parse(if rw { "rw,force" } else { "ro" });
                let Ok(mp) = fs_ext2::EXT2FS.mount(Some(dev), &args) else {
                    return false;
                };
                if rw {
                    scribble(&mp);
                }
                if let Ok(root) = mp.root() {
                    let mut budget = 3000;
                    walk(&root, 0, &mut budget, t0 + Duration::from_secs(5));
                }
                let _ = mp.statvfs();
                let _ = mp.unmount(true);
                true
            }));
            match r {
                Ok(m) => mounted += m as u32,
                Err(_) => panic!("panic on base {bi} seed {seed}"),
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "base {bi} seed {seed} took {:?}",
                t0.elapsed()
            );
        }
    }
    eprintln!(
        "{} images, {mounted} mounted, {:?}",
        per * bases.len() as u64,
        start.elapsed()
    );
    assert!(
        mounted > 100,
        "too few corrupt images mounted to exercise anything ({mounted})"
    );
    // Bounded memory: the whole run's peak resident size stays small.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(kb) = peak {
        eprintln!("peak RSS {kb} kB");
        assert!(kb < 512 * 1024, "peak RSS {kb} kB: memory not bounded");
    }
}
