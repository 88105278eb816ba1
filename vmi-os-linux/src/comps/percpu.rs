//! Per-CPU data (x86-64): where a CPU's own variables are, and so which task a vCPU runs.
//!
//! x86-64 links the per-CPU section at address 0, so kallsyms lists per-CPU variables as
//! small offsets (`current_task` is `0x1fb80` on Debian's 6.1) and CPU `n`'s copy of a
//! variable is at `per_cpu_offset(n) + offset`. In kernel mode the GS base *is*
//! `per_cpu_offset(n)` (that is how `this_cpu_read` works); in user mode `swapgs` has parked it
//! in `MSR_KERNEL_GS_BASE`, and GS holds whatever the process set. So the base comes from
//! [`X86Registers::gs_base`] at CPL 0, else from [`X86Registers::kernel_gs_base`], and it is
//! checked where the kernel allows: every CPU's `this_cpu_off` holds its own base.
//! `__per_cpu_offset[vcpu]` is the last resort (a dump without `kernel_gs_base`), assuming
//! vCPU `n` is CPU `n`, as it is under QEMU.
//!
//! The current task pointer is the per-CPU `current_task` up to 6.1 (and again from 6.15),
//! `pcpu_hot.current_task` from 6.2 (BTF gives the field's offset in `struct pcpu_hot`).

use vmi_core::{Va, VirtualMemory, X86Registers};

use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;
use crate::kernel::Kernel;

/// Where the per-CPU base of a vCPU was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerCpuBaseSource {
    /// The GS base (the vCPU was in kernel mode).
    GsBase,
    /// `MSR_KERNEL_GS_BASE` (the vCPU was in user mode, or before `swapgs`).
    KernelGsBase,
    /// `__per_cpu_offset[vcpu]`: neither register held a per-CPU base.
    PerCpuOffsetTable,
}

/// The task a vCPU runs, and how it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentTask {
    /// Its `task_struct`.
    pub task: Va,
    /// The vCPU's per-CPU base.
    pub per_cpu_base: Va,
    /// Where that base came from.
    pub base_source: PerCpuBaseSource,
    /// Whether `this_cpu_off` at that base confirmed it (false when the profile lacks
    /// `this_cpu_off`).
    pub verified: bool,
}

/// What finding a vCPU's current task needs, resolved once from the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerCpuCurrent {
    /// Per-CPU offset of the current-task pointer.
    pub current_task: u64,
    /// Which variable that is (`pcpu_hot.current_task` or `current_task`).
    pub source: &'static str,
    /// Per-CPU offset of `this_cpu_off`, if the profile has it.
    pub this_cpu_off: Option<u64>,
    /// Address of `__per_cpu_offset[]`, if the profile has it.
    pub per_cpu_offset_table: Option<Va>,
}

/// Most CPUs `__per_cpu_offset[]` is indexed for (`NR_CPUS` is 8192 at most on x86-64).
const MAX_CPUS: u64 = 8192;

impl PerCpuCurrent {
    /// Resolves the per-CPU location of the current task from `kernel`'s profile.
    pub fn resolve(kernel: &Kernel) -> Result<Self, LinuxError> {
        let hot = kernel.symbol("pcpu_hot").ok().and_then(|hot| {
            let field = kernel
                .profile()
                .field_offset("pcpu_hot", "current_task")
                .ok()?;
            hot.raw().checked_add(field)
        });
        let (current_task, source) = match hot {
            Some(offset) => (offset, "pcpu_hot.current_task"),
            None => (kernel.symbol("current_task")?.raw(), "current_task"),
        };
        Ok(Self {
            current_task,
            source,
            this_cpu_off: kernel.symbol("this_cpu_off").ok().map(Va::raw),
            per_cpu_offset_table: kernel.symbol("__per_cpu_offset").ok(),
        })
    }

