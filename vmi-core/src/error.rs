//! Error types of vmi-core, one enum per domain. The doc comment of each variant is its message.

use std::path::PathBuf;

use crate::addr::{Pa, Va};
use crate::arch::PagingLevel;
use crate::registry::BoxError;

/// Reading or writing guest-physical memory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The range is not backed by the target's memory map.
    #[error("physical range {pa}..+{len:#x} is outside the target's memory map")]
    OutOfRange {
        /// First address of the requested range.
        pa: Pa,
        /// Length of the requested range.
        len: u64,
    },
    /// The backend failed to read the range.
    #[error("reading physical {pa}: {source}")]
    Io {
        /// The address being read.
        pa: Pa,
        /// What the backend reported.
        #[source]
        source: std::io::Error,
    },
    /// A virtual address could not be translated.
    #[error(transparent)]
    Translation(#[from] TranslationError),
    /// The target does not support writes, or writes were not enabled.
    #[error("the target is read-only (writes need a writable backend and --write)")]
    ReadOnly,
}

/// Translating a virtual address failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranslationError {
    /// A paging-structure entry on the walk is not present.
    #[error("{va} is not mapped: {level} entry {entry:#x} is not present")]
    NotPresent {
        /// The address being translated.
        va: Va,
        /// The level whose entry is not present.
        level: PagingLevel,
        /// The raw entry.
        entry: u64,
    },
    /// A paging-structure entry sets bits the paging mode reserves.
    #[error("{va}: {level} entry {entry:#x} sets reserved bits {reserved:#x}")]
    ReservedBits {
        /// The address being translated.
        va: Va,
        /// The level whose entry is malformed.
        level: PagingLevel,
        /// The raw entry.
        entry: u64,
        /// The reserved bits that are set.
        reserved: u64,
    },
    /// The address is not canonical for the paging mode.
    #[error("{va} is not canonical in {mode} paging")]
    NonCanonical {
        /// The address being translated.
        va: Va,
        /// The paging mode.
        mode: crate::arch::PagingMode,
    },
    /// A paging structure lies outside guest memory.
    #[error("{va}: {level} table entry at {entry_pa} cannot be read ({reason})")]
    TableUnreadable {
        /// The address being translated.
        va: Va,
        /// The level of the table.
        level: PagingLevel,
        /// The physical address of the entry.
        entry_pa: Pa,
        /// Why it could not be read (the memory error's message).
        reason: String,
    },
    /// Enumerating mappings stopped at its bound on paging structures read (hostile or
    /// enormous page tables).
    #[error("enumeration stopped at {va}: the limit of {limit} paging structures was reached")]
    LimitReached {
        /// Where enumeration stopped.
        va: Va,
        /// The bound.
        limit: usize,
    },
}

impl TranslationError {
    /// Whether this error is the bound on enumeration work rather than a fault in the tables.
    pub fn is_limit(&self) -> bool {
        matches!(self, TranslationError::LimitReached { .. })
    }

    /// The virtual address whose translation failed.
    pub fn va(&self) -> Va {
        match self {
            TranslationError::NotPresent { va, .. }
            | TranslationError::ReservedBits { va, .. }
            | TranslationError::NonCanonical { va, .. }
            | TranslationError::TableUnreadable { va, .. }
            | TranslationError::LimitReached { va, .. } => *va,
        }
    }
}

/// Reading vCPU state failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VcpuError {
    /// The vCPU index is out of range.
    #[error("vCPU {index} does not exist (the target has {count})")]
    NoSuchVcpu {
        /// The requested index.
        index: usize,
        /// How many vCPUs the target has.
        count: usize,
    },
    /// The backend could not fetch the registers.
    #[error("reading vCPU {index} registers: {source}")]
    Io {
        /// The vCPU.
        index: usize,
        /// What the backend reported.
        #[source]
        source: std::io::Error,
    },
}

