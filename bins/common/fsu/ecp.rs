//! `fsu_ecp`: copy files between a file system image and the host.
//!
//! ```text
//! fsu_ecp [-o OPTS] [-t TYPE] IMAGE [-R] [-p] [-L] [-v] IMAGE_SRC... HOST_DST    (out)
//! fsu_ecp [-o OPTS] [-t TYPE] IMAGE -i [-R] [-p] [-L] [-v] HOST_SRC... IMAGE_DST (in)
//! ```
//!
//! Out of the image is the default (the image is then mounted read-only);
//! `-i` (`--in`) copies into it. The destination follows cp(1): an
//! existing directory receives the sources under their own names;
//! otherwise it is the new name (one source only). Directories need `-R`;
//! symlinks are copied as symlinks (`-L` copies what they point to);
//! hard links within one copy stay hard links where the destination can
//! link; fifos and device nodes are recreated (devices need root on the
//! host). `-p` keeps modes (setuid/setgid/sticky included), access and
//! modification times, and owners (on the host only as root); without it
//! new files get the source's permission bits less the umask and belong
//! to the caller, as with cp.
//!
//! NetBSD's fsu_ecp spelled the direction `-g` (get) and `-p` (put); here
//! `-p` is cp's "preserve", and the direction is `-i` or the default.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};

use clap::Parser;
use rumpkern::types::{oflags, SetTime, Timespec, VType};
use rumpkern::{Errno, KResult};
use ukfs::{Dir, Ukfs};

use super::{basename, io_errno, join, warn, warnx, Access, ImageArgs};

const PROG: &str = "fsu_ecp";

/// Command line of fsu_ecp.
#[derive(Parser, Debug)]
#[command(
    about = "Copy files between a file system image and the host",
    override_usage = "fsu_ecp [-o OPTS] [-t TYPE] IMAGE [-R] [-p] [-L] [-v] IMAGE_SRC... HOST_DST\n       \
fsu_ecp [-o OPTS] [-t TYPE] IMAGE -i [-R] [-p] [-L] [-v] HOST_SRC... IMAGE_DST",
    after_help = "Without -i, copies out of the image to the host (the image is mounted read-only); \
with -i, copies host files into the image. Image paths are from the image's root. \
As with cp: an existing destination directory receives the sources under their own names; \
otherwise the destination is the new name (one source only). Symlinks are copied as symlinks \
unless -L. -p keeps modes, times and owners (host owners only when run as root)."
)]
pub struct Cli {
    #[command(flatten)]
    pub img: ImageArgs,
    /// Copy into the image (host sources, image destination).
    #[arg(short = 'i', long = "in", alias = "put")]
    pub into: bool,
    /// Copy directories recursively.
    #[arg(short = 'R', short_alias = 'r', long = "recursive")]
    pub recursive: bool,
    /// Preserve mode, owner, access and modification times.
    #[arg(short = 'p', long = "preserve")]
    pub preserve: bool,
    /// Follow symlinks in the sources (copy what they point to).
    #[arg(short = 'L', long = "dereference")]
    pub follow: bool,
    /// Print each file copied.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Sources, then the destination.
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    pub paths: Vec<std::path::PathBuf>,
}

/// What the copy needs to know about a file, on either side.
#[derive(Clone, Debug)]
struct Meta {
    vtype: VType,
    /// Permission bits with setuid/setgid/sticky.
    mode: u32,
    uid: u32,
    gid: u32,
    ino: u64,
    dev: u64,
    nlink: u64,
    atime: Timespec,
    mtime: Timespec,
    rdev: u64,
    size: u64,
}

/// An open source file.
trait Src {
    fn read(&mut self, buf: &mut [u8]) -> KResult<usize>;
}

/// An open destination file.
trait Dst {
    fn write_all(&mut self, buf: &[u8]) -> KResult<()>;
}

