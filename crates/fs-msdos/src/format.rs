//! On-disk format of FAT file systems: the boot sector and its BIOS
//! parameter block (BPB), the geometry derived from it, the FAT32 FSInfo
//! sector, and the MBR/GPT partition tables a whole-disk image carries.
//!
//! Facts from the Microsoft "FAT: General Overview of On-Disk Format"
//! (version 1.03) and NetBSD `sys/fs/msdosfs/bpb.h`, `bootsect.h`. Every
//! value read from the image is untrusted: [`Bpb::parse`] and
//! [`Geometry::new`] refuse a file system with a [`Refusal`] naming the
//! offending field, and every accessor is bounds-checked.
//!
//! The FAT type is decided by the count of data clusters, as the
//! specification says (fewer than 4085: FAT12; fewer than 65525: FAT16;
//! otherwise FAT32), with one exception shared with Linux: a boot sector with
//! the FAT32 layout (16-bit FAT size 0, no fixed root directory) is FAT32
//! whatever its cluster count, since it has no other consistent reading.

use std::fmt;

use rumpkern::KResult;

// ---------------------------------------------------------------------------
// Little-endian accessors (out of bounds reads give 0 / writes do nothing
// only where the caller has checked the length; the checked forms return EIO).

// The bounds-checked accessors are rumpkern's (EIO out of bounds, never a
// panic), under the short names this driver uses.
pub use rumpkern::bytes::{le16, le32, le64, put_le16 as put16, put_le32 as put32, put_u8 as put8, u8_at as le8};

// ---------------------------------------------------------------------------
// Refusals

/// Why a file system was refused at mount: the field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The on-disk field (BPB name), e.g. `"BPB_SecPerClus"`.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

fn refuse<T>(field: &'static str, why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        field,
        why: why.into(),
    })
}

// ---------------------------------------------------------------------------
// FAT types

/// The three FAT variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

impl FatType {
    /// Bits per FAT entry (12, 16, 28 used of 32).
    pub fn bits(self) -> u32 {
        match self {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        }
    }

    /// Entry mask (FAT32 entries use the low 28 bits).
    pub fn mask(self) -> u32 {
        match self {
            FatType::Fat12 => 0xFFF,
            FatType::Fat16 => 0xFFFF,
            FatType::Fat32 => 0x0FFF_FFFF,
        }
    }

    /// Smallest end-of-chain value.
    pub fn eoc_min(self) -> u32 {
        self.mask() & !7
    }

    /// The end-of-chain value we write.
    pub fn eoc(self) -> u32 {
        self.mask()
    }

    /// The "bad cluster" value.
    pub fn bad(self) -> u32 {
        self.mask() - 8
    }

    /// The clean-shutdown bit in FAT\[1\] (FAT16/FAT32 only).
    pub fn clean_bit(self) -> Option<u32> {
        match self {
            FatType::Fat12 => None,
            FatType::Fat16 => Some(0x8000),
            FatType::Fat32 => Some(0x0800_0000),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
            FatType::Fat32 => "FAT32",
        }
    }
}

/// Clusters below this count make a FAT12 volume.
pub const FAT12_MAX_CLUSTERS: u32 = 4085;
/// Clusters below this count (and at least 4085) make a FAT16 volume.
pub const FAT16_MAX_CLUSTERS: u32 = 65525;
/// Most data clusters a FAT32 volume can address (28-bit entries minus the
/// reserved values).
pub const FAT32_MAX_CLUSTERS: u32 = 0x0FFF_FFF5;
/// Largest cluster we mount (bytes).
pub const MAX_CLUSTER_SIZE: u32 = 256 * 1024;

// ---------------------------------------------------------------------------
// Boot sector / BPB

/// The BIOS parameter block of a boot sector, as stored (not yet validated
/// against each other; see [`Geometry::new`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bpb {
    pub jump: [u8; 3],
    pub bytes_per_sector: u16,
    pub sectors_per_cluster: u8,
    pub reserved_sectors: u16,
    pub num_fats: u8,
    pub root_entries: u16,
    pub total_sectors16: u16,
    pub media: u8,
    pub fat_size16: u16,
    pub hidden_sectors: u32,
    pub total_sectors32: u32,
    // FAT32 extension
    pub fat_size32: u32,
    pub ext_flags: u16,
    pub fs_version: u16,
    pub root_cluster: u32,
    pub fsinfo_sector: u16,
    pub backup_boot_sector: u16,
    /// Extended boot signature (0x29) of the layout in use.
    pub boot_sig: u8,
    pub volume_id: u32,
    pub volume_label: [u8; 11],
    /// Bytes 510..512 are 0x55 0xAA.
    pub signature_ok: bool,
}

