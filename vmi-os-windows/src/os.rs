//! Binding to vmi-core: the Windows [`OsProfile`], the OS-neutral capabilities it answers, and
//! its self-registering detector.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;

use vmi_core::os::{
    self, Detail, Details, KernelModules, KernelSymbols, MemoryRegions, ProcessArguments,
    ProcessModules, Processes, Threads,
};
use vmi_core::registry::{BoxError, OsDetector};
use vmi_core::{
    AddressSpace, Confidence, DetectOptions, Detection, OsError, OsInfo, OsProfile, Partial,
    Profile, Session, Va,
};

use crate::analysis::{self, time};
use crate::discovery::{self, dtb, Methods};
use crate::kernel::{fingerprint, TableMatch};
use crate::symbols::{self, SymbolTable};
use crate::{Kernel, WindowsError};

/// A Windows guest recognised in a session.
#[derive(Debug)]
pub struct WindowsOs {
    kernel: Kernel,
}

impl WindowsOs {
    /// Wraps a kernel.
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }

    /// The kernel.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// The kernel, unwrapped.
    pub fn into_kernel(self) -> Kernel {
        self.kernel
    }

    fn neutral(&self, e: WindowsError) -> OsError {
        match e {
            e if !self.kernel.complete() && e.is_missing_profile_item() => {
                OsError::IncompleteProfile(Box::new(e))
            }
            WindowsError::NoSuchProcess(pid) => OsError::NoSuchProcess(pid),
            WindowsError::NoAddressSpace { pid } => OsError::NoAddressSpace { pid },
            WindowsError::Memory(e) => OsError::Memory(e),
            e => OsError::os(e),
        }
    }

    fn neutral_partial<T, U>(
        &self,
        walk: Result<crate::Partial<T>, WindowsError>,
        item: impl FnMut(T) -> U,
    ) -> Result<Partial<U>, OsError> {
        Ok(walk
            .map_err(|e| self.neutral(e))?
            .map(item, |w| self.neutral(w)))
    }
}

/// The OS-neutral form of a process.
pub fn neutral_process(p: analysis::Process) -> os::Process {
    let mut d = Details::new();
    if let Some(path) = &p.image_path {
        d.insert("image_path", Detail::Text(path.clone()));
    }
    d.insert("create_time_filetime", Detail::Int(p.create_time));
    if let Some(iso) = time::filetime_to_iso(p.create_time) {
        d.insert("create_time", Detail::Text(iso));
    }
    if p.exit_time != 0 {
        d.insert("exit_time_filetime", Detail::Int(p.exit_time));
        d.insert(
            "exit_time_ns",
            Detail::Int(time::filetime_to_unix_ns(p.exit_time)),
        );
        if let Some(iso) = time::filetime_to_iso(p.exit_time) {
            d.insert("exit_time", Detail::Text(iso));
        }
    }
    if let Some(u) = p.user_dtb {
        d.insert("user_dtb", Detail::Text(u.to_string()));
    }
    d.insert("wow64", Detail::Bool(p.wow64.is_some()));
    if let Some(s) = p.session_id {
        d.insert("session", Detail::Int(u64::from(s)));
    }
    d.insert("peb", Detail::Address(p.peb));
    os::Process {
        pid: p.pid,
        ppid: p.ppid,
        name: p.name,
        uid: None,
        gid: None,
        dtb: (p.dtb.raw() != 0).then_some(p.dtb),
        threads: p.threads,
        kernel_thread: p.is_system,
        start_time: time::filetime_to_unix_ns(p.create_time),
        object: p.eprocess,
        os: d,
    }
}

fn neutral_module(m: analysis::Module) -> os::Module {
    let mut d = Details::new();
    if m.wow64 {
        d.insert("wow64", Detail::Bool(true));
    }
    os::Module {
        name: m.name,
        base: m.base,
        size: m.size,
        path: (!m.path.is_empty()).then_some(m.path),
        os: d,
    }
}

impl OsProfile for WindowsOs {
    fn info(&self) -> OsInfo {
        let k = &self.kernel;
        let mut details = BTreeMap::new();
        if let Some(id) = k.pdb() {
            details.insert("pdb".into(), id.name.clone());
            details.insert("pdb_guid".into(), id.guid_string());
            details.insert("pdb_age".into(), id.age.to_string());
        }
        details.insert("symbol_table".into(), k.profile().source.clone());
        details.insert(
            "symbol_match".into(),
            match k.table_match() {
                TableMatch::Guid => "PDB GUID and age",
                TableMatch::Given => "given with --symbols",
                TableMatch::Fingerprint => "fingerprint of list-head RVAs",
            }
            .into(),
        );
        details.insert("kernel_base_source".into(), k.image().source.describe());
        details.insert(
            "kva_shadow".into(),
            k.kva_shadow().map_or("unknown".into(), |b| b.to_string()),
        );
        details.insert(
            "kdbg".into(),
            match k.kdbg() {
                Ok(kd) => format!(
                    "{} at {} (KernBase {})",
                    if kd.encoded { "encoded" } else { "plain" },
                    kd.va,
                    kd.kern_base
                ),
                Err(e) => format!("unreadable: {e}"),
            },
        );
        if let Some(b) = k.kuser_build() {
            details.insert("kuser_build".into(), b.to_string());
        }
        OsInfo {
            kind: "windows".into(),
            version: k.version(),
            kernel_base: k.base(),
            kaslr_slide: k.base().raw(),
            kernel_dtb: k.space().root,
            kernel_paging_mode: k.space().mode,
            kernel_dtb_source: k.describe_dtb_source(),
            details,
        }
    }