/// One side of the copy: the host or the image. Paths are bytes.
trait Side {
    fn lstat(&self, p: &[u8]) -> KResult<Meta>;
    fn stat(&self, p: &[u8]) -> KResult<Meta>;
    /// Names in directory `p`, without `.` and `..`, sorted.
    fn list(&self, p: &[u8]) -> KResult<Vec<Vec<u8>>>;
    fn readlink(&self, p: &[u8]) -> KResult<Vec<u8>>;
    fn open_read<'a>(&'a self, p: &[u8]) -> KResult<Box<dyn Src + 'a>>;
    /// Create or truncate the regular file `p` for writing.
    fn open_write<'a>(&'a self, p: &[u8], mode: u32) -> KResult<Box<dyn Dst + 'a>>;
    fn mkdir(&self, p: &[u8], mode: u32) -> KResult<()>;
    fn symlink(&self, target: &[u8], p: &[u8]) -> KResult<()>;
    fn link(&self, existing: &[u8], new: &[u8]) -> KResult<()>;
    fn mknod(&self, p: &[u8], vtype: VType, mode: u32, rdev: u64) -> KResult<()>;
    /// Mode of a non-symlink.
    fn chmod(&self, p: &[u8], mode: u32) -> KResult<()>;
    fn lchown(&self, p: &[u8], uid: u32, gid: u32) -> KResult<()>;
    /// Access and modification times; `link`: `p` is a symlink (set on
    /// the link itself where the side can, else left alone).
    fn set_times(&self, p: &[u8], atime: Timespec, mtime: Timespec, link: bool) -> KResult<()>;
    fn unlink(&self, p: &[u8]) -> KResult<()>;
    /// The owner new files get when ownership is not preserved (`None`:
    /// whoever the side makes them belong to already).
    fn default_owner(&self) -> Option<(u32, u32)>;
}

// ----- the host -----

struct Host {
    /// Running as root: owners can be preserved.
    root: bool,
}

fn os(p: &[u8]) -> &OsStr {
    OsStr::from_bytes(p)
}

fn ioe(e: std::io::Error) -> Errno {
    io_errno(&e)
}

fn host_meta(m: &fs::Metadata) -> KResult<Meta> {
    let vtype = VType::from_mode(m.mode()).ok_or(Errno::EINVAL)?;
    Ok(Meta {
        vtype,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        ino: m.ino(),
        dev: m.dev(),
        nlink: m.nlink(),
        atime: Timespec::new(m.atime(), m.atime_nsec().clamp(0, 999_999_999) as u32),
        mtime: Timespec::new(m.mtime(), m.mtime_nsec().clamp(0, 999_999_999) as u32),
        rdev: m.rdev(),
        size: m.len(),
    })
}

fn cstr(p: &[u8]) -> KResult<CString> {
    CString::new(p).map_err(|_| Errno::EINVAL)
}

struct HostSrc(fs::File);
impl Src for HostSrc {
    fn read(&mut self, buf: &mut [u8]) -> KResult<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r.map_err(ioe),
            }
        }
    }
}

struct HostDst(fs::File);
impl Dst for HostDst {
    fn write_all(&mut self, buf: &[u8]) -> KResult<()> {
        self.0.write_all(buf).map_err(ioe)
    }
}

