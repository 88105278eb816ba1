//! `inline_hooks`: the first instruction of functions rootkits hook must not leave kernel text.
//!
//! Inline hooking (khook in Reptile, many others) overwrites a function's first bytes with a
//! jump to the rootkit. For each function of [`HOOKED_FUNCTIONS`] the kernel has, the first
//! instruction (after an `endbr64` where IBT put one) is decoded; these forms are recognised:
//!
//! - `jmp rel32` (`e9`), `jmp rel8` (`eb`), `call rel32` (`e8`);
//! - `jmp [rip+disp32]` (`ff 25`; the target is the pointer read there);
//! - `movabs reg, imm64; jmp reg` (`48/49 b8+r imm64; (41) ff e0+r`), and `push reg; ret`;
//! - `push imm32; ret` (`68 imm32 c3`, sign-extended: a kernel address) and the 64-bit form
//!   `push imm32; mov dword [rsp+4], imm32; ret`;
//! - `int3` (`cc`): a kprobe or a text patch in progress, reported as [`Severity::Info`].
//!
//! A target outside core kernel text is suspicious, and the finding names the module it lands
//! in. What is normal and how it is told apart:
//!
//! - ftrace off: the compiler's `call __fentry__` is a 5-byte NOP (`0f 1f 44 00 00`) after
//!   boot; no finding.
//! - ftrace on: the NOP becomes `call ftrace_caller`/`ftrace_regs_caller` (in text: no finding)
//!   or `call` of a trampoline ftrace allocated for one `ftrace_ops`, in the module area. The
//!   trampolines are looked up in `ftrace_ops_list` (`ftrace_ops.trampoline`,
//!   `trampoline_size`, and `direct_call` for BPF and other direct trampolines): a call into
//!   one is [`Severity::Info`], unless the ops' callback (`ftrace_ops.func`) itself lies
//!   outside kernel text — a module hooking through ftrace (KoviD and most current rootkits
//!   do; so do a few legitimate tracing modules), which is suspicious.
//! - A jump or call whose target is in text is not a hook of this kind (static calls and
//!   alternatives patch code in text); no finding.

use std::collections::HashSet;

use vmi_core::os::{Finding, Severity};
use vmi_core::Va;

use super::{finding, Check, Context};
use crate::comps::layout::Scalar;
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;
use crate::partial::Partial;

/// Entry points rootkits hook: system calls that list or signal processes, open and read
/// files, load modules; the `/proc/net` seq handlers that list sockets; the directory-entry
/// callbacks that hide files; the VFS read path; the system call dispatcher itself.
pub const HOOKED_FUNCTIONS: &[&str] = &[
    "x64_sys_call",
    "__x64_sys_getdents64",
    "__x64_sys_getdents",
    "__x64_sys_kill",
    "__x64_sys_openat",
    "__x64_sys_open",
    "__x64_sys_read",
    "__x64_sys_write",
    "__x64_sys_execve",
    "__x64_sys_init_module",
    "__x64_sys_finit_module",
    "__x64_sys_delete_module",
    "__x64_sys_bpf",
    "__x64_sys_ptrace",
    "tcp4_seq_show",
    "tcp6_seq_show",
    "udp4_seq_show",
    "udp6_seq_show",
    "packet_rcv",
    "filldir",
    "filldir64",
    "fillonedir",
    "iterate_dir",
    "vfs_read",
    "vfs_write",
    "vfs_statx",
    "do_sys_openat2",
    "load_elf_binary",
    "proc_pid_readdir",
    "inet_ioctl",
    "ip_rcv",
    "kallsyms_lookup_name",
    "find_task_by_vpid",
];

/// Bytes decoded at each function.
const WINDOW: usize = 32;

/// Most `ftrace_ops` followed in `ftrace_ops_list`.
const MAX_FTRACE_OPS: usize = 4096;

/// What a function's first instruction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The 5-byte NOP of a disabled ftrace site, or anything not a transfer of control.
    Plain,
    /// A call to `target`.
    Call(u64),
    /// A jump to `target` (any of the jump forms).
    Jump(u64, &'static str),
    /// A breakpoint.
    Int3,
}

