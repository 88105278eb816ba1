//! The OS profile capability: what an OS crate binds to a session once it recognises a guest.

use std::any::Any;

use serde::Serialize;

use crate::addr::Va;

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
}

/// An OS recognised in a guest. OS crates downcast through [`OsProfile::as_any`] to reach their
/// own analyses.
pub trait OsProfile: Send + Sync {
    /// Summary for `vmi info`.
    fn info(&self) -> OsInfo;
    /// The concrete profile, for the OS crate's own use.
    fn as_any(&self) -> &dyn Any;
}
