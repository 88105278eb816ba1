//! A session: one target, composed at run time from a spec through the registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::addr::Va;
use crate::arch::{AddressSpace, Architecture, PageWalk, PagingMode, Translation};
use crate::cache::{PageCache, Tlb};
use crate::error::{EventError, OsError};
use crate::error::{SessionError, TranslationError};
use crate::event::EventSource;
use crate::memory::{PhysicalMemory, PhysicalMemoryWrite};
use crate::os::{Confidence, DetectOptions, Detection, DetectionReport, OsProfile};
use crate::registry::{self, OpenOptions, OsDetector, SpecMatch};
use crate::vcpu::{VcpuRegisters, VcpuRegistersWrite, VmControl, X86Registers};
use crate::virt::VirtualMemory;

/// TLB size: 2^14 entries covers 64 MiB of 4 KiB pages, more than an analysis touches.
const TLB_BITS: u32 = 14;
/// Page cache size for backends with expensive reads: 16 MiB.
const PAGE_CACHE_PAGES: usize = 4096;

/// What a backend hands to a session: the capabilities it has, nothing it lacks.
///
/// Built with [`Target::builder`], so that a capability added later does not break every
/// backend: a backend names what it has and the rest stays absent.
///
/// ```
/// use std::sync::Arc;
/// use vmi_core::{memory::BufferMemory, Pa, Target};
///
/// let memory = Arc::new(BufferMemory::new(Pa::new(0), vec![0; 4096]));
/// let target = Target::builder("test", "buffer", memory).detail("pages", "1").build();
/// assert!(target.registers.is_none());
/// assert_eq!(target.details, [("pages".to_owned(), "1".to_owned())]);
/// ```
#[non_exhaustive]
pub struct Target {
    /// The backend's name.
    pub backend: &'static str,
    /// The format or transport ("elf-core", "raw", "lime", "qmp", ...).
    pub format: String,
    /// Physical memory (every target has it).
    pub memory: Arc<dyn PhysicalMemory>,
    /// vCPU registers, if the target has them.
    pub registers: Option<Arc<dyn VcpuRegisters>>,
    /// Pause/resume, for live targets.
    pub control: Option<Arc<dyn VmControl>>,
    /// Writes, when opened with `--write` on a backend that can write.
    pub writer: Option<Arc<dyn PhysicalMemoryWrite>>,
    /// Breakpoints, watchpoints and single-step, for live targets that can give them.
    pub events: Option<Arc<dyn EventSource>>,
    /// Register writes, when opened with `--write` on a backend that can write them.
    pub register_writer: Option<Arc<dyn VcpuRegistersWrite>>,
    /// Whether reads are expensive enough to put a page cache in front of them.
    pub slow_reads: bool,
    /// The guest kernel's VMCOREINFO note (Linux `KEY=VALUE` lines), when the target carries
    /// one (kdump files, ELF cores of guests with `-device vmcoreinfo`): an OS profile may use
    /// it as a shortcut and a cross-check of what it discovers.
    pub vmcoreinfo: Option<String>,
    /// What the dump's own header says of the kernel (Windows crash dumps), for OS
    /// detectors to start from and check against.
    pub kernel_hints: KernelHints,
    /// Backend-specific facts for `vmi info`, as (key, value) pairs.
    pub details: Vec<(String, String)>,
}

/// Facts about the guest kernel that a dump format records in its header, in the OS's own
/// vocabulary. Empty for formats that record none (ELF, raw, LiME, live targets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelHints {
    /// The kernel's page-table root as the header states it (PCID and flag bits included as
    /// written: the OS profile decides what they mean).
    pub dtb: Option<u64>,
    /// Kernel addresses the header names, keyed by the OS's own symbol names
    /// (`PsActiveProcessHead`, `PsLoadedModuleList`, `KdDebuggerDataBlock`, `MmPfnDatabase`).
    pub symbols: BTreeMap<String, Va>,
    /// The OS and version the header states (e.g. `windows 15.19041`), unchecked.
    pub os_version: Option<String>,
    /// Kernel modules the dump lists by itself (a triage dump's driver list), newest last.
    pub modules: Vec<HintedModule>,
}

/// A kernel module named by a dump header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintedModule {
    /// The module's file name.
    pub name: String,
    /// Where its image starts.
    pub base: Va,
    /// Its image size in bytes.
    pub size: u64,
}

impl KernelHints {
    /// Whether the header said nothing.
    pub fn is_empty(&self) -> bool {
        *self == KernelHints::default()
    }
}

