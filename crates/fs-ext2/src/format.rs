//! On-disk structures of ext2 (revisions 0 and 1) and their validation.
//!
//! Facts from e2fsprogs `lib/ext2fs/ext2_fs.h` and NetBSD
//! `sys/ufs/ext2fs/ext2fs.h`, `ext2fs_dinode.h`, `ext2fs_dir.h`. Everything
//! is little-endian. Every value read from the image is untrusted: the
//! accessors here are bounds-checked ([`le16`], [`le32`], ...) and
//! [`Superblock::parse`] / [`Geometry::new`] / [`GroupDesc::check`] refuse a
//! file system with a [`Refusal`] naming the offending field.

use std::fmt;

use rumpkern::{Errno, KResult};

// ---------------------------------------------------------------------------
// Little-endian accessors

// The bounds-checked accessors are rumpkern's (EIO out of bounds, never a
// panic), under the short names this driver uses.
pub use rumpkern::bytes::{le16, le32, le64, put_le16 as put16, put_le32 as put32, put_u8 as put8, u8_at as le8};

// ---------------------------------------------------------------------------
// Constants

/// Byte offset of the primary superblock on the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock structure.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// `s_magic`.
pub const EXT2_MAGIC: u16 = 0xEF53;
/// Smallest and largest block size ext2 knows.
pub const MIN_BLOCK_SIZE: u32 = 1024;
/// Largest block size.
pub const MAX_BLOCK_SIZE: u32 = 65536;
/// Revision 0 ("good old") inode size and first non-reserved inode.
pub const GOOD_OLD_INODE_SIZE: u32 = 128;
/// First ordinary inode of revision 0.
pub const GOOD_OLD_FIRST_INO: u32 = 11;
/// `s_rev_level` values.
pub const GOOD_OLD_REV: u32 = 0;
/// Revision 1 ("dynamic": variable inode size, features).
pub const DYNAMIC_REV: u32 = 1;

/// Reserved inode numbers.
pub const BAD_INO: u32 = 1;
/// Root directory.
pub const ROOT_INO: u32 = 2;
/// Reserved group descriptor blocks (resize_inode).
pub const RESIZE_INO: u32 = 7;
/// The ext3 journal.
pub const JOURNAL_INO: u32 = 8;

/// `s_state` bits.
pub const STATE_VALID: u16 = 0x0001;
/// Errors were detected.
pub const STATE_ERROR: u16 = 0x0002;
/// Orphans being recovered.
pub const STATE_ORPHANS: u16 = 0x0004;

/// Number of block pointers in an inode: 12 direct, single, double and
/// triple indirect.
pub const N_BLOCKS: usize = 15;
/// Direct block pointers in an inode.
pub const NDIR_BLOCKS: usize = 12;
/// Slot of the single indirect block.
pub const IND_BLOCK: usize = 12;
/// Slot of the double indirect block.
pub const DIND_BLOCK: usize = 13;
/// Slot of the triple indirect block.
pub const TIND_BLOCK: usize = 14;

/// Most links a file may have (EXT2_LINK_MAX).
pub const LINK_MAX: u32 = 32000;
/// Longest name in a directory entry.
pub const NAME_LEN: usize = 255;
/// Longest target of a fast symlink (kept in `i_block`).
pub const FAST_SYMLINK_MAX: usize = N_BLOCKS * 4 - 1;

/// Compatible features (`s_feature_compat`): an implementation that does
/// not know them may still read and write.
pub mod compat {
    /// Feature `dir_prealloc`.
    pub const DIR_PREALLOC: u32 = 0x0001;
    /// Feature `imagic_inodes`.
    pub const IMAGIC_INODES: u32 = 0x0002;
    /// Feature `has_journal`.
    pub const HAS_JOURNAL: u32 = 0x0004;
    /// Feature `ext_attr`.
    pub const EXT_ATTR: u32 = 0x0008;
    /// Feature `resize_inode`.
    pub const RESIZE_INODE: u32 = 0x0010;
    /// Feature `dir_index`.
    pub const DIR_INDEX: u32 = 0x0020;
    /// Feature `lazy_bg`.
    pub const LAZY_BG: u32 = 0x0040;
    /// Feature `snapshot_bitmap`.
    pub const EXCLUDE_BITMAP: u32 = 0x0100;
    /// Feature `sparse_super2`.
    pub const SPARSE_SUPER2: u32 = 0x0200;
    /// Feature `fast_commit`.
    pub const FAST_COMMIT: u32 = 0x0400;
    /// Feature `stable_inodes`.
    pub const STABLE_INODES: u32 = 0x0800;
    /// Feature `orphan_file`.
    pub const ORPHAN_FILE: u32 = 0x1000;
}

/// Read-only compatible features (`s_feature_ro_compat`): an
/// implementation that does not know one may read but must not write.
pub mod ro_compat {
    /// Feature `sparse_super`.
    pub const SPARSE_SUPER: u32 = 0x0001;
    /// Feature `large_file`.
    pub const LARGE_FILE: u32 = 0x0002;
    /// Feature `btree_dir`.
    pub const BTREE_DIR: u32 = 0x0004;
    /// Feature `huge_file`.
    pub const HUGE_FILE: u32 = 0x0008;
    /// Feature `uninit_bg`.
    pub const GDT_CSUM: u32 = 0x0010;
    /// Feature `dir_nlink`.
    pub const DIR_NLINK: u32 = 0x0020;
    /// Feature `extra_isize`.
    pub const EXTRA_ISIZE: u32 = 0x0040;
    /// Feature `snapshot`.
    pub const HAS_SNAPSHOT: u32 = 0x0080;
    /// Feature `quota`.
    pub const QUOTA: u32 = 0x0100;
    /// Feature `bigalloc`.
    pub const BIGALLOC: u32 = 0x0200;
    /// Feature `metadata_csum`.
    pub const METADATA_CSUM: u32 = 0x0400;
    /// Feature `replica`.
    pub const REPLICA: u32 = 0x0800;
    /// Feature `read-only`.
    pub const READONLY: u32 = 0x1000;
    /// Feature `project`.
    pub const PROJECT: u32 = 0x2000;
    /// Feature `shared_blocks`.
    pub const SHARED_BLOCKS: u32 = 0x4000;
    /// Feature `verity`.
    pub const VERITY: u32 = 0x8000;
    /// Feature `orphan_present`.
    pub const ORPHAN_PRESENT: u32 = 0x10000;
}

/// Incompatible features (`s_feature_incompat`): an implementation that
/// does not know one must not mount at all.
pub mod incompat {
    /// Feature `compression`.
    pub const COMPRESSION: u32 = 0x0001;
    /// Feature `filetype`.
    pub const FILETYPE: u32 = 0x0002;
    /// Feature `needs_recovery`.
    pub const RECOVER: u32 = 0x0004;
    /// Feature `journal_dev`.
    pub const JOURNAL_DEV: u32 = 0x0008;
    /// Feature `meta_bg`.
    pub const META_BG: u32 = 0x0010;
    /// Feature `extent`.
    pub const EXTENTS: u32 = 0x0040;
    /// Feature `64bit`.
    pub const BIT64: u32 = 0x0080;
    /// Feature `mmp`.
    pub const MMP: u32 = 0x0100;
    /// Feature `flex_bg`.
    pub const FLEX_BG: u32 = 0x0200;
    /// Feature `ea_inode`.
    pub const EA_INODE: u32 = 0x0400;
    /// Feature `dirdata`.
    pub const DIRDATA: u32 = 0x1000;
    /// Feature `metadata_csum_seed`.
    pub const CSUM_SEED: u32 = 0x2000;
    /// Feature `large_dir`.
    pub const LARGEDIR: u32 = 0x4000;
    /// Feature `inline_data`.
    pub const INLINE_DATA: u32 = 0x8000;
    /// Feature `encrypt`.
    pub const ENCRYPT: u32 = 0x10000;
    /// Feature `casefold`.
    pub const CASEFOLD: u32 = 0x20000;
}