/// Offset of the 0x55 0xAA signature in the boot sector.
pub const BOOT_SIGNATURE_OFFSET: usize = 510;

impl Bpb {
    /// Parse the BPB from the first 512 bytes of a boot sector. Refuses only
    /// a too-short buffer; values are checked by [`Geometry::new`].
    pub fn parse(b: &[u8]) -> Result<Bpb, Refusal> {
        if b.len() < 512 {
            return refuse("boot sector", format!("{} bytes, need 512", b.len()));
        }
        let g16 = |o| le16(b, o).unwrap_or(0);
        let g32 = |o| le32(b, o).unwrap_or(0);
        let fat_size16 = g16(22);
        let fat32_layout = fat_size16 == 0;
        let (sig_off, id_off, lab_off) = if fat32_layout {
            (66, 67, 71)
        } else {
            (38, 39, 43)
        };
        let mut volume_label = [0u8; 11];
        volume_label.copy_from_slice(&b[lab_off..lab_off + 11]);
        Ok(Bpb {
            jump: [b[0], b[1], b[2]],
            bytes_per_sector: g16(11),
            sectors_per_cluster: b[13],
            reserved_sectors: g16(14),
            num_fats: b[16],
            root_entries: g16(17),
            total_sectors16: g16(19),
            media: b[21],
            fat_size16,
            hidden_sectors: g32(28),
            total_sectors32: g32(32),
            fat_size32: if fat32_layout { g32(36) } else { 0 },
            ext_flags: if fat32_layout { g16(40) } else { 0 },
            fs_version: if fat32_layout { g16(42) } else { 0 },
            root_cluster: if fat32_layout { g32(44) } else { 0 },
            fsinfo_sector: if fat32_layout { g16(48) } else { 0 },
            backup_boot_sector: if fat32_layout { g16(50) } else { 0 },
            boot_sig: b[sig_off],
            volume_id: g32(id_off),
            volume_label,
            signature_ok: b[BOOT_SIGNATURE_OFFSET] == 0x55 && b[BOOT_SIGNATURE_OFFSET + 1] == 0xAA,
        })
    }

    /// Cheap test for "this looks like a FAT boot sector" (probe and
    /// partition detection): a jump instruction, a power-of-two sector size
    /// in 512..=4096, a power-of-two cluster size, reserved sectors and FATs.
    pub fn looks_like_fat(&self) -> bool {
        let jump_ok = self.jump[0] == 0xEB && self.jump[2] == 0x90 || self.jump[0] == 0xE9;
        let bps = self.bytes_per_sector;
        let spc = self.sectors_per_cluster;
        jump_ok
            && bps.is_power_of_two()
            && (512..=4096).contains(&bps)
            && spc.is_power_of_two()
            && self.reserved_sectors != 0
            && self.num_fats != 0
            && (self.fat_size16 != 0 || self.fat_size32 != 0)
            && (self.total_sectors16 != 0 || self.total_sectors32 != 0)
    }

    /// The label stored in the BPB, trimmed; `None` for "NO NAME" or blank.
    pub fn label(&self) -> Option<String> {
        if self.boot_sig != 0x29 {
            return None;
        }
        label_string(&self.volume_label)
    }
}

/// A volume label from its 11 stored bytes (code page 437 above 0x7F),
/// trailing blanks trimmed; `None` when blank or "NO NAME".
pub fn label_string(raw: &[u8; 11]) -> Option<String> {
    let s: String = raw.iter().map(|&c| crate::dirent::cp437_char(c)).collect();
    let t = s.trim_end_matches([' ', '\0']);
    if t.is_empty() || t == "NO NAME" {
        None
    } else {
        Some(t.to_string())
    }
}

