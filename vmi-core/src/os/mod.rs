//! The OS-neutral layer: what an OS crate binds to a session once it recognises a guest, and
//! the questions analyses ask of it.
//!
//! - [`OsProfile`]: the bound OS; it hands out the capabilities it has.
//! - [`capability`]: one small object-safe trait per question ([`Processes`], [`Threads`],
//!   [`KernelModules`], [`ProcessModules`], [`MemoryRegions`], [`ProcessArguments`],
//!   [`KernelSymbols`], [`KernelLog`], [`SymbolTableExport`], [`OpenFiles`], [`Sockets`],
//!   [`Mounts`], [`Namespaces`], [`ProcessCredentials`], [`IntegrityChecks`], [`PageCache`]).
//! - [`model`]: what they answer with ([`Process`], [`Module`], [`Region`], ...): the fields
//!   every OS has, plus an `os` map of what only one has.
//! - [`resources`]: what a process holds and where it runs ([`OpenFile`], [`Socket`],
//!   [`Mount`], [`ProcessNamespaces`], [`Credentials`]), kernel integrity [`Finding`]s and
//!   [`CachedFile`]s of the page cache.
//! - [`tracing`]: what the OS names for tracing a live kernel ([`TracePoint`]s) and what it
//!   makes of a stop there ([`TraceRecord`]), through [`KernelTracing`].
//! - [`partial`]: [`Partial`], items plus the warnings of a walk over hostile data.
//! - [`Detection`], [`DetectOptions`]: what an OS detector says of a guest, so that every
//!   detector is tried and the surest wins (see [`crate::Session::detect_os`]).

pub mod capability;
pub mod model;
pub mod partial;
pub mod resources;
pub mod tracing;

use std::any::Any;
use std::path::PathBuf;

pub use capability::{
    IntegrityChecks, IsfExport, KernelLog, KernelModules, KernelSymbols, KernelTracing,
    MemoryRegions, Mounts, Namespaces, OpenFiles, PageCache, ProcessArguments, ProcessCredentials,
    ProcessModules, Processes, Sockets, SymbolTableExport, Threads,
};
pub use model::{
    process_tree, Detail, Details, LogRecord, Module, Process, Region, Thread, TreeNode,
};
pub use partial::Partial;
pub use resources::{
    CachedFile, CachedFileExtract, CapabilitySets, Credentials, FileKind, Finding, Mount, OpenFile,
    ProcessNamespaces, Severity, Socket,
};
pub use tracing::{TraceKind, TracePoint, TraceRecord};

use crate::profile::Profile;
use crate::registry::BoxError;

use serde::Serialize;

use crate::addr::{Pa, Va};
use crate::arch::{AddressSpace, PagingMode};

/// What `vmi info` reports about the guest OS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// "linux" or "windows".
    pub kind: String,
    /// The kernel's own version string (e.g. the Linux banner).
    pub version: String,
    /// Virtual address the kernel image starts at.
    #[serde(serialize_with = "crate::serde_hex::va")]
    pub kernel_base: Va,
    /// Distance between the link-time and run-time kernel address (KASLR), in bytes.
    #[serde(serialize_with = "crate::serde_hex::u64")]
    pub kaslr_slide: u64,
    /// Root of the kernel's own page tables, which kernel addresses are read through.
    pub kernel_dtb: Pa,
    /// How that root is walked.
    pub kernel_paging_mode: PagingMode,
    /// How that root was found (e.g. "init_top_pgt, translated through a vCPU's CR3").
    pub kernel_dtb_source: String,
    /// Further OS-specific facts (e.g. whether a VMCOREINFO note agreed with discovery).
    pub details: std::collections::BTreeMap<String, String>,
}

/// An OS recognised in a guest. Callers above the OS crates (the CLI, the plugin host) use only
/// this trait and the capabilities it hands out; OS crates downcast through
/// [`OsProfile::as_any`] to reach their own analyses.
pub trait OsProfile: Send + Sync {
    /// Summary for `vmi info`.
    fn info(&self) -> OsInfo;
    /// The kernel's own address space: where a kernel address is read when no process or
    /// vCPU is named.
    fn kernel_space(&self) -> AddressSpace;
    /// Whether `va` is in the kernel's half of the address space (read through
    /// [`OsProfile::kernel_space`]) rather than a process's.
    fn is_kernel_address(&self, va: Va) -> bool;
    /// The concrete profile, for the OS crate's own use.
    fn as_any(&self) -> &dyn Any;

