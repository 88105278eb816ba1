//! `_PEB`, `_PEB_LDR_DATA`, `_RTL_USER_PROCESS_PARAMETERS`, and their 32-bit forms for WoW64.

use vmi_core::{Profile, ProfileError};

/// Offsets of the PEB fields used (the same names in the 64- and 32-bit forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PebOffsets {
    /// `_PEB.Ldr`.
    pub ldr: u64,
    /// `_PEB.ProcessParameters`.
    pub process_parameters: u64,
    /// `_PEB.ImageBaseAddress`.
    pub image_base: u64,
    /// `_PEB_LDR_DATA.InLoadOrderModuleList`.
    pub in_load_order: u64,
    /// `_RTL_USER_PROCESS_PARAMETERS.ImagePathName`.
    pub image_path_name: u64,
    /// `_RTL_USER_PROCESS_PARAMETERS.CommandLine`.
    pub command_line: u64,
    /// `_RTL_USER_PROCESS_PARAMETERS.Environment`.
    pub environment: u64,
    /// `_RTL_USER_PROCESS_PARAMETERS.EnvironmentSize`, where the build has it.
    pub environment_size: Option<u64>,
}

impl PebOffsets {
    /// Resolves the 64-bit offsets from `p`.
    pub fn resolve(p: &Profile) -> Result<Self, ProfileError> {
        let pp = |f: &str| p.field_offset("_RTL_USER_PROCESS_PARAMETERS", f);
        Ok(Self {
            ldr: p.field_offset("_PEB", "Ldr")?,
            process_parameters: p.field_offset("_PEB", "ProcessParameters")?,
            image_base: p.field_offset("_PEB", "ImageBaseAddress")?,
            in_load_order: p.field_offset("_PEB_LDR_DATA", "InLoadOrderModuleList")?,
            image_path_name: pp("ImagePathName")?,
            command_line: pp("CommandLine")?,
            environment: pp("Environment")?,
            environment_size: pp("EnvironmentSize").ok(),
        })
    }

    /// `PEB32` and friends (notes §4.2 item 8): the kernel's table lacks them.
    pub const WOW64: PebOffsets = PebOffsets {
        ldr: 0xC,
        process_parameters: 0x10,
        image_base: 0x8,
        in_load_order: 0xC,
        image_path_name: 0x38,
        command_line: 0x40,
        environment: 0x48,
        environment_size: Some(0x290),
    };
}
