//! ukfs against tmpfs: every call round-trips, the errors are the POSIX
//! ones, relative paths follow chdir, and unmount leaves nothing referenced.

use std::sync::Arc;

use rumpkern::dev::BlockDevice;
use rumpkern::types::{amode, oflags, SetTime, Timespec};
use rumpkern::{Cred, Errno, FsType, KResult, Mount, MountArgs, VType};
use ukfs::{DirEnt, Ukfs};

fn tmpfs() -> Ukfs {
    rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    Ukfs::mount("tmpfs", None, &MountArgs::default()).expect("mount tmpfs")
}

fn names(fs: &Ukfs, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = fs
        .readdir(dir)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn files_round_trip() {
    let fs = tmpfs();
    fs.write_file("/a", b"hello").unwrap();
    assert_eq!(fs.read_file("/a").unwrap(), b"hello");
    // write_file truncates
    fs.write_file("/a", b"hi").unwrap();
    assert_eq!(fs.read_file("/a").unwrap(), b"hi");

    // A larger file, read back in pieces through the file offset.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    {
        let mut f = fs.create("/big", 0o644).unwrap();
        f.write_all(&data).unwrap();
        assert_eq!(f.offset(), data.len() as u64);
        assert_eq!(f.metadata().unwrap().size, data.len() as u64);
        f.fsync().unwrap();
    }
    {
        let mut f = fs.open("/big", oflags::O_RDONLY, 0).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4000];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
        let mut b = [0u8; 3];
        assert_eq!(f.pread(&mut b, 10).unwrap(), 3);
        assert_eq!(&b, &data[10..13]);
        assert_eq!(f.pread(&mut b, data.len() as u64).unwrap(), 0);
        assert_eq!(f.write(b"x"), Err(Errno::EBADF));
        assert_eq!(f.set_len(0), Err(Errno::EINVAL));
    }
    assert_eq!(fs.read_file("/big").unwrap(), data);

    // pwrite / set_len / O_TRUNC / O_APPEND
    {
        let mut f = fs.open("/a", oflags::O_RDWR, 0).unwrap();
        assert_eq!(f.pwrite(b"HI!", 0).unwrap(), 3);
        f.set_len(5).unwrap();
        let mut buf = [9u8; 8];
        assert_eq!(f.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"HI!\0\0");
    }
    {
        let mut f = fs.open("/a", oflags::O_WRONLY | oflags::O_APPEND, 0).unwrap();
        f.write_all(b"+tail").unwrap();
        assert_eq!(f.offset(), 10);
        // pwrite is positional even with O_APPEND.
        f.pwrite(b"h", 0).unwrap();
    }
    assert_eq!(fs.read_file("/a").unwrap(), b"hI!\0\0+tail");
    drop(fs.open("/a", oflags::O_WRONLY | oflags::O_TRUNC, 0).unwrap());
    assert_eq!(fs.stat("/a").unwrap().size, 0);

    // O_CREAT without O_EXCL opens an existing file.
    fs.write_file("/c", b"keep").unwrap();
    drop(fs.open("/c", oflags::O_RDWR | oflags::O_CREAT, 0o600).unwrap());
    assert_eq!(fs.read_file("/c").unwrap(), b"keep");
    // create mode
    drop(fs.create("/m", 0o640).unwrap());
    let va = fs.stat("/m").unwrap();
    assert_eq!((va.vtype, va.mode & 0o7777, va.uid, va.gid), (VType::Reg, 0o640, 0, 0));
}

