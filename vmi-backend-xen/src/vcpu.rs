//! vCPU registers: HVM guests from their `hvm_hw_cpu` save records, PV guests from
//! `xc_vcpu_getcontext`.

use std::io;
use std::mem::offset_of;
use std::sync::Arc;

use vmi_core::{RegisterSource, SegmentRegister, VcpuError, VcpuRegisters, X86Registers};
use xen_sys::{cpu_user_regs, vcpu_guest_context};

use crate::domain::GuestKind;
use crate::handle::Xen;
use crate::sys::hvm_hw_cpu;

/// EFER.LME | EFER.LMA: what a 64-bit PV guest runs with (Xen does not report its EFER).
const EFER_LONG_MODE: u64 = (1 << 8) | (1 << 10);

/// The vCPUs of a domain.
#[derive(Debug)]
pub struct XenVcpus {
    xen: Arc<Xen>,
    domid: u32,
    kind: GuestKind,
    count: usize,
}

impl XenVcpus {
    /// The `count` vCPUs of `domid`.
    pub fn new(xen: Arc<Xen>, domid: u32, kind: GuestKind, count: usize) -> XenVcpus {
        XenVcpus {
            xen,
            domid,
            kind,
            count,
        }
    }
}

impl VcpuRegisters for XenVcpus {
    fn vcpu_count(&self) -> usize {
        self.count
    }

    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError> {
        if index >= self.count {
            return Err(VcpuError::NoSuchVcpu {
                index,
                count: self.count,
            });
        }
        let io_err = |call: &str, e: io::Error| VcpuError::Io {
            index,
            source: io::Error::new(e.kind(), format!("{call} (domain {}): {e}", self.domid)),
        };
        match self.kind {
            GuestKind::Hvm => {
                let vcpu = u16::try_from(index).map_err(|_| VcpuError::NoSuchVcpu {
                    index,
                    count: self.count,
                })?;
                let cpu = self
                    .xen
                    .hvm_cpu(self.domid, vcpu)
                    .map_err(|e| io_err("xc_domain_hvm_getcontext_partial", e))?;
                Ok(from_hvm(&cpu))
            }
            GuestKind::Pv => {
                let vcpu = u32::try_from(index).map_err(|_| VcpuError::NoSuchVcpu {
                    index,
                    count: self.count,
                })?;
                let ctx = self
                    .xen
                    .pv_context(self.domid, vcpu)
                    .map_err(|e| io_err("xc_vcpu_getcontext", e))?;
                Ok(from_pv(&ctx[..]))
            }
        }
    }
}

/// Xen's segment attributes (`arbytes`: type, S, DPL, P in bits 0..8; AVL, L, D/B, G in
/// 8..12) in vmi's (QEMU's) layout (bits 8..16 and 20..24).
pub fn arbytes_to_flags(ar: u32) -> u32 {
    ((ar & 0xff) << 8) | ((ar & 0xf00) << 12)
}

