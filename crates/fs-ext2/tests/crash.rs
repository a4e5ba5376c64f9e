//! Crash consistency: the device stops persisting after write N (a power
//! cut) in the middle of a create/write/fsync/rename/unlink workload, for
//! many N. Each time `e2fsck -fp` (preen) must repair the image without
//! asking, `e2fsck -fn` must then find it clean, and every file fsynced
//! before the cut (and not changed after) must read back intact.

mod common;

use std::sync::Arc;

use common::*;
use rumpkern::dev::BlockDevice;
use rumpkern::{FsType, MountArgs};
use rumpuser::{FaultDevice, MemDevice};

/// (name, content) of the files fsynced, with the write count after each
/// fsync returned.
type Synced = Vec<(String, Vec<u8>, u64)>;

fn workload(mp: &Arc<rumpkern::Mount>, fault: &FaultDevice) -> Synced {
    let c = cred();
    let mut synced = Vec::new();
    let Ok(root) = mp.root() else { return synced };
    let Ok(d) = root.mkdir(b"dir", 0o755, &c) else {
        return synced;
    };
    for i in 0..12u32 {
        let name = format!("file{i}");
        // file9 is big enough for the direct-to-device write path.
        let len = if i == 9 { 300_000 } else { 3000 + i as usize * 5000 };
        let data = pattern(len, i);
        let Ok(f) = d.create(name.as_bytes(), 0o644, &c) else {
            continue;
        };
        if f.write(&data, 0, 0, &c).is_err() {
            continue;
        }
        if i % 3 == 0 && i % 4 != 2 && f.fsync(false).is_ok() {
            synced.push((name.clone(), data.clone(), fault.writes()));
        }
        drop(f);
        match i % 4 {
            1 => {
                let _ = d.rename(name.as_bytes(), &root, format!("moved{i}").as_bytes(), &c);
            }
            2 => {
                let _ = d.remove(name.as_bytes(), &c);
            }
            _ => {}
        }
        match i % 5 {
            0 => {
                if let Ok(sd) = d.mkdir(format!("sub{i}").as_bytes(), 0o755, &c) {
                    let _ = sd
                        .create(b"inner", 0o600, &c)
                        .map(|f| f.write(b"inner data", 0, 0, &c));
                    let _ = sd.symlink(b"fast", b"target", &c);
                    let _ = sd.symlink(b"slow", &[b's'; 300], &c);
                }
            }
            1 => {
                let _ = d
                    .link(&root, format!("hard{i}").as_bytes(), &c)
                    .or_else(|_| {
                        d.lookup(b"file0", &c)
                            .and_then(|f| d.link(&f, format!("hard{i}").as_bytes(), &c))
                    });
            }
            2 => {
                let _ = d.mkdir(b"tmpdir", 0o700, &c);
                let _ = d.rmdir(b"tmpdir", &c);
                let _ = root.mknod(
                    format!("fifo{i}").as_bytes(),
                    rumpkern::VType::Fifo,
                    0o600,
                    0,
                    &c,
                );
            }
            3 => {
                // Rename over an existing file.
                if let Ok(v) = d.create(format!("victim{i}").as_bytes(), 0o644, &c) {
                    let _ = v.write(b"victim", 0, 0, &c);
                }
                let _ = d
                    .create(format!("new{i}").as_bytes(), 0o644, &c)
                    .map(|f| f.write(b"new", 0, 0, &c));
                let _ = d.rename(
                    format!("new{i}").as_bytes(),
                    &d,
                    format!("victim{i}").as_bytes(),
                    &c,
                );
            }
            _ => {}
        }
        if i == 6 {
            let _ = root.mkdir(b"sub", 0o700, &c);
            let _ = root.rmdir(b"sub", &c);
            if let Ok(f) = d.lookup(b"file4", &c) {
                let _ = f.setattr(
                    &rumpkern::SetAttr {
                        size: Some(100),
                        ..Default::default()
                    },
                    &c,
                    true,
                );
            }
        }
    }
    synced
}

