//! The crate's errors: one enum for discovery, symbol tables and analyses.

use std::path::PathBuf;

use thiserror::Error;
use vmi_core::{MemoryError, ProfileError, Va};

use crate::pe::PeError;

/// What went wrong with a Windows guest.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WindowsError {
    /// No page-table root that looks like Windows' was found.
    #[error("no Windows kernel page-table root found ({tried})")]
    NoDtb {
        /// The methods tried and what each said.
        tried: String,
    },
    /// The ntoskrnl image was not found.
    #[error("ntoskrnl not found in the kernel address space ({tried})")]
    NoKernel {
        /// The methods tried and what each said.
        tried: String,
    },
    /// No symbol table of this build was found.
    #[error(
        "no symbol table for {pdb} GUID {guid} age {age} (key {key}); looked in: {}. \
         Get it with Volatility 3 (`vol -f <dump> windows.info`, which downloads \
         {pdb}/{guid}-{age}.json.xz) and put it on $VMI_SYMBOL_PATH or pass --symbols",
        looked_in(.looked)
    )]
    NoSymbolTable {
        /// The PDB's file name.
        pdb: String,
        /// The GUID as Volatility spells it.
        guid: String,
        /// The age.
        age: u32,
        /// GUID and age as the Microsoft symbol server keys them.
        key: String,
        /// Every path tried.
        looked: Vec<PathBuf>,
    },
    /// The kernel has no RSDS record and no candidate table fits the dump's hints.
    #[error("the kernel at {base} names no PDB and no symbol table fits its addresses; looked in: {}", looked_in(.looked))]
    NoFingerprint {
        /// The kernel base.
        base: Va,
        /// Every table file tried.
        looked: Vec<PathBuf>,
    },
    /// A symbol table could not be read.
    #[error("symbol table {path}: {reason}")]
    BadSymbolTable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A PE image in the guest is malformed.
    #[error("PE image at {at}: {source}")]
    Pe {
        /// Where the image is.
        at: Va,
        /// What is wrong.
        source: PeError,
    },
    /// No process has this pid.
    #[error("no process with pid {0}")]
    NoSuchProcess(u32),
    /// The process has no user address space (System, a process with DTB 0).
    #[error("process {pid} has no user address space")]
    NoAddressSpace {
        /// The process.
        pid: u32,
    },
    /// The process has no PEB (System, Registry, MemCompression, an exiting process).
    #[error("process {pid} has no PEB")]
    NoPeb {
        /// The process.
        pid: u32,
    },
    /// A list or tree walk met a cycle.
    #[error("{what}: cycle at {at} after {count} entries")]
    Cycle {
        /// The walk.
        what: &'static str,
        /// The entry met again.
        at: Va,
        /// Entries read before.
        count: usize,
    },
    /// A walk stopped at its bound.
    #[error("{what}: stopped after {limit} {unit}")]
    Bound {
        /// The walk.
        what: &'static str,
        /// The bound.
        limit: u64,
        /// What the bound counts ("entries", "ms").
        unit: &'static str,
    },
    /// A pointer of a walk was not readable.
    #[error("{what}: cannot read {at}: {source}")]
    Unreadable {
        /// The walk.
        what: &'static str,
        /// The address.
        at: Va,
        /// Why.
        source: MemoryError,
    },
    /// A structure read from the guest makes no sense.
    #[error("{what} at {at}: {reason}")]
    Corrupt {
        /// The structure.
        what: &'static str,
        /// Its address.
        at: Va,
        /// Why.
        reason: String,
    },
    /// A page is in the pagefile (or otherwise not resident): it cannot be read from memory.
    #[error("{va} is paged out ({state}, PTE {pte:#x})")]
    PagedOut {
        /// The address.
        va: Va,
        /// The PTE's state (pagefile, demand zero, prototype, ...).
        state: &'static str,
        /// The PTE.
        pte: u64,
    },
    /// Guest memory could not be read.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The symbol table lacks something.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

fn looked_in(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        "nowhere (no --symbols directory, $VMI_SYMBOL_PATH unset)".to_owned()
    } else {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl WindowsError {
    /// Whether this error says the (cached, partial) symbol table lacks a symbol or type.
    pub fn is_missing_profile_item(&self) -> bool {
        matches!(
            self,
            WindowsError::Profile(
                ProfileError::MissingSymbol(_)
                    | ProfileError::MissingType(_)
                    | ProfileError::MissingField { .. }
            )
        )
    }
}
