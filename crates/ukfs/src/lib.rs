//! ukfs: a file system image as a library, with path-based calls and no
//! kernel mount (NetBSD `libukfs`).
//!
//! A [`Ukfs`] is one mounted file system: a driver registered with
//! [`rumpkern::vfs::register`], mounted on an image file (or on nothing, for
//! memory file systems), plus the state a process would have: a current
//! credential (root by default) and a current directory. Every call resolves
//! its path with [`rumpkern::namei`] and then does one vnode operation; ukfs
//! itself knows nothing about any file system format and no driver crate
//! (the programs register the drivers they ship).
//!
//! # Overview
//!
//! | group | calls |
//! |---|---|
//! | mounting | [`Ukfs::mount`], [`Ukfs::mount_auto`], [`Ukfs::mount_device`], [`Ukfs::mount_device_auto`], [`Ukfs::from_mount`], [`Ukfs::unmount`] |
//! | process state | [`Ukfs::cred`], [`Ukfs::set_cred`], [`Ukfs::chdir`] |
//! | files | [`Ukfs::open`], [`Ukfs::create`], [`Ukfs::read_file`], [`Ukfs::write_file`], [`File`] |
//! | attributes | [`Ukfs::stat`], [`Ukfs::lstat`], [`Ukfs::access`], [`Ukfs::chmod`], [`Ukfs::chown`], [`Ukfs::lchown`], [`Ukfs::utimes`], [`Ukfs::truncate`] |
//! | directories | [`Ukfs::readdir`], [`Ukfs::read_dir`], [`Ukfs::mkdir`], [`Ukfs::rmdir`] |
//! | directory handles (`*at` calls) | [`Ukfs::open_dir`], [`Dir`] |
//! | names | [`Ukfs::mknod`], [`Ukfs::unlink`], [`Ukfs::rename`], [`Ukfs::link`], [`Ukfs::symlink`], [`Ukfs::readlink`] |
//! | file system | [`Ukfs::statvfs`], [`Ukfs::sync`], [`Ukfs::mount_point`] |
//!
//! Paths are bytes (`&str`, `&[u8]`, `Vec<u8>` ... all work), absolute ones
//! from the file system's root, relative ones from the current directory.
//! Errors are the kernel's [`Errno`] values, as the system calls of the same
//! name would return them on Linux (see [`rumpkern::namei`] for the path
//! rules, including the handling of `.`, `..` and trailing slashes).
//!
//! # Example
//!
//! ```
//! use rumpkern::{MountArgs, Errno};
//! use ukfs::Ukfs;
//!
//! rumpkern::vfs::register(&fs_tmpfs::TMPFS); // done once by the program
//! let fs = Ukfs::mount("tmpfs", None, &MountArgs::default())?;
//! fs.mkdir("/docs", 0o755)?;
//! fs.write_file("/docs/hello.txt", b"hello, world\n")?;
//! assert_eq!(fs.read_file("/docs/hello.txt")?, b"hello, world\n");
//! let names: Vec<Vec<u8>> = fs.readdir("/docs")?.into_iter().map(|e| e.name).collect();
//! assert!(names.contains(&b"hello.txt".to_vec()));
//! assert_eq!(fs.rmdir("/docs"), Err(Errno::ENOTEMPTY));
//! fs.unmount()?;
//! # Ok::<(), Errno>(())
//! ```
//!
//! # References and unmounting
//!
//! A `Ukfs` holds one vnode reference on the root and one on the current
//! directory; a [`File`], a [`Dir`] and a [`ReadDir`] hold one on their vnode and
//! borrow the `Ukfs`, so the borrow checker makes sure none is left when
//! [`Ukfs::unmount`] (which takes `self`) runs. Unmount drops ukfs's own
//! references and then calls [`Mount::unmount`], which writes back
//! everything and reclaims every vnode. Dropping a `Ukfs` unmounts too,
//! logging an error it cannot return.
//!
//! # Concurrency
//!
//! `Ukfs` is `Send + Sync`: calls may run from several threads at once (the
//! vnode locks serialise what must be); the current directory and the
//! credential are shared by all threads.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rumpkern::dev::BlockDevice;
use rumpkern::namei::{namei, namei_parent_full, ParentLookup};
use rumpkern::types::{amode, ioflag, oflags, SetAttr, SetTime, StatVfs, VType, Vattr};
use rumpkern::{Cred, Errno, KResult, Mount, MountArgs, VnodeRef};

/// One directory entry as [`Ukfs::readdir`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEnt {
    /// The name, `.` and `..` included.
    pub name: Vec<u8>,
    /// Inode number.
    pub ino: u64,
    /// Type of the entry.
    pub vtype: VType,
}

/// Where a relative path starts: an open [`Dir`]'s vnode, or (`None`) the
/// current directory.
type Base<'b> = Option<&'b VnodeRef>;

/// The vnode references a live `Ukfs` holds.
struct Refs {
    root: VnodeRef,
    cwd: Mutex<VnodeRef>,
}

/// A mounted file system with path-based calls. See the crate doc.
pub struct Ukfs {
    mount: Arc<Mount>,
    /// `None` once unmounted.
    refs: Option<Refs>,
    cred: RwLock<Cred>,
}

impl std::fmt::Debug for Ukfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ukfs")
            .field("fstype", &self.mount.fstype())
            .field("fsid", &self.mount.fsid())
            .finish()
    }
}

/// Path argument: anything that is bytes.
/// The `SetAttr` of a chmod.
fn mode_attr(mode: u32) -> SetAttr {
    SetAttr { mode: Some(mode), ..Default::default() }
}

/// The `SetAttr` of a chown (`None` leaves that id).
fn owner_attr(uid: Option<u32>, gid: Option<u32>) -> SetAttr {
    SetAttr { uid, gid, ..Default::default() }
}

/// The `SetAttr` of a utimes (`None` leaves that time).
fn times_attr(atime: Option<SetTime>, mtime: Option<SetTime>) -> SetAttr {
    SetAttr { atime, mtime, ..Default::default() }
}

fn pb<P: AsRef<[u8]> + ?Sized>(p: &P) -> &[u8] {
    p.as_ref()
}

