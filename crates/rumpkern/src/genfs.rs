//! genfs: behaviour every file system shares and would otherwise rewrite
//! (NetBSD `sys/miscfs/genfs`, `ufs_*` helpers): permission checks from
//! mode/uid/gid/groups, the setattr ownership rules, sticky directories, name
//! checks, rename locking and ancestry, pathconf defaults.

use parking_lot::RwLockWriteGuard;

use crate::cred::Cred;
use crate::errno::{Errno, KResult};
use crate::types::mode::*;
use crate::types::*;
use crate::vnode::{Vnode, VnodeRef};

/// May `cred` access a file with attributes `va` in `want` (VREAD | VWRITE |
/// VEXEC)? Root may do anything except execute a non-directory that has no
/// execute bit at all. Errors: EACCES.
pub fn access(va: &Vattr, want: u32, cred: &Cred) -> KResult<()> {
    if want == 0 {
        return Ok(());
    }
    if cred.is_root() {
        if want & amode::VEXEC != 0 && va.vtype != VType::Dir && va.mode & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        return Ok(());
    }
    let (group, other) = ((va.mode >> 3) & 7, va.mode & 7);
    let bits = if cred.uid == va.uid {
        (va.mode >> 6) & 7
    } else if want & (group ^ other) & 7 == 0 {
        // Group and other bits agree on what is asked (0755, 0644, 0777...):
        // membership cannot change the answer, so it is not looked up
        // (supplementary groups may cost the server a /proc read).
        other
    } else if cred.groupmember(va.gid) {
        group
    } else {
        other
    };
    if want & !bits & 7 != 0 {
        Err(Errno::EACCES)
    } else {
        Ok(())
    }
}

/// Apply the rules of chmod, chown, truncate and utimes (as Linux applies
/// them) to a setattr request from `cred` on a file with attributes `va`.
/// Returns the request to hand to the driver, which may differ from `sa`
/// (setgid cleared on chmod by a non-member, setuid/setgid cleared when a
/// non-directory changes owner). `has_write_fd`: a truncate through a
/// descriptor opened for writing needs no new permission check.
/// Errors: EPERM (not owner, chown by non-root), EACCES, EISDIR, EINVAL.
pub fn setattr_check(va: &Vattr, sa: &SetAttr, cred: &Cred, has_write_fd: bool) -> KResult<SetAttr> {
    let mut out = sa.clone();
    let owner = cred.is_root() || cred.uid == va.uid;

    if let Some(size) = sa.size {
        match va.vtype {
            VType::Dir => return Err(Errno::EISDIR),
            VType::Reg => {}
            _ => return Err(Errno::EINVAL),
        }
        if !has_write_fd {
            access(va, amode::VWRITE, cred)?;
        }
        let _ = size;
    }

    // chown / chgrp
    let new_uid = sa.uid.filter(|&u| u != va.uid);
    let new_gid = sa.gid.filter(|&g| g != va.gid);
    if sa.uid.is_some() || sa.gid.is_some() {
        if !cred.is_root() {
            if new_uid.is_some() {
                return Err(Errno::EPERM);
            }
            if let Some(g) = new_gid {
                if cred.uid != va.uid || !cred.groupmember(g) {
                    return Err(Errno::EPERM);
                }
            }
            if sa.gid.is_some() && new_gid.is_none() && cred.uid != va.uid {
                return Err(Errno::EPERM);
            }
        }
        if va.vtype != VType::Dir && sa.mode.is_none() {
            let mut m = va.mode & ALLPERMS;
            let before = m;
            m &= !S_ISUID;
            if m & (S_ISGID | 0o010) == (S_ISGID | 0o010) {
                m &= !S_ISGID;
            }
            if m != before {
                out.mode = Some(m);
            }
        }
    }

    // chmod
    if let Some(m) = sa.mode {
        if !owner {
            return Err(Errno::EPERM);
        }
        let mut m = m & ALLPERMS;
        if !cred.is_root() {
            let gid = out.gid.unwrap_or(va.gid);
            if m & S_ISGID != 0 && !cred.groupmember(gid) {
                m &= !S_ISGID;
            }
        }
        out.mode = Some(m);
    }

    // utimes
    let explicit = matches!(sa.atime, Some(SetTime::At(_))) || matches!(sa.mtime, Some(SetTime::At(_)));
    let now = matches!(sa.atime, Some(SetTime::Now)) || matches!(sa.mtime, Some(SetTime::Now));
    if explicit && !owner {
        return Err(Errno::EPERM);
    }
    if now && !explicit && !owner {
        access(va, amode::VWRITE, cred)?;
    }
    if sa.flags.is_some() && !owner {
        return Err(Errno::EPERM);
    }
    if sa.birthtime.is_some() && !owner {
        return Err(Errno::EPERM);
    }
    Ok(out)
}

