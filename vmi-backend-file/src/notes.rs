//! Decoding of ELF core notes: NT_PRSTATUS, QEMU's per-vCPU `QEMUCPUState` and VMCOREINFO.
//!
//! # Layouts
//!
//! **NT_PRSTATUS** (name "CORE", type 1), as the Linux kernel and QEMU
//! (`target/i386/arch_dump.c`) write it:
//! - x86-64, 336 bytes: `pr_pid` (u32) at 32, `pr_reg` at 112: 27 u64 in `user_regs_struct`
//!   order r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags
//!   rsp ss fs_base gs_base ds es fs gs, then `pr_fpvalid` and padding.
//! - i386, 144 bytes: `pr_pid` at 24, `pr_reg` at 72: ebx ecx edx esi edi ebp eax (u32),
//!   ds es fs gs (u16 each followed by a u16 pad), orig_eax eip (u32), cs (u16 + pad),
//!   eflags esp (u32), ss (u16 + pad). QEMU writes this layout (even in ELF64 files) when
//!   vCPU 0 was not in long mode.
//!
//! **QEMU CPU state** (name "QEMU", type 0), `QEMUCPUState` version 1: `version` u32, `size`
//! u32, then rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags (u64), then the segments cs ds
//! es fs gs ss ldt tr gdt idt, each `{selector u32, limit u32, flags u32, pad u32, base u64}`
//! (24 bytes), then `cr[5]` (cr0..cr4, u64), then `kernel_gs_base` (u64), which QEMU added
//! later without changing the version: it is read only if `size` (and the descriptor) cover
//! it. Version 1 without `kernel_gs_base` is 432 bytes, with it 440. Verified against QEMU 7.2
//! dumps whose `info registers -a` output was recorded at the same time.
//!
//! **VMCOREINFO** (name "VMCOREINFO"): the Linux kernel's `KEY=VALUE` lines, present when the
//! guest kernel registered it with QEMU's vmcoreinfo device or in `/proc/vmcore`.

use vmi_core::{SegmentRegister, X86Registers};

use crate::elf::{Note, Reader, NT_PRSTATUS};
use crate::error::DumpError;

/// Size of the x86-64 `elf_prstatus`.
pub const PRSTATUS_X86_64_SIZE: usize = 336;
/// Offset of `pr_reg` in the x86-64 `elf_prstatus`.
pub const PRSTATUS_X86_64_REG_OFFSET: usize = 112;
/// Size of the i386 `elf_prstatus`.
pub const PRSTATUS_I386_SIZE: usize = 144;
/// Offset of `pr_reg` in the i386 `elf_prstatus`.
pub const PRSTATUS_I386_REG_OFFSET: usize = 72;
/// Size of `QEMUCPUState` version 1 without optional fields.
pub const QEMU_CPU_STATE_V1_SIZE: usize = 432;
/// Size of `QEMUCPUState` version 1 with `kernel_gs_base`.
pub const QEMU_CPU_STATE_KGS_SIZE: usize = 440;
/// Most vCPUs accepted (QEMU's x86 machines allow at most a few thousand).
pub const MAX_VCPUS: usize = 16384;
/// Largest VMCOREINFO note accepted (Linux reserves one page for it).
pub const MAX_VMCOREINFO: usize = 1 << 20;

/// Which `elf_prstatus` layout a note has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrstatusLayout {
    /// x86-64, 336 bytes.
    X86_64,
    /// i386, 144 bytes.
    I386,
}

/// A decoded NT_PRSTATUS note.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrStatus {
    /// Which layout it had.
    pub layout: PrstatusLayout,
    /// `pr_pid` (QEMU writes the vCPU index + 1).
    pub pid: u32,
    /// `orig_rax` / `orig_eax`.
    pub orig_rax: u64,
    /// General registers, rip, rflags, segment selectors and (x86-64) fs/gs bases; control
    /// registers are not in NT_PRSTATUS and stay 0.
    pub regs: X86Registers,
}

/// A decoded QEMU CPU note.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QemuCpuState {
    /// `version` (1).
    pub version: u32,
    /// `size` as the note declares it.
    pub size: u32,
    /// Everything the note holds except EFER, which it lacks (`efer` is 0 and `efer_source`
    /// `None` here; see [`crate::registers`] for the inference).
    pub regs: X86Registers,
    /// LDTR.
    pub ldt: SegmentRegister,
    /// TR.
    pub tr: SegmentRegister,
    /// GDTR (base and limit; selector and flags are 0).
    pub gdt: SegmentRegister,
    /// IDTR (base and limit).
    pub idt: SegmentRegister,
    /// `kernel_gs_base`, if the note is new enough to have it.
    pub kernel_gs_base: Option<u64>,
}

