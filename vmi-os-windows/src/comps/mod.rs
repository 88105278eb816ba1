//! Kernel structures, one file each: their field offsets, resolved once from the symbol
//! table into typed structs (no name lookups on the walks), and readers of their values.

pub mod eprocess;
pub mod ethread;
pub mod ldr;
pub mod mmpte;
pub mod peb;
pub mod unicode;
pub mod vad;

use vmi_core::profile::TypeRef;
use vmi_core::{Profile, ProfileError};

/// A bitfield's place inside its storage word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits {
    /// First bit.
    pub position: u32,
    /// Width.
    pub length: u32,
}

impl Bits {
    /// The field's value in `word`.
    pub fn get(self, word: u64) -> u64 {
        let shifted = word.checked_shr(self.position).unwrap_or(0);
        if self.length >= 64 {
            shifted
        } else {
            shifted & ((1u64 << self.length) - 1)
        }
    }

    /// The mask of the field in its word.
    pub fn mask(self) -> u64 {
        let ones = if self.length >= 64 {
            u64::MAX
        } else {
            (1u64 << self.length) - 1
        };
        ones.checked_shl(self.position).unwrap_or(0)
    }
}

/// A bitfield of `ty.field` as the table describes it.
pub fn bits(profile: &Profile, ty: &str, field: &str) -> Result<Bits, ProfileError> {
    match &profile.field(ty, field)?.ty {
        TypeRef::Bitfield {
            position, length, ..
        } => Ok(Bits {
            position: *position,
            length: *length,
        }),
        _ => Err(ProfileError::MissingField {
            ty: ty.to_owned(),
            field: format!("{field} (as a bitfield)"),
        }),
    }
}

/// Every offset the analyses use, resolved from one symbol table.
#[derive(Debug, Clone)]
pub struct Offsets {
    /// `_EPROCESS` and `_KPROCESS`.
    pub eprocess: eprocess::EprocessOffsets,
    /// `_ETHREAD` and `_KTHREAD`.
    pub ethread: ethread::EthreadOffsets,
    /// `_KLDR_DATA_TABLE_ENTRY` (kernel modules).
    pub kldr: ldr::LdrOffsets,
    /// `_LDR_DATA_TABLE_ENTRY` (process modules).
    pub ldr: ldr::LdrOffsets,
    /// `_PEB`, `_PEB_LDR_DATA`, `_RTL_USER_PROCESS_PARAMETERS`.
    pub peb: peb::PebOffsets,
    /// VAD nodes, control areas, file objects.
    pub vad: Option<vad::VadOffsets>,
    /// Software PTE formats.
    pub mmpte: mmpte::PteFormats,
}

impl Offsets {
    /// Resolves everything from `profile`; fails naming the first thing missing among what
    /// processes and modules need (VADs are optional).
    pub fn resolve(profile: &Profile) -> Result<Offsets, ProfileError> {
        Ok(Offsets {
            eprocess: eprocess::EprocessOffsets::resolve(profile)?,
            ethread: ethread::EthreadOffsets::resolve(profile)?,
            kldr: ldr::LdrOffsets::resolve(profile, "_KLDR_DATA_TABLE_ENTRY")?,
            ldr: ldr::LdrOffsets::resolve(profile, "_LDR_DATA_TABLE_ENTRY")?,
            peb: peb::PebOffsets::resolve(profile)?,
            vad: vad::VadOffsets::resolve(profile).ok(),
            mmpte: mmpte::PteFormats::resolve(profile),
        })
    }
}