impl Side for Host {
    fn lstat(&self, p: &[u8]) -> KResult<Meta> {
        host_meta(&fs::symlink_metadata(os(p)).map_err(ioe)?)
    }
    fn stat(&self, p: &[u8]) -> KResult<Meta> {
        host_meta(&fs::metadata(os(p)).map_err(ioe)?)
    }
    fn list(&self, p: &[u8]) -> KResult<Vec<Vec<u8>>> {
        let mut v = Vec::new();
        for e in fs::read_dir(os(p)).map_err(ioe)? {
            v.push(e.map_err(ioe)?.file_name().as_bytes().to_vec());
        }
        v.sort();
        Ok(v)
    }
    fn readlink(&self, p: &[u8]) -> KResult<Vec<u8>> {
        Ok(fs::read_link(os(p))
            .map_err(ioe)?
            .as_os_str()
            .as_bytes()
            .to_vec())
    }
    fn open_read<'a>(&'a self, p: &[u8]) -> KResult<Box<dyn Src + 'a>> {
        Ok(Box::new(HostSrc(fs::File::open(os(p)).map_err(ioe)?)))
    }
    fn open_write<'a>(&'a self, p: &[u8], mode: u32) -> KResult<Box<dyn Dst + 'a>> {
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(os(p))
            .map_err(ioe)?;
        Ok(Box::new(HostDst(f)))
    }
    fn mkdir(&self, p: &[u8], mode: u32) -> KResult<()> {
        fs::DirBuilder::new().mode(mode).create(os(p)).map_err(ioe)
    }
    fn symlink(&self, target: &[u8], p: &[u8]) -> KResult<()> {
        std::os::unix::fs::symlink(os(target), os(p)).map_err(ioe)
    }
    fn link(&self, existing: &[u8], new: &[u8]) -> KResult<()> {
        fs::hard_link(os(existing), os(new)).map_err(ioe)
    }
    fn mknod(&self, p: &[u8], vtype: VType, mode: u32, rdev: u64) -> KResult<()> {
        let c = cstr(p)?;
        // SAFETY: c is a valid NUL-terminated path.
        let r = unsafe {
            libc::mknod(
                c.as_ptr(),
                (vtype.ifmt() | mode) as libc::mode_t,
                rdev as libc::dev_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(ioe(std::io::Error::last_os_error()))
        }
    }
    fn chmod(&self, p: &[u8], mode: u32) -> KResult<()> {
        fs::set_permissions(os(p), fs::Permissions::from_mode(mode)).map_err(ioe)
    }
    fn lchown(&self, p: &[u8], uid: u32, gid: u32) -> KResult<()> {
        if !self.root {
            return Ok(());
        }
        std::os::unix::fs::lchown(os(p), Some(uid), Some(gid)).map_err(ioe)
    }
    fn set_times(&self, p: &[u8], atime: Timespec, mtime: Timespec, _link: bool) -> KResult<()> {
        let c = cstr(p)?;
        let ts = [
            libc::timespec {
                tv_sec: atime.sec as libc::time_t,
                tv_nsec: atime.nsec as libc::c_long,
            },
            libc::timespec {
                tv_sec: mtime.sec as libc::time_t,
                tv_nsec: mtime.nsec as libc::c_long,
            },
        ];
        // SAFETY: valid path and a two-element timespec array.
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(ioe(std::io::Error::last_os_error()))
        }
    }
    fn unlink(&self, p: &[u8]) -> KResult<()> {
        fs::remove_file(os(p)).map_err(ioe)
    }
    fn default_owner(&self) -> Option<(u32, u32)> {
        None
    }
}

// ----- the image -----

struct Image<'f> {
    fs: &'f Ukfs,
    /// The caller's ids when not root (new files are theirs, as with cp).
    owner: Option<(u32, u32)>,
    /// The parent directory of the last path used, open: (its path, the
    /// handle). A copy names the entries of one directory one after the
    /// other, so most calls are then one lookup in it instead of a walk
    /// from the root. Dropped by every call that could change how a path
    /// resolves (removing a name, changing permissions).
    parent: RefCell<Option<(Vec<u8>, Dir<'f>)>>,
}

impl<'f> Image<'f> {
    fn new(fs: &'f Ukfs, owner: Option<(u32, u32)>) -> Image<'f> {
        Image {
            fs,
            owner,
            parent: RefCell::new(None),
        }
    }

    /// `p` as (its open parent directory, its last component), when `p`
    /// is `PARENT/NAME` with a plain NAME (no trailing slash, not `.` or
    /// `..`) and PARENT opens as a directory; `None` otherwise, and the
    /// caller then uses the path call, which gives the same result (and
    /// reports any error in PARENT the same way).
    fn split<'p>(&self, p: &'p [u8]) -> Option<(Dir<'f>, &'p [u8])> {
        let i = p.iter().rposition(|&c| c == b'/')?;
        let name = &p[i + 1..];
        if name.is_empty() || name == b"." || name == b".." {
            return None;
        }
        let parent = if i == 0 { &b"/"[..] } else { &p[..i] };
        let mut cache = self.parent.borrow_mut();
        if let Some((cp, d)) = cache.as_ref() {
            if cp.as_slice() == parent {
                return Some((d.clone(), name));
            }
        }
        let d = self.fs.open_dir(parent).ok()?;
        *cache = Some((parent.to_vec(), d.clone()));
        Some((d, name))
    }

