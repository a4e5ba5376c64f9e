//! Directory entries: the 32-byte short entry, VFAT long-name entries,
//! name rules (what FAT can store), short-name generation with `~N` tails,
//! and DOS date/time conversion.
//!
//! Facts from the Microsoft FAT specification (sections 6 and 7) and NetBSD
//! `sys/fs/msdosfs/direntry.h`, `msdosfs_conv.c`. Short names above 0x7F are
//! read as code page 437 (Linux's default `codepage=437`); names we create
//! use only ASCII in the short name (anything else makes the short name
//! lossy, hence a `~N` tail, and the long name carries the real one).

use rumpkern::Timespec;

use crate::format::{le16, le32};

/// Size of one directory slot.
pub const DIRENT_SIZE: usize = 32;
/// Attribute bits.
pub const ATTR_RO: u8 = 0x01;
pub const ATTR_HIDDEN: u8 = 0x02;
pub const ATTR_SYSTEM: u8 = 0x04;
pub const ATTR_VOLUME: u8 = 0x08;
pub const ATTR_DIR: u8 = 0x10;
pub const ATTR_ARCH: u8 = 0x20;
/// The attribute value of a long-name slot.
pub const ATTR_LFN: u8 = 0x0F;
/// First name byte of a free slot; 0 marks the end of the directory.
pub const SLOT_DELETED: u8 = 0xE5;
pub const SLOT_END: u8 = 0x00;
/// NT case bits (byte 12): base / extension shown in lower case.
pub const NT_LOWER_BASE: u8 = 0x08;
pub const NT_LOWER_EXT: u8 = 0x10;
/// Last-in-sequence flag of an LFN ordinal.
pub const LFN_LAST: u8 = 0x40;
/// UTF-16 units per LFN slot.
pub const LFN_CHARS: usize = 13;
/// Most UTF-16 units in a long name.
pub const LFN_MAX: usize = 255;
/// Most slots a directory may have (the FAT specification's limit).
pub const MAX_DIR_SLOTS: u32 = 65536;

/// Byte offsets of the 13 UTF-16 units inside an LFN slot.
const LFN_OFFS: [usize; LFN_CHARS] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];

/// A decoded short (8.3) entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShortEntry {
    /// Name as stored: 8 bytes base + 3 bytes extension, blank padded.
    pub name: [u8; 11],
    pub attr: u8,
    pub ntres: u8,
    pub ctime_tenth: u8,
    pub ctime: u16,
    pub cdate: u16,
    pub adate: u16,
    pub start: u32,
    pub mtime: u16,
    pub mdate: u16,
    pub size: u32,
}

impl ShortEntry {
    /// Decode a 32-byte slot (no validity judgement).
    pub fn parse(b: &[u8; 32]) -> ShortEntry {
        let mut name = [0u8; 11];
        name.copy_from_slice(&b[0..11]);
        let g16 = |o| le16(b, o).unwrap_or(0);
        ShortEntry {
            name,
            attr: b[11],
            ntres: b[12],
            ctime_tenth: b[13],
            ctime: g16(14),
            cdate: g16(16),
            adate: g16(18),
            start: ((g16(20) as u32) << 16) | g16(26) as u32,
            mtime: g16(22),
            mdate: g16(24),
            size: le32(b, 28).unwrap_or(0),
        }
    }

