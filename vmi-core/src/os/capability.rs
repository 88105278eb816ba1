//! The questions analyses ask of a guest OS, one small object-safe trait each. An OS profile
//! hands out the ones it can answer ([`super::OsProfile::processes`], ...); one it cannot
//! answer is absent, and [`crate::Session::os_capability`] turns that into a clear error.

use crate::addr::{Pa, Va};
use crate::arch::AddressSpace;
use crate::error::OsError;
use crate::profile::Profile;
use crate::session::Session;

use super::model::{LogRecord, Module, Process, Region, Thread};
use super::partial::Partial;
use super::resources::{
    CachedFile, CachedFileExtract, Credentials, Finding, Mount, OpenFile, ProcessNamespaces, Socket,
};
use super::tracing::{TraceKind, TracePoint, TraceRecord};
use crate::vcpu::X86Registers;

/// The process list.
pub trait Processes {
    /// Every process the OS lists to its users (Linux leaves out the idle task, as `/proc`
    /// does), in the order of the kernel's list.
    fn processes(&self, session: &Session) -> Result<Partial<Process>, OsError>;
    /// The address space process `pid` runs in.
    fn process_space(&self, session: &Session, pid: u32) -> Result<AddressSpace, OsError>;

    /// Every page-table root (CR3 without PCID bits) a vCPU running process `pid` may have,
    /// for event filters: the root of [`Processes::process_space`], and any the OS switches
    /// to in user mode (Linux PTI's user PGD).
    fn address_space_roots(&self, session: &Session, pid: u32) -> Result<Vec<Pa>, OsError> {
        Ok(vec![self.process_space(session, pid)?.root])
    }
}

/// The threads of a process.
pub trait Threads {
    /// Threads of process `pid`, the main one first.
    fn threads(&self, session: &Session, pid: u32) -> Result<Partial<Thread>, OsError>;
}

/// Kernel modules (drivers).
pub trait KernelModules {
    /// The loaded kernel modules, in the kernel's list order.
    fn kernel_modules(&self, session: &Session) -> Result<Partial<Module>, OsError>;
}

/// Modules (shared libraries, DLLs) loaded in a process, as its loader records them.
pub trait ProcessModules {
    /// Modules of process `pid`, its main image first.
    fn process_modules(&self, session: &Session, pid: u32) -> Result<Partial<Module>, OsError>;
}

/// A process's memory regions.
pub trait MemoryRegions {
    /// Regions of process `pid`, by address.
    fn regions(&self, session: &Session, pid: u32) -> Result<Partial<Region>, OsError>;
}

/// A process's command line and environment, as it was started.
pub trait ProcessArguments {
    /// The command line, split into arguments.
    fn command_line(&self, session: &Session, pid: u32) -> Result<Vec<String>, OsError>;
    /// The environment, as (name, value) pairs in the process's order.
    fn environment(&self, session: &Session, pid: u32) -> Result<Vec<(String, String)>, OsError>;
}

/// The kernel's symbols and types.
pub trait KernelSymbols {
    /// Run-time address of kernel symbol `name` (KASLR applied).
    fn symbol(&self, name: &str) -> Result<Va, OsError>;
    /// Run-time address of a profile symbol whose table address is `address` (the OS's way of
    /// relocating: Linux slides the kernel image, Windows tables hold offsets from the base).
    fn runtime_address(&self, address: u64) -> Va;
    /// The symbol and type table (table addresses, types, field offsets).
    fn profile(&self) -> &Profile;
}

/// The kernel's log.
pub trait KernelLog {
    /// Records of the kernel's log, oldest first.
    fn kernel_log(&self, session: &Session) -> Result<Partial<LogRecord>, OsError>;
}

/// Open files (descriptors, handles) of processes.
pub trait OpenFiles {
    /// The open files of process `pid`, or of every process when `None`, by pid then fd.
    fn open_files(&self, session: &Session, pid: Option<u32>)
        -> Result<Partial<OpenFile>, OsError>;
}

/// Sockets.
pub trait Sockets {
    /// Every socket the kernel knows of (not only those a process holds), with the pids that
    /// hold each.
    fn sockets(&self, session: &Session) -> Result<Partial<Socket>, OsError>;
}

/// Mounts.
pub trait Mounts {
    /// The mounts of the mount namespace process `pid` is in, in the order of its
    /// `mountinfo`.
    fn mounts(&self, session: &Session, pid: u32) -> Result<Partial<Mount>, OsError>;
}

/// Namespaces and control groups.
pub trait Namespaces {
    /// The namespaces and cgroup of every process, in process-list order.
    fn namespaces(&self, session: &Session) -> Result<Partial<ProcessNamespaces>, OsError>;
}

/// Process credentials.
pub trait ProcessCredentials {
    /// The credentials of process `pid`.
    fn credentials(&self, session: &Session, pid: u32) -> Result<Credentials, OsError>;
}

/// Kernel integrity checks.
pub trait IntegrityChecks {
    /// The names of the checks this OS profile runs (`syscall_table`, `idt`, ...).
    fn integrity_checks(&self) -> Vec<&'static str>;
    /// Runs the named checks (all when `checks` is empty); a check that cannot run is a
    /// warning, the others still run.
    fn check_integrity(
        &self,
        session: &Session,
        checks: &[String],
    ) -> Result<Partial<Finding>, OsError>;
}

/// The kernel's page cache: files whose contents are (partly) in memory.
pub trait PageCache {
    /// Every inode with cached pages, on every mounted filesystem.
    fn cached_files(&self, session: &Session) -> Result<Partial<CachedFile>, OsError>;
    /// Writes the cached contents of the file at `path` (as [`PageCache::cached_files`] names
    /// it) to `out`, set to the file's size first: pages not in memory stay holes (a sparse
    /// file), so a hostile size costs no disk space.
    fn extract_cached_file(
        &self,
        session: &Session,
        path: &str,
        out: &std::fs::File,
    ) -> Result<CachedFileExtract, OsError>;
}

/// A Volatility 3 symbol table (ISF) of the guest's kernel, built from what the OS profile
/// knows, for tools that need one.
pub trait SymbolTableExport {
    /// The ISF as JSON bytes, with the number of symbols and types it holds.
    fn export_isf(&self, session: &Session) -> Result<IsfExport, OsError>;
}

/// What [`SymbolTableExport::export_isf`] made.
#[derive(Debug)]
pub struct IsfExport {
    /// The ISF document (JSON).
    pub json: Vec<u8>,
    /// Symbols in it.
    pub symbols: usize,
    /// User types in it.
    pub user_types: usize,
}

/// Tracing a live kernel (see [`crate::os::tracing`]).
pub trait KernelTracing {
    /// The function entries to break at for `kind`.
    fn trace_points(&self, kind: &TraceKind) -> Result<Vec<TracePoint>, OsError>;

    /// What a stop of vCPU `vcpu` (registers `regs`) at the entry of `point` means.
    fn on_entry(
        &self,
        session: &Session,
        point: &TracePoint,
        vcpu: usize,
        regs: &X86Registers,
    ) -> Result<TraceRecord, OsError>;

    /// Completes `record` at the return of `point` (registers `regs` there): its result.
    fn on_return(
        &self,
        session: &Session,
        point: &TracePoint,
        record: &mut TraceRecord,
        regs: &X86Registers,
    ) -> Result<(), OsError>;
}
