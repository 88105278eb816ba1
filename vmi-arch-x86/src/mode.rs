//! The paging rules of each x86 paging mode, as data (SDM Vol. 3A, chapter 4).
//!
//! One table per mode says how many levels there are, which virtual-address bits index each
//! level, how wide an entry is, where a large page may stop the walk and which bits a present
//! entry must leave clear. [`crate::walker`] and [`crate::enumerate`] are written once against
//! these tables; adding a mode is adding a table.
//!
//! Assumptions, all true of every 64-bit-capable CPU and every OS vmi targets, because an
//! [`AddressSpace`](vmi_core::AddressSpace) does not carry the control bits that would say
//! otherwise:
//!
//! - MAXPHYADDR is [`MAX_PHYS_ADDR`] (52, the architectural maximum), so the SDM ranges "51:M"
//!   are empty and "62:M" are 62:52. A real CPU with a smaller MAXPHYADDR faults on more
//!   entries than vmi rejects; vmi never rejects an entry the SDM allows on any CPU.
//! - CR4.PSE = 1 in 32-bit paging (4 MiB pages honoured), with PSE-36 (M = 40).
//! - IA32_EFER.NXE = 1 in PAE and IA-32e paging (bit 63 is XD, not reserved).
//! - 1 GiB pages are supported (CPUID.80000001H:EDX.Page1GB = 1).

use vmi_core::{PageSize, PagingLevel, PagingMode};

use crate::entry::{bits, PAGE_SIZE};

/// The physical-address width assumed for reserved-bit checks (the architectural maximum).
pub const MAX_PHYS_ADDR: u32 = 52;

/// Physical-address width of 4 MiB pages in 32-bit paging: min(40, MAXPHYADDR) (SDM 4.3).
const PSE36_PHYS_ADDR: u32 = if MAX_PHYS_ADDR < 40 {
    MAX_PHYS_ADDR
} else {
    40
};

/// Bits (M-1):12 of an 8-byte entry: the address of the next table or of a 4 KiB page.
const FRAME_52: u64 = bits(MAX_PHYS_ADDR - 1, 12);
/// Bits 51:M, reserved in every present IA-32e entry (SDM tables 4-15 to 4-20); empty at M = 52.
const IA32E_RSVD: u64 = bits(51, MAX_PHYS_ADDR);
/// Bits 62:M, reserved in every present PAE PDE and PTE (SDM tables 4-9 to 4-11). Unlike
/// IA-32e, PAE has no ignored high bits: 62:52 must be zero even at M = 52.
const PAE_RSVD: u64 = bits(62, MAX_PHYS_ADDR);

/// How a large-page entry differs from a table-referencing entry at the same level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LargePage {
    /// The size of the page an entry with PS = 1 maps.
    pub size: PageSize,
    /// Bits that must be clear in a present large-page entry.
    pub reserved: u64,
    /// Bits of the entry that hold the page's physical address (in place).
    pub address_mask: u64,
    /// 32-bit paging with PSE-36: entry bits 20:13 are physical-address bits 39:32.
    pub pse36: bool,
}

/// The rules for the entries of one paging structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LevelRules {
    /// The level (1 = page table).
    pub level: PagingLevel,
    /// The lowest virtual-address bit of this level's index.
    pub shift: u32,
    /// How many virtual-address bits index this level (entries = 2^index_bits).
    pub index_bits: u32,
    /// Bits that must be clear in a present entry referencing a table (or, at level 1,
    /// mapping a 4 KiB page).
    pub reserved: u64,
    /// Bits of the entry that hold the next table's (or the 4 KiB page's) physical address.
    pub address_mask: u64,
    /// Whether R/W, U/S and XD exist at this level (not in PAE PDPTEs, where they are reserved).
    pub access_rights: bool,
    /// `Some` if PS = 1 maps a large page at this level.
    pub large: Option<LargePage>,
}

impl LevelRules {
    /// Number of entries in a table of this level.
    pub const fn entries(&self) -> u64 {
        1 << self.index_bits
    }

    /// The index of `va` in a table of this level.
    #[inline]
    pub const fn index(&self, va: u64) -> u64 {
        (va >> self.shift) & (self.entries() - 1)
    }

