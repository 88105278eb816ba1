//! [`SessionHost`]: a vmi [`Session`] served to plugins through [`HostInterface`].

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use vmi_core::os::KernelSymbols;
use vmi_core::{AddressSpace, MemoryError, OsError, OsProfile, Pa, Session, Va};
use vmi_plugin_api::abi_stable::std_types::{ROption, RResult, RSliceMut, RStr, RString, RVec};
use vmi_plugin_api::{
    HostError, HostErrorKind, HostInterface, ModuleInfo, ProcessInfo, Region, Registers, Space,
    SymbolInfo, TargetInfo, Translation,
};

/// The largest single read a plugin may ask for.
pub const MAX_READ: usize = 64 << 20;

/// Most symbols nested field paths (`a.b.c`) may walk through.
const MAX_FIELD_DEPTH: usize = 8;

/// What [`ProcessInfo::uid`] and `gid` hold for an OS without numeric ids (Windows).
pub const NO_NUMERIC_ID: u32 = u32::MAX;

/// A session as plugins see it. Kernel reads go straight to the session's (TLB-cached)
/// virtual memory; process address spaces are looked up once per pid. OS-level calls go
/// through the bound OS profile's OS-neutral capabilities, whatever the OS.
pub struct SessionHost<'a> {
    session: &'a Session,
    os: Option<&'a dyn OsProfile>,
    kernel_space: Option<AddressSpace>,
    spaces: Mutex<HashMap<u32, AddressSpace>>,
    /// Symbols sorted by run-time address, built on the first reverse lookup.
    by_address: OnceLock<Vec<(u64, String)>>,
}

impl std::fmt::Debug for SessionHost<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHost")
            .field("spec", &self.session.spec())
            .field("os", &self.os.map(|os| os.info().kind))
            .finish_non_exhaustive()
    }
}

/// A vCPU's registers as plugins see them.
pub(crate) fn registers(r: &vmi_core::X86Registers) -> Registers {
    Registers {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rbp: r.rbp,
        rsp: r.rsp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
        cr0: r.cr0,
        cr2: r.cr2,
        cr3: r.cr3,
        cr4: r.cr4,
        efer: r.efer,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        kernel_gs_base: r.kernel_gs_base,
        gdtr_base: r.gdtr_base,
        idtr_base: r.idtr_base,
    }
}

fn err(kind: HostErrorKind, message: impl std::fmt::Display) -> HostError {
    HostError::new(kind, message.to_string())
}

fn memory_err(e: MemoryError) -> HostError {
    err(HostErrorKind::NotMapped, e)
}

fn os_err(e: OsError) -> HostError {
    let kind = match &e {
        OsError::Memory(_) => HostErrorKind::NotMapped,
        OsError::NoOs { .. } | OsError::Lacks { .. } | OsError::NoAddressSpace { .. } => {
            HostErrorKind::Unsupported
        }
        _ => HostErrorKind::NotFound,
    };
    err(kind, e)
}

impl<'a> SessionHost<'a> {
    /// Serves `session`; OS-level calls need an OS profile bound to it, and fail with
    /// [`HostErrorKind::Unsupported`] without one or when it lacks the capability.
    pub fn new(session: &'a Session) -> SessionHost<'a> {
        let os = session.os();
        SessionHost {
            session,
            os,
            kernel_space: os.map(|os| os.kernel_space()),
            spaces: Mutex::new(HashMap::new()),
            by_address: OnceLock::new(),
        }
    }

    /// The session served.
    pub fn session(&self) -> &'a Session {
        self.session
    }

