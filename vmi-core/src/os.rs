//! The OS profile capability: what an OS crate binds to a session once it recognises a guest.

use std::any::Any;

use serde::Serialize;

use crate::addr::{Pa, Va};
use crate::arch::{AddressSpace, PagingMode};

/// What `vmi info` reports about the guest OS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// "linux" or "windows".
    pub kind: String,
    /// The kernel's own version string (e.g. the Linux banner).
    pub version: String,
    /// Virtual address the kernel image starts at.
    #[serde(serialize_with = "crate::serde_hex::va")]
    pub kernel_base: Va,
    /// Distance between the link-time and run-time kernel address (KASLR), in bytes.
    #[serde(serialize_with = "crate::serde_hex::u64")]
    pub kaslr_slide: u64,
    /// Root of the kernel's own page tables, which kernel addresses are read through.
    pub kernel_dtb: Pa,
    /// How that root is walked.
    pub kernel_paging_mode: PagingMode,
    /// How that root was found (e.g. "init_top_pgt, translated through a vCPU's CR3").
    pub kernel_dtb_source: String,
    /// Further OS-specific facts (e.g. whether a VMCOREINFO note agreed with discovery).
    pub details: std::collections::BTreeMap<String, String>,
}

/// An OS recognised in a guest. OS crates downcast through [`OsProfile::as_any`] to reach their
/// own analyses.
pub trait OsProfile: Send + Sync {
    /// Summary for `vmi info`.
    fn info(&self) -> OsInfo;
    /// The kernel's own address space: where a kernel address is read when no process or
    /// vCPU is named.
    fn kernel_space(&self) -> AddressSpace;
    /// Whether `va` is in the kernel's half of the address space (read through
    /// [`OsProfile::kernel_space`]) rather than a process's.
    fn is_kernel_address(&self, va: Va) -> bool;
    /// The concrete profile, for the OS crate's own use.
    fn as_any(&self) -> &dyn Any;
}