/// The image path as the host spells it (rumpuser takes `&str`).
fn image_str(image: &Path) -> KResult<&str> {
    image.to_str().ok_or(Errno::EINVAL)
}

/// Split ukfs's own options off the driver's: `blkio=` is consumed here.
/// Returns the driver's arguments and the blkio policy.
fn split_args(args: &MountArgs) -> KResult<(MountArgs, rumpuser::BlkIo)> {
    let mut out = args.clone();
    let mut blkio = rumpuser::BlkIo::DEFAULT;
    out.options.retain(|(k, _)| k != "blkio");
    if let Some(v) = args.get("blkio") {
        let v = v.ok_or(Errno::EINVAL)?;
        blkio = rumpuser::BlkIo::parse(v).map_err(|_| {
            log::error!("ukfs: unknown blkio policy {v:?}");
            Errno::EINVAL
        })?;
    }
    Ok((out, blkio))
}

fn open_image(
    image: &Path,
    read_only: bool,
    blkio: rumpuser::BlkIo,
) -> KResult<Arc<dyn BlockDevice>> {
    let opts = rumpuser::OpenOpts { read_only, blkio };
    rumpuser::open_device(image_str(image)?, &opts).map_err(|e| {
        log::error!("ukfs: cannot open {}: {}", image.display(), e);
        Errno::from(e)
    })
}

impl Ukfs {
    /// Mount a file system of type `fstype` (a registered type's name or
    /// alias) on the image file or device `image`, opened read-only when
    /// `args.rdonly`. A memory file system (tmpfs) takes no image: `image`
    /// is then ignored. Options: `ro`/`rw`/`force` (see [`MountArgs`]),
    /// `blkio=POLICY` (how rumpuser writes through to the image; consumed
    /// here), everything else goes to the driver.
    ///
    /// Errors: ENODEV (no such type registered), EINVAL (a device type and no
    /// image, bad option), the host's error opening the image (ENOENT,
    /// EACCES, ...), and whatever the driver's mount returns.
    pub fn mount(fstype: &str, image: Option<&Path>, args: &MountArgs) -> KResult<Ukfs> {
        let t = rumpkern::vfs::lookup_type(fstype).ok_or_else(|| {
            log::error!(
                "ukfs: unknown file system type {fstype:?} (known: {:?})",
                rumpkern::vfs::type_names()
            );
            Errno::ENODEV
        })?;
        let (dargs, blkio) = split_args(args)?;
        let dev = if t.needs_device() {
            let image = image.ok_or(Errno::EINVAL)?;
            Some(open_image(image, args.rdonly, blkio)?)
        } else {
            None
        };
        Ukfs::from_mount(t.mount(dev, &dargs)?)
    }

    /// Mount `image` with the first registered type whose probe recognises
    /// it ([`rumpkern::vfs::probe`]). Options as [`Ukfs::mount`].
    ///
    /// Errors: EINVAL (no registered type recognises the image), as `mount`
    /// otherwise.
    pub fn mount_auto(image: &Path, args: &MountArgs) -> KResult<Ukfs> {
        let (dargs, blkio) = split_args(args)?;
        let dev = open_image(image, args.rdonly, blkio)?;
        Ukfs::mount_device_auto(dev, &dargs)
    }

    /// Mount an already open device (a memory device in tests, a
    /// fault-injecting wrapper, ...) with type `fstype`; `None` for memory
    /// file systems. `args` goes to the driver unchanged.
    /// Errors: ENODEV (unknown type), EINVAL (device missing), the driver's.
    pub fn mount_device(
        fstype: &str,
        dev: Option<Arc<dyn BlockDevice>>,
        args: &MountArgs,
    ) -> KResult<Ukfs> {
        let t = rumpkern::vfs::lookup_type(fstype).ok_or(Errno::ENODEV)?;
        if t.needs_device() && dev.is_none() {
            return Err(Errno::EINVAL);
        }
        let dev = if t.needs_device() { dev } else { None };
        Ukfs::from_mount(t.mount(dev, args)?)
    }

    /// Mount an open device with the type its content is recognised as.
    /// Errors: EINVAL (no registered type recognises it), the driver's.
    pub fn mount_device_auto(dev: Arc<dyn BlockDevice>, args: &MountArgs) -> KResult<Ukfs> {
        let t = rumpkern::vfs::probe(&*dev).ok_or_else(|| {
            log::error!("ukfs: no registered file system type recognises the image");
            Errno::EINVAL
        })?;
        log::debug!("ukfs: image recognised as {}", t.name());
        Ukfs::from_mount(t.mount(Some(dev), args)?)
    }

    /// Wrap a mount built some other way. Takes a reference on its root,
    /// which is also the first current directory. Errors: the root's.
    pub fn from_mount(mount: Arc<Mount>) -> KResult<Ukfs> {
        let root = mount.root()?;
        if root.vtype() != VType::Dir {
            log::error!(
                "ukfs: the root of the {} mount is not a directory",
                mount.fstype()
            );
            return Err(Errno::EIO);
        }
        let cwd = Mutex::new(root.clone());
        Ok(Ukfs {
            mount,
            refs: Some(Refs { root, cwd }),
            cred: RwLock::new(Cred::root()),
        })
    }

    /// The mount underneath (statistics, properties, vnode counts).
    pub fn mount_point(&self) -> &Arc<Mount> {
        &self.mount
    }

    /// The credential calls run with (root unless changed).
    pub fn cred(&self) -> Cred {
        self.cred.read().clone()
    }

    /// Run the following calls as `cred` (permission checks apply unless
    /// uid 0).
    pub fn set_cred(&self, cred: Cred) {
        *self.cred.write() = cred;
    }

    fn refs(&self) -> KResult<&Refs> {
        // Only `unmount` and `drop` take the references, and both own self.
        self.refs.as_ref().ok_or(Errno::EIO)
    }

    /// (root, start) referenced for one call: `start` is `base` (an open
    /// [`Dir`]) or else the cwd, so the cwd lock is not held during the walk.
    fn start(&self, base: Base<'_>) -> KResult<(VnodeRef, VnodeRef)> {
        let r = self.refs()?;
        let start = match base {
            Some(d) => d.clone(),
            None => r.cwd.lock().clone(),
        };
        Ok((r.root.clone(), start))
    }

