//! Binding to vmi-core: the Linux [`OsProfile`], the OS-neutral capabilities it answers, and
//! its self-registering detector.

use std::any::Any;

use std::collections::BTreeMap;
use vmi_core::os::{
    self, Detail, Details, IsfExport, KernelLog, KernelModules, KernelSymbols, MemoryRegions,
    ProcessArguments, Processes, SymbolTableExport, Threads,
};
use vmi_core::registry::{BoxError, OsDetector};
use vmi_core::{
    AddressSpace, Confidence, DetectOptions, Detection, OsError, OsInfo, OsProfile, Pa, Partial,
    Profile, Session, Va,
};

use crate::kallsyms::KallsymsError;
use crate::kernel::Kernel;
use crate::{cache, discovery, LinuxError};

/// A Linux guest recognised in a session.
#[derive(Debug)]
pub struct LinuxOs {
    kernel: Kernel,
    from_cache: bool,
    details: BTreeMap<String, String>,
    /// What tracing resolved once (layouts, the system call table).
    tracer: crate::analysis::trace::Tracer,
}

impl LinuxOs {
    /// Wraps a kernel found by discovery, a cache or `--symbols`.
    pub fn new(kernel: Kernel, from_cache: bool) -> Self {
        Self {
            kernel,
            from_cache,
            details: BTreeMap::new(),
            tracer: Default::default(),
        }
    }

    /// Compares the kernel with the target's VMCOREINFO note, when it has one, and keeps the
    /// verdict for `vmi info` (`vmcoreinfo`: absent, or what agreed and what did not).
    pub fn check_vmcoreinfo(mut self, session: &Session) -> Self {
        let verdict = match session.vmcoreinfo() {
            None => "absent".to_owned(),
            Some(text) => crate::kernel_space::Vmcoreinfo(text).check(&self.kernel, session),
        };
        self.details.insert("vmcoreinfo".to_owned(), verdict);
        self
    }

    /// The kernel.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Whether the profile came from the on-disk cache (it then holds only what earlier runs
    /// used; an analysis needing more must rediscover: see [`LinuxError::is_missing_profile_item`]).
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// What tracing resolved once (see [`crate::analysis::trace`]).
    pub(crate) fn tracer(&self) -> &crate::analysis::trace::Tracer {
        &self.tracer
    }

    /// Saves what this run's analyses used to the profile cache.
    pub fn save_cache(&self) -> std::io::Result<()> {
        cache::save(&self.kernel)
    }
}

impl OsProfile for LinuxOs {
    fn info(&self) -> OsInfo {
        let base = self.kernel.symbol("_text").unwrap_or(Va::new(
            0xffff_ffff_8100_0000u64.wrapping_add(self.kernel.virtual_slide()),
        ));
        let space = self.kernel.space();
        OsInfo {
            kind: "linux".to_owned(),
            version: self.kernel.banner().trim_end().to_owned(),
            kernel_base: base,
            kaslr_slide: self.kernel.virtual_slide(),
            kernel_dtb: space.root,
            kernel_paging_mode: space.mode,
            kernel_dtb_source: self.kernel.root_source().describe().to_owned(),
            details: self.details.clone(),
        }
    }

    fn kernel_space(&self) -> AddressSpace {
        self.kernel.space()
    }