    /// The per-CPU base of vCPU `vcpu` with registers `regs` (see the module docs), read
    /// through `mem` (kernel memory).
    pub fn per_cpu_base(
        &self,
        mem: &VirtualMemory<'_>,
        vcpu: usize,
        regs: &X86Registers,
    ) -> Result<(Va, PerCpuBaseSource, bool), LinuxError> {
        let mode = mem.space().mode;
        let user_mode = regs.cs.selector & 3 == 3;
        let mut candidates = Vec::with_capacity(3);
        if !user_mode {
            candidates.push((regs.gs_base, PerCpuBaseSource::GsBase));
        }
        candidates.push((regs.kernel_gs_base, PerCpuBaseSource::KernelGsBase));
        if let Some(table) = self.per_cpu_offset_table {
            let slot = u64::try_from(vcpu)
                .ok()
                .filter(|&v| v < MAX_CPUS)
                .and_then(|v| table.checked_add(v.checked_mul(8)?));
            if let Some(value) = slot.and_then(|s| mem.read_u64(s).ok()) {
                candidates.push((value, PerCpuBaseSource::PerCpuOffsetTable));
            }
        }
        let mut unverified = None;
        for (raw, source) in candidates {
            let base = Va::new(raw);
            if !is_kernel_pointer(mode, base) {
                continue;
            }
            match self.this_cpu_off {
                // The kernel's own record of each CPU's base: the one check that tells a
                // per-CPU base from any other kernel address.
                Some(off) => {
                    let own = base.checked_add(off).and_then(|a| mem.read_u64(a).ok());
                    if own == Some(raw) {
                        return Ok((base, source, true));
                    }
                }
                None => {
                    unverified.get_or_insert((base, source, false));
                }
            }
        }
        unverified.ok_or_else(|| LinuxError::Corrupt {
            what: "vCPU registers",
            at: Va::new(regs.gs_base),
            reason: format!(
                "vCPU {vcpu}: neither the GS base {:#x} nor MSR_KERNEL_GS_BASE {:#x} (nor \
                 __per_cpu_offset[{vcpu}]) is a per-CPU base{}",
                regs.gs_base,
                regs.kernel_gs_base,
                if self.this_cpu_off.is_some() {
                    " whose this_cpu_off names itself"
                } else {
                    ""
                }
            ),
        })
    }

    /// The task vCPU `vcpu` (registers `regs`) runs: `current` as the kernel would read it on
    /// that CPU. At a kernel function's entry this is the task that called it.
    ///
    /// ```no_run
    /// # fn demo(session: &vmi_core::Session, kernel: &vmi_os_linux::Kernel)
    /// #     -> Result<(), Box<dyn std::error::Error>> {
    /// use vmi_os_linux::comps::percpu::PerCpuCurrent;
    /// let current = PerCpuCurrent::resolve(kernel)?;
    /// let regs = session.registers(0)?;
    /// let task = current.current_task(&kernel.memory(session), 0, &regs)?.task;
    /// # Ok(()) }
    /// ```
    pub fn current_task(
        &self,
        mem: &VirtualMemory<'_>,
        vcpu: usize,
        regs: &X86Registers,
    ) -> Result<CurrentTask, LinuxError> {
        let (base, base_source, verified) = self.per_cpu_base(mem, vcpu, regs)?;
        let slot = base
            .checked_add(self.current_task)
            .ok_or_else(|| LinuxError::Corrupt {
                what: "per-CPU area",
                at: base,
                reason: format!("{} lies past the end of the address space", self.source),
            })?;
        let task = mem.read_va(slot)?;
        if !is_kernel_pointer(mem.space().mode, task) {
            return Err(LinuxError::Corrupt {
                what: "per-CPU area",
                at: base,
                reason: format!(
                    "{} of vCPU {vcpu} is {task}, not a kernel address",
                    self.source
                ),
            });
        }
        Ok(CurrentTask {
            task,
            per_cpu_base: base,
            base_source,
            verified,
        })
    }
}
