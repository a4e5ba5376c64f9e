//! rump_tmpfs end to end: the command, the real FUSE mount, POSIX
//! operations checked with stat, limits, permissions, unmounting.
//! Needs root and /dev/fuse.

mod support;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

fn statfs_type(p: &Path) -> i64 {
    let c = cpath(p);
    // SAFETY: st is written on success.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        assert_eq!(libc::statfs(c.as_ptr(), &mut st), 0);
        st.f_type as i64
    }
}

#[test]
fn background_mount_is_live_when_command_returns() {
    let g = MountGuard::rump_tmpfs("bg", &[]);
    // No waiting: the command returned only after the mount was live.
    assert_eq!(statfs_type(&g.mp), FUSE_SUPER_MAGIC);
    let line = mount_line(&g.mp).unwrap();
    assert!(
        line.contains(" - fuse.tmpfs tmpfs "),
        "type fuse.tmpfs, source tmpfs: {line}"
    );
    assert!(
        line.contains("allow_other"),
        "root servers default to allow_other: {line}"
    );
    fs::write(g.path("x"), b"1").unwrap();
    assert_eq!(fs::read_dir(&g.mp).unwrap().count(), 1);
    let st = lstat(&g.mp);
    assert_eq!(st.st_ino, 1, "root is node 1");
    assert_eq!(st.st_mode & 0o7777, 0o1777, "tmpfs root default mode");
}