#[test]
fn directories_and_readdir() {
    let fs = tmpfs();
    fs.mkdir("/d", 0o755).unwrap();
    fs.mkdir("/d/sub/", 0o700).unwrap(); // trailing slash allowed for mkdir
    for i in 0..300 {
        fs.write_file(&format!("/d/f{i:03}"), b"").unwrap();
    }
    fs.symlink("f000", "/d/ln").unwrap();
    // The iterator crosses several READDIR batches (128) with the cookies.
    let ents: Vec<DirEnt> = fs.read_dir("/d").unwrap().collect::<KResult<_>>().unwrap();
    assert_eq!(ents.len(), 300 + 4);
    let mut seen: Vec<&[u8]> = ents.iter().map(|e| &e.name[..]).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 304, "no duplicates across batches");
    let by = |n: &[u8]| ents.iter().find(|e| e.name == n).unwrap().clone();
    assert_eq!(by(b".").vtype, VType::Dir);
    assert_eq!(by(b".").ino, fs.stat("/d").unwrap().ino);
    assert_eq!(by(b"..").ino, fs.stat("/").unwrap().ino);
    assert_eq!(by(b"sub").vtype, VType::Dir);
    assert_eq!(by(b"ln").vtype, VType::Lnk);
    assert_eq!(by(b"f123").vtype, VType::Reg);
    assert_eq!(by(b"f123").ino, fs.stat("/d/f123").unwrap().ino);
    assert_eq!(fs.readdir("/d").unwrap().len(), 304);

    assert_eq!(fs.rmdir("/d"), Err(Errno::ENOTEMPTY));
    fs.rmdir("/d/sub").unwrap();
    assert_eq!(fs.stat("/d/sub"), Err(Errno::ENOENT));
    assert_eq!(fs.readdir("/d/f001").map(|v| v.len()), Err(Errno::ENOTDIR));
    assert_eq!(fs.read_dir("/nope").map(|_| ()), Err(Errno::ENOENT));
}

#[test]
fn names_round_trip() {
    let fs = tmpfs();
    fs.write_file("/f", b"data").unwrap();

    // link
    fs.link("/f", "/g").unwrap();
    assert_eq!(fs.stat("/f").unwrap().nlink, 2);
    assert_eq!(fs.stat("/g").unwrap().ino, fs.stat("/f").unwrap().ino);

    // symlink / readlink / stat vs lstat
    fs.symlink("f", "/s").unwrap();
    assert_eq!(fs.readlink("/s").unwrap(), b"f");
    assert_eq!(fs.lstat("/s").unwrap().vtype, VType::Lnk);
    assert_eq!(fs.stat("/s").unwrap().ino, fs.stat("/f").unwrap().ino);
    assert_eq!(fs.read_file("/s").unwrap(), b"data");
    assert_eq!(fs.readlink("/f"), Err(Errno::EINVAL));
    // link does not follow a final symlink
    fs.link("/s", "/s2").unwrap();
    assert_eq!(fs.lstat("/s2").unwrap().vtype, VType::Lnk);

    // rename: file, over an existing file, directory
    fs.rename("/g", "/h").unwrap();
    assert_eq!(fs.stat("/g"), Err(Errno::ENOENT));
    assert_eq!(fs.read_file("/h").unwrap(), b"data");
    fs.write_file("/other", b"x").unwrap();
    fs.rename("/other", "/h").unwrap();
    assert_eq!(fs.read_file("/h").unwrap(), b"x");
    assert_eq!(fs.stat("/f").unwrap().nlink, 1);
    fs.mkdir("/d1", 0o755).unwrap();
    fs.write_file("/d1/in", b"in").unwrap();
    fs.mkdir("/d2", 0o755).unwrap();
    fs.rename("/d1", "/d2/moved/").unwrap();
    assert_eq!(fs.read_file("/d2/moved/in").unwrap(), b"in");
    assert_eq!(fs.rename("/d2", "/d2/moved/x"), Err(Errno::EINVAL));

    // unlink: the link, not its target
    fs.unlink("/s").unwrap();
    assert_eq!(fs.read_file("/f").unwrap(), b"data");
    fs.unlink("/f").unwrap();

    // mknod: fifo, socket, device node (root), regular file
    fs.mknod("/fifo", VType::Fifo, 0o600, 0).unwrap();
    fs.mknod("/sock", VType::Sock, 0o600, 0).unwrap();
    fs.mknod("/chr", VType::Chr, 0o600, 0x0103).unwrap();
    fs.mknod("/reg", VType::Reg, 0o600, 0).unwrap();
    assert_eq!(fs.lstat("/fifo").unwrap().vtype, VType::Fifo);
    assert_eq!(fs.lstat("/sock").unwrap().vtype, VType::Sock);
    let c = fs.lstat("/chr").unwrap();
    assert_eq!((c.vtype, c.rdev), (VType::Chr, 0x0103));
    assert_eq!(fs.lstat("/reg").unwrap().vtype, VType::Reg);
    assert_eq!(fs.mknod("/dd", VType::Dir, 0o755, 0), Err(Errno::EINVAL));
    assert_eq!(fs.mknod("/fifo", VType::Fifo, 0o600, 0), Err(Errno::EEXIST));
    assert_eq!(fs.mknod("/x/", VType::Fifo, 0o600, 0), Err(Errno::ENOENT));
    fs.set_cred(Cred::new(5, 5, vec![]));
    assert_eq!(fs.mknod("/blk", VType::Blk, 0o600, 1), Err(Errno::EPERM));
    fs.set_cred(Cred::root());
    for n in ["/fifo", "/sock", "/chr", "/reg"] {
        fs.unlink(n).unwrap();
    }
    assert_eq!(fs.stat("/f"), Err(Errno::ENOENT));
    assert_eq!(names(&fs, "/"), [".", "..", "d2", "h", "s2"]);
}

