//! The values that cross the boundary: tables, errors, and what the host describes.
//!
//! Every type here is `#[repr(C)]` or `#[repr(u8)]` and `StableAbi`; strings and vectors are
//! abi_stable's `RString`/`RVec`, which carry their own deallocator, so whichever side
//! allocated a value frees it, wherever it is dropped.

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;

/// One cell of a result table.
///
/// The variants are fixed for the whole 1.x line of the API (a new variant would change the
/// layout): hosts render every one of them.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// No value (JSON `null`).
    Empty,
    /// A signed integer (JSON number).
    Int(i64),
    /// A guest address, virtual or physical (JSON `"0x..."`).
    Address(u64),
    /// Text (JSON string).
    Text(RString),
    /// Raw bytes (JSON lowercase hex string).
    Bytes(RVec<u8>),
}

impl Cell {
    /// A text cell.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(RString::from(s.into()))
    }

    /// An address cell.
    pub fn address(a: u64) -> Cell {
        Cell::Address(a)
    }

    /// An integer cell.
    pub fn int(i: i64) -> Cell {
        Cell::Int(i)
    }

    /// A bytes cell.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Cell {
        Cell::Bytes(RVec::from(b.into()))
    }
}

impl From<i64> for Cell {
    fn from(i: i64) -> Cell {
        Cell::Int(i)
    }
}

impl From<u32> for Cell {
    fn from(i: u32) -> Cell {
        Cell::Int(i64::from(i))
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::text(s)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s.into())
    }
}

/// What a plugin returns: named columns and rows of cells (each row as long as `columns`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Column names.
    pub columns: RVec<RString>,
    /// Rows.
    pub rows: RVec<RVec<Cell>>,
}

impl Table {
    /// An empty table with these columns.
    ///
    /// ```
    /// use vmi_plugin_api::{Cell, Table};
    /// let mut t = Table::new(&["name", "address"]);
    /// t.push(vec![Cell::text("init_task"), Cell::address(0xffff_ffff_8200_0000)]);
    /// assert_eq!(t.rows.len(), 1);
    /// ```
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| RString::from(*c)).collect(),
            rows: RVec::new(),
        }
    }

    /// Appends a row. A row of the wrong length is padded with [`Cell::Empty`] or cut, so the
    /// table stays rectangular.
    pub fn push(&mut self, mut row: Vec<Cell>) {
        row.resize(self.columns.len(), Cell::Empty);
        self.rows.push(RVec::from(row));
    }
}

/// What went wrong in a plugin.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginErrorKind {
    /// The arguments were wrong; the message says how to call the plugin.
    Usage,
    /// The analysis could not be done on this target (memory, symbols or types missing).
    Target,
    /// The plugin panicked; the export helper caught it at the boundary.
    Panicked,
    /// Anything else.
    Failed,
}

/// An error a plugin returns (or the export helper makes of a panic).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// Its kind.
    pub kind: PluginErrorKind,
    /// A message for the user.
    pub message: RString,
}

impl PluginError {
    /// An error of `kind`.
    pub fn new(kind: PluginErrorKind, message: impl Into<String>) -> PluginError {
        PluginError {
            kind,
            message: RString::from(message.into()),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> PluginError {
        PluginError::new(PluginErrorKind::Usage, message)
    }

    /// A target error (what the analysis needed is not there).
    pub fn target(message: impl Into<String>) -> PluginError {
        PluginError::new(PluginErrorKind::Target, message)
    }

    /// Any other failure.
    pub fn failed(message: impl Into<String>) -> PluginError {
        PluginError::new(PluginErrorKind::Failed, message)
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<HostError> for PluginError {
    fn from(e: HostError) -> PluginError {
        PluginError::target(e.message.into_string())
    }
}

/// Why a host call failed.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// The address is not mapped or not in the target's memory.
    NotMapped,
    /// The symbol, type, field, process or vCPU does not exist.
    NotFound,
    /// The target cannot do this (no vCPU registers, no OS profile, another OS).
    Unsupported,
    /// An argument was invalid (e.g. a read too large).
    Invalid,
}

/// An error from a host call: its kind and the host's message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    /// Its kind.
    pub kind: HostErrorKind,
    /// The host's message (names what was wrong where).
    pub message: RString,
}

impl HostError {
    /// An error of `kind`.
    pub fn new(kind: HostErrorKind, message: impl Into<String>) -> HostError {
        HostError {
            kind,
            message: RString::from(message.into()),
        }
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostError {}

/// Which address space a virtual address is in.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// The kernel's.
    Kernel,
    /// A process's user address space, by pid.
    Process(u32),
}

/// The target and the OS the host found in it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// The target spec as given (`guest.elf`, `qemu:...`, `xen:...`).
    pub spec: RString,
    /// The backend's name (`file`, `qemu`, `xen`).
    pub backend: RString,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// vCPU 0's paging mode (`legacy`, `pae`, `ia32e-4`, `ia32e-5`), empty without registers.
    pub paging_mode: RString,
    /// `linux`, `windows`, or empty when no OS was identified.
    pub os_kind: RString,
    /// The kernel's version string (Linux: its banner).
    pub os_version: RString,
    /// Where the kernel image starts.
    pub kernel_base: u64,
    /// The KASLR slide.
    pub kaslr_slide: u64,
}

/// A vCPU's registers (what analyses use; segment descriptors are left out).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)] // register names are their own documentation
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub kernel_gs_base: u64,
    pub gdtr_base: u64,
    pub idtr_base: u64,
}

/// A translated virtual address.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the byte.
    pub pa: u64,
    /// The size of the page that maps it (4096, 2 MiB, 1 GiB, 4 MiB).
    pub page_size: u64,
    /// Writable at every level.
    pub writable: bool,
    /// User-accessible at every level.
    pub user: bool,
    /// Executable (no level sets NX).
    pub executable: bool,
}

/// The symbol containing an address (the nearest one at or below it).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct SymbolInfo {
    /// The symbol's name.
    pub name: RString,
    /// Its run-time address.
    pub address: u64,
    /// Distance to the next symbol (an upper bound of its size; 0 for the last one).
    pub extent: u64,
}

/// A process (thread-group leader), as `vmi ps` lists it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// Name (Linux: `task->comm`; Windows: `ImageFileName`).
    pub name: RString,
    /// Real user id; `u32::MAX` on an OS without numeric ids (Windows).
    pub uid: u32,
    /// Real group id; `u32::MAX` on an OS without numeric ids.
    pub gid: u32,
    /// Threads in the group.
    pub threads: u32,
    /// Whether it is a kernel thread.
    pub kernel_thread: bool,
    /// Its page-table root, none for kernel threads.
    pub dtb: ROption<u64>,
    /// The OS's process object (Linux: the leader's `task_struct`; Windows: `_EPROCESS`).
    pub object: u64,
}

/// A kernel module.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Its name.
    pub name: RString,
    /// Where it is loaded.
    pub base: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// One mapping of a process's address space (a line of `/proc/PID/maps`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `r-xp` style permissions.
    pub perms: RString,
    /// Offset into the mapped file.
    pub offset: u64,
    /// Path, `[heap]`, `[stack]`, ..., or empty for anonymous memory.
    pub path: RString,
}