    /// Bytes of virtual address space one entry of this level covers.
    pub const fn entry_span(&self) -> u64 {
        1 << self.shift
    }
}

/// How the bits of a virtual address above the translated ones must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonical {
    /// 32-bit modes: a linear address is 32 bits; anything above is an error.
    ZeroExtended,
    /// IA-32e: the bits above the top translated bit must copy it (sign extension).
    SignExtended,
}

/// The complete paging rules of one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModeRules {
    /// The mode these rules describe.
    pub mode: PagingMode,
    /// Entry width in bytes: 4 (32-bit paging) or 8.
    pub entry_bytes: u8,
    /// Width of the translated virtual address (32, 48 or 57).
    pub va_bits: u32,
    /// How the bits above `va_bits` must look.
    pub canonical: Canonical,
    /// Whether entries have an XD bit (false for 32-bit paging: everything is executable).
    pub no_execute: bool,
    /// The levels, top (root) first; the last one is always level 1.
    pub levels: &'static [LevelRules],
}

impl ModeRules {
    /// Whether `va` is a valid (canonical) address in this mode.
    #[inline]
    pub const fn is_canonical(&self, va: u64) -> bool {
        match self.canonical {
            Canonical::ZeroExtended => va >> self.va_bits == 0,
            Canonical::SignExtended => {
                // Arithmetic shift: all ones or all zeros iff bits 63:(va_bits-1) agree.
                let top = (va as i64) >> (self.va_bits - 1);
                top == 0 || top == -1
            }
        }
    }

    /// Turns a table-relative address (bits below `va_bits`) into the address software
    /// uses: sign-extended in IA-32e, unchanged otherwise.
    #[inline]
    pub const fn canonicalize(&self, va: u64) -> u64 {
        match self.canonical {
            Canonical::ZeroExtended => va,
            Canonical::SignExtended => {
                let unused = 64 - self.va_bits;
                (((va << unused) as i64) >> unused) as u64
            }
        }
    }

    /// The rules of `level`, if the mode has it.
    pub fn level(&self, level: PagingLevel) -> Option<&'static LevelRules> {
        self.levels.iter().find(|l| l.level == level)
    }

    /// The page sizes this mode can map, smallest first.
    pub fn page_sizes(&self) -> impl Iterator<Item = PageSize> + '_ {
        std::iter::once(PageSize::Size4K).chain(
            self.levels
                .iter()
                .rev()
                .filter_map(|l| l.large.map(|p| p.size)),
        )
    }
}

/// The rules of `mode`, or `None` when paging is disabled (identity mapping).
///
/// ```
/// use vmi_arch_x86::mode::rules;
/// use vmi_core::PagingMode;
///
/// let r = rules(PagingMode::Ia32e5).unwrap();
/// assert_eq!((r.levels.len(), r.entry_bytes, r.va_bits), (5, 8, 57));
/// assert!(rules(PagingMode::Disabled).is_none());
/// ```
pub const fn rules(mode: PagingMode) -> Option<&'static ModeRules> {
    match mode {
        PagingMode::Legacy => Some(&LEGACY),
        PagingMode::Pae => Some(&PAE),
        PagingMode::Ia32e4 => Some(&IA32E_4),
        PagingMode::Ia32e5 => Some(&IA32E_5),
        // Disabled, and any mode a later vmi-core adds that this crate does not know yet.
        _ => None,
    }
}

/// 32-bit paging (SDM 4.3): 10 + 10 + 12 bits, 4-byte entries, no XD.
pub static LEGACY: ModeRules = ModeRules {
    mode: PagingMode::Legacy,
    entry_bytes: 4,
    va_bits: 32,
    canonical: Canonical::ZeroExtended,
    no_execute: false,
    levels: &[
        LevelRules {
            level: PagingLevel(2),
            shift: 22,
            index_bits: 10,
            // Table 4-5 (PDE referencing a page table): no reserved bits.
            reserved: 0,
            address_mask: bits(31, 12),
            access_rights: true,
            large: Some(LargePage {
                size: PageSize::Size4M,
                // Table 4-4 (PDE mapping a 4 MiB page): bits 21:(M-19) reserved, M = 40.
                reserved: bits(21, PSE36_PHYS_ADDR - 19),
                address_mask: bits(31, 22),
                pse36: true,
            }),
        },
        LevelRules {
            level: PagingLevel(1),
            shift: 12,
            index_bits: 10,
            // Table 4-6 (PTE): no reserved bits.
            reserved: 0,
            address_mask: bits(31, 12),
            access_rights: true,
            large: None,
        },
    ],
};