    /// The process list, if this OS profile can walk it.
    fn processes(&self) -> Option<&dyn Processes> {
        None
    }
    /// Threads of a process.
    fn threads(&self) -> Option<&dyn Threads> {
        None
    }
    /// Kernel modules.
    fn kernel_modules(&self) -> Option<&dyn KernelModules> {
        None
    }
    /// Modules loaded in a process.
    fn process_modules(&self) -> Option<&dyn ProcessModules> {
        None
    }
    /// A process's memory regions.
    fn regions(&self) -> Option<&dyn MemoryRegions> {
        None
    }
    /// A process's command line and environment.
    fn arguments(&self) -> Option<&dyn ProcessArguments> {
        None
    }
    /// Kernel symbols and types.
    fn symbols(&self) -> Option<&dyn KernelSymbols> {
        None
    }
    /// The kernel's log.
    fn kernel_log(&self) -> Option<&dyn KernelLog> {
        None
    }
    /// A Volatility 3 symbol table of the kernel.
    fn symbol_table_export(&self) -> Option<&dyn SymbolTableExport> {
        None
    }
    /// Open files of processes.
    fn open_files(&self) -> Option<&dyn OpenFiles> {
        None
    }
    /// Sockets.
    fn sockets(&self) -> Option<&dyn Sockets> {
        None
    }
    /// Mounts of a mount namespace.
    fn mounts(&self) -> Option<&dyn Mounts> {
        None
    }
    /// Namespaces and control groups of processes.
    fn namespaces(&self) -> Option<&dyn Namespaces> {
        None
    }
    /// Credentials of processes.
    fn credentials(&self) -> Option<&dyn ProcessCredentials> {
        None
    }
    /// Kernel integrity checks.
    fn integrity(&self) -> Option<&dyn IntegrityChecks> {
        None
    }
    /// Tracing a live kernel.
    fn tracing(&self) -> Option<&dyn KernelTracing> {
        None
    }
    /// The page cache.
    fn page_cache(&self) -> Option<&dyn PageCache> {
        None
    }
    /// Keeps what this run learned for the next (an on-disk profile cache); profiles that
    /// cache nothing do nothing.
    fn save_cache(&self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// How sure a detector is that the guest runs its OS, 0 to 100. The session binds the surest
/// profile; between equally sure ones, the detector whose name sorts first.
///
/// 100: the OS's identity is proven by what was read (a Linux banner whose kallsyms decode;
/// a Windows kernel whose PDB GUID matched a symbol table). 50–99: its structures were found
/// and walk, without such proof. Below 50: a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Confidence(pub u8);

impl Confidence {
    /// Identity proven.
    pub const CERTAIN: Confidence = Confidence(100);
}

/// What one OS detector said of a guest.
pub enum Detection {
    /// The guest runs this OS: its profile, and how sure the detector is.
    Found {
        /// The profile to bind.
        profile: Box<dyn OsProfile>,
        /// How sure.
        confidence: Confidence,
    },
    /// The guest does not run this OS (or not one the detector can see): why, in a few words.
    NotThisOs(String),
    /// The detector recognised its OS but could not build a profile.
    Failed(BoxError),
    /// The cheap checks were not enough and only an expensive search is left (Linux with no
    /// registers: the banner in all of physical memory). The session runs it, with
    /// [`DetectOptions::exhaustive`], only if no other detector proved its OS.
    Deferred(String),
}

/// What the user gave detectors to work with. The default: no symbol tables, the profile
/// cache in use, only what the analyses need.
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// Symbol tables loaded with `--symbols FILE` (each detector takes what fits its OS).
    pub profiles: Vec<Profile>,
    /// Directories searched for symbol tables (`--symbols DIR`, `$VMI_SYMBOL_PATH`).
    pub symbol_path: Vec<PathBuf>,
    /// Whether profiles may come from (and go to) the on-disk profile cache.
    pub use_cache: bool,
    /// Whether the detector must build the whole profile (an ISF export or a plugin may ask
    /// for any symbol or type), not only what earlier runs used.
    pub full_profile: bool,
    /// Whether the detector may run its expensive searches (set by the session for the
    /// second round of [`crate::Session::detect_os`], for detectors that deferred).
    pub exhaustive: bool,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            profiles: Vec::new(),
            symbol_path: Vec::new(),
            use_cache: true,
            full_profile: false,
            exhaustive: false,
        }
    }
}

/// One detector's verdict, as `vmi info` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DetectionReport {
    /// The detector.
    pub detector: &'static str,
    /// `found`, `not-this-os`, `failed`, or `deferred` (its expensive search was not needed:
    /// another detector proved its OS).
    pub outcome: &'static str,
    /// How sure it was, when it found its OS.
    pub confidence: Option<Confidence>,
    /// Why not, or what failed; empty when found.
    pub reason: String,
    /// Whether its profile is the one bound to the session.
    pub bound: bool,
}
