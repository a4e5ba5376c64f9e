//! namei: path name resolution for standalone mode (ukfs, fs-utils).
//!
//! A path is resolved component by component with the [`VnodeRef`] wrappers
//! (`lookup` checks search permission, VEXEC, on every directory passed
//! through; `readlink` reads symbolic links), starting at `root` for an
//! absolute path and at `cwd` for a relative one. The rules, as POSIX and
//! NetBSD's `namei` give them:
//!
//! - repeated slashes count as one; `.` is the directory itself; `..` is its
//!   parent, and `..` at `root` stays at `root` (still after a VEXEC check
//!   on `root`), so `root` acts as a chroot;
//! - a symbolic link met as a non-final component is always followed, a
//!   final one only when asked (`follow`) or when a trailing slash follows
//!   it; an absolute target restarts at `root`, a relative one at the
//!   directory that holds the link; the target is spliced in front of the
//!   rest of the path. At most [`MAXSYMLINKS`] links are followed in one
//!   resolution (all of them, not only nested ones): one more is ELOOP;
//! - a path with a trailing slash (`a/b/`) names a directory: the last
//!   component must resolve to one (after following a symlink), else ENOTDIR;
//! - errors: ENOENT for an empty path, an empty symlink target or a missing
//!   component; ENAMETOOLONG for a component over [`NAME_MAX`] bytes or a
//!   path (also after splicing in a link target) of [`PATH_MAX`] bytes or
//!   more; ENOTDIR when a non-final component is not a directory; EACCES
//!   when a directory on the way may not be searched; EINVAL for a NUL byte
//!   inside a component; ELOOP as above.
//!
//! There are no mount points inside a standalone tree: the walk stays on the
//! mount `root` and `cwd` belong to.
//!
//! # The parent lookups
//!
//! [`namei_parent`] (and [`namei_parent_full`], which also reports a
//! trailing slash) resolve all but the last component, for operations that
//! create, remove or rename an entry. The last component is never followed.
//! Choices made for the corner cases:
//!
//! - a last component `.` or `..` is returned as it is (`("a", ".")` for
//!   `a/.`): the VOP wrappers then give each operation its own POSIX error
//!   (create/mkdir/symlink/link: EEXIST; rmdir `.`: EINVAL, `..`: ENOTEMPTY;
//!   remove: EISDIR; rename: EINVAL);
//! - a path that has no component at all (`/`, `//`) gives `(root, ".")`,
//!   so `mkdir("/")` is EEXIST and `rmdir("/")` EINVAL, as for `/.`;
//! - with a trailing slash (`a/b/`), if the last component exists it must
//!   resolve (following symlinks) to a directory, else ENOTDIR; a missing
//!   last component is fine (`mkdir a/b/`). Callers creating something other
//!   than a directory should refuse a trailing slash themselves
//!   ([`ParentLookup::trailing_slash`]).
//!
//! # Locking and references
//!
//! No vnode lock is held between components: each wrapper call locks and
//! unlocks. Every vnode returned is referenced; the intermediate ones are
//! released as the walk moves on.

use crate::cred::Cred;
use crate::errno::{Errno, KResult};
use crate::types::{amode, VType, NAME_MAX, PATH_MAX};
use crate::vnode::VnodeRef;

/// Most symbolic links followed in one path resolution (NetBSD `MAXSYMLINKS`).
pub const MAXSYMLINKS: usize = 32;

/// Result of a parent lookup.
#[derive(Debug)]
pub struct ParentLookup {
    /// The directory that holds (or will hold) the last component, referenced.
    pub dir: VnodeRef,
    /// The last component: never empty, no `/`, at most [`NAME_MAX`] bytes
    /// (may be `.` or `..`, see the module doc).
    pub name: Vec<u8>,
    /// The path ended with one or more slashes after the last component.
    pub trailing_slash: bool,
}

/// Resolve `path` to a referenced vnode. `follow`: follow a symbolic link in
/// the last component (a link elsewhere is always followed). Errors: see the
/// module doc.
pub fn namei(root: &VnodeRef, cwd: &VnodeRef, path: &[u8], follow: bool, cred: &Cred) -> KResult<VnodeRef> {
    match walk(
        root,
        cwd,
        path,
        if follow { Mode::Follow } else { Mode::NoFollow },
        cred,
    )? {
        Walked::Node(vp) => Ok(vp),
        // Only Mode::Parent produces Walked::Parent.
        Walked::Parent(p) => Ok(p.dir),
    }
}

