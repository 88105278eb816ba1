//! vCPU registers of an ELF core: pairing notes per vCPU and inferring EFER.
//!
//! # Pairing
//!
//! QEMU writes one NT_PRSTATUS per vCPU, then one QEMU CPU note per vCPU, in vCPU order: the
//! i-th of each belong together. When both kinds are present their counts must agree
//! ([`DumpError::NoteCountMismatch`]). The QEMU note is the richer one (control registers,
//! segment descriptor caches, GDTR/IDTR): when present it supplies every register it has; an
//! NT_PRSTATUS alone (Linux `/proc/vmcore`, other producers) supplies general registers,
//! selectors and the fs/gs bases, and the control registers stay 0 (the paging mode then reads
//! as "disabled", and `efer_source` is `None`).
//!
//! # EFER
//!
//! No note holds EFER, yet the paging mode depends on EFER.LME. For vCPUs with a QEMU note it
//! is inferred, and `efer_source` is [`RegisterSource::Inferred`]:
//!
//! - EFER = LME | LMA (`0x500`) if CR0.PG and CR4.PAE are set and either
//!   - the vCPU's CS descriptor has the L bit (QEMU `flags` bit 21, `DESC_L_SHIFT`): the vCPU
//!     runs 64-bit code, which needs long mode; or
//!   - the ELF header says `EM_X86_64`: QEMU chooses `EM_X86_64` (and the x86-64 NT_PRSTATUS
//!     layout) only when vCPU 0 has EFER.LMA, i.e. the guest OS is 64-bit. This covers a vCPU
//!     that was running a 32-bit user process (compatibility mode, CS.L = 0) under a 64-bit
//!     kernel, which still walks 4- or 5-level tables.
//! - otherwise EFER = 0 (no paging, legacy 32-bit paging, or PAE paging of a 32-bit OS).
//!
//! Limits: NXE and SCE are not inferred (a Linux guest really has `0xd01`; vmi's page walker
//! does not depend on NXE). A vCPU caught between setting EFER.LME and CR0.PG while booting is
//! reported with EFER 0. A 64-bit dump (`EM_X86_64`) in which some vCPU runs PAE paging
//! without long mode would be misread as long mode; no 64-bit OS does that after boot.

use vmi_core::vcpu::RegisterSource;
use vmi_core::{VcpuError, VcpuRegisters, X86Registers};

use crate::error::DumpError;
use crate::notes::CoreNotes;

/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// EFER.LME.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;

/// The vCPU registers of a dump.
#[derive(Debug, Clone, Default)]
pub struct DumpRegisters {
    vcpus: Vec<X86Registers>,
}

impl DumpRegisters {
    /// Pairs the decoded notes per vCPU and infers EFER where control registers are known.
    /// `long_mode_dump` is whether the ELF header says `EM_X86_64` (see the module docs).
    /// Returns `Ok(None)` if there are no CPU notes at all.
    pub fn from_notes(notes: &CoreNotes, long_mode_dump: bool) -> Result<Option<Self>, DumpError> {
        let (np, nq) = (notes.prstatus.len(), notes.qemu.len());
        if np != 0 && nq != 0 && np != nq {
            return Err(DumpError::NoteCountMismatch {
                prstatus: np,
                qemu: nq,
            });
        }
        let vcpus: Vec<X86Registers> = if nq > 0 {
            notes
                .qemu
                .iter()
                .map(|q| {
                    let mut regs = q.regs.clone();
                    infer_efer(&mut regs, long_mode_dump);
                    regs
                })
                .collect()
        } else {
            notes.prstatus.iter().map(|p| p.regs.clone()).collect()
        };
        Ok((!vcpus.is_empty()).then_some(Self { vcpus }))
    }

    /// The registers of every vCPU, in order.
    pub fn vcpus(&self) -> &[X86Registers] {
        &self.vcpus
    }
}

