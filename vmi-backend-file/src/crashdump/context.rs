//! The AMD64 `CONTEXT` record of a crash dump header (offset 0x348, 0x4D0 bytes used of 3000):
//! the crashing processor's registers, decoded into [`X86Registers`] and encoded back by the
//! writer.
//!
//! Layout (`winnt.h`, the same in kdmp-parser-rs and rizin): six home slots (0x00-0x2F),
//! `ContextFlags` 0x30, `MxCsr` 0x34, selectors `SegCs` 0x38, `SegDs` 0x3A, `SegEs` 0x3C,
//! `SegFs` 0x3E, `SegGs` 0x40, `SegSs` 0x42, `EFlags` 0x44, `Dr0`-`Dr3`, `Dr6`, `Dr7`
//! 0x48-0x77, then `Rax`, `Rcx`, `Rdx`, `Rbx`, `Rsp`, `Rbp`, `Rsi`, `Rdi`, `R8`-`R15` from
//! 0x78 in that order, `Rip` 0xF8, the FXSAVE area 0x100 and vector state up to 0x4D0.
//!
//! What a CONTEXT does not hold is inferred, and said so by `efer_source`
//! ([`RegisterSource::Inferred`]): CR3 is the header's DirectoryTableBase; the processor is
//! in long mode with 4-level paging (CR0 = PG|WP|NE|ET|MP|PE, CR4 = PAE|PGE|OSFXSR|OSXMMEXCPT,
//! EFER = LME|LMA), since a `PAGEDU64` dump is written by a 64-bit kernel; the segment
//! descriptor caches follow the selector (`0x23`, WoW64's 32-bit user code, is a
//! compatibility-mode segment, every other CS a 64-bit one with the selector's RPL as DPL),
//! and segment bases (so `gs_base`) are 0: the CONTEXT has no bases. 5-level paging is not
//! inferred; no 5-level Windows dump has been seen.

use vmi_core::vcpu::RegisterSource;
use vmi_core::{SegmentRegister, VcpuError, VcpuRegisters, X86Registers};

use crate::elf::Reader;

/// Offset of the CONTEXT record in the dump header.
pub const CONTEXT_OFFSET: usize = 0x348;
/// Bytes of the CONTEXT record that hold registers.
pub const CONTEXT_SIZE: usize = 0x4D0;
/// `CONTEXT_AMD64 | CONTROL | INTEGER | SEGMENTS | FLOATING_POINT`: what the writer sets.
pub const CONTEXT_FLAGS_WRITTEN: u32 = 0x0010_000F;

const OFF_FLAGS: usize = 0x30;
const OFF_MXCSR: usize = 0x34;
const OFF_SEG: usize = 0x38; // cs, ds, es, fs, gs, ss as u16
const OFF_EFLAGS: usize = 0x44;
const OFF_GPR: usize = 0x78; // rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15
const OFF_RIP: usize = 0xF8;

/// CR0 inferred for a 64-bit Windows kernel: PG | WP | NE | ET | MP | PE.
pub const INFERRED_CR0: u64 = 0x8001_0033;
/// CR4 inferred: PAE | PGE | OSFXSR | OSXMMEXCPT.
pub const INFERRED_CR4: u64 = 0x0000_06A0;
/// EFER inferred: LME | LMA.
pub const INFERRED_EFER: u64 = 0x500;

/// Segment attributes in QEMU's `flags` layout for a selector, as inferred (module docs).
fn segment(selector: u16, code: bool) -> SegmentRegister {
    let dpl = u32::from(selector & 3);
    let flags = if code {
        // P, S, type 0xB (execute/read, accessed); L for 64-bit code, D/B + G for 32-bit.
        let base = (1 << 15) | (1 << 12) | (0xB << 8) | (dpl << 13);
        if selector == 0x23 {
            base | (1 << 22) | (1 << 23)
        } else {
            base | (1 << 21)
        }
    } else if selector == 0 {
        0
    } else {
        // P, S, type 0x3 (read/write, accessed), D/B, G.
        (1 << 15) | (1 << 12) | (0x3 << 8) | (dpl << 13) | (1 << 22) | (1 << 23)
    };
    SegmentRegister {
        selector,
        base: 0,
        limit: if code && selector != 0x23 {
            0
        } else {
            0xFFFF_FFFF
        },
        flags,
    }
}