#[test]
fn attributes_round_trip() {
    let fs = tmpfs();
    fs.write_file("/f", b"0123456789").unwrap();
    fs.chmod("/f", 0o4711).unwrap();
    assert_eq!(fs.stat("/f").unwrap().mode & 0o7777, 0o4711);
    assert_eq!(fs.stat("/f").unwrap().st_mode(), 0o104711);
    fs.chown("/f", Some(10), None).unwrap();
    let va = fs.stat("/f").unwrap();
    assert_eq!((va.uid, va.gid), (10, 0));
    assert_eq!(va.mode & 0o7777, 0o711, "chown clears setuid");
    fs.chown("/f", None, Some(20)).unwrap();
    assert_eq!(fs.stat("/f").unwrap().gid, 20);

    // chown follows a symlink, lchown does not.
    fs.symlink("/f", "/l").unwrap();
    fs.chown("/l", Some(11), None).unwrap();
    assert_eq!(fs.stat("/f").unwrap().uid, 11);
    fs.lchown("/l", Some(12), Some(13)).unwrap();
    assert_eq!(fs.stat("/f").unwrap().uid, 11);
    let lva = fs.lstat("/l").unwrap();
    assert_eq!((lva.uid, lva.gid), (12, 13));

    // utimes: explicit, omitted, now
    let t1 = Timespec::new(1_000_000, 5);
    let t2 = Timespec::new(2_000_000, 7);
    fs.utimes("/f", Some(SetTime::At(t1)), Some(SetTime::At(t2))).unwrap();
    let va = fs.stat("/f").unwrap();
    assert_eq!((va.atime, va.mtime), (t1, t2));
    fs.utimes("/f", None, Some(SetTime::At(t1))).unwrap();
    let va = fs.stat("/f").unwrap();
    assert_eq!((va.atime, va.mtime), (t1, t1));
    let before = Timespec::now();
    fs.utimes("/f", Some(SetTime::Now), Some(SetTime::Now)).unwrap();
    let va = fs.stat("/f").unwrap();
    assert!(va.mtime >= before && va.atime >= before);

    // truncate: shrink and extend
    fs.truncate("/f", 4).unwrap();
    assert_eq!(fs.read_file("/f").unwrap(), b"0123");
    fs.truncate("/f", 6).unwrap();
    assert_eq!(fs.read_file("/f").unwrap(), b"0123\0\0");
    fs.mkdir("/d", 0o755).unwrap();
    assert_eq!(fs.truncate("/d", 0), Err(Errno::EISDIR));

    // access
    fs.access("/f", 0).unwrap();
    fs.access("/f", amode::VREAD | amode::VWRITE).unwrap();
    assert_eq!(fs.access("/nope", 0), Err(Errno::ENOENT));
    fs.chmod("/f", 0o644).unwrap();
    assert_eq!(
        fs.access("/f", amode::VEXEC),
        Err(Errno::EACCES),
        "root needs an x bit to execute"
    );

    // statvfs and sync
    let st = fs.statvfs().unwrap();
    assert!(!st.readonly);
    assert_eq!(st.fsid, fs.mount_point().fsid());
    fs.sync().unwrap();
}