    fn is_kernel_address(&self, va: Va) -> bool {
        crate::kernel_space::is_kernel_half(self.kernel.space().mode, va)
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

    fn regions(&self) -> Option<&dyn MemoryRegions> {
        Some(self)
    }

    fn arguments(&self) -> Option<&dyn ProcessArguments> {
        Some(self)
    }

    fn symbols(&self) -> Option<&dyn KernelSymbols> {
        Some(self)
    }

    fn kernel_log(&self) -> Option<&dyn KernelLog> {
        Some(self)
    }

    fn symbol_table_export(&self) -> Option<&dyn SymbolTableExport> {
        Some(self)
    }

    fn open_files(&self) -> Option<&dyn os::OpenFiles> {
        Some(self)
    }

    fn sockets(&self) -> Option<&dyn os::Sockets> {
        Some(self)
    }

    fn mounts(&self) -> Option<&dyn os::Mounts> {
        Some(self)
    }

    fn namespaces(&self) -> Option<&dyn os::Namespaces> {
        Some(self)
    }

    fn credentials(&self) -> Option<&dyn os::ProcessCredentials> {
        Some(self)
    }

    fn integrity(&self) -> Option<&dyn os::IntegrityChecks> {
        Some(self)
    }

    fn page_cache(&self) -> Option<&dyn os::PageCache> {
        Some(self)
    }

    fn tracing(&self) -> Option<&dyn os::KernelTracing> {
        Some(self)
    }

    fn save_cache(&self) -> Result<(), BoxError> {
        Ok(cache::save(&self.kernel)?)
    }
}

impl LinuxOs {
    /// The OS-neutral form of `e`: a symbol, type or field missing from a cached profile
    /// says that full discovery would answer.
    pub(crate) fn neutral(&self, e: LinuxError) -> OsError {
        match e {
            e if self.from_cache && e.is_missing_profile_item() => {
                OsError::IncompleteProfile(Box::new(e))
            }
            LinuxError::NoSuchProcess(pid) => OsError::NoSuchProcess(pid),
            LinuxError::NoAddressSpace { pid } => OsError::NoAddressSpace { pid },
            LinuxError::Memory(e) => OsError::Memory(e),
            e => OsError::os(e),
        }
    }

    pub(crate) fn neutral_partial<T, U>(
        &self,
        walk: Result<crate::Partial<T>, LinuxError>,
        item: impl FnMut(T) -> U,
    ) -> Result<Partial<U>, OsError> {
        Ok(walk
            .map_err(|e| self.neutral(e))?
            .map(item, |w| self.neutral(w)))
    }
}

/// The neutral form of a process: the contract's fields, the task as its object, `mm` under
/// `os`.
impl From<crate::Process> for os::Process {
    fn from(p: crate::Process) -> os::Process {
        neutral_process(p)
    }
}

fn neutral_process(p: crate::Process) -> os::Process {
    let mut details = Details::new();
    if let Some(mm) = p.mm {
        details.insert("mm", Detail::Address(mm));
    }
    os::Process {
        pid: p.pid,
        ppid: p.ppid,
        name: p.name,
        uid: Some(p.uid),
        gid: Some(p.gid),
        dtb: p.dtb,
        threads: p.threads,
        kernel_thread: p.kernel_thread,
        start_time: p.start_time_ns,
        object: p.task,
        os: details,
    }
}

impl Processes for LinuxOs {
    fn processes(&self, session: &Session) -> Result<Partial<os::Process>, OsError> {
        let mut all = self.neutral_partial(crate::processes(session, &self.kernel), |p| p)?;
        // /proc does not list the idle task.
        all.items.retain(|p| !p.is_idle());
        Ok(all.map(neutral_process, |w| w))
    }

    fn process_space(&self, session: &Session, pid: u32) -> Result<AddressSpace, OsError> {
        let process =
            crate::find_process(session, &self.kernel, pid).map_err(|e| self.neutral(e))?;
        crate::process_space(session, &self.kernel, &process).map_err(|e| self.neutral(e))
    }