impl Target {
    /// A target with physical memory only; add what else the backend has with the builder's
    /// methods.
    pub fn builder(
        backend: &'static str,
        format: impl Into<String>,
        memory: Arc<dyn PhysicalMemory>,
    ) -> TargetBuilder {
        TargetBuilder(Target {
            backend,
            format: format.into(),
            memory,
            registers: None,
            control: None,
            writer: None,
            events: None,
            register_writer: None,
            slow_reads: false,
            vmcoreinfo: None,
            kernel_hints: KernelHints::default(),
            details: Vec::new(),
        })
    }
}

/// Builds a [`Target`]: see [`Target::builder`].
#[must_use]
pub struct TargetBuilder(Target);

impl TargetBuilder {
    /// vCPU registers.
    pub fn registers(mut self, registers: Arc<dyn VcpuRegisters>) -> Self {
        self.0.registers = Some(registers);
        self
    }

    /// vCPU registers, if the backend found any.
    pub fn maybe_registers(mut self, registers: Option<Arc<dyn VcpuRegisters>>) -> Self {
        self.0.registers = registers;
        self
    }

    /// Pause/resume.
    pub fn control(mut self, control: Arc<dyn VmControl>) -> Self {
        self.0.control = Some(control);
        self
    }

    /// Writes (only when the user asked for `--write`).
    pub fn writer(mut self, writer: Option<Arc<dyn PhysicalMemoryWrite>>) -> Self {
        self.0.writer = writer;
        self
    }

    /// Breakpoints, watchpoints and single-step.
    pub fn events(mut self, events: Arc<dyn EventSource>) -> Self {
        self.0.events = Some(events);
        self
    }

    /// Register writes (only when the user asked for `--write`).
    pub fn register_writer(mut self, writer: Option<Arc<dyn VcpuRegistersWrite>>) -> Self {
        self.0.register_writer = writer;
        self
    }

    /// Whether reads are expensive enough for the session to put a page cache in front.
    pub fn slow_reads(mut self, slow: bool) -> Self {
        self.0.slow_reads = slow;
        self
    }

    /// The guest's VMCOREINFO note, if the target carries one.
    pub fn vmcoreinfo(mut self, note: Option<String>) -> Self {
        self.0.vmcoreinfo = note;
        self
    }

    /// What the dump header says of the kernel.
    pub fn kernel_hints(mut self, hints: KernelHints) -> Self {
        self.0.kernel_hints = hints;
        self
    }

    /// One backend-specific fact for `vmi info`.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.details.push((key.into(), value.into()));
        self
    }

    /// Backend-specific facts for `vmi info`.
    pub fn details(mut self, details: impl IntoIterator<Item = (String, String)>) -> Self {
        self.0.details.extend(details);
        self
    }

    /// The target.
    pub fn build(self) -> Target {
        self.0
    }
}

/// A guest being introspected: memory, vCPUs, paging and (once detected) its OS.
pub struct Session {
    spec: String,
    target: Target,
    memory: Arc<dyn PhysicalMemory>,
    arch: Tlb<Box<dyn Architecture>>,
    os: Option<Box<dyn OsProfile>>,
    detections: Vec<DetectionReport>,
}

