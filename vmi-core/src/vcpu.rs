//! vCPU state and control capabilities.

use serde::Serialize;

use crate::error::{ControlError, VcpuError};

/// How a register value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegisterSource {
    /// Read from the target as the CPU holds it.
    Exact,
    /// Not provided by the target; reconstructed from other state (documented where it is done,
    /// e.g. EFER.LME/LMA from the CS descriptor's L bit in QEMU ELF dumps).
    Inferred,
}

/// The x86 register state vmi needs for paging and analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[allow(missing_docs)] // register names are their own documentation
pub struct X86Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cs: SegmentRegister,
    pub ss: SegmentRegister,
    pub ds: SegmentRegister,
    pub es: SegmentRegister,
    pub fs: SegmentRegister,
    pub gs: SegmentRegister,
    pub fs_base: u64,
    pub gs_base: u64,
    pub kernel_gs_base: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub gdtr_base: u64,
    pub idtr_base: u64,
    /// Whether `efer` was read or inferred.
    pub efer_source: Option<RegisterSource>,
}

/// A segment register: selector and the hidden descriptor cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SegmentRegister {
    /// The visible selector.
    pub selector: u16,
    /// Cached base.
    pub base: u64,
    /// Cached limit.
    pub limit: u32,
    /// Cached attributes in the VMX/QEMU layout: bits 8..16 of the descriptor's second dword
    /// (type, S, DPL, P) and 20..24 (AVL, L, D/B, G), shifted as QEMU stores them (`flags`).
    pub flags: u32,
}

impl SegmentRegister {
    /// The descriptor's L bit (64-bit code segment), in QEMU's `flags` layout (bit 21).
    pub fn long_mode(&self) -> bool {
        self.flags & (1 << 21) != 0
    }
}

/// Reads vCPU registers.
pub trait VcpuRegisters: Send + Sync {
    /// Number of vCPUs.
    fn vcpu_count(&self) -> usize;

    /// The registers of vCPU `index`.
    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError>;
}

/// Pauses and resumes a live guest.
pub trait VmControl: Send + Sync {
    /// Stops all vCPUs.
    fn pause(&self) -> Result<(), ControlError>;
    /// Resumes all vCPUs. Callers must drop caches (see [`crate::PhysicalMemory::invalidate`]).
    fn resume(&self) -> Result<(), ControlError>;
}

/// A register [`VcpuRegistersWrite`] can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
#[allow(missing_docs)] // register names are their own documentation
pub enum Register {
    Rax,
    Rbx,
    Rcx,
    Rdx,
    Rsi,
    Rdi,
    Rbp,
    Rsp,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    Rip,
    Rflags,
}

impl Register {
    /// Every register, in the order of the x86-64 gdb register numbers (0..=17).
    pub const ALL: [Register; 18] = [
        Register::Rax,
        Register::Rbx,
        Register::Rcx,
        Register::Rdx,
        Register::Rsi,
        Register::Rdi,
        Register::Rbp,
        Register::Rsp,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
        Register::Rip,
        Register::Rflags,
    ];

    /// This register's value in `regs`.
    pub fn get(self, regs: &X86Registers) -> u64 {
        match self {
            Register::Rax => regs.rax,
            Register::Rbx => regs.rbx,
            Register::Rcx => regs.rcx,
            Register::Rdx => regs.rdx,
            Register::Rsi => regs.rsi,
            Register::Rdi => regs.rdi,
            Register::Rbp => regs.rbp,
            Register::Rsp => regs.rsp,
            Register::R8 => regs.r8,
            Register::R9 => regs.r9,
            Register::R10 => regs.r10,
            Register::R11 => regs.r11,
            Register::R12 => regs.r12,
            Register::R13 => regs.r13,
            Register::R14 => regs.r14,
            Register::R15 => regs.r15,
            Register::Rip => regs.rip,
            Register::Rflags => regs.rflags,
        }
    }
}

/// Writes vCPU registers of a stopped guest (only when the target was opened for writing).
pub trait VcpuRegistersWrite: Send + Sync {
    /// Sets `register` of vCPU `index` to `value`; the guest sees it when it runs again.
    fn set_register(&self, index: usize, register: Register, value: u64) -> Result<(), VcpuError>;
}