    fn kernel_space(&self) -> AddressSpace {
        self.kernel.space()
    }

    fn is_kernel_address(&self, va: Va) -> bool {
        va.raw() >= 0xFFFF_8000_0000_0000
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn processes(&self) -> Option<&dyn Processes> {
        Some(self)
    }

    fn threads(&self) -> Option<&dyn Threads> {
        Some(self)
    }

    fn kernel_modules(&self) -> Option<&dyn KernelModules> {
        Some(self)
    }

    fn process_modules(&self) -> Option<&dyn ProcessModules> {
        Some(self)
    }

    fn regions(&self) -> Option<&dyn MemoryRegions> {
        Some(self)
    }

    fn arguments(&self) -> Option<&dyn ProcessArguments> {
        Some(self)
    }

    fn symbols(&self) -> Option<&dyn KernelSymbols> {
        Some(self)
    }

    fn save_cache(&self) -> Result<(), BoxError> {
        if let (Some(id), Some(json)) = (self.kernel.pdb(), self.kernel.subset_json()) {
            symbols::cache::save(id, json)?;
        }
        Ok(())
    }
}

impl Processes for WindowsOs {
    fn processes(&self, session: &Session) -> Result<Partial<os::Process>, OsError> {
        self.neutral_partial(analysis::processes(session, &self.kernel), neutral_process)
    }

    fn process_space(&self, session: &Session, pid: u32) -> Result<AddressSpace, OsError> {
        let p = analysis::find_process(session, &self.kernel, pid).map_err(|e| self.neutral(e))?;
        analysis::process_space(&self.kernel, &p).map_err(|e| self.neutral(e))
    }
}

impl Threads for WindowsOs {
    fn threads(&self, session: &Session, pid: u32) -> Result<Partial<os::Thread>, OsError> {
        self.neutral_partial(analysis::threads(session, &self.kernel, pid), |t| {
            let mut d = Details::new();
            d.insert("teb", Detail::Address(t.teb));
            d.insert("create_time_filetime", Detail::Int(t.create_time));
            if let Some(s) = t.start_address {
                d.insert("start_address", Detail::Address(s));
            }
            os::Thread {
                tid: t.tid,
                pid: t.pid,
                name: String::new(),
                start_time: time::filetime_to_unix_ns(t.create_time),
                object: t.ethread,
                os: d,
            }
        })
    }
}

impl KernelModules for WindowsOs {
    fn kernel_modules(&self, session: &Session) -> Result<Partial<os::Module>, OsError> {
        self.neutral_partial(
            analysis::kernel_modules(session, &self.kernel),
            neutral_module,
        )
    }
}

impl ProcessModules for WindowsOs {
    fn process_modules(&self, session: &Session, pid: u32) -> Result<Partial<os::Module>, OsError> {
        self.neutral_partial(
            analysis::process_modules(session, &self.kernel, pid),
            neutral_module,
        )
    }
}

impl MemoryRegions for WindowsOs {
    fn regions(&self, session: &Session, pid: u32) -> Result<Partial<os::Region>, OsError> {
        self.neutral_partial(analysis::regions(session, &self.kernel, pid), |v| {
            let mut d = Details::new();
            d.insert("vad", Detail::Address(v.node));
            d.insert(
                "protection",
                Detail::Text(crate::comps::vad::protection_name(v.protection)),
            );
            d.insert(
                "vad_type",
                Detail::Text(crate::comps::vad::vad_type_name(v.vad_type).into()),
            );
            os::Region {
                start: v.start,
                end: v.end,
                perms: v.perms(),
                offset: 0,
                path: v.file.clone().unwrap_or_default(),
                os: d,
            }
        })
    }
}

impl ProcessArguments for WindowsOs {
    fn command_line(&self, session: &Session, pid: u32) -> Result<Vec<String>, OsError> {
        analysis::command_line(session, &self.kernel, pid).map_err(|e| self.neutral(e))
    }

    fn environment(&self, session: &Session, pid: u32) -> Result<Vec<(String, String)>, OsError> {
        analysis::environment(session, &self.kernel, pid).map_err(|e| self.neutral(e))
    }
}

impl KernelSymbols for WindowsOs {
    fn symbol(&self, name: &str) -> Result<Va, OsError> {
        self.kernel.symbol(name).map_err(|e| self.neutral(e))
    }