#[test]
fn errors() {
    let fs = tmpfs();
    fs.mkdir("/d", 0o755).unwrap();
    fs.write_file("/d/f", b"x").unwrap();
    fs.mkdir("/d/e", 0o755).unwrap();

    // ENOENT
    assert_eq!(fs.stat("/missing"), Err(Errno::ENOENT));
    assert_eq!(fs.stat(""), Err(Errno::ENOENT));
    assert_eq!(fs.read_file("/missing"), Err(Errno::ENOENT));
    assert_eq!(fs.unlink("/missing"), Err(Errno::ENOENT));
    assert_eq!(fs.rmdir("/missing"), Err(Errno::ENOENT));
    assert_eq!(fs.rename("/missing", "/x"), Err(Errno::ENOENT));
    assert_eq!(fs.mkdir("/missing/x", 0o755), Err(Errno::ENOENT));
    assert_eq!(fs.symlink("", "/empty"), Err(Errno::ENOENT));

    // EEXIST
    assert_eq!(fs.mkdir("/d", 0o755), Err(Errno::EEXIST));
    assert_eq!(fs.mkdir("/", 0o755), Err(Errno::EEXIST));
    assert_eq!(fs.mkdir("/d/.", 0o755), Err(Errno::EEXIST));
    assert_eq!(fs.create("/d/f", 0o644).map(|_| ()), Err(Errno::EEXIST));
    assert_eq!(fs.symlink("x", "/d/f"), Err(Errno::EEXIST));
    assert_eq!(fs.link("/d/f", "/d/e"), Err(Errno::EEXIST));
    fs.symlink("nowhere", "/dangling").unwrap();
    assert_eq!(fs.create("/dangling", 0o644).map(|_| ()), Err(Errno::EEXIST));
    assert_eq!(fs.open("/dangling", oflags::O_WRONLY | oflags::O_CREAT, 0o644).map(|_| ()), Err(Errno::ENOENT));

    // ENOTDIR
    assert_eq!(fs.stat("/d/f/x"), Err(Errno::ENOTDIR));
    assert_eq!(fs.stat("/d/f/"), Err(Errno::ENOTDIR));
    assert_eq!(fs.rmdir("/d/f"), Err(Errno::ENOTDIR));
    assert_eq!(fs.unlink("/d/f/"), Err(Errno::ENOTDIR));
    assert_eq!(fs.chdir("/d/f"), Err(Errno::ENOTDIR));
    assert_eq!(
        fs.open("/d/f", oflags::O_RDONLY | oflags::O_DIRECTORY, 0).map(|_| ()),
        Err(Errno::ENOTDIR)
    );
    assert_eq!(fs.rename("/d/f", "/d/e"), Err(Errno::EISDIR));
    assert_eq!(fs.rename("/d/e", "/d/f"), Err(Errno::ENOTDIR));

    // EISDIR
    assert_eq!(fs.unlink("/d/e"), Err(Errno::EISDIR));
    assert_eq!(fs.unlink("/d/e/"), Err(Errno::EISDIR));
    assert_eq!(fs.read_file("/d"), Err(Errno::EISDIR));
    assert_eq!(fs.write_file("/d", b""), Err(Errno::EISDIR));
    assert_eq!(fs.open("/d", oflags::O_RDWR, 0).map(|_| ()), Err(Errno::EISDIR));
    assert_eq!(
        fs.open("/new/", oflags::O_RDWR | oflags::O_CREAT, 0o644).map(|_| ()),
        Err(Errno::EISDIR)
    );
    // A directory opened read-only is fine (and can be read with readdir).
    drop(fs.open("/d", oflags::O_RDONLY | oflags::O_DIRECTORY, 0).unwrap());

    // ENOTEMPTY and the dot rules
    assert_eq!(fs.rmdir("/d"), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.rmdir("/d/."), Err(Errno::EINVAL));
    assert_eq!(fs.rmdir("/d/e/.."), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.unlink("/d/."), Err(Errno::EISDIR));
    assert_eq!(fs.rename("/d/.", "/x"), Err(Errno::EINVAL));

    // ELOOP
    fs.symlink("loop1", "/loop2").unwrap();
    fs.symlink("loop2", "/loop1").unwrap();
    assert_eq!(fs.stat("/loop1"), Err(Errno::ELOOP));
    assert_eq!(fs.read_file("/loop1"), Err(Errno::ELOOP));
    assert_eq!(fs.write_file("/loop1", b""), Err(Errno::ELOOP));
    assert_eq!(fs.stat("/loop1/x"), Err(Errno::ELOOP));
    assert_eq!(fs.lstat("/loop1").unwrap().vtype, VType::Lnk);
    // O_NOFOLLOW on a symlink
    fs.symlink("d/f", "/lf").unwrap();
    assert_eq!(
        fs.open("/lf", oflags::O_RDONLY | oflags::O_NOFOLLOW, 0).map(|_| ()),
        Err(Errno::ELOOP)
    );
    assert_eq!(fs.read_file("/lf").unwrap(), b"x");

    // ENAMETOOLONG
    let long = "n".repeat(256);
    assert_eq!(fs.mkdir(&long, 0o755), Err(Errno::ENAMETOOLONG));
    assert_eq!(fs.stat(&long), Err(Errno::ENAMETOOLONG));
    fs.mkdir(&long[..255], 0o755).unwrap();

    // bad option for the driver; blkio consumed by ukfs
    assert_eq!(
        Ukfs::mount("tmpfs", None, &MountArgs::parse("bogus=1")).map(|_| ()),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        Ukfs::mount("tmpfs", None, &MountArgs::parse("blkio=nonsense")).map(|_| ()),
        Err(Errno::EINVAL)
    );
    assert!(Ukfs::mount("tmpfs", None, &MountArgs::parse("blkio=direct,size=1m")).is_ok());
    assert_eq!(
        Ukfs::mount("nosuchfs", None, &MountArgs::default()).map(|_| ()),
        Err(Errno::ENODEV)
    );
}