    /// Encode into a 32-byte slot. `fat32`: store the high half of the start
    /// cluster (FAT12/16 keep that field 0).
    pub fn encode(&self, fat32: bool) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..11].copy_from_slice(&self.name);
        b[11] = self.attr;
        b[12] = self.ntres & (NT_LOWER_BASE | NT_LOWER_EXT);
        b[13] = self.ctime_tenth;
        b[14..16].copy_from_slice(&self.ctime.to_le_bytes());
        b[16..18].copy_from_slice(&self.cdate.to_le_bytes());
        b[18..20].copy_from_slice(&self.adate.to_le_bytes());
        let hi = if fat32 { (self.start >> 16) as u16 } else { 0 };
        b[20..22].copy_from_slice(&hi.to_le_bytes());
        b[22..24].copy_from_slice(&self.mtime.to_le_bytes());
        b[24..26].copy_from_slice(&self.mdate.to_le_bytes());
        b[26..28].copy_from_slice(&(self.start as u16).to_le_bytes());
        b[28..32].copy_from_slice(&self.size.to_le_bytes());
        b
    }

    pub fn is_dir(&self) -> bool {
        self.attr & ATTR_DIR != 0
    }

    /// `.` or `..`.
    pub fn is_dot(&self) -> bool {
        &self.name == b".          " || &self.name == b"..         "
    }

    /// The name to show when there is no long name: `BASE.EXT`, with the NT
    /// case bits applied when `use_case` (and lower case throughout when
    /// `lower`), code page 437 above 0x7F.
    pub fn display_name(&self, use_case: bool, lower: bool) -> String {
        let mut n = self.name;
        if n[0] == 0x05 {
            n[0] = SLOT_DELETED;
        }
        let base_end = n[..8].iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
        let ext_end = n[8..].iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
        let lb = lower || use_case && self.ntres & NT_LOWER_BASE != 0;
        let le = lower || use_case && self.ntres & NT_LOWER_EXT != 0;
        let mut s = String::with_capacity(12);
        for &c in &n[..base_end] {
            s.push(if lb {
                cp437_char(c).to_ascii_lowercase()
            } else {
                cp437_char(c)
            });
        }
        if ext_end > 0 {
            s.push('.');
            for &c in &n[8..8 + ext_end] {
                s.push(if le {
                    cp437_char(c).to_ascii_lowercase()
                } else {
                    cp437_char(c)
                });
            }
        }
        s
    }
}

/// The checksum of a short name that every LFN slot of it carries.
pub fn lfn_checksum(name: &[u8; 11]) -> u8 {
    let mut sum: u8 = 0;
    for &c in name {
        sum = sum.rotate_right(1).wrapping_add(c);
    }
    sum
}

/// Is this slot a long-name slot?
pub fn is_lfn(b: &[u8; 32]) -> bool {
    b[11] & 0x3F == ATTR_LFN && b[0] != SLOT_DELETED && b[0] != SLOT_END
}

/// The 13 UTF-16 units of an LFN slot.
pub fn lfn_units(b: &[u8; 32]) -> [u16; LFN_CHARS] {
    let mut u = [0u16; LFN_CHARS];
    for (i, &o) in LFN_OFFS.iter().enumerate() {
        u[i] = u16::from_le_bytes([b[o], b[o + 1]]);
    }
    u
}

/// Accumulates the LFN slots that precede a short entry and checks that
/// they form one valid sequence (ordinals N|0x40, N-1, ..., 1, one
/// checksum) for that entry. Slots that break the rules are dropped; the
/// entry then shows its short name.
#[derive(Default)]
pub struct LfnBuilder {
    /// Units by ordinal (index 0 = ordinal 1).
    parts: Vec<[u16; LFN_CHARS]>,
    /// Next expected ordinal (counting down), 0 when not in a sequence.
    expect: u8,
    checksum: u8,
    /// Slot index of the first slot of the sequence.
    pub first_slot: u32,
    total: u8,
}

impl LfnBuilder {
    /// Forget any partial sequence.
    pub fn reset(&mut self) {
        self.parts.clear();
        self.expect = 0;
        self.total = 0;
    }

    /// Feed one LFN slot found at `slot`.
    pub fn push(&mut self, b: &[u8; 32], slot: u32) {
        let ord = b[0];
        let n = ord & 0x3F;
        if ord & LFN_LAST != 0 {
            self.reset();
            if n == 0 || n as usize > LFN_MAX.div_ceil(LFN_CHARS) {
                return;
            }
            self.total = n;
            self.expect = n;
            self.checksum = b[13];
            self.first_slot = slot;
            self.parts = vec![[0u16; LFN_CHARS]; n as usize];
        } else if self.expect == 0 || n != self.expect || b[13] != self.checksum {
            self.reset();
            return;
        }
        if let Some(p) = self.parts.get_mut(n as usize - 1) {
            *p = lfn_units(b);
        }
        // After ordinal 1, `expect` is 0 with the parts present: complete.
        self.expect = n - 1;
    }