/// Feature names as e2fsprogs spells them (`lib/e2p/feature.c`).
const FEATURE_NAMES: &[(u8, u32, &str)] = &[
    (0, compat::DIR_PREALLOC, "dir_prealloc"),
    (0, compat::IMAGIC_INODES, "imagic_inodes"),
    (0, compat::HAS_JOURNAL, "has_journal"),
    (0, compat::EXT_ATTR, "ext_attr"),
    (0, compat::RESIZE_INODE, "resize_inode"),
    (0, compat::DIR_INDEX, "dir_index"),
    (0, compat::LAZY_BG, "lazy_bg"),
    (0, compat::EXCLUDE_BITMAP, "snapshot_bitmap"),
    (0, compat::SPARSE_SUPER2, "sparse_super2"),
    (0, compat::FAST_COMMIT, "fast_commit"),
    (0, compat::STABLE_INODES, "stable_inodes"),
    (0, compat::ORPHAN_FILE, "orphan_file"),
    (1, ro_compat::SPARSE_SUPER, "sparse_super"),
    (1, ro_compat::LARGE_FILE, "large_file"),
    (1, ro_compat::BTREE_DIR, "btree_dir"),
    (1, ro_compat::HUGE_FILE, "huge_file"),
    (1, ro_compat::GDT_CSUM, "uninit_bg"),
    (1, ro_compat::DIR_NLINK, "dir_nlink"),
    (1, ro_compat::EXTRA_ISIZE, "extra_isize"),
    (1, ro_compat::HAS_SNAPSHOT, "snapshot"),
    (1, ro_compat::QUOTA, "quota"),
    (1, ro_compat::BIGALLOC, "bigalloc"),
    (1, ro_compat::METADATA_CSUM, "metadata_csum"),
    (1, ro_compat::REPLICA, "replica"),
    (1, ro_compat::READONLY, "read-only"),
    (1, ro_compat::PROJECT, "project"),
    (1, ro_compat::SHARED_BLOCKS, "shared_blocks"),
    (1, ro_compat::VERITY, "verity"),
    (1, ro_compat::ORPHAN_PRESENT, "orphan_present"),
    (2, incompat::COMPRESSION, "compression"),
    (2, incompat::FILETYPE, "filetype"),
    (2, incompat::RECOVER, "needs_recovery"),
    (2, incompat::JOURNAL_DEV, "journal_dev"),
    (2, incompat::META_BG, "meta_bg"),
    (2, incompat::EXTENTS, "extent"),
    (2, incompat::BIT64, "64bit"),
    (2, incompat::MMP, "mmp"),
    (2, incompat::FLEX_BG, "flex_bg"),
    (2, incompat::EA_INODE, "ea_inode"),
    (2, incompat::DIRDATA, "dirdata"),
    (2, incompat::CSUM_SEED, "metadata_csum_seed"),
    (2, incompat::LARGEDIR, "large_dir"),
    (2, incompat::INLINE_DATA, "inline_data"),
    (2, incompat::ENCRYPT, "encrypt"),
    (2, incompat::CASEFOLD, "casefold"),
];

/// Names of the features in `mask` of class `class` (0 compat, 1 ro_compat,
/// 2 incompat), unknown bits as `FEATURE_X12`-style names.
pub fn feature_names(class: u8, mask: u32) -> Vec<String> {
    let mut out = Vec::new();
    for bit in 0..32 {
        let m = 1u32 << bit;
        if mask & m == 0 {
            continue;
        }
        match FEATURE_NAMES
            .iter()
            .find(|(c, f, _)| *c == class && *f == m)
        {
            Some((_, _, n)) => out.push((*n).to_string()),
            None => out.push(format!(
                "FEATURE_{}{}",
                ["C", "R", "I"][class as usize % 3],
                bit
            )),
        }
    }
    out
}

/// Incompatible features this driver reads and writes.
pub const INCOMPAT_SUPPORTED: u32 = incompat::FILETYPE | incompat::META_BG;
/// Incompatible features this driver reads correctly but does not write.
pub const INCOMPAT_READONLY: u32 = incompat::RECOVER
    | incompat::FLEX_BG
    | incompat::EXTENTS
    | incompat::BIT64
    | incompat::CSUM_SEED
    | incompat::EA_INODE;
/// Read-only compatible features this driver maintains when writing.
pub const RO_COMPAT_SUPPORTED: u32 =
    ro_compat::SPARSE_SUPER | ro_compat::LARGE_FILE | ro_compat::BTREE_DIR | ro_compat::EXTRA_ISIZE;

/// Inode flags (`i_flags`).
pub mod iflags {
    /// `EXT2_SECRM_FL`.
    pub const SECRM: u32 = 0x0000_0001;
    /// `EXT2_UNRM_FL`.
    pub const UNRM: u32 = 0x0000_0002;
    /// `EXT2_COMPR_FL`.
    pub const COMPR: u32 = 0x0000_0004;
    /// `EXT2_SYNC_FL`.
    pub const SYNC: u32 = 0x0000_0008;
    /// `EXT2_IMMUTABLE_FL`.
    pub const IMMUTABLE: u32 = 0x0000_0010;
    /// `EXT2_APPEND_FL`.
    pub const APPEND: u32 = 0x0000_0020;
    /// `EXT2_NODUMP_FL`.
    pub const NODUMP: u32 = 0x0000_0040;
    /// `EXT2_NOATIME_FL`.
    pub const NOATIME: u32 = 0x0000_0080;
    /// Hashed-index directory (dir_index).
    pub const INDEX: u32 = 0x0000_1000;
    /// i_blocks in file system blocks (huge_file).
    pub const HUGE_FILE: u32 = 0x0004_0000;
    /// The inode uses extents.
    pub const EXTENTS: u32 = 0x0008_0000;
    /// The inode stores a large extended attribute value.
    pub const EA_INODE: u32 = 0x0020_0000;
    /// Data inline in the inode.
    pub const INLINE_DATA: u32 = 0x1000_0000;
}

/// Magic number of an extended attribute block (`h_magic`); the header
/// continues with `h_refcount` (offset 4) and `h_blocks` (offset 8, 1).
pub const EA_MAGIC: u32 = 0xEA02_0000;

/// Directory entry file types (`file_type` with the filetype feature).
pub mod ftype {
    /// `EXT2_FT_UNKNOWN`.
    pub const UNKNOWN: u8 = 0;
    /// `EXT2_FT_REG`.
    pub const REG: u8 = 1;
    /// `EXT2_FT_DIR`.
    pub const DIR: u8 = 2;
    /// `EXT2_FT_CHRDEV`.
    pub const CHRDEV: u8 = 3;
    /// `EXT2_FT_BLKDEV`.
    pub const BLKDEV: u8 = 4;
    /// `EXT2_FT_FIFO`.
    pub const FIFO: u8 = 5;
    /// `EXT2_FT_SOCK`.
    pub const SOCK: u8 = 6;
    /// `EXT2_FT_SYMLINK`.
    pub const SYMLINK: u8 = 7;
}

// ---------------------------------------------------------------------------
// Refusal: why a file system cannot be mounted

/// Why a superblock was refused: the field (or feature) and the detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The superblock or descriptor field, or the feature name.
    pub field: String,
    /// What is wrong with it.
    pub detail: String,
    /// The errno the mount gives: EINVAL (not a valid ext2 file system or
    /// unsupported), EROFS (can be mounted read-only only).
    pub errno: Errno,
}

impl Refusal {
    /// A corrupt or unsupported value: EINVAL.
    pub fn bad(field: impl Into<String>, detail: impl Into<String>) -> Refusal {
        Refusal {
            field: field.into(),
            detail: detail.into(),
            errno: Errno::EINVAL,
        }
    }

