//! `_EPROCESS` (with its `_KPROCESS` Pcb at offset 0).

use vmi_core::{Profile, ProfileError};

/// Offsets of the `_EPROCESS` fields used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EprocessOffsets {
    /// Size of `_EPROCESS`.
    pub size: u64,
    /// `Pcb.DirectoryTableBase`.
    pub directory_table_base: u64,
    /// `Pcb.UserDirectoryTableBase` (builds with KVA shadow).
    pub user_directory_table_base: Option<u64>,
    /// `UniqueProcessId`.
    pub unique_process_id: u64,
    /// `ActiveProcessLinks`.
    pub active_process_links: u64,
    /// `InheritedFromUniqueProcessId`.
    pub inherited_from: u64,
    /// `ImageFileName` (15 bytes).
    pub image_file_name: u64,
    /// `Peb`.
    pub peb: u64,
    /// `WoW64Process`.
    pub wow64_process: u64,
    /// `CreateTime`.
    pub create_time: u64,
    /// `ExitTime`.
    pub exit_time: u64,
    /// `SeAuditProcessCreationInfo.ImageFileName`.
    pub audit_image_file_name: u64,
    /// `ThreadListHead` of `_EPROCESS` (lists `_ETHREAD.ThreadListEntry`).
    pub thread_list_head: u64,
    /// `ActiveThreads`.
    pub active_threads: u64,
    /// `VadRoot`.
    pub vad_root: Option<u64>,
    /// `Session`.
    pub session: Option<u64>,
    /// `_MM_SESSION_SPACE.SessionId`.
    pub session_id: Option<u64>,
    /// `_EWOW64PROCESS.Peb` (0 on all known builds).
    pub wow64_peb: u64,
}

impl EprocessOffsets {
    /// Resolves the offsets from `p`.
    pub fn resolve(p: &Profile) -> Result<Self, ProfileError> {
        let e = |f: &str| p.field_offset("_EPROCESS", f);
        let pcb = e("Pcb")?;
        Ok(Self {
            size: p.struct_size("_EPROCESS")?,
            directory_table_base: pcb + p.field_offset("_KPROCESS", "DirectoryTableBase")?,
            user_directory_table_base: p
                .field_offset("_KPROCESS", "UserDirectoryTableBase")
                .ok()
                .map(|o| pcb + o),
            unique_process_id: e("UniqueProcessId")?,
            active_process_links: e("ActiveProcessLinks")?,
            inherited_from: e("InheritedFromUniqueProcessId")?,
            image_file_name: e("ImageFileName")?,
            peb: e("Peb")?,
            wow64_process: e("WoW64Process")?,
            create_time: e("CreateTime")?,
            exit_time: e("ExitTime")?,
            audit_image_file_name: e("SeAuditProcessCreationInfo")?
                + p.field_offset("_SE_AUDIT_PROCESS_CREATION_INFO", "ImageFileName")?,
            thread_list_head: e("ThreadListHead")?,
            active_threads: e("ActiveThreads")?,
            vad_root: e("VadRoot").ok(),
            session: e("Session").ok(),
            session_id: p.field_offset("_MM_SESSION_SPACE", "SessionId").ok(),
            wow64_peb: p.field_offset("_EWOW64PROCESS", "Peb").unwrap_or(0),
        })
    }
}
