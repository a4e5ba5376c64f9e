//! The mounted file system: block I/O through the buffer cache, mount
//! options, and the FAT itself (entries, chains, allocation, the free count,
//! FSInfo and the clean-shutdown bit).
//!
//! # Locking
//!
//! * [`Fs::fat`] (level 3, "allocation map") guards the free-cluster count
//!   and the next-free hint, and is held across every FAT update that
//!   allocates or frees, so two allocations never take the same cluster.
//!   FAT entries themselves live in buffers; a single entry update holds
//!   the buffer(s) of that entry only.
//! * `Fs::nodes` (the table of live inode numbers) is a leaf: no I/O and
//!   no vcache call while it is held.
//! * No driver lock is held across `Mount::vcache_get` (reclaim runs under
//!   the vcache mutex and takes `nodes` and node locks).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rumpkern::buf::{Buf, BufCache};
use rumpkern::lock::KMutex;
use rumpkern::{Errno, KResult, MountArgs};

use crate::format::{put32, FatType, FsInfo, Geometry, FSI_FREE_COUNT, FSI_NXT_FREE};

/// Inode number of the root directory.
pub const ROOT_INO: u64 = 1;
/// First inode number handed out when a position's own number is taken
/// (by a renamed file still in use); above every position-derived number.
const FRESH_INO_BASE: u64 = 1 << 56;
/// FAT blocks read ahead when scanning the FAT.
const FAT_READAHEAD: usize = 32;

/// How short names without a long name are shown and when names are
/// created without a long name (Linux vfat `shortname=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortnameMode {
    /// Shown in lower case; a long name is stored unless the name is upper-case 8.3.
    Lower,
    /// Shown as stored (upper case); a long name is stored unless upper-case 8.3.
    Win95,
    /// The NT case bits are honoured on display and used on create for
    /// names that are 8.3 with one case per part (no long name then).
    WinNt,
    /// Case bits honoured on display; a long name stored unless upper-case 8.3 (Linux default).
    Mixed,
}

/// Parsed mount options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsdosOptions {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits removed from files / directories.
    pub fmask: u32,
    pub dmask: u32,
    /// Seconds east of UTC of the times stored on disk.
    pub tz_off: i64,
    pub shortname: ShortnameMode,
    /// Partition to mount (1-based) on a partitioned device.
    pub partition: Option<u32>,
    /// chmod/chown that FAT cannot store succeed silently (Linux `quiet`).
    pub quiet: bool,
    /// Buffer cache budget in bytes (`cache=SIZE`).
    pub cache_bytes: usize,
    /// Every change is on the device when its call returns (`sync`).
    pub sync: bool,
}

/// Default buffer cache budget of one mount.
pub const DEFAULT_CACHE_BYTES: usize = 48 << 20;
/// Smallest budget accepted (a few of the largest buffers).
pub const MIN_CACHE_BYTES: usize = 4 << 20;

/// `N` with an optional k/m/g suffix (powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl Default for MsdosOptions {
    fn default() -> Self {
        MsdosOptions {
            uid: 0,
            gid: 0,
            fmask: 0o022,
            dmask: 0o022,
            tz_off: 0,
            shortname: ShortnameMode::Mixed,
            partition: None,
            quiet: false,
            cache_bytes: DEFAULT_CACHE_BYTES,
            sync: false,
        }
    }
}

