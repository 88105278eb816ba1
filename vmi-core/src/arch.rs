//! The architecture capability: paging modes, translation, page-walk reports and mapping
//! enumeration. `vmi-arch-x86` implements it.

use std::fmt;
use std::ops::ControlFlow;

use serde::Serialize;

use crate::addr::{Pa, PageSize, Va};
use crate::error::TranslationError;
use crate::memory::PhysicalMemory;
use crate::vcpu::X86Registers;

/// An x86 paging mode, as selected by CR0.PG, CR4.PAE, EFER.LME and CR4.LA57.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum PagingMode {
    /// Paging is off: virtual equals physical.
    #[serde(rename = "none")]
    Disabled,
    /// 32-bit paging: two levels, 4 KiB and (with PSE) 4 MiB pages.
    #[serde(rename = "legacy")]
    Legacy,
    /// PAE paging: three levels, 4 KiB and 2 MiB pages.
    #[serde(rename = "pae")]
    Pae,
    /// IA-32e paging with four levels (48-bit addresses).
    #[serde(rename = "ia32e-4")]
    Ia32e4,
    /// IA-32e paging with five levels (LA57, 57-bit addresses).
    #[serde(rename = "ia32e-5")]
    Ia32e5,
}

impl PagingMode {
    /// The name used by the `vmi` command contract.
    pub const fn name(self) -> &'static str {
        match self {
            PagingMode::Disabled => "none",
            PagingMode::Legacy => "legacy",
            PagingMode::Pae => "pae",
            PagingMode::Ia32e4 => "ia32e-4",
            PagingMode::Ia32e5 => "ia32e-5",
        }
    }

    /// Number of paging-structure levels.
    pub const fn levels(self) -> u8 {
        match self {
            PagingMode::Disabled => 0,
            PagingMode::Legacy => 2,
            PagingMode::Pae => 3,
            PagingMode::Ia32e4 => 4,
            PagingMode::Ia32e5 => 5,
        }
    }

    /// The paging mode selected by control registers (SDM Vol. 3A, 4.1.1).
    ///
    /// CR3 bits outside the table address (PCID, PWT/PCD) are masked off the root.
    pub fn from_registers(regs: &X86Registers) -> AddressSpace {
        const CR0_PG: u64 = 1 << 31;
        const CR4_PAE: u64 = 1 << 5;
        const CR4_LA57: u64 = 1 << 12;
        const EFER_LME: u64 = 1 << 8;
        let mode = if regs.cr0 & CR0_PG == 0 {
            PagingMode::Disabled
        } else if regs.cr4 & CR4_PAE == 0 {
            PagingMode::Legacy
        } else if regs.efer & EFER_LME == 0 {
            PagingMode::Pae
        } else if regs.cr4 & CR4_LA57 == 0 {
            PagingMode::Ia32e4
        } else {
            PagingMode::Ia32e5
        };
        let root_mask = match mode {
            PagingMode::Disabled => 0,
            PagingMode::Legacy => 0xffff_f000,
            // PAE: CR3 holds a 32-byte aligned PDPT address.
            PagingMode::Pae => 0xffff_ffe0,
            PagingMode::Ia32e4 | PagingMode::Ia32e5 => 0x000f_ffff_ffff_f000,
        };
        AddressSpace {
            root: Pa::new(regs.cr3 & root_mask),
            mode,
        }
    }
}

impl fmt::Display for PagingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One level of the paging hierarchy: 1 is the page table, 5 the PML5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PagingLevel(pub u8);

impl PagingLevel {
    /// The conventional name of the table at this level.
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "PT",
            2 => "PD",
            3 => "PDPT",
            4 => "PML4",
            5 => "PML5",
            _ => "?",
        }
    }
}

impl fmt::Display for PagingLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The root of an address space and how to walk it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressSpace {
    /// Physical address of the top-level paging structure (CR3 without flag bits).
    pub root: Pa,
    /// How to walk it.
    pub mode: PagingMode,
}

/// Access rights accumulated over every level of a walk (SDM 4.6): a page is writable or
/// user-accessible only if every level allows it, and executable only if no level sets NX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Permissions {
    /// Writable (R/W set at every level).
    pub writable: bool,
    /// User-mode accessible (U/S set at every level).
    pub user: bool,
    /// Executable (NX clear at every level; always true where NX does not exist).
    pub executable: bool,
}

impl Permissions {
    /// Everything allowed: the identity before the first level is applied.
    pub const ALL: Permissions = Permissions {
        writable: true,
        user: true,
        executable: true,
    };
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "r{}{}{}",
            if self.writable { 'w' } else { '-' },
            if self.executable { 'x' } else { '-' },
            if self.user { 'u' } else { 's' }
        )
    }
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Translation {
    /// The physical address of the translated byte.
    pub pa: Pa,
    /// The size of the page that maps it.
    pub size: PageSize,
    /// Accumulated permissions.
    pub perms: Permissions,
}