/// Registers from an HVM CPU save record.
pub fn from_hvm(c: &hvm_hw_cpu) -> X86Registers {
    let seg = |sel: u32, base: u64, limit: u32, ar: u32| SegmentRegister {
        selector: (sel & 0xffff) as u16,
        base,
        limit,
        flags: arbytes_to_flags(ar),
    };
    X86Registers {
        rax: c.rax,
        rbx: c.rbx,
        rcx: c.rcx,
        rdx: c.rdx,
        rsi: c.rsi,
        rdi: c.rdi,
        rbp: c.rbp,
        rsp: c.rsp,
        r8: c.r8,
        r9: c.r9,
        r10: c.r10,
        r11: c.r11,
        r12: c.r12,
        r13: c.r13,
        r14: c.r14,
        r15: c.r15,
        rip: c.rip,
        rflags: c.rflags,
        cs: seg(c.cs_sel, c.cs_base, c.cs_limit, c.cs_arbytes),
        ss: seg(c.ss_sel, c.ss_base, c.ss_limit, c.ss_arbytes),
        ds: seg(c.ds_sel, c.ds_base, c.ds_limit, c.ds_arbytes),
        es: seg(c.es_sel, c.es_base, c.es_limit, c.es_arbytes),
        fs: seg(c.fs_sel, c.fs_base, c.fs_limit, c.fs_arbytes),
        gs: seg(c.gs_sel, c.gs_base, c.gs_limit, c.gs_arbytes),
        fs_base: c.fs_base,
        gs_base: c.gs_base,
        kernel_gs_base: c.shadow_gs,
        cr0: c.cr0,
        cr2: c.cr2,
        cr3: c.cr3,
        cr4: c.cr4,
        efer: c.msr_efer,
        gdtr_base: c.gdtr_base,
        idtr_base: c.idtr_base,
        efer_source: Some(RegisterSource::Exact),
    }
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    bytes
        .get(offset..offset + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    bytes
        .get(offset..offset + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

/// Registers from the bytes of a 64-bit PV `vcpu_guest_context` (layout from `xen-sys`).
///
/// CR3 is a machine address (`xen_pfn_to_cr3` of a machine frame), as are the guest's page
/// table entries; EFER is not reported and is inferred as long mode.
pub fn from_pv(ctx: &[u8]) -> X86Registers {
    let u = offset_of!(vcpu_guest_context, user_regs);
    let r = |off: usize| u64_at(ctx, u + off);
    let ctrl = |n: usize| u64_at(ctx, offset_of!(vcpu_guest_context, ctrlreg) + 8 * n);
    let sel = |off: usize| SegmentRegister {
        selector: u16_at(ctx, u + off),
        ..SegmentRegister::default()
    };
    let mut cs = sel(offset_of!(cpu_user_regs, cs));
    cs.flags = 1 << 21; // a 64-bit PV kernel runs in a 64-bit code segment
    let fs_base = u64_at(ctx, offset_of!(vcpu_guest_context, fs_base));
    let gs_base = u64_at(ctx, offset_of!(vcpu_guest_context, gs_base_kernel));
    X86Registers {
        rax: r(offset_of!(cpu_user_regs, __bindgen_anon_3)),
        rbx: r(offset_of!(cpu_user_regs, __bindgen_anon_2)),
        rcx: r(offset_of!(cpu_user_regs, __bindgen_anon_4)),
        rdx: r(offset_of!(cpu_user_regs, __bindgen_anon_5)),
        rsi: r(offset_of!(cpu_user_regs, __bindgen_anon_6)),
        rdi: r(offset_of!(cpu_user_regs, __bindgen_anon_7)),
        rbp: r(offset_of!(cpu_user_regs, __bindgen_anon_1)),
        rsp: r(offset_of!(cpu_user_regs, __bindgen_anon_10)),
        r8: r(offset_of!(cpu_user_regs, r8)),
        r9: r(offset_of!(cpu_user_regs, r9)),
        r10: r(offset_of!(cpu_user_regs, r10)),
        r11: r(offset_of!(cpu_user_regs, r11)),
        r12: r(offset_of!(cpu_user_regs, r12)),
        r13: r(offset_of!(cpu_user_regs, r13)),
        r14: r(offset_of!(cpu_user_regs, r14)),
        r15: r(offset_of!(cpu_user_regs, r15)),
        rip: r(offset_of!(cpu_user_regs, __bindgen_anon_8)),
        rflags: r(offset_of!(cpu_user_regs, __bindgen_anon_9)),
        cs,
        ss: sel(offset_of!(cpu_user_regs, ss)),
        ds: sel(offset_of!(cpu_user_regs, ds)),
        es: sel(offset_of!(cpu_user_regs, es)),
        fs: SegmentRegister {
            base: fs_base,
            ..sel(offset_of!(cpu_user_regs, fs))
        },
        gs: SegmentRegister {
            base: gs_base,
            ..sel(offset_of!(cpu_user_regs, gs))
        },
        fs_base,
        gs_base,
        kernel_gs_base: u64_at(ctx, offset_of!(vcpu_guest_context, gs_base_user)),
        cr0: ctrl(0),
        cr2: ctrl(2),
        cr3: ctrl(3),
        cr4: ctrl(4),
        efer: EFER_LONG_MODE,
        gdtr_base: 0,
        idtr_base: 0,
        efer_source: Some(RegisterSource::Inferred),
    }
}

// The PV layout vmi reads, pinned (x86_64 `struct cpu_user_regs`, 200 bytes).
const _: () = assert!(std::mem::size_of::<cpu_user_regs>() == 200);
const _: () = assert!(offset_of!(cpu_user_regs, __bindgen_anon_3) == 80); // rax
const _: () = assert!(offset_of!(cpu_user_regs, __bindgen_anon_8) == 128); // rip
const _: () = assert!(offset_of!(cpu_user_regs, __bindgen_anon_10) == 152); // rsp
const _: () = assert!(offset_of!(cpu_user_regs, gs) == 192);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_attributes() {
        // A 64-bit kernel code segment: type 0xb, S, P, L, G -> arbytes 0xa9b.
        let flags = arbytes_to_flags(0xa9b);
        assert_eq!(flags, 0x00a0_9b00);
        assert!(SegmentRegister {
            flags,
            ..Default::default()
        }
        .long_mode());
    }

    #[test]
    fn hvm_record_to_registers() {
        let mut c = hvm_hw_cpu::zeroed();
        c.cr3 = 0x0123_4000;
        c.cr0 = 0x8005_0033;
        c.msr_efer = 0xd01;
        c.rip = 0xffff_ffff_8100_0000;
        c.cs_sel = 0x10;
        c.cs_arbytes = 0xa9b;
        let r = from_hvm(&c);
        assert_eq!(
            (r.cr3, r.cr0, r.efer, r.rip),
            (0x0123_4000, 0x8005_0033, 0xd01, c.rip)
        );
        assert_eq!(r.cs.selector, 0x10);
        assert!(r.cs.long_mode());
        assert_eq!(r.efer_source, Some(RegisterSource::Exact));
    }

    #[test]
    fn pv_context_to_registers() {
        let mut ctx = vec![0u8; 5168];
        let u = offset_of!(vcpu_guest_context, user_regs);
        ctx[u + 128..u + 136].copy_from_slice(&0xffff_8000_0000_1000u64.to_le_bytes());
        let cr3 = offset_of!(vcpu_guest_context, ctrlreg) + 24;
        ctx[cr3..cr3 + 8].copy_from_slice(&0x0004_2000u64.to_le_bytes());
        let r = from_pv(&ctx);
        assert_eq!(r.rip, 0xffff_8000_0000_1000);
        assert_eq!(r.cr3, 0x0004_2000);
        assert_eq!(r.efer, EFER_LONG_MODE);
        assert!(r.cs.long_mode());
    }
}
