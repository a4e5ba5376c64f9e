//! `rump_X [-o options] [-f] [-d] special mountpoint`: the whole file server
//! command, shared by every driver. A main is one call:
//! `rumpfs::server::server_main("rump_tmpfs", &fs_tmpfs::TMPFS)`.
//!
//! Order of work (the fork must come before any thread):
//! 1. parse the command line (bad usage: message + usage, exit 2) and the
//!    `-o` lists ([`crate::options`]);
//! 2. check what can be checked from here, with clear messages (exit 1):
//!    the mount point exists, is a directory and is not already a mount
//!    point; `/dev/fuse` opens; the device opens (drivers that need one);
//! 3. unless `-f`/`-d`: fork ([`crate::daemon::background`]);
//! 4. block SIGTERM/SIGINT/SIGHUP, mount the driver, mount FUSE; report
//!    "live" (or the error) to the waiting parent;
//! 5. serve until unmounted (`umount`, `fusermount3 -u`, or a stop signal,
//!    which unmounts); then the rumpkern mount is synced and unmounted and
//!    the server exits 0.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use rumpkern::{Errno, FsType, Mount};

use crate::daemon::{self, Status};
use crate::options::{split_options, ServerOptions};

/// Command line of a file server.
#[derive(Parser, Debug)]
#[command(
    about = "Serve a file system through FUSE with a rumpfs driver",
    after_help = "Options for -o (comma-separated, repeatable): ro, rw, allow_other, noallow_other, \
attr_timeout=SECONDS, entry_timeout=SECONDS, threads=N, fsname=NAME, subtype=NAME, force; \
anything else is the file system's own option.\n\
The server goes to the background once the mount is live; unmount with umount, \
fusermount3 -u, or SIGTERM."
)]
pub struct ServerCli {
    /// Mount options (comma-separated list; may be given several times).
    #[arg(short = 'o', value_name = "OPTIONS", action = ArgAction::Append)]
    pub options: Vec<String>,
    /// Stay in the foreground.
    #[arg(short = 'f')]
    pub foreground: bool,
    /// Trace every FUSE request (implies -f).
    #[arg(short = 'd')]
    pub debug: bool,
    /// Device or image file (ignored by memory file systems such as tmpfs).
    pub special: PathBuf,
    /// Directory to mount on.
    pub mountpoint: PathBuf,
}

/// Parse `argv` for program `prog`; prints usage and exits 2 on error.
pub fn parse_cli<I, T>(prog: &'static str, argv: I) -> ServerCli
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cmd = ServerCli::command().name(prog).bin_name(prog);
    let m = cmd.try_get_matches_from(argv).unwrap_or_else(|e| e.exit());
    ServerCli::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
}

fn init_logging(debug: bool) {
    let mut b = env_logger::Builder::new();
    b.format_timestamp_millis();
    match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => {
            b.parse_filters(&f);
        }
        _ => {
            b.parse_filters(if debug {
                "info,p2k=debug,fuser=warn"
            } else {
                "warn"
            });
        }
    }
    let _ = b.try_init();
}

/// Is `path` (canonical) a mount point according to /proc/self/mountinfo?
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_encoded_bytes();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want)
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Check the mount point; returns its canonical path or the message.
pub fn check_mountpoint(prog: &str, mp: &Path) -> Result<PathBuf, String> {
    match std::fs::metadata(mp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{prog}: {}: mount point does not exist",
                mp.display()
            ))
        }
        Err(e) => return Err(format!("{prog}: {}: {e}", mp.display())),
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "{prog}: {}: mount point is not a directory",
                mp.display()
            ))
        }
        Ok(_) => {}
    }
    let canon = mp
        .canonicalize()
        .map_err(|e| format!("{prog}: {}: {e}", mp.display()))?;
    if is_mount_point(&canon) {
        return Err(format!(
            "{prog}: {}: mount point is busy (something is already mounted there)",
            mp.display()
        ));
    }
    Ok(canon)
}

/// Check that /dev/fuse exists and can be opened.
pub fn check_dev_fuse(prog: &str) -> Result<(), String> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(format!("{prog}: /dev/fuse does not exist: the FUSE kernel module is not loaded (modprobe fuse)"))
        }
        Err(e) => Err(format!("{prog}: cannot open /dev/fuse: {e}")),
    }
}

fn errno_text(e: Errno) -> String {
    e.message().to_string()
}

