//! `struct pt_regs` (x86-64): the user registers the kernel saved at a system call's entry.
//!
//! With syscall wrappers (`CONFIG_ARCH_HAS_SYSCALL_WRAPPER`, every x86-64 kernel since 4.17)
//! `__x64_sys_NAME(const struct pt_regs *regs)` takes only this frame; the system call's own
//! arguments are `regs->di, si, dx, r10, r8, r9` (the syscall ABI: `r10` replaces `rcx`,
//! which `syscall` overwrites), its number is `orig_ax`, and its result goes to `ax`.
//! `do_syscall_64(struct pt_regs *regs, int nr)` takes the same frame.
//!
//! Offsets and widths come from BTF: the layout has not changed in 6.x, but 6.9 put `cs` and
//! `ss` into unions with FRED fields, and nothing here depends on where those went.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{struct_size, Scalar, StructBuf};
use crate::error::LinuxError;

/// Where the `pt_regs` fields the tracer reads are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtRegsLayout {
    /// `sizeof(struct pt_regs)` (168 on x86-64), read in one piece.
    pub size: usize,
    /// The six argument registers, in the syscall ABI's order: `di, si, dx, r10, r8, r9`.
    pub args: [Scalar; 6],
    /// `ax`: the result, once the system call returned.
    pub ax: Scalar,
    /// `orig_ax`: the system call number the user asked for.
    pub orig_ax: Scalar,
}

/// The register names of the syscall ABI's arguments, as `struct pt_regs` names them.
pub const SYSCALL_ARG_REGISTERS: [&str; 6] = ["di", "si", "dx", "r10", "r8", "r9"];

impl PtRegsLayout {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        let f = |name: &str| Scalar::resolve(profile, "pt_regs", name);
        let mut args = [Scalar {
            offset: 0,
            size: 8,
            bits: None,
        }; 6];
        for (slot, name) in args.iter_mut().zip(SYSCALL_ARG_REGISTERS) {
            *slot = f(name)?;
        }
        Ok(Self {
            size: struct_size(profile, "pt_regs")?,
            args,
            ax: f("ax")?,
            orig_ax: f("orig_ax")?,
        })
    }
}

/// A copy of one `pt_regs` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtRegs {
    /// Where the frame was read.
    pub at: Va,
    /// `di, si, dx, r10, r8, r9`: the system call's six arguments.
    pub args: [u64; 6],
    /// `ax`.
    pub ax: u64,
    /// `orig_ax`.
    pub orig_ax: u64,
}

impl PtRegs {
    /// Reads the frame at `at` (a kernel address) through `mem`.
    pub fn read(
        mem: &VirtualMemory<'_>,
        layout: &PtRegsLayout,
        at: Va,
    ) -> Result<PtRegs, LinuxError> {
        let buf = StructBuf::read(mem, "pt_regs", at, layout.size)?;
        let mut args = [0u64; 6];
        for (value, field) in args.iter_mut().zip(layout.args) {
            *value = buf.get(field)?;
        }
        Ok(PtRegs {
            at,
            args,
            ax: buf.get(layout.ax)?,
            orig_ax: buf.get(layout.orig_ax)?,
        })
    }

    /// The result the system call left in `ax`, as the signed value the user sees (a negative
    /// errno on failure).
    pub fn result(&self) -> i64 {
        self.ax as i64
    }
}
