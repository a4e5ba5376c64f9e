//! The `-o` list of a file server: the generic server options go to p2k,
//! everything else to the driver as [`MountArgs`].
//!
//! | option | meaning |
//! |---|---|
//! | `ro`, `rdonly` / `rw` | read-only / read-write (both p2k and the driver) |
//! | `force` | mount even if the file system is not clean (driver) |
//! | `allow_other` / `noallow_other` | let other users in (default: on when run as root) |
//! | `attr_timeout=S`, `entry_timeout=S` | kernel cache timeouts in seconds (default 1, 30 when read-only) |
//! | `default_permissions` / `nodefault_permissions` | kernel permission checks on top of rumpkern's (default: on read-only, off read-write; see p2k's crate doc) |
//! | `threads=N` | FUSE worker threads (1..=64) |
//! | `uring` / `nouring` | take requests through FUSE over io_uring when the kernel offers it (Linux 6.14+, as root, after `echo 1 > /sys/module/fuse/parameters/enable_uring`): each is served on the requester's CPU (default: on) |
//! | `writebehind` / `nowritebehind` | answer writes on write-only files before doing them where the file system allows it, as a page cache does (default: on; ENOSPC and EFBIG are still reported by write(); see p2k's `wb` module) |
//! | `fsname=NAME`, `subtype=NAME` | what /proc/mounts shows |
//! | `defaults`, `auto`, `noauto`, `user`, `nouser`, `users`, `_netdev`, `nofail`, `rump`, `nosuid`, `nodev` | fstab words; accepted and ignored (the mount is always nosuid,nodev) |
//!
//! Any other option is the driver's; a driver refuses options it does not
//! know with EINVAL.

use std::time::Duration;

use p2k::P2kOptions;
use rumpkern::MountArgs;

/// The split `-o` lists.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    pub p2k: P2kOptions,
    pub args: MountArgs,
}

fn seconds(key: &str, v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{key}={v}: not a number of seconds")),
    }
}

/// Split every `-o` argument (each a comma-separated list) into server and
/// driver options. Errors: a message naming the bad generic option.
pub fn split_options<S: AsRef<str>>(lists: &[S]) -> Result<ServerOptions, String> {
    let mut o = ServerOptions::default();
    for list in lists {
        for opt in list
            .as_ref()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (k, v) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            match (k, v) {
                ("ro" | "rdonly", None) => {
                    o.p2k.ro = true;
                    o.args.rdonly = true;
                }
                ("rw", None) => {
                    o.p2k.ro = false;
                    o.args.rdonly = false;
                }
                ("force", None) => o.args.force = true,
                ("allow_other", None) => o.p2k.allow_other = true,
                ("noallow_other", None) => o.p2k.allow_other = false,
                ("default_permissions", None) => o.p2k.default_permissions = Some(true),
                ("nodefault_permissions", None) => o.p2k.default_permissions = Some(false),
                ("writebehind", None) => o.p2k.write_behind = true,
                ("uring", None) => o.p2k.uring = true,
                ("nouring", None) => o.p2k.uring = false,
                ("nowritebehind", None) => o.p2k.write_behind = false,
                ("attr_timeout", Some(v)) => o.p2k.attr_timeout = Some(seconds(k, v)?),
                ("entry_timeout", Some(v)) => o.p2k.entry_timeout = Some(seconds(k, v)?),
                ("threads", Some(v)) => match v.parse::<usize>() {
                    Ok(n) if (1..=64).contains(&n) => o.p2k.threads = n,
                    _ => return Err(format!("threads={v}: not a number from 1 to 64")),
                },
                ("fsname", Some(v)) if !v.is_empty() => o.p2k.fsname = Some(v.to_string()),
                ("subtype", Some(v)) if !v.is_empty() => o.p2k.subtype = Some(v.to_string()),
                (
                    "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "_netdev"
                    | "nofail" | "rump" | "nosuid" | "nodev",
                    None,
                ) => {}
                (
                    "ro"
                    | "rdonly"
                    | "rw"
                    | "force"
                    | "allow_other"
                    | "noallow_other"
                    | "default_permissions"
                    | "nodefault_permissions"
                    | "writebehind"
                    | "nowritebehind"
                    | "uring"
                    | "nouring",
                    Some(_),
                ) => return Err(format!("{opt}: option {k} takes no value")),
                ("attr_timeout" | "entry_timeout" | "threads" | "fsname" | "subtype", _) => {
                    return Err(format!("{opt}: option {k} needs a value"))
                }
                _ => o.args.add(opt),
            }
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        let o = split_options(&[
            "ro,size=1m",
            "allow_other,attr_timeout=2.5,threads=3",
            "uid=5,defaults",
        ])
        .unwrap();
        assert!(o.p2k.ro && o.args.rdonly && o.p2k.allow_other);
        assert_eq!(o.p2k.attr_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(o.p2k.threads, 3);
        assert_eq!(o.args.get("size"), Some(Some("1m")));
        assert_eq!(o.args.get("uid"), Some(Some("5")));
        assert_eq!(o.args.options.len(), 2);
        let o = split_options(&["noallow_other,rw"]).unwrap();
        assert!(!o.p2k.allow_other && !o.p2k.ro);
        assert!(o.p2k.write_behind, "write-behind is on by default");
        assert!(!split_options(&["nowritebehind"]).unwrap().p2k.write_behind);
        assert!(split_options(&["nowritebehind,writebehind"]).unwrap().p2k.write_behind);
        assert!(split_options(&["writebehind=1"]).is_err());
        assert!(o.p2k.uring, "io_uring is used by default where offered");
        assert!(!split_options(&["nouring"]).unwrap().p2k.uring);
        assert!(split_options(&["uring=0"]).is_err());
    }

    #[test]
    fn bad_generic() {
        assert!(split_options(&["attr_timeout=x"])
            .unwrap_err()
            .contains("attr_timeout"));
        assert!(split_options(&["threads=0"]).is_err());
        assert!(split_options(&["threads"]).is_err());
        assert!(split_options(&["ro=1"]).is_err());
        assert!(split_options(&["entry_timeout=-1"]).is_err());
    }
}