    /// The long name for the short entry `name`, if a complete sequence with
    /// the right checksum precedes it (UTF-16 decoded; unpaired surrogates
    /// make the name invalid). Resets the builder.
    pub fn finish(&mut self, name: &[u8; 11]) -> Option<(String, u32)> {
        let ok = self.total > 0 && self.expect == 0 && self.checksum == lfn_checksum(name);
        let parts = std::mem::take(&mut self.parts);
        let first = self.first_slot;
        self.reset();
        if !ok {
            return None;
        }
        let mut units: Vec<u16> = Vec::with_capacity(parts.len() * LFN_CHARS);
        'outer: for p in &parts {
            for &u in p {
                if u == 0 {
                    break 'outer;
                }
                units.push(u);
            }
        }
        if units.is_empty() || units.len() > LFN_MAX {
            return None;
        }
        let s = String::from_utf16(&units).ok()?;
        if s.contains(['/', '\0']) {
            return None;
        }
        Some((s, first))
    }

    /// Is a sequence in progress?
    pub fn active(&self) -> bool {
        self.total > 0
    }
}

/// Number of LFN slots `name` needs.
pub fn lfn_slot_count(name: &str) -> u32 {
    name.encode_utf16().count().div_ceil(LFN_CHARS) as u32
}

/// Build the LFN slots for `name` (already validated) belonging to the
/// short name `short`, in on-disk order (highest ordinal first).
pub fn lfn_slots(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let n = units.len().div_ceil(LFN_CHARS);
    let sum = lfn_checksum(short);
    let mut out = Vec::with_capacity(n);
    for ord in (1..=n).rev() {
        let mut b = [0u8; 32];
        b[0] = ord as u8 | if ord == n { LFN_LAST } else { 0 };
        b[11] = ATTR_LFN;
        b[13] = sum;
        for (i, &o) in LFN_OFFS.iter().enumerate() {
            let k = (ord - 1) * LFN_CHARS + i;
            let u = match k.cmp(&units.len()) {
                std::cmp::Ordering::Less => units[k],
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 0xFFFF,
            };
            b[o..o + 2].copy_from_slice(&u.to_le_bytes());
        }
        out.push(b);
    }
    out
}

// ---------------------------------------------------------------------------
// Names

/// Characters a long name may not contain (besides controls below 0x20).
const LFN_INVALID: &[char] = &['"', '*', '/', ':', '<', '>', '?', '\\', '|'];
/// Extra characters a short name may not contain.
const SFN_INVALID: &[u8] = b"+,;=[]. \"*/:<>?\\|";

/// Normalise a name for storing or looking up, as Linux vfat does: UTF-8
/// required (EINVAL otherwise... the caller maps), trailing dots stripped.
/// Returns `None` when the name cannot exist on FAT: empty after stripping,
/// a forbidden character, or more than 255 UTF-16 units.
pub fn normalize(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    if s == "." || s == ".." {
        return Some(s.to_string());
    }
    let t = s.trim_end_matches('.');
    if t.is_empty()
        || t.chars()
            .any(|c| (c as u32) < 0x20 || LFN_INVALID.contains(&c))
    {
        return None;
    }
    if t.encode_utf16().count() > LFN_MAX {
        return None;
    }
    Some(t.to_string())
}

/// May a new entry be called `name` (already normalised)? Linux vfat's
/// extra rules for created names: no trailing space, and not one of the
/// MS-DOS device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`..`COM9`,
/// `LPT1`..`LPT9`, with or without an extension).
pub fn valid_new_name(name: &str) -> bool {
    if name.ends_with(' ') {
        return false;
    }
    let base = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    let dev3 = ["CON", "PRN", "AUX", "NUL"];
    let dev4 = ["COM", "LPT"];
    let b = base.as_bytes();
    !(dev3.contains(&base.as_str())
        || b.len() == 4
            && dev4.iter().any(|d| base.starts_with(d))
            && (b'1'..=b'9').contains(&b[3]))
}

/// Case-fold a name for comparison (Unicode simple upper case, one
/// character at a time, as Windows' up-case table does).
pub fn fold(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_ascii_uppercase()
            } else {
                let mut u = c.to_uppercase();
                match (u.next(), u.next()) {
                    (Some(x), None) => x,
                    _ => c,
                }
            }
        })
        .collect()
}

/// Do two names match case-insensitively?
pub fn names_equal(a: &str, b: &str) -> bool {
    a == b || fold(a) == fold(b)
}

