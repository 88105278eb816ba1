//! Processes (`PsActiveProcessHead` → `_EPROCESS.ActiveProcessLinks`) and their threads
//! (`_EPROCESS.ThreadListHead` → `_ETHREAD.ThreadListEntry`).

use vmi_core::{AddressSpace, Pa, Session, Va};

use crate::discovery::dtb::root_of;
use crate::iter::{list, Bounds};
use crate::mem::GuestMemory;
use crate::{comps, Kernel, Partial, WindowsError};

/// A process as its `_EPROCESS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The `_EPROCESS`.
    pub eprocess: Va,
    /// `UniqueProcessId`.
    pub pid: u32,
    /// `InheritedFromUniqueProcessId`.
    pub ppid: u32,
    /// `ImageFileName` (at most 15 bytes, as the kernel cuts it).
    pub name: String,
    /// The full image path (`SeAuditProcessCreationInfo.ImageFileName`), when recorded.
    pub image_path: Option<String>,
    /// `CreateTime` (FILETIME).
    pub create_time: u64,
    /// `ExitTime` (FILETIME; 0 while running).
    pub exit_time: u64,
    /// `Pcb.DirectoryTableBase`, PCID and flag bits masked.
    pub dtb: Pa,
    /// `Pcb.UserDirectoryTableBase` (KVA shadow's user root), masked, when set.
    pub user_dtb: Option<Pa>,
    /// `ActiveThreads`.
    pub threads: u32,
    /// `Peb` (NULL for System, Registry, MemCompression).
    pub peb: Va,
    /// `WoW64Process` (the `_EWOW64PROCESS`), when the process is 32-bit.
    pub wow64: Option<Va>,
    /// `Session->SessionId`, when the process has a session.
    pub session_id: Option<u32>,
    /// Whether this is the System process.
    pub is_system: bool,
}

/// What a walk step reads of an `_EPROCESS`.
fn read_process(
    mem: &dyn GuestMemory,
    kernel: &Kernel,
    eprocess: Va,
    system: Option<Va>,
) -> Result<Process, WindowsError> {
    let o = &kernel.offsets().eprocess;
    let at = |off: u64| {
        eprocess.checked_add(off).ok_or(WindowsError::Corrupt {
            what: "_EPROCESS",
            at: eprocess,
            reason: "field address overflows".into(),
        })
    };
    let u64_at = |off: u64| mem.read_u64(at(off)?);
    let pid = u64_at(o.unique_process_id)?;
    let ppid = u64_at(o.inherited_from)?;
    let mut name = [0u8; 15];
    mem.read_exact(at(o.image_file_name)?, &mut name)?;
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let name = String::from_utf8_lossy(&name[..len]).into_owned();
    let image_path = u64_at(o.audit_image_file_name)
        .ok()
        .filter(|&p| p != 0)
        .and_then(|p| comps::unicode::read(mem, Va::new(p)).ok())
        .filter(|s| !s.is_empty());
    let dtb_raw = u64_at(o.directory_table_base)?;
    let user_dtb = o
        .user_directory_table_base
        .and_then(|off| u64_at(off).ok())
        .map(root_of)
        .filter(|pa| pa.raw() > 0xFFF);
    let wow64 = Va::new(u64_at(o.wow64_process).unwrap_or(0));
    let session_id = match (o.session, o.session_id) {
        (Some(s), Some(id)) => u64_at(s)
            .ok()
            .filter(|&p| p != 0)
            .and_then(|p| mem.read_u32(Va::new(p).checked_add(id)?).ok()),
        _ => None,
    };
    Ok(Process {
        eprocess,
        pid: u32::try_from(pid).unwrap_or(u32::MAX),
        ppid: u32::try_from(ppid).unwrap_or(u32::MAX),
        name,
        image_path,
        create_time: u64_at(o.create_time).unwrap_or(0),
        exit_time: u64_at(o.exit_time).unwrap_or(0),
        dtb: root_of(dtb_raw),
        user_dtb,
        threads: mem.read_u32(at(o.active_threads)?).unwrap_or(0),
        peb: Va::new(u64_at(o.peb).unwrap_or(0)),
        wow64: (wow64.raw() != 0).then_some(wow64),
        session_id,
        is_system: system == Some(eprocess) || (system.is_none() && pid == 4),
    })
}

