//! Shared helpers for the tmpfs tests: a mount with its root and instance.

#![allow(dead_code)]

use std::sync::Arc;

use fs_tmpfs::TmpfsMount;
use rumpkern::{Cred, DirEntry, Errno, Mount, MountArgs, VType, VnodeRef};

pub struct Fs {
    pub mp: Arc<Mount>,
    pub tm: Arc<TmpfsMount>,
    pub root: VnodeRef,
}

impl Fs {
    pub fn new(opts: &str) -> Fs {
        let (mp, tm) = fs_tmpfs::mount(&MountArgs::parse(opts)).expect("mount");
        let root = mp.root().expect("root");
        Fs { mp, tm, root }
    }

    /// Look up `path` (slash-separated, relative to root) as root.
    pub fn walk(&self, path: &str) -> Result<VnodeRef, Errno> {
        let mut cur = self.root.clone();
        for c in path.split('/').filter(|c| !c.is_empty()) {
            cur = cur.lookup(c.as_bytes(), &root())?;
        }
        Ok(cur)
    }

    /// Unmount, asserting that no vnode is still referenced.
    pub fn unmount(self) {
        let Fs { mp, root, .. } = self;
        drop(root);
        assert_eq!(mp.vnode_counts().1, 0, "vnodes still referenced at unmount");
        mp.unmount(false).expect("unmount");
    }
}

pub fn root() -> Cred {
    Cred::root()
}

pub fn user(uid: u32, gid: u32) -> Cred {
    Cred::new(uid, gid, vec![])
}

/// All entries of a directory: (name, ino, type).
pub fn list(dir: &VnodeRef) -> Vec<(String, u64, VType)> {
    let mut out = Vec::new();
    dir.readdir(0, &mut |e: &DirEntry<'_>| {
        out.push((String::from_utf8_lossy(e.name).into_owned(), e.ino, e.vtype));
        true
    })
    .expect("readdir");
    out
}

/// Names only, without "." and "..".
pub fn names(dir: &VnodeRef) -> Vec<String> {
    list(dir)
        .into_iter()
        .map(|e| e.0)
        .filter(|n| n != "." && n != "..")
        .collect()
}

/// Read the whole file.
pub fn read_all(vp: &VnodeRef) -> Vec<u8> {
    let size = vp.getattr().unwrap().size as usize;
    let mut buf = vec![0xAAu8; size + 10];
    let n = vp.read(&mut buf, 0).unwrap();
    assert_eq!(n, size, "read stops at end of file");
    buf.truncate(n);
    buf
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}
