//! Binding to vmi-core: the Linux [`OsProfile`] and its self-registering detector.

use std::any::Any;

use vmi_core::registry::{BoxError, OsDetector};
use vmi_core::{OsInfo, OsProfile, Session, Va};

use crate::kallsyms::KallsymsError;
use crate::kernel::Kernel;
use crate::{cache, discovery, LinuxError};

/// A Linux guest recognised in a session.
#[derive(Debug)]
pub struct LinuxOs {
    kernel: Kernel,
    from_cache: bool,
}

impl LinuxOs {
    /// Wraps a kernel found by discovery, a cache or `--symbols`.
    pub fn new(kernel: Kernel, from_cache: bool) -> Self {
        Self { kernel, from_cache }
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
        OsInfo {
            kind: "linux".to_owned(),
            version: self.kernel.banner().trim_end().to_owned(),
            kernel_base: base,
            kaslr_slide: self.kernel.virtual_slide(),
        }
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
    if use_cache {
        if let Ok(space) = session.vcpu_address_space(0) {
            // The kernel half is the same in every address space; with PTI the kernel PGD is
            // the even page of the pair.
            let space = vmi_core::AddressSpace {
                root: vmi_core::Pa::new(space.root.raw() & !0x1000),
                ..space
            };
            if let Some(kernel) = cache::load(session, space) {
                return Ok(LinuxOs::new(kernel, true));
            }
        }
    }
    let mut kernel = discovery::discover(session)?;
    kernel.record_accesses();
    Ok(LinuxOs::new(kernel, false))
}

fn detect(session: &Session) -> Result<Option<Box<dyn OsProfile>>, BoxError> {
    let use_cache = std::env::var_os("VMI_NO_CACHE").is_none();
    match open(session, use_cache) {
        Ok(os) => Ok(Some(Box::new(os))),
        // No registers, no kernel mapping, no banner: not Linux (or not a kernel we can
        // see); other detectors may try.
        Err(LinuxError::Kallsyms(
            KallsymsError::BannerNotFound { .. }
            | KallsymsError::KernelNotMapped { .. }
            | KallsymsError::NoAddressSpace { .. },
        )) => Ok(None),
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
