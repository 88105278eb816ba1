//! [`X86`]: the [`Architecture`] implementation, and its registration.

use std::ops::ControlFlow;

use vmi_core::registry::ArchitectureEntry;
use vmi_core::{
    AddressSpace, Architecture, Mapping, PageWalk, PhysicalMemory, Translation, TranslationError,
    Va,
};

use crate::enumerate::{self, DEFAULT_TABLE_LIMIT};
use crate::walker;

/// x86 paging: 32-bit, PAE, IA-32e 4-level and 5-level, and paging disabled (identity).
///
/// Stateless apart from its configuration: cache translations by wrapping it in a
/// [`vmi_core::Tlb`].
///
/// ```
/// use vmi_arch_x86::X86;
/// use vmi_core::{Architecture, AddressSpace, Pa, PagingMode, Va};
/// use vmi_core::memory::BufferMemory;
///
/// let mem = BufferMemory::new(Pa::new(0), vec![0; 4096]);
/// let space = AddressSpace { root: Pa::new(0), mode: PagingMode::Disabled };
/// let t = X86::new().translate(&mem, space, Va::new(0x1234))?;
/// assert_eq!(t.pa, Pa::new(0x1234));
/// # Ok::<(), vmi_core::TranslationError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct X86 {
    table_limit: usize,
}

impl X86 {
    /// The x86 paging logic with the default bounds.
    pub const fn new() -> Self {
        Self {
            table_limit: DEFAULT_TABLE_LIMIT,
        }
    }

    /// The same, with [`Architecture::for_each_mapping`] reading at most `limit` paging
    /// structures per call (fuzzing and callers with tighter budgets).
    pub const fn with_table_limit(limit: usize) -> Self {
        Self { table_limit: limit }
    }

    /// How many paging structures one enumeration may read.
    pub const fn table_limit(&self) -> usize {
        self.table_limit
    }
}

impl Default for X86 {
    fn default() -> Self {
        Self::new()
    }
}

impl Architecture for X86 {
    fn name(&self) -> &'static str {
        "x86"
    }

    #[inline]
    fn translate(
        &self,
        mem: &dyn PhysicalMemory,
        space: AddressSpace,
        va: Va,
    ) -> Result<Translation, TranslationError> {
        walker::translate(mem, space, va)
    }

    fn walk(&self, mem: &dyn PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk {
        walker::walk(mem, space, va)
    }

    fn for_each_mapping(
        &self,
        mem: &dyn PhysicalMemory,
        space: AddressSpace,
        visit: &mut dyn FnMut(Result<Mapping, TranslationError>) -> ControlFlow<()>,
    ) {
        enumerate::for_each_mapping(mem, space, self.table_limit, visit);
    }
}

fn make() -> Box<dyn Architecture> {
    Box::new(X86::new())
}

/// The registry entry of this crate: linking vmi-arch-x86 makes "x86" available to sessions.
pub static ENTRY: ArchitectureEntry = ArchitectureEntry { name: "x86", make };

vmi_core::register_architecture!(ENTRY);