#[test]
fn permissions_for_a_user() {
    let fs = tmpfs();
    fs.mkdir("/private", 0o700).unwrap();
    fs.write_file("/private/secret", b"s").unwrap();
    fs.write_file("/ro", b"r").unwrap();
    fs.chmod("/ro", 0o444).unwrap();
    fs.mkdir("/home", 0o755).unwrap();
    fs.chown("/home", Some(1000), Some(1000)).unwrap();

    fs.set_cred(Cred::new(1000, 1000, vec![]));
    assert_eq!(fs.cred().uid, 1000);
    assert_eq!(fs.read_file("/private/secret"), Err(Errno::EACCES));
    assert_eq!(fs.readdir("/private").map(|v| v.len()), Err(Errno::EACCES));
    assert_eq!(fs.chdir("/private"), Err(Errno::EACCES));
    assert_eq!(fs.write_file("/ro", b"w"), Err(Errno::EACCES));
    assert_eq!(fs.read_file("/ro").unwrap(), b"r");
    assert_eq!(fs.access("/ro", amode::VWRITE), Err(Errno::EACCES));
    assert_eq!(fs.chmod("/ro", 0o666), Err(Errno::EPERM));
    assert_eq!(fs.chown("/home", Some(0), None), Err(Errno::EPERM));
    assert_eq!(fs.mkdir("/home2", 0o755), Ok(()), "the tmpfs root is 1777");
    assert_eq!(fs.unlink("/ro"), Err(Errno::EPERM), "sticky root: not the owner");
    assert_eq!(fs.mkdir("/private/x", 0o755), Err(Errno::EACCES));

    // Files the user creates are the user's, usable whatever their mode.
    {
        let mut f = fs.create("/home/mine", 0o400).unwrap();
        f.write_all(b"created read-only, still writable through this open")
            .unwrap();
    }
    let va = fs.stat("/home/mine").unwrap();
    assert_eq!((va.uid, va.gid, va.mode & 0o777), (1000, 1000, 0o400));
    assert_eq!(
        fs.open("/home/mine", oflags::O_WRONLY, 0).map(|_| ()),
        Err(Errno::EACCES)
    );
    fs.utimes("/home/mine", Some(SetTime::Now), None).unwrap();

    fs.set_cred(Cred::root());
    assert_eq!(fs.read_file("/private/secret").unwrap(), b"s");
}