    fn resolve_in(
        &self,
        base: Base<'_>,
        path: &[u8],
        follow: bool,
        cred: &Cred,
    ) -> KResult<VnodeRef> {
        let (root, start) = self.start(base)?;
        namei(&root, &start, path, follow, cred)
    }

    fn parent_in(&self, base: Base<'_>, path: &[u8], cred: &Cred) -> KResult<ParentLookup> {
        let (root, start) = self.start(base)?;
        namei_parent_full(&root, &start, path, cred)
    }

    fn resolve(&self, path: &[u8], follow: bool, cred: &Cred) -> KResult<VnodeRef> {
        self.resolve_in(None, path, follow, cred)
    }

    /// Change the current directory. Errors: as namei, ENOTDIR, EACCES (no
    /// search permission on the new directory).
    ///
    /// ```
    /// # use rumpkern::{MountArgs, Errno, Cred};
    /// # rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    /// let fs = ukfs::Ukfs::mount("tmpfs", None, &MountArgs::default())?;
    /// fs.mkdir("/home", 0o755)?;
    /// fs.chdir("/home")?;
    /// fs.write_file("notes", b"relative to /home")?;
    /// assert_eq!(fs.read_file("/home/notes")?, b"relative to /home");
    /// fs.mkdir("/vault", 0o700)?;
    /// fs.set_cred(Cred::new(1000, 1000, vec![]));
    /// assert_eq!(fs.chdir("/vault"), Err(Errno::EACCES));
    /// # Ok::<(), Errno>(())
    /// ```
    pub fn chdir<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<()> {
        let cred = self.cred();
        let vp = self.resolve(pb(path), true, &cred)?;
        if vp.vtype() != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        vp.access(amode::VEXEC, &cred)?;
        *self.refs()?.cwd.lock() = vp;
        Ok(())
    }

    // ----- files -----