impl Translation {
    /// Bytes from the translated address to the end of its page.
    pub fn bytes_to_page_end(&self) -> u64 {
        self.size.bytes() - self.pa.page_offset(self.size)
    }
}

/// One step of a page walk: the entry read at one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WalkStep {
    /// The level of the table.
    pub level: PagingLevel,
    /// Index of the entry in its table.
    pub index: u16,
    /// Physical address of the entry.
    pub entry_pa: Pa,
    /// The raw entry.
    pub entry: u64,
}

/// A full page-walk report: every level's entry, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageWalk {
    /// The address translated.
    pub va: Va,
    /// The address space walked.
    pub space: AddressSpace,
    /// Each entry read, top level first.
    pub steps: Vec<WalkStep>,
    /// The translation, or why it failed.
    pub result: Result<Translation, TranslationError>,
}

/// A present mapping of an address space, as enumerated by
/// [`Architecture::for_each_mapping`]. A large page is one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// First virtual address (canonical).
    pub va: Va,
    /// First physical address.
    pub pa: Pa,
    /// Page size.
    pub size: PageSize,
    /// Accumulated permissions.
    pub perms: Permissions,
}

/// An architecture's paging logic. Object-safe so sessions compose it at run time.
pub trait Architecture: Send + Sync {
    /// A short name ("x86").
    fn name(&self) -> &'static str;

    /// Translates `va` in `space`.
    fn translate(
        &self,
        mem: &dyn PhysicalMemory,
        space: AddressSpace,
        va: Va,
    ) -> Result<Translation, TranslationError>;

    /// Translates `va` and reports every entry read on the way.
    fn walk(&self, mem: &dyn PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk;

    /// Calls `visit` for every present mapping of `space`, in ascending virtual order,
    /// skipping non-present subtrees. A paging structure that cannot be read or is malformed is
    /// reported to `visit` as an error and skipped. The work is bounded (each table is visited
    /// at most once per path and the total number of tables is capped), so hostile page tables
    /// cannot make it run forever. `visit` returns `Break` to stop early.
    fn for_each_mapping(
        &self,
        mem: &dyn PhysicalMemory,
        space: AddressSpace,
        visit: &mut dyn FnMut(Result<Mapping, TranslationError>) -> ControlFlow<()>,
    );

    /// Drops cached translations (TLB wrappers override this).
    fn flush(&self) {}
}

macro_rules! forward_architecture {
    ($($ptr:ident)::+) => {
        impl<T: Architecture + ?Sized> Architecture for $($ptr)::+<T> {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            fn translate(
                &self,
                mem: &dyn PhysicalMemory,
                space: AddressSpace,
                va: Va,
            ) -> Result<Translation, TranslationError> {
                (**self).translate(mem, space, va)
            }
            fn walk(&self, mem: &dyn PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk {
                (**self).walk(mem, space, va)
            }
            fn for_each_mapping(
                &self,
                mem: &dyn PhysicalMemory,
                space: AddressSpace,
                visit: &mut dyn FnMut(Result<Mapping, TranslationError>) -> ControlFlow<()>,
            ) {
                (**self).for_each_mapping(mem, space, visit)
            }
            fn flush(&self) {
                (**self).flush()
            }
        }
    };
}

forward_architecture!(std::sync::Arc);
forward_architecture!(Box);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_from_registers() {
        let mut r = X86Registers {
            cr0: 1 << 31,
            cr3: 0x1234_5fff,
            ..Default::default()
        };
        assert_eq!(PagingMode::from_registers(&r).mode, PagingMode::Legacy);
        assert_eq!(PagingMode::from_registers(&r).root, Pa::new(0x1234_5000));
        r.cr4 = 1 << 5;
        assert_eq!(PagingMode::from_registers(&r).mode, PagingMode::Pae);
        assert_eq!(PagingMode::from_registers(&r).root, Pa::new(0x1234_5fe0));
        r.efer = 1 << 8;
        assert_eq!(PagingMode::from_registers(&r).mode, PagingMode::Ia32e4);
        r.cr4 |= 1 << 12;
        r.cr3 = 0x8000_0000_0abc_d001; // PCID 1 and the no-flush bit
        let s = PagingMode::from_registers(&r);
        assert_eq!((s.mode, s.root), (PagingMode::Ia32e5, Pa::new(0xabc_d000)));
        r.cr0 = 0;
        assert_eq!(PagingMode::from_registers(&r).mode, PagingMode::Disabled);
    }
}