#[test]
fn cwd_relative_paths() {
    let fs = tmpfs();
    fs.mkdir("/a", 0o755).unwrap();
    fs.mkdir("/a/b", 0o755).unwrap();
    fs.chdir("/a").unwrap();
    fs.write_file("rel", b"in a").unwrap();
    assert_eq!(fs.read_file("/a/rel").unwrap(), b"in a");
    fs.chdir("b").unwrap();
    fs.write_file("../../top", b"top").unwrap();
    assert_eq!(fs.read_file("/top").unwrap(), b"top");
    fs.mkdir("c", 0o755).unwrap();
    fs.symlink("../rel", "l").unwrap();
    assert_eq!(fs.read_file("l").unwrap(), b"in a");
    fs.rename("l", "c/l2").unwrap();
    assert_eq!(fs.readlink("/a/b/c/l2").unwrap(), b"../rel");
    assert_eq!(fs.stat(".").unwrap().ino, fs.stat("/a/b").unwrap().ino);
    assert_eq!(fs.stat("..").unwrap().ino, fs.stat("/a").unwrap().ino);
    // `..` at the root stays there.
    assert_eq!(fs.stat("../../../../..").unwrap().ino, fs.stat("/").unwrap().ino);
    assert_eq!(fs.stat("/top").unwrap().ino, fs.stat("../../top").unwrap().ino);
    // A removed cwd: lookups in it fail, absolute paths still work.
    fs.chdir("/a/b/c").unwrap();
    fs.unlink("l2").unwrap();
    fs.rmdir("/a/b/c").unwrap();
    assert_eq!(fs.stat("x"), Err(Errno::ENOENT));
    assert_eq!(fs.read_file("/top").unwrap(), b"top");
    fs.chdir("/").unwrap();
    fs.unmount().unwrap();
}

#[test]
fn unmount_flushes_and_leaves_nothing_referenced() {
    let fs = tmpfs();
    fs.mkdir("/d", 0o755).unwrap();
    fs.chdir("/d").unwrap();
    fs.write_file("f", b"x").unwrap();
    let _ = fs.readdir("/d").unwrap();
    drop(fs.open("f", oflags::O_RDONLY, 0).unwrap());
    let mp: Arc<Mount> = fs.mount_point().clone();
    // Only ukfs's own references remain: the root and the cwd.
    let (_, busy) = mp.vnode_counts();
    assert_eq!(busy, 2);
    {
        let _f = fs.open("f", oflags::O_RDONLY, 0).unwrap();
        assert_eq!(mp.vnode_counts().1, 3);
    }
    assert_eq!(mp.vnode_counts().1, 2);
    fs.unmount().unwrap();
    assert_eq!(mp.vnode_counts(), (0, 0), "every vnode reclaimed");
    assert_eq!(mp.root().map(|_| ()), Err(Errno::EIO), "the mount is gone");
}

#[test]
fn drop_unmounts() {
    let fs = tmpfs();
    fs.write_file("/f", b"x").unwrap();
    let mp = fs.mount_point().clone();
    drop(fs);
    assert_eq!(mp.vnode_counts(), (0, 0));
    assert_eq!(mp.statvfs().map(|_| ()), Err(Errno::EIO));
}

#[test]
fn read_only_mount() {
    rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    let fs = Ukfs::mount("tmpfs", None, &MountArgs::parse("ro")).unwrap();
    assert!(fs.statvfs().unwrap().readonly);
    assert_eq!(fs.mkdir("/d", 0o755), Err(Errno::EROFS));
    assert_eq!(fs.write_file("/f", b""), Err(Errno::EROFS));
    assert_eq!(fs.chmod("/", 0o755), Err(Errno::EROFS));
    assert_eq!(fs.access("/", amode::VWRITE), Err(Errno::EROFS));
    assert_eq!(fs.readdir("/").unwrap().len(), 2);
}

#[test]
fn threads_share_one_ukfs() {
    let fs = tmpfs();
    std::thread::scope(|s| {
        for t in 0..4 {
            let fs = &fs;
            s.spawn(move || {
                fs.mkdir(&format!("/t{t}"), 0o755).unwrap();
                for i in 0..50 {
                    let p = format!("/t{t}/f{i}");
                    fs.write_file(&p, p.as_bytes()).unwrap();
                    assert_eq!(fs.read_file(&p).unwrap(), p.as_bytes());
                }
            });
        }
    });
    for t in 0..4 {
        assert_eq!(fs.readdir(&format!("/t{t}")).unwrap().len(), 52);
    }
}