    /// Readable, not writable: EROFS.
    pub fn rdonly(field: impl Into<String>, detail: impl Into<String>) -> Refusal {
        Refusal {
            field: field.into(),
            detail: detail.into(),
            errno: Errno::EROFS,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

// ---------------------------------------------------------------------------
// Superblock

/// The superblock, decoded. `raw` keeps the 1024 bytes as read so that the
/// fields this driver does not interpret are written back unchanged.
#[derive(Clone, Debug)]
pub struct Superblock {
    /// The 1024 bytes as read (fields not decoded are written back unchanged).
    pub raw: Vec<u8>,
    /// `s_inodes_count`.
    pub inodes_count: u32,
    /// `s_blocks_count`.
    pub blocks_count: u32,
    /// `s_r_blocks_count`.
    pub r_blocks_count: u32,
    /// `s_free_blocks_count`.
    pub free_blocks_count: u32,
    /// `s_free_inodes_count`.
    pub free_inodes_count: u32,
    /// `s_first_data_block`.
    pub first_data_block: u32,
    /// `s_log_block_size`.
    pub log_block_size: u32,
    /// `s_log_frag_size`.
    pub log_frag_size: u32,
    /// `s_blocks_per_group`.
    pub blocks_per_group: u32,
    /// `s_frags_per_group`.
    pub frags_per_group: u32,
    /// `s_inodes_per_group`.
    pub inodes_per_group: u32,
    /// `s_mtime`.
    pub mtime: u32,
    /// `s_wtime`.
    pub wtime: u32,
    /// `s_mnt_count`.
    pub mnt_count: u16,
    /// `s_max_mnt_count`.
    pub max_mnt_count: i16,
    /// `s_magic`.
    pub magic: u16,
    /// `s_state`.
    pub state: u16,
    /// `s_errors`.
    pub errors: u16,
    /// `s_rev_level`.
    pub rev_level: u32,
    /// `s_def_resuid`.
    pub def_resuid: u16,
    /// `s_def_resgid`.
    pub def_resgid: u16,
    /// Revision 1 fields (revision-0 defaults filled in otherwise).
    pub first_ino: u32,
    /// `s_inode_size`.
    pub inode_size: u16,
    /// `s_feature_compat`.
    pub feature_compat: u32,
    /// `s_feature_incompat`.
    pub feature_incompat: u32,
    /// `s_feature_ro_compat`.
    pub feature_ro_compat: u32,
    /// `s_uuid`.
    pub uuid: [u8; 16],
    /// `s_volume_name`.
    pub volume_name: [u8; 16],
    /// `s_reserved_gdt_blocks`.
    pub reserved_gdt_blocks: u16,
    /// `s_desc_size`.
    pub desc_size: u16,
    /// `s_first_meta_bg`.
    pub first_meta_bg: u32,
    /// `s_blocks_count_hi`.
    pub blocks_count_hi: u32,
    /// `s_r_blocks_count_hi`.
    pub r_blocks_count_hi: u32,
    /// `s_free_blocks_hi`.
    pub free_blocks_hi: u32,
    /// `s_min_extra_isize`.
    pub min_extra_isize: u16,
}

impl Superblock {
    /// Decode `raw` (the 1024 bytes at device offset 1024). Checks the magic
    /// number and the revision only; [`Geometry::new`] checks the rest.
    pub fn parse(raw: &[u8]) -> Result<Superblock, Refusal> {
        let raw = raw
            .get(..SUPERBLOCK_SIZE)
            .ok_or_else(|| Refusal::bad("superblock", "short read"))?;
        let g32 = |o| le32(raw, o).unwrap_or(0);
        let g16 = |o| le16(raw, o).unwrap_or(0);
        let magic = g16(56);
        if magic != EXT2_MAGIC {
            return Err(Refusal::bad(
                "s_magic",
                format!("{magic:#06x}, not {EXT2_MAGIC:#06x}: not an ext2 file system"),
            ));
        }
        let rev_level = g32(76);
        if rev_level > DYNAMIC_REV {
            return Err(Refusal::bad(
                "s_rev_level",
                format!("revision {rev_level} (only 0 and 1 exist)"),
            ));
        }
        let dynamic = rev_level >= DYNAMIC_REV;
        let mut uuid = [0u8; 16];
        let mut volume_name = [0u8; 16];
        if dynamic {
            uuid.copy_from_slice(&raw[104..120]);
            volume_name.copy_from_slice(&raw[120..136]);
        }
        Ok(Superblock {
            inodes_count: g32(0),
            blocks_count: g32(4),
            r_blocks_count: g32(8),
            free_blocks_count: g32(12),
            free_inodes_count: g32(16),
            first_data_block: g32(20),
            log_block_size: g32(24),
            log_frag_size: g32(28),
            blocks_per_group: g32(32),
            frags_per_group: g32(36),
            inodes_per_group: g32(40),
            mtime: g32(44),
            wtime: g32(48),
            mnt_count: g16(52),
            max_mnt_count: g16(54) as i16,
            magic,
            state: g16(58),
            errors: g16(60),
            rev_level,
            def_resuid: g16(80),
            def_resgid: g16(82),
            first_ino: if dynamic { g32(84) } else { GOOD_OLD_FIRST_INO },
            inode_size: if dynamic {
                g16(88)
            } else {
                GOOD_OLD_INODE_SIZE as u16
            },
            feature_compat: if dynamic { g32(92) } else { 0 },
            feature_incompat: if dynamic { g32(96) } else { 0 },
            feature_ro_compat: if dynamic { g32(100) } else { 0 },
            uuid,
            volume_name,
            reserved_gdt_blocks: if dynamic { g16(206) } else { 0 },
            desc_size: if dynamic { g16(254) } else { 0 },
            first_meta_bg: if dynamic { g32(260) } else { 0 },
            blocks_count_hi: if dynamic { g32(0x150) } else { 0 },
            r_blocks_count_hi: if dynamic { g32(0x154) } else { 0 },
            free_blocks_hi: if dynamic { g32(0x158) } else { 0 },
            min_extra_isize: if dynamic { g16(0x15c) } else { 0 },
            raw: raw.to_vec(),
        })
    }

    /// The raw bytes with the fields this driver changes stored back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut r = self.raw.clone();
        r.resize(SUPERBLOCK_SIZE, 0);
        // In-bounds constant offsets: cannot fail on a 1024-byte buffer.
        let _ = put32(&mut r, 12, self.free_blocks_count);
        let _ = put32(&mut r, 16, self.free_inodes_count);
        let _ = put32(&mut r, 44, self.mtime);
        let _ = put32(&mut r, 48, self.wtime);
        let _ = put16(&mut r, 52, self.mnt_count);
        let _ = put16(&mut r, 58, self.state);
        if self.rev_level >= DYNAMIC_REV {
            let _ = put32(&mut r, 92, self.feature_compat);
            let _ = put32(&mut r, 96, self.feature_incompat);
            let _ = put32(&mut r, 100, self.feature_ro_compat);
        }
        r
    }

    /// Is compatible feature `f` on?
    pub fn has_compat(&self, f: u32) -> bool {
        self.feature_compat & f != 0
    }
    /// Is read-only compatible feature `f` on?
    pub fn has_ro_compat(&self, f: u32) -> bool {
        self.feature_ro_compat & f != 0
    }
    /// Is incompatible feature `f` on?
    pub fn has_incompat(&self, f: u32) -> bool {
        self.feature_incompat & f != 0
    }

    /// Volume label (up to 16 bytes, NUL-terminated), if any.
    pub fn label(&self) -> Option<String> {
        let n = self.volume_name.iter().position(|&c| c == 0).unwrap_or(16);
        let s = self.volume_name.get(..n)?;
        if s.is_empty() {
            None
        } else {
            Some(String::from_utf8_lossy(s).into_owned())
        }
    }

    /// Check the features against what this driver can do. `Ok(None)`:
    /// read-write is possible; `Ok(Some(reason))`: read-only only (the
    /// reason names the feature); `Err`: cannot be mounted at all.
    pub fn check_features(&self) -> Result<Option<Refusal>, Refusal> {
        let unknown_incompat = self.feature_incompat & !(INCOMPAT_SUPPORTED | INCOMPAT_READONLY);
        if unknown_incompat != 0 {
            let names = feature_names(2, unknown_incompat).join(",");
            let detail = "incompatible feature not supported";
            return Err(Refusal::bad(names, detail));
        }
        if self.has_incompat(incompat::RECOVER) {
            return Ok(Some(Refusal::rdonly(
                "needs_recovery",
                "the journal needs recovery (run e2fsck); until then the file system mounts read-only only (the journal is replayed in memory)",
            )));
        }
        let ro_only_incompat = self.feature_incompat & INCOMPAT_READONLY;
        if ro_only_incompat != 0 {
            return Ok(Some(Refusal::rdonly(
                feature_names(2, ro_only_incompat).join(","),
                "feature readable but not writable by this driver",
            )));
        }
        let ro = self.feature_ro_compat & !RO_COMPAT_SUPPORTED;
        if ro != 0 {
            return Ok(Some(Refusal::rdonly(
                feature_names(1, ro).join(","),
                "read-only compatible feature not writable by this driver",
            )));
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------
// Geometry: the derived, validated layout

/// Layout derived from a validated superblock.
#[derive(Clone, Debug)]
pub struct Geometry {
    /// Bytes per block (1024..=65536).
    pub block_size: u32,
    /// log2(block_size).
    pub block_shift: u32,
    /// Blocks in the file system (64 bits with `64bit`).
    pub blocks_count: u64,
    /// Block holding the superblock: 1 with 1 KiB blocks, else 0.
    pub first_data_block: u32,
    /// Blocks per block group.
    pub blocks_per_group: u32,
    /// Inodes per block group.
    pub inodes_per_group: u32,
    /// Inodes in the file system.
    pub inodes_count: u32,
    /// Number of block groups.
    pub groups: u32,
    /// Bytes per on-disk inode (128 for revision 0).
    pub inode_size: u32,
    /// Inodes per inode table block.
    pub inodes_per_block: u32,
    /// Blocks of inode table per group.
    pub itb_per_group: u32,
    /// Bytes per group descriptor (32, or `s_desc_size` with `64bit`).
    pub desc_size: u32,
    /// Group descriptors per block.
    pub descs_per_block: u32,
    /// Blocks of group descriptors (without meta_bg).
    pub gdt_blocks: u32,
    /// Block pointers per indirect block.
    pub addr_per_block: u32,
    /// First inode number for ordinary files (`s_first_ino`).
    pub first_ino: u32,
    /// Directory entries carry a file type (`filetype`).
    pub filetype: bool,
    /// `64bit`: 64-bit block numbers and 64-byte descriptors.
    pub is64: bool,
    /// `meta_bg`: descriptors live in their meta group.
    pub meta_bg: bool,
    /// First meta group (`s_first_meta_bg`).
    pub first_meta_bg: u32,
    /// `sparse_super`: superblock backups in groups 0, 1 and powers of 3, 5, 7 only.
    pub sparse_super: bool,
    /// `flex_bg`: bitmaps and inode tables may lie outside their group.
    pub flex_bg: bool,
    /// `large_file`: regular files may exceed 2 GiB.
    pub large_file: bool,
    /// `huge_file`: `i_blocks` may count file system blocks.
    pub huge_file: bool,
    /// Extent-mapped files (read-only).
    pub extents: bool,
    /// Largest file size addressable (and storable in i_size).
    pub max_file_size: u64,
}

impl Geometry {
    /// Validate `sb` against a device of `dev_size` bytes and derive the
    /// layout. Every field that the driver uses is checked here.
    pub fn new(sb: &Superblock, dev_size: u64) -> Result<Geometry, Refusal> {
        if sb.log_block_size > 6 {
            return Err(Refusal::bad(
                "s_log_block_size",
                format!(
                    "{} (block size {}); 1024..65536 allowed",
                    sb.log_block_size,
                    1024u64 << sb.log_block_size.min(40)
                ),
            ));
        }
        let block_shift = 10 + sb.log_block_size;
        let block_size = 1u32 << block_shift;
        if sb.log_frag_size != sb.log_block_size {
            return Err(Refusal::bad("s_log_frag_size", format!("fragment size {} differs from block size {block_size} (fragments/bigalloc not supported)", 1024u64 << sb.log_frag_size.min(40))));
        }
        let is64 = sb.has_incompat(incompat::BIT64);
        let blocks_count = if is64 {
            (sb.blocks_count as u64) | ((sb.blocks_count_hi as u64) << 32)
        } else {
            sb.blocks_count as u64
        };
        let want_first = if block_size == 1024 { 1 } else { 0 };
        if sb.first_data_block != want_first {
            return Err(Refusal::bad(
                "s_first_data_block",
                format!(
                    "{} (must be {want_first} with {block_size}-byte blocks)",
                    sb.first_data_block
                ),
            ));
        }
        let bits = block_size * 8;
        if sb.blocks_per_group == 0
            || sb.blocks_per_group > bits
            || !sb.blocks_per_group.is_multiple_of(8)
        {
            return Err(Refusal::bad(
                "s_blocks_per_group",
                format!(
                    "{} (must be a multiple of 8 in 8..={bits})",
                    sb.blocks_per_group
                ),
            ));
        }
        // Group descriptor counts are 16 bits wide (EXT2_MAX_BLOCKS_PER_GROUP).
        if sb.blocks_per_group > 65528 {
            return Err(Refusal::bad(
                "s_blocks_per_group",
                format!("{} (at most 65528)", sb.blocks_per_group),
            ));
        }
        if sb.frags_per_group != sb.blocks_per_group {
            return Err(Refusal::bad(
                "s_frags_per_group",
                format!(
                    "{} differs from s_blocks_per_group {}",
                    sb.frags_per_group, sb.blocks_per_group
                ),
            ));
        }
        if sb.inodes_per_group == 0 || sb.inodes_per_group > bits {
            return Err(Refusal::bad(
                "s_inodes_per_group",
                format!("{} (must be in 1..={bits})", sb.inodes_per_group),
            ));
        }
        if blocks_count <= sb.first_data_block as u64 + 1 {
            return Err(Refusal::bad(
                "s_blocks_count",
                format!("{blocks_count}: too small"),
            ));
        }
        let fs_bytes = blocks_count
            .checked_mul(block_size as u64)
            .ok_or_else(|| Refusal::bad("s_blocks_count", "overflows"))?;
        if fs_bytes > dev_size {
            return Err(Refusal::bad("s_blocks_count", format!("{blocks_count} blocks of {block_size} bytes = {fs_bytes} bytes, but the device has only {dev_size}")));
        }
        let data_blocks = blocks_count - sb.first_data_block as u64;
        let groups64 = data_blocks.div_ceil(sb.blocks_per_group as u64);
        let groups = u32::try_from(groups64)
            .map_err(|_| Refusal::bad("s_blocks_count", "too many groups"))?;
        let want_inodes = (groups as u64) * (sb.inodes_per_group as u64);
        if want_inodes != sb.inodes_count as u64 {
            return Err(Refusal::bad(
                "s_inodes_count",
                format!(
                    "{} but {groups} groups of {} inodes make {want_inodes}",
                    sb.inodes_count, sb.inodes_per_group
                ),
            ));
        }
        let inode_size = sb.inode_size as u32;
        if sb.rev_level >= DYNAMIC_REV
            && (inode_size < GOOD_OLD_INODE_SIZE
                || inode_size > block_size
                || !inode_size.is_power_of_two())
        {
            return Err(Refusal::bad(
                "s_inode_size",
                format!("{inode_size} (must be a power of two in 128..={block_size})"),
            ));
        }
        if sb.first_ino < GOOD_OLD_FIRST_INO || sb.first_ino > sb.inodes_count {
            return Err(Refusal::bad(
                "s_first_ino",
                format!("{} (must be in 11..={})", sb.first_ino, sb.inodes_count),
            ));
        }
        let inodes_per_block = block_size / inode_size;
        if sb.inodes_per_group > 65536 - inodes_per_block {
            return Err(Refusal::bad(
                "s_inodes_per_group",
                format!(
                    "{} (at most {})",
                    sb.inodes_per_group,
                    65536 - inodes_per_block
                ),
            ));
        }
        let itb_per_group = sb.inodes_per_group.div_ceil(inodes_per_block);
        if itb_per_group as u64 >= sb.blocks_per_group as u64 {
            return Err(Refusal::bad(
                "s_inodes_per_group",
                format!(
                    "{} inodes need {itb_per_group} table blocks, more than a group's {}",
                    sb.inodes_per_group, sb.blocks_per_group
                ),
            ));
        }
        let desc_size = if is64 { sb.desc_size as u32 } else { 32 };
        if is64 && (!(64..=1024).contains(&desc_size) || !desc_size.is_power_of_two()) {
            return Err(Refusal::bad(
                "s_desc_size",
                format!("{desc_size} (must be a power of two in 64..=1024)"),
            ));
        }
        let descs_per_block = block_size / desc_size;
        let gdt_blocks = groups.div_ceil(descs_per_block);
        if sb.reserved_gdt_blocks as u32 > block_size / 4 {
            return Err(Refusal::bad(
                "s_reserved_gdt_blocks",
                format!("{} (at most {})", sb.reserved_gdt_blocks, block_size / 4),
            ));
        }
        let meta_bg = sb.has_incompat(incompat::META_BG);
        if !meta_bg && sb.first_data_block as u64 + 1 + gdt_blocks as u64 > blocks_count {
            return Err(Refusal::bad(
                "s_blocks_count",
                "group descriptor table past the end",
            ));
        }
        if sb.free_inodes_count > sb.inodes_count {
            return Err(Refusal::bad(
                "s_free_inodes_count",
                format!(
                    "{} > s_inodes_count {}",
                    sb.free_inodes_count, sb.inodes_count
                ),
            ));
        }
        if sb.r_blocks_count as u64 > blocks_count {
            return Err(Refusal::bad(
                "s_r_blocks_count",
                format!("{} > s_blocks_count {blocks_count}", sb.r_blocks_count),
            ));
        }
        let addr_per_block = block_size / 4;
        let large_file = sb.has_ro_compat(ro_compat::LARGE_FILE);
        let huge_file = sb.has_ro_compat(ro_compat::HUGE_FILE);
        // Addressable by the block map, in blocks.
        let apb = addr_per_block as u64;
        let map_blocks = NDIR_BLOCKS as u64 + apb + apb * apb + apb * apb * apb;
        let mut max = map_blocks.saturating_mul(block_size as u64);
        // i_blocks counts 512-byte sectors in 32 bits (48 with huge_file).
        let sector_limit = if huge_file { 1u64 << 48 } else { 1u64 << 32 };
        max = max.min(
            (sector_limit - 1)
                .saturating_mul(512)
                .saturating_sub(block_size as u64 * 4),
        );
        max = max.min(i64::MAX as u64);
        if !(large_file || sb.rev_level >= DYNAMIC_REV) {
            max = max.min(i32::MAX as u64);
        }
        Ok(Geometry {
            block_size,
            block_shift,
            blocks_count,
            first_data_block: sb.first_data_block,
            blocks_per_group: sb.blocks_per_group,
            inodes_per_group: sb.inodes_per_group,
            inodes_count: sb.inodes_count,
            groups,
            inode_size: if sb.rev_level >= DYNAMIC_REV {
                inode_size
            } else {
                GOOD_OLD_INODE_SIZE
            },
            inodes_per_block,
            itb_per_group,
            desc_size,
            descs_per_block,
            gdt_blocks,
            addr_per_block,
            first_ino: sb.first_ino,
            filetype: sb.has_incompat(incompat::FILETYPE),
            is64,
            meta_bg,
            first_meta_bg: sb.first_meta_bg,
            sparse_super: sb.has_ro_compat(ro_compat::SPARSE_SUPER),
            flex_bg: sb.has_incompat(incompat::FLEX_BG),
            large_file,
            huge_file,
            extents: sb.has_incompat(incompat::EXTENTS),
            max_file_size: max,
        })
    }

    /// First block of group `g`.
    pub fn group_first_block(&self, g: u32) -> u64 {
        self.first_data_block as u64 + g as u64 * self.blocks_per_group as u64
    }

    /// Number of blocks in group `g` (the last one may be short).
    pub fn blocks_in_group(&self, g: u32) -> u32 {
        let first = self.group_first_block(g);
        let end = (first + self.blocks_per_group as u64).min(self.blocks_count);
        end.saturating_sub(first) as u32
    }

    /// Group of block `b` (b >= first_data_block).
    pub fn block_group(&self, b: u64) -> u32 {
        (b.saturating_sub(self.first_data_block as u64) / self.blocks_per_group as u64) as u32
    }

    /// Group of inode `ino` (1-based).
    pub fn ino_group(&self, ino: u32) -> u32 {
        (ino.saturating_sub(1)) / self.inodes_per_group
    }

    /// Does group `g` hold a superblock backup (sparse_super rule: 0, 1 and
    /// powers of 3, 5 and 7)?
    pub fn group_has_super(&self, g: u32) -> bool {
        if g <= 1 || !self.sparse_super {
            return true;
        }
        if g.is_multiple_of(2) {
            return false;
        }
        for base in [3u32, 5, 7] {
            let mut p = base;
            while p < g {
                match p.checked_mul(base) {
                    Some(n) => p = n,
                    None => break,
                }
            }
            if p == g {
                return true;
            }
        }
        false
    }

    /// Device block holding descriptor block `i` (0-based) of the group
    /// descriptor table.
    pub fn gdt_block_location(&self, i: u32) -> u64 {
        let base = self.first_data_block as u64 + 1;
        if !self.meta_bg || i < self.first_meta_bg {
            return base + i as u64;
        }
        // meta_bg: the descriptors of meta group i live in the first group
        // of that meta group (after its superblock backup, if any).
        let g = i.saturating_mul(self.descs_per_block);
        let has_sb = if self.group_has_super(g) { 1 } else { 0 };
        self.group_first_block(g) + has_sb
    }

    /// True if `b` is a valid data block number (inside the file system,
    /// past the superblock area).
    pub fn valid_block(&self, b: u64) -> bool {
        b > self.first_data_block as u64 && b < self.blocks_count
    }
}

// ---------------------------------------------------------------------------
// Group descriptors

/// One block group descriptor, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupDesc {
    /// Block of the block bitmap (`bg_block_bitmap`).
    pub block_bitmap: u64,
    /// Block of the inode bitmap (`bg_inode_bitmap`).
    pub inode_bitmap: u64,
    /// First block of the inode table (`bg_inode_table`).
    pub inode_table: u64,
    /// Free blocks in the group (`bg_free_blocks_count`).
    pub free_blocks: u32,
    /// Free inodes in the group (`bg_free_inodes_count`).
    pub free_inodes: u32,
    /// Directories in the group (`bg_used_dirs_count`).
    pub used_dirs: u32,
    /// `bg_flags` (uninit_bg only).
    pub flags: u16,
}

/// `bg_flags` bits (only meaningful with uninit_bg / metadata_csum).
pub const BG_INODE_UNINIT: u16 = 0x0001;
/// The group's block bitmap is not initialized.
pub const BG_BLOCK_UNINIT: u16 = 0x0002;

impl GroupDesc {
    /// Decode the descriptor at the start of `b`.
    pub fn parse(b: &[u8], is64: bool) -> KResult<GroupDesc> {
        let mut d = GroupDesc {
            block_bitmap: le32(b, 0)? as u64,
            inode_bitmap: le32(b, 4)? as u64,
            inode_table: le32(b, 8)? as u64,
            free_blocks: le16(b, 12)? as u32,
            free_inodes: le16(b, 14)? as u32,
            used_dirs: le16(b, 16)? as u32,
            flags: le16(b, 18)?,
        };
        if is64 {
            d.block_bitmap |= (le32(b, 32)? as u64) << 32;
            d.inode_bitmap |= (le32(b, 36)? as u64) << 32;
            d.inode_table |= (le32(b, 40)? as u64) << 32;
            d.free_blocks |= (le16(b, 44)? as u32) << 16;
            d.free_inodes |= (le16(b, 46)? as u32) << 16;
            d.used_dirs |= (le16(b, 48)? as u32) << 16;
        }
        Ok(d)
    }

    /// Store the descriptor into `b` (which holds the raw descriptor, so
    /// fields not decoded stay as they were).
    pub fn store(&self, b: &mut [u8], is64: bool) -> KResult<()> {
        put32(b, 0, self.block_bitmap as u32)?;
        put32(b, 4, self.inode_bitmap as u32)?;
        put32(b, 8, self.inode_table as u32)?;
        put16(b, 12, self.free_blocks as u16)?;
        put16(b, 14, self.free_inodes as u16)?;
        put16(b, 16, self.used_dirs as u16)?;
        put16(b, 18, self.flags)?;
        if is64 {
            put32(b, 32, (self.block_bitmap >> 32) as u32)?;
            put32(b, 36, (self.inode_bitmap >> 32) as u32)?;
            put32(b, 40, (self.inode_table >> 32) as u32)?;
            put16(b, 44, (self.free_blocks >> 16) as u16)?;
            put16(b, 46, (self.free_inodes >> 16) as u16)?;
            put16(b, 48, (self.used_dirs >> 16) as u16)?;
        }
        Ok(())
    }

    /// Validate descriptor `g` against the geometry (NetBSD
    /// `ext2fs_check_descriptors`, Linux `ext2_check_descriptors`): bitmaps
    /// and inode table inside the file system (inside the group unless
    /// flex_bg), counts not above the group's size.
    pub fn check(&self, g: u32, geo: &Geometry) -> Result<(), Refusal> {
        let (lo, hi) = if geo.flex_bg {
            (geo.first_data_block as u64, geo.blocks_count)
        } else {
            let first = geo.group_first_block(g);
            (first, first + geo.blocks_in_group(g) as u64)
        };
        let inside = |b: u64, n: u64| b >= lo && b.checked_add(n).is_some_and(|e| e <= hi) && b > 0;
        if !inside(self.block_bitmap, 1) {
            return Err(Refusal::bad(
                format!("group {g} bg_block_bitmap"),
                format!("block {} outside {lo}..{hi}", self.block_bitmap),
            ));
        }
        if !inside(self.inode_bitmap, 1) {
            return Err(Refusal::bad(
                format!("group {g} bg_inode_bitmap"),
                format!("block {} outside {lo}..{hi}", self.inode_bitmap),
            ));
        }
        if !inside(self.inode_table, geo.itb_per_group as u64) {
            return Err(Refusal::bad(
                format!("group {g} bg_inode_table"),
                format!(
                    "blocks {}..+{} outside {lo}..{hi}",
                    self.inode_table, geo.itb_per_group
                ),
            ));
        }
        if self.free_blocks > geo.blocks_in_group(g) {
            return Err(Refusal::bad(
                format!("group {g} bg_free_blocks_count"),
                format!(
                    "{} > {} blocks in the group",
                    self.free_blocks,
                    geo.blocks_in_group(g)
                ),
            ));
        }
        if self.free_inodes > geo.inodes_per_group {
            return Err(Refusal::bad(
                format!("group {g} bg_free_inodes_count"),
                format!(
                    "{} > {} inodes per group",
                    self.free_inodes, geo.inodes_per_group
                ),
            ));
        }
        if self.used_dirs > geo.inodes_per_group {
            return Err(Refusal::bad(
                format!("group {g} bg_used_dirs_count"),
                format!(
                    "{} > {} inodes per group",
                    self.used_dirs, geo.inodes_per_group
                ),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Inodes

/// An on-disk inode, decoded. `raw` keeps all `inode_size` bytes so that
/// fields this driver does not interpret (extended attributes in the
/// inode, checksums, project id) are written back unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// All `inode_size` bytes as read (fields not decoded are written back unchanged).
    pub raw: Vec<u8>,
    /// `i_mode`: type and permission bits.
    pub mode: u16,
    /// Owner (`i_uid` and its high 16 bits).
    pub uid: u32,
    /// Group (`i_gid` and its high 16 bits).
    pub gid: u32,
    /// Size in bytes (`i_size`, plus `i_size_high` for regular files).
    pub size: u64,
    /// Access time (seconds, nanoseconds where the inode has room).
    pub atime: (i64, u32),
    /// Change time.
    pub ctime: (i64, u32),
    /// Modification time.
    pub mtime: (i64, u32),
    /// Creation time (large inodes only).
    pub crtime: Option<(i64, u32)>,
    /// Deletion time (`i_dtime`).
    pub dtime: u32,
    /// Link count (`i_links_count`).
    pub links: u16,
    /// 512-byte sectors (file system blocks when HUGE_FILE flag is set).
    pub blocks: u64,
    /// `i_flags` (see [`iflags`]).
    pub flags: u32,
    /// Block map (`i_block`): 12 direct, single, double, triple indirect.
    pub block: [u32; N_BLOCKS],
    /// `i_generation` (NFS handles).
    pub generation: u32,
    /// Extended attribute block (`i_file_acl`), 0 for none.
    pub file_acl: u64,
    /// `i_extra_isize` (0 for 128-byte inodes).
    pub extra_isize: u16,
}

/// Offsets of the extra time fields in a large inode.
const I_CTIME_EXTRA: usize = 132;
const I_MTIME_EXTRA: usize = 136;
const I_ATIME_EXTRA: usize = 140;
const I_CRTIME: usize = 144;
const I_CRTIME_EXTRA: usize = 148;

fn decode_time(base: u32, extra: Option<u32>) -> (i64, u32) {
    let mut sec = base as i32 as i64;
    let mut nsec = 0;
    if let Some(x) = extra {
        sec += ((x & 3) as i64) << 32;
        nsec = (x >> 2).min(999_999_999);
    }
    (sec, nsec)
}

/// Seconds an inode can hold: 32 signed bits, plus two epoch bits when
/// the inode has the extra time fields (up to the year 2446), as Linux
/// clamps them.
fn clamp_time(t: (i64, u32), extra: bool) -> (i64, u32) {
    let (lo, hi) = if extra {
        (i32::MIN as i64, i32::MIN as i64 + (1i64 << 34) - 1)
    } else {
        (i32::MIN as i64, i32::MAX as i64)
    };
    if t.0 < lo {
        (lo, 0)
    } else if t.0 > hi {
        (hi, if extra { 999_999_999 } else { 0 })
    } else {
        t
    }
}

fn encode_time(t: (i64, u32)) -> (u32, u32) {
    let base = t.0 as i32;
    let epoch = ((t.0 - base as i64) >> 32) as u32 & 3;
    (base as u32, epoch | (t.1.min(999_999_999) << 2))
}

impl Inode {
    /// Does the inode's extra area (inode_size > 128) cover the 4-byte
    /// field at `off`?
    fn has_extra(&self, off: usize) -> bool {
        self.raw.len() >= off + 4
            && GOOD_OLD_INODE_SIZE as usize + self.extra_isize as usize >= off + 4
    }

    /// Decode `raw` (`inode_size` bytes). `large_file`: i_size_high holds
    /// the high size bits of regular files.
    pub fn parse(raw: &[u8]) -> KResult<Inode> {
        let mut block = [0u32; N_BLOCKS];
        for (i, b) in block.iter_mut().enumerate() {
            *b = le32(raw, 40 + 4 * i)?;
        }
        let mode = le16(raw, 0)?;
        let size_lo = le32(raw, 4)? as u64;
        let size_hi = le32(raw, 108)? as u64;
        let is_reg = mode as u32 & 0o170000 == 0o100000;
        let extra_isize = if raw.len() > GOOD_OLD_INODE_SIZE as usize {
            le16(raw, 128)?
        } else {
            0
        };
        let extra_isize = if GOOD_OLD_INODE_SIZE as usize + extra_isize as usize > raw.len()
            || extra_isize % 4 != 0
        {
            0 // corrupt: ignore the extra fields (e2fsck fixes it)
        } else {
            extra_isize
        };
        let mut ino = Inode {
            raw: raw.to_vec(),
            mode,
            uid: le16(raw, 2)? as u32 | ((le16(raw, 120)? as u32) << 16),
            gid: le16(raw, 24)? as u32 | ((le16(raw, 122)? as u32) << 16),
            size: if is_reg {
                size_lo | (size_hi << 32)
            } else {
                size_lo
            },
            atime: (0, 0),
            ctime: (0, 0),
            mtime: (0, 0),
            crtime: None,
            dtime: le32(raw, 20)?,
            links: le16(raw, 26)?,
            blocks: le32(raw, 28)? as u64 | ((le16(raw, 116)? as u64) << 32),
            flags: le32(raw, 32)?,
            block,
            generation: le32(raw, 100)?,
            file_acl: le32(raw, 104)? as u64 | ((le16(raw, 118)? as u64) << 32),
            extra_isize,
        };
        let ex = |ino: &Inode, off| {
            if ino.has_extra(off) {
                le32(raw, off).ok()
            } else {
                None
            }
        };
        ino.atime = decode_time(le32(raw, 8)?, ex(&ino, I_ATIME_EXTRA));
        ino.ctime = decode_time(le32(raw, 12)?, ex(&ino, I_CTIME_EXTRA));
        ino.mtime = decode_time(le32(raw, 16)?, ex(&ino, I_MTIME_EXTRA));
        if ino.has_extra(I_CRTIME_EXTRA) {
            ino.crtime = Some(decode_time(le32(raw, I_CRTIME)?, ex(&ino, I_CRTIME_EXTRA)));
        }
        Ok(ino)
    }

    /// A fresh in-memory inode of `inode_size` bytes (all zero, extra
    /// area sized as e2fsprogs does for large inodes).
    pub fn new_empty(inode_size: u32) -> Inode {
        let raw = vec![0u8; inode_size as usize];
        let extra = if inode_size > GOOD_OLD_INODE_SIZE {
            32.min(inode_size - GOOD_OLD_INODE_SIZE) as u16
        } else {
            0
        };
        Inode {
            raw,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            atime: (0, 0),
            ctime: (0, 0),
            mtime: (0, 0),
            crtime: None,
            dtime: 0,
            links: 0,
            blocks: 0,
            flags: 0,
            block: [0; N_BLOCKS],
            generation: 0,
            file_acl: 0,
            extra_isize: extra,
        }
    }

    /// The raw bytes with every decoded field stored back.
    pub fn to_bytes(&self) -> KResult<Vec<u8>> {
        let mut r = self.raw.clone();
        let is_reg = self.mode as u32 & 0o170000 == 0o100000;
        put16(&mut r, 0, self.mode)?;
        put16(&mut r, 2, self.uid as u16)?;
        put32(&mut r, 4, self.size as u32)?;
        let (a, ax) = encode_time(clamp_time(self.atime, self.has_extra(I_ATIME_EXTRA)));
        let (c, cx) = encode_time(clamp_time(self.ctime, self.has_extra(I_CTIME_EXTRA)));
        let (m, mx) = encode_time(clamp_time(self.mtime, self.has_extra(I_MTIME_EXTRA)));
        put32(&mut r, 8, a)?;
        put32(&mut r, 12, c)?;
        put32(&mut r, 16, m)?;
        put32(&mut r, 20, self.dtime)?;
        put16(&mut r, 24, self.gid as u16)?;
        put16(&mut r, 26, self.links)?;
        put32(&mut r, 28, self.blocks as u32)?;
        put32(&mut r, 32, self.flags)?;
        for (i, b) in self.block.iter().enumerate() {
            put32(&mut r, 40 + 4 * i, *b)?;
        }
        put32(&mut r, 100, self.generation)?;
        put32(&mut r, 104, self.file_acl as u32)?;
        if is_reg {
            put32(&mut r, 108, (self.size >> 32) as u32)?;
        }
        put16(&mut r, 116, (self.blocks >> 32) as u16)?;
        put16(&mut r, 118, (self.file_acl >> 32) as u16)?;
        put16(&mut r, 120, (self.uid >> 16) as u16)?;
        put16(&mut r, 122, (self.gid >> 16) as u16)?;
        if r.len() > GOOD_OLD_INODE_SIZE as usize {
            put16(&mut r, 128, self.extra_isize)?;
        }
        if self.has_extra(I_CTIME_EXTRA) {
            put32(&mut r, I_CTIME_EXTRA, cx)?;
        }
        if self.has_extra(I_MTIME_EXTRA) {
            put32(&mut r, I_MTIME_EXTRA, mx)?;
        }
        if self.has_extra(I_ATIME_EXTRA) {
            put32(&mut r, I_ATIME_EXTRA, ax)?;
        }
        if let Some(cr) = self.crtime {
            if self.has_extra(I_CRTIME_EXTRA) {
                let (b, x) = encode_time(cr);
                put32(&mut r, I_CRTIME, b)?;
                put32(&mut r, I_CRTIME_EXTRA, x)?;
            }
        }
        Ok(r)
    }

    /// Clamp the times to what this inode can store (as Linux's
    /// `timestamp_truncate`), so that getattr shows what the disk keeps.
    pub fn clamp_times(&mut self) {
        self.atime = clamp_time(self.atime, self.has_extra(I_ATIME_EXTRA));
        self.mtime = clamp_time(self.mtime, self.has_extra(I_MTIME_EXTRA));
        self.ctime = clamp_time(self.ctime, self.has_extra(I_CTIME_EXTRA));
        if !self.has_extra(I_ATIME_EXTRA) {
            self.atime.1 = 0;
        }
        if !self.has_extra(I_MTIME_EXTRA) {
            self.mtime.1 = 0;
        }
        if !self.has_extra(I_CTIME_EXTRA) {
            self.ctime.1 = 0;
        }
    }

    /// `S_IFMT` bits of the mode.
    pub fn ifmt(&self) -> u32 {
        self.mode as u32 & 0o170000
    }

    /// Is this a fast symlink (target inside `i_block`)? As Linux decides:
    /// no data blocks besides an extended attribute block.
    pub fn is_fast_symlink(&self, block_size: u32) -> bool {
        let ea = if self.file_acl != 0 {
            (block_size / 512) as u64
        } else {
            0
        };
        self.ifmt() == 0o120000
            && self.blocks.saturating_sub(ea) == 0
            && self.flags & iflags::INLINE_DATA == 0
    }

    /// Device number of a device node, as a Linux `dev_t`.
    pub fn rdev(&self) -> u64 {
        let (major, minor) = if self.block[0] != 0 {
            let d = self.block[0];
            ((d >> 8) & 0xff, d & 0xff)
        } else {
            let d = self.block[1];
            ((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00))
        };
        makedev(major, minor)
    }

    /// Store a device number (Linux `dev_t`) the way Linux does: the old
    /// 16-bit encoding in `i_block[0]` when it fits, else the new one in
    /// `i_block[1]`.
    pub fn set_rdev(&mut self, rdev: u64) {
        let (major, minor) = (dev_major(rdev), dev_minor(rdev));
        self.block = [0; N_BLOCKS];
        if major < 256 && minor < 256 {
            self.block[0] = (major << 8) | minor;
        } else {
            self.block[1] = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        }
    }
}

/// Linux `makedev`.
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & !0xff) << 12) | ((ma & !0xfff) << 32)
}

/// Linux `major()` of a `dev_t`.
pub fn dev_major(d: u64) -> u32 {
    (((d >> 8) & 0xfff) | ((d >> 32) & !0xfff)) as u32
}

/// Linux `minor()` of a `dev_t`.
pub fn dev_minor(d: u64) -> u32 {
    ((d & 0xff) | ((d >> 12) & !0xff)) as u32
}

// ---------------------------------------------------------------------------
// Directory entries

/// Fixed part of a directory entry: inode, rec_len, name_len, file_type.
pub const DIRENT_HDR: usize = 8;

/// Space a directory entry with a name of `name_len` bytes needs.
pub fn dirent_size(name_len: usize) -> usize {
    (DIRENT_HDR + name_len + 3) & !3
}

/// A directory entry header, decoded and checked against its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirentHdr {
    /// Inode number, 0 for an unused entry.
    pub ino: u32,
    /// Bytes from this entry to the next.
    pub rec_len: usize,
    /// Length of the name.
    pub name_len: usize,
    /// File type (see [`ftype`]), 0 without the filetype feature.
    pub ftype: u8,
}

/// Decode the entry at `off` of the directory block `blk`, checking that
/// it lies inside the block (rec_len at least 8, a multiple of 4, not past
/// the block end, big enough for the name). `filetype`: the feature is
/// on (else name_len is 16 bits and the type is unknown). Errors: EIO.
pub fn dirent_at(blk: &[u8], off: usize, filetype: bool) -> KResult<DirentHdr> {
    let bs = blk.len();
    let ino = le32(blk, off)?;
    let raw_rec = le16(blk, off + 4)? as usize;
    let rec_len = if bs >= 65536 && (raw_rec == 0 || raw_rec == 65535) {
        65536
    } else {
        raw_rec
    };
    let (name_len, ftype) = if filetype {
        (le8(blk, off + 6)? as usize, le8(blk, off + 7)?)
    } else {
        (le16(blk, off + 6)? as usize, ftype::UNKNOWN)
    };
    if rec_len < DIRENT_HDR
        || rec_len % 4 != 0
        || off + rec_len > bs
        || name_len > NAME_LEN
        || DIRENT_HDR + name_len > rec_len
    {
        return Err(Errno::EIO);
    }
    Ok(DirentHdr {
        ino,
        rec_len,
        name_len,
        ftype,
    })
}

/// Write an entry header at `off` (rec_len encoded for 64 KiB blocks).
pub fn put_dirent(blk: &mut [u8], off: usize, h: &DirentHdr, filetype: bool) -> KResult<()> {
    put32(blk, off, h.ino)?;
    let rl = if h.rec_len >= 65536 {
        65535
    } else {
        h.rec_len as u16
    };
    put16(blk, off + 4, rl)?;
    if filetype {
        put8(blk, off + 6, h.name_len as u8)?;
        put8(blk, off + 7, h.ftype)?;
    } else {
        put16(blk, off + 6, h.name_len as u16)?;
    }
    Ok(())
}

/// The file type byte for a `S_IFMT` mode.
pub fn ftype_of_mode(ifmt: u32) -> u8 {
    match ifmt {
        0o100000 => ftype::REG,
        0o040000 => ftype::DIR,
        0o020000 => ftype::CHRDEV,
        0o060000 => ftype::BLKDEV,
        0o010000 => ftype::FIFO,
        0o140000 => ftype::SOCK,
        0o120000 => ftype::SYMLINK,
        _ => ftype::UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb_bytes() -> Vec<u8> {
        let mut r = vec![0u8; 1024];
        put32(&mut r, 0, 16).unwrap(); // inodes
        put32(&mut r, 4, 1024).unwrap(); // blocks
        put32(&mut r, 20, 1).unwrap();
        put32(&mut r, 32, 8192).unwrap();
        put32(&mut r, 36, 8192).unwrap();
        put32(&mut r, 40, 16).unwrap();
        put16(&mut r, 56, EXT2_MAGIC).unwrap();
        put32(&mut r, 76, 1).unwrap();
        put32(&mut r, 84, 11).unwrap();
        put16(&mut r, 88, 128).unwrap();
        r
    }

    #[test]
    fn accessors_bounds() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 1).unwrap(), 0x0302);
        assert_eq!(le32(&b, 0), Err(Errno::EIO));
        assert_eq!(le16(&b, usize::MAX), Err(Errno::EIO));
        let mut m = [0u8; 4];
        assert_eq!(put32(&mut m, 1, 5), Err(Errno::EIO));
    }

    #[test]
    fn superblock_checks_name_fields() {
        let r = sb_bytes();
        let sb = Superblock::parse(&r).unwrap();
        let g = Geometry::new(&sb, 1 << 20).unwrap();
        assert_eq!(g.block_size, 1024);
        assert_eq!(g.groups, 1);
        assert_eq!(
            Geometry::new(&sb, 1000).unwrap_err().field,
            "s_blocks_count"
        );
        let mut bad = r.clone();
        put32(&mut bad, 24, 7).unwrap();
        put32(&mut bad, 28, 7).unwrap();
        assert_eq!(
            Geometry::new(&Superblock::parse(&bad).unwrap(), 1 << 30)
                .unwrap_err()
                .field,
            "s_log_block_size"
        );
        let mut bad = r.clone();
        put32(&mut bad, 0, 17).unwrap();
        assert_eq!(
            Geometry::new(&Superblock::parse(&bad).unwrap(), 1 << 20)
                .unwrap_err()
                .field,
            "s_inodes_count"
        );
        let mut bad = r.clone();
        put16(&mut bad, 88, 100).unwrap();
        assert_eq!(
            Geometry::new(&Superblock::parse(&bad).unwrap(), 1 << 20)
                .unwrap_err()
                .field,
            "s_inode_size"
        );
        let mut bad = r;
        put16(&mut bad, 56, 0).unwrap();
        assert_eq!(Superblock::parse(&bad).unwrap_err().field, "s_magic");
    }

    #[test]
    fn features() {
        let mut r = sb_bytes();
        put32(&mut r, 96, incompat::FILETYPE | incompat::EXTENTS).unwrap();
        let e = Superblock::parse(&r)
            .unwrap()
            .check_features()
            .unwrap()
            .unwrap();
        assert_eq!((e.field.as_str(), e.errno), ("extent", Errno::EROFS));
        put32(
            &mut r,
            96,
            incompat::FILETYPE | incompat::INLINE_DATA | incompat::CASEFOLD,
        )
        .unwrap();
        let e = Superblock::parse(&r).unwrap().check_features().unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.errno),
            ("inline_data,casefold", Errno::EINVAL)
        );
        put32(&mut r, 96, incompat::FILETYPE).unwrap();
        put32(
            &mut r,
            100,
            ro_compat::METADATA_CSUM | ro_compat::SPARSE_SUPER,
        )
        .unwrap();
        let w = Superblock::parse(&r)
            .unwrap()
            .check_features()
            .unwrap()
            .unwrap();
        assert_eq!(w.field, "metadata_csum");
        assert_eq!(w.errno, Errno::EROFS);
        put32(&mut r, 100, ro_compat::LARGE_FILE).unwrap();
        assert!(Superblock::parse(&r)
            .unwrap()
            .check_features()
            .unwrap()
            .is_none());
    }

