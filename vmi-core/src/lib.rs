//! Core model of vmi, a virtual machine introspection framework.
//!
//! - [`addr`]: guest address newtypes ([`Pa`], [`Va`], [`Gfn`]) without arithmetic operators.
//! - [`memory`], [`vcpu`]: the capability traits a backend implements ([`PhysicalMemory`],
//!   [`PhysicalMemoryWrite`], [`VcpuRegisters`], [`VmControl`]); a missing capability is a
//!   missing trait object, never an `unimplemented!()`.
//! - [`arch`]: the [`Architecture`] capability (paging modes, translation, walk reports,
//!   mapping enumeration), implemented by `vmi-arch-x86`.
//! - [`event`]: breakpoints, watchpoints, single-step and pauses of a live guest: the
//!   [`EventSource`] capability backends implement and the [`Events`] loop (step-over,
//!   CR3 filters, cleanup) built on it.
//! - [`virt`]: reading virtual memory through an architecture.
//! - [`cache`]: a page cache and a TLB, each a wrapper implementing the trait it wraps.
//! - [`profile`]: symbols and types from Volatility 3 ISF and System.map.
//! - [`registry`], [`session`]: backends, architectures and OS detectors join a registry by
//!   themselves; a [`Session`] is composed from a target spec at run time.
//! - [`os`]: the OS-neutral layer: the [`OsProfile`] an OS crate binds to a session and the
//!   capability traits analyses go through (processes, modules, regions, symbols, ...).
//! - [`error`]: one error enum per domain.
//!
//! ```
//! use vmi_core::{Pa, PageSize, PhysicalMemory, memory::BufferMemory};
//!
//! let mem = BufferMemory::new(Pa::new(0), vec![0xaa; 4096]);
//! let mut word = [0u8; 8];
//! mem.read(Pa::new(0x10), &mut word)?;
//! assert_eq!(word, [0xaa; 8]);
//! assert_eq!(Pa::new(0x1234).align_down(PageSize::Size4K), Pa::new(0x1000));
//! # Ok::<(), vmi_core::MemoryError>(())
//! ```

#[cfg(not(target_pointer_width = "64"))]
compile_error!("vmi supports 64-bit hosts only: guest addresses and sizes are converted to usize");

pub mod addr;
pub mod arch;
pub mod cache;
pub mod error;
pub mod event;
pub mod memory;
pub mod os;
pub mod profile;
pub mod registry;
pub mod serde_hex;
pub mod session;
#[cfg(test)]
mod test_support;
pub mod vcpu;
pub mod virt;

pub use addr::{Gfn, Pa, PageSize, Va};
pub use arch::{
    AddressSpace, Architecture, Mapping, PageWalk, PagingLevel, PagingMode, Permissions,
    Translation, WalkStep,
};
pub use cache::{PageCache, Tlb};
pub use error::{
    EventError, MemoryError, OsError, ProfileError, SessionError, TranslationError, VcpuError,
};
pub use event::{Event, EventKind, EventSource, Events, Filter, WatchKind};
pub use memory::{MemoryRegion, PhysicalMemory, PhysicalMemoryExt, PhysicalMemoryWrite};
pub use os::{Confidence, DetectOptions, Detection, OsInfo, OsProfile, Partial};
pub use profile::Profile;
pub use registry::{BoxError, OpenOptions};
pub use session::{HintedModule, KernelHints, Session, Target, TargetBuilder};
pub use vcpu::{
    Register, RegisterSource, SegmentRegister, VcpuRegisters, VcpuRegistersWrite, VmControl,
    X86Registers,
};
pub use virt::VirtualMemory;

#[doc(hidden)]
pub mod __private {
    pub use ctor;
}