/// Decodes the first instruction of the code at `at` (`bytes` are its first bytes); the
/// target of `jmp [rip+disp]` is read through `read_u64`.
pub fn decode(at: u64, bytes: &[u8], read_u64: impl Fn(u64) -> Option<u64>) -> Entry {
    // The IBT slot: `endbr64`, or the 4-byte NOP a kernel without IBT has there (the 6.12
    // cloud kernel: `66 0f 1f 00`).
    let o = if IBT_SLOT.iter().any(|p| bytes.starts_with(p)) {
        4
    } else {
        0
    };
    match decode_one(at, bytes, o, &read_u64) {
        // The ftrace site's NOP: a hook may follow it.
        Entry::Plain if bytes.get(o..o + 5) == Some(&FTRACE_NOP[..]) => {
            decode_one(at, bytes, o + 5, &read_u64)
        }
        other => other,
    }
}

/// What may fill the 4 bytes before the ftrace site: `endbr64`, `nopw (%rax)`, `nopl 0(%rax)`.
const IBT_SLOT: [[u8; 4]; 3] = [
    [0xf3, 0x0f, 0x1e, 0xfa],
    [0x66, 0x0f, 0x1f, 0x00],
    [0x0f, 0x1f, 0x40, 0x00],
];

/// The 5-byte NOP of a disabled ftrace site (`nopl 0x0(%rax,%rax,1)`).
const FTRACE_NOP: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

/// Decodes the instruction at `o` in `bytes`.
fn decode_one(at: u64, bytes: &[u8], o: usize, read_u64: &impl Fn(u64) -> Option<u64>) -> Entry {
    let b = |i: usize| bytes.get(o + i).copied();
    let rel32 = |i: usize| -> Option<i64> {
        let s = bytes.get(o + i..o + i + 4)?;
        Some(i64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])))
    };
    let imm64 = |i: usize| -> Option<u64> {
        let s = bytes.get(o + i..o + i + 8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(s);
        Some(u64::from_le_bytes(w))
    };
    let next = |len: usize| at.wrapping_add((o + len) as u64);
    match b(0) {
        Some(0xcc) => Entry::Int3,
        Some(0xe8) => rel32(1).map_or(Entry::Plain, |r| {
            Entry::Call(next(5).wrapping_add_signed(r))
        }),
        Some(0xe9) => rel32(1).map_or(Entry::Plain, |r| {
            Entry::Jump(next(5).wrapping_add_signed(r), "jmp rel32")
        }),
        Some(0xeb) => b(1).map_or(Entry::Plain, |r| {
            Entry::Jump(next(2).wrapping_add_signed(i64::from(r as i8)), "jmp rel8")
        }),
        Some(0xff) if b(1) == Some(0x25) => rel32(2)
            .and_then(|d| read_u64(next(6).wrapping_add_signed(d)))
            .map_or(Entry::Plain, |t| Entry::Jump(t, "jmp [rip+disp32]")),
        Some(rex @ (0x48 | 0x49)) if b(1).is_some_and(|x| (0xb8..=0xbf).contains(&x)) => {
            let reg = b(1).unwrap_or(0) - 0xb8;
            let Some(target) = imm64(2) else {
                return Entry::Plain;
            };
            // jmp reg: ff e0+r (41 ff e0+r for r8-r15); push reg; ret: 50+r c3 (41 50+r c3).
            let tail: Vec<u8> = (10..14).filter_map(b).collect();
            let high = rex == 0x49;
            let jmp = if high {
                tail.starts_with(&[0x41, 0xff, 0xe0 + reg])
            } else {
                tail.starts_with(&[0xff, 0xe0 + reg])
            };
            let push_ret = if high {
                tail.starts_with(&[0x41, 0x50 + reg, 0xc3])
            } else {
                tail.starts_with(&[0x50 + reg, 0xc3])
            };
            if jmp {
                Entry::Jump(target, "movabs reg, imm64; jmp reg")
            } else if push_ret {
                Entry::Jump(target, "movabs reg, imm64; push reg; ret")
            } else {
                Entry::Plain
            }
        }
        Some(0x68) => {
            let Some(low) = rel32(1) else {
                return Entry::Plain;
            };
            if b(5) == Some(0xc3) {
                Entry::Jump(low as u64, "push imm32; ret")
            } else if (5..9).filter_map(b).eq([0xc7, 0x44, 0x24, 0x04]) && b(13) == Some(0xc3) {
                let high = rel32(9).unwrap_or(0) as u64 & 0xffff_ffff;
                Entry::Jump(
                    (low as u64 & 0xffff_ffff) | high << 32,
                    "push imm32; mov [rsp+4], imm32; ret",
                )
            } else {
                Entry::Plain
            }
        }
        _ => Entry::Plain,
    }
}