    /// Forget the open parent (see [`Image::parent`]).
    fn forget(&self) {
        *self.parent.borrow_mut() = None;
    }
}

fn image_meta(a: &rumpkern::Vattr) -> Meta {
    Meta {
        vtype: a.vtype,
        mode: a.mode & 0o7777,
        uid: a.uid,
        gid: a.gid,
        ino: a.ino,
        dev: a.fsid,
        nlink: a.nlink as u64,
        atime: a.atime,
        mtime: a.mtime,
        rdev: a.rdev,
        size: a.size,
    }
}

struct ImageSrc<'a>(ukfs::File<'a>);
impl Src for ImageSrc<'_> {
    fn read(&mut self, buf: &mut [u8]) -> KResult<usize> {
        self.0.read(buf)
    }
}

struct ImageDst<'a>(ukfs::File<'a>);
impl Dst for ImageDst<'_> {
    fn write_all(&mut self, buf: &[u8]) -> KResult<()> {
        self.0.write_all(buf)
    }
}

impl Side for Image<'_> {
    fn lstat(&self, p: &[u8]) -> KResult<Meta> {
        let a = match self.split(p) {
            Some((d, n)) => d.lstat(n)?,
            None => self.fs.lstat(p)?,
        };
        Ok(image_meta(&a))
    }
    fn stat(&self, p: &[u8]) -> KResult<Meta> {
        let a = match self.split(p) {
            Some((d, n)) => d.stat(n)?,
            None => self.fs.stat(p)?,
        };
        Ok(image_meta(&a))
    }
    fn list(&self, p: &[u8]) -> KResult<Vec<Vec<u8>>> {
        let mut v: Vec<Vec<u8>> = self
            .fs
            .readdir(p)?
            .into_iter()
            .map(|d| d.name)
            .filter(|n| n != b"." && n != b"..")
            .collect();
        v.sort();
        Ok(v)
    }
    fn readlink(&self, p: &[u8]) -> KResult<Vec<u8>> {
        match self.split(p) {
            Some((d, n)) => d.readlink(n),
            None => self.fs.readlink(p),
        }
    }
    fn open_read<'a>(&'a self, p: &[u8]) -> KResult<Box<dyn Src + 'a>> {
        let f = match self.split(p) {
            Some((d, n)) => d.open(n, oflags::O_RDONLY, 0)?,
            None => self.fs.open(p, oflags::O_RDONLY, 0)?,
        };
        Ok(Box::new(ImageSrc(f)))
    }
    fn open_write<'a>(&'a self, p: &[u8], mode: u32) -> KResult<Box<dyn Dst + 'a>> {
        let flags = oflags::O_WRONLY | oflags::O_CREAT | oflags::O_TRUNC;
        let f = match self.split(p) {
            Some((d, n)) => d.open(n, flags, mode)?,
            None => self.fs.open(p, flags, mode)?,
        };
        Ok(Box::new(ImageDst(f)))
    }
    fn mkdir(&self, p: &[u8], mode: u32) -> KResult<()> {
        match self.split(p) {
            Some((d, n)) => d.mkdir(n, mode),
            None => self.fs.mkdir(p, mode),
        }
    }
    fn symlink(&self, target: &[u8], p: &[u8]) -> KResult<()> {
        self.forget();
        self.fs.symlink(target, p)
    }
    fn link(&self, existing: &[u8], new: &[u8]) -> KResult<()> {
        self.fs.link(existing, new)
    }
    fn mknod(&self, p: &[u8], vtype: VType, mode: u32, rdev: u64) -> KResult<()> {
        self.fs.mknod(p, vtype, mode, rdev)
    }
    fn chmod(&self, p: &[u8], mode: u32) -> KResult<()> {
        self.forget();
        self.fs.chmod(p, mode)
    }
    fn lchown(&self, p: &[u8], uid: u32, gid: u32) -> KResult<()> {
        self.forget();
        self.fs.lchown(p, Some(uid), Some(gid))
    }
    fn set_times(&self, p: &[u8], atime: Timespec, mtime: Timespec, link: bool) -> KResult<()> {
        if link {
            // ukfs's utimes follows symlinks; a link's own times are left.
            return Ok(());
        }
        let (at, mt) = (Some(SetTime::At(atime)), Some(SetTime::At(mtime)));
        match self.split(p) {
            Some((d, n)) => d.utimes(n, at, mt),
            None => self.fs.utimes(p, at, mt),
        }
    }
    fn unlink(&self, p: &[u8]) -> KResult<()> {
        self.forget();
        self.fs.unlink(p)
    }
    fn default_owner(&self) -> Option<(u32, u32)> {
        self.owner
    }
}