/// The short-name form of a long name (the "basis name" of the
/// specification) and whether the conversion lost information (then a `~N`
/// tail is required). Also returns the NT case bits that would reproduce
/// the name exactly when it is 8.3 in one case per part (`winnt` style).
pub struct Basis {
    pub base: Vec<u8>,
    pub ext: Vec<u8>,
    pub lossy: bool,
    /// The name is exactly `BASE.EXT` in upper case: no long name needed.
    pub exact_upper: bool,
    /// The NT case bits reproducing the name, when each part is in one case.
    pub nt_case: Option<u8>,
}

fn sfn_char(c: char) -> (u8, bool) {
    if c.is_ascii() {
        let b = c as u8;
        if b < 0x20 || SFN_INVALID.contains(&b) {
            (b'_', true)
        } else {
            (b.to_ascii_uppercase(), false)
        }
    } else {
        (b'_', true)
    }
}

/// Compute the basis name of `name` (already normalised).
pub fn basis(name: &str) -> Basis {
    let mut lossy = false;
    // Leading dots and all spaces are removed.
    let trimmed = name.trim_start_matches('.');
    if trimmed.len() != name.len() {
        lossy = true;
    }
    let (b, e) = match trimmed.rfind('.') {
        Some(p) => (&trimmed[..p], &trimmed[p + 1..]),
        None => (trimmed, ""),
    };
    let mut conv = |part: &str, max: usize| {
        let mut out = Vec::new();
        for c in part.chars() {
            if c == ' ' {
                lossy = true;
                continue;
            }
            if c == '.' {
                lossy = true;
                continue;
            }
            let (x, l) = sfn_char(c);
            lossy |= l;
            if out.len() < max {
                out.push(x);
            } else {
                lossy = true;
            }
        }
        out
    };
    let base = conv(b, 8);
    let ext = conv(e, 3);
    if base.is_empty() {
        lossy = true;
    }
    let mut exact_upper = !lossy;
    let case = |part: &str| -> Option<Option<bool>> {
        // Some(None): no letters; Some(Some(true)): all lower; Some(Some(false)): all upper; None: mixed
        let lower = part.chars().any(|c| c.is_ascii_lowercase());
        let upper = part.chars().any(|c| c.is_ascii_uppercase());
        match (lower, upper) {
            (true, true) => None,
            (true, false) => Some(Some(true)),
            (false, true) => Some(Some(false)),
            (false, false) => Some(None),
        }
    };
    let mut nt_case = None;
    if !lossy {
        if let (Some(cb), Some(ce)) = (case(b), case(e)) {
            let mut bits = 0;
            if cb == Some(true) {
                bits |= NT_LOWER_BASE;
            }
            if ce == Some(true) {
                bits |= NT_LOWER_EXT;
            }
            nt_case = Some(bits);
            if bits != 0 {
                exact_upper = false;
            }
        } else {
            exact_upper = false;
        }
    }
    Basis {
        base,
        ext,
        lossy,
        exact_upper,
        nt_case,
    }
}

/// The 11-byte short name for `base`/`ext` with tail `~n` (0 = no tail).
pub fn short_name(base: &[u8], ext: &[u8], n: u32) -> [u8; 11] {
    let mut out = [b' '; 11];
    let mut b: Vec<u8> = if base.is_empty() {
        b"_".to_vec()
    } else {
        base.to_vec()
    };
    if n > 0 {
        let tail = format!("~{n}");
        let keep = 8usize.saturating_sub(tail.len()).min(b.len());
        b.truncate(keep);
        b.extend_from_slice(tail.as_bytes());
    }
    for (i, &c) in b.iter().take(8).enumerate() {
        out[i] = c;
    }
    for (i, &c) in ext.iter().take(3).enumerate() {
        out[8 + i] = c;
    }
    if out[0] == SLOT_DELETED {
        out[0] = 0x05;
    }
    out
}