/// Decodes a CONTEXT record (`bytes` starts at it; missing bytes read as 0) with CR3 = `dtb`.
pub fn decode(bytes: &[u8], dtb: u64) -> X86Registers {
    let r = Reader(bytes);
    let gpr = |i: usize| r.u64(OFF_GPR + 8 * i);
    let sel = |i: usize| r.u16(OFF_SEG + 2 * i);
    X86Registers {
        rax: gpr(0),
        rcx: gpr(1),
        rdx: gpr(2),
        rbx: gpr(3),
        rsp: gpr(4),
        rbp: gpr(5),
        rsi: gpr(6),
        rdi: gpr(7),
        r8: gpr(8),
        r9: gpr(9),
        r10: gpr(10),
        r11: gpr(11),
        r12: gpr(12),
        r13: gpr(13),
        r14: gpr(14),
        r15: gpr(15),
        rip: r.u64(OFF_RIP),
        rflags: u64::from(r.u32(OFF_EFLAGS)),
        cs: segment(sel(0), true),
        ds: segment(sel(1), false),
        es: segment(sel(2), false),
        fs: segment(sel(3), false),
        gs: segment(sel(4), false),
        ss: segment(sel(5), false),
        cr0: INFERRED_CR0,
        cr3: dtb,
        cr4: INFERRED_CR4,
        efer: INFERRED_EFER,
        efer_source: Some(RegisterSource::Inferred),
        ..Default::default()
    }
}

/// Encodes `regs` as a CONTEXT record of [`CONTEXT_SIZE`] bytes (control, integer, segment
/// and floating-point flags set; MXCSR at its reset value).
pub fn encode(regs: &X86Registers) -> [u8; CONTEXT_SIZE] {
    let mut c = [0u8; CONTEXT_SIZE];
    let mut put = |off: usize, bytes: &[u8]| {
        if let Some(dst) = c.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(OFF_FLAGS, &CONTEXT_FLAGS_WRITTEN.to_le_bytes());
    put(OFF_MXCSR, &0x1F80u32.to_le_bytes());
    for (i, s) in [regs.cs, regs.ds, regs.es, regs.fs, regs.gs, regs.ss]
        .iter()
        .enumerate()
    {
        put(OFF_SEG + 2 * i, &s.selector.to_le_bytes());
    }
    // EFlags is 32 bits wide in a CONTEXT; the upper half of RFLAGS is reserved (zero).
    put(OFF_EFLAGS, &(regs.rflags as u32).to_le_bytes());
    let gprs = [
        regs.rax, regs.rcx, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi, regs.rdi, regs.r8,
        regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
    ];
    for (i, v) in gprs.iter().enumerate() {
        put(OFF_GPR + 8 * i, &v.to_le_bytes());
    }
    put(OFF_RIP, &regs.rip.to_le_bytes());
    c
}

/// The registers of a crash dump: the header's CONTEXT, as vCPU 0 (a dump holds the context
/// of the processor that crashed; the others' are in their KPRCBs, in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRegisters {
    regs: X86Registers,
}

impl ContextRegisters {
    /// Wraps decoded registers.
    pub fn new(regs: X86Registers) -> Self {
        Self { regs }
    }

    /// vCPU 0's registers, by reference.
    pub fn context(&self) -> &X86Registers {
        &self.regs
    }
}

impl VcpuRegisters for ContextRegisters {
    fn vcpu_count(&self) -> usize {
        1
    }

    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError> {
        if index == 0 {
            Ok(self.regs.clone())
        } else {
            Err(VcpuError::NoSuchVcpu { index, count: 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmi_core::PagingMode;

    #[test]
    fn round_trip_and_inference() {
        let regs = X86Registers {
            rax: 1,
            rcx: 2,
            rdx: 3,
            rbx: 4,
            rsp: 0xFFFF_F800_1234_5000,
            rbp: 6,
            rsi: 7,
            rdi: 8,
            r8: 9,
            r15: 16,
            rip: 0xFFFF_F802_0000_1000,
            rflags: 0x246,
            cs: SegmentRegister {
                selector: 0x10,
                ..Default::default()
            },
            ss: SegmentRegister {
                selector: 0x18,
                ..Default::default()
            },
            ..Default::default()
        };
        let bytes = encode(&regs);
        assert_eq!(Reader(&bytes).u32(OFF_FLAGS), CONTEXT_FLAGS_WRITTEN);
        assert_eq!(Reader(&bytes).u64(0x80), 2); // Rcx follows Rax
        let back = decode(&bytes, 0x1AD002);
        assert_eq!(
            (back.rax, back.rcx, back.rbx, back.rsp, back.r8, back.r15),
            (1, 2, 4, regs.rsp, 9, 16)
        );
        assert_eq!(
            (back.rip, back.rflags, back.cr3),
            (regs.rip, 0x246, 0x1AD002)
        );
        assert!(back.cs.long_mode());
        assert_eq!((back.cs.selector, back.ss.selector), (0x10, 0x18));
        let space = PagingMode::from_registers(&back);
        assert_eq!(space.mode, PagingMode::Ia32e4);
        assert_eq!(space.root.raw(), 0x1AD000);
        // WoW64 user code is a compatibility-mode segment.
        assert!(!segment(0x23, true).long_mode());
        assert!(segment(0x33, true).long_mode());
        let r = ContextRegisters::new(back);
        assert_eq!(r.vcpu_count(), 1);
        assert!(matches!(
            VcpuRegisters::registers(&r, 1),
            Err(VcpuError::NoSuchVcpu { index: 1, count: 1 })
        ));
    }
}
