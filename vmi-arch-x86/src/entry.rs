//! Decoding of paging-structure entries (SDM Vol. 3A, tables 4-4 to 4-20).
//!
//! The bits that mean the same thing at every level and in every mode live here; what differs
//! between modes and levels (reserved bits, address bits, large pages) is data in
//! [`crate::mode`].

/// Bit 0, P: the entry is present (references a table or maps a page).
pub const PRESENT: u64 = 1 << 0;
/// Bit 1, R/W: writes are allowed through this entry.
pub const WRITABLE: u64 = 1 << 1;
/// Bit 2, U/S: user-mode accesses are allowed through this entry.
pub const USER: u64 = 1 << 2;
/// Bit 3, PWT: page-level write-through.
pub const WRITE_THROUGH: u64 = 1 << 3;
/// Bit 4, PCD: page-level cache disable.
pub const CACHE_DISABLE: u64 = 1 << 4;
/// Bit 5, A: accessed.
pub const ACCESSED: u64 = 1 << 5;
/// Bit 6, D: dirty (leaf entries only).
pub const DIRTY: u64 = 1 << 6;
/// Bit 7, PS: this entry maps a large page instead of referencing a table (at levels that
/// allow large pages; PAT in a page-table entry, reserved at PML4/PML5 and in PAE PDPTEs).
pub const PAGE_SIZE: u64 = 1 << 7;
/// Bit 8, G: global (leaf entries only).
pub const GLOBAL: u64 = 1 << 8;
/// Bit 63, XD/NX: instruction fetches are not allowed through this entry (PAE and IA-32e).
pub const NO_EXECUTE: u64 = 1 << 63;

/// A mask with bits `lo..=hi` set. `bits(51, 52)` (an empty SDM range such as "51:M" with
/// M = 52) is zero.
///
/// ```
/// use vmi_arch_x86::entry::bits;
/// assert_eq!(bits(20, 13), 0x1f_e000);
/// assert_eq!(bits(51, 52), 0);
/// assert_eq!(bits(63, 0), u64::MAX);
/// ```
pub const fn bits(hi: u32, lo: u32) -> u64 {
    if hi < lo || lo > 63 {
        return 0;
    }
    let hi = if hi > 63 { 63 } else { hi };
    let upper = if hi == 63 {
        u64::MAX
    } else {
        (1u64 << (hi + 1)) - 1
    };
    upper & !((1u64 << lo) - 1)
}

/// What one present or non-present entry means at its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// P = 0: nothing is mapped below this entry.
    NotPresent,
    /// The entry is present but sets these reserved bits (a page fault on real hardware).
    Reserved(u64),
    /// The entry references the next paging structure at this physical address.
    Table(u64),
    /// The entry maps a page of `size` starting at physical address `base`.
    Page {
        /// First physical address of the page.
        base: u64,
        /// The page size.
        size: vmi_core::PageSize,
    },
}

/// Decodes `entry` by the rules of its level. Level 1 never yields [`Decoded::Table`].
///
/// ```
/// use vmi_arch_x86::entry::{decode, Decoded};
/// use vmi_arch_x86::mode::IA32E_4;
/// use vmi_core::PageSize;
///
/// let pd = &IA32E_4.levels[2];
/// assert_eq!(decode(pd, 0x4020_0083), Decoded::Page { base: 0x4020_0000, size: PageSize::Size2M });
/// assert_eq!(decode(pd, 0x4020_2083), Decoded::Reserved(0x2000));
/// assert_eq!(decode(pd, 0x1234_5003), Decoded::Table(0x1234_5000));
/// ```
#[inline]
pub fn decode(level: &crate::mode::LevelRules, entry: u64) -> Decoded {
    if entry & PRESENT == 0 {
        return Decoded::NotPresent;
    }
    if let Some(large) = &level.large {
        if entry & PAGE_SIZE != 0 {
            let reserved = entry & large.reserved;
            if reserved != 0 {
                return Decoded::Reserved(reserved);
            }
            let mut base = entry & large.address_mask;
            if large.pse36 {
                // PSE-36 (SDM table 4-4): entry bits 20:13 are physical-address bits 39:32.
                base |= ((entry >> 13) & 0xff) << 32;
            }
            return Decoded::Page {
                base,
                size: large.size,
            };
        }
    }
    let reserved = entry & level.reserved;
    if reserved != 0 {
        return Decoded::Reserved(reserved);
    }
    let address = entry & level.address_mask;
    if level.level.0 <= 1 {
        Decoded::Page {
            base: address,
            size: vmi_core::PageSize::Size4K,
        }
    } else {
        Decoded::Table(address)
    }
}

/// Applies the access rights of `entry` at `level` to `perms` (SDM 4.6.1): writable and user
/// only if every level allows it, executable only if no level sets XD. Levels without access
/// rights (PAE PDPTEs) and modes without XD (32-bit paging) leave the matching rights alone.
#[inline]
pub fn accumulate(
    rules: &crate::mode::ModeRules,
    level: &crate::mode::LevelRules,
    perms: vmi_core::Permissions,
    entry: u64,
) -> vmi_core::Permissions {
    if !level.access_rights {
        return perms;
    }
    vmi_core::Permissions {
        writable: perms.writable && entry & WRITABLE != 0,
        user: perms.user && entry & USER != 0,
        executable: perms.executable && !(rules.no_execute && entry & NO_EXECUTE != 0),
    }
}

/// The flags of an entry as `vmi translate` shows them: `P RW US PWT PCD A D PS G NX`, each
/// present only when set, and `PS` only where the bit means "large page" (PD and PDPT in
/// IA-32e, PD in PAE and legacy paging; at the PT level bit 7 is PAT).
///
/// ```
/// use vmi_arch_x86::describe_entry;
/// use vmi_core::{PagingLevel, PagingMode};
///
/// let pde = 0x8000_0000_0120_00e3;
/// assert_eq!(describe_entry(pde, PagingLevel(2), PagingMode::Ia32e4), "P RW A D PS NX");
/// assert_eq!(describe_entry(0, PagingLevel(1), PagingMode::Ia32e4), "not present");
/// ```
pub fn describe_entry(
    entry: u64,
    level: vmi_core::PagingLevel,
    mode: vmi_core::PagingMode,
) -> String {
    if entry & PRESENT == 0 {
        return "not present".to_owned();
    }
    let large_page_level = match mode {
        vmi_core::PagingMode::Ia32e4 | vmi_core::PagingMode::Ia32e5 => matches!(level.0, 2 | 3),
        vmi_core::PagingMode::Pae | vmi_core::PagingMode::Legacy => level.0 == 2,
        _ => false,
    };
    let has_nx = !matches!(mode, vmi_core::PagingMode::Legacy);
    let flags: [(u64, &str, bool); 10] = [
        (PRESENT, "P", true),
        (WRITABLE, "RW", true),
        (USER, "US", true),
        (WRITE_THROUGH, "PWT", true),
        (CACHE_DISABLE, "PCD", true),
        (ACCESSED, "A", true),
        (DIRTY, "D", true),
        (PAGE_SIZE, "PS", large_page_level),
        (GLOBAL, "G", true),
        (NO_EXECUTE, "NX", has_nx),
    ];
    flags
        .iter()
        .filter(|(bit, _, meaningful)| *meaningful && entry & bit != 0)
        .map(|(_, name, _)| *name)
        .collect::<Vec<_>>()
        .join(" ")
}