// ---------------------------------------------------------------------------
// Time

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Civil date of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Seconds since the epoch of a DOS date/time stored in a zone `tz_off`
/// seconds east of UTC, plus `tenth` (units of 10 ms, 0..199). Out of
/// range fields are clamped (FAT tools write date 0 for "unknown").
pub fn dos_to_unix(date: u16, time: u16, tenth: u8, tz_off: i64) -> Timespec {
    if date == 0 {
        return Timespec::new(315_532_800 - tz_off, 0); // 1980-01-01
    }
    let y = 1980 + (date >> 9) as i64;
    let m = ((date >> 5) & 0xF).clamp(1, 12) as i64;
    let d = (date & 0x1F).max(1) as i64;
    let hh = ((time >> 11) as i64).min(23);
    let mm = (((time >> 5) & 0x3F) as i64).min(59);
    let ss = ((time & 0x1F) as i64 * 2).min(59);
    let extra = (tenth.min(199) as i64) * 10; // milliseconds
    let secs = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss + extra / 1000;
    Timespec::new(secs - tz_off, ((extra % 1000) * 1_000_000) as u32)
}

/// DOS (date, time, tenth) of a time, in a zone `tz_off` seconds east of
/// UTC; clamped to the FAT range 1980-01-01 .. 2107-12-31.
pub fn unix_to_dos(t: Timespec, tz_off: i64) -> (u16, u16, u8) {
    let local = t.sec + tz_off;
    let min = days_from_civil(1980, 1, 1) * 86400;
    let max = days_from_civil(2107, 12, 31) * 86400 + 86399;
    let (local, nsec) = if local < min {
        (min, 0)
    } else if local > max {
        (max, 0)
    } else {
        (local, t.nsec)
    };
    let days = local.div_euclid(86400);
    let rem = local.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let date = (((y - 1980) as u16) << 9) | ((m as u16) << 5) | d as u16;
    let time =
        (((rem / 3600) as u16) << 11) | ((((rem / 60) % 60) as u16) << 5) | ((rem % 60) / 2) as u16;
    let tenth = ((rem % 2) * 100 + (nsec / 10_000_000) as i64) as u8;
    (date, time, tenth)
}

// ---------------------------------------------------------------------------
// Code page 437

const CP437_HIGH: [char; 128] = [
    'Ç', 'ü', 'é', 'â', 'ä', 'à', 'å', 'ç', 'ê', 'ë', 'è', 'ï', 'î', 'ì', 'Ä', 'Å', 'É', 'æ', 'Æ',
    'ô', 'ö', 'ò', 'û', 'ù', 'ÿ', 'Ö', 'Ü', '¢', '£', '¥', '₧', 'ƒ', 'á', 'í', 'ó', 'ú', 'ñ', 'Ñ',
    'ª', 'º', '¿', '⌐', '¬', '½', '¼', '¡', '«', '»', '░', '▒', '▓', '│', '┤', '╡', '╢', '╖', '╕',
    '╣', '║', '╗', '╝', '╜', '╛', '┐', '└', '┴', '┬', '├', '─', '┼', '╞', '╟', '╚', '╔', '╩', '╦',
    '╠', '═', '╬', '╧', '╨', '╤', '╥', '╙', '╘', '╒', '╓', '╫', '╪', '┘', '┌', '█', '▄', '▌', '▐',
    '▀', 'α', 'ß', 'Γ', 'π', 'Σ', 'σ', 'µ', 'τ', 'Φ', 'Θ', 'Ω', 'δ', '∞', 'φ', 'ε', '∩', '≡', '±',
    '≥', '≤', '⌠', '⌡', '÷', '≈', '°', '∙', '·', '√', 'ⁿ', '²', '■', '\u{a0}',
];