/// A trampoline of a registered `ftrace_ops`.
#[derive(Debug, Clone, Copy)]
struct Trampoline {
    ops: Va,
    start: u64,
    end: u64,
    func: u64,
}

/// The trampolines (and direct-call targets) of `ftrace_ops_list`.
fn ftrace_trampolines(ctx: &Context<'_>) -> Result<Partial<Trampoline>, LinuxError> {
    let p = ctx.kernel.profile();
    let next = Scalar::resolve(p, "ftrace_ops", "next")?;
    let func = Scalar::resolve(p, "ftrace_ops", "func")?;
    let tramp = Scalar::resolve(p, "ftrace_ops", "trampoline").ok();
    let tramp_size = Scalar::resolve(p, "ftrace_ops", "trampoline_size").ok();
    let direct = Scalar::resolve(p, "ftrace_ops", "direct_call").ok();
    let size = crate::comps::layout::struct_size(p, "ftrace_ops")?;
    let end = ctx.kernel.symbol("ftrace_list_end")?;
    let mut cur = ctx.mem.read_va(ctx.kernel.symbol("ftrace_ops_list")?)?;
    let mut out = Partial::default();
    let mut seen = HashSet::new();
    while cur != end && cur.raw() != 0 {
        if !is_kernel_pointer(ctx.mem.space().mode, cur) || !seen.insert(cur) {
            out.warnings.push(LinuxError::Corrupt {
                what: "ftrace_ops_list",
                at: cur,
                reason: "not a kernel pointer, or a cycle".into(),
            });
            break;
        }
        if seen.len() > MAX_FTRACE_OPS {
            out.warnings.push(LinuxError::Unbounded {
                what: "ftrace_ops_list",
                head: cur,
                limit: MAX_FTRACE_OPS,
            });
            break;
        }
        let b = match crate::comps::layout::StructBuf::read(&ctx.mem, "ftrace_ops", cur, size) {
            Ok(b) => b,
            Err(e) => {
                out.warnings.push(e);
                break;
            }
        };
        let f = b.get(func).unwrap_or(0);
        if let (Some(t), Some(s)) = (tramp, tramp_size) {
            let (start, len) = (b.get(t).unwrap_or(0), b.get(s).unwrap_or(0));
            if start != 0 {
                out.items.push(Trampoline {
                    ops: cur,
                    start,
                    end: start.saturating_add(len.max(1)),
                    func: f,
                });
            }
        }
        if let Some(d) = direct {
            let target = b.get(d).unwrap_or(0);
            if target != 0 {
                out.items.push(Trampoline {
                    ops: cur,
                    start: target,
                    end: target + 1,
                    func: f,
                });
            }
        }
        cur = b.va(next)?;
    }
    Ok(out)
}

