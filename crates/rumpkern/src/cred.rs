//! Credentials (NetBSD `kauth_cred_t`, reduced to what file systems check).

use std::fmt;
use std::sync::{Arc, OnceLock};

/// Where the supplementary groups come from.
#[derive(Clone)]
enum Groups {
    Known(Vec<u32>),
    /// Fetched on first use (by [`Cred::groupmember`] when the primary
    /// group does not decide): looking them up costs the FUSE server a read
    /// of `/proc/<pid>/status`, and most checks never need them (the caller
    /// owns the file, or is root).
    Lazy(Arc<LazyGroups>),
}

struct LazyGroups {
    load: Box<dyn Fn() -> Vec<u32> + Send + Sync>,
    got: OnceLock<Vec<u32>>,
}

/// Who is asking: effective uid, gid and supplementary groups.
#[derive(Clone)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    groups: Groups,
}

impl Cred {
    /// The superuser (uid 0, gid 0): what fs-utils run as by default.
    pub fn root() -> Cred {
        Cred::new(0, 0, Vec::new())
    }

    pub fn new(uid: u32, gid: u32, groups: Vec<u32>) -> Cred {
        Cred { uid, gid, groups: Groups::Known(groups) }
    }

    /// A credential whose supplementary groups `load` supplies the first
    /// time a check needs them (at most once; clones share the answer).
    /// `load` runs in whatever thread makes that check, so it must be
    /// cheap to call from a vnode operation and never fail loudly: an
    /// empty list only ever denies.
    pub fn with_group_loader(
        uid: u32,
        gid: u32,
        load: impl Fn() -> Vec<u32> + Send + Sync + 'static,
    ) -> Cred {
        Cred {
            uid,
            gid,
            groups: Groups::Lazy(Arc::new(LazyGroups { load: Box::new(load), got: OnceLock::new() })),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// The supplementary groups (fetched now if they are loaded lazily).
    pub fn groups(&self) -> &[u32] {
        match &self.groups {
            Groups::Known(g) => g,
            Groups::Lazy(l) => l.got.get_or_init(|| (l.load)()),
        }
    }

    /// Is `gid` the primary group or one of the supplementary groups?
    pub fn groupmember(&self, gid: u32) -> bool {
        self.gid == gid || self.groups().contains(&gid)
    }
}

impl PartialEq for Cred {
    fn eq(&self, o: &Cred) -> bool {
        self.uid == o.uid && self.gid == o.gid && self.groups() == o.groups()
    }
}

impl Eq for Cred {}

impl fmt::Debug for Cred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cred");
        d.field("uid", &self.uid).field("gid", &self.gid);
        match &self.groups {
            Groups::Known(g) => d.field("groups", g),
            Groups::Lazy(l) => match l.got.get() {
                Some(g) => d.field("groups", g),
                None => d.field("groups", &"(not fetched)"),
            },
        };
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership() {
        let c = Cred::new(1000, 100, vec![5, 6]);
        assert!(c.groupmember(100));
        assert!(c.groupmember(6));
        assert!(!c.groupmember(7));
        assert!(!c.is_root());
        assert!(Cred::root().is_root());
    }

    #[test]
    fn lazy_groups_are_fetched_once_and_only_when_needed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let k = calls.clone();
        let c = Cred::with_group_loader(1000, 100, move || {
            k.fetch_add(1, Ordering::SeqCst);
            vec![5, 6]
        });
        assert!(c.groupmember(100), "primary group");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "primary group needs no lookup");
        let c2 = c.clone();
        assert!(c2.groupmember(6));
        assert!(!c.groupmember(7));
        assert_eq!(c.groups(), &[5, 6]);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one lookup shared by clones");
        assert_eq!(c, Cred::new(1000, 100, vec![5, 6]));
    }
}