/// Sets `efer` and `efer_source` of registers whose control registers came from the dump,
/// following the rule in the module docs.
pub fn infer_efer(regs: &mut X86Registers, long_mode_dump: bool) {
    let paging_pae = regs.cr0 & CR0_PG != 0 && regs.cr4 & CR4_PAE != 0;
    regs.efer = if paging_pae && (regs.cs.long_mode() || long_mode_dump) {
        EFER_LME | EFER_LMA
    } else {
        0
    };
    regs.efer_source = Some(RegisterSource::Inferred);
}

impl VcpuRegisters for DumpRegisters {
    fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError> {
        self.vcpus.get(index).cloned().ok_or(VcpuError::NoSuchVcpu {
            index,
            count: self.vcpus.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes::{decode_prstatus, decode_qemu};
    use crate::test_util::{prstatus_x86_64, qemu_note, QemuFields};
    use vmi_core::{PagingMode, SegmentRegister};

    fn regs(cr0: u64, cr4: u64, cs_flags: u32) -> X86Registers {
        X86Registers {
            cr0,
            cr4,
            cs: SegmentRegister {
                flags: cs_flags,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn efer_rule() {
        const L: u32 = 0x00af_9b00; // 64-bit code
        const COMPAT: u32 = 0x00cf_fb00; // 32-bit user code
        let pg = CR0_PG | 1;
        let cases = [
            (regs(pg, CR4_PAE, L), false, EFER_LME | EFER_LMA),
            (regs(pg, CR4_PAE, COMPAT), true, EFER_LME | EFER_LMA),
            (regs(pg, CR4_PAE, COMPAT), false, 0),
            (regs(pg, 0, COMPAT), false, 0),
            (regs(1, CR4_PAE, L), true, 0),
            (regs(0, 0, 0), true, 0),
        ];
        for (i, (mut r, hint, efer)) in cases.into_iter().enumerate() {
            infer_efer(&mut r, hint);
            assert_eq!(r.efer, efer, "case {i}");
            assert_eq!(r.efer_source, Some(RegisterSource::Inferred));
        }
        let mut r = regs(pg, CR4_PAE | (1 << 12), L);
        infer_efer(&mut r, false);
        assert_eq!(PagingMode::from_registers(&r).mode, PagingMode::Ia32e5);
    }

    #[test]
    fn pairing() {
        let q = decode_qemu(
            0,
            &qemu_note(&QemuFields {
                cr: [CR0_PG | 1, 0, 0, 0x1000, CR4_PAE],
                cs_flags: 0x00af_9b00,
                ..Default::default()
            }),
        )
        .unwrap();
        let p = decode_prstatus(0, &prstatus_x86_64(1, |i| i as u64)).unwrap();
        let notes = CoreNotes {
            prstatus: vec![p.clone(), p.clone()],
            qemu: vec![q.clone(), q.clone()],
            ..Default::default()
        };
        let r = DumpRegisters::from_notes(&notes, true).unwrap().unwrap();
        assert_eq!(r.vcpu_count(), 2);
        let v = r.registers(1).unwrap();
        assert_eq!((v.cr3, v.efer), (0x1000, EFER_LME | EFER_LMA));
        assert!(matches!(
            r.registers(2),
            Err(VcpuError::NoSuchVcpu { index: 2, count: 2 })
        ));

        let notes = CoreNotes {
            prstatus: vec![p.clone(); 3],
            qemu: vec![q.clone(); 2],
            ..Default::default()
        };
        assert!(matches!(
            DumpRegisters::from_notes(&notes, true),
            Err(DumpError::NoteCountMismatch {
                prstatus: 3,
                qemu: 2
            })
        ));

        let notes = CoreNotes {
            prstatus: vec![p.clone()],
            ..Default::default()
        };
        let r = DumpRegisters::from_notes(&notes, true).unwrap().unwrap();
        let v = r.registers(0).unwrap();
        assert_eq!((v.rip, v.efer, v.efer_source), (16, 0, None));

        assert!(DumpRegisters::from_notes(&CoreNotes::default(), true)
            .unwrap()
            .is_none());
    }
}