    /// `mm->pgd`, and the page after it on a kernel built with PTI (`pti_init` in its
    /// symbols): such a kernel allocates PGDs in pairs and runs user mode on the second
    /// (`pgd + 0x1000`) when PTI is on; when it is off the second page is unused, so
    /// accepting it never matches another process.
    fn address_space_roots(&self, session: &Session, pid: u32) -> Result<Vec<Pa>, OsError> {
        let root = self.process_space(session, pid)?.root;
        let mut roots = vec![root];
        if self.kernel.symbol("pti_init").is_ok() && root.raw() & 0x1fff == 0 {
            roots.push(Pa::new(root.raw() | 0x1000));
        }
        Ok(roots)
    }
}

impl Threads for LinuxOs {
    fn threads(&self, session: &Session, pid: u32) -> Result<Partial<os::Thread>, OsError> {
        self.neutral_partial(crate::threads(session, &self.kernel, pid), |t| {
            let mut details = Details::new();
            if let Some(ns) = t.start_boottime_ns {
                details.insert("start_boottime", Detail::Int(ns));
            }
            os::Thread {
                tid: t.tid,
                pid: t.tgid,
                name: t.name,
                start_time: t.start_time_ns,
                object: t.task,
                os: details,
            }
        })
    }
}

impl KernelModules for LinuxOs {
    fn kernel_modules(&self, session: &Session) -> Result<Partial<os::Module>, OsError> {
        self.neutral_partial(crate::modules(session, &self.kernel), |m| os::Module {
            name: m.name,
            base: m.base,
            size: m.size,
            path: None,
            os: Details::new(),
        })
    }
}

impl MemoryRegions for LinuxOs {
    fn regions(&self, session: &Session, pid: u32) -> Result<Partial<os::Region>, OsError> {
        self.neutral_partial(crate::maps(session, &self.kernel, pid), |m| {
            let mut details = Details::new();
            details.insert("inode", Detail::Int(m.inode));
            os::Region {
                start: m.start,
                end: m.end,
                perms: m.perms,
                offset: m.offset,
                path: m.path,
                os: details,
            }
        })
    }
}

impl ProcessArguments for LinuxOs {
    fn command_line(&self, session: &Session, pid: u32) -> Result<Vec<String>, OsError> {
        crate::cmdline(session, &self.kernel, pid).map_err(|e| self.neutral(e))
    }

    fn environment(&self, session: &Session, pid: u32) -> Result<Vec<(String, String)>, OsError> {
        crate::environ(session, &self.kernel, pid).map_err(|e| self.neutral(e))
    }
}

/// The x86-64 kernel image mapping: KASLR slides only symbols at or above it (see
/// [`Kernel::symbol`]).
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

impl KernelSymbols for LinuxOs {
    fn symbol(&self, name: &str) -> Result<Va, OsError> {
        self.kernel.symbol(name).map_err(|e| self.neutral(e))
    }

    fn runtime_address(&self, address: u64) -> Va {
        if address >= START_KERNEL_MAP {
            Va::new(address.wrapping_add(self.kernel.virtual_slide()))
        } else {
            Va::new(address)
        }
    }