/// Removals and hard links after everything is durable: unlinks of
/// single-link files (freed at once), of hard-linked ones (a count drops),
/// of a file still open (freed at its last close), links, and new files
/// that reuse the freed inodes and blocks. Returns the surviving files
/// (all fsynced before the removals began).
fn unlink_workload(mp: &Arc<rumpkern::Mount>, fault: &FaultDevice) -> Synced {
    let c = cred();
    let mut synced = Vec::new();
    let Ok(root) = mp.root() else { return synced };
    let Ok(d) = root.mkdir(b"dir", 0o755, &c) else {
        return synced;
    };
    let mut files = Vec::new();
    for i in 0..24u32 {
        let name = format!("file{i}");
        let data = pattern(2000 + i as usize * 3000, i);
        let Ok(f) = d.create(name.as_bytes(), 0o644, &c) else { continue };
        if f.write(&data, 0, 0, &c).is_err() {
            continue;
        }
        if i % 4 == 1 {
            let _ = d.link(&f, format!("link{i}").as_bytes(), &c);
        }
        files.push((name, data));
    }
    if mp.sync(true).is_err() {
        return synced;
    }
    let at = fault.writes();
    let held = d.lookup(b"file3", &c).ok();
    for (i, (name, data)) in files.into_iter().enumerate() {
        match i % 3 {
            0 => {
                let _ = d.remove(name.as_bytes(), &c);
                // Unlinked, not synced: a cut may bring it back, but only
                // with its own data (its blocks are not reused before the
                // unlink is durable).
                synced.push((format!("?{name}"), data, at));
            }
            1 => {
                let _ = d.remove(format!("link{i}").as_bytes(), &c);
                synced.push((name, data, at));
            }
            _ => synced.push((name, data, at)),
        }
        if i % 4 == 2 {
            let _ = d
                .create(format!("new{i}").as_bytes(), 0o644, &c)
                .map(|f| f.write(&pattern(5000, 100 + i as u32), 0, 0, &c));
            let _ = root.link(&d, format!("bad{i}").as_bytes(), &c); // EPERM: a directory
        }
    }
    drop(held); // file3's last reference: freed now
    let _ = d.create(b"last", 0o644, &c).map(|f| f.write(b"last", 0, 0, &c));
    synced
}

#[test]
fn power_cut_after_write_n() {
    cuts(1024, workload);
}

#[test]
fn power_cut_after_write_n_4k() {
    cuts(4096, workload);
}

#[test]
fn power_cut_during_unlinks_and_links() {
    cuts(1024, unlink_workload);
    cuts(4096, unlink_workload);
}