    /// Open `path` with `flags` (`rumpkern::types::oflags`: O_RDONLY,
    /// O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_NOFOLLOW,
    /// O_DIRECTORY). With O_CREAT a missing file is created with `mode`
    /// (permission bits); the creator may then use the file whatever the
    /// mode says. O_CREAT|O_EXCL fails with EEXIST if the name exists (even
    /// as a dangling symlink). A final symlink is followed unless O_NOFOLLOW
    /// (then ELOOP); O_CREAT through a dangling symlink gives ENOENT (Linux
    /// would create the target; ukfs does not create through links).
    ///
    /// Errors: ENOENT, EEXIST, EISDIR (a directory opened for writing or
    /// with O_CREAT; a trailing slash with O_CREAT), ENOTDIR (O_DIRECTORY on
    /// a non-directory), EACCES, EROFS, ELOOP, as namei.
    ///
    /// ```
    /// # use rumpkern::{MountArgs, Errno, types::oflags};
    /// # rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    /// let fs = ukfs::Ukfs::mount("tmpfs", None, &MountArgs::default())?;
    /// let excl = oflags::O_WRONLY | oflags::O_CREAT | oflags::O_EXCL;
    /// let mut f = fs.open("/new", excl, 0o644)?;
    /// f.write_all(b"abc")?;
    /// drop(f); // VOP_CLOSE
    /// assert_eq!(fs.open("/new", excl, 0o644).map(|_| ()), Err(Errno::EEXIST));
    /// let mut f = fs.open("/new", oflags::O_RDONLY, 0)?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(f.read(&mut buf)?, 3);
    /// assert_eq!(f.read(&mut buf)?, 0); // end of file
    /// # Ok::<(), Errno>(())
    /// ```
    pub fn open<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        flags: i32,
        mode: u32,
    ) -> KResult<File<'_>> {
        self.open_in(None, pb(path), flags, mode)
    }

    fn open_in(&self, base: Base<'_>, path: &[u8], flags: i32, mode: u32) -> KResult<File<'_>> {
        let cred = self.cred();
        let nofollow = flags & oflags::O_NOFOLLOW != 0;
        let mut created = false;
        let vp = if flags & oflags::O_CREAT != 0 {
            let p = self.parent_in(base, path, &cred)?;
            if p.trailing_slash {
                return Err(Errno::EISDIR);
            }
            match p.dir.lookup(&p.name, &cred) {
                Ok(vp) => {
                    if flags & oflags::O_EXCL != 0 {
                        return Err(Errno::EEXIST);
                    }
                    if vp.vtype() == VType::Lnk && !nofollow {
                        drop(vp);
                        self.resolve_in(base, path, true, &cred)?
                    } else {
                        vp
                    }
                }
                Err(e) if e == Errno::ENOENT => {
                    created = true;
                    p.dir.create(&p.name, mode, &cred)?
                }
                Err(e) => return Err(e),
            }
        } else {
            self.resolve_in(base, path, !nofollow, &cred)?
        };
        if flags & oflags::O_CREAT != 0 && vp.vtype() == VType::Dir {
            return Err(Errno::EISDIR);
        }
        if flags & oflags::O_DIRECTORY != 0 && vp.vtype() != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        if created {
            // The creator may use the new file whatever its mode: the access
            // check of VOP_OPEN is skipped (there is nothing to truncate).
            vp.ops().open(&vp, flags, &cred)?;
        } else {
            vp.open(flags, &cred)?;
        }
        Ok(File {
            vp,
            flags,
            offset: 0,
            cred,
            _fs: PhantomData,
        })
    }

    /// Create a new regular file `path` with `mode` and open it read-write
    /// (O_CREAT|O_EXCL|O_RDWR). Errors: EEXIST, as [`Ukfs::open`].
    pub fn create<P: AsRef<[u8]> + ?Sized>(&self, path: &P, mode: u32) -> KResult<File<'_>> {
        self.open(
            path,
            oflags::O_CREAT | oflags::O_EXCL | oflags::O_RDWR,
            mode,
        )
    }

    /// The whole content of the regular file `path`.
    /// Errors: as [`Ukfs::open`] for reading, EISDIR, EIO.
    pub fn read_file<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Vec<u8>> {
        let mut f = self.open(path, oflags::O_RDONLY, 0)?;
        let size = f.metadata()?.size;
        // The size is a hint (the file may change); cap the first allocation.
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(usize::MAX).min(1 << 26));
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(out)
    }

    /// Replace the content of `path` by `data`, creating the file (mode
    /// 0644) if needed. Errors: as [`Ukfs::open`] and [`File::write_all`].
    pub fn write_file<P: AsRef<[u8]> + ?Sized>(&self, path: &P, data: &[u8]) -> KResult<()> {
        let mut f = self.open(
            path,
            oflags::O_WRONLY | oflags::O_CREAT | oflags::O_TRUNC,
            0o644,
        )?;
        f.write_all(data)
    }

    // ----- attributes -----

    /// Attributes of `path`, following a final symlink.
    pub fn stat<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Vattr> {
        self.stat_in(None, pb(path), true)
    }

    fn stat_in(&self, base: Base<'_>, path: &[u8], follow: bool) -> KResult<Vattr> {
        let cred = self.cred();
        self.resolve_in(base, path, follow, &cred)?.getattr()
    }

    /// Attributes of `path` itself (a final symlink is not followed).
    pub fn lstat<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Vattr> {
        self.stat_in(None, pb(path), false)
    }

    /// May the current credential access `path` with `mode` (VREAD, VWRITE,
    /// VEXEC of `rumpkern::types::amode`; 0 = does it exist)?
    /// Errors: EACCES, EROFS (VWRITE on a read-only mount), as namei.
    pub fn access<P: AsRef<[u8]> + ?Sized>(&self, path: &P, mode: u32) -> KResult<()> {
        let cred = self.cred();
        let vp = self.resolve(pb(path), true, &cred)?;
        if mode == 0 {
            return Ok(());
        }
        vp.access(mode, &cred)
    }

    fn setattr(&self, path: &[u8], follow: bool, sa: SetAttr) -> KResult<()> {
        self.setattr_in(None, path, follow, sa)
    }

    fn setattr_in(&self, base: Base<'_>, path: &[u8], follow: bool, sa: SetAttr) -> KResult<()> {
        let cred = self.cred();
        let vp = self.resolve_in(base, path, follow, &cred)?;
        vp.setattr(&sa, &cred, false)
    }

    /// Change the permission bits (and setuid/setgid/sticky) of `path`.
    /// Errors: EPERM (not the owner), EROFS, as namei.
    pub fn chmod<P: AsRef<[u8]> + ?Sized>(&self, path: &P, mode: u32) -> KResult<()> {
        self.setattr(pb(path), true, mode_attr(mode))
    }

    /// Change owner and/or group of `path` (`None` leaves it), following a
    /// final symlink. Errors: EPERM, EROFS, as namei.
    pub fn chown<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> KResult<()> {
        self.setattr(pb(path), true, owner_attr(uid, gid))
    }

    /// As [`Ukfs::chown`] on a final symlink itself.
    pub fn lchown<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> KResult<()> {
        self.setattr(pb(path), false, owner_attr(uid, gid))
    }

    /// Set access and/or modification time of `path` (`None` leaves it;
    /// [`SetTime::Now`] is the current time). Errors: EPERM (explicit times
    /// by a non-owner), EACCES (`Now` by a non-owner without write
    /// permission), EROFS, as namei.
    pub fn utimes<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
    ) -> KResult<()> {
        self.setattr(pb(path), true, times_attr(atime, mtime))
    }

    /// Set the size of the regular file `path` (shrink or extend with
    /// zeros). Errors: EISDIR, EINVAL (not a regular file), EACCES, EFBIG,
    /// EROFS, as namei.
    pub fn truncate<P: AsRef<[u8]> + ?Sized>(&self, path: &P, len: u64) -> KResult<()> {
        self.setattr(
            pb(path),
            true,
            SetAttr {
                size: Some(len),
                ..Default::default()
            },
        )
    }

    // ----- directories -----

    /// An iterator over the entries of directory `path` (`.` and `..`
    /// included), fetched from the driver in batches, continuing from the
    /// driver's cookies. Errors: ENOTDIR, EACCES (no read permission), as
    /// namei; later errors come from the iterator.
    pub fn read_dir<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<ReadDir<'_>> {
        let cred = self.cred();
        let vp = self.resolve(pb(path), true, &cred)?;
        self.read_dir_vp(vp, &cred)
    }

    fn read_dir_vp(&self, vp: VnodeRef, cred: &Cred) -> KResult<ReadDir<'_>> {
        if vp.vtype() != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        vp.access(amode::VREAD, cred)?;
        Ok(ReadDir {
            vp,
            cookie: 0,
            buf: VecDeque::new(),
            done: false,
            _fs: PhantomData,
        })
    }

    /// All entries of directory `path` (`.` and `..` included).
    ///
    /// ```
    /// # use rumpkern::{MountArgs, Errno, VType};
    /// # rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    /// let fs = ukfs::Ukfs::mount("tmpfs", None, &MountArgs::default())?;
    /// fs.mkdir("d", 0o755)?;
    /// fs.symlink("d", "link")?;
    /// let mut ents = fs.readdir("/")?;
    /// ents.sort_by(|a, b| a.name.cmp(&b.name));
    /// let names: Vec<&[u8]> = ents.iter().map(|e| &e.name[..]).collect();
    /// assert_eq!(names, [&b"."[..], b"..", b"d", b"link"]);
    /// assert_eq!(ents[3].vtype, VType::Lnk);
    /// # Ok::<(), Errno>(())
    /// ```
    pub fn readdir<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Vec<DirEnt>> {
        self.read_dir(path)?.collect()
    }

    /// Create directory `path` with `mode`. A trailing slash is allowed.
    /// Errors: EEXIST, ENOENT, ENOTDIR, EACCES, ENOSPC, EROFS.
    pub fn mkdir<P: AsRef<[u8]> + ?Sized>(&self, path: &P, mode: u32) -> KResult<()> {
        self.mkdir_in(None, pb(path), mode)
    }

    fn mkdir_in(&self, base: Base<'_>, path: &[u8], mode: u32) -> KResult<()> {
        let cred = self.cred();
        let p = self.parent_in(base, path, &cred)?;
        p.dir.mkdir(&p.name, mode, &cred).map(drop)
    }

    /// Create a device node (`VType::Chr`/`Blk`, root only), fifo or socket
    /// `path` with `mode`; `VType::Reg` creates an empty regular file.
    /// Errors: EEXIST, EPERM (device node by a non-root user), EINVAL
    /// (`Dir`/`Lnk`: use mkdir/symlink), ENOENT, EACCES, ENOSPC, EROFS,
    /// EOPNOTSUPP (the format has no such nodes).
    pub fn mknod<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        vtype: VType,
        mode: u32,
        rdev: u64,
    ) -> KResult<()> {
        self.mknod_in(None, pb(path), vtype, mode, rdev)
    }

    fn mknod_in(
        &self,
        base: Base<'_>,
        path: &[u8],
        vtype: VType,
        mode: u32,
        rdev: u64,
    ) -> KResult<()> {
        let cred = self.cred();
        let p = self.parent_in(base, path, &cred)?;
        refuse_trailing_slash(&p, &cred)?;
        p.dir.mknod(&p.name, vtype, mode, rdev, &cred).map(drop)
    }

    /// Remove the empty directory `path`.
    /// Errors: ENOENT, ENOTDIR, ENOTEMPTY, EINVAL (last component `.` or the
    /// path `/`), EBUSY, EACCES, EPERM (sticky directory), EROFS.
    pub fn rmdir<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<()> {
        self.rmdir_in(None, pb(path))
    }

    fn rmdir_in(&self, base: Base<'_>, path: &[u8]) -> KResult<()> {
        let cred = self.cred();
        let p = self.parent_in(base, path, &cred)?;
        p.dir.rmdir(&p.name, &cred)
    }

    // ----- names -----

    /// Remove the non-directory `path` (a final symlink itself, not its
    /// target). Errors: ENOENT, EISDIR (a directory, also `dir/`), ENOTDIR
    /// (`file/`), EACCES, EPERM, EROFS.
    pub fn unlink<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<()> {
        self.unlink_in(None, pb(path))
    }

    fn unlink_in(&self, base: Base<'_>, path: &[u8]) -> KResult<()> {
        let cred = self.cred();
        let p = self.parent_in(base, path, &cred)?;
        if p.trailing_slash {
            // As Linux: "name/" never names a non-directory to unlink.
            let vp = p.dir.lookup(&p.name, &cred)?;
            return Err(if vp.vtype() == VType::Dir {
                Errno::EISDIR
            } else {
                Errno::ENOTDIR
            });
        }
        p.dir.remove(&p.name, &cred)
    }

    /// Rename `from` to `to`, replacing a compatible `to`. Trailing slashes
    /// require `from` to be a directory.
    /// Errors: ENOENT, EEXIST/ENOTEMPTY (non-empty target directory),
    /// EISDIR, ENOTDIR, EINVAL (into its own subtree, `.`/`..`), EXDEV,
    /// EACCES, EPERM, EROFS.
    ///
    /// ```
    /// # use rumpkern::{MountArgs, Errno};
    /// # rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    /// let fs = ukfs::Ukfs::mount("tmpfs", None, &MountArgs::default())?;
    /// fs.mkdir("/a", 0o755)?;
    /// fs.write_file("/a/f", b"1")?;
    /// fs.rename("/a", "/b")?;
    /// assert_eq!(fs.read_file("/b/f")?, b"1");
    /// assert_eq!(fs.rename("/b", "/b/inside"), Err(Errno::EINVAL));
    /// fs.symlink("b/f", "/link")?;
    /// assert_eq!(fs.readlink("/link")?, b"b/f");
    /// assert_eq!(fs.read_file("/link")?, b"1");
    /// # Ok::<(), Errno>(())
    /// ```
    pub fn rename<P: AsRef<[u8]> + ?Sized, Q: AsRef<[u8]> + ?Sized>(
        &self,
        from: &P,
        to: &Q,
    ) -> KResult<()> {
        let cred = self.cred();
        let f = self.parent_in(None, pb(from), &cred)?;
        let t = self.parent_in(None, pb(to), &cred)?;
        if f.trailing_slash || t.trailing_slash {
            let src = f.dir.lookup(&f.name, &cred)?;
            if src.vtype() != VType::Dir {
                return Err(Errno::ENOTDIR);
            }
        }
        f.dir.rename(&f.name, &t.dir, &t.name, &cred)
    }

    /// Make `new` a hard link to `existing` (a final symlink in `existing`
    /// is not followed, as Linux `link`). Errors: EEXIST, ENOENT, EPERM
    /// (directory), EMLINK, EXDEV, EACCES, ENOSPC, EROFS.
    pub fn link<P: AsRef<[u8]> + ?Sized, Q: AsRef<[u8]> + ?Sized>(
        &self,
        existing: &P,
        new: &Q,
    ) -> KResult<()> {
        self.link_in(None, pb(existing), pb(new))
    }

    fn link_in(&self, base: Base<'_>, existing: &[u8], new: &[u8]) -> KResult<()> {
        let cred = self.cred();
        let vp = self.resolve_in(base, existing, false, &cred)?;
        let p = self.parent_in(base, new, &cred)?;
        refuse_trailing_slash(&p, &cred)?;
        p.dir.link(&vp, &p.name, &cred)
    }

    /// Create a symbolic link `linkpath` containing `target` (not checked).
    /// Errors: EEXIST, ENOENT (also an empty target), ENAMETOOLONG, EACCES,
    /// ENOSPC, EROFS.
    pub fn symlink<P: AsRef<[u8]> + ?Sized, Q: AsRef<[u8]> + ?Sized>(
        &self,
        target: &P,
        linkpath: &Q,
    ) -> KResult<()> {
        self.symlink_in(None, pb(target), pb(linkpath))
    }

    fn symlink_in(&self, base: Base<'_>, target: &[u8], linkpath: &[u8]) -> KResult<()> {
        let cred = self.cred();
        let p = self.parent_in(base, linkpath, &cred)?;
        refuse_trailing_slash(&p, &cred)?;
        p.dir.symlink(&p.name, target, &cred).map(drop)
    }

    /// The target of the symbolic link `path`. Errors: EINVAL (not a
    /// symlink), as namei.
    pub fn readlink<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Vec<u8>> {
        self.readlink_in(None, pb(path))
    }

    fn readlink_in(&self, base: Base<'_>, path: &[u8]) -> KResult<Vec<u8>> {
        let cred = self.cred();
        self.resolve_in(base, path, false, &cred)?.readlink()
    }

    /// Open directory `path` (a final symlink is followed) as a [`Dir`]: a
    /// handle whose calls resolve relative paths from this directory rather
    /// than from the current directory, as the POSIX `*at` calls do with a
    /// directory descriptor (absolute paths still start at the root). No
    /// permission is needed to hold it (as Linux `O_PATH`): each call checks
    /// search permission on the directory, [`Dir::read_dir`] read
    /// permission. Errors: ENOTDIR, as namei.
    ///
    /// ```
    /// # use rumpkern::{MountArgs, Errno, VType};
    /// # rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    /// let fs = ukfs::Ukfs::mount("tmpfs", None, &MountArgs::default())?;
    /// fs.mkdir("/d", 0o755)?;
    /// let d = fs.open_dir("/d")?;
    /// d.write_file("f", b"in d")?;
    /// d.symlink("f", "l")?;
    /// assert_eq!(fs.read_file("/d/f")?, b"in d");
    /// assert_eq!(d.lstat("l")?.vtype, VType::Lnk);
    /// assert_eq!(d.stat("l")?.size, 4);
    /// let mut names: Vec<Vec<u8>> = d.readdir()?.into_iter().map(|e| e.name).collect();
    /// names.sort();
    /// assert_eq!(names, [&b"."[..], b"..", b"f", b"l"]);
    /// assert_eq!(d.open_dir("f").map(|_| ()), Err(Errno::ENOTDIR));
    /// # Ok::<(), Errno>(())
    /// ```
    pub fn open_dir<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Dir<'_>> {
        self.open_dir_in(None, pb(path))
    }

    fn open_dir_in(&self, base: Base<'_>, path: &[u8]) -> KResult<Dir<'_>> {
        let cred = self.cred();
        let vp = self.resolve_in(base, path, true, &cred)?;
        if vp.vtype() != VType::Dir {
            return Err(Errno::ENOTDIR);
        }
        Ok(Dir { fs: self, vp })
    }

    // ----- the file system -----

    /// File system statistics.
    pub fn statvfs(&self) -> KResult<StatVfs> {
        self.mount.statvfs()
    }

    /// Write back everything dirty and wait until it is on the device.
    pub fn sync(&self) -> KResult<()> {
        self.mount.sync(true)
    }

    /// Unmount: drop ukfs's vnode references (root, current directory),
    /// then [`Mount::unmount`]: write back everything, reclaim every vnode,
    /// let the driver close the image. Errors: EBUSY if a vnode is still
    /// referenced (a driver leak: files and listings borrow the `Ukfs`, so
    /// none of them can be alive), the write-back's and the driver's errors.
    ///
    /// ```
    /// # use rumpkern::{MountArgs, Errno};
    /// # rumpkern::vfs::register(&fs_tmpfs::TMPFS);
    /// let fs = ukfs::Ukfs::mount("tmpfs", None, &MountArgs::default())?;
    /// fs.write_file("/f", b"x")?;
    /// let mp = fs.mount_point().clone();
    /// assert_eq!(mp.vnode_counts().1, 1); // the root vnode (held as root and cwd)
    /// fs.unmount()?;
    /// assert_eq!(mp.vnode_counts(), (0, 0)); // everything reclaimed
    /// # Ok::<(), Errno>(())
    /// ```
    pub fn unmount(mut self) -> KResult<()> {
        self.do_unmount()
    }

    fn do_unmount(&mut self) -> KResult<()> {
        match self.refs.take() {
            Some(r) => drop(r),
            None => return Ok(()),
        }
        self.mount.unmount(false)
    }
}