/// Mount the driver (in the process that will serve).
fn mount_driver(
    prog: &str,
    fstype: &'static dyn FsType,
    cli: &ServerCli,
    so: &ServerOptions,
) -> Result<Arc<Mount>, String> {
    let dev = if fstype.needs_device() {
        let path = cli.special.to_string_lossy().into_owned();
        let opts = rumpuser::OpenOpts {
            read_only: so.args.rdonly,
            ..Default::default()
        };
        match rumpuser::open_device(&path, &opts) {
            Ok(d) => Some(d),
            Err(e) => return Err(format!("{prog}: {path}: {}", errno_text(Errno::from(e)))),
        }
    } else {
        None
    };
    fstype.mount(dev, &so.args).map_err(|e| {
        if e == Errno::EINVAL {
            let opts: Vec<String> = so
                .args
                .options
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect();
            format!(
                "{prog}: {}: invalid {} mount options ({}): {}",
                cli.special.display(),
                fstype.name(),
                if opts.is_empty() {
                    "none".to_string()
                } else {
                    opts.join(",")
                },
                errno_text(e)
            )
        } else {
            format!(
                "{prog}: {}: cannot mount {}: {}",
                cli.special.display(),
                fstype.name(),
                errno_text(e)
            )
        }
    })
}

/// Run a file server for `fstype` with the process's command line.
pub fn server_main(prog: &'static str, fstype: &'static dyn FsType) -> ! {
    let cli = parse_cli(prog, std::env::args_os());
    std::process::exit(run_server(prog, fstype, cli))
}

/// The body of [`server_main`]; returns the exit status.
pub fn run_server(prog: &'static str, fstype: &'static dyn FsType, cli: ServerCli) -> i32 {
    let debug = cli.debug;
    let foreground = cli.foreground || debug;
    init_logging(debug);
    let mut so = match split_options(&cli.options) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{prog}: bad option {msg}");
            eprintln!(
                "{}",
                ServerCli::command()
                    .name(prog)
                    .bin_name(prog)
                    .render_usage()
            );
            return 2;
        }
    };
    so.p2k.debug = debug;
    let mountpoint = match check_mountpoint(prog, &cli.mountpoint)
        .and_then(|mp| check_dev_fuse(prog).map(|_| mp))
    {
        Ok(mp) => mp,
        Err(msg) => {
            eprintln!("{msg}");
            return 1;
        }
    };

    let mut status = if foreground {
        Status::foreground()
    } else {
        match daemon::background(prog) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{prog}: cannot go to the background: {e}");
                return 1;
            }
        }
    };
    if let Err(e) = daemon::block_stop_signals() {
        status.fail(&format!("{prog}: cannot block signals: {e}"));
        return 1;
    }

    let mount = match mount_driver(prog, fstype, &cli, &so) {
        Ok(m) => m,
        Err(msg) => {
            status.fail(&msg);
            return 1;
        }
    };
    let server = match p2k::P2kServer::mount(mount.clone(), &mountpoint, &so.p2k) {
        Ok(s) => s,
        Err(e) => {
            let _ = mount.unmount(true);
            status.fail(&format!(
                "{prog}: {}: cannot mount: {e}",
                cli.mountpoint.display()
            ));
            return 1;
        }
    };
    let unmounter = server.unmounter();
    if let Err(e) = daemon::signal_thread(move |sig| {
        log::info!(
            "signal {sig}: unmounting {}",
            unmounter.mountpoint().display()
        );
        if let Err(e) = unmounter.unmount() {
            log::error!(
                "unmount of {} failed: {e}",
                unmounter.mountpoint().display()
            );
        }
    }) {
        let _ = server.unmounter().unmount();
        let _ = server.run();
        status.fail(&format!("{prog}: cannot start the signal thread: {e}"));
        return 1;
    }
    status.ready();
    match server.run() {
        Ok(()) => {
            log::info!("{} unmounted cleanly", mountpoint.display());
            0
        }
        Err(e) => {
            log::error!("{prog}: {}: {e}", mountpoint.display());
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/tmp/a\\040b"), b"/tmp/a b".to_vec());
        assert_eq!(unescape_mountinfo("/x\\\\"), b"/x\\\\".to_vec());
        assert!(is_mount_point(Path::new("/proc")));
        assert!(!is_mount_point(Path::new("/proc/self")));
    }

    #[test]
    fn cli() {
        let c = parse_cli(
            "rump_tmpfs",
            [
                "rump_tmpfs",
                "-o",
                "size=1m",
                "-o",
                "ro",
                "-f",
                "tmpfs",
                "/mnt",
            ],
        );
        assert_eq!(c.options, vec!["size=1m", "ro"]);
        assert!(c.foreground && !c.debug);
        assert_eq!(c.mountpoint, PathBuf::from("/mnt"));
    }
}
