//! Credentials (NetBSD `kauth_cred_t`, reduced to what file systems check).

/// Who is asking: effective uid, gid and supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Cred {
    /// The superuser (uid 0, gid 0): what fs-utils run as by default.
    pub fn root() -> Cred {
        Cred { uid: 0, gid: 0, groups: Vec::new() }
    }

    pub fn new(uid: u32, gid: u32, groups: Vec<u32>) -> Cred {
        Cred { uid, gid, groups }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Is `gid` the primary group or one of the supplementary groups?
    pub fn groupmember(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
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
}