fn parse_tz(v: &str) -> Option<i64> {
    if v.eq_ignore_ascii_case("UTC") || v.eq_ignore_ascii_case("GMT") || v == "Z" {
        return Some(0);
    }
    let (sign, rest) = match v.as_bytes().first()? {
        b'+' => (1, &v[1..]),
        b'-' => (-1, &v[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => (&rest[..2], &rest[2..]),
        None => (rest, "0"),
    };
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

impl MsdosOptions {
    /// Parse the file-system options of `args`, as Linux vfat spells them
    /// (`uid=`, `gid=`, `umask=`, `dmask=`, `fmask=`, `shortname=`, `tz=UTC`
    /// or `tz=±HH:MM`, `time_offset=MINUTES`, `quiet`, `utf8`,
    /// `iocharset=utf8`) and as NetBSD mount_msdos does (`u=`, `g=`, `m=`,
    /// `M=`: most permissions of files / directories), plus `partition=N`,
    /// `cache=SIZE` (buffer cache budget) and `sync`/`async`.
    /// Errors: EINVAL, logged with the option.
    pub fn parse(args: &MountArgs) -> KResult<MsdosOptions> {
        let mut o = MsdosOptions::default();
        let mut dmask_set = false;
        for (k, v) in &args.options {
            let bad = |why: &str| {
                log::error!(
                    "msdosfs: option {}{}{}: {}",
                    k,
                    if v.is_some() { "=" } else { "" },
                    v.as_deref().unwrap_or(""),
                    why
                );
                Errno::EINVAL
            };
            let need = || v.as_deref().ok_or_else(|| bad("needs a value"));
            let octal = |s: &str| u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o777);
            match k.as_str() {
                "uid" | "u" => o.uid = need()?.parse().map_err(|_| bad("not a user id"))?,
                "gid" | "g" => o.gid = need()?.parse().map_err(|_| bad("not a group id"))?,
                "umask" => {
                    let m = octal(need()?).ok_or_else(|| bad("not an octal mask"))?;
                    o.fmask = m;
                    o.dmask = m;
                }
                "fmask" => o.fmask = octal(need()?).ok_or_else(|| bad("not an octal mask"))?,
                "dmask" => {
                    o.dmask = octal(need()?).ok_or_else(|| bad("not an octal mask"))?;
                    dmask_set = true;
                }
                "m" => {
                    let m = octal(need()?).ok_or_else(|| bad("not an octal mode"))?;
                    o.fmask = !m & 0o777;
                    if !dmask_set {
                        o.dmask = !m & 0o777;
                    }
                }
                "M" => {
                    o.dmask = !octal(need()?).ok_or_else(|| bad("not an octal mode"))? & 0o777;
                    dmask_set = true;
                }
                "tz" => {
                    o.tz_off =
                        parse_tz(need()?).ok_or_else(|| bad("not UTC or an offset like +02:00"))?
                }
                "time_offset" => {
                    let m: i64 = need()?
                        .parse()
                        .map_err(|_| bad("not a number of minutes"))?;
                    if m.abs() > 24 * 60 {
                        return Err(bad("more than a day"));
                    }
                    o.tz_off = m * 60;
                }
                "shortname" => {
                    o.shortname = match need()? {
                        "lower" => ShortnameMode::Lower,
                        "win95" => ShortnameMode::Win95,
                        "winnt" => ShortnameMode::WinNt,
                        "mixed" => ShortnameMode::Mixed,
                        _ => return Err(bad("one of lower, win95, winnt, mixed")),
                    }
                }
                "partition" => {
                    let n: u32 = need()?.parse().map_err(|_| bad("not a partition number"))?;
                    if n == 0 {
                        return Err(bad("partitions are numbered from 1"));
                    }
                    o.partition = Some(n);
                }
                "quiet" if v.is_none() => o.quiet = true,
                "sync" if v.is_none() => o.sync = true,
                "async" if v.is_none() => o.sync = false,
                "cache" => {
                    let n =
                        parse_size(need()?).ok_or_else(|| bad("not a size (N with k, m or g)"))?;
                    if n < MIN_CACHE_BYTES as u64 {
                        return Err(bad("below 4m"));
                    }
                    o.cache_bytes = usize::try_from(n).map_err(|_| bad("too large"))?;
                }
                "utf8"
                    if v.is_none() || v.as_deref() == Some("1") || v.as_deref() == Some("yes") => {}
                "iocharset" if v.as_deref() == Some("utf8") || v.as_deref() == Some("utf-8") => {}
                "noatime" | "relatime" | "atime" | "nodev" | "nosuid" | "noexec" if v.is_none() => {
                }
                _ => return Err(bad("unknown msdos option")),
            }
        }
        Ok(o)
    }
}

/// Live inode numbers and where their entries are (see [`Fs::ino_for_pos`]).
#[derive(Default)]
struct NodeTable {
    /// Entry position (byte offset of the short entry) -> inode number,
    /// for positions whose live node has a number other than `pos / 32`.
    pos2ino: crate::dir::FxMap<u64, u64>,
    /// Live inode numbers -> their current entry position (None: unlinked or root).
    live: crate::dir::FxMap<u64, Option<u64>>,
}

/// Allocation state guarded by [`Fs::fat`].
pub struct FatState {
    /// Free clusters, once known (FSInfo hint or a count).
    pub free: Option<u32>,
    /// Where the next allocation search starts.
    pub next_free: u32,
}

/// One mounted FAT file system.
pub struct Fs {
    pub cache: Arc<BufCache>,
    /// Byte offset of the file system on the device (partition start).
    pub base: u64,
    pub geo: Geometry,
    pub opts: MsdosOptions,
    pub fat: KMutex<FatState>,
    nodes: KMutex<NodeTable>,
    next_ino: AtomicU64,
    pub label: Option<String>,
    /// FSInfo sector exists with valid signatures (so we keep it updated).
    pub fsinfo_ok: bool,
    /// The clean bit was cleared by this mount (restore at unmount).
    pub marked_dirty: AtomicBool,
    /// Corruption has been logged once.
    corrupt_logged: AtomicBool,
    /// Entries of the name indexes kept by directories without references
    /// (see [`Fs::charge_kept_index`]).
    kept_index_entries: AtomicUsize,
}

/// Entries that the name indexes of unreferenced (cached) directories may
/// hold in all, per mount (a few hundred bytes each): past it, an index is
/// dropped when its directory's last reference goes.
pub const KEPT_INDEX_BUDGET: usize = 1 << 17;

/// Largest index a directory keeps without references.
pub const KEPT_INDEX_MAX: usize = 8192;

impl Fs {
    /// Assemble a mounted file system (the caller validated `geo`).
    pub fn new(
        cache: Arc<BufCache>,
        base: u64,
        geo: Geometry,
        opts: MsdosOptions,
        label: Option<String>,
        fsinfo: FsInfo,
        fsinfo_ok: bool,
    ) -> Fs {
        let next_free = fsinfo.next_free.unwrap_or(2);
        Fs {
            cache,
            base,
            geo,
            opts,
            fat: KMutex::new(FatState {
                free: fsinfo.free_count,
                next_free,
            }),
            nodes: KMutex::new(NodeTable::default()),
            next_ino: AtomicU64::new(FRESH_INO_BASE),
            label,
            fsinfo_ok,
            marked_dirty: AtomicBool::new(false),
            corrupt_logged: AtomicBool::new(false),
            kept_index_entries: AtomicUsize::new(0),
        }
    }

    /// Charge `n` index entries to the budget of indexes kept without
    /// references; false (nothing charged) when it would overflow.
    pub fn charge_kept_index(&self, n: usize) -> bool {
        if n > KEPT_INDEX_MAX {
            return false;
        }
        let prev = self.kept_index_entries.fetch_add(n, Ordering::AcqRel);
        if prev + n > KEPT_INDEX_BUDGET {
            self.kept_index_entries.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Give back what [`Fs::charge_kept_index`] charged.
    pub fn uncharge_kept_index(&self, n: usize) {
        self.kept_index_entries.fetch_sub(n, Ordering::AcqRel);
    }

    /// Index entries now charged (tests).
    pub fn kept_index_entries(&self) -> usize {
        self.kept_index_entries.load(Ordering::Acquire)
    }

    /// Record corruption: log the first report of this mount, return EIO.
    pub fn corrupt(&self, what: std::fmt::Arguments<'_>) -> Errno {
        if !self.corrupt_logged.swap(true, Ordering::AcqRel) {
            log::error!("msdosfs: corrupt file system: {what} (further reports suppressed)");
        } else {
            log::debug!("msdosfs: corrupt: {what}");
        }
        Errno::EIO
    }

    /// Has corruption been seen on this mount? (The clean bit then stays
    /// cleared at unmount, so that fsck.fat is run before the next use.)
    pub fn saw_corruption(&self) -> bool {
        self.corrupt_logged.load(Ordering::Acquire)
    }

    pub fn fat32(&self) -> bool {
        self.geo.fat_type == FatType::Fat32
    }

    // -- block I/O ---------------------------------------------------------

    /// Read the buffer of `size` bytes at file-system offset `off`.
    pub fn bread(&self, off: u64, size: usize) -> KResult<Buf> {
        self.check_range(off, size)?;
        self.cache.bread(self.base + off, size)
    }

    /// As `bread`, reading `count` buffers ahead when not cached.
    pub fn bread_ahead(&self, off: u64, size: usize, count: usize) -> KResult<Buf> {
        self.check_range(off, size)?;
        self.cache.bread_cluster(self.base + off, size, count)
    }

    /// The buffer at `off` without reading it (for a caller that fills it).
    pub fn getblk(&self, off: u64, size: usize) -> KResult<Buf> {
        self.check_range(off, size)?;
        self.cache.getblk(self.base + off, size)
    }

    fn check_range(&self, off: u64, size: usize) -> KResult<()> {
        match off.checked_add(size as u64) {
            Some(end) if end <= self.geo.fs_bytes => Ok(()),
            _ => Err(self.corrupt(format_args!(
                "I/O at {off}+{size} past the end of the file system"
            ))),
        }
    }

    /// Cluster size in bytes.
    pub fn csize(&self) -> usize {
        self.geo.cluster_size as usize
    }

    /// Read data cluster `c` (read-ahead `ahead` clusters when not cached).
    pub fn bread_cluster(&self, c: u32, ahead: usize) -> KResult<Buf> {
        if !self.geo.valid_cluster(c) {
            return Err(self.corrupt(format_args!("cluster {c} out of range")));
        }
        self.bread_ahead(self.geo.cluster_offset(c), self.csize(), ahead.max(1))
    }

    /// The buffer of data cluster `c`, not read (zeroes unless cached).
    pub fn getblk_cluster(&self, c: u32) -> KResult<Buf> {
        if !self.geo.valid_cluster(c) {
            return Err(self.corrupt(format_args!("cluster {c} out of range")));
        }
        self.getblk(self.geo.cluster_offset(c), self.csize())
    }

    // -- FAT entries -------------------------------------------------------

    fn fat_block(&self) -> usize {
        self.geo.sector_size as usize
    }

    /// Byte position of cluster `c`'s entry inside a FAT copy.
    fn entry_pos(&self, c: u32) -> u64 {
        match self.geo.fat_type {
            FatType::Fat12 => c as u64 + c as u64 / 2,
            FatType::Fat16 => c as u64 * 2,
            FatType::Fat32 => c as u64 * 4,
        }
    }

    fn entry_len(&self) -> usize {
        match self.geo.fat_type {
            FatType::Fat12 | FatType::Fat16 => 2,
            FatType::Fat32 => 4,
        }
    }

    /// Read `n` (<= 4) bytes at `pos` of the FAT copy at `copy`.
    fn fat_read_raw(&self, copy: u64, pos: u64, n: usize) -> KResult<[u8; 4]> {
        let fb = self.fat_block() as u64;
        let mut out = [0u8; 4];
        let mut done = 0;
        while done < n {
            let p = pos + done as u64;
            let blk = p - p % fb;
            let inb = (p % fb) as usize;
            let b = self.bread_ahead(copy + blk, fb as usize, FAT_READAHEAD)?;
            let k = (fb as usize - inb).min(n - done);
            out[done..done + k].copy_from_slice(b.data().get(inb..inb + k).ok_or(Errno::EIO)?);
            done += k;
        }
        Ok(out)
    }

    /// Write `n` (<= 4) bytes at `pos` of every FAT copy, merging with
    /// `keep` (bits of the old bytes to keep, same layout).
    fn fat_write_raw(&self, pos: u64, val: [u8; 4], keep: [u8; 4], n: usize) -> KResult<()> {
        let fb = self.fat_block() as u64;
        for copy in self.geo.fat_copies() {
            let mut done = 0;
            while done < n {
                let p = pos + done as u64;
                let blk = p - p % fb;
                let inb = (p % fb) as usize;
                let mut b = self.bread_ahead(copy + blk, fb as usize, FAT_READAHEAD)?;
                let k = (fb as usize - inb).min(n - done);
                let d = b.data_mut().get_mut(inb..inb + k).ok_or(Errno::EIO)?;
                for i in 0..k {
                    d[i] = (d[i] & keep[done + i]) | (val[done + i] & !keep[done + i]);
                }
                b.bdwrite();
                done += k;
            }
        }
        Ok(())
    }

    /// The raw FAT entry of cluster `c` (0..=max_cluster, and 0/1 for the
    /// reserved entries).
    pub fn fat_get(&self, c: u32) -> KResult<u32> {
        if c > self.geo.max_cluster() {
            return Err(self.corrupt(format_args!("FAT entry {c} out of range")));
        }
        let raw = self.fat_read_raw(
            self.geo.fat_read_copy(),
            self.entry_pos(c),
            self.entry_len(),
        )?;
        Ok(match self.geo.fat_type {
            FatType::Fat12 => {
                let v = u16::from_le_bytes([raw[0], raw[1]]) as u32;
                if c & 1 == 1 {
                    v >> 4
                } else {
                    v & 0xFFF
                }
            }
            FatType::Fat16 => u16::from_le_bytes([raw[0], raw[1]]) as u32,
            FatType::Fat32 => u32::from_le_bytes(raw) & 0x0FFF_FFFF,
        })
    }

    /// Set the FAT entry of cluster `c` in every copy (FAT32 keeps the top
    /// four bits; FAT12 keeps the neighbouring nibble).
    pub fn fat_set(&self, c: u32, v: u32) -> KResult<()> {
        if c > self.geo.max_cluster() {
            return Err(Errno::EIO);
        }
        let pos = self.entry_pos(c);
        match self.geo.fat_type {
            FatType::Fat12 => {
                let v = v & 0xFFF;
                let (val, keep) = if c & 1 == 1 {
                    ((v << 4) as u16, 0x000Fu16)
                } else {
                    (v as u16, 0xF000u16)
                };
                let vb = val.to_le_bytes();
                let kb = keep.to_le_bytes();
                self.fat_write_raw(pos, [vb[0], vb[1], 0, 0], [kb[0], kb[1], 0, 0], 2)
            }
            FatType::Fat16 => {
                let vb = (v as u16).to_le_bytes();
                self.fat_write_raw(pos, [vb[0], vb[1], 0, 0], [0; 4], 2)
            }
            FatType::Fat32 => {
                let vb = (v & 0x0FFF_FFFF).to_le_bytes();
                self.fat_write_raw(pos, vb, 0xF000_0000u32.to_le_bytes(), 4)
            }
        }
    }

    /// Is `v` an end-of-chain mark?
    pub fn is_eoc(&self, v: u32) -> bool {
        v >= self.geo.fat_type.eoc_min()
    }

    /// The cluster after `c` in its chain: `Ok(None)` at the end of the
    /// chain, EIO (logged) for a free, bad, reserved or out-of-range link.
    pub fn next_cluster(&self, c: u32) -> KResult<Option<u32>> {
        let v = self.fat_get(c)?;
        if self.is_eoc(v) {
            return Ok(None);
        }
        if !self.geo.valid_cluster(v) {
            return Err(self.corrupt(format_args!(
                "cluster {c} links to {v:#x} (free, bad or out of range)"
            )));
        }
        Ok(Some(v))
    }

    /// Visit the FAT entries of clusters `from..=to` in order, reading block
    /// by block; `f` returns false to stop.
    pub fn fat_scan(&self, from: u32, to: u32, mut f: impl FnMut(u32, u32) -> bool) -> KResult<()> {
        let to = to.min(self.geo.max_cluster());
        if from > to {
            return Ok(());
        }
        let copy = self.geo.fat_read_copy();
        let fb = self.fat_block() as u64;
        if self.geo.fat_type == FatType::Fat12 {
            // At most 4086 entries (6 KiB): one pass entry by entry.
            for c in from..=to {
                if !f(c, self.fat_get(c)?) {
                    break;
                }
            }
            return Ok(());
        }
        let el = self.entry_len() as u64;
        let mut c = from;
        while c <= to {
            let pos = self.entry_pos(c);
            let blk = pos - pos % fb;
            let b = self.bread_ahead(copy + blk, fb as usize, FAT_READAHEAD)?;
            let d = b.data();
            let mut p = (pos - blk) as usize;
            while p + el as usize <= d.len() && c <= to {
                let v = if el == 2 {
                    u16::from_le_bytes([d[p], d[p + 1]]) as u32
                } else {
                    u32::from_le_bytes([d[p], d[p + 1], d[p + 2], d[p + 3]]) & 0x0FFF_FFFF
                };
                if !f(c, v) {
                    return Ok(());
                }
                p += el as usize;
                c += 1;
            }
        }
        Ok(())
    }

    /// Count the free clusters (a FAT scan).
    pub fn count_free(&self) -> KResult<u32> {
        let mut n = 0u32;
        self.fat_scan(2, self.geo.max_cluster(), |_, v| {
            if v == 0 {
                n += 1;
            }
            true
        })?;
        Ok(n)
    }

    /// Free clusters, counting once if FSInfo gave no valid hint.
    pub fn free_clusters(&self) -> KResult<u32> {
        let mut st = self.fat.enter();
        if let Some(f) = st.free {
            return Ok(f);
        }
        let n = self.count_free()?;
        st.free = Some(n);
        Ok(n)
    }

    /// Allocate `n` clusters linked into one chain ending in EOC, preferring
    /// contiguous runs from the next-free hint; if `prev` is given the new
    /// chain is linked after it. Returns the clusters. ENOSPC when fewer
    /// than `n` are free (nothing is allocated then).
    pub fn alloc_chain(&self, n: u32, prev: Option<u32>) -> KResult<Vec<u32>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut st = self.fat.enter();
        let max = self.geo.max_cluster();
        let start = if self.geo.valid_cluster(st.next_free) {
            st.next_free
        } else {
            2
        };
        let mut found: Vec<u32> = Vec::with_capacity(n as usize);
        let want = n as usize;
        self.fat_scan(start, max, |c, v| {
            if v == 0 {
                found.push(c);
            }
            found.len() < want
        })?;
        if found.len() < want && start > 2 {
            self.fat_scan(2, start - 1, |c, v| {
                if v == 0 {
                    found.push(c);
                }
                found.len() < want
            })?;
        }
        if found.len() < want {
            st.free = Some(found.len() as u32);
            return Err(Errno::ENOSPC);
        }
        // Write the new chain (terminated) first, then link it in.
        let eoc = self.geo.fat_type.eoc();
        for i in 0..found.len() {
            let next = found.get(i + 1).copied().unwrap_or(eoc);
            self.fat_set(found[i], next)?;
        }
        if let Some(p) = prev {
            self.fat_set(p, found[0])?;
        }
        if let Some(f) = st.free.as_mut() {
            *f = f.saturating_sub(n);
        }
        let last = found[found.len() - 1];
        st.next_free = if last >= max { 2 } else { last + 1 };
        for &c in &found {
            // Stale cached contents of a freed cluster must not come back.
            self.cache.binval(self.base + self.geo.cluster_offset(c));
        }
        Ok(found)
    }

    /// Free the chain starting at `c` (bounded: every step frees a cluster,
    /// so a cycle ends at the first already-free entry). Corruption in the
    /// chain stops the walk with a log line; what was freed stays freed.
    pub fn free_chain(&self, c: u32) -> KResult<()> {
        if c == 0 {
            return Ok(());
        }
        let mut st = self.fat.enter();
        let mut cur = c;
        let mut freed = 0u32;
        for _ in 0..=self.geo.cluster_count {
            if !self.geo.valid_cluster(cur) {
                let _ = self.corrupt(format_args!("freeing chain: cluster {cur:#x} out of range"));
                break;
            }
            let v = self.fat_get(cur)?;
            if v == 0 {
                let _ = self.corrupt(format_args!("freeing chain: cluster {cur} already free"));
                break;
            }
            self.fat_set(cur, 0)?;
            self.cache.binval(self.base + self.geo.cluster_offset(cur));
            freed += 1;
            if self.is_eoc(v) {
                break;
            }
            cur = v;
        }
        if let Some(f) = st.free.as_mut() {
            *f = f.saturating_add(freed).min(self.geo.cluster_count);
        }
        Ok(())
    }

    /// Terminate a chain at `c` (its entry becomes EOC) and free the rest.
    pub fn truncate_chain_after(&self, c: u32) -> KResult<()> {
        let v = self.fat_get(c)?;
        self.fat_set(c, self.geo.fat_type.eoc())?;
        if !self.is_eoc(v) && self.geo.valid_cluster(v) {
            self.free_chain(v)?;
        }
        Ok(())
    }

    /// Count the clusters of the chain at `c`, at most `limit` (EIO on a
    /// broken chain or more than `limit`).
    pub fn chain_len(&self, c: u32, limit: u32) -> KResult<u32> {
        if c == 0 {
            return Ok(0);
        }
        let mut n = 1u32;
        let mut cur = c;
        while let Some(nx) = self.next_cluster(cur)? {
            n += 1;
            if n > limit {
                return Err(self.corrupt(format_args!(
                    "chain at {c} longer than {limit} clusters (a cycle?)"
                )));
            }
            cur = nx;
        }
        Ok(n)
    }

    // -- clean bit, FSInfo -------------------------------------------------

    /// Is the clean-shutdown bit of FAT\[1\] set (always true on FAT12)?
    pub fn is_clean(&self) -> KResult<bool> {
        match self.geo.fat_type.clean_bit() {
            None => Ok(true),
            Some(bit) => Ok(self.fat_get(1)? & bit != 0),
        }
    }

    /// Set or clear the clean bit in every FAT copy and write it now.
    pub fn set_clean(&self, clean: bool) -> KResult<()> {
        let Some(bit) = self.geo.fat_type.clean_bit() else {
            return Ok(());
        };
        let v = self.fat_get(1)?;
        let nv = if clean { v | bit } else { v & !bit };
        if nv != v {
            self.fat_set(1, nv)?;
        }
        self.cache.sync(true)
    }

    /// Write the free count and next-free hint into FSInfo (FAT32 with a
    /// valid FSInfo sector only).
    pub fn update_fsinfo(&self) -> KResult<()> {
        let Some(sec) = self.geo.fsinfo_sector.filter(|_| self.fsinfo_ok) else {
            return Ok(());
        };
        // An unknown count is counted now (once), so FSInfo is never left
        // stale or "unknown" by us.
        let free = self.free_clusters()?;
        let next = self.fat.enter().next_free;
        let bs = self.geo.sector_size as usize;
        let mut b = self.bread(sec as u64 * bs as u64, bs)?;
        if !FsInfo::signatures_ok(b.data()) {
            return Ok(());
        }
        put32(b.data_mut(), FSI_FREE_COUNT, free)?;
        put32(b.data_mut(), FSI_NXT_FREE, next)?;
        b.bdwrite();
        Ok(())
    }

    // -- inode numbers -----------------------------------------------------

    /// The inode number for the entry at `pos` (byte offset of its short
    /// entry): the live node's number if one is there, else `pos / 32`
    /// unless that number is still used by a node that moved (renamed or
    /// unlinked while open), else a fresh number.
    pub fn ino_for_pos(&self, pos: u64) -> u64 {
        let t = self.nodes.enter();
        if let Some(&i) = t.pos2ino.get(&pos) {
            return i;
        }
        let cand = pos / 32;
        match t.live.get(&cand) {
            None => cand,
            Some(Some(p)) if *p == pos => cand,
            _ => self.next_ino.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A node with `ino` at `pos` became live (vcache load).
    pub fn node_loaded(&self, ino: u64, pos: Option<u64>) {
        let mut t = self.nodes.enter();
        t.live.insert(ino, pos);
        if let Some(p) = pos {
            if p / 32 != ino {
                t.pos2ino.insert(p, ino);
            }
        }
    }

    /// The node `ino` moved from `old` to `new` (None: unlinked).
    pub fn node_moved(&self, ino: u64, old: Option<u64>, new: Option<u64>) {
        let mut t = self.nodes.enter();
        if let Some(o) = old {
            if t.pos2ino.get(&o) == Some(&ino) {
                t.pos2ino.remove(&o);
            }
        }
        if let Some(n) = new {
            if n / 32 != ino {
                t.pos2ino.insert(n, ino);
            } else {
                t.pos2ino.remove(&n);
            }
        }
        t.live.insert(ino, new);
    }

    /// The node `ino` was reclaimed.
    pub fn node_gone(&self, ino: u64) {
        let mut t = self.nodes.enter();
        if let Some(Some(p)) = t.live.remove(&ino) {
            if t.pos2ino.get(&p) == Some(&ino) {
                t.pos2ino.remove(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = MsdosOptions::parse(&MountArgs::parse(
            "uid=5,gid=6,umask=027,tz=UTC,shortname=winnt,partition=2",
        ))
        .unwrap();
        assert_eq!(
            (o.uid, o.gid, o.fmask, o.dmask, o.tz_off),
            (5, 6, 0o027, 0o027, 0)
        );
        assert_eq!(o.shortname, ShortnameMode::WinNt);
        assert_eq!(o.partition, Some(2));
        let o = MsdosOptions::parse(&MountArgs::parse("fmask=133,dmask=022,tz=+02:00")).unwrap();
        assert_eq!((o.fmask, o.dmask, o.tz_off), (0o133, 0o022, 7200));
        let o = MsdosOptions::parse(&MountArgs::parse("m=644,M=755,u=1000,g=100")).unwrap();
        assert_eq!((o.fmask, o.dmask, o.uid, o.gid), (0o133, 0o022, 1000, 100));
        let o = MsdosOptions::parse(&MountArgs::parse("time_offset=-60")).unwrap();
        assert_eq!(o.tz_off, -3600);
        let o = MsdosOptions::parse(&MountArgs::parse("cache=64m,sync")).unwrap();
        assert_eq!((o.cache_bytes, o.sync), (64 << 20, true));
        for bad in [
            "cache=1k",
            "cache=lots",
            "bogus",
            "uid=x",
            "umask=999",
            "tz=Mars",
            "partition=0",
            "shortname=x",
            "uid",
        ] {
            assert_eq!(
                MsdosOptions::parse(&MountArgs::parse(bad)),
                Err(Errno::EINVAL),
                "{bad}"
            );
        }
    }
}
