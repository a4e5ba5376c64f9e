//! `fsu_mkdir [-o OPTIONS] [-t TYPE] IMAGE [-p] [-m MODE] DIR...`: make
//! directories in the image, as mkdir(1).

use clap::Parser;
use rumpkern::{Errno, VType};
use ukfs::Ukfs;

use super::{warn, Access, ImageArgs};

const PROG: &str = "fsu_mkdir";

/// Command line of fsu_mkdir.
#[derive(Parser, Debug)]
#[command(
    about = "Make directories in a file system image",
    after_help = "The file system type is detected from the image unless -t is given. \
DIRs are paths inside the image, from its root. Without -m the mode is 0777 less the umask."
)]
pub struct Cli {
    #[command(flatten)]
    pub img: ImageArgs,
    /// Make missing parent directories too; no error if a directory exists.
    #[arg(short = 'p')]
    pub parents: bool,
    /// Mode of the new directories: octal (755) or symbolic (u=rwx,go+rx).
    #[arg(short = 'm', value_name = "MODE")]
    pub mode: Option<String>,
    /// Directories to make.
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<std::path::PathBuf>,
}

/// Apply a mode as chmod(1) spells it to `base`: octal digits, or a
/// comma-separated list of `[ugoa]*[+-=][rwxXst]*` clauses (no `u/g/o`
/// given means `a` less `umask`). `None` for a malformed mode.
pub fn parse_mode(spec: &str, base: u32, umask: u32, is_dir: bool) -> Option<u32> {
    if !spec.is_empty() && spec.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
        let v = u32::from_str_radix(spec, 8).ok()?;
        return (v <= 0o7777).then_some(v);
    }
    let mut mode = base & 0o7777;
    for clause in spec.split(',') {
        let b = clause.as_bytes();
        let mut i = 0;
        let mut who = 0u32;
        while i < b.len() && b"ugoa".contains(&b[i]) {
            who |= match b[i] {
                b'u' => 0o4700,
                b'g' => 0o2070,
                b'o' => 0o1007,
                _ => 0o7777,
            };
            i += 1;
        }
        let masked = who == 0;
        if masked {
            who = 0o7777;
        }
        if i >= b.len() {
            return None;
        }
        while i < b.len() {
            let op = b[i];
            if !b"+-=".contains(&op) {
                return None;
            }
            i += 1;
            let mut perm = 0u32;
            while i < b.len() && b"rwxXst".contains(&b[i]) {
                perm |= match b[i] {
                    b'r' => 0o444,
                    b'w' => 0o222,
                    b'x' => 0o111,
                    b'X' => {
                        if is_dir || mode & 0o111 != 0 {
                            0o111
                        } else {
                            0
                        }
                    }
                    b's' => 0o6000,
                    _ => 0o1000,
                };
                i += 1;
            }
            let mut bits = perm & who;
            if masked {
                bits &= !umask;
            }
            match op {
                b'+' => mode |= bits,
                b'-' => mode &= !bits,
                _ => {
                    // `=` clears everything `who` covers (all of it when
                    // omitted; the umask only limits what is set).
                    mode = (mode & !who) | bits;
                }
            }
        }
    }
    Some(mode)
}

/// mkdir -p: every missing component of `path`, the last with `mode`.
fn mkdir_parents(fs: &Ukfs, path: &[u8], mode: u32, umask: u32) -> Result<(), (Vec<u8>, Errno)> {
    let mut prefix = Vec::new();
    if path.first() == Some(&b'/') {
        prefix.push(b'/');
    }
    let comps: Vec<&[u8]> = path
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    for (i, c) in comps.iter().enumerate() {
        if !prefix.is_empty() && !prefix.ends_with(b"/") {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(c);
        let last = i + 1 == comps.len();
        // Intermediate directories: 0777 less the umask, plus u+wx (as mkdir -p).
        let m = if last { mode } else { (0o777 & !umask) | 0o300 };
        match fs.mkdir(&prefix, m) {
            Ok(()) => {
                if last {
                    let _ = fs.chmod(&prefix, mode);
                }
            }
            Err(Errno::EEXIST) => match fs.stat(&prefix) {
                Ok(a) if a.vtype == VType::Dir => {}
                Ok(_) => return Err((prefix, Errno::ENOTDIR)),
                Err(e) => return Err((prefix, e)),
            },
            Err(e) => return Err((prefix, e)),
        }
    }
    Ok(())
}

/// Run fsu_mkdir on `argv` (program name first); returns the exit status.
pub fn main<I, A>(argv: I) -> i32
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    let (cli, _) = super::parse::<Cli, _, _>(PROG, argv);
    let umask = super::host_umask();
    let mode = match &cli.mode {
        None => 0o777 & !umask,
        Some(m) => match parse_mode(m, 0o777, umask, true) {
            Some(v) => v,
            None => {
                eprintln!("{PROG}: invalid mode '{m}'");
                return 2;
            }
        },
    };
    let fs = match super::mount(PROG, &cli.img, Access::ReadWrite) {
        Ok(fs) => fs,
        Err(msg) => {
            eprintln!("{msg}");
            return 1;
        }
    };
    let mut status = 0;
    for d in &cli.dirs {
        let p = d.as_os_str().as_encoded_bytes();
        let r = if cli.parents {
            mkdir_parents(&fs, p, mode, umask)
        } else {
            // The mode is set explicitly too: the driver applies no umask,
            // and -m may ask for bits mkdir(2) would not set (sticky).
            fs.mkdir(p, mode)
                .map_err(|e| (p.to_vec(), e))
                .and_then(|()| {
                    if cli.mode.is_some() {
                        fs.chmod(p, mode).map_err(|e| (p.to_vec(), e))
                    } else {
                        Ok(())
                    }
                })
        };
        if let Err((path, e)) = r {
            warn(PROG, &path, e);
            status = 1;
        }
    }
    super::finish(PROG, &cli.img, fs, status)
}

#[cfg(test)]
mod tests {
    use super::parse_mode;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("755", 0o777, 0o022, true), Some(0o755));
        assert_eq!(parse_mode("1777", 0o777, 0o022, true), Some(0o1777));
        assert_eq!(parse_mode("u=rwx,go=rx", 0o777, 0o022, true), Some(0o755));
        assert_eq!(parse_mode("go-w", 0o777, 0o022, true), Some(0o755));
        assert_eq!(parse_mode("a=rx", 0o777, 0o022, true), Some(0o555));
        assert_eq!(parse_mode("=rwx", 0o777, 0o022, true), Some(0o755));
        assert_eq!(parse_mode("+t", 0o755, 0o022, true), Some(0o1755));
        assert_eq!(parse_mode("u+s", 0o755, 0o022, true), Some(0o4755));
        assert_eq!(parse_mode("8", 0o777, 0, true), None);
        assert_eq!(parse_mode("u", 0o777, 0, true), None);
        assert_eq!(parse_mode("u*x", 0o777, 0, true), None);
        assert_eq!(parse_mode("77777", 0o777, 0, true), None);
    }
}
