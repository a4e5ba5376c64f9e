//! `fsu_rm [-o OPTIONS] [-t TYPE] IMAGE [-r] [-f] PATH...`: remove files
//! (and with `-r` directory trees) from the image, as rm(1).

use clap::Parser;
use rumpkern::{Errno, VType};
use ukfs::Ukfs;

use super::{basename, join, warn, warnx, Access, ImageArgs};

const PROG: &str = "fsu_rm";

/// Command line of fsu_rm.
#[derive(Parser, Debug)]
#[command(
    about = "Remove files or directories from a file system image",
    after_help = "The file system type is detected from the image unless -t is given. \
PATHs are inside the image, from its root. A directory needs -r (or -d when empty)."
)]
pub struct Cli {
    #[command(flatten)]
    pub img: ImageArgs,
    /// Remove directories and their contents recursively.
    #[arg(short = 'r', short_alias = 'R', long = "recursive")]
    pub recursive: bool,
    /// Ignore missing files; never fail for them.
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Remove empty directories.
    #[arg(short = 'd', long = "dir")]
    pub dir: bool,
    /// Paths to remove.
    #[arg(value_name = "PATH", required_unless_present = "force")]
    pub paths: Vec<std::path::PathBuf>,
}

struct Rm<'a> {
    fs: &'a Ukfs,
    force: bool,
    status: i32,
}

impl Rm<'_> {
    fn fail(&mut self, p: &[u8], e: Errno) {
        if self.force && e == Errno::ENOENT {
            return;
        }
        warn(PROG, p, e);
        self.status = 1;
    }

    /// Remove the tree at `p` (a directory, lstat'ed). Returns whether all
    /// of it went.
    fn remove_tree(&mut self, p: &[u8], depth: usize) -> bool {
        if depth > 4096 {
            self.fail(p, Errno::ELOOP);
            return false;
        }
        let ents = match self.fs.readdir(p) {
            Ok(v) => v,
            Err(e) => {
                self.fail(p, e);
                return false;
            }
        };
        let mut ok = true;
        for d in ents {
            if d.name == b"." || d.name == b".." {
                continue;
            }
            let c = join(p, &d.name);
            ok &= if d.vtype == VType::Dir {
                self.remove_tree(&c, depth + 1)
            } else {
                match self.fs.unlink(&c) {
                    Ok(()) => true,
                    Err(Errno::EISDIR) => self.remove_tree(&c, depth + 1),
                    Err(e) => {
                        self.fail(&c, e);
                        false
                    }
                }
            };
        }
        if !ok {
            return false;
        }
        match self.fs.rmdir(p) {
            Ok(()) => true,
            Err(e) => {
                self.fail(p, e);
                false
            }
        }
    }

    fn remove(&mut self, p: &[u8], recursive: bool, dir: bool) {
        let base = basename(p);
        if base == b"." || base == b".." || p.iter().all(|&c| c == b'/') {
            warnx(
                PROG,
                &format!("refusing to remove '{}'", String::from_utf8_lossy(p)),
            );
            self.status = 1;
            return;
        }
        let a = match self.fs.lstat(p) {
            Ok(a) => a,
            Err(e) => return self.fail(p, e),
        };
        if a.vtype != VType::Dir {
            if let Err(e) = self.fs.unlink(p) {
                self.fail(p, e);
            }
            return;
        }
        if recursive {
            self.remove_tree(p, 0);
        } else if dir {
            if let Err(e) = self.fs.rmdir(p) {
                self.fail(p, e);
            }
        } else {
            self.fail(p, Errno::EISDIR);
        }
    }
}

/// Run fsu_rm on `argv` (program name first); returns the exit status.
pub fn main<I, A>(argv: I) -> i32
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    let (cli, _) = super::parse::<Cli, _, _>(PROG, argv);
    let fs = match super::mount(PROG, &cli.img, Access::ReadWrite) {
        Ok(fs) => fs,
        Err(msg) => {
            eprintln!("{msg}");
            return 1;
        }
    };
    let mut rm = Rm {
        fs: &fs,
        force: cli.force,
        status: 0,
    };
    for p in &cli.paths {
        rm.remove(p.as_os_str().as_encoded_bytes(), cli.recursive, cli.dir);
    }
    let status = rm.status;
    super::finish(PROG, &cli.img, fs, status)
}
