//! `fsu_ls [-o OPTIONS] [--type TYPE] IMAGE [-laARdinFhtSr1] [PATH...]`:
//! list directory contents in the image, formatted as GNU ls prints them
//! to a pipe (one name per line; `-l` as `ls -l` in the C locale).
//!
//! Long format: mode string, link count, owner and group (names from the
//! host's /etc/passwd and /etc/group, numbers with `-n` or when unknown),
//! size (`major, minor` for devices; `-h` human-readable as `ls -h`), the
//! modification time (`Nov 25 16:37`, or `Nov 25  2024` when older than
//! six months or in the future; local time zone), the name, and
//! `-> target` for symlinks. Names are printed as they are (bytes).

use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Write};

use clap::{ArgAction, Parser};
use rumpkern::types::{Timespec, VType, Vattr};
use rumpkern::Errno;
use ukfs::{Dir, Ukfs};

use super::{join, warn, Access, ImageArgsLong};

const PROG: &str = "fsu_ls";

/// Command line of fsu_ls.
#[derive(Parser, Debug)]
#[command(
    about = "List directory contents in a file system image",
    disable_help_flag = true,
    after_help = "The file system type is detected from the image; --type forces it \
(-t is ls's sort by time here). The image is mounted read-only. PATHs are inside the \
image, from its root; the default is the root directory (\".\").\n\
Output is one name per line; -l, -i, -n, -h, -F follow GNU ls in the C locale."
)]
pub struct Cli {
    #[command(flatten)]
    pub img: ImageArgsLong,
    /// Long listing: mode, links, owner, group, size, time, name.
    #[arg(short = 'l')]
    pub long: bool,
    /// Show every entry, . and .. included.
    #[arg(short = 'a')]
    pub all: bool,
    /// Show entries starting with a dot, except . and ..
    #[arg(short = 'A')]
    pub almost_all: bool,
    /// List subdirectories recursively.
    #[arg(short = 'R')]
    pub recursive: bool,
    /// List directories themselves, not their contents.
    #[arg(short = 'd')]
    pub directory: bool,
    /// Print the inode number of each file.
    #[arg(short = 'i')]
    pub inode: bool,
    /// Like -l, with numeric user and group ids.
    #[arg(short = 'n')]
    pub numeric: bool,
    /// Append an indicator (one of */=@|) to names.
    #[arg(short = 'F')]
    pub classify: bool,
    /// With -l, sizes like 1.5K, 23M.
    #[arg(short = 'h')]
    pub human: bool,
    /// Sort by modification time, newest first.
    #[arg(short = 't')]
    pub sort_time: bool,
    /// Sort by size, largest first.
    #[arg(short = 'S')]
    pub sort_size: bool,
    /// Reverse the sort order.
    #[arg(short = 'r')]
    pub reverse: bool,
    /// One entry per line (always the case).
    #[arg(short = '1')]
    pub one: bool,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Paths inside the image.
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
}

/// Sort key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortBy {
    Name,
    Time,
    Size,
}

/// Everything the listing needs to know.
struct Opts {
    long: bool,
    numeric: bool,
    all: bool,
    almost_all: bool,
    recursive: bool,
    directory: bool,
    inode: bool,
    classify: bool,
    human: bool,
    sort: SortBy,
    reverse: bool,
    /// Do entries need an lstat (long, classify, sorting, inode)?
    need_stat: bool,
}

/// One entry to print.
struct Entry {
    /// Name as shown (the operand itself for operands).
    name: Vec<u8>,
    /// Path in the image.
    path: Vec<u8>,
    vtype: VType,
    ino: u64,
    attr: Option<Vattr>,
    /// Symlink target (long format).
    target: Option<Vec<u8>>,
    /// Type of the symlink's target (-lF), when it resolves.
    target_type: Option<(VType, u32)>,
}

/// User and group names from the host's /etc/passwd and /etc/group.
#[derive(Default)]
struct Names {
    users: Option<HashMap<u32, String>>,
    groups: Option<HashMap<u32, String>>,
}

fn read_id_file(path: &str) -> HashMap<u32, String> {
    let mut m = HashMap::new();
    if let Ok(s) = std::fs::read_to_string(path) {
        for line in s.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 {
                if let Ok(id) = f[2].parse::<u32>() {
                    m.entry(id).or_insert_with(|| f[0].to_string());
                }
            }
        }
    }
    m
}

/// An owner column: a name (left-aligned) or a number (right-aligned),
/// as GNU ls pads them.
enum Owner {
    Name(String),
    Num(String),
}