#[test]
fn files_dirs_links_rename_attrs() {
    let g = MountGuard::rump_tmpfs("posix", &[]);
    // Regular file: write, read, append, seek.
    let f = g.path("f");
    fs::write(&f, b"hello world").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello world");
    {
        let mut a = fs::OpenOptions::new().append(true).open(&f).unwrap();
        a.write_all(b"!").unwrap();
    }
    assert_eq!(fs::read_to_string(&f).unwrap(), "hello world!");
    {
        let mut h = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&f)
            .unwrap();
        h.seek(SeekFrom::Start(6)).unwrap();
        h.write_all(b"WORLD").unwrap();
        h.seek(SeekFrom::Start(0)).unwrap();
        let mut s = String::new();
        h.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello WORLD!");
    }
    // O_APPEND through a descriptor that also seeks.
    {
        let mut a = fs::OpenOptions::new()
            .append(true)
            .read(true)
            .open(&f)
            .unwrap();
        a.seek(SeekFrom::Start(0)).unwrap();
        a.write_all(b"?").unwrap();
    }
    assert_eq!(fs::read_to_string(&f).unwrap(), "hello WORLD!?");
    // O_TRUNC.
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&f)
        .unwrap();
    assert_eq!(lstat(&f).st_size, 0);

    // A large file (several max_write requests) reads back intact.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(g.path("big"), &big).unwrap();
    assert_eq!(fs::read(g.path("big")).unwrap(), big);

    // Directories.
    fs::create_dir(g.path("d")).unwrap();
    fs::create_dir_all(g.path("d/e/f")).unwrap();
    let st = lstat(&g.path("d"));
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFDIR);
    assert_eq!(st.st_nlink, 3, "d has . , its entry and e/..");
    assert_eq!(
        fs::create_dir(g.path("d")).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        fs::remove_dir(g.path("d")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    fs::remove_dir(g.path("d/e/f")).unwrap();
    assert!(!g.path("d/e/f").exists());

    // Symlinks.
    std::os::unix::fs::symlink("d/e", g.path("sl")).unwrap();
    assert_eq!(fs::read_link(g.path("sl")).unwrap(), Path::new("d/e"));
    let st = lstat(&g.path("sl"));
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(st.st_size, 3);
    assert!(g.path("sl").is_dir(), "followed to d/e");

    // Hard links.
    fs::write(g.path("h1"), b"linked").unwrap();
    fs::hard_link(g.path("h1"), g.path("h2")).unwrap();
    let (a, b) = (lstat(&g.path("h1")), lstat(&g.path("h2")));
    assert_eq!(a.st_ino, b.st_ino);
    assert_eq!(a.st_nlink, 2);
    fs::remove_file(g.path("h1")).unwrap();
    assert_eq!(lstat(&g.path("h2")).st_nlink, 1);
    assert_eq!(fs::read(g.path("h2")).unwrap(), b"linked");

    // Rename: plain, over an existing file, across directories.
    fs::write(g.path("r1"), b"one").unwrap();
    fs::write(g.path("r2"), b"two").unwrap();
    fs::rename(g.path("r1"), g.path("r2")).unwrap();
    assert!(!g.path("r1").exists());
    assert_eq!(fs::read(g.path("r2")).unwrap(), b"one");
    fs::rename(g.path("r2"), g.path("d/e/r3")).unwrap();
    assert_eq!(fs::read(g.path("d/e/r3")).unwrap(), b"one");
    fs::rename(g.path("d/e"), g.path("e2")).unwrap();
    assert_eq!(fs::read(g.path("e2/r3")).unwrap(), b"one");
    assert_eq!(
        fs::rename(g.path("d"), g.path("d/x"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EINVAL)
    );
    // renameat2 flags: the VFS answers EEXIST for NOREPLACE onto an
    // existing name; what reaches p2k cannot be done atomically through
    // VOP_RENAME and gets EINVAL, never a silently ignored flag.
    fs::write(g.path("n1"), b"a").unwrap();
    fs::write(g.path("n2"), b"b").unwrap();
    let (c1, c2, c3) = (
        cpath(&g.path("n1")),
        cpath(&g.path("n2")),
        cpath(&g.path("n3")),
    );
    // SAFETY: valid paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c1.as_ptr(),
            libc::AT_FDCWD,
            c2.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(cvt(r), Err(libc::EEXIST));
    // SAFETY: valid paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c1.as_ptr(),
            libc::AT_FDCWD,
            c3.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(cvt(r), Err(libc::EINVAL));
    // SAFETY: valid paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c1.as_ptr(),
            libc::AT_FDCWD,
            c2.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(cvt(r), Err(libc::EINVAL));
    assert_eq!(fs::read(g.path("n1")).unwrap(), b"a", "source untouched");
    assert_eq!(fs::read(g.path("n2")).unwrap(), b"b", "target untouched");

    // chmod, chown, truncate, utimes.
    let p = g.path("attrs");
    fs::write(&p, b"0123456789").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(lstat(&p).st_mode & 0o7777, 0o640);
    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    let st = lstat(&p);
    assert_eq!((st.st_uid, st.st_gid), (1234, 5678));
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4)
        .unwrap();
    assert_eq!(lstat(&p).st_size, 4);
    // SAFETY: valid path.
    assert_eq!(
        cvt(unsafe { libc::truncate(cpath(&p).as_ptr(), 100) }),
        Ok(0)
    );
    assert_eq!(lstat(&p).st_size, 100);
    let data = fs::read(&p).unwrap();
    assert_eq!(&data[..4], b"0123");
    assert!(
        data[4..].iter().all(|&b| b == 0),
        "extension reads as zeros"
    );
    let times = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 123_456_789,
        },
        libc::timespec {
            tv_sec: 1_200_000_000,
            tv_nsec: 5,
        },
    ];
    // SAFETY: valid path and times.
    assert_eq!(
        cvt(unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&p).as_ptr(), times.as_ptr(), 0) }),
        Ok(0)
    );
    let st = lstat(&p);
    assert_eq!(
        (st.st_atime, st.st_atime_nsec),
        (1_000_000_000, 123_456_789)
    );
    assert_eq!((st.st_mtime, st.st_mtime_nsec), (1_200_000_000, 5));
    let now = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    // SAFETY: valid path and times.
    assert_eq!(
        cvt(unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&p).as_ptr(), now.as_ptr(), 0) }),
        Ok(0)
    );
    let st2 = lstat(&p);
    assert!(st2.st_atime > 1_600_000_000, "UTIME_NOW set atime to now");
    assert_eq!(st2.st_mtime, 1_200_000_000, "UTIME_OMIT left mtime");

    // Special files.
    let fifo = cpath(&g.path("fifo"));
    // SAFETY: valid path.
    assert_eq!(cvt(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }), Ok(0));
    assert_eq!(lstat(&g.path("fifo")).st_mode & libc::S_IFMT, libc::S_IFIFO);
    let dev = cpath(&g.path("null2"));
    // SAFETY: valid path.
    assert_eq!(
        cvt(unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) }),
        Ok(0)
    );
    let st = lstat(&g.path("null2"));
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(st.st_rdev, libc::makedev(1, 3));

    // An open, unlinked file lives on until closed.
    let mut h = fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(g.path("ghost"))
        .unwrap();
    fs::remove_file(g.path("ghost")).unwrap();
    h.write_all(b"still here").unwrap();
    h.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    h.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
    assert_eq!(h.metadata().unwrap().nlink(), 0);
    drop(h);

    // Create with a mode that forbids writing still returns a writable fd.
    let mut ro = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o444)
        .open(g.path("ro"))
        .unwrap();
    ro.write_all(b"x").unwrap();
    drop(ro);
    assert_eq!(lstat(&g.path("ro")).st_mode & 0o777, 0o444);

    // Listing.
    let mut names: Vec<String> = fs::read_dir(&g.mp)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["attrs", "big", "d", "e2", "f", "fifo", "h2", "n1", "n2", "null2", "ro", "sl"]
    );
    for e in fs::read_dir(&g.mp).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            e.ino(),
            lstat(&e.path()).st_ino,
            "d_ino matches st_ino for {:?}",
            e.file_name()
        );
    }
}