/// Resolve all but the last component of `path`: returns the directory and
/// the last component (not followed). See the module doc for `.`, `..`, `/`
/// and trailing slashes.
pub fn namei_parent(root: &VnodeRef, cwd: &VnodeRef, path: &[u8], cred: &Cred) -> KResult<(VnodeRef, Vec<u8>)> {
    let p = namei_parent_full(root, cwd, path, cred)?;
    Ok((p.dir, p.name))
}

/// As [`namei_parent`], also telling whether the path had a trailing slash.
pub fn namei_parent_full(root: &VnodeRef, cwd: &VnodeRef, path: &[u8], cred: &Cred) -> KResult<ParentLookup> {
    match walk(root, cwd, path, Mode::Parent, cred)? {
        Walked::Parent(p) => Ok(p),
        // Mode::Parent always ends with Walked::Parent; keep the type honest.
        Walked::Node(_) => Err(Errno::EIO),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Follow,
    NoFollow,
    Parent,
}

enum Walked {
    Node(VnodeRef),
    Parent(ParentLookup),
}

/// Skip slashes from `pos`; returns the first non-slash position.
fn skip_slashes(buf: &[u8], mut pos: usize) -> usize {
    while pos < buf.len() && buf[pos] == b'/' {
        pos += 1;
    }
    pos
}

fn walk(root: &VnodeRef, cwd: &VnodeRef, path: &[u8], mode: Mode, cred: &Cred) -> KResult<Walked> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    // The path still to resolve is buf[pos..]; symlink targets are spliced
    // in front of the rest.
    let mut buf: Vec<u8> = path.to_vec();
    let mut pos = 0usize;
    let mut dir = if path[0] == b'/' { root.clone() } else { cwd.clone() };
    let mut links = 0usize;

    loop {
        pos = skip_slashes(&buf, pos);
        if pos == buf.len() {
            // Nothing but slashes left: the path names `dir` itself ("/",
            // or a symlink to "/" followed by nothing).
            if dir.vtype() != VType::Dir {
                return Err(Errno::ENOTDIR);
            }
            return Ok(match mode {
                Mode::Parent => Walked::Parent(ParentLookup {
                    dir,
                    name: b".".to_vec(),
                    trailing_slash: true,
                }),
                _ => Walked::Node(dir),
            });
        }
        let start = pos;
        while pos < buf.len() && buf[pos] != b'/' {
            pos += 1;
        }
        let comp_end = pos;
        if comp_end - start > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let after = skip_slashes(&buf, pos);
        let last = after == buf.len();
        let trailing = last && comp_end < buf.len();

        if dir.vtype() != VType::Dir {
            return Err(Errno::ENOTDIR);
        }

        if last && mode == Mode::Parent {
            let name = buf[start..comp_end].to_vec();
            if trailing {
                // "a/b/": b, if it exists, must be a directory.
                match walk(root, &dir, &name, Mode::Follow, cred) {
                    Ok(Walked::Node(vp)) if vp.vtype() != VType::Dir => return Err(Errno::ENOTDIR),
                    Ok(_) => {}
                    Err(e) if e == Errno::ENOENT => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Walked::Parent(ParentLookup {
                dir,
                name,
                trailing_slash: trailing,
            }));
        }

        let comp = &buf[start..comp_end];
        let next = if comp == b".." && dir == *root {
            dir.access(amode::VEXEC, cred)?;
            dir.clone()
        } else {
            dir.lookup(comp, cred)?
        };

        if next.vtype() == VType::Lnk && (!last || trailing || mode == Mode::Follow) {
            links += 1;
            if links > MAXSYMLINKS {
                return Err(Errno::ELOOP);
            }
            let target = next.readlink()?;
            if target.is_empty() {
                return Err(Errno::ENOENT);
            }
            // Rest of the path after the link, with its leading slash(es):
            // empty when the link was the last component.
            let rest = &buf[comp_end..];
            if target.len() + rest.len() >= PATH_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            let mut nbuf = Vec::with_capacity(target.len() + rest.len());
            nbuf.extend_from_slice(&target);
            nbuf.extend_from_slice(rest);
            buf = nbuf;
            pos = 0;
            if target[0] == b'/' {
                dir = root.clone();
            }
            // A relative target continues from `dir`, the link's directory.
            continue;
        }

        if last {
            if trailing && next.vtype() != VType::Dir {
                return Err(Errno::ENOTDIR);
            }
            return Ok(Walked::Node(next));
        }
        if next.vtype() != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        dir = next;
        pos = after;
    }
}

#[cfg(test)]
mod tests {
    //! A tiny in-memory driver (directories, files, symlinks, modes) is
    //! enough to exercise every rule of the walk.

    use super::*;
    use crate::types::*;
    use crate::vfs::{Mount, VfsOps};
    use crate::vnode::{DirFiller, Vnode, VnodeOps};
    use parking_lot::Mutex;
    use std::any::Any;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    struct Node {
        vtype: VType,
        mode: u32,
        parent: u64,
        entries: BTreeMap<Vec<u8>, u64>,
        target: Vec<u8>,
    }

    #[derive(Default)]
    struct Tree {
        nodes: Mutex<HashMap<u64, Node>>,
        next: Mutex<u64>,
    }

    struct TNode {
        ino: u64,
        tree: Arc<Tree>,
    }

    fn get(mp: &Arc<Mount>, tree: &Arc<Tree>, ino: u64) -> KResult<VnodeRef> {
        let vtype = tree.nodes.lock().get(&ino).map(|n| n.vtype).ok_or(Errno::ENOENT)?;
        let t = tree.clone();
        mp.vcache_get(ino, move || {
            Ok((vtype, Box::new(TNode { ino, tree: t }) as Box<dyn VnodeOps>))
        })
    }

    impl VnodeOps for TNode {
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn getattr(&self, _vp: &Vnode) -> KResult<Vattr> {
            let nodes = self.tree.nodes.lock();
            let n = nodes.get(&self.ino).ok_or(Errno::EIO)?;
            Ok(Vattr {
                vtype: n.vtype,
                mode: n.mode,
                nlink: 1,
                uid: 100,
                gid: 100,
                fsid: 0,
                ino: self.ino,
                size: 0,
                blksize: 512,
                bytes: 0,
                atime: Timespec::ZERO,
                mtime: Timespec::ZERO,
                ctime: Timespec::ZERO,
                birthtime: Timespec::ZERO,
                gen: 0,
                rdev: 0,
                flags: 0,
            })
        }
        fn lookup(&self, dvp: &Vnode, name: &[u8]) -> KResult<VnodeRef> {
            let ino = {
                let nodes = self.tree.nodes.lock();
                let n = nodes.get(&self.ino).ok_or(Errno::EIO)?;
                if name == b".." {
                    n.parent
                } else {
                    *n.entries.get(name).ok_or(Errno::ENOENT)?
                }
            };
            get(&dvp.mount().ok_or(Errno::EIO)?, &self.tree, ino)
        }
        fn readlink(&self, _vp: &Vnode) -> KResult<Vec<u8>> {
            Ok(self.tree.nodes.lock().get(&self.ino).ok_or(Errno::EIO)?.target.clone())
        }
        fn readdir(&self, _vp: &Vnode, _off: u64, _f: &mut DirFiller<'_>) -> KResult<()> {
            Ok(())
        }
    }

    struct TVfs(Arc<Tree>);
    impl VfsOps for TVfs {
        fn root(&self, mp: &Arc<Mount>) -> KResult<VnodeRef> {
            get(mp, &self.0, 1)
        }
        fn statvfs(&self, _mp: &Mount) -> KResult<StatVfs> {
            Ok(StatVfs::default())
        }
    }

    struct Fs {
        mp: Arc<Mount>,
        tree: Arc<Tree>,
        root: VnodeRef,
    }

    impl Fs {
        fn new() -> Fs {
            let tree = Arc::new(Tree::default());
            tree.nodes.lock().insert(
                1,
                Node {
                    vtype: VType::Dir,
                    mode: 0o755,
                    parent: 1,
                    entries: BTreeMap::new(),
                    target: Vec::new(),
                },
            );
            *tree.next.lock() = 2;
            let mp = Mount::new("nameitest", false);
            mp.set_ops(Box::new(TVfs(tree.clone())));
            let root = mp.root().unwrap();
            Fs { mp, tree, root }
        }

        fn add(&self, parent: u64, name: &str, vtype: VType, mode: u32, target: &str) -> u64 {
            let mut next = self.tree.next.lock();
            let ino = *next;
            *next += 1;
            let mut nodes = self.tree.nodes.lock();
            nodes.insert(
                ino,
                Node {
                    vtype,
                    mode,
                    parent,
                    entries: BTreeMap::new(),
                    target: target.as_bytes().to_vec(),
                },
            );
            nodes
                .get_mut(&parent)
                .unwrap()
                .entries
                .insert(name.as_bytes().to_vec(), ino);
            ino
        }
        fn dir(&self, parent: u64, name: &str) -> u64 {
            self.add(parent, name, VType::Dir, 0o755, "")
        }
        fn file(&self, parent: u64, name: &str) -> u64 {
            self.add(parent, name, VType::Reg, 0o644, "")
        }
        fn link(&self, parent: u64, name: &str, target: &str) -> u64 {
            self.add(parent, name, VType::Lnk, 0o777, target)
        }
        fn vnode(&self, ino: u64) -> VnodeRef {
            get(&self.mp, &self.tree, ino).unwrap()
        }
        /// ino of `path` resolved from root (cwd = root).
        fn ino(&self, path: &str, follow: bool) -> KResult<u64> {
            namei(&self.root, &self.root, path.as_bytes(), follow, &Cred::root()).map(|v| v.ino())
        }
    }

    /// /a (dir) /a/b (dir) /a/b/f (file) /f (file)
    fn sample() -> (Fs, u64, u64, u64, u64) {
        let fs = Fs::new();
        let a = fs.dir(1, "a");
        let b = fs.dir(a, "b");
        let f = fs.file(b, "f");
        let top = fs.file(1, "f");
        (fs, a, b, f, top)
    }

    #[test]
    fn absolute_and_relative() {
        let (fs, a, b, f, top) = sample();
        assert_eq!(fs.ino("/a/b/f", true), Ok(f));
        assert_eq!(fs.ino("/f", true), Ok(top));
        assert_eq!(fs.ino("/", true), Ok(1));
        let cwd = fs.vnode(a);
        let r = |p: &str| namei(&fs.root, &cwd, p.as_bytes(), true, &Cred::root()).map(|v| v.ino());
        assert_eq!(r("b/f"), Ok(f));
        assert_eq!(r("b"), Ok(b));
        assert_eq!(r("f"), Err(Errno::ENOENT));
        assert_eq!(r("/f"), Ok(top), "absolute path ignores cwd");
    }

    #[test]
    fn repeated_slashes() {
        let (fs, _a, b, f, _) = sample();
        assert_eq!(fs.ino("//a///b////f", true), Ok(f));
        assert_eq!(fs.ino("///", true), Ok(1));
        assert_eq!(fs.ino("a//b", true), Ok(b));
    }

    #[test]
    fn dot_and_dotdot() {
        let (fs, a, b, f, top) = sample();
        assert_eq!(fs.ino("/a/./b/./f", true), Ok(f));
        assert_eq!(fs.ino("/a/b/..", true), Ok(a));
        assert_eq!(fs.ino("/a/b/../../f", true), Ok(top));
        assert_eq!(fs.ino(".", true), Ok(1));
        assert_eq!(fs.ino("a/b/../b/f", true), Ok(f));
        let _ = b;
    }

    #[test]
    fn dotdot_at_root_stays() {
        let (fs, a, _b, _f, top) = sample();
        assert_eq!(fs.ino("/..", true), Ok(1));
        assert_eq!(fs.ino("/../../..", true), Ok(1));
        assert_eq!(fs.ino("/../f", true), Ok(top));
        assert_eq!(fs.ino("../a", true), Ok(a));
        // A root below the file system root behaves as a chroot.
        let chroot = fs.vnode(a);
        let r = namei(&chroot, &chroot, b"../../b", true, &Cred::root()).unwrap();
        assert_eq!(r.ino(), fs.ino("/a/b", true).unwrap());
        let r = namei(&chroot, &chroot, b"/..", true, &Cred::root()).unwrap();
        assert_eq!(r.ino(), a);
    }

    #[test]
    fn symlinks_absolute_and_relative() {
        let (fs, a, b, f, top) = sample();
        fs.link(1, "abs", "/a/b");
        fs.link(a, "rel", "b/f");
        fs.link(b, "up", "../../f");
        fs.link(1, "chain", "abs/f");
        fs.link(1, "slashes", "//a//b//");
        assert_eq!(fs.ino("/abs/f", true), Ok(f));
        assert_eq!(fs.ino("/abs", true), Ok(b));
        assert_eq!(
            fs.ino("/a/rel", true),
            Ok(f),
            "relative target starts at the link's directory"
        );
        assert_eq!(fs.ino("/a/b/up", true), Ok(top));
        assert_eq!(fs.ino("chain", true), Ok(f));
        assert_eq!(fs.ino("slashes/f", true), Ok(f));
        // Absolute targets restart at `root`, not at the fs root.
        let chroot = fs.vnode(a);
        let bf = fs.file(a, "f2");
        fs.link(a, "jail", "/f2");
        assert_eq!(namei(&chroot, &chroot, b"jail", true, &Cred::root()).unwrap().ino(), bf);
    }

    #[test]
    fn final_symlink_follow_or_not() {
        let (fs, _a, b, f, _) = sample();
        let l = fs.link(1, "l", "a/b/f");
        let ld = fs.link(1, "ld", "a/b");
        assert_eq!(fs.ino("l", false), Ok(l));
        assert_eq!(fs.ino("l", true), Ok(f));
        assert_eq!(fs.ino("ld", false), Ok(ld));
        // A non-final link is followed even without `follow`.
        assert_eq!(fs.ino("ld/f", false), Ok(f));
        // A trailing slash follows the final link.
        assert_eq!(fs.ino("ld/", false), Ok(b));
        assert_eq!(fs.ino("l/", false), Err(Errno::ENOTDIR));
        // Dangling link.
        fs.link(1, "dangle", "nowhere");
        assert_eq!(fs.ino("dangle", true), Err(Errno::ENOENT));
        assert!(fs.ino("dangle", false).is_ok());
        // Empty target.
        fs.link(1, "empty", "");
        assert_eq!(fs.ino("empty", true), Err(Errno::ENOENT));
    }

    #[test]
    fn symlink_depth_limit() {
        let fs = Fs::new();
        fs.link(1, "loop", "loop");
        assert_eq!(fs.ino("loop", true), Err(Errno::ELOOP));
        assert_eq!(fs.ino("loop/x", false), Err(Errno::ELOOP));
        fs.link(1, "p", "q");
        fs.link(1, "q", "p");
        assert_eq!(fs.ino("p", true), Err(Errno::ELOOP));
        // A chain of exactly MAXSYMLINKS links resolves; one more is ELOOP.
        let t = fs.file(1, "t");
        fs.link(1, "c0", "t");
        for i in 1..=MAXSYMLINKS {
            fs.link(1, &format!("c{i}"), &format!("c{}", i - 1));
        }
        assert_eq!(fs.ino(&format!("c{}", MAXSYMLINKS - 1), true), Ok(t));
        assert_eq!(fs.ino(&format!("c{}", MAXSYMLINKS), true), Err(Errno::ELOOP));
        // The limit counts all links of one walk, not only nested ones:
        // 32 links one after the other resolve, a 33rd is ELOOP.
        let d = fs.dir(1, "d");
        fs.link(d, "self", ".");
        let mut p = String::from("/d");
        for _ in 0..MAXSYMLINKS {
            p.push_str("/self");
        }
        assert_eq!(fs.ino(&p, true), Ok(d));
        p.push_str("/self");
        assert_eq!(fs.ino(&p, true), Err(Errno::ELOOP));
    }

    #[test]
    fn name_too_long() {
        let fs = Fs::new();
        let d = fs.dir(1, &"x".repeat(255));
        assert_eq!(fs.ino(&"x".repeat(255), true), Ok(d));
        assert_eq!(fs.ino(&"x".repeat(256), true), Err(Errno::ENAMETOOLONG));
        assert_eq!(
            fs.ino(&format!("/{}/y", "z".repeat(256)), true),
            Err(Errno::ENAMETOOLONG)
        );
        // Whole path: PATH_MAX bytes or more.
        let long = "./".repeat(PATH_MAX / 2);
        assert_eq!(long.len(), PATH_MAX);
        assert_eq!(fs.ino(&long, true), Err(Errno::ENAMETOOLONG));
        let ok = format!("{}.", "./".repeat(PATH_MAX / 2 - 1));
        assert_eq!(ok.len(), PATH_MAX - 1);
        assert_eq!(fs.ino(&ok, true), Ok(1));
        // A link whose target plus the rest reaches PATH_MAX.
        let tgt = "./".repeat(PATH_MAX / 2 - 2);
        fs.link(1, "big", &tgt);
        assert_eq!(fs.ino("big", true), Ok(1));
        assert_eq!(fs.ino("big/./././.", true), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn not_a_directory() {
        let (fs, ..) = sample();
        assert_eq!(fs.ino("/f/x", true), Err(Errno::ENOTDIR));
        assert_eq!(fs.ino("/a/b/f/..", true), Err(Errno::ENOTDIR));
        assert_eq!(fs.ino("/f/", true), Err(Errno::ENOTDIR));
        assert_eq!(fs.ino("/f/.", true), Err(Errno::ENOTDIR));
        fs.link(1, "lf", "f");
        assert_eq!(fs.ino("/lf/x", true), Err(Errno::ENOTDIR));
        // cwd that is not a directory
        let f = fs.vnode(fs.ino("/f", true).unwrap());
        assert_eq!(
            namei(&fs.root, &f, b"x", true, &Cred::root()).map(|v| v.ino()),
            Err(Errno::ENOTDIR)
        );
    }

    #[test]
    fn empty_path_and_missing() {
        let (fs, ..) = sample();
        assert_eq!(fs.ino("", true), Err(Errno::ENOENT));
        assert_eq!(fs.ino("/nope", true), Err(Errno::ENOENT));
        assert_eq!(fs.ino("/nope/x", true), Err(Errno::ENOENT));
        assert_eq!(
            namei_parent(&fs.root, &fs.root, b"", &Cred::root()).map(|p| p.1),
            Err(Errno::ENOENT)
        );
        assert_eq!(fs.ino("a\0b", true), Err(Errno::EINVAL));
    }

    #[test]
    fn search_permission() {
        let (fs, a, ..) = sample();
        let user = Cred::new(7, 7, vec![]);
        assert!(namei(&fs.root, &fs.root, b"/a/b/f", true, &user).is_ok());
        fs.tree.nodes.lock().get_mut(&a).unwrap().mode = 0o700; // owner 100 only
        assert_eq!(
            namei(&fs.root, &fs.root, b"/a/b/f", true, &user).map(|v| v.ino()),
            Err(Errno::EACCES)
        );
        // The last component's directory needs search permission too, the
        // last component itself not.
        assert_eq!(namei(&fs.root, &fs.root, b"/a", true, &user).map(|v| v.ino()), Ok(a));
        assert_eq!(
            namei_parent(&fs.root, &fs.root, b"/a/b/x", &user).map(|p| p.1),
            Err(Errno::EACCES)
        );
        // namei_parent does not search the final directory itself: the VOP
        // that uses it checks VWRITE|VEXEC there.
        assert_eq!(
            namei_parent(&fs.root, &fs.root, b"/a/x", &user).map(|p| p.0.ino()),
            Ok(a)
        );
        // `..` at root still needs search permission on root.
        fs.tree.nodes.lock().get_mut(&1).unwrap().mode = 0o700;
        assert_eq!(
            namei(&fs.root, &fs.root, b"..", true, &user).map(|v| v.ino()),
            Err(Errno::EACCES)
        );
    }

    #[test]
    fn parent_basic() {
        let (fs, a, b, ..) = sample();
        let p = |s: &str| {
            namei_parent_full(&fs.root, &fs.root, s.as_bytes(), &Cred::root())
                .map(|p| (p.dir.ino(), String::from_utf8(p.name).unwrap(), p.trailing_slash))
        };
        assert_eq!(p("/a/b/new"), Ok((b, "new".into(), false)));
        assert_eq!(p("a//b//f"), Ok((b, "f".into(), false)));
        assert_eq!(p("top"), Ok((1, "top".into(), false)));
        assert_eq!(p("/a/b/../x"), Ok((a, "x".into(), false)));
        // Dots as last component are handed back unchanged.
        assert_eq!(p("/a/."), Ok((a, ".".into(), false)));
        assert_eq!(p("/a/.."), Ok((a, "..".into(), false)));
        assert_eq!(p("."), Ok((1, ".".into(), false)));
        // No component at all: root and ".".
        assert_eq!(p("/"), Ok((1, ".".into(), true)));
        assert_eq!(p("///"), Ok((1, ".".into(), true)));
        // Errors on the way.
        assert_eq!(p("/nope/x"), Err(Errno::ENOENT));
        assert_eq!(p("/f/x"), Err(Errno::ENOTDIR));
        assert_eq!(p(&format!("/a/{}", "n".repeat(256))), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn parent_last_not_followed() {
        let (fs, a, b, ..) = sample();
        fs.link(1, "lb", "a/b");
        fs.link(1, "loop", "loop");
        let p = |s: &str| {
            namei_parent_full(&fs.root, &fs.root, s.as_bytes(), &Cred::root())
                .map(|p| (p.dir.ino(), String::from_utf8(p.name).unwrap(), p.trailing_slash))
        };
        assert_eq!(p("lb"), Ok((1, "lb".into(), false)));
        assert_eq!(p("loop"), Ok((1, "loop".into(), false)));
        // Non-final links are followed.
        assert_eq!(p("lb/new"), Ok((b, "new".into(), false)));
        assert_eq!(p("loop/new"), Err(Errno::ELOOP));
        let _ = a;
    }

    #[test]
    fn parent_trailing_slash() {
        let (fs, a, ..) = sample();
        fs.link(1, "la", "a");
        fs.link(1, "lf", "f");
        let p = |s: &str| {
            namei_parent_full(&fs.root, &fs.root, s.as_bytes(), &Cred::root())
                .map(|p| (p.dir.ino(), String::from_utf8(p.name).unwrap(), p.trailing_slash))
        };
        // Missing: fine (mkdir "new/").
        assert_eq!(p("new/"), Ok((1, "new".into(), true)));
        assert_eq!(p("new//"), Ok((1, "new".into(), true)));
        // Existing directory, or a link to one: fine.
        assert_eq!(p("/a/"), Ok((1, "a".into(), true)));
        assert_eq!(p("la/"), Ok((1, "la".into(), true)));
        // Existing non-directory: ENOTDIR.
        assert_eq!(p("f/"), Err(Errno::ENOTDIR));
        assert_eq!(p("lf/"), Err(Errno::ENOTDIR));
        let _ = a;
    }

    #[test]
    fn namei_trailing_slash() {
        let (fs, a, ..) = sample();
        assert_eq!(fs.ino("a/", true), Ok(a));
        assert_eq!(fs.ino("a//", false), Ok(a));
        assert_eq!(fs.ino("f/", false), Err(Errno::ENOTDIR));
    }

    #[test]
    fn references_released() {
        let (fs, ..) = sample();
        fs.link(1, "l", "a/b");
        {
            let v = namei(&fs.root, &fs.root, b"/l/f", true, &Cred::root()).unwrap();
            assert_eq!(v.usecount(), 1);
            // Only the root (held by Fs) and the result are referenced.
            assert_eq!(fs.mp.vnode_counts().1, 2);
        }
        assert_eq!(fs.mp.vnode_counts().1, 1);
        let _ = fs.ino("/l/nope", true);
        assert_eq!(fs.mp.vnode_counts().1, 1);
    }
}
