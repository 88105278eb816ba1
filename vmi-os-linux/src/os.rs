//! Binding to vmi-core: the Linux [`OsProfile`] and its self-registering detector.

use std::any::Any;

use std::collections::BTreeMap;
use vmi_core::registry::{BoxError, OsDetector};

use vmi_core::{AddressSpace, OsInfo, OsProfile, Session, Va};

use crate::kallsyms::KallsymsError;
use crate::kernel::Kernel;
use crate::{cache, discovery, LinuxError};

/// A Linux guest recognised in a session.
#[derive(Debug)]
pub struct LinuxOs {
    kernel: Kernel,
    from_cache: bool,
    details: BTreeMap<String, String>,
}

impl LinuxOs {
    /// Wraps a kernel found by discovery, a cache or `--symbols`.
    pub fn new(kernel: Kernel, from_cache: bool) -> Self {
        Self {
            kernel,
            from_cache,
            details: BTreeMap::new(),
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

fn detect(session: &Session) -> Result<Option<Box<dyn OsProfile>>, BoxError> {
    let use_cache = std::env::var_os("VMI_NO_CACHE").is_none();
    match open(session, use_cache) {
        Ok(os) => Ok(Some(Box::new(os))),
        // No registers, no kernel mapping, no banner: not Linux (or not a kernel we can
        // see); other detectors may try.
        Err(
            LinuxError::Kallsyms(
                KallsymsError::BannerNotFound { .. }
                | KallsymsError::KernelNotMapped { .. }
                | KallsymsError::NoAddressSpace { .. },
            )
            | LinuxError::KernelNotInPhysicalMemory { .. },
        ) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The Linux detector.
pub static LINUX_DETECTOR: OsDetector = OsDetector {
    name: "linux",
    description: "Linux 6.x: profile from the guest's own kallsyms and BTF, cached on disk",
    detect,
};

vmi_core::register_os_detector!(LINUX_DETECTOR);