/// Pausing or resuming a live target failed. `target` names it as the backend knows it
/// (`QEMU pid 4242 (qmp /run/vm.qmp)`, `Xen domain 7 (web01)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The target could not be paused.
    #[error("pausing {target}: {source}")]
    Pause {
        /// The target.
        target: String,
        /// What the backend reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The target could not be resumed (it may still be paused).
    #[error("resuming {target} (it may still be paused): {source}")]
    Resume {
        /// The target.
        target: String,
        /// What the backend reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Loading or querying symbols and types failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A profile file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An `.xz` file could not be decompressed.
    #[error("decompressing {path}: {reason}")]
    Xz {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// An ISF document is not valid JSON or does not follow the ISF schema.
    #[error("ISF JSON is malformed: {0}")]
    IsfJson(#[from] serde_json::Error),
    /// An ISF document has a field the schema does not allow.
    #[error("ISF {what} `{name}` is malformed: {reason}")]
    IsfSchema {
        /// What kind of item (symbol, user type, field, ...).
        what: &'static str,
        /// The item's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An ISF document's major format version is not supported.
    #[error("ISF format version {found} is not supported (vmi reads major versions 4 to 6)")]
    IsfVersion {
        /// The version string found.
        found: String,
    },
    /// A System.map line does not parse.
    #[error("System.map line {line}: {reason}")]
    SystemMap {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file is neither an ISF nor a System.map.
    #[error("{path} is neither a Volatility 3 ISF (.json, .json.xz) nor a System.map")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A symbol the caller needs is missing.
    #[error("symbol `{0}` is not in the profile")]
    MissingSymbol(String),
    /// A type the caller needs is missing.
    #[error("type `{0}` is not in the profile")]
    MissingType(String),
    /// A field the caller needs is missing.
    #[error("type `{ty}` has no field `{field}` in the profile")]
    MissingField {
        /// The struct or union.
        ty: String,
        /// The field.
        field: String,
    },
}

/// Opening a target or composing a session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No target was given.
    #[error("no target given: pass --target SPEC or set $VMI_TARGET")]
    NoTarget,
    /// No registered backend accepts the spec.
    #[error("no backend accepts target `{spec}` (registered backends: {registered})")]
    NoBackend {
        /// The spec.
        spec: String,
        /// Names of the registered backends.
        registered: String,
    },
    /// The backend that accepts the spec failed to open it.
    #[error("{backend} backend: {source}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The target cannot provide vCPU registers.
    #[error("target `{spec}` provides no vCPU registers")]
    NoRegisters {
        /// The spec.
        spec: String,
    },
    /// Reading vCPU state failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The vCPU registers describe no paging mode vmi understands.
    #[error("vCPU {vcpu}: {reason}")]
    PagingMode {
        /// The vCPU.
        vcpu: usize,
        /// Why the mode could not be determined.
        reason: &'static str,
    },
}

/// An OS-level question could not be answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OsError {
    /// No OS profile is bound to the session.
    #[error("target `{spec}`: no guest OS was identified{why}")]
    NoOs {
        /// The target spec.
        spec: String,
        /// What the detectors said (`": linux: ...; windows: ..."`), or empty.
        why: String,
    },
    /// The bound OS profile cannot answer this kind of question.
    #[error("target `{spec}`: the {os} profile cannot list {capability}")]
    Lacks {
        /// The target spec.
        spec: String,
        /// The OS kind (`linux`, `windows`).
        os: String,
        /// What was asked (`threads`, `kernel log records`, ...).
        capability: &'static str,
    },
    /// No process has this pid.
    #[error("no process with pid {0}")]
    NoSuchProcess(u32),
    /// The process has no address space of its own (a kernel thread, System).
    #[error("process {pid} has no user address space")]
    NoAddressSpace {
        /// The process.
        pid: u32,
    },
    /// The profile loaded from the cache lacks something this question needs: discovering
    /// the full profile again answers it.
    #[error("the cached profile lacks what this needs: {0}")]
    IncompleteProfile(#[source] BoxError),
    /// Guest memory could not be read.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The symbol or type table lacks something.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The OS crate's own error.
    #[error(transparent)]
    Os(BoxError),
}

impl OsError {
    /// Wraps an OS crate's own error.
    pub fn os(e: impl Into<BoxError>) -> OsError {
        OsError::Os(e.into())
    }
}

/// An event (breakpoint, watchpoint, single step, pause) could not be set up or waited for.
/// `target` names the target as the backend knows it (`QEMU pid 4242 (qmp /run/vm.qmp)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The target has no event capability at all (a memory dump, a backend without one).
    #[error("target `{spec}` cannot {what}: {why}")]
    Unsupported {
        /// The target spec.
        spec: String,
        /// What was asked ("set breakpoints", "report process switches").
        what: &'static str,
        /// Why not, in the backend's terms.
        why: String,
    },
    /// The backend failed while doing something for an event.
    #[error("{target}: {doing}: {source}")]
    Backend {
        /// The target.
        target: String,
        /// What was being done (`inserting a breakpoint at 0xffff...`).
        doing: String,
        /// What the backend reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A signal (SIGINT, SIGTERM, SIGHUP) arrived while waiting: the caller unwinds, every
    /// breakpoint and watchpoint is removed and the guest resumed before the signal is acted on.
    #[error("interrupted by signal {signal}")]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
    /// The guest stopped on a vCPU the target does not list.
    #[error("the guest stopped on vCPU {vcpu}, which the target does not list ({count} vCPUs)")]
    UnknownVcpu {
        /// The vCPU the backend named.
        vcpu: usize,
        /// How many vCPUs the target has.
        count: usize,
    },
    /// An event's handler could not read the stopped guest.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Reading guest memory at an event failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}