/// A name with a trailing slash must name a directory: refuse it for calls
/// that create non-directories (EEXIST when it exists, else ENOENT, as Linux
/// `link`/`symlink`).
fn refuse_trailing_slash(p: &ParentLookup, cred: &Cred) -> KResult<()> {
    if !p.trailing_slash {
        return Ok(());
    }
    match p.dir.lookup(&p.name, cred) {
        Ok(_) => Err(Errno::EEXIST),
        Err(e) if e == Errno::ENOENT => Err(Errno::ENOENT),
        Err(e) => Err(e),
    }
}

impl Drop for Ukfs {
    fn drop(&mut self) {
        if self.refs.is_some() {
            if let Err(e) = self.do_unmount() {
                log::error!(
                    "ukfs: unmount of the {} file system on drop failed: {}",
                    self.mount.fstype(),
                    e
                );
            }
        }
    }
}

/// An open file: a referenced vnode, the open flags, and the file offset
/// used by [`File::read`] and [`File::write`]. Dropping it is the last close
/// (VOP_CLOSE); it borrows the [`Ukfs`] it came from.
///
/// ```
/// # use rumpkern::{MountArgs, Errno, types::oflags};
/// # rumpkern::vfs::register(&fs_tmpfs::TMPFS);
/// let fs = ukfs::Ukfs::mount("tmpfs", None, &MountArgs::default())?;
/// let mut f = fs.create("/log", 0o600)?;
/// f.write_all(b"one ")?;
/// f.pwrite(b"ONE", 0)?;
/// drop(f);
/// let mut f = fs.open("/log", oflags::O_WRONLY | oflags::O_APPEND, 0)?;
/// f.write_all(b"two")?;
/// let mut buf = [0u8; 16];
/// assert_eq!(f.pread(&mut buf, 0), Err(Errno::EBADF)); // opened write-only
/// drop(f);
/// assert_eq!(fs.read_file("/log")?, b"ONE two");
/// # Ok::<(), Errno>(())
/// ```
pub struct File<'a> {
    vp: VnodeRef,
    flags: i32,
    offset: u64,
    cred: Cred,
    _fs: PhantomData<&'a Ukfs>,
}