/// A short-name byte as a character (ASCII, or code page 437 above 0x7F;
/// controls become `_`).
pub fn cp437_char(c: u8) -> char {
    match c {
        0..=0x1F => '_',
        0x20..=0x7F => c as char,
        _ => CP437_HIGH[(c - 0x80) as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_and_lfn_roundtrip() {
        let short = short_name(b"LONGFI", b"TXT", 1);
        assert_eq!(&short, b"LONGFI~1TXT");
        let name = "Long File Name with ünïcode ✓.txt";
        let slots = lfn_slots(name, &short);
        assert_eq!(slots.len(), name.encode_utf16().count().div_ceil(13));
        let mut b = LfnBuilder::default();
        for (i, s) in slots.iter().enumerate() {
            assert!(is_lfn(s));
            b.push(s, i as u32);
        }
        assert_eq!(b.finish(&short), Some((name.to_string(), 0)));
        // Wrong checksum: falls back.
        for (i, s) in slots.iter().enumerate() {
            b.push(s, i as u32);
        }
        assert_eq!(b.finish(b"OTHER   TXT"), None);
        // Broken sequence (a slot missing).
        if slots.len() > 1 {
            b.push(&slots[0], 0);
            b.push(&slots[slots.len() - 1], 1);
            // ordinal jumped: the builder dropped it
            assert_eq!(b.finish(&short), None);
        }
    }

    #[test]
    fn known_checksum() {
        // From the specification's algorithm: "FOO     BAR".
        let mut sum: u8 = 0;
        for &c in b"FOO     BAR" {
            sum = (if sum & 1 != 0 { 0x80u8 } else { 0 })
                .wrapping_add(sum >> 1)
                .wrapping_add(c);
        }
        assert_eq!(lfn_checksum(b"FOO     BAR"), sum);
    }

    #[test]
    fn names() {
        assert_eq!(normalize(b"foo.").as_deref(), Some("foo"));
        assert_eq!(normalize(b"a:b"), None);
        assert_eq!(normalize(b"..."), None);
        assert_eq!(normalize(&[0xff, 0xfe]), None);
        assert_eq!(normalize("x".repeat(256).as_bytes()), None);
        assert!(normalize("x".repeat(255).as_bytes()).is_some());
        for bad in [
            "trailing ",
            "CON",
            "con.txt",
            "Nul",
            "aux.c",
            "COM1",
            "lpt9.x",
            "prn",
        ] {
            assert!(!valid_new_name(bad), "{bad}");
        }
        for good in [
            " leading", "CONSOLE", "COM", "COM10", "lpt0", "mid dle", "nul1",
        ] {
            assert!(valid_new_name(good), "{good}");
        }
        assert!(names_equal("readme.TXT", "README.txt"));
        assert!(names_equal("ünï", "ÜNÏ"));
        let b = basis("README.TXT");
        assert!(b.exact_upper && !b.lossy);
        let b = basis("readme.txt");
        assert!(!b.exact_upper && !b.lossy);
        assert_eq!(b.nt_case, Some(NT_LOWER_BASE | NT_LOWER_EXT));
        let b = basis("ReadMe.txt");
        assert_eq!(b.nt_case, None);
        let b = basis("a long name.tar.gz");
        assert!(b.lossy);
        assert_eq!(b.base, b"ALONGNAM");
        assert_eq!(b.ext, b"GZ");
        let b = basis(".bashrc");
        assert!(b.lossy);
        assert_eq!(b.base, b"BASHRC");
        assert_eq!(&short_name(b"ALONGNAM", b"GZ", 1), b"ALONGN~1GZ ");
        assert_eq!(&short_name(b"ALONGNAM", b"GZ", 12), b"ALONG~12GZ ");
    }

    #[test]
    fn display() {
        let mut e = ShortEntry::parse(&[b' '; 32]);
        e.name = *b"README  TXT";
        e.ntres = NT_LOWER_EXT;
        assert_eq!(e.display_name(true, false), "README.txt");
        assert_eq!(e.display_name(false, false), "README.TXT");
        assert_eq!(e.display_name(false, true), "readme.txt");
        e.name = *b"\x05BC     \x80  ";
        assert_eq!(e.display_name(false, false), "σBC.Ç");
    }

    #[test]
    fn times() {
        // 2021-03-04 05:06:08 UTC
        let t = Timespec::new(1614834368, 0);
        let (d, tm, tenth) = unix_to_dos(t, 0);
        assert_eq!(d, ((2021 - 1980) << 9) | (3 << 5) | 4);
        assert_eq!(tm, (5 << 11) | (6 << 5) | 4);
        assert_eq!(tenth, 0);
        assert_eq!(dos_to_unix(d, tm, tenth, 0), t);
        let t2 = Timespec::new(1614834369, 500_000_000);
        let (d, tm, tenth) = unix_to_dos(t2, 3600);
        assert_eq!(tenth, 150);
        assert_eq!(dos_to_unix(d, tm, tenth, 3600), t2);
        assert_eq!(unix_to_dos(Timespec::new(0, 0), 0).0, 1 << 5 | 1);
    }
}
