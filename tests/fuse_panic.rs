//! Driver panics are contained by p2k: the request gets EIO, the mount turns
//! read-only and failed, the node that panicked keeps failing with EIO, and
//! every other file is still served. Uses a tiny read-only driver defined
//! here whose read panics on demand. Needs root and /dev/fuse.

mod support;

use std::any::Any;
use std::fs;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rumpkern::{
    DirEntry, DirFiller, Errno, KResult, Mount, StatVfs, Timespec, Uio, VType, Vattr, VfsOps,
    Vnode, VnodeOps, VnodeRef,
};
use support::*;

const ROOT: u64 = 2;
const GOOD: u64 = 3;
const BAD: u64 = 4;

/// Shared switches of the test driver.
#[derive(Default)]
struct Switches {
    /// Make the next read of BAD panic.
    panic_read: AtomicBool,
    /// Driver reads that actually ran.
    reads: AtomicUsize,
}

struct Node {
    ino: u64,
    sw: Arc<Switches>,
}

fn content(ino: u64) -> &'static [u8] {
    match ino {
        GOOD => b"good data\n",
        BAD => b"bad data\n",
        _ => b"",
    }
}

fn load(mp: &Arc<Mount>, ino: u64, sw: &Arc<Switches>) -> KResult<VnodeRef> {
    let vtype = if ino == ROOT { VType::Dir } else { VType::Reg };
    let sw = sw.clone();
    mp.vcache_get(ino, move || {
        Ok((vtype, Box::new(Node { ino, sw }) as Box<dyn VnodeOps>))
    })
}

impl VnodeOps for Node {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn getattr(&self, vp: &Vnode) -> KResult<Vattr> {
        let dir = vp.vtype() == VType::Dir;
        Ok(Vattr {
            vtype: vp.vtype(),
            mode: if dir { 0o755 } else { 0o644 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            fsid: 0,
            ino: self.ino,
            size: content(self.ino).len() as u64,
            blksize: 4096,
            bytes: 4096,
            atime: Timespec::new(1_000_000_000, 0),
            mtime: Timespec::new(1_000_000_000, 0),
            ctime: Timespec::new(1_000_000_000, 0),
            birthtime: Timespec::ZERO,
            gen: 1,
            rdev: 0,
            flags: 0,
        })
    }

    fn lookup(&self, dvp: &Vnode, name: &[u8]) -> KResult<VnodeRef> {
        let mp = dvp.mount().ok_or(Errno::EIO)?;
        let ino = match name {
            b".." => ROOT,
            b"good" => GOOD,
            b"bad" => BAD,
            _ => return Err(Errno::ENOENT),
        };
        load(&mp, ino, &self.sw)
    }

    fn readdir(&self, _vp: &Vnode, offset: u64, filler: &mut DirFiller<'_>) -> KResult<()> {
        let ents: [(&[u8], u64, VType); 4] = [
            (b".", ROOT, VType::Dir),
            (b"..", ROOT, VType::Dir),
            (b"good", GOOD, VType::Reg),
            (b"bad", BAD, VType::Reg),
        ];
        for (i, (name, ino, vtype)) in ents.iter().enumerate().skip(offset as usize) {
            if !filler(&DirEntry {
                ino: *ino,
                name,
                vtype: *vtype,
                next_offset: i as u64 + 1,
            }) {
                break;
            }
        }
        Ok(())
    }

    fn read(&self, _vp: &Vnode, uio: &mut Uio<'_>, _ioflag: u32) -> KResult<()> {
        self.sw.reads.fetch_add(1, Ordering::SeqCst);
        if self.ino == BAD && self.sw.panic_read.swap(false, Ordering::SeqCst) {
            panic!("injected driver bug: read of inode {}", self.ino);
        }
        let data = content(self.ino);
        let off = (uio.offset as usize).min(data.len());
        uio.uiomove_out(&data[off..]);
        Ok(())
    }

    fn write(
        &self,
        _vp: &Vnode,
        _uio: &mut Uio<'_>,
        _ioflag: u32,
        _cred: &rumpkern::Cred,
    ) -> KResult<()> {
        Err(Errno::ENOSPC)
    }
}

struct Vfs {
    sw: Arc<Switches>,
}

impl VfsOps for Vfs {
    fn root(&self, mp: &Arc<Mount>) -> KResult<VnodeRef> {
        load(mp, ROOT, &self.sw)
    }

    fn statvfs(&self, _mp: &Mount) -> KResult<StatVfs> {
        Ok(StatVfs {
            frsize: 4096,
            bsize: 4096,
            blocks: 10,
            bfree: 5,
            bavail: 5,
            files: 3,
            ffree: 0,
            favail: 0,
            namemax: 255,
            ..Default::default()
        })
    }
}

fn panicky_mount() -> (Arc<Mount>, Arc<Switches>) {
    let sw = Arc::new(Switches::default());
    let mp = Mount::new("panicfs", false);
    mp.set_ops(Box::new(Vfs { sw: sw.clone() }));
    (mp, sw)
}

#[test]
fn driver_panic_gives_eio_and_a_read_only_mount() {
    let g = MountGuard::new("panic");
    let (mount, sw) = panicky_mount();
    let sess = p2k::spawn(mount.clone(), &g.mp, &p2k::P2kOptions::default()).expect("spawn p2k");

    assert_eq!(fs::read(g.path("good")).unwrap(), b"good data\n");
    let mut names: Vec<_> = fs::read_dir(&g.mp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["bad", "good"]);
    // Before the panic, writes reach the driver (which refuses them).
    let e = fs::OpenOptions::new()
        .write(true)
        .open(g.path("good"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
    assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    assert!(!mount.is_failed());

    // The read panics inside the driver: EIO to the caller.
    sw.panic_read.store(true, Ordering::SeqCst);
    let mut f = fs::File::open(g.path("bad")).unwrap();
    let mut buf = Vec::new();
    let e = f.read_to_end(&mut buf).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(mount.is_failed(), "mount marked failed");
    assert!(mount.is_rdonly(), "and read-only");
    assert_eq!(sess.state().panic_count(), 1);

    // The node that panicked keeps failing without reaching the driver
    // (the driver would no longer panic: the switch reset itself).
    let reads = sw.reads.load(Ordering::SeqCst);
    let e = fs::read(g.path("bad")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(
        sw.reads.load(Ordering::SeqCst),
        reads,
        "poisoned node not handed to the driver"
    );

    // Everything else is still served.
    assert_eq!(fs::read(g.path("good")).unwrap(), b"good data\n");
    assert_eq!(fs::read_dir(&g.mp).unwrap().count(), 2);
    let sv = statvfs(&g.mp);
    assert_eq!(sv.f_blocks, 10);

    // Writes now fail with EROFS (from rumpkern, not the driver's ENOSPC).
    let e = fs::OpenOptions::new()
        .write(true)
        .open(g.path("good"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
    assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::EROFS));

    drop(f);
    sess.unmount()
        .expect("clean unmount after a contained panic");
    assert!(!is_mounted(&g.mp));
}
