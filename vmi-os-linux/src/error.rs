//! Errors of the Linux layer. Component errors (BTF, kallsyms) have their own enums in their
//! modules and are wrapped here.

use vmi_core::{MemoryError, ProfileError, Va};

/// A Linux analysis failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinuxError {
    /// A symbol or type the analysis needs is not in the profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Guest memory could not be read.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The kernel's symbol table could not be found or decoded.
    #[error(transparent)]
    Kallsyms(#[from] crate::kallsyms::KallsymsError),
    /// The kernel's BTF could not be parsed.
    #[error(transparent)]
    Btf(#[from] crate::btf::BtfError),
    /// A kernel list or tree did not end within its bound (a cycle or corruption).
    #[error("{what} at {head}: no end after {limit} entries (cycle or corrupted list)")]
    Unbounded {
        /// What was being walked.
        what: &'static str,
        /// Where the walk started.
        head: Va,
        /// The bound.
        limit: usize,
    },
    /// A kernel list walk reached its time bound (a flooded or corrupted list, or expensive
    /// entries): what was walked until then is kept.
    #[error(
        "{what} at {head}: stopped after {entries} entries and {elapsed:.1?}, at {}",
        if *inherited {
            "the time bound of the walk it is nested in"
        } else {
            "the time bound of a list walk"
        }
    )]
    TimedOut {
        /// What was being walked.
        what: &'static str,
        /// Where the walk started.
        head: Va,
        /// Entries produced before it stopped.
        entries: usize,
        /// Time spent.
        elapsed: std::time::Duration,
        /// The walk's own bound.
        limit: std::time::Duration,
        /// Whether it stopped at the deadline of an enclosing walk rather than its own.
        inherited: bool,
    },
    /// A kernel structure holds a value that cannot be right.
    #[error("{what} at {at}: {reason}")]
    Corrupt {
        /// What structure.
        what: &'static str,
        /// Its address.
        at: Va,
        /// What is wrong.
        reason: String,
    },
    /// A target without vCPU registers, and no kernel image found in its physical memory.
    #[error(
        "no Linux kernel found in physical memory ({scanned_bytes} bytes scanned, \
         {banners} \"Linux version \" texts tried): {reason}"
    )]
    KernelNotInPhysicalMemory {
        /// Bytes of physical memory searched.
        scanned_bytes: u64,
        /// Banner texts found and tried.
        banners: usize,
        /// Why the last one was not the kernel's.
        reason: String,
    },
    /// No process has this pid.
    #[error("no process with pid {0}")]
    NoSuchProcess(u32),
    /// No file with cached pages has this path.
    #[error("no file with pages in the page cache is named {0:?} (`vmi files` lists them)")]
    NotCached(String),
    /// The process has no user address space (a kernel thread).
    #[error("pid {pid} has no user address space (a kernel thread, or a process exiting)")]
    NoAddressSpace {
        /// The process.
        pid: u32,
    },
}

impl LinuxError {
    /// Whether this error is a symbol, type or field missing from the profile: with a cached
    /// (partial) profile, the cure is full discovery.
    pub fn is_missing_profile_item(&self) -> bool {
        matches!(
            self,
            LinuxError::Profile(
                ProfileError::MissingSymbol(_)
                    | ProfileError::MissingType(_)
                    | ProfileError::MissingField { .. }
            )
        )
    }
}