/// Where everything of a validated FAT file system lives. Byte offsets are
/// relative to the start of the file system (the partition), not the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub fat_type: FatType,
    /// Logical sector size (BPB), 512..=4096.
    pub sector_size: u32,
    /// Cluster size in bytes.
    pub cluster_size: u32,
    /// Total sectors of the file system.
    pub total_sectors: u32,
    /// Byte offset of the first FAT.
    pub fat_offset: u64,
    /// Bytes per FAT copy.
    pub fat_bytes: u64,
    /// Number of FAT copies.
    pub num_fats: u32,
    /// FAT32 with mirroring disabled: only this copy is used and written.
    pub active_fat: Option<u32>,
    /// Byte offset and entry count of the fixed root directory (FAT12/16);
    /// 0 entries on FAT32.
    pub root_offset: u64,
    pub root_entries: u32,
    /// FAT32 root directory's first cluster (0 on FAT12/16).
    pub root_cluster: u32,
    /// Byte offset of cluster 2.
    pub data_offset: u64,
    /// Number of data clusters (valid clusters are 2..=cluster_count+1).
    pub cluster_count: u32,
    /// FSInfo sector number (FAT32 only).
    pub fsinfo_sector: Option<u32>,
    /// File system size in bytes.
    pub fs_bytes: u64,
}