    fn profile(&self) -> &Profile {
        self.kernel.profile()
    }
}

impl KernelLog for LinuxOs {
    fn kernel_log(&self, session: &Session) -> Result<Partial<os::LogRecord>, OsError> {
        self.neutral_partial(crate::dmesg(session, &self.kernel), |r| {
            let mut details = Details::new();
            details.insert("facility", Detail::Int(r.facility.into()));
            os::LogRecord {
                seq: r.seq,
                timestamp_ns: r.timestamp_ns,
                level: r.level,
                text: r.text,
                os: details,
            }
        })
    }
}

impl SymbolTableExport for LinuxOs {
    fn export_isf(&self, session: &Session) -> Result<IsfExport, OsError> {
        let doc = crate::isf_export::export(session, &self.kernel).map_err(|e| self.neutral(e))?;
        Ok(IsfExport {
            json: serde_json::to_vec(&doc).map_err(OsError::os)?,
            symbols: doc.symbols.len(),
            user_types: doc.user_types.len(),
        })
    }
}

/// The Linux kernel bound to `session`, if its OS was detected as Linux.
pub fn linux(session: &Session) -> Option<&LinuxOs> {
    session.os()?.as_any().downcast_ref::<LinuxOs>()
}

/// Finds the kernel: from the profile cache when it has this build, else by discovery (whose
/// profile then records what the analyses use, for [`LinuxOs::save_cache`]).
pub fn open(session: &Session, use_cache: bool) -> Result<LinuxOs, LinuxError> {
    if use_cache && session.vcpu_count() == 0 && session.vmcoreinfo().is_none() {
        // No registers: the cache knows where to look, sparing the scan of physical memory.
        if let Some(kernel) = cache::load_physical(session) {
            return Ok(LinuxOs::new(kernel, true).check_vmcoreinfo(session));
        }
    }
    let (spaces, source) = crate::kernel_space::search_spaces(session)?;
    if use_cache {
        for &space in &spaces {
            if let Some(mut kernel) = cache::load(session, space) {
                if let Ok(banner) = kernel.symbol("linux_banner") {
                    kernel.use_own_space(session, banner, source);
                }
                return Ok(LinuxOs::new(kernel, true).check_vmcoreinfo(session));
            }
        }
    }
    let mut kernel = discovery::discover_in(session, &spaces, source)?;
    kernel.record_accesses();
    // The cache must name the kernel's own page tables for the next run to use them.
    let _ = kernel.symbol("init_top_pgt");
    Ok(LinuxOs::new(kernel, false).check_vmcoreinfo(session))
}

fn detect(session: &Session, options: &DetectOptions) -> Detection {
    let found = |os: LinuxOs| Detection::Found {
        profile: Box::new(os),
        // A banner whose kallsyms decode (or a given profile that placed the banner).
        confidence: Confidence::CERTAIN,
    };
    // `$VMI_NO_CACHE` wins over the caller's wish (benchmarks and users rely on it).
    let use_cache = options.use_cache && !cache::disabled();
    let registerless = session.vcpu_count() == 0 && session.vmcoreinfo().is_none();
    if registerless && !options.exhaustive {
        // The cache knows where this build's banner was: a cheap probe.
        if use_cache && !options.full_profile && options.profiles.is_empty() {
            if let Some(kernel) = cache::load_physical(session) {
                return found(LinuxOs::new(kernel, true).check_vmcoreinfo(session));
            }
        }
        return Detection::Deferred(
            "no registers: the kernel banner must be searched for in all of physical memory"
                .to_owned(),
        );
    }
    let opened = if options.profiles.is_empty() {
        open(session, use_cache && !options.full_profile)
    } else {
        open_with_profiles(session, &options.profiles)
    };
    match opened {
        Ok(os) => found(os),
        // No kernel mapping, no banner: not Linux (or not a kernel we can see).
        Err(
            e @ (LinuxError::Kallsyms(
                KallsymsError::BannerNotFound { .. }
                | KallsymsError::KernelNotMapped { .. }
                | KallsymsError::NoAddressSpace { .. },
            )
            | LinuxError::KernelNotInPhysicalMemory { .. }),
        ) => Detection::NotThisOs(e.to_string()),
        Err(e) => Detection::Failed(e.into()),
    }
}

/// The kernel placed with symbol tables the user gave (`--symbols`), merged in order.
fn open_with_profiles(session: &Session, profiles: &[Profile]) -> Result<LinuxOs, LinuxError> {
    let mut merged = Profile::new(
        profiles
            .iter()
            .map(|p| p.source.as_str())
            .collect::<Vec<_>>()
            .join(" + "),
    );
    for p in profiles {
        merged.merge(p.clone());
    }
    let (spaces, source) = crate::kernel_space::search_spaces(session)?;
    let kernel = discovery::from_profile(session, &spaces, source, merged)?;
    Ok(LinuxOs::new(kernel, false).check_vmcoreinfo(session))
}

/// The Linux detector.
pub static LINUX_DETECTOR: OsDetector = OsDetector {
    name: "linux",
    description: "Linux 6.x: profile from the guest's own kallsyms and BTF, cached on disk",
    detect,
};

vmi_core::register_os_detector!(LINUX_DETECTOR);