    #[test]
    fn times_and_devices() {
        for t in [
            (0i64, 0u32),
            (-5, 7),
            (0x7fff_ffff, 999_999_999),
            (0x1_2345_6789, 5),
        ] {
            let (b, x) = encode_time(t);
            assert_eq!(decode_time(b, Some(x)), t);
        }
        // Clamped like Linux: 2038 without extra fields, 2446 with them.
        let mut i = Inode::new_empty(128);
        i.mtime = (1i64 << 40, 5);
        i.atime = (-(1i64 << 40), 5);
        let back = Inode::parse(&i.to_bytes().unwrap()).unwrap();
        assert_eq!(back.mtime, (i32::MAX as i64, 0));
        assert_eq!(back.atime, (i32::MIN as i64, 0));
        let mut i = Inode::new_empty(256);
        i.mtime = (1i64 << 40, 5);
        i.ctime = (4_000_000_000, 7);
        let back = Inode::parse(&i.to_bytes().unwrap()).unwrap();
        assert_eq!(
            back.mtime,
            (i32::MIN as i64 + (1i64 << 34) - 1, 999_999_999)
        );
        assert_eq!(back.ctime, (4_000_000_000, 7));
        let d = makedev(8, 1);
        assert_eq!((dev_major(d), dev_minor(d)), (8, 1));
        let mut i = Inode::new_empty(256);
        i.set_rdev(makedev(300, 70000));
        assert_eq!(i.rdev(), makedev(300, 70000));
        i.set_rdev(makedev(4, 64));
        assert_eq!(i.block[0], 0x440);
        assert_eq!(i.rdev(), makedev(4, 64));
    }

    #[test]
    fn dirents() {
        let mut blk = vec![0u8; 1024];
        put_dirent(
            &mut blk,
            0,
            &DirentHdr {
                ino: 2,
                rec_len: 12,
                name_len: 1,
                ftype: 2,
            },
            true,
        )
        .unwrap();
        put_dirent(
            &mut blk,
            12,
            &DirentHdr {
                ino: 2,
                rec_len: 1012,
                name_len: 2,
                ftype: 2,
            },
            true,
        )
        .unwrap();
        assert_eq!(dirent_at(&blk, 12, true).unwrap().rec_len, 1012);
        put16(&mut blk, 16, 0).unwrap();
        assert_eq!(dirent_at(&blk, 12, true), Err(Errno::EIO));
        put16(&mut blk, 16, 2000).unwrap();
        assert_eq!(dirent_at(&blk, 12, true), Err(Errno::EIO));
        assert_eq!(dirent_size(1), 12);
        assert_eq!(dirent_size(4), 12);
        assert_eq!(dirent_size(5), 16);
    }
}