// ----- the copy -----

struct Copier<'s> {
    src: &'s dyn Side,
    dst: &'s dyn Side,
    recursive: bool,
    preserve: bool,
    follow: bool,
    verbose: bool,
    umask: u32,
    /// (dev, ino) of multiply-linked source files → their copy.
    links: HashMap<(u64, u64), Vec<u8>>,
    status: i32,
    buf: Vec<u8>,
    /// Reading the host sources ahead (copy in with -R).
    host_pf: Option<&'s super::prefetch::HostPrefetcher>,
}

/// An error on one side of the copy, with the path it concerns.
type Fail = (Vec<u8>, Errno);

/// chown errors that mean "this side keeps no such owners" and are not
/// worth a message (FAT, a non-root host).
fn ignorable_chown(e: Errno) -> bool {
    e == Errno::EPERM || e == Errno::EOPNOTSUPP || e == Errno::EINVAL
}

impl Copier<'_> {
    fn fail(&mut self, (p, e): Fail) {
        warn(PROG, &p, e);
        self.status = 1;
    }

    fn src_meta(&self, p: &[u8]) -> KResult<Meta> {
        if self.follow {
            self.src.stat(p)
        } else {
            self.src.lstat(p)
        }
    }

    /// Report a failure to carry an attribute over (the copy itself is
    /// there): `prog: path: cannot preserve WHAT: strerror`.
    fn fail_attr(&mut self, d: &[u8], what: &str, e: Errno) {
        let mut msg = d.to_vec();
        msg.extend_from_slice(format!(": cannot set {what}").as_bytes());
        warn(PROG, &msg, e);
        self.status = 1;
    }

    /// Times, owner and mode of the copy `d` of `m`, in cp's order (a
    /// failure is reported and the rest still tried). `created`: `d` is
    /// new (its mode then comes from the source even without -p) and was
    /// made with `created_mode`.
    fn attrs(&mut self, d: &[u8], m: &Meta, created: bool, created_mode: u32) {
        let link = m.vtype == VType::Lnk;
        if self.preserve {
            if let Err(e) = self.dst.set_times(d, m.atime, m.mtime, link) {
                self.fail_attr(d, "times", e);
            }
        }
        let owner = if self.preserve {
            Some((m.uid, m.gid))
        } else if created {
            self.dst.default_owner()
        } else {
            None
        };
        if let Some((u, g)) = owner {
            if let Err(e) = self.dst.lchown(d, u, g) {
                if !ignorable_chown(e) {
                    self.fail_attr(d, "owner", e);
                }
            }
        }
        if !link {
            let want = if self.preserve {
                Some(m.mode)
            } else if created {
                Some(m.mode & 0o777 & !self.umask)
            } else {
                None
            };
            if let Some(want) = want {
                if self.preserve || want != created_mode {
                    if let Err(e) = self.dst.chmod(d, want) {
                        self.fail_attr(d, "mode", e);
                    }
                }
            }
        }
    }

    /// Make room for a non-directory at `d`: remove what is there unless
    /// it is a regular file we may truncate (`keep_reg`).
    fn clear_dst(&self, d: &[u8], keep_reg: bool) -> Result<bool, Fail> {
        match self.dst.lstat(d) {
            Ok(x) if x.vtype == VType::Dir => Err((d.to_vec(), Errno::EISDIR)),
            Ok(x) if keep_reg && x.vtype == VType::Reg => Ok(false),
            Ok(_) => {
                self.dst.unlink(d).map_err(|e| (d.to_vec(), e))?;
                Ok(true)
            }
            Err(Errno::ENOENT) => Ok(true),
            Err(e) => Err((d.to_vec(), e)),
        }
    }

    fn copy_file(&mut self, s: &[u8], m: &Meta, d: &[u8]) -> Result<(), Fail> {
        let created = self.clear_dst(d, true)?;
        let mode = m.mode & 0o777 & !self.umask;
        {
            let mut r = self.src.open_read(s).map_err(|e| (s.to_vec(), e))?;
            let mut w = self.dst.open_write(d, mode).map_err(|e| (d.to_vec(), e))?;
            loop {
                let n = r.read(&mut self.buf).map_err(|e| (s.to_vec(), e))?;
                if n == 0 {
                    break;
                }
                w.write_all(&self.buf[..n]).map_err(|e| (d.to_vec(), e))?;
            }
        }
        self.attrs(d, m, created, mode);
        Ok(())
    }

    fn copy_node(&mut self, s: &[u8], m: &Meta, d: &[u8], ancestors: &mut HashSet<(u64, u64)>) {
        if self.verbose && m.vtype != VType::Dir {
            println!(
                "{} -> {}",
                String::from_utf8_lossy(s),
                String::from_utf8_lossy(d)
            );
        }
        let r = match m.vtype {
            VType::Dir => return self.copy_dir(s, m, d, ancestors),
            VType::Reg => {
                if let Some(pf) = self.host_pf {
                    pf.consumed(m.size);
                }
                let key = (m.dev, m.ino);
                if m.nlink > 1 {
                    if let Some(first) = self.links.get(&key).cloned() {
                        let linked = self
                            .clear_dst(d, false)
                            .and_then(|_| self.dst.link(&first, d).map_err(|e| (d.to_vec(), e)));
                        match linked {
                            Ok(()) => return,
                            // No hard links on this side (FAT): copy instead.
                            Err((_, e)) if e == Errno::EOPNOTSUPP || e == Errno::EPERM => {}
                            Err(f) => return self.fail(f),
                        }
                    }
                }
                let r = self.copy_file(s, m, d);
                if r.is_ok() && m.nlink > 1 {
                    self.links.entry(key).or_insert_with(|| d.to_vec());
                }
                r
            }
            VType::Lnk => self
                .src
                .readlink(s)
                .map_err(|e| (s.to_vec(), e))
                .and_then(|t| {
                    self.clear_dst(d, false)?;
                    self.dst.symlink(&t, d).map_err(|e| (d.to_vec(), e))?;
                    self.attrs(d, m, true, 0o777);
                    Ok(())
                }),
            VType::Chr | VType::Blk | VType::Fifo | VType::Sock => {
                let mode = m.mode & 0o777 & !self.umask;
                self.clear_dst(d, false)
                    .and_then(|_| {
                        self.dst
                            .mknod(d, m.vtype, mode, m.rdev)
                            .map_err(|e| (d.to_vec(), e))
                    })
                    .map(|()| self.attrs(d, m, true, mode))
            }
        };
        if let Err(f) = r {
            self.fail(f);
        }
    }

    fn copy_dir(&mut self, s: &[u8], m: &Meta, d: &[u8], ancestors: &mut HashSet<(u64, u64)>) {
        if !self.recursive {
            warnx(
                PROG,
                &format!(
                    "{}: is a directory (not copied; use -R)",
                    String::from_utf8_lossy(s)
                ),
            );
            self.status = 1;
            return;
        }
        let key = (m.dev, m.ino);
        if !ancestors.insert(key) {
            warnx(
                PROG,
                &format!(
                    "{}: directory cycle (not copied again)",
                    String::from_utf8_lossy(s)
                ),
            );
            self.status = 1;
            return;
        }
        // Made with u+rwx so the copy can fill it; the mode is set after.
        let made_mode = (m.mode & 0o777 & !self.umask) | 0o700;
        let created = match self.dst.lstat(d) {
            Ok(x) if x.vtype == VType::Dir => Ok(false),
            Ok(_) => Err((d.to_vec(), Errno::ENOTDIR)),
            Err(Errno::ENOENT) => self
                .dst
                .mkdir(d, made_mode)
                .map(|()| true)
                .map_err(|e| (d.to_vec(), e)),
            Err(e) => Err((d.to_vec(), e)),
        };
        let created = match created {
            Ok(c) => c,
            Err(f) => {
                ancestors.remove(&key);
                return self.fail(f);
            }
        };
        if self.verbose {
            println!(
                "{} -> {}",
                String::from_utf8_lossy(s),
                String::from_utf8_lossy(d)
            );
        }
        match self.src.list(s) {
            Ok(names) => {
                for n in names {
                    let cs = join(s, &n);
                    let cd = join(d, &n);
                    match self.src_meta(&cs) {
                        Ok(cm) => self.copy_node(&cs, &cm, &cd, ancestors),
                        Err(e) => self.fail((cs, e)),
                    }
                }
            }
            Err(e) => self.fail((s.to_vec(), e)),
        }
        ancestors.remove(&key);
        self.attrs(d, m, created, made_mode);
    }

    /// Copy the command-line sources to `dst` as cp does.
    fn run(&mut self, sources: &[&[u8]], dst: &[u8]) {
        let dst_is_dir = matches!(self.dst.stat(dst), Ok(m) if m.vtype == VType::Dir);
        if sources.len() > 1 && !dst_is_dir {
            let e = if self.dst.lstat(dst).is_ok() {
                Errno::ENOTDIR
            } else {
                Errno::ENOENT
            };
            warn(PROG, dst, e);
            self.status = 1;
            return;
        }
        for &s in sources {
            let m = match self.src_meta(s) {
                Ok(m) => m,
                Err(e) => {
                    self.fail((s.to_vec(), e));
                    continue;
                }
            };
            let d = if dst_is_dir {
                join(dst, basename(s))
            } else {
                dst.to_vec()
            };
            let mut anc = HashSet::new();
            self.copy_node(s, &m, &d, &mut anc);
        }
    }
}