fn cuts(bs: u32, workload: fn(&Arc<rumpkern::Mount>, &FaultDevice) -> Synced) {
    let t = TempDir::new("crash");
    let img = t.path().join("base");
    mkimage(&img, None, 16 * 1024, bs, &[]);
    let base = std::fs::read(&img).unwrap();
    // Dry run: how many writes does the workload make?
    let total = {
        let fault = Arc::new(FaultDevice::new(Arc::new(MemDevice::from_vec(
            base.clone(),
        ))));
        let dev: Arc<dyn BlockDevice> = fault.clone();
        let mp = fs_ext2::EXT2FS
            .mount(Some(dev), &MountArgs::parse("rw"))
            .unwrap();
        workload(&mp, &fault);
        mp.unmount(false).unwrap();
        fault.writes()
    };
    assert!(total > 20, "workload made only {total} writes");
    let step = (total / 200).max(1);
    let mut cuts = 0;
    let mut repaired = 0;
    let mut n = 1;
    while n <= total {
        let mem = Arc::new(MemDevice::from_vec(base.clone()));
        let fault = Arc::new(FaultDevice::new(mem.clone()));
        fault.stop_persisting_after(n);
        let dev: Arc<dyn BlockDevice> = fault.clone();
        let mp = fs_ext2::EXT2FS
            .mount(Some(dev), &MountArgs::parse("rw"))
            .unwrap();
        let synced = workload(&mp, &fault);
        // The crash: no unmount; whatever the cache still writes is lost.
        drop(mp);
        let path = t.path().join(format!("cut{n}"));
        std::fs::write(&path, mem.snapshot()).unwrap();
        let out = run(std::process::Command::new("e2fsck").arg("-fp").arg(&path));
        let code = out.status.code().unwrap_or(-1);
        repaired += (code == 1) as u32;
        assert!(
            code == 0 || code == 1,
            "cut after write {n} of {total}: e2fsck -p exit {code}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (code, out) = e2fsck(&path);
        assert_eq!(
            code, 0,
            "cut after write {n}: still unclean after preen:\n{out}"
        );
        // Files fsynced before the cut are intact.
        let mp = mount_img(&path, "ro").unwrap();
        let root = mp.root().unwrap();
        for (name, data, at) in synced.iter().filter(|(_, _, at)| *at <= n) {
            if let Some(name) = name.strip_prefix('?') {
                let back = root
                    .lookup(b"dir", &cred())
                    .and_then(|d| d.lookup(name.as_bytes(), &cred()));
                if let Ok(f) = back {
                    let got = read_all(&f);
                    assert!(
                        got == *data,
                        "cut after write {n}: unlinked {name} came back with other data"
                    );
                }
                continue;
            }
            let f = root
                .lookup(b"dir", &cred())
                .and_then(|d| d.lookup(name.as_bytes(), &cred()))
                .or_else(|_| root.lookup(name.replace("file", "moved").as_bytes(), &cred()));
            let f = f.unwrap_or_else(|e| {
                panic!("cut after write {n}: fsynced {name} (at write {at}) lost: {e}")
            });
            let got = read_all(&f);
            assert!(got == *data, "cut after write {n}: {name} content");
        }
        drop(root);
        drop(mp);
        std::fs::remove_file(&path).unwrap();
        cuts += 1;
        n += step;
    }
    eprintln!("{cuts} power cuts over {total} writes, {repaired} needed repairs");
    assert!(
        repaired > 0,
        "no cut ever needed a repair: the test cuts nothing that matters"
    );
}

/// A fresh image of `size_kb` KiB with `bs`-byte blocks, mounted
/// read-write through a fault-injecting device over memory.
fn fault_mount(t: &TempDir, size_kb: u64, bs: u32) -> (Arc<MemDevice>, Arc<FaultDevice>, Arc<rumpkern::Mount>) {
    let img = t.path().join("base");
    mkimage(&img, None, size_kb, bs, &[]);
    let mem = Arc::new(MemDevice::from_vec(std::fs::read(&img).unwrap()));
    let fault = Arc::new(FaultDevice::new(mem.clone()));
    let dev: Arc<dyn BlockDevice> = fault.clone();
    let mp = fs_ext2::EXT2FS.mount(Some(dev), &MountArgs::parse("rw")).unwrap();
    (mem, fault, mp)
}

/// The power cut now: what reached the device stays, nothing more; the
/// mount is dropped without unmounting. `e2fsck -p` must repair the
/// image without questions; returns its path.
fn cut_now(t: &TempDir, mem: &MemDevice, fault: &FaultDevice, mp: Arc<rumpkern::Mount>, what: &str) -> std::path::PathBuf {
    fault.stop_persisting_after(fault.writes());
    drop(mp);
    let path = t.path().join("cut");
    std::fs::write(&path, mem.snapshot()).unwrap();
    let out = run(std::process::Command::new("e2fsck").arg("-fp").arg(&path));
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "{what}: e2fsck -p exit {code}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (code, out) = e2fsck(&path);
    assert_eq!(code, 0, "{what}: still unclean after preen:\n{out}");
    path
}

/// An unlinked file's blocks are not reused before its unlink is durable
/// (the link count drop is a plain delayed write, `Ext2Fs::defer_free`): a
/// power cut right after another file's data went to the device (a large
/// write past EOF goes there at once) cannot bring the unlinked file back
/// holding that file's data.
#[test]
fn unlinked_blocks_are_not_reused_before_the_unlink_is_durable() {
    for bs in [1024u32, 4096] {
        let t = TempDir::new("reuse");
        let (mem, fault, mp) = fault_mount(&t, 2 * 1024, bs);
        let c = cred();
        let root = mp.root().unwrap();
        let old = pattern(1 << 20, 1);
        let f = root.create(b"old", 0o644, &c).unwrap();
        f.write(&old, 0, 0, &c).unwrap();
        drop(f);
        mp.sync(true).unwrap();
        root.remove(b"old", &c).unwrap();
        // Most of the free space: the old file's blocks if they are free.
        let new = pattern(1 << 20, 2);
        let f = root.create(b"new", 0o644, &c).unwrap();
        let _ = f.write(&new, 0, 0, &c);
        drop((f, root));
        let path = cut_now(&t, &mem, &fault, mp, &format!("{bs}"));
        let mp = mount_img(&path, "ro").unwrap();
        let root = mp.root().unwrap();
        if let Ok(f) = root.lookup(b"old", &cred()) {
            assert!(read_all(&f) == old, "{bs}: the unlinked file came back with other data");
        }
    }
}

/// rm -rf of a directory: its files' unlinks write nothing synchronously,
/// so rmdir first makes their link count drops (and the entries' removals
/// held in its blocks) durable. A power cut right after the rmdir's own
/// synchronous writes then leaves nothing e2fsck -p cannot repair (without
/// that, the files' inodes, in other inode table blocks than the
/// directory's, kept their links with no entry left on the device).
#[test]
fn power_cut_right_after_rm_rf() {
    for bs in [1024u32, 4096] {
        let t = TempDir::new("rmrf");
        let (mem, fault, mp) = fault_mount(&t, 4 * 1024, bs);
        let c = cred();
        let root = mp.root().unwrap();
        let d = root.mkdir(b"d", 0o755, &c).unwrap();
        for i in 0..60u32 {
            let f = d.create(format!("f{i}").as_bytes(), 0o644, &c).unwrap();
            f.write(&pattern(3000, i), 0, 0, &c).unwrap();
        }
        mp.sync(true).unwrap();
        for i in 0..60u32 {
            d.remove(format!("f{i}").as_bytes(), &c).unwrap();
        }
        drop(d);
        root.rmdir(b"d", &c).unwrap();
        drop(root);
        cut_now(&t, &mem, &fault, mp, &format!("{bs}"));
    }
}