/// The sticky-directory rule: in a directory with S_ISVTX only root, the
/// directory's owner and the entry's owner may remove or rename the entry.
/// Errors: EPERM.
pub fn sticky_check(dir: &Vattr, victim: &Vattr, cred: &Cred) -> KResult<()> {
    if dir.mode & S_ISVTX != 0 && !cred.is_root() && cred.uid != dir.uid && cred.uid != victim.uid {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// Is `name` a valid single component? Empty → ENOENT, over NAME_MAX →
/// ENAMETOOLONG, `/` or NUL inside → EINVAL. `.` and `..` are refused with
/// EEXIST unless `allow_dots` (lookup allows them).
pub fn check_name(name: &[u8], allow_dots: bool) -> KResult<()> {
    if name.is_empty() {
        return Err(Errno::ENOENT);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.iter().any(|&c| c == b'/' || c == 0) {
        return Err(Errno::EINVAL);
    }
    if !allow_dots && (name == b"." || name == b"..") {
        return Err(Errno::EEXIST);
    }
    Ok(())
}

/// Group of a new file in `dir`: the directory's group when it is setgid
/// (BSD semantics always, SysV semantics with S_ISGID), else the creator's.
pub fn new_file_gid(dir: &Vattr, cred: &Cred) -> u32 {
    if dir.mode & S_ISGID != 0 {
        dir.gid
    } else {
        cred.gid
    }
}

/// Mode of a new directory in `dir`: inherits S_ISGID from a setgid parent.
pub fn new_dir_mode(dir: &Vattr, mode: u32) -> u32 {
    let m = mode & ALLPERMS;
    if dir.mode & S_ISGID != 0 {
        m | S_ISGID
    } else {
        m
    }
}

/// Mode of a new non-directory: drops S_ISGID when the creator is not a
/// member of the file's group (Linux `inode_init_owner`) unless root.
pub fn new_file_mode(mode: u32, gid: u32, cred: &Cred) -> u32 {
    let m = mode & ALLPERMS;
    if m & S_ISGID != 0 && !cred.is_root() && !cred.groupmember(gid) {
        m & !S_ISGID
    } else {
        m
    }
}

/// Lock the two directories of a rename: one lock when they are the same
/// vnode, otherwise both in increasing inode order. The caller holds the
/// mount's rename lock, so two renames never interleave here.
pub fn rename_lock_dirs<'a>(
    a: &'a Vnode,
    b: &'a Vnode,
) -> (RwLockWriteGuard<'a, ()>, Option<RwLockWriteGuard<'a, ()>>) {
    if std::ptr::eq(a, b) {
        return (a.lock_exclusive(), None);
    }
    if a.ino() <= b.ino() {
        let ga = a.lock_exclusive();
        let gb = b.lock_exclusive();
        (ga, Some(gb))
    } else {
        let gb = b.lock_exclusive();
        let ga = a.lock_exclusive();
        (ga, Some(gb))
    }
}

/// Deepest directory tree walked upwards before giving up with EIO (a cycle
/// on a corrupt image).
pub const MAX_ANCESTRY_DEPTH: usize = 65536;

/// For rename of directory `src` into `tdvp`: fail with EINVAL if `tdvp` is
/// `src` or lies below it. Walks `..` from `tdvp` to the root with the
/// driver's own lookup (the rename lock is held, so the tree's shape does
/// not change under us). Call from a driver's rename with `tdvp` locked.
pub fn rename_check_ancestry(src: &Vnode, tdvp: &Vnode) -> KResult<()> {
    if std::ptr::eq(src, tdvp) || src.ino() == tdvp.ino() {
        return Err(Errno::EINVAL);
    }
    let mut cur: Option<VnodeRef> = None;
    for _ in 0..MAX_ANCESTRY_DEPTH {
        let (ino, parent) = {
            let here: &Vnode = cur.as_deref().unwrap_or(tdvp);
            (here.ino(), here.ops().lookup(here, b"..")?)
        };
        if parent.ino() == src.ino() {
            return Err(Errno::EINVAL);
        }
        if parent.ino() == ino {
            return Ok(()); // reached the root
        }
        cur = Some(parent);
    }
    Err(Errno::EIO)
}

/// Default pathconf values (NetBSD `genfs_pathconf`, Linux numbers).
pub fn pathconf(name: PathConf) -> KResult<i64> {
    Ok(match name {
        PathConf::LinkMax => 32767,
        PathConf::NameMax => NAME_MAX as i64,
        PathConf::PathMax => PATH_MAX as i64,
        PathConf::PipeBuf => 4096,
        PathConf::ChownRestricted => 1,
        PathConf::NoTrunc => 1,
        PathConf::FileSizeBits => 64,
        PathConf::SymlinkMax => (PATH_MAX - 1) as i64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn va(vtype: VType, mode: u32, uid: u32, gid: u32) -> Vattr {
        Vattr {
            vtype,
            mode,
            nlink: 1,
            uid,
            gid,
            fsid: 0,
            ino: 2,
            size: 0,
            blksize: 4096,
            bytes: 0,
            atime: Timespec::ZERO,
            mtime: Timespec::ZERO,
            ctime: Timespec::ZERO,
            birthtime: Timespec::ZERO,
            gen: 0,
            rdev: 0,
            flags: 0,
        }
    }

    #[test]
    fn group_membership_only_looked_up_when_it_matters() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let calls = Arc::new(AtomicUsize::new(0));
        let lazy = |groups: Vec<u32>| {
            let k = calls.clone();
            Cred::with_group_loader(11, 99, move || {
                k.fetch_add(1, Ordering::SeqCst);
                groups.clone()
            })
        };
        // 0755 / 0644: group and other agree on read and exec.
        assert!(access(&va(VType::Dir, 0o755, 10, 20), amode::VREAD | amode::VEXEC, &lazy(vec![20])).is_ok());
        assert!(access(&va(VType::Reg, 0o644, 10, 20), amode::VREAD, &lazy(vec![])).is_ok());
        assert_eq!(access(&va(VType::Reg, 0o644, 10, 20), amode::VWRITE, &lazy(vec![20])), Err(Errno::EACCES));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // They differ: membership decides, both ways (0707 denies members).
        assert!(access(&va(VType::Reg, 0o660, 10, 20), amode::VWRITE, &lazy(vec![20])).is_ok());
        assert_eq!(access(&va(VType::Reg, 0o660, 10, 20), amode::VWRITE, &lazy(vec![21])), Err(Errno::EACCES));
        assert_eq!(access(&va(VType::Reg, 0o707, 10, 20), amode::VREAD, &lazy(vec![20])), Err(Errno::EACCES));
        assert!(access(&va(VType::Reg, 0o707, 10, 20), amode::VREAD, &lazy(vec![21])).is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn access_classes() {
        let f = va(VType::Reg, 0o640, 10, 20);
        let owner = Cred::new(10, 99, vec![]);
        let member = Cred::new(11, 99, vec![20]);
        let other = Cred::new(12, 99, vec![]);
        assert!(access(&f, amode::VREAD | amode::VWRITE, &owner).is_ok());
        assert_eq!(access(&f, amode::VEXEC, &owner), Err(Errno::EACCES));
        assert!(access(&f, amode::VREAD, &member).is_ok());
        assert_eq!(access(&f, amode::VWRITE, &member), Err(Errno::EACCES));
        assert_eq!(access(&f, amode::VREAD, &other), Err(Errno::EACCES));
        // Owner class wins even when it grants less than "other".
        let g = va(VType::Reg, 0o047, 10, 20);
        assert_eq!(access(&g, amode::VREAD, &owner), Err(Errno::EACCES));
        assert!(access(&g, amode::VREAD, &other).is_ok());
        // Root: anything but exec of a file with no x bit.
        assert!(access(&f, amode::VREAD | amode::VWRITE, &Cred::root()).is_ok());
        assert_eq!(access(&f, amode::VEXEC, &Cred::root()), Err(Errno::EACCES));
        assert!(access(&va(VType::Dir, 0, 1, 1), amode::VEXEC, &Cred::root()).is_ok());
    }

    #[test]
    fn chmod_chown_rules() {
        let f = va(VType::Reg, 0o6755, 10, 20);
        let owner = Cred::new(10, 10, vec![]);
        let other = Cred::new(12, 12, vec![]);
        // chmod by a non-owner
        let sa = SetAttr { mode: Some(0o600), ..Default::default() };
        assert_eq!(setattr_check(&f, &sa, &other, false), Err(Errno::EPERM));
        // chmod g+s by an owner who is not in the group: bit dropped
        let sa = SetAttr { mode: Some(0o2755), ..Default::default() };
        assert_eq!(setattr_check(&f, &sa, &owner, false).unwrap().mode, Some(0o755));
        // chown to another user by non-root
        let sa = SetAttr { uid: Some(12), ..Default::default() };
        assert_eq!(setattr_check(&f, &sa, &owner, false), Err(Errno::EPERM));
        // chgrp to a group the owner is in: ok, setuid/setgid dropped
        let member = Cred::new(10, 10, vec![30]);
        let sa = SetAttr { gid: Some(30), ..Default::default() };
        let out = setattr_check(&f, &sa, &member, false).unwrap();
        assert_eq!(out.mode, Some(0o0755));
        // chgrp to a foreign group
        let sa = SetAttr { gid: Some(31), ..Default::default() };
        assert_eq!(setattr_check(&f, &sa, &member, false), Err(Errno::EPERM));
        // root chown keeps working
        let sa = SetAttr { uid: Some(1), gid: Some(2), ..Default::default() };
        assert!(setattr_check(&f, &sa, &Cred::root(), false).is_ok());
    }

    #[test]
    fn truncate_and_utimes_rules() {
        let f = va(VType::Reg, 0o644, 10, 20);
        let other = Cred::new(12, 12, vec![]);
        let sa = SetAttr { size: Some(0), ..Default::default() };
        assert_eq!(setattr_check(&f, &sa, &other, false), Err(Errno::EACCES));
        assert!(setattr_check(&f, &sa, &other, true).is_ok());
        let d = va(VType::Dir, 0o777, 10, 20);
        assert_eq!(setattr_check(&d, &sa, &Cred::root(), false), Err(Errno::EISDIR));
        let t = SetAttr { mtime: Some(SetTime::At(Timespec::new(1, 0))), ..Default::default() };
        assert_eq!(setattr_check(&f, &t, &other, false), Err(Errno::EPERM));
        let now = SetAttr { mtime: Some(SetTime::Now), atime: Some(SetTime::Now), ..Default::default() };
        assert_eq!(setattr_check(&f, &now, &other, false), Err(Errno::EACCES));
        let w = va(VType::Reg, 0o666, 10, 20);
        assert!(setattr_check(&w, &now, &other, false).is_ok());
    }

    #[test]
    fn sticky_and_names() {
        let d = va(VType::Dir, 0o1777, 1, 1);
        let f = va(VType::Reg, 0o644, 2, 2);
        assert_eq!(sticky_check(&d, &f, &Cred::new(3, 3, vec![])), Err(Errno::EPERM));
        assert!(sticky_check(&d, &f, &Cred::new(2, 3, vec![])).is_ok());
        assert!(sticky_check(&d, &f, &Cred::new(1, 3, vec![])).is_ok());
        assert_eq!(check_name(b"", true), Err(Errno::ENOENT));
        assert_eq!(check_name(&[b'a'; 256], true), Err(Errno::ENAMETOOLONG));
        assert!(check_name(&[b'a'; 255], true).is_ok());
        assert_eq!(check_name(b"a/b", true), Err(Errno::EINVAL));
        assert_eq!(check_name(b"..", false), Err(Errno::EEXIST));
        assert!(check_name(b"..", true).is_ok());
    }

    #[test]
    fn setgid_inheritance() {
        let d = va(VType::Dir, 0o2775, 1, 50);
        assert_eq!(new_file_gid(&d, &Cred::new(3, 3, vec![])), 50);
        assert_eq!(new_dir_mode(&d, 0o755), 0o2755);
        let plain = va(VType::Dir, 0o775, 1, 50);
        assert_eq!(new_file_gid(&plain, &Cred::new(3, 3, vec![])), 3);
        assert_eq!(new_file_mode(0o2755, 50, &Cred::new(3, 3, vec![])), 0o755);
    }
}
