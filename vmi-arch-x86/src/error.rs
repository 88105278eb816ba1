//! Errors of this crate. Translation errors are vmi-core's
//! [`TranslationError`](vmi_core::TranslationError); the only error of its own is the page-table
//! builder's.

use vmi_core::{Pa, PageSize, PagingLevel, PagingMode, Va};

/// [`PageTableBuilder`](crate::testing::PageTableBuilder) could not build a mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Paging is disabled: there are no page tables to build.
    #[error("paging is disabled: there are no page tables to build")]
    PagingDisabled,
    /// The mode cannot map pages of this size.
    #[error("{mode} paging cannot map {size} pages")]
    UnsupportedPageSize {
        /// The paging mode.
        mode: PagingMode,
        /// The requested size.
        size: PageSize,
    },
    /// An address is not aligned to the page size.
    #[error("{what} address {addr:#x} is not aligned to {size}")]
    Misaligned {
        /// "virtual" or "physical".
        what: &'static str,
        /// The address.
        addr: u64,
        /// The page size.
        size: PageSize,
    },
    /// The virtual address is not canonical (or not below 4 GiB in 32-bit modes).
    #[error("{va} is not canonical in {mode} paging")]
    NonCanonical {
        /// The address.
        va: Va,
        /// The paging mode.
        mode: PagingMode,
    },
    /// The physical address does not fit in an entry of this mode and size.
    #[error("physical address {pa} does not fit in a {mode} {size} entry")]
    PhysicalOutOfRange {
        /// The address.
        pa: Pa,
        /// The paging mode.
        mode: PagingMode,
        /// The page size.
        size: PageSize,
    },
    /// 32-bit paging has no execute-disable bit.
    #[error("{mode} paging has no execute-disable bit: every page is executable")]
    NoExecuteUnsupported {
        /// The paging mode.
        mode: PagingMode,
    },
    /// The range is already (partly) mapped.
    #[error("{va}..+{size} overlaps an existing mapping")]
    Overlap {
        /// First address of the new mapping.
        va: Va,
        /// Its size.
        size: PageSize,
    },
    /// Every page of the builder's memory is allocated.
    #[error("out of memory for page tables: all {pages} pages are allocated")]
    OutOfMemory {
        /// Pages in the builder's memory.
        pages: u64,
    },
    /// The tables leading to the requested entry do not exist.
    #[error("no {level} entry for {va}: the tables above it do not exist")]
    NoEntry {
        /// The address.
        va: Va,
        /// The level asked for.
        level: PagingLevel,
    },
}
