//! Live Xen domains through the Xen userspace libraries (libxenctrl, libxenforeignmemory,
//! libxenstore, libxenevtchn), opened at run time with `libloading`, so vmi builds and runs on
//! machines without Xen and needs no Xen headers.
//!
//! - [`loader`]: finds the libraries (`libxenctrl.so.4.22` ... `.4.17`, then
//!   `libxenctrl.so`; the stable sonames of the others) and resolves the function table once;
//!   `$VMI_XEN_LIBRARY_DIR` is the test seam that points it at another directory.
//! - [`sys`]: every raw declaration: handle types, C signatures, `hvm_hw_cpu` (hand-written,
//!   pinned by size/offset assertions), `vcpu_guest_context` (from `xen-sys`).
//! - [`handle`]: [`Xen`], the open control and foreign-memory interfaces, with a safe
//!   wrapper per call; xenstore.
//! - [`domain`]: `xen:NAME` (xenstore `/local/domain/*/name`) and `xen:DOMID`; HVM or PV.
//! - [`memory`]: [`XenMemory`], foreign mappings of many frames per call, a bounded cache of
//!   mappings, copies into caller buffers through vmi-core's volatile copies
//!   ([`vmi_core::memory::copy_from_live`]); writes only when opened with `--write`.
//! - [`vcpu`]: registers from HVM save records or PV vCPU contexts.
//! - [`control`]: pause/resume; a domain vmi paused is resumed when the guard or the target
//!   drops, on errors too.
//! - [`error`]: the error type, [`XenError`].
//!
//! The crate registers the `xen` backend:
//!
//! ```no_run
//! use vmi_core::{OpenOptions, Session};
//! use vmi_backend_xen as _; // registers `xen:`
//!
//! let session = Session::open("xen:web01", &OpenOptions::default())?;
//! println!("{} vCPUs", session.vcpu_count());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Events (later)
//!
//! vm_event (breakpoints, CR writes, single-step) is a later issue. It fits here as an
//! `events` module implementing vmi-core's event capability over the same [`Xen`] handle:
//! `xc_monitor_enable` (already resolved, so a host without it fails at load time, not
//! mid-analysis) maps the ring page, `libxenevtchn` (already loaded) binds its event channel.
//! The `Target` then gains an events capability next to memory, registers and control.
//!
//! See README.md beside this crate for running on a real dom0, and for what was tested here
//! (no Xen hypervisor was available: the real libraries were loaded, a test library played
//! the hypervisor).

pub mod control;
pub mod domain;
pub mod error;
pub mod handle;
pub mod loader;
pub mod memory;
pub mod sys;
pub mod vcpu;

use std::sync::Arc;

use vmi_core::registry::{BackendFactory, SpecMatch};
use vmi_core::{
    BoxError, OpenOptions, PhysicalMemory, PhysicalMemoryWrite, Target, VcpuRegisters, VmControl,
};

pub use control::{PauseGuard, XenControl};
pub use domain::{Domain, DomainSpec, GuestKind};
pub use error::XenError;
pub use handle::Xen;
pub use loader::{LibrarySearch, XenLibraries, LIBRARY_DIR_ENV};
pub use memory::XenMemory;
pub use vcpu::XenVcpus;

/// Opens `xen:SPEC` (`spec` without the prefix) with the libraries `$VMI_XEN_LIBRARY_DIR`
/// selects (loaded once per process).
pub fn open(spec: &str, options: &OpenOptions) -> Result<Target, XenError> {
    // Parse first: a malformed spec is reported without touching Xen.
    let domain = DomainSpec::parse(spec)?;
    open_with(XenLibraries::shared()?, &domain, options)
}

/// Opens `domain` with already loaded libraries.
pub fn open_with(
    libs: Arc<XenLibraries>,
    domain: &DomainSpec,
    options: &OpenOptions,
) -> Result<Target, XenError> {
    let libxenctrl = libs
        .loaded()
        .first()
        .map(|l| l.file.clone())
        .unwrap_or_default();
    let xen_version = libs.xen_version().to_owned();
    let xen = Arc::new(Xen::open(libs)?);
    let dom = Domain::resolve(&xen, domain)?;
    let domid = dom.domid;
    let max_frame = match dom.kind {
        GuestKind::Hvm => xen.maximum_gpfn(domid).map_err(|source| XenError::Call {
            call: "xc_domain_maximum_gpfn",
            domid,
            source,
        })?,
        // PV frames are machine frames: bounded by the host's memory.
        GuestKind::Pv => xen.maximum_ram_page().map_err(|source| XenError::Call {
            call: "xc_maximum_ram_page",
            domid,
            source,
        })?,
    };
    let memory = Arc::new(XenMemory::new(xen.clone(), domid, max_frame, options.write));
    let vcpus: Arc<dyn VcpuRegisters> = Arc::new(XenVcpus::new(
        xen.clone(),
        domid,
        dom.kind,
        dom.vcpus as usize,
    ));
    let control: Arc<dyn VmControl> = Arc::new(XenControl::new(xen, domid, dom.name.as_deref()));
    let details = vec![
        ("domid".into(), domid.to_string()),
        ("name".into(), dom.name.clone().unwrap_or_default()),
        ("guest".into(), dom.kind.name().into()),
        ("vcpus".into(), dom.vcpus.to_string()),
        ("max_frame".into(), format!("{max_frame:#x}")),
        ("libxenctrl".into(), libxenctrl),
        ("xen".into(), xen_version),
        ("writable".into(), options.write.to_string()),
        (
            "mapping_cache".into(),
            format!(
                "{} chunks of {} frames",
                memory::MAX_CHUNKS,
                memory::CHUNK_FRAMES
            ),
        ),
    ];
    // Reads are copies out of cached mappings: a page cache would only add staleness.
    let writer = options
        .write
        .then(|| memory.clone() as Arc<dyn PhysicalMemoryWrite>);
    Ok(Target::builder(
        XEN_BACKEND.name,
        dom.kind.name(),
        memory as Arc<dyn PhysicalMemory>,
    )
    .registers(vcpus)
    .control(control)
    .writer(writer)
    .details(details)
    .build())
}

fn open_spec(rest: &str, options: &OpenOptions) -> Result<Target, BoxError> {
    Ok(open(rest, options)?)
}

/// The `xen` backend: `xen:NAME` or `xen:DOMID`.
pub static XEN_BACKEND: BackendFactory = BackendFactory {
    name: "xen",
    description: "live Xen domains (xen:NAME or xen:DOMID), run in dom0 as root",
    spec: SpecMatch::Prefix("xen"),
    open: open_spec,
};

vmi_core::register_backend!(XEN_BACKEND);