#[test]
fn write_only_direct_io_keeps_readers_and_mappings_coherent() {
    // Write-only opens bypass the kernel page cache (p2k's fopen_flags);
    // what other descriptors and mappings cached must still change.
    use std::os::unix::fs::FileExt;
    let g = MountGuard::rump_tmpfs("dio", &[]);
    let p = g.path("f");
    fs::write(&p, vec![b'A'; 10_000]).unwrap();
    let r = fs::File::open(&p).unwrap();
    let mut buf = [0u8; 4];
    r.read_exact_at(&mut buf, 8192).unwrap();
    assert_eq!(&buf, b"AAAA");
    // SAFETY: a fresh read-only shared mapping of a 10,000-byte file,
    // unmapped below; only read through `map`.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            10_000,
            libc::PROT_READ,
            libc::MAP_SHARED,
            r.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    // SAFETY: the mapping is 10,000 bytes long and stays mapped while used.
    let mapped =
        |off: usize| unsafe { std::slice::from_raw_parts((map as *const u8).add(off), 4).to_vec() };
    assert_eq!(mapped(0), b"AAAA");

    let w = fs::OpenOptions::new().write(true).open(&p).unwrap();
    w.write_all_at(b"BBBB", 0).unwrap();
    w.write_all_at(b"CCCC", 8192).unwrap();
    r.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        &buf, b"BBBB",
        "cached page not invalidated by a write-only write"
    );
    r.read_exact_at(&mut buf, 8192).unwrap();
    assert_eq!(&buf, b"CCCC");
    assert_eq!(mapped(0), b"BBBB", "mapping not updated");
    assert_eq!(mapped(8192), b"CCCC");

    // Extending and appending through write-only descriptors.
    w.write_all_at(&[b'D'; 5000], 9000).unwrap();
    assert_eq!(r.metadata().unwrap().len(), 14_000);
    let mut a = fs::OpenOptions::new().append(true).open(&p).unwrap();
    a.write_all(b"EE").unwrap();
    assert_eq!(r.metadata().unwrap().len(), 14_002);
    let mut tail = [0u8; 6];
    r.read_exact_at(&mut tail, 13_996).unwrap();
    assert_eq!(&tail, b"DDDDEE");
    // SAFETY: unmapping the mapping made above, no longer used.
    assert_eq!(unsafe { libc::munmap(map, 10_000) }, 0);

    // The point of direct I/O: 1 MiB written through a write-only
    // descriptor leaves no pages in the kernel's page cache (fincore counts
    // them; the page-cache path would leave all 256).
    let big = g.path("big");
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .open(&big)
        .unwrap()
        .write_all(&vec![7u8; 1 << 20])
        .unwrap();
    let out = run_timeout(
        Command::new("fincore").args(["--bytes", "--noheadings", "--output", "RES"]).arg(&big),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "write-only writes went through the page cache");
    assert_eq!(fs::read(&big).unwrap(), vec![7u8; 1 << 20]);
}