impl Owner {
    fn len(&self) -> usize {
        match self {
            Owner::Name(s) | Owner::Num(s) => s.len(),
        }
    }

    fn pad(&self, w: usize) -> String {
        match self {
            Owner::Name(s) => format!("{s:<w$}"),
            Owner::Num(s) => format!("{s:>w$}"),
        }
    }
}

impl Names {
    fn user(&mut self, uid: u32) -> Owner {
        let m = self
            .users
            .get_or_insert_with(|| read_id_file("/etc/passwd"));
        match m.get(&uid) {
            Some(n) => Owner::Name(n.clone()),
            None => Owner::Num(uid.to_string()),
        }
    }
    fn group(&mut self, gid: u32) -> Owner {
        let m = self
            .groups
            .get_or_insert_with(|| read_id_file("/etc/group"));
        match m.get(&gid) {
            Some(n) => Owner::Name(n.clone()),
            None => Owner::Num(gid.to_string()),
        }
    }
}

/// The 10-character mode string of `ls -l` (`drwxr-xr-x`, `-rwsr-S--T`).
pub fn mode_string(vtype: VType, mode: u32) -> String {
    let t = match vtype {
        VType::Reg => '-',
        VType::Dir => 'd',
        VType::Lnk => 'l',
        VType::Chr => 'c',
        VType::Blk => 'b',
        VType::Fifo => 'p',
        VType::Sock => 's',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: u32, sp: u32, on: char, off: char| match (mode & x != 0, mode & sp != 0) {
        (true, true) => on,
        (false, true) => off,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

/// A size as `ls -h` prints it: powers of 1024, rounded up, one decimal
/// below 10 (`999`, `1.0K`, `1.5K`, `10K`, `1023K`, `1.0M`).
pub fn human_size(n: u64) -> String {
    if n < 1024 {
        return n.to_string();
    }
    let n = n as u128;
    let units = ['K', 'M', 'G', 'T', 'P', 'E'];
    let mut unit: u128 = 1;
    for u in units {
        unit *= 1024;
        if n < 10 * unit {
            let tenths = (n * 10).div_ceil(unit);
            if tenths < 100 {
                return format!("{}.{}{}", tenths / 10, tenths % 10, u);
            }
            return format!("10{u}");
        }
        let v = n.div_ceil(unit);
        if v < 1024 {
            return format!("{v}{u}");
        }
    }
    format!("{}E", n.div_ceil(unit))
}

/// `Nov 25 16:37` (within six months of `now`, not in the future) or
/// `Nov 25  2024`, in the local time zone.
pub fn format_time(t: Timespec, now: Timespec) -> String {
    const SIX_MONTHS: i64 = 31_556_952 / 2;
    let recent = t > Timespec::new(now.sec - SIX_MONTHS, now.nsec) && t <= now;
    let secs: libc::time_t = t.sec as libc::time_t;
    extern "C" {
        fn tzset();
    }
    // localtime_r does not read TZ itself: load the zone once per process
    // (calling tzset per entry costs a stat of /etc/localtime each time).
    static TZ_LOADED: std::sync::Once = std::sync::Once::new();
    // SAFETY: tzset only reads TZ and the zone files.
    TZ_LOADED.call_once(|| unsafe { tzset() });
    // SAFETY: localtime_r writes into the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return format!("{:>12}", t.sec);
    }
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mon = MON[(tm.tm_mon.clamp(0, 11)) as usize];
    if recent {
        format!("{mon} {:>2} {:02}:{:02}", tm.tm_mday, tm.tm_hour, tm.tm_min)
    } else {
        format!("{mon} {:>2} {:>5}", tm.tm_mday, tm.tm_year as i64 + 1900)
    }
}

fn indicator(vtype: VType, mode: u32) -> Option<u8> {
    match vtype {
        VType::Dir => Some(b'/'),
        VType::Lnk => Some(b'@'),
        VType::Fifo => Some(b'|'),
        VType::Sock => Some(b'='),
        VType::Reg if mode & 0o111 != 0 => Some(b'*'),
        _ => None,
    }
}

fn major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

fn minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

struct Lister<'a, W: Write> {
    fs: &'a Ukfs,
    o: Opts,
    out: W,
    names: Names,
    now: Timespec,
    status: i32,
}

impl<W: Write> Lister<'_, W> {
    fn fail(&mut self, path: &[u8], e: Errno) {
        let _ = self.out.flush();
        warn(PROG, path, e);
        self.status = 1;
    }

    /// Fill in what the format needs for an entry whose lstat is `attr`;
    /// `dir`: the open directory that holds it under `e.name` (`None`
    /// for operands, named by `e.path`).
    fn complete(&mut self, dir: Option<&Dir<'_>>, e: &mut Entry) {
        if e.vtype == VType::Lnk && self.o.long {
            let target = match dir {
                Some(d) => d.readlink(&e.name),
                None => self.fs.readlink(&e.path),
            };
            match target {
                Ok(t) => e.target = Some(t),
                Err(err) => {
                    let p = e.path.clone();
                    self.fail(&p, err);
                }
            }
            if self.o.classify {
                let a = match dir {
                    Some(d) => d.stat(&e.name),
                    None => self.fs.stat(&e.path),
                };
                if let Ok(a) = a {
                    e.target_type = Some((a.vtype, a.mode));
                }
            }
        }
    }

    fn sort(&self, v: &mut [Entry]) {
        let key = self.o.sort;
        v.sort_by(|a, b| {
            let ord = match key {
                SortBy::Name => std::cmp::Ordering::Equal,
                SortBy::Time => {
                    let ta = a.attr.as_ref().map(|x| x.mtime).unwrap_or_default();
                    let tb = b.attr.as_ref().map(|x| x.mtime).unwrap_or_default();
                    tb.cmp(&ta)
                }
                SortBy::Size => {
                    let sa = a.attr.as_ref().map(|x| x.size).unwrap_or(0);
                    let sb = b.attr.as_ref().map(|x| x.size).unwrap_or(0);
                    sb.cmp(&sa)
                }
            };
            ord.then_with(|| a.name.cmp(&b.name))
        });
        if self.o.reverse {
            v.reverse();
        }
    }

    /// Print a group of entries (one directory's, or the file operands);
    /// `more` are entries that count for the column widths without being
    /// printed (GNU ls sizes the file operands' columns over every
    /// operand, directories included).
    fn print(&mut self, v: &[Entry], more: &[Entry], total: Option<u64>) -> io::Result<()> {
        if let (Some(t), true) = (total, self.o.long) {
            if self.o.human {
                writeln!(self.out, "total {}", human_size(t))?;
            } else {
                writeln!(self.out, "total {}", t.div_ceil(1024))?;
            }
        }
        // Column widths.
        let mut w_ino = 0;
        let mut w_nlink = 0;
        let mut w_user = 0;
        let mut w_group = 0;
        let mut w_size = 0;
        let mut w_major = 0;
        let mut w_minor = 0;
        let mut rows = Vec::with_capacity(v.len());
        for e in v.iter().chain(more) {
            let ino = e.attr.as_ref().map(|a| a.ino).unwrap_or(e.ino).to_string();
            w_ino = w_ino.max(ino.len());
            let mut cols = None;
            if self.o.long {
                if let Some(a) = &e.attr {
                    let nlink = a.nlink.to_string();
                    let (user, group) = if self.o.numeric {
                        (Owner::Num(a.uid.to_string()), Owner::Num(a.gid.to_string()))
                    } else {
                        (self.names.user(a.uid), self.names.group(a.gid))
                    };
                    let size = if matches!(a.vtype, VType::Chr | VType::Blk) {
                        let (ma, mi) = (major(a.rdev).to_string(), minor(a.rdev).to_string());
                        w_major = w_major.max(ma.len());
                        w_minor = w_minor.max(mi.len());
                        Err((ma, mi))
                    } else if self.o.human {
                        Ok(human_size(a.size))
                    } else {
                        Ok(a.size.to_string())
                    };
                    if let Ok(s) = &size {
                        w_size = w_size.max(s.len());
                    }
                    w_nlink = w_nlink.max(nlink.len());
                    w_user = w_user.max(user.len());
                    w_group = w_group.max(group.len());
                    cols = Some((nlink, user, group, size));
                }
            }
            rows.push((ino, cols));
        }
        if w_major > 0 {
            w_size = w_size.max(w_major + 2 + w_minor);
        }
        rows.truncate(v.len());
        for (e, (ino, cols)) in v.iter().zip(rows) {
            if self.o.inode {
                write!(self.out, "{ino:>w_ino$} ")?;
            }
            if let (Some((nlink, user, group, size)), Some(a)) = (cols, &e.attr) {
                let size = match size {
                    Ok(s) => format!("{s:>w_size$}"),
                    Err((ma, mi)) => {
                        let s = format!("{ma:>w_major$}, {mi:>w_minor$}");
                        format!("{s:>w_size$}")
                    }
                };
                write!(
                    self.out,
                    "{} {nlink:>w_nlink$} {} {} {size} {} ",
                    mode_string(a.vtype, a.mode),
                    user.pad(w_user),
                    group.pad(w_group),
                    format_time(a.mtime, self.now)
                )?;
            }
            self.out.write_all(&e.name)?;
            let mode = e.attr.as_ref().map(|a| a.mode).unwrap_or(0);
            if self.o.long && e.vtype == VType::Lnk {
                if let Some(t) = &e.target {
                    self.out.write_all(b" -> ")?;
                    self.out.write_all(t)?;
                    if let Some((tt, tm)) = e.target_type {
                        if self.o.classify {
                            if let Some(c) = indicator(tt, tm) {
                                self.out.write_all(&[c])?;
                            }
                        }
                    }
                }
            } else if self.o.classify {
                if let Some(c) = indicator(e.vtype, mode) {
                    self.out.write_all(&[c])?;
                }
            }
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The entries of directory `dir` (named `path`), filtered, stat'ed
    /// (each by its name in `dir`: one lookup, no walk from the root) and
    /// sorted, and the total allocated bytes.
    fn read_dir(&mut self, dir: &Dir<'_>, path: &[u8]) -> Result<(Vec<Entry>, u64), Errno> {
        let ents = dir.readdir()?;
        let mut v = Vec::with_capacity(ents.len());
        let mut total = 0u64;
        for d in ents {
            let dot = d.name == b"." || d.name == b"..";
            let hidden = d.name.first() == Some(&b'.');
            if hidden && !(self.o.all || (self.o.almost_all && !dot)) {
                continue;
            }
            let p = join(path, &d.name);
            let mut e = Entry {
                name: d.name,
                path: p,
                vtype: d.vtype,
                ino: d.ino,
                attr: None,
                target: None,
                target_type: None,
            };
            if self.o.need_stat {
                match dir.lstat(&e.name) {
                    Ok(a) => {
                        total += a.bytes;
                        e.vtype = a.vtype;
                        e.attr = Some(a);
                    }
                    Err(err) => {
                        let p = e.path.clone();
                        self.fail(&p, err);
                        if self.o.long {
                            continue;
                        }
                    }
                }
                self.complete(Some(dir), &mut e);
            }
            v.push(e);
        }
        self.sort(&mut v);
        Ok((v, total))
    }

    /// List directory `path`, opened as `dir` (an error opening it is
    /// reported after the header, as one reading it); `header` prints
    /// `path:` first; `ancestors` holds the inode numbers of the
    /// directories above (cycle guard).
    fn list_dir(
        &mut self,
        path: &[u8],
        dir: Result<Dir<'_>, Errno>,
        header: bool,
        first: &mut bool,
        ancestors: &mut HashSet<u64>,
        ino: u64,
    ) -> io::Result<()> {
        if !*first {
            self.out.write_all(b"\n")?;
        }
        *first = false;
        if header {
            self.out.write_all(path)?;
            self.out.write_all(b":\n")?;
        }
        let ((v, total), dir) = match dir.and_then(|d| self.read_dir(&d, path).map(|x| (x, d))) {
            Ok(x) => x,
            Err(e) => {
                self.fail(path, e);
                return Ok(());
            }
        };
        self.print(&v, &[], Some(total))?;
        if self.o.recursive {
            ancestors.insert(ino);
            for e in &v {
                if e.vtype != VType::Dir || e.name == b"." || e.name == b".." {
                    continue;
                }
                let ino = e.attr.as_ref().map(|a| a.ino).unwrap_or(e.ino);
                if ancestors.contains(&ino) {
                    let _ = self.out.flush();
                    let mut msg = e.path.clone();
                    msg.extend_from_slice(b": not listing already-listed directory");
                    eprintln!("{PROG}: {}", String::from_utf8_lossy(&msg));
                    self.status = 1;
                    continue;
                }
                let sub = dir.open_dir(&e.name);
                self.list_dir(&e.path, sub, true, first, ancestors, ino)?;
            }
            ancestors.remove(&ino);
        }
        Ok(())
    }
}

/// Run fsu_ls on `argv` (program name first); returns the exit status.
pub fn main<I, A>(argv: I) -> i32
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    let (cli, m) = super::parse::<Cli, _, _>(PROG, argv);
    // The last of -t and -S wins, as in ls.
    let sort = match (cli.sort_time, cli.sort_size) {
        (true, true) => {
            // Both given: clap's indices tell which came last.
            let last = |id: &str| m.indices_of(id).and_then(|i| i.max()).unwrap_or(0);
            if last("sort_time") > last("sort_size") {
                SortBy::Time
            } else {
                SortBy::Size
            }
        }
        (true, false) => SortBy::Time,
        (false, true) => SortBy::Size,
        (false, false) => SortBy::Name,
    };
    let long = cli.long || cli.numeric;
    let o = Opts {
        long,
        numeric: cli.numeric,
        all: cli.all,
        almost_all: cli.almost_all,
        recursive: cli.recursive && !cli.directory,
        directory: cli.directory,
        inode: cli.inode,
        classify: cli.classify,
        human: cli.human,
        sort,
        reverse: cli.reverse,
        need_stat: long || cli.classify || cli.inode || sort != SortBy::Name,
    };
    let img: super::ImageArgs = cli.img.clone().into();
    super::default_sigpipe();
    let fs = match super::mount(PROG, &img, Access::ReadOnly) {
        Ok(fs) => fs,
        Err(msg) => {
            eprintln!("{msg}");
            return 1;
        }
    };
    let paths: Vec<Vec<u8>> = if cli.paths.is_empty() {
        vec![b".".to_vec()]
    } else {
        cli.paths
            .iter()
            .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
            .collect()
    };
    let status = {
        let stdout = io::stdout();
        let mut l = Lister {
            fs: &fs,
            o,
            out: BufWriter::with_capacity(64 * 1024, stdout.lock()),
            names: Names::default(),
            now: Timespec::now(),
            status: 0,
        };
        // -R: read the directories ahead of the listing (see prefetch.rs).
        let r = if l.o.recursive {
            let pf = super::prefetch::Prefetcher::new(&fs, &paths);
            std::thread::scope(|sc| {
                pf.spawn(sc);
                let r = run(&mut l, &paths);
                pf.stop();
                r
            })
        } else {
            run(&mut l, &paths)
        };
        let r = r.and_then(|_| l.out.flush());
        match r {
            Ok(()) => l.status,
            Err(e) => {
                eprintln!("{PROG}: write error: {e}");
                1
            }
        }
    };
    let img: super::ImageArgs = cli.img.into();
    super::finish(PROG, &img, fs, status)
}

fn run<W: Write>(l: &mut Lister<'_, W>, paths: &[Vec<u8>]) -> io::Result<()> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for p in paths {
        let a = match l.fs.lstat(p) {
            Ok(a) => a,
            Err(e) => {
                l.fail(p, e);
                continue;
            }
        };
        // A symlink operand to a directory is followed unless -l, -d or -F.
        let a = if a.vtype == VType::Lnk && !(l.o.long || l.o.directory || l.o.classify) {
            l.fs.stat(p).unwrap_or(a)
        } else {
            a
        };
        let mut e = Entry {
            name: p.clone(),
            path: p.clone(),
            vtype: a.vtype,
            ino: a.ino,
            attr: Some(a),
            target: None,
            target_type: None,
        };
        if e.vtype == VType::Dir && !l.o.directory {
            dirs.push(e);
        } else {
            l.complete(None, &mut e);
            files.push(e);
        }
    }
    l.sort(&mut files);
    l.sort(&mut dirs);
    let mut first = true;
    if !files.is_empty() {
        l.print(&files, &dirs, None)?;
        first = false;
    }
    let header = paths.len() > 1 || l.o.recursive;
    for d in &dirs {
        let mut anc = HashSet::new();
        let ino = d.attr.as_ref().map(|a| a.ino).unwrap_or(d.ino);
        let dir = l.fs.open_dir(&d.path);
        l.list_dir(&d.path, dir, header, &mut first, &mut anc, ino)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(mode_string(VType::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(VType::Reg, 0o4754), "-rwsr-xr--");
        assert_eq!(mode_string(VType::Reg, 0o6644), "-rwSr-Sr--");
        assert_eq!(mode_string(VType::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(VType::Dir, 0o1770), "drwxrwx--T");
        assert_eq!(mode_string(VType::Lnk, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(VType::Chr, 0o600), "crw-------");
        assert_eq!(mode_string(VType::Fifo, 0o644), "prw-r--r--");
    }

    #[test]
    fn human() {
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(999), "999");
        assert_eq!(human_size(1023), "1023");
        assert_eq!(human_size(1024), "1.0K");
        assert_eq!(human_size(1025), "1.1K");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(10 * 1024 - 1), "10K");
        assert_eq!(human_size(10 * 1024), "10K");
        assert_eq!(human_size(12345), "13K");
        assert_eq!(human_size(1024 * 1024 - 1), "1.0M");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0G");
    }

    #[test]
    fn dev_numbers() {
        let rdev = libc::makedev(8, 17);
        assert_eq!((major(rdev), minor(rdev)), (8, 17));
        let rdev = libc::makedev(259, 70000);
        assert_eq!((major(rdev), minor(rdev)), (259, 70000));
    }
}
