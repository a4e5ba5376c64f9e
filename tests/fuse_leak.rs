//! p2k's reference rule under load: every node the kernel was handed is
//! released when the kernel forgets it. Walk a large tree through the
//! mount, make the kernel drop its dentries and inodes, and check that the
//! referenced vnodes fall back to the root. Needs root and /dev/fuse.

mod support;

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rumpkern::{FsType, Mount, MountArgs};
use support::*;

fn tmpfs() -> Arc<Mount> {
    fs_tmpfs::TMPFS
        .mount(None, &MountArgs::default())
        .expect("tmpfs mount")
}

fn drop_caches() {
    // 2 = reclaim dentries and inodes: the kernel sends FORGET for each.
    fs::write("/proc/sys/vm/drop_caches", b"2").expect("drop_caches (needs root)");
}

#[test]
fn forgets_release_every_vnode() {
    let mp = MountGuard::new("leak");
    let mount = tmpfs();
    let opts = p2k::P2kOptions {
        threads: 3,
        ..Default::default()
    };
    let sess = p2k::spawn(mount.clone(), &mp.mp, &opts).expect("spawn p2k");

    // 2,000 files in 50 directories, created through the mount.
    for d in 0..50 {
        let dir = mp.path(&format!("dir{d:02}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..40 {
            fs::write(dir.join(format!("file{f:02}")), format!("{d}/{f}")).unwrap();
        }
    }
    fs::create_dir_all(mp.path("deep/a/b/c/d")).unwrap();
    std::os::unix::fs::symlink("../dir00/file00", mp.path("deep/link")).unwrap();

    // Walk it with the usual tools (readdirplus, lookups, getattr).
    let ls = run_timeout(
        Command::new("ls").arg("-lR").arg(&mp.mp),
        Duration::from_secs(120),
    );
    assert!(ls.status.success());
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert_eq!(
        listing.lines().filter(|l| l.contains(" file")).count(),
        2000
    );
    let find = run_timeout(
        Command::new("find").arg(&mp.mp).arg("-type").arg("f"),
        Duration::from_secs(120),
    );
    assert_eq!(String::from_utf8_lossy(&find.stdout).lines().count(), 2000);
    let (_, busy_walked) = mount.vnode_counts();
    assert!(
        busy_walked > 2000,
        "the kernel holds the walked nodes ({busy_walked} referenced)"
    );
    assert_eq!(
        sess.state().node_count(),
        busy_walked,
        "one node per referenced vnode"
    );

    // Make the kernel forget; forgets arrive asynchronously.
    let settled = wait_for(Duration::from_secs(30), || {
        drop_caches();
        let (_, busy) = mount.vnode_counts();
        busy <= 1
    });
    let (cached, busy) = mount.vnode_counts();
    assert!(settled, "after drop_caches {busy} vnodes are still referenced ({cached} cached), p2k holds {} nodes", sess.state().node_count());
    assert_eq!(sess.state().handle_count(), 0);

    // Everything is still there and readable afterwards.
    assert_eq!(
        fs::read_to_string(mp.path("dir49/file39")).unwrap(),
        "49/39"
    );
    assert_eq!(fs::read_to_string(mp.path("deep/link")).unwrap(), "0/0");

    // Unlinked files are freed once forgotten: remove a directory's files
    // and see the vnode cache shrink.
    let (before, _) = mount.vnode_counts();
    for f in 0..40 {
        fs::remove_file(mp.path(&format!("dir10/file{f:02}"))).unwrap();
    }
    fs::remove_dir(mp.path("dir10")).unwrap();
    wait_for(Duration::from_secs(30), || {
        drop_caches();
        mount.vnode_counts().1 <= 1
    });
    assert!(
        mount.vnode_counts().0 <= before,
        "removed files left the cache"
    );

    // Clean unmount: the server drops the root and unmounts the rumpkern mount.
    sess.unmount().expect("unmount");
    assert_eq!(
        mount.vnode_counts(),
        (0, 0),
        "the rumpkern mount was unmounted and every vnode reclaimed"
    );
    assert!(!is_mounted(&mp.mp));
}

#[test]
fn open_unlinked_file_survives_forget_until_release() {
    let mp = MountGuard::new("leak-open");
    let mount = tmpfs();
    let sess = p2k::spawn(mount.clone(), &mp.mp, &p2k::P2kOptions::default()).expect("spawn p2k");
    let p = mp.path("f");
    fs::write(&p, b"data").unwrap();
    let h = fs::File::open(&p).unwrap();
    fs::remove_file(&p).unwrap();
    drop_caches();
    assert_eq!(sess.state().handle_count(), 1);
    let mut s = String::new();
    std::io::Read::read_to_string(&mut &h, &mut s).unwrap();
    assert_eq!(s, "data");
    drop(h);
    assert!(
        wait_for(Duration::from_secs(10), || sess.state().handle_count() == 0),
        "release arrived"
    );
    assert!(wait_for(Duration::from_secs(30), || {
        drop_caches();
        mount.vnode_counts().1 <= 1
    }));
    drop(sess);
}