/// PAE paging (SDM 4.4): 2 + 9 + 9 + 12 bits, 8-byte entries, a 4-entry PDPT.
pub static PAE: ModeRules = ModeRules {
    mode: PagingMode::Pae,
    entry_bytes: 8,
    va_bits: 32,
    canonical: Canonical::ZeroExtended,
    no_execute: true,
    levels: &[
        LevelRules {
            level: PagingLevel(3),
            shift: 30,
            index_bits: 2,
            // Table 4-8 (PDPTE): bits 2:1 and 8:5 (which include PS) and 63:M (which includes
            // XD) are reserved; there are no access rights at this level.
            reserved: bits(2, 1) | bits(8, 5) | bits(63, MAX_PHYS_ADDR),
            address_mask: FRAME_52,
            access_rights: false,
            large: None,
        },
        LevelRules {
            level: PagingLevel(2),
            shift: 21,
            index_bits: 9,
            // Table 4-10 (PDE referencing a page table): bits 62:M reserved.
            reserved: PAE_RSVD,
            address_mask: FRAME_52,
            access_rights: true,
            large: Some(LargePage {
                size: PageSize::Size2M,
                // Table 4-9 (PDE mapping a 2 MiB page): bits 20:13 and 62:M reserved.
                reserved: bits(20, 13) | PAE_RSVD,
                address_mask: bits(MAX_PHYS_ADDR - 1, 21),
                pse36: false,
            }),
        },
        LevelRules {
            level: PagingLevel(1),
            shift: 12,
            index_bits: 9,
            // Table 4-11 (PTE): bits 62:M reserved.
            reserved: PAE_RSVD,
            address_mask: FRAME_52,
            access_rights: true,
            large: None,
        },
    ],
};

/// IA-32e levels PDPT, PD and PT (SDM 4.5), shared by 4- and 5-level paging.
macro_rules! ia32e_lower_levels {
    () => {
        [
            LevelRules {
                level: PagingLevel(3),
                shift: 30,
                index_bits: 9,
                // Table 4-17 (PDPTE referencing a page directory): bits 51:M reserved.
                reserved: IA32E_RSVD,
                address_mask: FRAME_52,
                access_rights: true,
                large: Some(LargePage {
                    size: PageSize::Size1G,
                    // Table 4-16 (PDPTE mapping a 1 GiB page): bits 29:13 and 51:M reserved.
                    reserved: bits(29, 13) | IA32E_RSVD,
                    address_mask: bits(MAX_PHYS_ADDR - 1, 30),
                    pse36: false,
                }),
            },
            LevelRules {
                level: PagingLevel(2),
                shift: 21,
                index_bits: 9,
                // Table 4-19 (PDE referencing a page table): bits 51:M reserved.
                reserved: IA32E_RSVD,
                address_mask: FRAME_52,
                access_rights: true,
                large: Some(LargePage {
                    size: PageSize::Size2M,
                    // Table 4-18 (PDE mapping a 2 MiB page): bits 20:13 and 51:M reserved.
                    reserved: bits(20, 13) | IA32E_RSVD,
                    address_mask: bits(MAX_PHYS_ADDR - 1, 21),
                    pse36: false,
                }),
            },
            LevelRules {
                level: PagingLevel(1),
                shift: 12,
                index_bits: 9,
                // Table 4-20 (PTE): bits 51:M reserved; 58:52 ignored, 62:59 protection key.
                reserved: IA32E_RSVD,
                address_mask: FRAME_52,
                access_rights: true,
                large: None,
            },
        ]
    };
}