/// Run fsu_ecp on `argv` (program name first); returns the exit status.
pub fn main<I, A>(argv: I) -> i32
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    let (cli, _) = super::parse::<Cli, _, _>(PROG, argv);
    let access = if cli.into {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    let fs = match super::mount(PROG, &cli.img, access) {
        Ok(fs) => fs,
        Err(msg) => {
            eprintln!("{msg}");
            return 1;
        }
    };
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let host = Host { root: euid == 0 };
    let image = Image::new(&fs, (euid != 0).then_some((euid, egid)));
    let (src, dst): (&dyn Side, &dyn Side) = if cli.into {
        (&host, &image)
    } else {
        (&image, &host)
    };
    let paths: Vec<&[u8]> = cli
        .paths
        .iter()
        .map(|p| p.as_os_str().as_encoded_bytes())
        .collect();
    let Some((dst_path, sources)) = paths.split_last() else {
        return 2; // clap requires two paths
    };
    let host_pf = super::prefetch::HostPrefetcher::new();
    let mut c = Copier {
        src,
        dst,
        recursive: cli.recursive,
        preserve: cli.preserve,
        follow: cli.follow,
        verbose: cli.verbose,
        umask: super::host_umask(),
        links: HashMap::new(),
        status: 0,
        buf: vec![0u8; 1 << 20],
        host_pf: None,
    };
    if cli.into && cli.recursive {
        // Read the host tree ahead of the copy (see prefetch.rs).
        c.host_pf = Some(&host_pf);
        std::thread::scope(|sc| {
            sc.spawn(|| host_pf.run(sources));
            c.run(sources, dst_path);
            host_pf.stop();
        });
    } else {
        c.run(sources, dst_path);
    }
    let status = c.status;
    drop(c);
    drop(image); // its open directory, before the unmount
    super::finish(PROG, &cli.img, fs, status)
}