impl std::fmt::Debug for File<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("vnode", &self.vp)
            .field("flags", &self.flags)
            .field("offset", &self.offset)
            .finish()
    }
}

impl File<'_> {
    fn readable(&self) -> KResult<()> {
        match self.flags & oflags::O_ACCMODE {
            oflags::O_RDONLY | oflags::O_RDWR => Ok(()),
            _ => Err(Errno::EBADF),
        }
    }

    fn writable(&self) -> bool {
        matches!(
            self.flags & oflags::O_ACCMODE,
            oflags::O_WRONLY | oflags::O_RDWR
        )
    }

    /// The vnode (referenced for as long as the file is open).
    pub fn vnode(&self) -> &VnodeRef {
        &self.vp
    }

    /// The current file offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Read at the file offset and advance it; 0 at end of file.
    /// Errors: EBADF (opened write-only), EISDIR, EIO.
    pub fn read(&mut self, buf: &mut [u8]) -> KResult<usize> {
        let n = self.pread(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }

    /// Read at `off`, leaving the file offset alone.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> KResult<usize> {
        self.readable()?;
        self.vp.read(buf, off)
    }

    /// Write at the file offset (at end of file if opened with O_APPEND) and
    /// advance it past the data written; may write less than `buf` (out of
    /// space). Errors: EBADF (not opened for writing), ENOSPC, EFBIG, EROFS,
    /// EIO.
    pub fn write(&mut self, buf: &[u8]) -> KResult<usize> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        if self.flags & oflags::O_APPEND != 0 {
            let n = self.vp.write(
                buf,
                self.offset,
                self.ioflag() | ioflag::IO_APPEND,
                &self.cred,
            )?;
            self.offset = self.vp.getattr()?.size;
            Ok(n)
        } else {
            let n = self.vp.write(buf, self.offset, self.ioflag(), &self.cred)?;
            self.offset += n as u64;
            Ok(n)
        }
    }

    fn ioflag(&self) -> u32 {
        if self.flags & oflags::O_SYNC == oflags::O_SYNC {
            ioflag::IO_SYNC
        } else {
            0
        }
    }

    /// Write all of `buf` at the file offset. Errors: as [`File::write`];
    /// ENOSPC when a write makes no progress.
    pub fn write_all(&mut self, mut buf: &[u8]) -> KResult<()> {
        while !buf.is_empty() {
            let n = self.write(buf)?;
            if n == 0 {
                return Err(Errno::ENOSPC);
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Write at `off`, leaving the file offset alone. Positional: O_APPEND
    /// does not apply (POSIX; Linux would append). Errors: as `write`.
    pub fn pwrite(&self, buf: &[u8], off: u64) -> KResult<usize> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        self.vp.write(buf, off, self.ioflag(), &self.cred)
    }

    /// Make the file's data and metadata durable.
    pub fn fsync(&self) -> KResult<()> {
        self.vp.fsync(false)
    }

    /// Set the file's size (ftruncate). Errors: EINVAL (not opened for
    /// writing, as Linux), EFBIG, EROFS, EIO.
    pub fn set_len(&self, len: u64) -> KResult<()> {
        if !self.writable() {
            return Err(Errno::EINVAL);
        }
        self.vp.setattr(
            &SetAttr {
                size: Some(len),
                ..Default::default()
            },
            &self.cred,
            true,
        )
    }

    /// The file's attributes (fstat).
    pub fn metadata(&self) -> KResult<Vattr> {
        self.vp.getattr()
    }
}

impl Drop for File<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.vp.close(self.flags) {
            log::warn!("ukfs: close of inode {} failed: {}", self.vp.ino(), e);
        }
    }
}