impl Session {
    /// Opens `spec` with the first registered backend that accepts it.
    ///
    /// A spec `PREFIX:REST` goes to the backend registered under `PREFIX`; any other spec goes
    /// to a backend that takes plain paths (the file backend).
    pub fn open(spec: &str, options: &OpenOptions) -> Result<Session, SessionError> {
        if spec.is_empty() {
            return Err(SessionError::NoTarget);
        }
        let backends = registry::BACKENDS.items();
        let prefixed = spec.split_once(':').and_then(|(prefix, rest)| {
            backends
                .iter()
                .find(|b| match b.spec {
                    SpecMatch::Prefix(p) | SpecMatch::PrefixOrPath(p) => p == prefix,
                })
                .map(|b| (*b, rest))
        });
        let chosen = prefixed.or_else(|| {
            backends
                .iter()
                .find(|b| matches!(b.spec, SpecMatch::PrefixOrPath(_)))
                .map(|b| (*b, spec))
        });
        let Some((backend, rest)) = chosen else {
            return Err(SessionError::NoBackend {
                spec: spec.to_owned(),
                registered: backends
                    .iter()
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let target = (backend.open)(rest, options).map_err(|source| SessionError::Backend {
            backend: backend.name,
            source,
        })?;
        let arch = registry::ARCHITECTURES
            .items()
            .first()
            .map(|a| (a.make)())
            .ok_or_else(|| SessionError::Backend {
                backend: backend.name,
                source: "no architecture is registered (link vmi-arch-x86)".into(),
            })?;
        Ok(Session::from_target(spec, target, arch))
    }

    /// A session over an already opened target and a given architecture (tests, embedding).
    pub fn from_target(spec: &str, target: Target, arch: Box<dyn Architecture>) -> Session {
        let memory: Arc<dyn PhysicalMemory> = if target.slow_reads {
            Arc::new(PageCache::new(target.memory.clone(), PAGE_CACHE_PAGES))
        } else {
            target.memory.clone()
        };
        Session {
            spec: spec.to_owned(),
            target,
            memory,
            arch: Tlb::new(arch, TLB_BITS),
            os: None,
            detections: Vec::new(),
        }
    }

    /// The spec this session was opened from.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.target.backend
    }

    /// The target's format or transport.
    pub fn format(&self) -> &str {
        &self.target.format
    }

    /// The guest kernel's VMCOREINFO note, if the target carries one.
    pub fn vmcoreinfo(&self) -> Option<&str> {
        self.target.vmcoreinfo.as_deref()
    }

    /// What the dump header says of the kernel (empty for most targets).
    pub fn kernel_hints(&self) -> &KernelHints {
        &self.target.kernel_hints
    }

    /// Backend-specific facts.
    pub fn details(&self) -> &[(String, String)] {
        &self.target.details
    }

    /// Guest-physical memory (behind a page cache where the backend is slow).
    pub fn memory(&self) -> &dyn PhysicalMemory {
        &*self.memory
    }

    /// Paging logic, behind the session's TLB.
    pub fn architecture(&self) -> &dyn Architecture {
        &self.arch
    }

    /// Writes, if the target was opened for writing and can write.
    pub fn writer(&self) -> Option<&dyn PhysicalMemoryWrite> {
        self.target.writer.as_deref()
    }

    /// The target's event capability, or why it has none (see [`crate::event::Events`], the
    /// loop built on it).
    pub fn events(&self) -> Result<&dyn EventSource, EventError> {
        self.target
            .events
            .as_deref()
            .ok_or_else(|| EventError::Unsupported {
                spec: self.spec.clone(),
                what: "set breakpoints, watchpoints or single-step",
                why: if self.target.control.is_some() {
                    format!(
                        "the {} backend has no event capability",
                        self.target.backend
                    )
                } else {
                    "it is not a live guest".to_owned()
                },
            })
    }

    /// Register writes, if the target was opened for writing and can write registers.
    pub fn register_writer(&self) -> Option<&dyn VcpuRegistersWrite> {
        self.target.register_writer.as_deref()
    }

    /// Pause/resume, if the target is live.
    pub fn control(&self) -> Option<&dyn VmControl> {
        self.target.control.as_deref()
    }

    /// A shared handle on pause/resume, for guards that must outlive a borrow of the session.
    pub fn control_handle(&self) -> Option<Arc<dyn VmControl>> {
        self.target.control.clone()
    }

    /// Number of vCPUs (0 if the target has no register state).
    pub fn vcpu_count(&self) -> usize {
        self.target.registers.as_ref().map_or(0, |r| r.vcpu_count())
    }

    /// Registers of vCPU `index`.
    pub fn registers(&self, index: usize) -> Result<X86Registers, SessionError> {
        let regs = self
            .target
            .registers
            .as_ref()
            .ok_or_else(|| SessionError::NoRegisters {
                spec: self.spec.clone(),
            })?;
        Ok(regs.registers(index)?)
    }

    /// The address space vCPU `index` runs in (its CR3 and paging mode).
    pub fn vcpu_address_space(&self, index: usize) -> Result<AddressSpace, SessionError> {
        Ok(PagingMode::from_registers(&self.registers(index)?))
    }

    /// A reader of the virtual address space `space`.
    pub fn virtual_memory(&self, space: AddressSpace) -> VirtualMemory<'_> {
        VirtualMemory::new(&*self.memory, &self.arch, space)
    }

    /// Translates `va` in `space` (through the TLB).
    pub fn translate(&self, space: AddressSpace, va: Va) -> Result<Translation, TranslationError> {
        self.arch.translate(&*self.memory, space, va)
    }

    /// A full page walk of `va` in `space` (uncached).
    pub fn walk(&self, space: AddressSpace, va: Va) -> PageWalk {
        self.arch.walk(&*self.memory, space, va)
    }

    /// Drops every cache (TLB and page cache). Live targets call this on resume.
    pub fn invalidate(&self) {
        self.arch.flush();
        self.memory.invalidate();
    }

    /// The bound OS profile, once [`Session::detect_os`] found one.
    pub fn os(&self) -> Option<&dyn OsProfile> {
        self.os.as_deref()
    }

    /// A capability of the bound OS (`|os| os.processes()`), or an error naming the target and
    /// what is missing: no OS identified (with what each detector said), or an OS that cannot
    /// answer `what` (`"threads"`).
    pub fn os_capability<'s, T: ?Sized + 's>(
        &'s self,
        what: &'static str,
        get: impl FnOnce(&'s dyn OsProfile) -> Option<&'s T>,
    ) -> Result<&'s T, OsError> {
        let os = self.identified_os()?;
        get(os).ok_or_else(|| OsError::Lacks {
            spec: self.spec.clone(),
            os: os.info().kind,
            capability: what,
        })
    }

    /// The bound OS profile, or an error saying what each detector found instead.
    pub fn identified_os(&self) -> Result<&dyn OsProfile, OsError> {
        self.os().ok_or_else(|| OsError::NoOs {
            spec: self.spec.clone(),
            why: self.detection_summary(),
        })
    }

    /// `" (linux: why; windows: why)"` from the last detection, or empty.
    fn detection_summary(&self) -> String {
        let parts: Vec<String> = self
            .detections
            .iter()
            .map(|d| format!("{}: {}", d.detector, d.reason))
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join("; "))
        }
    }

    /// Runs every registered OS detector and binds the surest profile found (on a tie, the
    /// one found by cheap checks, then the detector whose name sorts first: registration
    /// order never matters). A detector
    /// that fails does not hide the others: what each said is kept for
    /// [`Session::detections`]. Detectors run their cheap checks first; those that
    /// [`Detection::Deferred`] an expensive search run it only when no detector proved its OS.
    /// Returns the bound profile, if any detector found its OS.
    pub fn detect_os(&mut self, options: &DetectOptions) -> Option<&dyn OsProfile> {
        let mut detectors: Vec<&OsDetector> = registry::OS_DETECTORS.items().to_vec();
        detectors.sort_by_key(|d| d.name);
        let mut best: Option<(Confidence, &'static str, Box<dyn OsProfile>)> = None;
        let mut reports = Vec::new();
        let mut deferred = Vec::new();
        let cheap = DetectOptions {
            exhaustive: options.exhaustive,
            ..options.clone()
        };
        for detector in detectors {
            let detection = (detector.detect)(self, &cheap);
            if let Detection::Deferred(why) = &detection {
                deferred.push((detector, why.clone()));
                continue;
            }
            reports.push(Self::report(detector, detection, &mut best));
        }
        let proven = best
            .as_ref()
            .is_some_and(|(c, _, _)| *c >= Confidence::CERTAIN);
        let thorough = DetectOptions {
            exhaustive: true,
            ..options.clone()
        };
        for (detector, why) in deferred {
            if proven {
                reports.push(DetectionReport {
                    detector: detector.name,
                    outcome: "deferred",
                    confidence: None,
                    reason: format!("{why} (not needed: another detector proved its OS)"),
                    bound: false,
                });
            } else {
                let detection = (detector.detect)(self, &thorough);
                reports.push(Self::report(detector, detection, &mut best));
            }
        }
        reports.sort_by_key(|r| r.detector);
        if let Some((_, name, profile)) = best {
            for r in &mut reports {
                r.bound = r.detector == name;
            }
            self.os = Some(profile);
        }
        self.detections = reports;
        self.os.as_deref()
    }

    /// One detector's verdict; a found profile surer than `best` replaces it.
    fn report(
        detector: &OsDetector,
        detection: Detection,
        best: &mut Option<(Confidence, &'static str, Box<dyn OsProfile>)>,
    ) -> DetectionReport {
        let (outcome, confidence, reason) = match detection {
            Detection::Found {
                profile,
                confidence,
            } => {
                // Detectors run in name order, so a tie keeps the first name.
                let surer = best.as_ref().is_none_or(|(c, _, _)| confidence > *c);
                if surer {
                    *best = Some((confidence, detector.name, profile));
                }
                ("found", Some(confidence), String::new())
            }
            Detection::NotThisOs(why) => ("not-this-os", None, why),
            Detection::Failed(e) => ("failed", None, e.to_string()),
            Detection::Deferred(why) => ("deferred", None, why),
        };
        DetectionReport {
            detector: detector.name,
            outcome,
            confidence,
            reason,
            bound: false,
        }
    }

    /// What each OS detector said at the last [`Session::detect_os`].
    pub fn detections(&self) -> &[DetectionReport] {
        &self.detections
    }

    /// Binds an OS profile built by the caller.
    pub fn set_os(&mut self, profile: Box<dyn OsProfile>) {
        self.os = Some(profile);
    }
}