// ----- autodetection and images: a test type that recognises a magic
// string on the device and keeps a tmpfs as its "content" -----

struct MagicFs;
static MAGICFS: MagicFs = MagicFs;
const MAGIC: &[u8; 8] = b"UKFSTEST";

impl FsType for MagicFs {
    fn name(&self) -> &'static str {
        "ukfstest"
    }
    fn probe(&self, dev: &dyn BlockDevice) -> bool {
        let mut b = [0u8; 8];
        dev.size() >= 8 && dev.read_at(0, &mut b).is_ok() && &b == MAGIC
    }
    fn mount(&self, dev: Option<Arc<dyn BlockDevice>>, args: &MountArgs) -> KResult<Arc<Mount>> {
        let dev = dev.ok_or(Errno::EINVAL)?;
        // ukfs must have consumed blkio= and honoured ro when opening.
        if args.get("blkio").is_some() {
            return Err(Errno::EINVAL);
        }
        if args.rdonly != dev.is_read_only() {
            return Err(Errno::EINVAL);
        }
        if !self.probe(&*dev) {
            return Err(Errno::EINVAL);
        }
        let mut targs = MountArgs {
            rdonly: args.rdonly,
            ..Default::default()
        };
        targs.options = args.options.clone();
        fs_tmpfs::TMPFS.mount(None, &targs)
    }
}

fn register_both() {
    rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    rumpkern::vfs::register(&MAGICFS);
}

#[test]
fn mount_auto_probes_the_image() {
    register_both();
    let dir = std::env::temp_dir().join(format!("ukfs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.img");
    let mut img = vec![0u8; 64 * 1024];
    img[..8].copy_from_slice(MAGIC);
    std::fs::write(&good, &img).unwrap();
    let bad = dir.join("bad.img");
    std::fs::write(&bad, vec![0u8; 64 * 1024]).unwrap();

    let fs = Ukfs::mount_auto(&good, &MountArgs::parse("blkio=cached")).unwrap();
    assert_eq!(fs.mount_point().fstype(), "tmpfs");
    fs.write_file("/x", b"y").unwrap();
    fs.unmount().unwrap();
    let fs = Ukfs::mount_auto(&good, &MountArgs::parse("ro")).unwrap();
    assert!(fs.statvfs().unwrap().readonly);
    drop(fs);
    let fs = Ukfs::mount("ukfstest", Some(&good), &MountArgs::default()).unwrap();
    fs.unmount().unwrap();

    assert_eq!(
        Ukfs::mount_auto(&bad, &MountArgs::default()).map(|_| ()),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        Ukfs::mount("ukfstest", Some(&bad), &MountArgs::default()).map(|_| ()),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        Ukfs::mount("ukfstest", None, &MountArgs::default()).map(|_| ()),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        Ukfs::mount_auto(&dir.join("missing.img"), &MountArgs::default()).map(|_| ()),
        Err(Errno::ENOENT)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mount_device_and_from_mount() {
    register_both();
    let mut img = vec![0u8; 4096];
    img[..8].copy_from_slice(MAGIC);
    let dev: Arc<dyn BlockDevice> = Arc::new(rumpuser::MemDevice::from_vec(img));
    let fs = Ukfs::mount_device_auto(dev.clone(), &MountArgs::default()).unwrap();
    fs.unmount().unwrap();
    let fs = Ukfs::mount_device("ukfstest", Some(dev), &MountArgs::default()).unwrap();
    fs.unmount().unwrap();
    let blank: Arc<dyn BlockDevice> = Arc::new(rumpuser::MemDevice::new(4096));
    assert_eq!(
        Ukfs::mount_device_auto(blank, &MountArgs::default()).map(|_| ()),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        Ukfs::mount_device("ukfstest", None, &MountArgs::default()).map(|_| ()),
        Err(Errno::EINVAL)
    );

    let mp = fs_tmpfs::TMPFS.mount(None, &MountArgs::default()).unwrap();
    let fs = Ukfs::from_mount(mp.clone()).unwrap();
    fs.write_file("/via-from-mount", b"1").unwrap();
    assert!(Arc::ptr_eq(fs.mount_point(), &mp));
    fs.unmount().unwrap();
}