/// Entries fetched per VOP_READDIR call.
const READDIR_BATCH: usize = 128;

/// Iterator over a directory's entries ([`Ukfs::read_dir`]); yields an error
/// at most once, then ends. It borrows the [`Ukfs`], so it cannot outlive an
/// unmount:
///
/// ```compile_fail
/// # use rumpkern::{MountArgs, Errno};
/// # rumpkern::vfs::register(&fs_tmpfs::TMPFS);
/// let fs = ukfs::Ukfs::mount("tmpfs", None, &MountArgs::default())?;
/// let entries = fs.read_dir("/")?;
/// fs.unmount()?; // error: `fs` is borrowed until `entries` is dropped
/// # Ok::<(), Errno>(())
/// ```
pub struct ReadDir<'a> {
    vp: VnodeRef,
    cookie: u64,
    buf: VecDeque<DirEnt>,
    done: bool,
    _fs: PhantomData<&'a Ukfs>,
}

// A Drop impl (empty: the vnode reference drops itself) makes the borrow
// checker hold the `Ukfs` borrow until a `ReadDir` is dropped, not just until
// its last use, so one cannot outlive `Ukfs::unmount` (its vnode would
// keep the mount busy).
impl Drop for ReadDir<'_> {
    fn drop(&mut self) {}
}

impl ReadDir<'_> {
    fn fill(&mut self) -> KResult<()> {
        let mut cookie = self.cookie;
        let buf = &mut self.buf;
        self.vp.readdir(cookie, &mut |e| {
            if buf.len() >= READDIR_BATCH {
                return false; // offered again next time, from `cookie`
            }
            buf.push_back(DirEnt {
                name: e.name.to_vec(),
                ino: e.ino,
                vtype: e.vtype,
            });
            cookie = e.next_offset;
            true
        })?;
        if self.buf.is_empty() {
            self.done = true;
        } else if cookie == self.cookie {
            // A driver that does not advance its cookie would loop forever.
            log::error!(
                "ukfs: readdir of inode {} did not advance its cookie",
                self.vp.ino()
            );
            self.done = true;
            return Err(Errno::EIO);
        }
        self.cookie = cookie;
        Ok(())
    }
}

