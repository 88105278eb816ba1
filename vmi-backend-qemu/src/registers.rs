//! vCPU registers from the gdbstub's `g` packet (QEMU 7.2's `i386:x86-64` target description)
//! and from HMP `info registers` text (the fallback).

use vmi_core::{RegisterSource, SegmentRegister, X86Registers};

use crate::layout::{hmp_register, split_cpu_blocks};

/// Byte offsets in the `g` packet (after hex decoding).
mod off {
    pub const RIP: usize = 128;
    pub const EFLAGS: usize = 136;
    pub const SEGS: usize = 140;
    pub const FS_BASE: usize = 164;
    pub const GS_BASE: usize = 172;
    pub const K_GS_BASE: usize = 180;
    pub const CR0: usize = 188;
    pub const CR2: usize = 196;
    pub const CR3: usize = 204;
    pub const CR4: usize = 212;
    pub const EFER: usize = 228;
    pub const END: usize = 236;
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    let b = hex.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// Parses a `g` reply. `None` if it is too short or not hex (unavailable registers, `xx`,
/// are not in the range used).
pub fn from_g_packet(hex: &str) -> Option<X86Registers> {
    let end = off::END * 2;
    let bytes = unhex(hex.get(..end)?)?;
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
    let gpr: Vec<u64> = (0..16).map(|i| u64_at(i * 8)).collect();
    // Only the selectors are in the packet; bases of FS/GS are separate registers.
    let seg = |i: usize| SegmentRegister {
        selector: u16::try_from(u32_at(off::SEGS + i * 4) & 0xffff).unwrap_or(0),
        ..SegmentRegister::default()
    };
    let mut fs = seg(4);
    fs.base = u64_at(off::FS_BASE);
    let mut gs = seg(5);
    gs.base = u64_at(off::GS_BASE);
    Some(X86Registers {
        rax: gpr[0],
        rbx: gpr[1],
        rcx: gpr[2],
        rdx: gpr[3],
        rsi: gpr[4],
        rdi: gpr[5],
        rbp: gpr[6],
        rsp: gpr[7],
        r8: gpr[8],
        r9: gpr[9],
        r10: gpr[10],
        r11: gpr[11],
        r12: gpr[12],
        r13: gpr[13],
        r14: gpr[14],
        r15: gpr[15],
        rip: u64_at(off::RIP),
        rflags: u64::from(u32_at(off::EFLAGS)),
        cs: seg(0),
        ss: seg(1),
        ds: seg(2),
        es: seg(3),
        fs,
        gs,
        fs_base: u64_at(off::FS_BASE),
        gs_base: u64_at(off::GS_BASE),
        kernel_gs_base: u64_at(off::K_GS_BASE),
        cr0: u64_at(off::CR0),
        cr2: u64_at(off::CR2),
        cr3: u64_at(off::CR3),
        cr4: u64_at(off::CR4),
        efer: u64_at(off::EFER),
        gdtr_base: 0,
        idtr_base: 0,
        efer_source: Some(RegisterSource::Exact),
    })
}

fn hmp_segment(block: &str, name: &str) -> SegmentRegister {
    let line = block
        .lines()
        .map(|l| l.replace(" =", "="))
        .find(|l| l.starts_with(&format!("{name}=")));
    let Some(line) = line else {
        return SegmentRegister::default();
    };
    let f: Vec<u64> = line[name.len() + 1..]
        .split_whitespace()
        .take(4)
        .map_while(|w| u64::from_str_radix(w, 16).ok())
        .collect();
    SegmentRegister {
        selector: f.first().and_then(|&v| u16::try_from(v).ok()).unwrap_or(0),
        base: f.get(1).copied().unwrap_or(0),
        limit: f.get(2).and_then(|&v| u32::try_from(v).ok()).unwrap_or(0),
        flags: f.get(3).and_then(|&v| u32::try_from(v).ok()).unwrap_or(0),
    }
}

/// Parses HMP `info registers -a`: one [`X86Registers`] per `CPU#n` block, in order.
pub fn from_hmp(text: &str) -> Vec<X86Registers> {
    split_cpu_blocks(text)
        .into_iter()
        .map(|(_, b)| {
            let r = |n: &str| hmp_register(&b, n).unwrap_or(0);
            let fs = hmp_segment(&b, "FS");
            let gs = hmp_segment(&b, "GS");
            X86Registers {
                rax: r("RAX"),
                rbx: r("RBX"),
                rcx: r("RCX"),
                rdx: r("RDX"),
                rsi: r("RSI"),
                rdi: r("RDI"),
                rbp: r("RBP"),
                rsp: r("RSP"),
                r8: r("R8"),
                r9: r("R9"),
                r10: r("R10"),
                r11: r("R11"),
                r12: r("R12"),
                r13: r("R13"),
                r14: r("R14"),
                r15: r("R15"),
                rip: r("RIP"),
                rflags: r("RFL"),
                cs: hmp_segment(&b, "CS"),
                ss: hmp_segment(&b, "SS"),
                ds: hmp_segment(&b, "DS"),
                es: hmp_segment(&b, "ES"),
                fs,
                gs,
                fs_base: fs.base,
                gs_base: gs.base,
                kernel_gs_base: 0,
                cr0: r("CR0"),
                cr2: r("CR2"),
                cr3: r("CR3"),
                cr4: r("CR4"),
                efer: r("EFER"),
                gdtr_base: r("GDT"),
                idtr_base: r("IDT"),
                efer_source: Some(RegisterSource::Exact),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_packet_offsets() {
        let mut bytes = vec![0u8; 300];
        bytes[0] = 0x11; // rax
        bytes[128..136].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
        bytes[140] = 0x10; // cs
        bytes[204..212].copy_from_slice(&0x1078000u64.to_le_bytes());
        bytes[212..220].copy_from_slice(&0x751ef0u64.to_le_bytes());
        bytes[228..236].copy_from_slice(&0xd01u64.to_le_bytes());
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let r = from_g_packet(&hex).unwrap();
        assert_eq!(r.rax, 0x11);
        assert_eq!(r.rip, 0xffff_ffff_8100_0000);
        assert_eq!(r.cs.selector, 0x10);
        assert_eq!(r.cr3, 0x1078000);
        assert_eq!(r.cr4, 0x751ef0);
        assert_eq!(r.efer, 0xd01);
        assert!(from_g_packet("00").is_none());
        assert!(from_g_packet(&"zz".repeat(300)).is_none());
    }

    #[test]
    fn hmp_text() {
        let t = "CPU#0\nRAX=000000000001ad40 RBX=0000000000000000\nR8 =0000000000000005 R9 =1\nRIP=ffffffffb16592eb RFL=00000246 [---Z-P-] CPL=0\nCS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]\nGS =0000 ff45f7f2cf400000 00000000 00000000\nGDT=     fffffe0000001000 0000007f\nCR0=80050033 CR2=0000000039d90f61 CR3=0000000001078000 CR4=00751ef0\nEFER=0000000000000d01\n";
        let r = &from_hmp(t)[0];
        assert_eq!(r.rax, 0x1ad40);
        assert_eq!(r.r8, 5);
        assert_eq!(r.rflags, 0x246);
        assert_eq!(r.cs.selector, 0x10);
        assert!(r.cs.long_mode());
        assert_eq!(r.gs_base, 0xff45_f7f2_cf40_0000);
        assert_eq!(r.gdtr_base, 0xffff_fe00_0000_1000);
        assert_eq!(r.cr3, 0x1078000);
        assert_eq!(r.efer, 0xd01);
    }
}
