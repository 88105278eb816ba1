//! x86 paging for vmi: 32-bit (legacy), PAE, IA-32e 4-level and LA57 5-level page walks.
//!
//! [`X86`] implements [`vmi_core::Architecture`] and registers itself as `"x86"`: linking this
//! crate is enough for a [`vmi_core::Session`] to find it.
//!
//! The paging rules are data: [`mode`] has one table per paging mode (levels, index bits,
//! entry width, where large pages may end a walk, reserved bits, each mask citing the SDM),
//! and a single walker ([`walker`]) and a single enumerator ([`enumerate`]) are written against
//! those tables. [`entry`] decodes entries by the rules of their level.
//!
//! Page tables are guest data, hence hostile: a malformed entry is an error
//! ([`TranslationError::ReservedBits`](vmi_core::TranslationError::ReservedBits)), never a
//! guess; a non-canonical address is
//! [`NonCanonical`](vmi_core::TranslationError::NonCanonical); a table outside guest memory is
//! [`TableUnreadable`](vmi_core::TranslationError::TableUnreadable); enumeration is bounded
//! and terminates on self-referencing tables.
//!
//! [`testing`] builds real page tables in memory for tests, fuzzing and benchmarks.
//!
//! ```
//! use vmi_arch_x86::{testing::PageTableBuilder, X86};
//! use vmi_core::{Architecture, PageSize, Pa, PagingMode, Permissions, Tlb, TranslationError, Va};
//!
//! // A 4-level address space with one user-mode, read-only, non-executable 4 KiB page.
//! let mut b = PageTableBuilder::new(PagingMode::Ia32e4, 64 * 4096);
//! let perms = Permissions { writable: false, user: true, executable: false };
//! b.map(Va::new(0x7fff_0000_1000), Pa::new(0xabc_d000), PageSize::Size4K, perms)?;
//! let (space, mem) = (b.space(), b.into_memory());
//!
//! let x86 = Tlb::new(X86::new(), 8); // translations are cached by wrapping in a TLB
//! let t = x86.translate(&mem, space, Va::new(0x7fff_0000_1234)).unwrap();
//! assert_eq!((t.pa, t.perms), (Pa::new(0xabc_d234), perms));
//!
//! // Every level's entry, for debugging.
//! let walk = x86.walk(&mem, space, Va::new(0x7fff_0000_1234));
//! assert_eq!(walk.steps.len(), 4);
//!
//! // Unmapped and non-canonical addresses are errors, not crashes.
//! assert!(matches!(
//!     x86.translate(&mem, space, Va::new(0x1000)),
//!     Err(TranslationError::NotPresent { .. })
//! ));
//! assert!(matches!(
//!     x86.translate(&mem, space, Va::new(0x8000_0000_0000)),
//!     Err(TranslationError::NonCanonical { .. })
//! ));
//! # Ok::<(), vmi_arch_x86::BuildError>(())
//! ```

mod arch;
pub mod entry;
pub mod enumerate;
mod error;
pub mod mode;
pub mod testing;
pub mod walker;

pub use arch::{ENTRY, X86};
pub use entry::describe_entry;
pub use enumerate::DEFAULT_TABLE_LIMIT;
pub use error::BuildError;
