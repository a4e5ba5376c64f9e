//! tmpfs: the memory file system (NetBSD `sys/fs/tmpfs`), and the reference
//! driver the rumpkern shim is tested with.
//!
//! Everything lives in memory and goes away at unmount. Regular files are
//! sparse (4 KiB pages, holes cost nothing), directories keep stable readdir
//! cookies, and the full POSIX set is there: hard links, symbolic links,
//! fifos, sockets, device nodes, ownership and permissions, setgid
//! directories, four timestamps with nanoseconds, rename in every form, and
//! open-but-unlinked files that live until their last vnode reference goes.
//!
//! Mount with [`TMPFS`]`.mount(None, &args)` (or [`mount`] to also get the
//! [`TmpfsMount`] for statistics). Options (`MountArgs::options`), spelled as
//! Linux tmpfs spells them:
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `size=N[k\|m\|g\|t]` | limit on data and metadata in bytes (rounded up to 4 KiB); ENOSPC when full; 0 = no limit | no limit |
//! | `nr_inodes=N[k\|m\|g]`, `inodes=N` | most nodes (root included); 0 = no limit | no limit |
//! | `uid=N`, `gid=N` | owner of the root directory | 0, 0 |
//! | `mode=OCTAL` | permissions of the root directory | 1777 |
//! | `noatime`, `strictatime` | do not / do update atime on read | `strictatime` |
//!
//! Any other option is refused with EINVAL (and logged).
//!
//! The driver is split as NetBSD's is: [`node`] (nodes, the node table,
//! space accounting, file data), [`vnops`] (vnode operations), `vfsops`
//! (mount-wide operations). The locking rules are in [`node`].

pub mod node;
mod vfsops;
pub mod vnops;

use std::sync::Arc;

use rumpkern::dev::BlockDevice;
use rumpkern::{Errno, FsType, KResult, Mount, MountArgs, Vnode};

pub use node::{TmpfsMount, LINK_MAX, MAX_FILE_SIZE, PAGE_SIZE, ROOT_INO, SYMLINK_MAX};
pub use vnops::TmpVnode;

/// The tmpfs file system type (register it with `rumpkern::vfs::register`).
pub struct TmpfsType;

/// The tmpfs type: name "tmpfs", no device.
pub static TMPFS: TmpfsType = TmpfsType;

impl FsType for TmpfsType {
    fn name(&self) -> &'static str {
        "tmpfs"
    }

    fn needs_device(&self) -> bool {
        false
    }

    /// Mount a new, empty tmpfs. A device, if given, is ignored (with a
    /// warning). Errors: EINVAL for a bad or unknown option.
    fn mount(&self, dev: Option<Arc<dyn BlockDevice>>, args: &MountArgs) -> KResult<Arc<Mount>> {
        if dev.is_some() {
            log::warn!("tmpfs: a memory file system uses no device; ignoring the one given");
        }
        mount(args).map(|(mp, _)| mp)
    }
}

/// Parsed tmpfs mount options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmpfsOptions {
    /// Size limit in bytes (a multiple of [`PAGE_SIZE`]); 0 = none.
    pub size: u64,
    /// Node limit; 0 = none.
    pub nr_inodes: u64,
    /// Root directory owner.
    pub uid: u32,
    pub gid: u32,
    /// Root directory permissions.
    pub mode: u32,
    /// Reads do not update atime.
    pub noatime: bool,
}

impl Default for TmpfsOptions {
    fn default() -> Self {
        TmpfsOptions {
            size: 0,
            nr_inodes: 0,
            uid: 0,
            gid: 0,
            mode: 0o1777,
            noatime: false,
        }
    }
}

/// `N` with an optional k/m/g/t suffix (powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        (i, 't' | 'T') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl TmpfsOptions {
    /// Parse the file-system-specific options of `args`. Errors: EINVAL,
    /// logged with the offending option.
    pub fn parse(args: &MountArgs) -> KResult<TmpfsOptions> {
        let mut o = TmpfsOptions::default();
        for (k, v) in &args.options {
            let bad = |why: &str| {
                log::error!(
                    "tmpfs: option {}{}{}: {}",
                    k,
                    if v.is_some() { "=" } else { "" },
                    v.as_deref().unwrap_or(""),
                    why
                );
                Errno::EINVAL
            };
            let need = || v.as_deref().ok_or_else(|| bad("needs a value"));
            match k.as_str() {
                "size" => {
                    let sz = parse_size(need()?)
                        .ok_or_else(|| bad("not a size (N with k, m, g or t)"))?;
                    o.size = sz
                        .checked_next_multiple_of(PAGE_SIZE as u64)
                        .ok_or_else(|| bad("too large"))?;
                }
                "nr_inodes" | "inodes" => {
                    o.nr_inodes = parse_size(need()?).ok_or_else(|| bad("not a number"))?;
                }
                "uid" => o.uid = need()?.parse().map_err(|_| bad("not a user id"))?,
                "gid" => o.gid = need()?.parse().map_err(|_| bad("not a group id"))?,
                "mode" => {
                    let m =
                        u32::from_str_radix(need()?, 8).map_err(|_| bad("not an octal mode"))?;
                    if m > 0o7777 {
                        return Err(bad("mode larger than 07777"));
                    }
                    o.mode = m;
                }
                "noatime" if v.is_none() => o.noatime = true,
                "strictatime" if v.is_none() => o.noatime = false,
                _ => return Err(bad("unknown tmpfs option")),
            }
        }
        Ok(o)
    }
}

/// Mount a new tmpfs; returns the mount and the tmpfs instance (for
/// statistics such as [`TmpfsMount::node_count`]). Errors: EINVAL for a bad
/// option.
pub fn mount(args: &MountArgs) -> KResult<(Arc<Mount>, Arc<TmpfsMount>)> {
    let o = TmpfsOptions::parse(args)?;
    let tm = TmpfsMount::new(o.size, o.nr_inodes, o.uid, o.gid, o.mode, o.noatime);
    let mp = Mount::new("tmpfs", args.rdonly);
    mp.set_ops(Box::new(vfsops::TmpfsVfs { tm: tm.clone() }));
    Ok((mp, tm))
}

/// The tmpfs instance a vnode belongs to (None for another file system's).
pub fn tmpfs_of(vp: &Vnode) -> Option<Arc<TmpfsMount>> {
    vp.data::<TmpVnode>().map(|t| t.tmpfs().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("1t"), Some(1 << 40));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("10%"), None);
        assert_eq!(parse_size("99999999999999999999k"), None);
    }

    #[test]
    fn options() {
        let o = TmpfsOptions::parse(&MountArgs::parse(
            "size=10k,nr_inodes=5,uid=7,gid=8,mode=755,noatime",
        ))
        .unwrap();
        assert_eq!(
            o,
            TmpfsOptions {
                size: 12288,
                nr_inodes: 5,
                uid: 7,
                gid: 8,
                mode: 0o755,
                noatime: true
            }
        );
        assert_eq!(
            TmpfsOptions::parse(&MountArgs::parse("")).unwrap(),
            TmpfsOptions::default()
        );
        assert_eq!(
            TmpfsOptions::parse(&MountArgs::parse("bogus=1")),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            TmpfsOptions::parse(&MountArgs::parse("mode=9")),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            TmpfsOptions::parse(&MountArgs::parse("mode=17777")),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            TmpfsOptions::parse(&MountArgs::parse("size")),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            TmpfsOptions::parse(&MountArgs::parse("uid=x")),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            TmpfsOptions::parse(&MountArgs::parse("inodes=3"))
                .unwrap()
                .nr_inodes,
            3
        );
    }
}