impl Geometry {
    /// Validate `bpb` and derive the layout, on a device (or partition) of
    /// `dev_bytes` bytes. Refuses naming the field.
    pub fn new(bpb: &Bpb, dev_bytes: u64) -> Result<Geometry, Refusal> {
        let bps = bpb.bytes_per_sector as u32;
        if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
            return refuse(
                "BPB_BytsPerSec",
                format!("{bps}: not a power of two in 512..4096"),
            );
        }
        let spc = bpb.sectors_per_cluster as u32;
        if spc == 0 {
            return refuse("BPB_SecPerClus", "zero sectors per cluster");
        }
        if !spc.is_power_of_two() {
            return refuse("BPB_SecPerClus", format!("{spc}: not a power of two"));
        }
        let cluster_size = bps * spc;
        if cluster_size > MAX_CLUSTER_SIZE {
            return refuse(
                "BPB_SecPerClus",
                format!("cluster size {cluster_size} bytes is above {MAX_CLUSTER_SIZE}"),
            );
        }
        let rsvd = bpb.reserved_sectors as u32;
        if rsvd == 0 {
            return refuse("BPB_RsvdSecCnt", "zero reserved sectors");
        }
        let nfats = bpb.num_fats as u32;
        if nfats == 0 {
            return refuse("BPB_NumFATs", "zero FATs");
        }
        let total = if bpb.total_sectors16 != 0 {
            bpb.total_sectors16 as u32
        } else {
            bpb.total_sectors32
        };
        if total == 0 {
            return refuse("BPB_TotSec32", "zero total sectors");
        }
        let fs_bytes = total as u64 * bps as u64;
        if fs_bytes > dev_bytes {
            return refuse(
                "BPB_TotSec32",
                format!("{total} sectors ({fs_bytes} bytes) is past the end of the device ({dev_bytes} bytes)"),
            );
        }
        let fat32_layout = bpb.fat_size16 == 0;
        let fat_sectors = if fat32_layout {
            bpb.fat_size32
        } else {
            bpb.fat_size16 as u32
        };
        if fat_sectors == 0 {
            return refuse("BPB_FATSz32", "zero FAT size");
        }
        if fat32_layout && bpb.root_entries != 0 {
            return refuse("BPB_RootEntCnt", "must be 0 with the FAT32 layout");
        }
        if !fat32_layout && bpb.root_entries == 0 {
            return refuse("BPB_RootEntCnt", "zero root directory entries on FAT12/16");
        }
        let root_entries = bpb.root_entries as u32;
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let fat_offset = rsvd as u64 * bps as u64;
        let fats_total = nfats as u64 * fat_sectors as u64;
        let meta_sectors = rsvd as u64 + fats_total + root_sectors as u64;
        if meta_sectors >= total as u64 {
            return refuse(
                "BPB_FATSz",
                format!(
                    "reserved + FAT + root directory sectors ({meta_sectors}) leave no data area in {total} sectors"
                ),
            );
        }
        let data_sectors = total as u64 - meta_sectors;
        let count64 = data_sectors / spc as u64;
        if count64 == 0 {
            return refuse("BPB_TotSec32", "no data clusters");
        }
        let count = count64.min(u32::MAX as u64) as u32;
        let fat_type = if fat32_layout {
            if count < FAT16_MAX_CLUSTERS {
                log::info!("msdosfs: FAT32 layout with only {count} clusters; treating it as FAT32 (as Linux does)");
            }
            FatType::Fat32
        } else if count < FAT12_MAX_CLUSTERS {
            FatType::Fat12
        } else if count < FAT16_MAX_CLUSTERS {
            FatType::Fat16
        } else {
            return refuse(
                "BPB_FATSz16",
                format!("{count} clusters need FAT32, but the boot sector has the FAT12/16 layout"),
            );
        };
        if fat_type == FatType::Fat32 && count > FAT32_MAX_CLUSTERS {
            return refuse(
                "BPB_TotSec32",
                format!("{count} clusters is more than FAT32 can address"),
            );
        }
        let fat_bytes = fat_sectors as u64 * bps as u64;
        // The FAT must hold an entry for every cluster (plus the 2 reserved).
        let entries = fat_bytes * 8 / fat_type.bits() as u64;
        if entries < count as u64 + 2 {
            return refuse(
                "BPB_FATSz",
                format!(
                    "FAT of {fat_bytes} bytes holds {entries} entries, fewer than {} clusters + 2",
                    count
                ),
            );
        }
        let mut active_fat = None;
        let mut root_cluster = 0;
        let mut fsinfo_sector = None;
        if fat_type == FatType::Fat32 {
            if bpb.fs_version != 0 {
                return refuse(
                    "BPB_FSVer",
                    format!("version {:#x}, only 0 is known", bpb.fs_version),
                );
            }
            if bpb.ext_flags & 0x80 != 0 {
                let a = (bpb.ext_flags & 0x0F) as u32;
                if a >= nfats {
                    return refuse("BPB_ExtFlags", format!("active FAT {a} of {nfats}"));
                }
                active_fat = Some(a);
            }
            root_cluster = bpb.root_cluster;
            if root_cluster < 2 || root_cluster > count + 1 {
                return refuse(
                    "BPB_RootClus",
                    format!("cluster {root_cluster} outside 2..={}", count + 1),
                );
            }
            let fi = bpb.fsinfo_sector as u32;
            if fi != 0 && fi != 0xFFFF {
                if fi >= rsvd {
                    return refuse(
                        "BPB_FSInfo",
                        format!("sector {fi} is outside the {rsvd} reserved sectors"),
                    );
                }
                fsinfo_sector = Some(fi);
            }
        }
        let root_offset = fat_offset + fats_total * bps as u64;
        let data_offset = root_offset + root_sectors as u64 * bps as u64;
        Ok(Geometry {
            fat_type,
            sector_size: bps,
            cluster_size,
            total_sectors: total,
            fat_offset,
            fat_bytes,
            num_fats: nfats,
            active_fat,
            root_offset,
            root_entries,
            root_cluster,
            data_offset,
            cluster_count: count,
            fsinfo_sector,
            fs_bytes,
        })
    }

    /// Highest valid cluster number.
    pub fn max_cluster(&self) -> u32 {
        self.cluster_count + 1
    }

    /// Is `c` a data cluster number?
    pub fn valid_cluster(&self, c: u32) -> bool {
        c >= 2 && c <= self.max_cluster()
    }

    /// Byte offset of data cluster `c` (which must be valid).
    pub fn cluster_offset(&self, c: u32) -> u64 {
        self.data_offset + (c as u64 - 2) * self.cluster_size as u64
    }

    /// Byte offsets of the FAT copies written on update.
    pub fn fat_copies(&self) -> impl Iterator<Item = u64> + '_ {
        let (first, n) = match self.active_fat {
            Some(a) => (a as u64, 1),
            None => (0, self.num_fats as u64),
        };
        (first..first + n).map(move |i| self.fat_offset + i * self.fat_bytes)
    }

    /// Byte offset of the FAT copy read from.
    pub fn fat_read_copy(&self) -> u64 {
        self.fat_offset + self.active_fat.unwrap_or(0) as u64 * self.fat_bytes
    }
}

