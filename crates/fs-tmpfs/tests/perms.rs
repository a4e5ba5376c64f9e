//! Ownership, permissions, sticky and setgid directories.

mod common;

use common::*;
use rumpkern::types::amode;
use rumpkern::types::oflags;
use rumpkern::{Cred, Errno, SetAttr};

#[test]
fn new_files_owned_by_creator() {
    let fs = Fs::new("");
    let u = Cred::new(1000, 100, vec![]);
    let f = fs.root.create(b"f", 0o640, &u).unwrap();
    let va = f.getattr().unwrap();
    assert_eq!((va.uid, va.gid, va.mode), (1000, 100, 0o640));
    let d = fs.root.mkdir(b"d", 0o750, &u).unwrap();
    let va = d.getattr().unwrap();
    assert_eq!((va.uid, va.gid, va.mode), (1000, 100, 0o750));
    let l = fs.root.symlink(b"l", b"f", &u).unwrap();
    assert_eq!(l.getattr().unwrap().uid, 1000);
}

#[test]
fn lookup_denied_in_private_dir() {
    let fs = Fs::new("");
    let alice = user(1000, 1000);
    let bob = user(1001, 1001);
    let d = fs.root.mkdir(b"private", 0o700, &alice).unwrap();
    d.create(b"secret", 0o644, &alice).unwrap();
    assert!(d.lookup(b"secret", &alice).is_ok());
    assert_eq!(d.lookup(b"secret", &bob).unwrap_err(), Errno::EACCES);
    assert_eq!(d.create(b"mine", 0o644, &bob).unwrap_err(), Errno::EACCES);
    // Root passes.
    assert!(d.lookup(b"secret", &root()).is_ok());
}

#[test]
fn create_denied_in_read_only_dir() {
    let fs = Fs::new("");
    let alice = user(1000, 1000);
    let bob = user(1001, 1001);
    let d = fs.root.mkdir(b"ro", 0o755, &alice).unwrap();
    d.create(b"a", 0o644, &alice).unwrap();
    assert_eq!(d.create(b"b", 0o644, &bob).unwrap_err(), Errno::EACCES);
    assert_eq!(d.mkdir(b"b", 0o755, &bob).unwrap_err(), Errno::EACCES);
    assert_eq!(d.symlink(b"b", b"x", &bob).unwrap_err(), Errno::EACCES);
    assert_eq!(d.remove(b"a", &bob), Err(Errno::EACCES));
    // Bob may read the directory and look things up.
    assert!(d.lookup(b"a", &bob).is_ok());
    // Opening alice's 0644 file for writing is refused, reading allowed.
    let a = d.lookup(b"a", &bob).unwrap();
    assert_eq!(a.open(oflags::O_WRONLY, &bob), Err(Errno::EACCES));
    assert!(a.open(oflags::O_RDONLY, &bob).is_ok());
    assert_eq!(a.access(amode::VWRITE, &bob), Err(Errno::EACCES));
    // chmod by a non-owner.
    assert_eq!(
        a.setattr(
            &SetAttr {
                mode: Some(0o777),
                ..Default::default()
            },
            &bob,
            false
        ),
        Err(Errno::EPERM)
    );
    // The owner makes it world-writable; now bob may write.
    a.setattr(
        &SetAttr {
            mode: Some(0o666),
            ..Default::default()
        },
        &alice,
        false,
    )
    .unwrap();
    assert!(a.open(oflags::O_WRONLY, &bob).is_ok());
    // chown by non-root.
    assert_eq!(
        a.setattr(
            &SetAttr {
                uid: Some(1001),
                ..Default::default()
            },
            &alice,
            false
        ),
        Err(Errno::EPERM)
    );
    a.setattr(
        &SetAttr {
            uid: Some(1001),
            gid: Some(1001),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let va = a.getattr().unwrap();
    assert_eq!((va.uid, va.gid), (1001, 1001));
}

#[test]
fn sticky_directory() {
    let fs = Fs::new(""); // root is 1777
    let alice = user(1000, 1000);
    let bob = user(1001, 1001);
    fs.root.create(b"alices", 0o666, &alice).unwrap();
    // Bob can write into /, but not remove or rename alice's file.
    let b = fs.root.create(b"bobs", 0o644, &bob).unwrap();
    assert_eq!(fs.root.remove(b"alices", &bob), Err(Errno::EPERM));
    assert_eq!(
        fs.root.rename(b"alices", &fs.root, b"stolen", &bob),
        Err(Errno::EPERM)
    );
    // Nor replace it by renaming over it.
    assert_eq!(
        fs.root.rename(b"bobs", &fs.root, b"alices", &bob),
        Err(Errno::EPERM)
    );
    // His own file he may remove; alice hers; root anything.
    fs.root.rename(b"bobs", &fs.root, b"bobs2", &bob).unwrap();
    fs.root.remove(b"bobs2", &bob).unwrap();
    assert_eq!(b.getattr().unwrap().nlink, 0);
    fs.root.remove(b"alices", &alice).unwrap();
    // Without the sticky bit bob may remove other people's files.
    let d = fs.root.mkdir(b"open", 0o777, &root()).unwrap();
    d.create(b"x", 0o644, &alice).unwrap();
    d.remove(b"x", &bob).unwrap();
}

#[test]
fn setgid_directory_inheritance() {
    let fs = Fs::new("");
    let d = fs.root.mkdir(b"shared", 0o2775, &root()).unwrap();
    d.setattr(
        &SetAttr {
            gid: Some(500),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    d.setattr(
        &SetAttr {
            mode: Some(0o2777),
            ..Default::default()
        },
        &root(),
        false,
    )
    .unwrap();
    let u = Cred::new(1000, 1000, vec![]);
    let f = d.create(b"f", 0o644, &u).unwrap();
    assert_eq!(
        f.getattr().unwrap().gid,
        500,
        "group of the setgid directory"
    );
    let sub = d.mkdir(b"sub", 0o755, &u).unwrap();
    let va = sub.getattr().unwrap();
    assert_eq!(va.gid, 500);
    assert_eq!(va.mode, 0o2755, "subdirectories inherit setgid");
    // A setgid file created by a non-member loses its setgid bit.
    let g = d.create(b"g", 0o2755, &u).unwrap();
    assert_eq!(g.getattr().unwrap().mode, 0o755);
    // A member keeps it.
    let m = Cred::new(1001, 1001, vec![500]);
    let h = d.create(b"h", 0o2755, &m).unwrap();
    assert_eq!(h.getattr().unwrap().mode, 0o2755);
    // Without setgid on the directory: the creator's group.
    let plain = fs.root.mkdir(b"plain", 0o777, &root()).unwrap();
    let p = plain.create(b"p", 0o644, &u).unwrap();
    assert_eq!(p.getattr().unwrap().gid, 1000);
}

#[test]
fn read_only_mount() {
    let fs = Fs::new("ro");
    assert_eq!(
        fs.root.create(b"x", 0o644, &root()).unwrap_err(),
        Errno::EROFS
    );
    assert_eq!(
        fs.root.mkdir(b"x", 0o755, &root()).unwrap_err(),
        Errno::EROFS
    );
    assert!(fs.mp.statvfs().unwrap().readonly);
}