/// The PML4 (or PML5) level: Table 4-15 (PML4E) and Table 4-14 (PML5E) reserve PS (bit 7)
/// and bits 51:M.
const fn ia32e_top(level: u8, shift: u32) -> LevelRules {
    LevelRules {
        level: PagingLevel(level),
        shift,
        index_bits: 9,
        reserved: PAGE_SIZE | IA32E_RSVD,
        address_mask: FRAME_52,
        access_rights: true,
        large: None,
    }
}

const IA32E_LOWER: [LevelRules; 3] = ia32e_lower_levels!();

const IA32E_4_LEVELS: [LevelRules; 4] = [
    ia32e_top(4, 39),
    IA32E_LOWER[0],
    IA32E_LOWER[1],
    IA32E_LOWER[2],
];

const IA32E_5_LEVELS: [LevelRules; 5] = [
    ia32e_top(5, 48),
    ia32e_top(4, 39),
    IA32E_LOWER[0],
    IA32E_LOWER[1],
    IA32E_LOWER[2],
];

/// IA-32e 4-level paging (SDM 4.5): 9 + 9 + 9 + 9 + 12 bits, canonical 48-bit addresses.
pub static IA32E_4: ModeRules = ModeRules {
    mode: PagingMode::Ia32e4,
    entry_bytes: 8,
    va_bits: 48,
    canonical: Canonical::SignExtended,
    no_execute: true,
    levels: &IA32E_4_LEVELS,
};

/// IA-32e 5-level paging (LA57, SDM 4.5): a PML5 above the 4-level tables, canonical 57-bit
/// addresses.
pub static IA32E_5: ModeRules = ModeRules {
    mode: PagingMode::Ia32e5,
    entry_bytes: 8,
    va_bits: 57,
    canonical: Canonical::SignExtended,
    no_execute: true,
    levels: &IA32E_5_LEVELS,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables must be self-consistent: index fields tile the address exactly.
    #[test]
    fn levels_tile_the_virtual_address() {
        for r in [&LEGACY, &PAE, &IA32E_4, &IA32E_5] {
            let mut next_shift = r.va_bits;
            for (i, l) in r.levels.iter().enumerate() {
                assert_eq!(l.shift + l.index_bits, next_shift, "{:?} level {i}", r.mode);
                assert_eq!(usize::from(l.level.0), r.levels.len() - i);
                next_shift = l.shift;
                if let Some(p) = l.large {
                    assert_eq!(p.size.shift(), l.shift);
                    assert_eq!(p.address_mask & p.size.offset_mask(), 0);
                }
            }
            assert_eq!(next_shift, 12);
        }
    }

    #[test]
    fn reserved_masks_follow_the_sdm() {
        assert_eq!(IA32E_RSVD, 0);
        assert_eq!(PAE_RSVD, 0x7ff0_0000_0000_0000);
        assert_eq!(PAE.levels[0].reserved, 0xfff0_0000_0000_01e6);
        assert_eq!(LEGACY.levels[0].large.unwrap().reserved, 1 << 21);
        assert_eq!(IA32E_4.levels[1].large.unwrap().reserved, 0x3fff_e000);
        assert_eq!(IA32E_4.levels[2].large.unwrap().reserved, 0x1f_e000);
        assert_eq!(IA32E_5.levels[0].reserved, 0x80);
    }

    #[test]
    fn canonical_forms() {
        assert!(IA32E_4.is_canonical(0x0000_7fff_ffff_ffff));
        assert!(IA32E_4.is_canonical(0xffff_8000_0000_0000));
        assert!(!IA32E_4.is_canonical(0x0000_8000_0000_0000));
        assert!(!IA32E_4.is_canonical(0xfff7_8000_0000_0000));
        assert!(IA32E_5.is_canonical(0x00ff_ffff_ffff_ffff));
        assert!(IA32E_5.is_canonical(0xff00_0000_0000_0000));
        assert!(!IA32E_5.is_canonical(0x0100_0000_0000_0000));
        assert!(LEGACY.is_canonical(0xffff_ffff));
        assert!(!PAE.is_canonical(0x1_0000_0000));
        assert_eq!(
            IA32E_4.canonicalize(0x0000_8000_0000_0000),
            0xffff_8000_0000_0000
        );
        assert_eq!(
            IA32E_5.canonicalize(0x0100_0000_0000_0000),
            0xff00_0000_0000_0000
        );
    }
}
