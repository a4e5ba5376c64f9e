//! fs-utils: POSIX-like commands working on a file system image through
//! [`ukfs`], with no mount and no kernel support for the format (NetBSD's
//! fs-utils).
//!
//! Every command is `fsu_X [-o OPTIONS] [-t TYPE] IMAGE [ARGS as the POSIX
//! command takes them]`; options may come before or after the image. The
//! file system type is detected from the image unless given (`fsu_ls`
//! spells it `--type`, its `-t` being ls's sort by time). Paths inside the
//! image are taken from its root (`dir/f` and `/dir/f` are the same file).
//!
//! Commands that only read (`fsu_ls`, `fsu_cat`, `fsu_ecp` copying out)
//! mount read-only whatever `-o` says, so they never modify the image.
//!
//! Exit status: 0 on success, 1 when an operand failed (the message is
//! `prog: path: strerror`), 2 for a bad command line (with the usage);
//! an image no driver recognises, or one that does not mount, is reported
//! naming the image, with status 1.

pub mod cat;
pub mod ecp;
pub mod ls;
pub mod mkdir;
pub mod prefetch;
pub mod rm;
pub mod write;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser};
use rumpkern::{Errno, MountArgs};
use ukfs::Ukfs;

/// The options every command takes: `-o` list(s), `-t` type, the image.
#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// Mount options (comma-separated, repeatable): ro, force, and the
    /// driver's own (e.g. cache=SIZE for ext2).
    #[arg(short = 'o', value_name = "OPTIONS", action = ArgAction::Append)]
    pub options: Vec<String>,
    /// File system type (ext2fs, msdos, ...; default: detected from the image).
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub fstype: Option<String>,
    /// The image file or block device.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

/// As [`ImageArgs`], with the type only as `--type` (fsu_ls uses `-t`).
#[derive(Args, Debug, Clone)]
pub struct ImageArgsLong {
    /// Mount options (comma-separated, repeatable): ro, force, and the
    /// driver's own (e.g. cache=SIZE for ext2).
    #[arg(short = 'o', value_name = "OPTIONS", action = ArgAction::Append)]
    pub options: Vec<String>,
    /// File system type (ext2fs, msdos, ...; default: detected from the image).
    #[arg(long = "type", value_name = "TYPE")]
    pub fstype: Option<String>,
    /// The image file or block device.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

impl From<ImageArgsLong> for ImageArgs {
    fn from(a: ImageArgsLong) -> ImageArgs {
        ImageArgs {
            options: a.options,
            fstype: a.fstype,
            image: a.image,
        }
    }
}

/// How a command uses the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Only reads: mounted read-only whatever `-o` says.
    ReadOnly,
    /// Modifies the image (`-o ro` is honoured and then makes changes fail
    /// with EROFS).
    ReadWrite,
}

/// Parse `argv` for command `prog` (clap: bundled short flags, options
/// anywhere). A bad command line prints the message and the usage and
/// exits 2; `--help` prints the help and exits 0.
pub fn parse<T, I, A>(prog: &'static str, argv: I) -> (T, clap::ArgMatches)
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let cmd = T::command().name(prog).bin_name(prog);
    let m = cmd.try_get_matches_from(argv).unwrap_or_else(|e| e.exit());
    let t = T::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    (t, m)
}

/// Logging to stderr as `prog: message` (the drivers explain refused
/// mounts there); `RUST_LOG` overrides the default level (warn).
pub fn init_logging(prog: &'static str) {
    let mut b = env_logger::Builder::new();
    b.format(move |buf, rec| writeln!(buf, "{prog}: {}", rec.args()));
    match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => {
            b.parse_filters(&f);
        }
        _ => {
            b.parse_filters("warn");
        }
    }
    let _ = b.try_init();
}

/// Restore the default SIGPIPE action, so `fsu_cat image f | head` ends
/// quietly as cat does (only for commands that never write the image).
pub fn default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Print `prog: what: strerror(e)` on stderr (`what` is raw bytes: a path).
pub fn warn(prog: &str, what: &[u8], e: Errno) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(prog.as_bytes());
    let _ = err.write_all(b": ");
    let _ = err.write_all(what);
    let _ = writeln!(err, ": {}", e.message());
}

