//! Loader entries: `_KLDR_DATA_TABLE_ENTRY` (kernel modules), `_LDR_DATA_TABLE_ENTRY` (a
//! process's DLLs) and the 32-bit entry of WoW64 processes (not in the kernel's table).

use vmi_core::{Profile, ProfileError};

/// Offsets of a loader entry's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LdrOffsets {
    /// `InLoadOrderLinks`.
    pub links: u64,
    /// `DllBase`.
    pub dll_base: u64,
    /// `SizeOfImage`.
    pub size_of_image: u64,
    /// `FullDllName`.
    pub full_dll_name: u64,
    /// `BaseDllName`.
    pub base_dll_name: u64,
}

impl LdrOffsets {
    /// Resolves the offsets of struct `ty` from `p`.
    pub fn resolve(p: &Profile, ty: &str) -> Result<Self, ProfileError> {
        let f = |n: &str| p.field_offset(ty, n);
        Ok(Self {
            links: f("InLoadOrderLinks")?,
            dll_base: f("DllBase")?,
            size_of_image: f("SizeOfImage")?,
            full_dll_name: f("FullDllName")?,
            base_dll_name: f("BaseDllName")?,
        })
    }

    /// `_LDR_DATA_TABLE_ENTRY32`, stable since Windows 7 (notes §4.2 item 8).
    pub const WOW64: LdrOffsets = LdrOffsets {
        links: 0,
        dll_base: 0x18,
        size_of_image: 0x20,
        full_dll_name: 0x24,
        base_dll_name: 0x2C,
    };
}
