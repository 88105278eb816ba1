//! VAD nodes (`_MMVAD_SHORT`, `_MMVAD`) in the process's AVL tree (`_RTL_BALANCED_NODE`), and
//! what a mapped file's VAD leads to (`_SUBSECTION` → `_CONTROL_AREA` → `_FILE_OBJECT`).

use vmi_core::{Profile, ProfileError};

use super::{bits, Bits};

/// Offsets of the VAD fields used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VadOffsets {
    /// `_RTL_AVL_TREE.Root` within `_EPROCESS.VadRoot`.
    pub tree_root: u64,
    /// `_RTL_BALANCED_NODE.Left`.
    pub left: u64,
    /// `_RTL_BALANCED_NODE.Right`.
    pub right: u64,
    /// `_MMVAD_SHORT.VadNode`: where the node sits in the VAD.
    pub vad_node: u64,
    /// `StartingVpn` (u32).
    pub starting_vpn: u64,
    /// `EndingVpn` (u32).
    pub ending_vpn: u64,
    /// `StartingVpnHigh` (u8).
    pub starting_vpn_high: Option<u64>,
    /// `EndingVpnHigh` (u8).
    pub ending_vpn_high: Option<u64>,
    /// `u` (the `_MMVAD_FLAGS` word).
    pub flags: u64,
    /// `_MMVAD_FLAGS.VadType`.
    pub vad_type: Bits,
    /// `_MMVAD_FLAGS.Protection`.
    pub protection: Bits,
    /// `_MMVAD_FLAGS.PrivateMemory`.
    pub private_memory: Bits,
    /// `_MMVAD.Subsection`.
    pub subsection: u64,
    /// `_SUBSECTION.ControlArea`.
    pub control_area: u64,
    /// `_CONTROL_AREA.FilePointer` (an `_EX_FAST_REF`).
    pub file_pointer: u64,
    /// `_FILE_OBJECT.FileName`.
    pub file_name: u64,
}

impl VadOffsets {
    /// Resolves the offsets from `p`.
    pub fn resolve(p: &Profile) -> Result<Self, ProfileError> {
        let s = |f: &str| p.field_offset("_MMVAD_SHORT", f);
        Ok(Self {
            tree_root: p.field_offset("_RTL_AVL_TREE", "Root")?,
            left: p.field_offset("_RTL_BALANCED_NODE", "Left")?,
            right: p.field_offset("_RTL_BALANCED_NODE", "Right")?,
            vad_node: s("VadNode")?,
            starting_vpn: s("StartingVpn")?,
            ending_vpn: s("EndingVpn")?,
            starting_vpn_high: s("StartingVpnHigh").ok(),
            ending_vpn_high: s("EndingVpnHigh").ok(),
            flags: s("u")?,
            vad_type: bits(p, "_MMVAD_FLAGS", "VadType")?,
            protection: bits(p, "_MMVAD_FLAGS", "Protection")?,
            private_memory: bits(p, "_MMVAD_FLAGS", "PrivateMemory")?,
            subsection: p.field_offset("_MMVAD", "Subsection")?,
            control_area: p.field_offset("_SUBSECTION", "ControlArea")?,
            file_pointer: p.field_offset("_CONTROL_AREA", "FilePointer")?,
            file_name: p.field_offset("_FILE_OBJECT", "FileName")?,
        })
    }
}

/// The name of an MM protection index (`_MMVAD_FLAGS.Protection`): the low three bits pick the
/// access, bit 3 adds no-cache, bit 4 guard, both write-combine.
pub fn protection_name(index: u64) -> String {
    const BASE: [&str; 8] = [
        "PAGE_NOACCESS",
        "PAGE_READONLY",
        "PAGE_EXECUTE",
        "PAGE_EXECUTE_READ",
        "PAGE_READWRITE",
        "PAGE_WRITECOPY",
        "PAGE_EXECUTE_READWRITE",
        "PAGE_EXECUTE_WRITECOPY",
    ];
    let base = BASE[(index & 7) as usize];
    match (index >> 3) & 3 {
        1 => format!("PAGE_NOCACHE|{base}"),
        2 => format!("PAGE_GUARD|{base}"),
        3 => format!("PAGE_WRITECOMBINE|{base}"),
        _ => base.to_owned(),
    }
}

/// `rwx` of an MM protection index, then `p` for private or copy-on-write memory, `s` for a
/// shared mapping.
pub fn perms(index: u64, private: bool) -> String {
    let access = index & 7;
    let r = matches!(access, 1 | 3..=7);
    let w = matches!(access, 4..=7);
    let x = matches!(access, 2 | 3 | 6 | 7);
    let p = private || matches!(access, 5 | 7);
    format!(
        "{}{}{}{}",
        if r { 'r' } else { '-' },
        if w { 'w' } else { '-' },
        if x { 'x' } else { '-' },
        if p { 'p' } else { 's' }
    )
}

/// The name of a `_MI_VAD_TYPE`.
pub fn vad_type_name(t: u64) -> &'static str {
    match t {
        0 => "VadNone",
        1 => "VadDevicePhysicalMemory",
        2 => "VadImageMap",
        3 => "VadAwe",
        4 => "VadWriteWatch",
        5 => "VadLargePages",
        6 => "VadRotatePhysical",
        7 => "VadLargePageSection",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protections() {
        assert_eq!(protection_name(3), "PAGE_EXECUTE_READ");
        assert_eq!(protection_name(4 | 8), "PAGE_NOCACHE|PAGE_READWRITE");
        assert_eq!(perms(3, false), "r-xs");
        assert_eq!(perms(7, false), "rwxp");
        assert_eq!(perms(4, true), "rw-p");
        assert_eq!(perms(0, true), "---p");
    }
}
