//! [`KallsymsError`]: why the kernel image or its symbol table could not be found.

use vmi_core::SessionError;

/// Finding the kernel image or decoding its kallsyms tables failed. The doc comment of each
/// variant is its message; offsets are positions in the byte slice given to the decoder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KallsymsError {
    /// The registers of a vCPU, needed for its address space, could not be read.
    #[error("cannot find the kernel's address space: {source}")]
    NoAddressSpace {
        /// What the session reported.
        #[source]
        source: SessionError,
    },
    /// No 2 MiB page of the kernel image range is mapped in any address space tried.
    #[error(
        "no kernel image is mapped in 0xffffffff80000000..0xffffffffc0000000 \
         (tried {spaces} address spaces of vCPU CR3s)"
    )]
    KernelNotMapped {
        /// How many address spaces were tried.
        spaces: usize,
    },
    /// No `Linux version ` banner was found in the mapped kernel image.
    #[error("no \"Linux version \" banner in the {scanned_bytes} bytes of kernel image scanned")]
    BannerNotFound {
        /// Bytes scanned.
        scanned_bytes: u64,
    },
    /// No `kallsyms_token_table` / `kallsyms_token_index` pair was found.
    #[error(
        "no kallsyms token table (256 NUL-terminated tokens indexed by 256 ascending u16 \
         offsets) in the {scanned_bytes} bytes scanned"
    )]
    TokenTableNotFound {
        /// Bytes scanned.
        scanned_bytes: u64,
    },
    /// The token table was found but no `kallsyms_markers` array ends right before it.
    #[error("no kallsyms_markers array ends before the token table at offset {token_table:#x}")]
    MarkersNotFound {
        /// Offset of the token table.
        token_table: usize,
    },
    /// The markers were found but no `kallsyms_num_syms` / `kallsyms_names` pair matches them.
    #[error(
        "no kallsyms_num_syms matches the {markers} markers at offset {markers_offset:#x}: \
         kallsyms_names could not be delimited"
    )]
    NamesNotFound {
        /// Number of markers.
        markers: usize,
        /// Offset of the markers.
        markers_offset: usize,
    },
    /// Neither table order (before 6.4 or since) gives sorted addresses and a kernel base.
    #[error("kallsyms_offsets / kallsyms_relative_base not found: {reason}")]
    OffsetsNotFound {
        /// What was wrong with each candidate.
        reason: String,
    },
    /// The tables were found but contradict each other.
    #[error("inconsistent kallsyms tables: {reason}")]
    InconsistentTables {
        /// What contradicts what, and where.
        reason: String,
    },
    /// `kallsyms_num_syms` is larger than any kernel has.
    #[error("kallsyms_num_syms is {count}, more than the {max} accepted")]
    TooManySymbols {
        /// The count read.
        count: u64,
        /// The cap.
        max: u32,
    },
    /// A symbol name expands to more than the kernel's own limit.
    #[error("symbol {index} expands to more than {max} bytes")]
    NameTooLong {
        /// The symbol's index in the table.
        index: u32,
        /// The limit.
        max: usize,
    },
    /// The search took more steps than any real kernel needs.
    #[error(
        "the kallsyms search gave up after {steps} steps: the bytes look like tables almost \
         everywhere (hostile or corrupt data)"
    )]
    SearchTooLong {
        /// The steps allowed.
        steps: u64,
    },
    /// A table runs past the end of the bytes given.
    #[error("{what} at offset {offset:#x} needs {needed} bytes, only {available} remain")]
    Truncated {
        /// Which table.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left from `offset`.
        available: usize,
    },
}