    /// A capability of the bound OS, or the error saying why there is none.
    fn capability<T: ?Sized + 'a>(
        &self,
        what: &'static str,
        get: impl FnOnce(&'a dyn OsProfile) -> Option<&'a T>,
    ) -> Result<&'a T, HostError> {
        let session: &'a Session = self.session;
        session.os_capability(what, get).map_err(os_err)
    }

    fn symbols(&self) -> Result<&'a dyn KernelSymbols, HostError> {
        self.capability("symbols", |os| os.symbols())
    }

    #[inline]
    fn space(&self, space: Space) -> Result<AddressSpace, HostError> {
        match space {
            Space::Kernel => match self.kernel_space {
                Some(s) => Ok(s),
                None => self
                    .session
                    .vcpu_address_space(0)
                    .map_err(|e| err(HostErrorKind::Unsupported, e)),
            },
            Space::Process(pid) => {
                let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(s) = spaces.get(&pid) {
                    return Ok(*s);
                }
                let s = self
                    .capability("processes", |os| os.processes())?
                    .process_space(self.session, pid)
                    .map_err(os_err)?;
                spaces.insert(pid, s);
                Ok(s)
            }
        }
    }

    fn symbols_by_address(&self) -> Result<&[(u64, String)], HostError> {
        let symbols = self.symbols()?;
        Ok(self.by_address.get_or_init(|| {
            let mut v: Vec<(u64, String)> = symbols
                .profile()
                .symbols()
                .map(|(name, s)| (symbols.runtime_address(s.address).raw(), name.to_owned()))
                .collect();
            v.sort_unstable();
            v
        }))
    }

    fn resolve_field(&self, ty: &str, path: &str) -> Result<u64, HostError> {
        let profile = self.symbols()?.profile();
        let not_found = |e: vmi_core::ProfileError| err(HostErrorKind::NotFound, e);
        if let Ok(off) = profile.field_offset(ty, path) {
            return Ok(off);
        }
        // `a.b`: walk nested struct and union members.
        let mut ty = ty.to_owned();
        let mut total = 0u64;
        let parts: Vec<&str> = path.split('.').collect();
        if parts.len() > MAX_FIELD_DEPTH {
            return Err(err(HostErrorKind::Invalid, "field path too deep"));
        }
        for (i, part) in parts.iter().enumerate() {
            let field = profile.field(&ty, part).map_err(not_found)?;
            total = total
                .checked_add(field.offset)
                .ok_or_else(|| err(HostErrorKind::Invalid, "field offset overflows"))?;
            if i + 1 < parts.len() {
                ty = match &field.ty {
                    vmi_core::profile::TypeRef::Struct(n)
                    | vmi_core::profile::TypeRef::Union(n) => n.clone(),
                    other => {
                        return Err(err(
                            HostErrorKind::NotFound,
                            format!("{ty}.{part} is a {other:?}, not a struct or union"),
                        ))
                    }
                };
            }
        }
        Ok(total)
    }
}