/// Every process on `PsActiveProcessHead`, in list order. An `_EPROCESS` that cannot be read
/// is skipped with a warning; a broken list ends the walk with one.
pub fn processes(session: &Session, kernel: &Kernel) -> Result<Partial<Process>, WindowsError> {
    let head = kernel.symbol("PsActiveProcessHead")?;
    let mem = kernel.memory(session);
    let system = kernel
        .symbol("PsInitialSystemProcess")
        .ok()
        .and_then(|va| GuestMemory::read_va(&mem, va).ok());
    let links = kernel.offsets().eprocess.active_process_links;
    let walk = list::walk(&mem, head, links, Bounds::LIST, "process list");
    let mut out = Partial {
        items: Vec::with_capacity(walk.items.len()),
        warnings: walk.warnings,
    };
    for eprocess in walk.items {
        match read_process(&mem, kernel, eprocess, system) {
            Ok(p) => out.items.push(p),
            Err(e) => out.warnings.push(list::wrap("_EPROCESS", eprocess, e)),
        }
    }
    Ok(out)
}

/// The process with `pid`.
pub fn find_process(session: &Session, kernel: &Kernel, pid: u32) -> Result<Process, WindowsError> {
    processes(session, kernel)?
        .items
        .into_iter()
        .find(|p| p.pid == pid)
        .ok_or(WindowsError::NoSuchProcess(pid))
}

/// The address space of `process`: its kernel-mode root (which maps its user half too under
/// KVA shadow). System's is the kernel's own.
pub fn process_space(kernel: &Kernel, process: &Process) -> Result<AddressSpace, WindowsError> {
    if process.dtb.raw() == 0 {
        return Err(WindowsError::NoAddressSpace { pid: process.pid });
    }
    Ok(AddressSpace {
        root: process.dtb,
        mode: kernel.space().mode,
    })
}

/// A thread as its `_ETHREAD` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// The `_ETHREAD`.
    pub ethread: Va,
    /// `Cid.UniqueThread`.
    pub tid: u32,
    /// `Cid.UniqueProcess`.
    pub pid: u32,
    /// `CreateTime` (FILETIME).
    pub create_time: u64,
    /// `Tcb.Teb` (NULL for system threads).
    pub teb: Va,
    /// `Win32StartAddress`.
    pub start_address: Option<Va>,
}

/// The threads of process `pid`, in the order of `_EPROCESS.ThreadListHead`.
pub fn threads(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<Partial<Thread>, WindowsError> {
    let process = find_process(session, kernel, pid)?;
    threads_of(session, kernel, &process)
}

/// The threads of `process`.
pub fn threads_of(
    session: &Session,
    kernel: &Kernel,
    process: &Process,
) -> Result<Partial<Thread>, WindowsError> {
    let mem = kernel.memory(session);
    let o = &kernel.offsets().ethread;
    let head = process
        .eprocess
        .checked_add(kernel.offsets().eprocess.thread_list_head)
        .ok_or(WindowsError::Corrupt {
            what: "_EPROCESS",
            at: process.eprocess,
            reason: "ThreadListHead overflows".into(),
        })?;
    let walk = list::walk(&mem, head, o.thread_list_entry, Bounds::LIST, "thread list");
    let mut out = Partial {
        items: Vec::new(),
        warnings: walk.warnings,
    };
    for ethread in walk.items {
        let field = |off: u64| -> Result<u64, WindowsError> {
            let at = ethread.checked_add(off).ok_or(WindowsError::Corrupt {
                what: "_ETHREAD",
                at: ethread,
                reason: "field overflows".into(),
            })?;
            GuestMemory::read_u64(&mem, at)
        };
        let read = || -> Result<Thread, WindowsError> {
            Ok(Thread {
                ethread,
                tid: u32::try_from(field(o.cid_thread)?).unwrap_or(u32::MAX),
                pid: u32::try_from(field(o.cid_process)?).unwrap_or(u32::MAX),
                create_time: field(o.create_time).unwrap_or(0),
                teb: Va::new(field(o.teb).unwrap_or(0)),
                start_address: o
                    .win32_start_address
                    .and_then(|off| field(off).ok())
                    .map(Va::new),
            })
        };
        match read() {
            Ok(t) => out.items.push(t),
            Err(e) => out.warnings.push(list::wrap("_ETHREAD", ethread, e)),
        }
    }
    Ok(out)
}