// ---------------------------------------------------------------------------
// FSInfo

/// FSInfo signatures and field offsets.
pub const FSI_LEAD_SIG: u32 = 0x4161_5252;
pub const FSI_STRUC_SIG: u32 = 0x6141_7272;
pub const FSI_TRAIL_SIG: u32 = 0xAA55_0000;
pub const FSI_FREE_COUNT: usize = 488;
pub const FSI_NXT_FREE: usize = 492;

/// The free-cluster hints of a FAT32 FSInfo sector, each `None` when the
/// sector is invalid or the value is unknown (0xFFFFFFFF) or out of range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsInfo {
    pub free_count: Option<u32>,
    pub next_free: Option<u32>,
}

impl FsInfo {
    /// Parse and validate against `geo`: all three signatures, free count at
    /// most the cluster count, next free a valid cluster.
    pub fn parse(b: &[u8], geo: &Geometry) -> FsInfo {
        let ok = le32(b, 0) == Ok(FSI_LEAD_SIG)
            && le32(b, 484) == Ok(FSI_STRUC_SIG)
            && le32(b, 508) == Ok(FSI_TRAIL_SIG);
        if !ok {
            return FsInfo::default();
        }
        let fc = le32(b, FSI_FREE_COUNT).unwrap_or(u32::MAX);
        let nf = le32(b, FSI_NXT_FREE).unwrap_or(u32::MAX);
        FsInfo {
            free_count: (fc <= geo.cluster_count).then_some(fc),
            next_free: geo.valid_cluster(nf).then_some(nf),
        }
    }

    /// Whether `b` carries valid FSInfo signatures (so updating it is safe).
    pub fn signatures_ok(b: &[u8]) -> bool {
        le32(b, 0) == Ok(FSI_LEAD_SIG)
            && le32(b, 484) == Ok(FSI_STRUC_SIG)
            && le32(b, 508) == Ok(FSI_TRAIL_SIG)
    }
}

// ---------------------------------------------------------------------------
// Partition tables

/// A partition found in an MBR or GPT: byte offset and length on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based index (MBR primary slot or GPT entry number).
    pub index: u32,
    pub offset: u64,
    pub len: u64,
}

/// MBR partition type of a GPT protective entry.
const MBR_GPT_PROTECTIVE: u8 = 0xEE;
/// Extended partition types (not followed).
const MBR_EXTENDED: [u8; 3] = [0x05, 0x0F, 0x85];
/// Most GPT entries we look at.
const GPT_MAX_ENTRIES: u32 = 256;

/// Partitions of the MBR in `sector0` (512+ bytes), in slot order; empty when
/// there is no MBR signature. `Err` carries a GPT protective MBR's marker so
/// the caller reads the GPT instead.
pub fn mbr_partitions(sector0: &[u8], dev_bytes: u64) -> (Vec<Partition>, bool) {
    let mut out = Vec::new();
    if sector0.len() < 512 || sector0[510] != 0x55 || sector0[511] != 0xAA {
        return (out, false);
    }
    let mut gpt = false;
    for i in 0..4usize {
        let e = 446 + 16 * i;
        let ptype = sector0[e + 4];
        let lba = le32(sector0, e + 8).unwrap_or(0) as u64;
        let n = le32(sector0, e + 12).unwrap_or(0) as u64;
        if ptype == 0 || n == 0 {
            continue;
        }
        if ptype == MBR_GPT_PROTECTIVE {
            gpt = true;
            continue;
        }
        if MBR_EXTENDED.contains(&ptype) {
            log::info!(
                "msdosfs: MBR slot {} is an extended partition; logical partitions are not searched",
                i + 1
            );
            continue;
        }
        let offset = lba * 512;
        let len = n * 512;
        if offset == 0 || offset.saturating_add(len) > dev_bytes {
            log::info!(
                "msdosfs: MBR slot {} lies outside the device; ignored",
                i + 1
            );
            continue;
        }
        out.push(Partition {
            index: i as u32 + 1,
            offset,
            len,
        });
    }
    (out, gpt)
}

