//! `_ETHREAD` (with its `_KTHREAD` Tcb at offset 0).

use vmi_core::{Profile, ProfileError};

/// Offsets of the `_ETHREAD` fields used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthreadOffsets {
    /// `Cid.UniqueProcess`.
    pub cid_process: u64,
    /// `Cid.UniqueThread`.
    pub cid_thread: u64,
    /// `ThreadListEntry` (in `_EPROCESS.ThreadListHead`).
    pub thread_list_entry: u64,
    /// `CreateTime`.
    pub create_time: u64,
    /// `Tcb.Teb`.
    pub teb: u64,
    /// `Win32StartAddress`.
    pub win32_start_address: Option<u64>,
}

impl EthreadOffsets {
    /// Resolves the offsets from `p`.
    pub fn resolve(p: &Profile) -> Result<Self, ProfileError> {
        let e = |f: &str| p.field_offset("_ETHREAD", f);
        let cid = e("Cid")?;
        Ok(Self {
            cid_process: cid + p.field_offset("_CLIENT_ID", "UniqueProcess")?,
            cid_thread: cid + p.field_offset("_CLIENT_ID", "UniqueThread")?,
            thread_list_entry: e("ThreadListEntry")?,
            create_time: e("CreateTime")?,
            teb: e("Tcb")? + p.field_offset("_KTHREAD", "Teb")?,
            win32_start_address: e("Win32StartAddress").ok(),
        })
    }
}