    fn runtime_address(&self, address: u64) -> Va {
        Va::new(self.kernel.base().raw().wrapping_add(address))
    }

    fn profile(&self) -> &Profile {
        self.kernel.profile()
    }
}

/// The Windows kernel bound to `session`, if its OS was detected as Windows.
pub fn windows(session: &Session) -> Option<&WindowsOs> {
    session.os()?.as_any().downcast_ref::<WindowsOs>()
}

/// What [`open`] decided.
#[derive(Debug)]
pub enum Opened {
    /// A Windows kernel, and whether its identity is proven (GUID matched its table).
    Found(Box<WindowsOs>, Confidence),
    /// Not Windows: why.
    NotWindows(String),
}

/// Whether a `--symbols` profile is a Windows kernel table.
fn is_windows_table(p: &Profile) -> bool {
    p.symbol("PsActiveProcessHead").is_some() && p.user_type("_EPROCESS").is_some()
}

/// Finds the kernel with `methods` and binds its symbol table (from `options`, the search
/// path or the cache).
pub fn open(
    session: &Session,
    options: &DetectOptions,
    methods: Methods,
) -> Result<Opened, WindowsError> {
    let hints_say_windows = session
        .kernel_hints()
        .os_version
        .as_deref()
        .is_some_and(|v| v.starts_with("windows"));
    if !hints_say_windows && dtb::vcpus_rule_out_windows(session) {
        return Ok(Opened::NotWindows(
            "no vCPU's page tables map themselves as Windows' do".into(),
        ));
    }
    let (space, dtb_source) = match discovery::find_dtb(session, methods) {
        Ok(found) => found,
        Err(tried) => return Ok(Opened::NotWindows(format!("no Windows DTB: {tried}"))),
    };
    let image = match discovery::find_nt(session, space, methods) {
        Ok(image) => image,
        Err(tried) => return Ok(Opened::NotWindows(format!("no ntoskrnl: {tried}"))),
    };
    let dirs: Vec<PathBuf> = symbols::search_dirs(&options.symbol_path);
    let given = options.profiles.iter().find(|p| is_windows_table(p));
    let (table, matched) = if let Some(p) = given {
        (
            SymbolTable {
                profile: p.clone(),
                pdb: None,
                complete: true,
                subset_json: None,
            },
            TableMatch::Given,
        )
    } else if let Some(id) = &image.pdb {
        // Only what the analyses use unless the caller needs the whole table: a missing
        // symbol then says IncompleteProfile, and the caller asks again with `full_profile`.
        let table = if options.use_cache {
            symbols::table_for(id, &dirs, options.full_profile)?
        } else {
            symbols::load_table(&symbols::find_table(id, &dirs)?, options.full_profile)?
        };
        (table, TableMatch::Guid)
    } else {
        (
            fingerprint(session, space, image.base, &dirs, options.use_cache)?,
            TableMatch::Fingerprint,
        )
    };
    let confidence = match matched {
        TableMatch::Guid => Confidence::CERTAIN,
        TableMatch::Given => Confidence(90),
        TableMatch::Fingerprint => Confidence(80),
    };
    let kernel = Kernel::new(session, space, dtb_source, image, table, matched)?;
    Ok(Opened::Found(Box::new(WindowsOs::new(kernel)), confidence))
}

fn detect(session: &Session, options: &DetectOptions) -> Detection {
    // The PML4 scan reads 16 MiB: only when no cheaper way found a root and no other
    // detector proved its OS.
    if !options.exhaustive {
        let cheap = Methods {
            pml4_scan: false,
            ..Methods::ALL
        };
        if discovery::find_dtb(session, cheap).is_err() {
            if dtb::vcpus_rule_out_windows(session) {
                return Detection::NotThisOs(
                    "no vCPU's page tables map themselves as Windows' do".into(),
                );
            }
            return Detection::Deferred(
                "no vCPU CR3, low stub or dump header gives a Windows DTB; \
                 a scan of the low 16 MiB is left"
                    .into(),
            );
        }
    }
    match open(session, options, Methods::ALL) {
        Ok(Opened::Found(os, confidence)) => Detection::Found {
            profile: os,
            confidence,
        },
        Ok(Opened::NotWindows(why)) => Detection::NotThisOs(why),
        Err(e) => Detection::Failed(e.into()),
    }
}

/// The Windows detector.
pub static WINDOWS_DETECTOR: OsDetector = OsDetector {
    name: "windows",
    description: "Windows 10/11 x64: ntoskrnl by RSDS, symbol table by PDB GUID (Volatility 3 ISF), cached on disk",
    detect,
};

vmi_core::register_os_detector!(WINDOWS_DETECTOR);
