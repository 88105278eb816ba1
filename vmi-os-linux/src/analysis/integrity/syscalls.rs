//! `syscall_table`: every entry of `sys_call_table` (and of `ia32_sys_call_table` and
//! `x32_sys_call_table` where the kernel has them) must point into core kernel text. The
//! classic rootkit hook (Diamorphine and its kin) overwrites an entry with a function of its
//! module; an entry pointing into a module, or anywhere outside text, is suspicious, and the
//! finding names the slot, the target and the module the target lands in.
//!
//! Since 6.9 (and in the 6.1 and 6.6 stable backports of "x86/syscall: Don't force use of
//! indirect calls for system calls", which both Debian kernels of the fixtures carry) the
//! kernel dispatches by a `switch` in `x64_sys_call` and no longer reads the table: it is kept
//! for tracing and BPF tools. A hooked entry is then not called by the system call path, but it
//! is still tampering (and a rootkit may have patched `x64_sys_call` too: see
//! [`super::inline_hooks`], which checks its first instruction). The finding says which
//! dispatch the kernel uses; the fixture kernels keep no `ia32_sys_call_table` at all.
//!
//! The table's length is not in kallsyms or BTF: it is the distance to the next kernel symbol
//! (an upper bound; both fixture kernels have one zero word of padding before it), less
//! trailing zero words, at most [`MAX_SYSCALLS`] entries.

use vmi_core::os::{Finding, Severity};
use vmi_core::Va;

use super::{finding, Check, Context};
use crate::error::LinuxError;
use crate::partial::Partial;

/// Most entries read from one table (x86-64 Linux has under 500 system calls).
pub const MAX_SYSCALLS: u64 = 1024;

/// The tables checked, where the kernel has them.
const TABLES: [&str; 3] = [
    "sys_call_table",
    "ia32_sys_call_table",
    "x32_sys_call_table",
];

/// Runs the check.
pub fn check(ctx: &Context<'_>) -> Result<Partial<Finding>, LinuxError> {
    ctx.text()?;
    let mut out = Partial::default();
    let switch = ctx.kernel.symbol("x64_sys_call").is_ok();
    let mut found_any = false;
    for name in TABLES {
        let Ok(table) = ctx.kernel.symbol(name) else {
            continue;
        };
        found_any = true;
        let entries = read_table(ctx, name, table)?;
        let mut outside = 0;
        for (slot, &target) in entries.iter().enumerate() {
            if ctx.in_kernel_text(target) {
                continue;
            }
            outside += 1;
            out.items.push(finding(
                Check::SyscallTable,
                Severity::Suspicious,
                format!("{name}[{slot}]"),
                Some(Va::new(target)),
                format!(
                    "entry {slot} points {} instead of kernel text",
                    ctx.describe(target)
                ),
            ));
        }
        out.items.push(finding(
            Check::SyscallTable,
            Severity::Info,
            name,
            Some(table),
            format!(
                "{} entries checked, {outside} outside kernel text{}",
                entries.len(),
                if switch && name != "ia32_sys_call_table" {
                    "; the kernel dispatches system calls by a switch in x64_sys_call and \
                     keeps the table for tools"
                } else {
                    ""
                }
            ),
        ));
    }
    if !found_any {
        return Err(vmi_core::ProfileError::MissingSymbol("sys_call_table".into()).into());
    }
    Ok(out)
}

/// The entries of the table at `table`.
fn read_table(ctx: &Context<'_>, name: &'static str, table: Va) -> Result<Vec<u64>, LinuxError> {
    let extent = ctx
        .next_symbol_after(table.raw())
        .map(|next| next - table.raw())
        .filter(|&e| e >= 8)
        .ok_or_else(|| LinuxError::Corrupt {
            what: name,
            at: table,
            reason: "its length is unknown: no kernel symbol follows it".into(),
        })?;
    let count = (extent / 8).min(MAX_SYSCALLS);
    let mut raw = vec![0u8; count as usize * 8];
    ctx.mem.read_exact(table, &mut raw)?;
    let mut words: Vec<u64> = raw
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    while words.last() == Some(&0) {
        words.pop();
    }
    Ok(words)
}
