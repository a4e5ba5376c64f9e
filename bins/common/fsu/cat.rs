//! `fsu_cat [-o OPTIONS] [-t TYPE] IMAGE FILE...`: write the files of the
//! image to standard output, in order (the image is mounted read-only).

use std::io::{self, Write};

use clap::Parser;
use rumpkern::types::oflags;
use rumpkern::Errno;
use ukfs::Ukfs;

use super::{warn, Access, ImageArgs};

const PROG: &str = "fsu_cat";

/// Command line of fsu_cat.
#[derive(Parser, Debug)]
#[command(
    about = "Concatenate files of a file system image to standard output",
    after_help = "The file system type is detected from the image unless -t is given. \
The image is mounted read-only. FILEs are paths inside the image, from its root."
)]
pub struct Cli {
    #[command(flatten)]
    pub img: ImageArgs,
    /// Files inside the image.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<std::path::PathBuf>,
}

/// Why copying one file stopped.
enum CatError {
    /// The image side (reported with the file's path).
    Image(Errno),
    /// Standard output.
    Out(io::Error),
}

/// Copy `path` from the image to `out`.
fn cat_one(fs: &Ukfs, path: &[u8], out: &mut impl Write, buf: &mut [u8]) -> Result<(), CatError> {
    let mut f = fs
        .open(path, oflags::O_RDONLY, 0)
        .map_err(CatError::Image)?;
    if f.metadata().map_err(CatError::Image)?.vtype == rumpkern::VType::Dir {
        return Err(CatError::Image(Errno::EISDIR));
    }
    loop {
        let n = f.read(buf).map_err(CatError::Image)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n]).map_err(CatError::Out)?;
    }
}

/// Run fsu_cat on `argv` (program name first); returns the exit status.
pub fn main<I, A>(argv: I) -> i32
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    let (cli, _) = super::parse::<Cli, _, _>(PROG, argv);
    super::default_sigpipe();
    let fs = match super::mount(PROG, &cli.img, Access::ReadOnly) {
        Ok(fs) => fs,
        Err(msg) => {
            eprintln!("{msg}");
            return 1;
        }
    };
    let mut status = 0;
    {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        let mut buf = vec![0u8; 1 << 20];
        for p in &cli.files {
            let p = p.as_os_str().as_encoded_bytes();
            match cat_one(&fs, p, &mut out, &mut buf) {
                Ok(()) => {}
                Err(CatError::Image(e)) => {
                    let _ = out.flush();
                    warn(PROG, p, e);
                    status = 1;
                }
                Err(CatError::Out(e)) => {
                    eprintln!("{PROG}: write error: {e}");
                    status = 1;
                    break;
                }
            }
        }
        if let Err(e) = out.flush() {
            eprintln!("{PROG}: write error: {e}");
            status = 1;
        }
    }
    super::finish(PROG, &cli.img, fs, status)
}