/// Partitions of a GPT whose header is at LBA 1 with `lbs`-byte blocks.
/// `read(off, len)` reads device bytes. Entries are returned in table
/// order, unused ones skipped; the header CRC is not checked (the entries
/// are validated against the device instead).
pub fn gpt_partitions(
    read: &dyn Fn(u64, usize) -> KResult<Vec<u8>>,
    lbs: u64,
    dev_bytes: u64,
) -> Vec<Partition> {
    let mut out = Vec::new();
    let Ok(h) = read(lbs, 92) else { return out };
    if h.get(0..8) != Some(b"EFI PART") {
        return out;
    }
    let entries_lba = le64(&h, 72).unwrap_or(0);
    let n = le32(&h, 80).unwrap_or(0).min(GPT_MAX_ENTRIES);
    let esize = le32(&h, 84).unwrap_or(0) as u64;
    if !(128..=4096).contains(&esize) || entries_lba == 0 {
        return out;
    }
    let Some(base) = entries_lba.checked_mul(lbs) else {
        return out;
    };
    for i in 0..n as u64 {
        let Some(off) = base.checked_add(i * esize) else {
            break;
        };
        if off.saturating_add(128) > dev_bytes {
            break;
        }
        let Ok(e) = read(off, 128) else { break };
        if e.get(0..16).is_some_and(|g| g.iter().all(|&b| b == 0)) {
            continue;
        }
        let first = le64(&e, 32).unwrap_or(0);
        let last = le64(&e, 40).unwrap_or(0);
        if first == 0 || last < first {
            continue;
        }
        let (Some(o), Some(end)) = (
            first.checked_mul(lbs),
            last.checked_add(1).and_then(|l| l.checked_mul(lbs)),
        ) else {
            continue;
        };
        if end > dev_bytes {
            continue;
        }
        out.push(Partition {
            index: i as u32 + 1,
            offset: o,
            len: end - o,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumpkern::Errno;

    /// A FAT16 boot sector as mkfs.fat makes for a 16 MiB image.
    fn fat16() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        put16(&mut b, 11, 512).unwrap();
        b[13] = 4;
        put16(&mut b, 14, 4).unwrap();
        b[16] = 2;
        put16(&mut b, 17, 512).unwrap();
        put16(&mut b, 19, 32768).unwrap();
        b[21] = 0xF8;
        put16(&mut b, 22, 32).unwrap();
        b[38] = 0x29;
        b[43..54].copy_from_slice(b"MYLABEL    ");
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn fat16_geometry() {
        let bpb = Bpb::parse(&fat16()).unwrap();
        assert!(bpb.looks_like_fat());
        assert_eq!(bpb.label().as_deref(), Some("MYLABEL"));
        let g = Geometry::new(&bpb, 16 << 20).unwrap();
        assert_eq!(g.fat_type, FatType::Fat16);
        assert_eq!(g.cluster_size, 2048);
        assert_eq!(g.fat_offset, 2048);
        assert_eq!(g.root_offset, 2048 + 2 * 32 * 512);
        assert_eq!(g.data_offset, g.root_offset + 512 * 32);
        assert_eq!(g.cluster_count, (32768 - 4 - 64 - 32) / 4);
        assert_eq!(g.fat_copies().count(), 2);
    }

    #[test]
    fn refusals_name_the_field() {
        let mut b = fat16();
        b[13] = 0;
        assert_eq!(
            Geometry::new(&Bpb::parse(&b).unwrap(), 16 << 20)
                .unwrap_err()
                .field,
            "BPB_SecPerClus"
        );
        let mut b = fat16();
        b[16] = 0;
        assert_eq!(
            Geometry::new(&Bpb::parse(&b).unwrap(), 16 << 20)
                .unwrap_err()
                .field,
            "BPB_NumFATs"
        );
        let b = fat16();
        assert_eq!(
            Geometry::new(&Bpb::parse(&b).unwrap(), 1 << 20)
                .unwrap_err()
                .field,
            "BPB_TotSec32"
        );
        let mut b = fat16();
        put16(&mut b, 11, 300).unwrap();
        assert_eq!(
            Geometry::new(&Bpb::parse(&b).unwrap(), 16 << 20)
                .unwrap_err()
                .field,
            "BPB_BytsPerSec"
        );
        let mut b = fat16();
        put16(&mut b, 22, 1).unwrap();
        assert_eq!(
            Geometry::new(&Bpb::parse(&b).unwrap(), 16 << 20)
                .unwrap_err()
                .field,
            "BPB_FATSz"
        );
        let mut b = fat16();
        put16(&mut b, 22, 40000).unwrap();
        assert!(Geometry::new(&Bpb::parse(&b).unwrap(), 16 << 20).is_err());
        assert!(Bpb::parse(&[0u8; 100]).is_err());
    }

    #[test]
    fn type_by_cluster_count() {
        let mut b = fat16();
        // 4084 clusters of 4 sectors: FAT12.
        let total = 4 + 64 + 32 + 4084 * 4;
        put16(&mut b, 19, total as u16).unwrap();
        let g = Geometry::new(&Bpb::parse(&b).unwrap(), 16 << 20).unwrap();
        assert_eq!((g.fat_type, g.cluster_count), (FatType::Fat12, 4084));
        put16(&mut b, 19, (total + 4) as u16).unwrap();
        let g = Geometry::new(&Bpb::parse(&b).unwrap(), 16 << 20).unwrap();
        assert_eq!((g.fat_type, g.cluster_count), (FatType::Fat16, 4085));
    }

    #[test]
    fn mbr_parse() {
        let mut s = vec![0u8; 512];
        s[510] = 0x55;
        s[511] = 0xAA;
        s[446 + 4] = 0x0C;
        put32(&mut s, 446 + 8, 2048).unwrap();
        put32(&mut s, 446 + 12, 4096).unwrap();
        s[462 + 4] = 0xEE;
        put32(&mut s, 462 + 8, 1).unwrap();
        put32(&mut s, 462 + 12, 100).unwrap();
        let (p, gpt) = mbr_partitions(&s, 8 << 20);
        assert!(gpt);
        assert_eq!(
            p,
            vec![Partition {
                index: 1,
                offset: 2048 * 512,
                len: 4096 * 512
            }]
        );
        let (p, _) = mbr_partitions(&s, 1 << 20);
        assert!(p.is_empty());
    }

    /// Garbage partition tables and boot sectors never panic.
    #[test]
    fn garbage_tables() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut disk = vec![0u8; 8192];
            for b in disk.iter_mut() {
                *b = next() as u8;
            }
            disk[510] = 0x55;
            disk[511] = 0xAA;
            if next() % 2 == 0 {
                disk[446 + 4] = 0xEE;
                disk[512..520].copy_from_slice(b"EFI PART");
            }
            let size = next() % (1 << 40);
            let _ = mbr_partitions(&disk, size);
            let d = disk.clone();
            let read = move |off: u64, len: usize| -> KResult<Vec<u8>> {
                let o = usize::try_from(off).map_err(|_| Errno::EIO)?;
                d.get(o..o.checked_add(len).ok_or(Errno::EIO)?)
                    .map(|s| s.to_vec())
                    .ok_or(Errno::EIO)
            };
            for lbs in [512, 4096] {
                for p in gpt_partitions(&read, lbs, size) {
                    assert!(p.offset + p.len <= size);
                }
            }
            // Also a real boot sector with a few BPB bytes changed.
            let mut bs = fat16();
            for _ in 0..1 + next() % 4 {
                let i = 11 + (next() % 80) as usize;
                bs[i] = next() as u8;
            }
            if let Ok(g) = Geometry::new(&Bpb::parse(&bs).unwrap(), size) {
                assert!(g.data_offset < g.fs_bytes && g.fs_bytes <= size);
                assert!(g.cluster_count >= 1 && g.valid_cluster(g.max_cluster()));
                assert!(g.cluster_offset(g.max_cluster()) + g.cluster_size as u64 <= g.fs_bytes);
            }
            if let Ok(bpb) = Bpb::parse(&disk) {
                let _ = bpb.looks_like_fat();
                let _ = bpb.label();
                if let Ok(g) = Geometry::new(&bpb, size) {
                    assert!(g.data_offset < g.fs_bytes);
                    let _ = FsInfo::parse(&disk[..512], &g);
                }
            }
        }
    }
}
