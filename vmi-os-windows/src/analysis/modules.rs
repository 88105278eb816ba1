//! Kernel modules (`PsLoadedModuleList` → `_KLDR_DATA_TABLE_ENTRY`) and a process's DLLs
//! (`PEB.Ldr.InLoadOrderModuleList` → `_LDR_DATA_TABLE_ENTRY`; for WoW64 processes also the
//! 32-bit PEB32/LDR32 lists).

use vmi_core::{Session, Va};

use crate::comps::ldr::LdrOffsets;
use crate::comps::peb::PebOffsets;
use crate::comps::unicode;
use crate::iter::{list, Bounds};
use crate::mem::GuestMemory;
use crate::{Kernel, Partial, WindowsError};

use super::ps::{find_process, Process};

/// A loaded module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The loader entry.
    pub entry: Va,
    /// `BaseDllName`.
    pub name: String,
    /// `FullDllName`.
    pub path: String,
    /// `DllBase`.
    pub base: Va,
    /// `SizeOfImage`.
    pub size: u64,
    /// Whether it comes from the 32-bit (WoW64) loader list.
    pub wow64: bool,
}

fn read_entry(
    mem: &dyn GuestMemory,
    entry: Va,
    o: &LdrOffsets,
    wide: bool,
) -> Result<Module, WindowsError> {
    let at = |off: u64| {
        entry.checked_add(off).ok_or(WindowsError::Corrupt {
            what: "loader entry",
            at: entry,
            reason: "field overflows".into(),
        })
    };
    let (base, name, path) = if wide {
        (
            mem.read_u64(at(o.dll_base)?)?,
            unicode::read(mem, at(o.base_dll_name)?)?,
            unicode::read(mem, at(o.full_dll_name)?).unwrap_or_default(),
        )
    } else {
        (
            u64::from(mem.read_u32(at(o.dll_base)?)?),
            unicode::read32(mem, at(o.base_dll_name)?)?,
            unicode::read32(mem, at(o.full_dll_name)?).unwrap_or_default(),
        )
    };
    Ok(Module {
        entry,
        name,
        path,
        base: Va::new(base),
        size: u64::from(mem.read_u32(at(o.size_of_image)?)?),
        wow64: !wide,
    })
}

fn read_list(
    mem: &dyn GuestMemory,
    head: Va,
    o: &LdrOffsets,
    wide: bool,
    what: &'static str,
) -> Partial<Module> {
    let walk = if wide {
        list::walk(mem, head, o.links, Bounds::LIST, what)
    } else {
        list::walk32(mem, head, o.links, Bounds::LIST, what)
    };
    let mut out = Partial {
        items: Vec::new(),
        warnings: walk.warnings,
    };
    for entry in walk.items {
        match read_entry(mem, entry, o, wide) {
            Ok(m) => out.items.push(m),
            Err(e) => out.warnings.push(list::wrap(what, entry, e)),
        }
    }
    out
}

/// The kernel's modules, ntoskrnl first.
pub fn kernel_modules(session: &Session, kernel: &Kernel) -> Result<Partial<Module>, WindowsError> {
    let head = kernel.symbol("PsLoadedModuleList")?;
    let mem = kernel.memory(session);
    Ok(read_list(
        &mem,
        head,
        &kernel.offsets().kldr,
        true,
        "kernel module list",
    ))
}

/// The DLLs of process `pid`, its image first; for a WoW64 process the 64-bit list then the
/// 32-bit one.
pub fn process_modules(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<Partial<Module>, WindowsError> {
    let process = find_process(session, kernel, pid)?;
    process_modules_of(session, kernel, &process)
}

/// The DLLs of `process`.
pub fn process_modules_of(
    session: &Session,
    kernel: &Kernel,
    process: &Process,
) -> Result<Partial<Module>, WindowsError> {
    if process.peb.raw() == 0 {
        return Err(WindowsError::NoPeb { pid: process.pid });
    }
    let mem = kernel.process_memory(session, process.dtb);
    let o = &kernel.offsets().peb;
    let ldr = peb_pointer(&mem, process.peb, o.ldr, true)?;
    let mut out = if ldr.raw() == 0 {
        Partial::default()
    } else {
        let head = ldr
            .checked_add(o.in_load_order)
            .ok_or(WindowsError::Corrupt {
                what: "_PEB_LDR_DATA",
                at: ldr,
                reason: "list head overflows".into(),
            })?;
        read_list(&mem, head, &kernel.offsets().ldr, true, "DLL list")
    };
    if let Some(peb32) = wow64_peb(session, kernel, process) {
        let o32 = PebOffsets::WOW64;
        match peb_pointer(&mem, peb32, o32.ldr, false) {
            Ok(ldr32) if ldr32.raw() != 0 => {
                if let Some(head) = ldr32.checked_add(o32.in_load_order) {
                    let more = read_list(&mem, head, &LdrOffsets::WOW64, false, "WoW64 DLL list");
                    out.items.extend(more.items);
                    out.warnings.extend(more.warnings);
                }
            }
            Ok(_) => {}
            Err(e) => out.warnings.push(e),
        }
    }
    Ok(out)
}

/// A pointer field of a PEB (8 bytes, or 4 in a PEB32).
pub(crate) fn peb_pointer(
    mem: &dyn GuestMemory,
    peb: Va,
    off: u64,
    wide: bool,
) -> Result<Va, WindowsError> {
    let at = peb.checked_add(off).ok_or(WindowsError::Corrupt {
        what: "PEB",
        at: peb,
        reason: "field overflows".into(),
    })?;
    if wide {
        mem.read_va(at)
    } else {
        mem.read_u32(at).map(|v| Va::new(u64::from(v)))
    }
}

/// The PEB32 of a WoW64 process (`_EWOW64PROCESS.Peb`).
pub(crate) fn wow64_peb(session: &Session, kernel: &Kernel, process: &Process) -> Option<Va> {
    let ew = process.wow64?;
    let mem = kernel.memory(session);
    let at = ew.checked_add(kernel.offsets().eprocess.wow64_peb)?;
    GuestMemory::read_va(&mem, at).ok().filter(|v| v.raw() != 0)
}