/// Print `prog: message` on stderr.
pub fn warnx(prog: &str, msg: &str) {
    eprintln!("{prog}: {msg}");
}

/// An `std::io::Error` as the kernel errno (EIO when it carries none).
pub fn io_errno(e: &io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

/// The host's umask (read without changing it for longer than the call).
pub fn host_umask() -> u32 {
    // SAFETY: umask has no preconditions; the old value is restored at once.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

/// Mount the image named in `a`, the type detected or forced.
/// `Access::ReadOnly` forces `ro`. Errors (already worded, naming the
/// image): cannot open, no driver recognises it, unknown type, the mount
/// refused.
pub fn mount(prog: &str, a: &ImageArgs, access: Access) -> Result<Ukfs, String> {
    crate::drivers::register_all();
    let mut args = MountArgs::default();
    for o in &a.options {
        args.add(o);
    }
    if access == Access::ReadOnly {
        args.rdonly = true;
    }
    let shown = a.image.display().to_string();
    let Some(image) = a.image.to_str() else {
        return Err(format!("{prog}: {shown}: image path is not valid UTF-8"));
    };
    let fstype: &'static str = match &a.fstype {
        Some(t) => match rumpkern::vfs::lookup_type(t) {
            Some(t) => t.name(),
            None => {
                return Err(format!(
                    "{prog}: unknown file system type {t:?} (known: {})",
                    rumpkern::vfs::type_names().join(", ")
                ))
            }
        },
        None => {
            let opts = rumpuser::OpenOpts {
                read_only: true,
                ..Default::default()
            };
            let dev = rumpuser::open_device(image, &opts)
                .map_err(|e| format!("{prog}: {shown}: {}", Errno::from(e).message()))?;
            match rumpkern::vfs::probe(&*dev) {
                Some(t) => t.name(),
                None => {
                    return Err(format!(
                    "{prog}: {shown}: no file system recognised in the image (known types: {}); \
                         give one with -t/--type",
                    rumpkern::vfs::type_names().join(", ")
                ))
                }
            }
        }
    };
    Ukfs::mount(fstype, Some(a.image.as_path()), &args).map_err(|e| {
        format!(
            "{prog}: {shown}: cannot mount as {fstype}{}: {}",
            if args.rdonly { " (read-only)" } else { "" },
            e.message()
        )
    })
}

/// Unmount, reporting a failure (data not written back) as `prog: image:
/// ...`. Returns the exit status to use given the command's own `status`.
pub fn finish(prog: &str, a: &ImageArgs, fs: Ukfs, status: i32) -> i32 {
    match fs.unmount() {
        Ok(()) => status,
        Err(e) => {
            warn(prog, a.image.as_os_str().as_encoded_bytes(), e);
            1
        }
    }
}

/// Join an image directory path and a name (`/` + `a` = `/a`, `d` + `a`
/// = `d/a`).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !p.is_empty() && !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The last component of a path, ignoring trailing slashes (`a/b/` → `b`).
pub fn basename(p: &[u8]) -> &[u8] {
    let mut end = p.len();
    while end > 1 && p[end - 1] == b'/' {
        end -= 1;
    }
    let p = &p[..end];
    match p.iter().rposition(|&c| c == b'/') {
        Some(i) if p.len() > 1 => &p[i + 1..],
        _ => p,
    }
}

/// Common main: logging, then `body`, then exit with its status.
pub fn main_with(prog: &'static str, body: impl FnOnce() -> i32) -> ! {
    init_logging(prog);
    let st = body();
    let _ = io::stdout().flush();
    std::process::exit(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_basename() {
        assert_eq!(join(b"/", b"a"), b"/a");
        assert_eq!(join(b"d", b"a"), b"d/a");
        assert_eq!(join(b"d/", b"a"), b"d/a");
        assert_eq!(basename(b"a/b/"), b"b");
        assert_eq!(basename(b"/"), b"/");
        assert_eq!(basename(b"x"), b"x");
        assert_eq!(basename(b"/x"), b"x");
    }
}