impl HostInterface for SessionHost<'_> {
    fn target_info(&self) -> TargetInfo {
        let os = self.session.os().map(|os| os.info());
        TargetInfo {
            spec: self.session.spec().into(),
            backend: self.session.backend().into(),
            vcpus: u32::try_from(self.session.vcpu_count()).unwrap_or(u32::MAX),
            // vCPU 0's; a target without registers (raw, LiME) has the kernel's.
            paging_mode: self
                .session
                .vcpu_address_space(0)
                .ok()
                .or(self.kernel_space)
                .map(|s| RString::from(s.mode.to_string()))
                .unwrap_or_default(),
            os_kind: os.as_ref().map(|o| o.kind.as_str()).unwrap_or("").into(),
            os_version: os.as_ref().map(|o| o.version.as_str()).unwrap_or("").into(),
            kernel_base: os.as_ref().map_or(0, |o| o.kernel_base.raw()),
            kaslr_slide: os.as_ref().map_or(0, |o| o.kaslr_slide),
        }
    }

    fn vcpu_registers(&self, vcpu: u32) -> RResult<Registers, HostError> {
        let r = match self.session.registers(vcpu as usize) {
            Ok(r) => r,
            Err(e) => return RResult::RErr(err(HostErrorKind::NotFound, e)),
        };
        RResult::ROk(registers(&r))
    }

    fn read_physical(&self, pa: u64, mut buf: RSliceMut<'_, u8>) -> RResult<(), HostError> {
        if buf.len() > MAX_READ {
            return RResult::RErr(err(HostErrorKind::Invalid, "read larger than 64 MiB"));
        }
        self.session
            .memory()
            .read(Pa::new(pa), buf.as_mut_slice())
            .map_err(memory_err)
            .into()
    }

    #[inline]
    fn read_virtual(
        &self,
        space: Space,
        va: u64,
        mut buf: RSliceMut<'_, u8>,
    ) -> RResult<(), HostError> {
        if buf.len() > MAX_READ {
            return RResult::RErr(err(HostErrorKind::Invalid, "read larger than 64 MiB"));
        }
        let space = match self.space(space) {
            Ok(s) => s,
            Err(e) => return RResult::RErr(e),
        };
        self.session
            .virtual_memory(space)
            .read_exact(Va::new(va), buf.as_mut_slice())
            .map_err(memory_err)
            .into()
    }

    fn translate(&self, space: Space, va: u64) -> RResult<Translation, HostError> {
        let space = match self.space(space) {
            Ok(s) => s,
            Err(e) => return RResult::RErr(e),
        };
        self.session
            .translate(space, Va::new(va))
            .map(|t| Translation {
                pa: t.pa.raw(),
                page_size: t.size.bytes(),
                writable: t.perms.writable,
                user: t.perms.user,
                executable: t.perms.executable,
            })
            .map_err(|e| err(HostErrorKind::NotMapped, e))
            .into()
    }

    fn symbol_address(&self, name: RStr<'_>) -> RResult<u64, HostError> {
        self.symbols()
            .and_then(|k| k.symbol(name.as_str()).map_err(os_err))
            .map(Va::raw)
            .into()
    }

    fn symbol_at(&self, va: u64) -> ROption<SymbolInfo> {
        let Ok(symbols) = self.symbols_by_address() else {
            return ROption::RNone;
        };
        let i = symbols.partition_point(|(a, _)| *a <= va);
        if i == 0 {
            return ROption::RNone;
        }
        let (address, name) = &symbols[i - 1];
        // The next symbol at a higher address bounds this one.
        let extent = symbols[i..]
            .iter()
            .find(|(a, _)| a > address)
            .map_or(0, |(a, _)| a - address);
        ROption::RSome(SymbolInfo {
            name: name.as_str().into(),
            address: *address,
            extent,
        })
    }

    fn struct_size(&self, name: RStr<'_>) -> RResult<u64, HostError> {
        self.symbols()
            .and_then(|k| {
                k.profile()
                    .struct_size(name.as_str())
                    .map_err(|e| err(HostErrorKind::NotFound, e))
            })
            .into()
    }

    fn field_offset(&self, ty: RStr<'_>, field: RStr<'_>) -> RResult<u64, HostError> {
        self.resolve_field(ty.as_str(), field.as_str()).into()
    }

    fn processes(&self) -> RResult<RVec<ProcessInfo>, HostError> {
        self.capability("processes", |os| os.processes())
            .and_then(|c| c.processes(self.session).map_err(os_err))
            .map(|p| {
                p.items
                    .into_iter()
                    .map(|p| ProcessInfo {
                        pid: p.pid,
                        ppid: p.ppid,
                        name: p.name.into(),
                        uid: p.uid.unwrap_or(NO_NUMERIC_ID),
                        gid: p.gid.unwrap_or(NO_NUMERIC_ID),
                        threads: p.threads,
                        kernel_thread: p.kernel_thread,
                        dtb: p.dtb.map(Pa::raw).into(),
                        object: p.object.raw(),
                    })
                    .collect()
            })
            .into()
    }

    fn modules(&self) -> RResult<RVec<ModuleInfo>, HostError> {
        self.capability("kernel modules", |os| os.kernel_modules())
            .and_then(|c| c.kernel_modules(self.session).map_err(os_err))
            .map(|m| {
                m.items
                    .into_iter()
                    .map(|m| ModuleInfo {
                        name: m.name.into(),
                        base: m.base.raw(),
                        size: m.size,
                    })
                    .collect()
            })
            .into()
    }

    fn regions(&self, pid: u32) -> RResult<RVec<Region>, HostError> {
        self.capability("memory regions", |os| os.regions())
            .and_then(|c| c.regions(self.session, pid).map_err(os_err))
            .map(|m| {
                m.items
                    .into_iter()
                    .map(|m| Region {
                        start: m.start.raw(),
                        end: m.end.raw(),
                        perms: m.perms.into(),
                        offset: m.offset,
                        path: m.path.into(),
                    })
                    .collect()
            })
            .into()
    }
}