/// The notes of a core file, decoded.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CoreNotes {
    /// NT_PRSTATUS notes, in file order.
    pub prstatus: Vec<PrStatus>,
    /// QEMU CPU notes, in file order.
    pub qemu: Vec<QemuCpuState>,
    /// The text of the first VMCOREINFO note, without trailing NULs (invalid UTF-8 replaced).
    pub vmcoreinfo: Option<String>,
    /// Notes of other kinds, counted.
    pub other: usize,
}

/// Decodes every note vmi understands.
pub fn decode(notes: &[Note<'_>]) -> Result<CoreNotes, DumpError> {
    let mut out = CoreNotes::default();
    for note in notes {
        match (note.name, note.n_type) {
            (b"CORE", NT_PRSTATUS) => {
                check_vcpus(out.prstatus.len())?;
                out.prstatus
                    .push(decode_prstatus(out.prstatus.len(), note.desc)?);
            }
            (b"QEMU", 0) => {
                check_vcpus(out.qemu.len())?;
                out.qemu.push(decode_qemu(out.qemu.len(), note.desc)?);
            }
            (b"VMCOREINFO", _) if out.vmcoreinfo.is_none() => {
                if note.desc.len() > MAX_VMCOREINFO {
                    return Err(DumpError::VmcoreinfoTooLarge {
                        size: note.desc.len(),
                        max: MAX_VMCOREINFO,
                    });
                }
                let end = note.desc.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                let text = note.desc.get(..end).unwrap_or_default();
                out.vmcoreinfo = Some(String::from_utf8_lossy(text).into_owned());
            }
            _ => out.other += 1,
        }
    }
    Ok(out)
}

fn check_vcpus(have: usize) -> Result<(), DumpError> {
    if have >= MAX_VCPUS {
        return Err(DumpError::TooManyVcpus {
            count: have + 1,
            max: MAX_VCPUS,
        });
    }
    Ok(())
}

/// Decodes one NT_PRSTATUS descriptor; `index` is its position among NT_PRSTATUS notes.
pub fn decode_prstatus(index: usize, desc: &[u8]) -> Result<PrStatus, DumpError> {
    let r = Reader(desc);
    match desc.len() {
        PRSTATUS_X86_64_SIZE => {
            let g = |i: usize| r.u64(PRSTATUS_X86_64_REG_OFFSET + 8 * i);
            let sel = |i: usize| SegmentRegister {
                selector: g(i) as u16,
                ..Default::default()
            };
            let (fs_base, gs_base) = (g(21), g(22));
            Ok(PrStatus {
                layout: PrstatusLayout::X86_64,
                pid: r.u32(32),
                orig_rax: g(15),
                regs: X86Registers {
                    r15: g(0),
                    r14: g(1),
                    r13: g(2),
                    r12: g(3),
                    rbp: g(4),
                    rbx: g(5),
                    r11: g(6),
                    r10: g(7),
                    r9: g(8),
                    r8: g(9),
                    rax: g(10),
                    rcx: g(11),
                    rdx: g(12),
                    rsi: g(13),
                    rdi: g(14),
                    rip: g(16),
                    cs: sel(17),
                    rflags: g(18),
                    rsp: g(19),
                    ss: sel(20),
                    fs_base,
                    gs_base,
                    ds: sel(23),
                    es: sel(24),
                    fs: SegmentRegister {
                        base: fs_base,
                        ..sel(25)
                    },
                    gs: SegmentRegister {
                        base: gs_base,
                        ..sel(26)
                    },
                    ..Default::default()
                },
            })
        }
        PRSTATUS_I386_SIZE => {
            let base = PRSTATUS_I386_REG_OFFSET;
            let d = |off: usize| u64::from(r.u32(base + off));
            let sel = |off: usize| SegmentRegister {
                selector: r.u16(base + off),
                ..Default::default()
            };
            Ok(PrStatus {
                layout: PrstatusLayout::I386,
                pid: r.u32(24),
                orig_rax: d(44),
                regs: X86Registers {
                    rbx: d(0),
                    rcx: d(4),
                    rdx: d(8),
                    rsi: d(12),
                    rdi: d(16),
                    rbp: d(20),
                    rax: d(24),
                    ds: sel(28),
                    es: sel(32),
                    fs: sel(36),
                    gs: sel(40),
                    rip: d(48),
                    cs: sel(52),
                    rflags: d(56),
                    rsp: d(60),
                    ss: sel(64),
                    ..Default::default()
                },
            })
        }
        size => Err(DumpError::PrstatusSize { index, size }),
    }
}

/// Decodes one QEMU CPU note descriptor; `index` is its position among QEMU notes.
pub fn decode_qemu(index: usize, desc: &[u8]) -> Result<QemuCpuState, DumpError> {
    let r = Reader(desc);
    if desc.len() < 8 {
        return Err(DumpError::QemuNoteTooSmall {
            index,
            size: desc.len(),
            needed: QEMU_CPU_STATE_V1_SIZE,
        });
    }
    let version = r.u32(0);
    let size = r.u32(4);
    if version != 1 {
        return Err(DumpError::QemuNoteVersion { index, version });
    }
    let usable = desc.len().min(usize::try_from(size).unwrap_or(usize::MAX));
    if usable < QEMU_CPU_STATE_V1_SIZE {
        return Err(DumpError::QemuNoteTooSmall {
            index,
            size: usable,
            needed: QEMU_CPU_STATE_V1_SIZE,
        });
    }
    let g = |i: usize| r.u64(8 + 8 * i);
    // Segments start after version, size and 18 registers; 24 bytes each.
    let seg = |i: usize| {
        let off = 8 + 18 * 8 + 24 * i;
        SegmentRegister {
            selector: r.u32(off) as u16,
            limit: r.u32(off + 4),
            flags: r.u32(off + 8),
            base: r.u64(off + 16),
        }
    };
    let cr = |i: usize| r.u64(8 + 18 * 8 + 24 * 10 + 8 * i);
    let kernel_gs_base = (usable >= QEMU_CPU_STATE_KGS_SIZE).then(|| r.u64(QEMU_CPU_STATE_V1_SIZE));
    let (cs, ds, es, fs, gs, ss) = (seg(0), seg(1), seg(2), seg(3), seg(4), seg(5));
    let (gdt, idt) = (seg(8), seg(9));
    Ok(QemuCpuState {
        version,
        size,
        regs: X86Registers {
            rax: g(0),
            rbx: g(1),
            rcx: g(2),
            rdx: g(3),
            rsi: g(4),
            rdi: g(5),
            rsp: g(6),
            rbp: g(7),
            r8: g(8),
            r9: g(9),
            r10: g(10),
            r11: g(11),
            r12: g(12),
            r13: g(13),
            r14: g(14),
            r15: g(15),
            rip: g(16),
            rflags: g(17),
            cs,
            ss,
            ds,
            es,
            fs,
            gs,
            fs_base: fs.base,
            gs_base: gs.base,
            kernel_gs_base: kernel_gs_base.unwrap_or(0),
            cr0: cr(0),
            cr2: cr(2),
            cr3: cr(3),
            cr4: cr(4),
            efer: 0,
            gdtr_base: gdt.base,
            idtr_base: idt.base,
            efer_source: None,
        },
        ldt: seg(6),
        tr: seg(7),
        gdt,
        idt,
        kernel_gs_base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{prstatus_x86_64, qemu_note};

    #[test]
    fn prstatus_x86_64_offsets() {
        let desc = prstatus_x86_64(7, |i| 0x1000 + i as u64);
        let p = decode_prstatus(0, &desc).unwrap();
        assert_eq!(p.layout, PrstatusLayout::X86_64);
        assert_eq!(p.pid, 7);
        let r = &p.regs;
        assert_eq!(
            (r.r15, r.r14, r.rbp, r.rbx),
            (0x1000, 0x1001, 0x1004, 0x1005)
        );
        assert_eq!(
            (r.r8, r.rax, r.rdi, p.orig_rax),
            (0x1009, 0x100a, 0x100e, 0x100f)
        );
        assert_eq!(
            (r.rip, r.cs.selector, r.rflags, r.rsp),
            (0x1010, 0x1011, 0x1012, 0x1013)
        );
        assert_eq!(
            (r.ss.selector, r.fs_base, r.gs_base),
            (0x1014, 0x1015, 0x1016)
        );
        assert_eq!((r.ds.selector, r.es.selector), (0x1017, 0x1018));
        assert_eq!(
            (r.fs.selector, r.gs.selector, r.gs.base),
            (0x1019, 0x101a, 0x1016)
        );
        assert_eq!(r.cr3, 0);
    }

    #[test]
    fn prstatus_i386_offsets() {
        let mut desc = vec![0u8; PRSTATUS_I386_SIZE];
        desc[24..28].copy_from_slice(&3u32.to_le_bytes());
        let put = |d: &mut Vec<u8>, off: usize, v: u32| {
            d[72 + off..76 + off].copy_from_slice(&v.to_le_bytes())
        };
        put(&mut desc, 0, 0xb0); // ebx
        put(&mut desc, 24, 0xa0); // eax
        put(&mut desc, 28, 0x7b); // ds
        put(&mut desc, 48, 0xc010_0000); // eip
        put(&mut desc, 52, 0x60); // cs
        put(&mut desc, 56, 0x246); // eflags
        put(&mut desc, 60, 0xc000_f000); // esp
        put(&mut desc, 64, 0x68); // ss
        let p = decode_prstatus(0, &desc).unwrap();
        assert_eq!(p.layout, PrstatusLayout::I386);
        assert_eq!(p.pid, 3);
        let r = &p.regs;
        assert_eq!((r.rbx, r.rax, r.ds.selector), (0xb0, 0xa0, 0x7b));
        assert_eq!((r.rip, r.cs.selector, r.rflags), (0xc010_0000, 0x60, 0x246));
        assert_eq!((r.rsp, r.ss.selector), (0xc000_f000, 0x68));
    }

    #[test]
    fn prstatus_unknown_size() {
        assert!(matches!(
            decode_prstatus(4, &[0; 200]),
            Err(DumpError::PrstatusSize {
                index: 4,
                size: 200
            })
        ));
    }

    #[test]
    fn qemu_note_offsets() {
        let desc = qemu_note(&crate::test_util::QemuFields {
            cr: [0x8005_0033, 0, 0x1234, 0x1fec_8000, 0x751ef0],
            cs_flags: 0x00af_9b00,
            kernel_gs_base: Some(0xffff_8880_0000_0000),
        });
        let q = decode_qemu(0, &desc).unwrap();
        assert_eq!((q.version, q.size), (1, 440));
        let r = &q.regs;
        // The helper numbers registers 0x100 + i in note order.
        assert_eq!((r.rax, r.rbx, r.rsp, r.rbp), (0x100, 0x101, 0x106, 0x107));
        assert_eq!((r.r8, r.r15, r.rip, r.rflags), (0x108, 0x10f, 0x110, 0x111));
        assert_eq!(
            (r.cr0, r.cr2, r.cr3, r.cr4),
            (0x8005_0033, 0x1234, 0x1fec_8000, 0x751ef0)
        );
        assert!(r.cs.long_mode());
        assert_eq!(r.cs.selector, 0x10);
        assert_eq!(r.gs.base, 0x4000 + 4);
        assert_eq!(r.gs_base, 0x4000 + 4);
        assert_eq!(q.tr.base, 0x4000 + 7);
        assert_eq!(r.gdtr_base, 0x4000 + 8);
        assert_eq!(r.idtr_base, 0x4000 + 9);
        assert_eq!(q.kernel_gs_base, Some(0xffff_8880_0000_0000));

        // Without kernel_gs_base (an older QEMU): size 432.
        let mut old = desc.clone();
        old.truncate(QEMU_CPU_STATE_V1_SIZE);
        old[4..8].copy_from_slice(&432u32.to_le_bytes());
        let q = decode_qemu(0, &old).unwrap();
        assert_eq!(q.kernel_gs_base, None);
        assert_eq!(q.regs.cr3, 0x1fec_8000);
        // size says 432 although the descriptor is longer: the extra bytes are not trusted.
        let mut short = desc.clone();
        short[4..8].copy_from_slice(&432u32.to_le_bytes());
        assert_eq!(decode_qemu(0, &short).unwrap().kernel_gs_base, None);
    }

    #[test]
    fn qemu_note_malformed() {
        let desc = qemu_note(&Default::default());
        let mut v2 = desc.clone();
        v2[0] = 2;
        assert!(matches!(
            decode_qemu(1, &v2),
            Err(DumpError::QemuNoteVersion {
                index: 1,
                version: 2
            })
        ));
        assert!(matches!(
            decode_qemu(0, &desc[..100]),
            Err(DumpError::QemuNoteTooSmall { size: 100, .. })
        ));
        assert!(matches!(
            decode_qemu(0, &desc[..4]),
            Err(DumpError::QemuNoteTooSmall { size: 4, .. })
        ));
        let mut small = desc.clone();
        small[4..8].copy_from_slice(&16u32.to_le_bytes());
        assert!(matches!(
            decode_qemu(0, &small),
            Err(DumpError::QemuNoteTooSmall { size: 16, .. })
        ));
    }

    #[test]
    fn vmcoreinfo_text() {
        let notes = [Note {
            segment: 0,
            offset: 0,
            name: b"VMCOREINFO",
            n_type: 0,
            desc: b"OSRELEASE=6.1.0\nPAGESIZE=4096\n\0\0\0",
        }];
        let d = decode(&notes).unwrap();
        assert_eq!(
            d.vmcoreinfo.as_deref(),
            Some("OSRELEASE=6.1.0\nPAGESIZE=4096\n")
        );
    }
}