#[test]
fn size_limit_gives_enospc_and_statvfs() {
    let g = MountGuard::rump_tmpfs("size", &["-o", "size=1m"]);
    let sv = statvfs(&g.mp);
    assert_eq!(
        sv.f_blocks * sv.f_frsize,
        1 << 20,
        "f_blocks {} f_frsize {}",
        sv.f_blocks,
        sv.f_frsize
    );
    assert!(sv.f_bfree <= sv.f_blocks && sv.f_bavail <= sv.f_bfree);
    let free_before = sv.f_bfree;

    let mut f = fs::File::create(g.path("fill")).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut written = 0usize;
    let err = loop {
        match f.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(written <= 2 << 20, "wrote past the limit");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(written >= 900 * 1024, "only {written} bytes fit");
    drop(f);
    let sv = statvfs(&g.mp);
    assert!(sv.f_bfree < free_before);
    assert!(
        sv.f_bavail * sv.f_frsize < 64 * 1024,
        "nearly full: {} blocks free",
        sv.f_bavail
    );

    // df agrees.
    let out = run_timeout(
        Command::new("df").arg("-k").arg(&g.mp),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1], "1024", "df: {line}");

    // Freeing space makes it writable again.
    fs::remove_file(g.path("fill")).unwrap();
    fs::write(g.path("again"), vec![1u8; 500 * 1024]).unwrap();
}

#[test]
fn sigterm_unmounts_cleanly() {
    let mut g = MountGuard::rump_tmpfs_fg("term", &[]);
    fs::write(g.path("a"), b"x").unwrap();
    let pid = g.pid().unwrap();
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let st = g
        .wait_exit(Duration::from_secs(20))
        .expect("server did not exit after SIGTERM");
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(!is_mounted(&g.mp));
}

#[test]
fn sigint_with_a_busy_mount_detaches_and_exits_0() {
    let mut g = MountGuard::rump_tmpfs_fg("int", &[]);
    fs::write(g.path("held"), b"x").unwrap();
    // An open file keeps the mount busy: the server detaches it lazily and
    // ends once the file is closed.
    let f = fs::File::open(g.path("held")).unwrap();
    let pid = g.pid().unwrap();
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mp = g.mp.clone();
    assert!(
        wait_for(Duration::from_secs(20), || !is_mounted(&mp)),
        "detached from the namespace"
    );
    let mut s = String::new();
    (&f).read_to_string(&mut s).unwrap();
    assert_eq!(s, "x", "the open file is still served after the detach");
    drop(f);
    let st = g
        .wait_exit(Duration::from_secs(20))
        .expect("server did not exit after the last close");
    assert_eq!(st.code(), Some(0), "{st:?}");
}

#[test]
fn fusermount_u_ends_server_with_status_0() {
    let mut g = MountGuard::rump_tmpfs_fg("fusermount", &[]);
    fs::create_dir(g.path("d")).unwrap();
    let out = run_timeout(
        Command::new("fusermount3").arg("-u").arg(&g.mp),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = g
        .wait_exit(Duration::from_secs(20))
        .expect("server did not exit after fusermount3 -u");
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(!is_mounted(&g.mp));
}

#[test]
fn umount_ends_background_server() {
    let mut g = MountGuard::rump_tmpfs("umount", &[]);
    let pid = g.pid().unwrap();
    let out = run_timeout(Command::new("umount").arg(&g.mp), Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(20), || !pid_alive(pid)),
        "server {pid} still running after umount"
    );
    g.server_gone();
}

#[test]
fn missing_mount_point_is_reported() {
    let g = MountGuard::new("missing");
    let mp = g.mp.join("does-not-exist");
    let out = run_timeout(
        Command::new(bin("rump_tmpfs")).arg("tmpfs").arg(&mp),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "rump_tmpfs: {}: mount point does not exist",
            mp.display()
        )),
        "{err}"
    );
}

