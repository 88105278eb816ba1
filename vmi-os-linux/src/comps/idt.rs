//! `gate_desc idt_table[IDT_ENTRIES]` (arch/x86/kernel/idt.c): the interrupt descriptor table
//! every vCPU loads (through a read-only alias, see [`crate::analysis::integrity`]).
//!
//! A 64-bit gate (`struct gate_struct` in arch/x86/include/asm/desc_defs.h) is 16 bytes whose
//! layout the CPU defines, not the kernel: `offset_low:16, segment:16, bits:16 (ist:3, zero:5,
//! type:5 (the top bit is always 0 in 64-bit gates), dpl:2, p:1), offset_middle:16,
//! offset_high:32, reserved:32`. The layout is therefore decoded here as the SDM gives it; the
//! profile's `gate_struct`, where it has one, is only checked to be 16 bytes (a kernel whose
//! BTF says otherwise is not one this code understands).

use vmi_core::{Profile, Va};

/// Number of gates in the table (`IDT_ENTRIES`): every vector of the x86 architecture.
pub const IDT_ENTRIES: usize = 256;

/// Size of one 64-bit gate descriptor.
pub const GATE_SIZE: usize = 16;

/// The kernel code segment selector every Linux gate uses (`__KERNEL_CS`: GDT entry 2).
pub const KERNEL_CS: u16 = 0x10;

/// Gate type of a 64-bit interrupt gate (`GATE_INTERRUPT`).
pub const GATE_INTERRUPT: u8 = 0xe;
/// Gate type of a 64-bit trap gate (`GATE_TRAP`).
pub const GATE_TRAP: u8 = 0xf;

/// One decoded gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// The vector (index in the table).
    pub vector: u8,
    /// The handler's address (`offset_low | offset_middle << 16 | offset_high << 32`).
    pub handler: Va,
    /// The code segment selector.
    pub selector: u16,
    /// The interrupt stack table index (0: the current stack).
    pub ist: u8,
    /// The gate type (`GATE_INTERRUPT`, `GATE_TRAP`, ...).
    pub kind: u8,
    /// The descriptor privilege level (3 for vectors user space may raise: `int3`, `into`).
    pub dpl: u8,
    /// Whether the gate is present.
    pub present: bool,
}

impl Gate {
    /// Decodes the 16 bytes of gate `vector`.
    pub fn decode(vector: u8, raw: &[u8; GATE_SIZE]) -> Gate {
        let u16_at = |i: usize| u16::from_le_bytes([raw[i], raw[i + 1]]);
        let high = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let handler = u64::from(u16_at(0)) | u64::from(u16_at(6)) << 16 | u64::from(high) << 32;
        let bits = u16_at(4);
        Gate {
            vector,
            handler: Va::new(handler),
            selector: u16_at(2),
            ist: (bits & 0x7) as u8,
            kind: ((bits >> 8) & 0x1f) as u8,
            dpl: ((bits >> 13) & 0x3) as u8,
            present: bits & 0x8000 != 0,
        }
    }

    /// Encodes a present gate (for tests that patch a table).
    pub fn encode(&self) -> [u8; GATE_SIZE] {
        let h = self.handler.raw();
        let bits = u16::from(self.ist & 7)
            | u16::from(self.kind & 0x1f) << 8
            | u16::from(self.dpl & 3) << 13
            | u16::from(self.present) << 15;
        let mut out = [0u8; GATE_SIZE];
        out[0..2].copy_from_slice(&(h as u16).to_le_bytes());
        out[2..4].copy_from_slice(&self.selector.to_le_bytes());
        out[4..6].copy_from_slice(&bits.to_le_bytes());
        out[6..8].copy_from_slice(&((h >> 16) as u16).to_le_bytes());
        out[8..12].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
        out
    }

    /// Decodes a whole table (`IDT_ENTRIES * GATE_SIZE` bytes, or fewer: the gates it holds).
    pub fn decode_table(bytes: &[u8]) -> Vec<Gate> {
        bytes
            .chunks_exact(GATE_SIZE)
            .take(IDT_ENTRIES)
            .zip(0u8..=255)
            .map(|(c, v)| {
                let mut raw = [0u8; GATE_SIZE];
                raw.copy_from_slice(c);
                Gate::decode(v, &raw)
            })
            .collect()
    }
}

/// Whether the profile's `gate_struct` (when it has one) is the 16-byte gate decoded here.
pub fn layout_matches(profile: &Profile) -> bool {
    profile
        .struct_size("gate_struct")
        .map_or(true, |s| s == GATE_SIZE as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_round_trip() {
        let g = Gate {
            vector: 14,
            handler: Va::new(0xffff_ffff_81e0_1230),
            selector: KERNEL_CS,
            ist: 0,
            kind: GATE_INTERRUPT,
            dpl: 0,
            present: true,
        };
        let raw = g.encode();
        assert_eq!(raw[5], 0x8e);
        assert_eq!(Gate::decode(14, &raw), g);
        let table = Gate::decode_table(&[0u8; 40]);
        assert_eq!(table.len(), 2);
        assert!(!table[1].present);
    }
}