/// Runs the check.
pub fn check(ctx: &Context<'_>) -> Result<Partial<Finding>, LinuxError> {
    ctx.text()?;
    let mut out = Partial::default();
    let trampolines = match ftrace_trampolines(ctx) {
        Ok(t) => {
            out.warnings.extend(t.warnings);
            t.items
        }
        Err(e) => {
            out.warnings.push(e);
            Vec::new()
        }
    };
    let mut checked = 0;
    for &name in HOOKED_FUNCTIONS {
        let Ok(at) = ctx.kernel.symbol(name) else {
            continue;
        };
        let mut bytes = [0u8; WINDOW];
        if let Err(e) = ctx.mem.read_exact(at, &mut bytes) {
            out.warnings.push(e.into());
            continue;
        }
        checked += 1;
        let entry = decode(at.raw(), &bytes, |va| ctx.mem.read_u64(Va::new(va)).ok());
        let (target, how) = match entry {
            Entry::Plain => continue,
            Entry::Int3 => {
                out.items.push(finding(
                    Check::InlineHooks,
                    Severity::Info,
                    name,
                    Some(at),
                    "starts with int3: a kprobe, or a text patch in progress",
                ));
                continue;
            }
            Entry::Call(t) => (t, "call rel32"),
            Entry::Jump(t, how) => (t, how),
        };
        if ctx.in_kernel_text(target) {
            continue;
        }
        if let Some(t) = trampolines
            .iter()
            .find(|t| (t.start..t.end).contains(&target))
        {
            let own = ctx.in_kernel_text(t.func);
            out.items.push(finding(
                Check::InlineHooks,
                if own {
                    Severity::Info
                } else {
                    Severity::Suspicious
                },
                name,
                Some(Va::new(target)),
                format!(
                    "traced by ftrace: {how} to the trampoline of ftrace_ops at {}, whose \
                     callback is {}",
                    t.ops,
                    ctx.describe(t.func)
                ),
            ));
            continue;
        }
        out.items.push(finding(
            Check::InlineHooks,
            Severity::Suspicious,
            name,
            Some(Va::new(target)),
            format!(
                "hooked at {at}: {how} to {target:#x}, {}",
                ctx.describe(target)
            ),
        ));
    }
    out.items.push(finding(
        Check::InlineHooks,
        Severity::Info,
        "functions",
        None,
        format!(
            "{checked} of {} entry points checked (the others are not in this kernel); {} \
             ftrace trampolines registered",
            HOOKED_FUNCTIONS.len(),
            trampolines.len()
        ),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 0xffff_ffff_8100_0000;

    fn d(bytes: &[u8]) -> Entry {
        decode(AT, bytes, |va| (va == AT + 0x106).then_some(0xdead_beef))
    }

    #[test]
    fn forms() {
        assert_eq!(d(&[0x0f, 0x1f, 0x44, 0, 0]), Entry::Plain);
        assert_eq!(
            d(&[0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0, 0]),
            Entry::Plain
        );
        assert_eq!(
            d(&[0xe9, 0x10, 0, 0, 0]),
            Entry::Jump(AT + 0x15, "jmp rel32")
        );
        assert_eq!(
            d(&[0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0xfb, 0xff, 0xff, 0xff]),
            Entry::Call(AT + 4)
        );
        assert_eq!(
            d(&[0xff, 0x25, 0, 1, 0, 0]),
            Entry::Jump(0xdead_beef, "jmp [rip+disp32]")
        );
        let mut mov = vec![0x48, 0xb8];
        mov.extend_from_slice(&0xffff_ffff_c012_3456u64.to_le_bytes());
        mov.extend_from_slice(&[0xff, 0xe0]);
        assert_eq!(
            d(&mov),
            Entry::Jump(0xffff_ffff_c012_3456, "movabs reg, imm64; jmp reg")
        );
        let mut r11 = vec![0x49, 0xbb];
        r11.extend_from_slice(&0xffff_ffff_c012_3456u64.to_le_bytes());
        r11.extend_from_slice(&[0x41, 0xff, 0xe3]);
        assert!(matches!(d(&r11), Entry::Jump(0xffff_ffff_c012_3456, _)));
        assert_eq!(
            d(&[0x68, 0x56, 0x34, 0x12, 0xc0, 0xc3]),
            Entry::Jump(0xffff_ffff_c012_3456, "push imm32; ret")
        );
        assert_eq!(
            d(&[
                0x68, 0x56, 0x34, 0x12, 0xc0, 0xc7, 0x44, 0x24, 0x04, 0xff, 0xff, 0xff, 0xff, 0xc3
            ]),
            Entry::Jump(0xffff_ffff_c012_3456, "push imm32; mov [rsp+4], imm32; ret")
        );
        assert_eq!(d(&[0xcc]), Entry::Int3);
        // Behind a NOP4 IBT slot and the ftrace NOP.
        assert_eq!(
            d(&[0x66, 0x0f, 0x1f, 0x00, 0x0f, 0x1f, 0x44, 0, 0, 0xe9, 0, 0, 0, 0]),
            Entry::Jump(AT + 14, "jmp rel32")
        );
        assert_eq!(d(&[0x55, 0x48, 0x89, 0xe5]), Entry::Plain);
        assert_eq!(d(&[0xe9]), Entry::Plain);
    }
}