#[test]
fn busy_mount_point_is_reported() {
    let g = MountGuard::rump_tmpfs("busy", &[]);
    let out = run_timeout(
        Command::new(bin("rump_tmpfs")).arg("tmpfs").arg(&g.mp),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mount point is busy"), "{err}");
}

#[test]
fn bad_options_are_reported() {
    let mut g = MountGuard::new("badopt");
    // Unknown driver option: refused by tmpfs with EINVAL.
    let out = g.run_server("rump_tmpfs", &["-o", "bogus=1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid tmpfs mount options (bogus=1)"),
        "{err}"
    );
    assert!(!is_mounted(&g.mp));
    // Bad value of a driver option.
    let out = g.run_server("rump_tmpfs", &["-o", "size=lots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("size=lots"));
    // Bad value of a server option: usage error.
    let out = g.run_server("rump_tmpfs", &["-o", "attr_timeout=soon"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("attr_timeout=soon") && err.contains("Usage"),
        "{err}"
    );
    // Bad command line.
    let out = run_timeout(
        Command::new(bin("rump_tmpfs")).arg("-x"),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    let out = run_timeout(
        &mut Command::new(bin("rump_tmpfs")),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!is_mounted(&g.mp));
}

#[test]
fn permissions_are_checked_per_caller() {
    let g = MountGuard::rump_tmpfs("perm", &[]);
    fs::create_dir(g.path("private")).unwrap();
    fs::set_permissions(g.path("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(g.path("private/secret"), b"s").unwrap();
    fs::write(g.path("rootfile"), b"r").unwrap();
    fs::set_permissions(g.path("rootfile"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(g.path("pub")).unwrap();
    fs::set_permissions(g.path("pub"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(g.path("grp")).unwrap();
    std::os::unix::fs::chown(g.path("grp"), Some(0), Some(65534)).unwrap();
    fs::set_permissions(g.path("grp"), fs::Permissions::from_mode(0o770)).unwrap();

    let mp = g.mp.display();
    let o = as_nobody(&format!("cat {mp}/rootfile"));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = as_nobody(&format!("ls {mp}/private"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    // The entry private/secret is in the kernel's dentry cache (root just
    // created it): search permission on private must still be enforced.
    let o = as_nobody(&format!("cat {mp}/private/secret"));
    assert!(
        !o.status.success(),
        "nobody read a file inside a 0700 directory: {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    let o = as_nobody(&format!("touch {mp}/pub/new"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    assert!(!g.path("pub/new").exists());
    let o = as_nobody(&format!("chmod 777 {mp}/rootfile"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"));
    // Allowed: the sticky world-writable root, and a directory of nobody's group.
    let o = as_nobody(&format!(
        "echo hi > {mp}/mine && cat {mp}/mine && touch {mp}/grp/ok"
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = lstat(&g.path("mine"));
    assert_eq!((st.st_uid, st.st_gid), (65534, 65534));
    assert!(g.path("grp/ok").exists());
    // Sticky root: nobody may not remove root's file.
    let o = as_nobody(&format!("rm -f {mp}/rootfile"));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // access(2) goes through p2k's access handler.
    let o = as_nobody(&format!(
        "test -r {mp}/rootfile && echo readable || echo denied"
    ));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "denied");
}

#[test]
fn names_cached_before_a_directory_closes_are_not_a_way_in() {
    // Read-write mounts leave permission checks to rumpkern (no
    // default_permissions), so the kernel must not keep names it would let
    // a path walk through unchecked: those in a directory that closes
    // (chmod) or that a file is renamed into.
    let g = MountGuard::rump_tmpfs("closing", &[]);
    let mp = g.mp.display();
    fs::create_dir(g.path("pub")).unwrap();
    fs::set_permissions(g.path("pub"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(g.path("pub/f"), b"open").unwrap();
    fs::create_dir(g.path("shut")).unwrap();
    fs::set_permissions(g.path("shut"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(g.path("pub/g"), b"moved").unwrap();
    // nobody reads both files: their names are now cached by the kernel.
    let o = as_nobody(&format!("cat {mp}/pub/f {mp}/pub/g"));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "openmoved");
    fs::rename(g.path("pub/g"), g.path("shut/g")).unwrap();
    fs::set_permissions(g.path("pub"), fs::Permissions::from_mode(0o700)).unwrap();
    // The invalidations are sent right after the replies; give the kernel
    // a moment (well under the 1 s the names were handed out for).
    std::thread::sleep(Duration::from_millis(100));
    for p in ["pub/f", "shut/g"] {
        let o = as_nobody(&format!("cat {mp}/{p}"));
        assert!(
            !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
            "nobody still reads {p}: {:?} {:?}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Opening the directory again lets nobody back in.
    fs::set_permissions(g.path("pub"), fs::Permissions::from_mode(0o755)).unwrap();
    let o = as_nobody(&format!("cat {mp}/pub/f"));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "open");
}

#[test]
fn supplementary_groups_are_honoured() {
    // Without default_permissions every check is rumpkern's, made with the
    // groups p2k reads from /proc/<pid>/status.
    let g = MountGuard::rump_tmpfs("groups", &["-o", "nodefault_permissions"]);
    fs::write(g.path("rootfile"), b"r").unwrap();
    fs::set_permissions(g.path("rootfile"), fs::Permissions::from_mode(0o600)).unwrap();
    let o = as_nobody(&format!("cat {}/rootfile", g.mp.display()));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    fs::create_dir(g.path("staff")).unwrap();
    std::os::unix::fs::chown(g.path("staff"), Some(0), Some(4242)).unwrap();
    fs::set_permissions(g.path("staff"), fs::Permissions::from_mode(0o770)).unwrap();
    let mp = g.mp.display();
    let run = |groups: &str| {
        run_timeout(
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", groups, "--", "sh", "-c"])
                .arg(format!("ls {mp}/staff")),
            Duration::from_secs(20),
        )
    };
    assert!(!run("--clear-groups").status.success());
    let o = run("--groups=4242");
    assert!(
        o.status.success(),
        "member of 4242 through a supplementary group: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn read_only_mount() {
    let g = MountGuard::rump_tmpfs("ro", &["-o", "ro"]);
    assert!(
        mount_line(&g.mp).unwrap().contains(" ro,") || mount_line(&g.mp).unwrap().contains(" ro ")
    );
    let e = fs::write(g.path("x"), b"1").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    assert_eq!(
        fs::create_dir(g.path("d")).unwrap_err().raw_os_error(),
        Some(libc::EROFS)
    );
}

#[test]
fn concurrent_clients() {
    let g = MountGuard::rump_tmpfs("conc", &["-o", "threads=4"]);
    let mp = g.mp.clone();
    let hs: Vec<_> = (0..6)
        .map(|t| {
            let mp = mp.clone();
            std::thread::spawn(move || {
                let d = mp.join(format!("t{t}"));
                fs::create_dir(&d).unwrap();
                for i in 0..100 {
                    let p = d.join(format!("f{i}"));
                    fs::write(&p, format!("{t}:{i}")).unwrap();
                    assert_eq!(fs::read_to_string(&p).unwrap(), format!("{t}:{i}"));
                }
                assert_eq!(fs::read_dir(&d).unwrap().count(), 100);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// No /dev/fuse: run the server in a private mount namespace whose /dev is
/// an empty tmpfs (the host's /dev is untouched).
#[test]
fn missing_dev_fuse_is_reported() {
    let g = MountGuard::new("nofuse");
    let script = format!(
        "mount -t tmpfs nodev /dev && exec {} tmpfs {}",
        bin("rump_tmpfs").display(),
        g.mp.display()
    );
    let out = run_timeout(
        Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("rump_tmpfs: /dev/fuse does not exist"),
        "{err}"
    );
    assert!(!is_mounted(&g.mp));
}

/// /dev/fuse usable by everybody (mode 0666, what udev normally gives it)
/// while the guard lives; its mode is put back on drop. Where it is root's
/// alone, as on some test machines, ordinary users have no FUSE at all,
/// not even through the setuid fusermount3 (which opens it with their
/// rights).
struct DevFuseForAll {
    old: Option<u32>,
}

impl DevFuseForAll {
    fn new() -> DevFuseForAll {
        let mode = fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
        if mode & 0o006 == 0o006 {
            return DevFuseForAll { old: None };
        }
        fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(mode | 0o666)).unwrap();
        DevFuseForAll { old: Some(mode) }
    }
}

impl Drop for DevFuseForAll {
    fn drop(&mut self) {
        if let Some(mode) = self.old.take() {
            let _ = fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(mode));
        }
    }
}

/// An ordinary user's server: it mounts through fusermount3 (the kernel
/// records the user as the mount's owner and keeps root out without
/// allow_other), serves that user's reads and writes, and SIGTERM unmounts
/// through fusermount3, detaching the mount lazily while a process still
/// has its cwd there, and the server ends with status 0 once it left. With the kernel's
/// io_uring switch on (scripts/test.sh runs this suite both ways), the
/// requests come through the rings: p2k holds the device descriptor before
/// INIT is answered on this path too.
#[test]
fn ordinary_user_mounts_through_fusermount3_and_sigterm_unmounts() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: becoming nobody needs root");
        return;
    }
    let _dev = DevFuseForAll::new();
    let logdir = temp_dir("nobody-log");
    let log = logdir.join("server.log");
    let mut g = MountGuard::server_fg_as_nobody("nobody", "rump_tmpfs", &[], Path::new("tmpfs"), &log);
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(g.mp.to_str().unwrap()))
        .map(str::to_string)
        .expect("mount in mountinfo");
    assert!(line.contains("user_id=65534"), "not nobody's mount: {line}");
    let mp = g.mp.display().to_string();
    let o = as_nobody(&format!(
        "set -e; t=$(mktemp -d); head -c 4194304 /dev/urandom > $t/src; \
         echo hello > {mp}/f; mkdir {mp}/d; cp $t/src {mp}/d/big; cmp $t/src {mp}/d/big; \
         rm -r $t; cat {mp}/f; stat -c %u {mp}/f {mp}/d/big"
    ));
    assert!(
        o.status.success(),
        "nobody's workload failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n65534\n65534\n");
    let e = fs::metadata(g.path("f")).expect_err("root got into nobody's mount without allow_other");
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    // Busy (a process of nobody's has its cwd there): SIGTERM detaches the
    // mount at once (fusermount3 -u -z) and the server ends when the last
    // user leaves.
    let mut busy = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c"])
        .arg(format!("cd {mp} && exec sleep 60"))
        .spawn()
        .unwrap();
    let cwd = format!("/proc/{}/cwd", busy.id());
    assert!(
        wait_for(Duration::from_secs(10), || fs::read_link(&cwd).is_ok_and(|p| p == g.mp)),
        "the busy process did not enter the mount"
    );
    // SAFETY: signalling the server this test started.
    unsafe { libc::kill(g.pid().unwrap(), libc::SIGTERM) };
    let mp_path = g.mp.clone();
    let detached = wait_for(Duration::from_secs(10), || !is_mounted(&mp_path));
    let _ = busy.kill();
    let _ = busy.wait();
    assert!(detached, "a busy user mount was not detached on SIGTERM");
    let st = g
        .wait_exit(Duration::from_secs(20))
        .expect("server did not exit after SIGTERM and its last user leaving");
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(!is_mounted(&g.mp), "still mounted after the server ended");
    let text = fs::read_to_string(&log).unwrap();
    let uring_on = fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .is_ok_and(|s| s.trim() == "Y");
    assert_eq!(
        text.contains("served through FUSE over io_uring"),
        uring_on,
        "io_uring switch {uring_on}, server log:\n{text}"
    );
    let _ = fs::remove_dir_all(&logdir);
}

/// A child process this test started, killed and reaped on drop.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `open(O_RDONLY|O_TRUNC)` of a program that is running fails with
/// ETXTBSY and changes nothing: the file keeps its size and the program
/// keeps running, as on the kernel's own file systems. (With the kernel
/// passing O_TRUNC along in OPEN, FUSE_ATOMIC_O_TRUNC, the server emptied
/// the file before the kernel refused the open, and the program died; the
/// rare pjdfstest failure of open::etxtbsy was this, hitting a program
/// still being loaded.) Once the program ended, the same open truncates.
#[test]
fn truncating_open_of_a_running_program_is_refused_and_changes_nothing() {
    let g = MountGuard::rump_tmpfs("etxtbsy", &[]);
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no sleep binary");
    let exe = g.path("sleeper");
    fs::copy(sleep, &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let size = fs::metadata(&exe).unwrap().len();
    let mut child = Started(Command::new(&exe).arg("30").spawn().unwrap());
    // Let it finish loading (spawn returns once exec is past its point of
    // no return, while the kernel may still be reading the program).
    std::thread::sleep(Duration::from_millis(300));
    let trunc_ro = || {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_TRUNC)
            .open(&exe)
    };
    let e = trunc_ro().expect_err("a running program was opened for truncation");
    assert_eq!(e.raw_os_error(), Some(libc::ETXTBSY), "{e}");
    assert_eq!(
        fs::metadata(&exe).unwrap().len(),
        size,
        "the refused open truncated the running program"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the program died after the refused open: {:?}",
        child.0.try_wait()
    );
    drop(child);
    drop(trunc_ro().expect("truncating open once the program ended"));
    assert_eq!(fs::metadata(&exe).unwrap().len(), 0);
}
