//! `fsu_write [-o OPTIONS] [-t TYPE] IMAGE [-a] FILE`: copy standard input
//! into FILE in the image, creating it (mode 0666 less the umask) or
//! truncating it; `-a` appends instead.

use std::io::{self, Read};

use clap::Parser;
use rumpkern::types::oflags;
use rumpkern::Errno;
use ukfs::Ukfs;

use super::{warn, Access, ImageArgs};

const PROG: &str = "fsu_write";

/// Command line of fsu_write.
#[derive(Parser, Debug)]
#[command(
    about = "Write standard input into a file of a file system image",
    after_help = "The file system type is detected from the image unless -t is given. \
FILE is a path inside the image, from its root; it is created (mode 0666 less the umask) \
or truncated, or appended to with -a."
)]
pub struct Cli {
    #[command(flatten)]
    pub img: ImageArgs,
    /// Append to the file instead of truncating it.
    #[arg(short = 'a')]
    pub append: bool,
    /// The file inside the image.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
}

/// Where copying stopped.
enum WriteError {
    Image(Errno),
    In(io::Error),
}

fn write_stdin(fs: &Ukfs, path: &[u8], append: bool) -> Result<(), WriteError> {
    let mut flags = oflags::O_WRONLY | oflags::O_CREAT;
    flags |= if append {
        oflags::O_APPEND
    } else {
        oflags::O_TRUNC
    };
    let mode = 0o666 & !super::host_umask();
    let mut f = fs.open(path, flags, mode).map_err(WriteError::Image)?;
    let mut input = io::stdin().lock();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(WriteError::In(e)),
        };
        f.write_all(&buf[..n]).map_err(WriteError::Image)?;
    }
}

/// Run fsu_write on `argv` (program name first); returns the exit status.
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
    let p = cli.file.as_os_str().as_encoded_bytes();
    let status = match write_stdin(&fs, p, cli.append) {
        Ok(()) => 0,
        Err(WriteError::Image(e)) => {
            warn(PROG, p, e);
            1
        }
        Err(WriteError::In(e)) => {
            eprintln!("{PROG}: standard input: {e}");
            1
        }
    };
    super::finish(PROG, &cli.img, fs, status)
}