impl Iterator for ReadDir<'_> {
    type Item = KResult<DirEnt>;

    fn next(&mut self) -> Option<KResult<DirEnt>> {
        if self.buf.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                self.buf.clear();
                return Some(Err(e));
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

/// An open directory ([`Ukfs::open_dir`]): the calls of [`Ukfs`] with
/// relative paths resolved from this directory instead of the current
/// one, as POSIX `openat`, `fstatat`, `mkdirat` ... do with a directory
/// descriptor (an absolute path still starts at the root). A program that
/// walks a tree keeps one per directory and names entries by their bare
/// names, so each call is one lookup in that directory instead of a walk
/// from the root. Holds a reference on the directory's vnode and borrows
/// the [`Ukfs`]; cloning takes one more reference. Errors: as the
/// [`Ukfs`] call of the same name.
#[derive(Clone)]
pub struct Dir<'a> {
    fs: &'a Ukfs,
    vp: VnodeRef,
}

impl std::fmt::Debug for Dir<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dir").field("vnode", &self.vp).finish()
    }
}

impl Drop for Dir<'_> {
    /// The vnode reference goes with the handle. Having a `Drop` makes the
    /// borrow checker keep the [`Ukfs`] alive (mounted) until then, as for
    /// [`File`].
    fn drop(&mut self) {}
}

impl<'a> Dir<'a> {
    fn base(&self) -> Base<'_> {
        Some(&self.vp)
    }

    /// The directory's vnode (referenced for as long as the handle lives).
    pub fn vnode(&self) -> &VnodeRef {
        &self.vp
    }

    /// The directory's own attributes (fstat).
    pub fn metadata(&self) -> KResult<Vattr> {
        self.vp.getattr()
    }

    /// As [`Ukfs::open_dir`], relative to this directory.
    pub fn open_dir<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Dir<'a>> {
        self.fs.open_dir_in(self.base(), pb(path))
    }

    /// The entries of this directory, as [`Ukfs::read_dir`] (read
    /// permission checked now).
    pub fn read_dir(&self) -> KResult<ReadDir<'a>> {
        let cred = self.fs.cred();
        self.fs.read_dir_vp(self.vp.clone(), &cred)
    }

    /// All entries of this directory, as [`Ukfs::readdir`].
    pub fn readdir(&self) -> KResult<Vec<DirEnt>> {
        self.read_dir()?.collect()
    }

    /// As [`Ukfs::open`] (openat).
    pub fn open<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        flags: i32,
        mode: u32,
    ) -> KResult<File<'a>> {
        self.fs.open_in(self.base(), pb(path), flags, mode)
    }

    /// As [`Ukfs::write_file`].
    pub fn write_file<P: AsRef<[u8]> + ?Sized>(&self, path: &P, data: &[u8]) -> KResult<()> {
        let mut f = self.open(
            path,
            oflags::O_WRONLY | oflags::O_CREAT | oflags::O_TRUNC,
            0o644,
        )?;
        f.write_all(data)
    }

    /// As [`Ukfs::stat`] (fstatat).
    pub fn stat<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Vattr> {
        self.fs.stat_in(self.base(), pb(path), true)
    }

    /// As [`Ukfs::lstat`] (fstatat with AT_SYMLINK_NOFOLLOW).
    pub fn lstat<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Vattr> {
        self.fs.stat_in(self.base(), pb(path), false)
    }

    /// As [`Ukfs::readlink`] (readlinkat).
    pub fn readlink<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<Vec<u8>> {
        self.fs.readlink_in(self.base(), pb(path))
    }

    /// As [`Ukfs::mkdir`] (mkdirat).
    pub fn mkdir<P: AsRef<[u8]> + ?Sized>(&self, path: &P, mode: u32) -> KResult<()> {
        self.fs.mkdir_in(self.base(), pb(path), mode)
    }

    /// As [`Ukfs::rmdir`] (unlinkat with AT_REMOVEDIR).
    pub fn rmdir<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<()> {
        self.fs.rmdir_in(self.base(), pb(path))
    }

    /// As [`Ukfs::unlink`] (unlinkat).
    pub fn unlink<P: AsRef<[u8]> + ?Sized>(&self, path: &P) -> KResult<()> {
        self.fs.unlink_in(self.base(), pb(path))
    }

    /// As [`Ukfs::mknod`] (mknodat).
    pub fn mknod<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        vtype: VType,
        mode: u32,
        rdev: u64,
    ) -> KResult<()> {
        self.fs.mknod_in(self.base(), pb(path), vtype, mode, rdev)
    }

    /// As [`Ukfs::symlink`] (symlinkat); `target` is stored as given.
    pub fn symlink<P: AsRef<[u8]> + ?Sized, Q: AsRef<[u8]> + ?Sized>(
        &self,
        target: &P,
        linkpath: &Q,
    ) -> KResult<()> {
        self.fs.symlink_in(self.base(), pb(target), pb(linkpath))
    }

    /// As [`Ukfs::link`] (linkat), both paths relative to this directory.
    pub fn link<P: AsRef<[u8]> + ?Sized, Q: AsRef<[u8]> + ?Sized>(
        &self,
        existing: &P,
        new: &Q,
    ) -> KResult<()> {
        self.fs.link_in(self.base(), pb(existing), pb(new))
    }

    /// As [`Ukfs::chmod`] (fchmodat).
    pub fn chmod<P: AsRef<[u8]> + ?Sized>(&self, path: &P, mode: u32) -> KResult<()> {
        self.fs.setattr_in(self.base(), pb(path), true, mode_attr(mode))
    }

    /// As [`Ukfs::lchown`] (fchownat with AT_SYMLINK_NOFOLLOW).
    pub fn lchown<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> KResult<()> {
        self.fs.setattr_in(self.base(), pb(path), false, owner_attr(uid, gid))
    }

    /// As [`Ukfs::utimes`] (utimensat).
    pub fn utimes<P: AsRef<[u8]> + ?Sized>(
        &self,
        path: &P,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
    ) -> KResult<()> {
        self.fs.setattr_in(self.base(), pb(path), true, times_attr(atime, mtime))
    }
}
