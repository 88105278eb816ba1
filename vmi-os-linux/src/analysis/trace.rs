//! Tracing a live Linux kernel (x86-64): the functions to break at for each
//! [`TraceKind`], and what a stop there means ([`vmi_core::os::KernelTracing`]).
//!
//! | kind | function | event | decoded at the entry | at the return |
//! |---|---|---|---|---|
//! | exec | `wake_up_new_task(struct task_struct *p)` | `fork` | `p`: pid, tid, comm, ppid | — |
//! | exec | `__x64_sys_execve(const struct pt_regs *regs)` | `exec` | filename `regs->di`, argv `regs->si` | `rax` |
//! | exec | `__x64_sys_execveat(regs)` | `exec` | filename `regs->si`, argv `regs->dx` | `rax` |
//! | open | `do_sys_openat2(int dfd, const char __user *filename, struct open_how *how)` | `open` | path `rsi`, flags `how->flags` | `rax` |
//! | open | `do_sys_open(dfd, filename, int flags, mode)`, where `do_sys_openat2` is absent | `open` | path `rsi`, flags `edx` | `rax` |
//! | syscalls NAME.. | `__x64_sys_NAME(regs)` | `syscall` | the six arguments of `regs` | `rax` |
//! | syscalls (all) | `do_syscall_64(struct pt_regs *regs, int nr)` | `syscall` | `nr`, its name, the arguments | `regs->ax` |
//!
//! The stopped task is `current` of the vCPU ([`PerCpuCurrent`]): pid is its `tgid`, tid its
//! `pid`, name its `comm`. Kernel structures (`pt_regs`, `open_how`, tasks) are read through
//! the kernel's own page tables; user pointers (file names, argv) through the stopped vCPU's
//! CR3, which at a system call's entry is the calling process's (with PTI, its kernel PGD,
//! which maps user space too).
//!
//! Everything read at a stop is guest data: argv is cut at [`MAX_ARGV`] entries (a
//! [`TRUNCATED`] entry says so, as it does for an argv array that becomes unreadable before
//! its NULL), strings at [`MAX_STRING`] bytes; a user string that cannot be read is empty,
//! and only a frame the decoding cannot do without (`pt_regs`, the current task) is an error.
//!
//! A system call's number and name come from `sys_call_table`, read once (its length is the
//! run of non-zero words whose last names a system call function): its entries are the
//! `__x64_sys_*` functions (the fixture kernels dispatch by a `switch` in `x64_sys_call`, but
//! keep the table, in number order). The names found are then looked up by name, so that a
//! saved profile cache keeps them; a profile without them (a cache saved before any stop read
//! the table) gives numbers only, a named call's from `pt_regs->orig_ax`.

use std::collections::HashMap;
use std::sync::OnceLock;

use vmi_core::os::{KernelTracing, TraceKind, TracePoint, TraceRecord};
use vmi_core::{OsError, PagingMode, Session, Va, VirtualMemory, X86Registers};

use crate::comps::open_how::OpenHowLayout;
use crate::comps::percpu::PerCpuCurrent;
use crate::comps::pt_regs::{PtRegs, PtRegsLayout};
use crate::comps::task::{TaskLayout, TaskReader};
use crate::error::LinuxError;
use crate::kernel::Kernel;
use crate::kernel_space::is_kernel_half;
use crate::os::LinuxOs;

/// Most argv entries decoded; a longer argv ends with [`TRUNCATED`].
pub const MAX_ARGV: usize = 64;
/// Most bytes of one user string (a path, an argument) decoded: `PATH_MAX`.
pub const MAX_STRING: usize = 4096;
/// The last argv entry when argv was cut short (longer than [`MAX_ARGV`], or unreadable
/// before its NULL).
pub const TRUNCATED: &str = "...";
/// Most `sys_call_table` entries read (x86-64 has under 500 system calls).
pub const MAX_SYSCALLS: usize = 1024;
/// The prefix of the x86-64 system call wrappers' names.
pub const SYSCALL_PREFIX: &str = "__x64_sys_";

const FORK: &str = "wake_up_new_task";
const EXECVE: &str = "__x64_sys_execve";
const EXECVEAT: &str = "__x64_sys_execveat";
const OPENAT2: &str = "do_sys_openat2";
const OPEN: &str = "do_sys_open";
const ANY_SYSCALL: &str = "do_syscall_64";

/// What tracing cannot do on this kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// No `__x64_sys_NAME` function for these names.
    #[error(
        "no system call named {}: the kernel has no {SYSCALL_PREFIX}NAME function for {}",
        names.join(", "),
        if names.len() == 1 { "it" } else { "them" }
    )]
    UnknownSyscalls {
        /// The names asked for that the kernel lacks.
        names: Vec<String>,
    },
    /// Neither open function is in the kernel's symbols.
    #[error("the kernel has neither do_sys_openat2 nor do_sys_open to trace opens at")]
    NoOpenFunction,
    /// A trace point this profile did not hand out.
    #[error("{symbol} (event {event}) is not a Linux trace point")]
    UnknownPoint {
        /// Its symbol.
        symbol: String,
        /// Its event.
        event: &'static str,
    },
    /// A `do_syscall_64` record completed without the frame its entry saved.
    #[error("the {event} record of {symbol} has no saved pt_regs pointer to read the result from")]
    NoSavedFrame {
        /// The point's symbol.
        symbol: String,
        /// The record's event.
        event: &'static str,
    },
}

/// Which function a trace point is, as the decoder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Point {
    Fork,
    Execve,
    Execveat,
    OpenAt2,
    Open,
    /// `__x64_sys_NAME`, traced by name.
    Named(String),
    AnySyscall,
    /// Any other address (`vmi break`): the record names the stopped thread only.
    Break,
}

impl Point {
    fn of(point: &TracePoint) -> Result<Point, TraceError> {
        let named = || {
            point
                .symbol
                .strip_prefix(SYSCALL_PREFIX)
                .filter(|n| !n.is_empty())
                .map(|n| Point::Named(n.to_owned()))
        };
        let found = match (point.event, point.symbol.as_str()) {
            ("fork", FORK) => Some(Point::Fork),
            ("exec", EXECVE) => Some(Point::Execve),
            ("exec", EXECVEAT) => Some(Point::Execveat),
            ("open", OPENAT2) => Some(Point::OpenAt2),
            ("open", OPEN) => Some(Point::Open),
            ("syscall", ANY_SYSCALL) => Some(Point::AnySyscall),
            ("syscall", _) => named(),
            ("break", _) => Some(Point::Break),
            _ => None,
        };
        found.ok_or_else(|| TraceError::UnknownPoint {
            symbol: point.symbol.clone(),
            event: point.event,
        })
    }
}

/// The layouts the decoder reads, resolved once.
#[derive(Debug, Clone)]
struct TraceLayout {
    task: TaskLayout,
    pt_regs: PtRegsLayout,
    current: PerCpuCurrent,
    /// `None` where the profile lacks `struct open_how` (kernels before 5.6).
    open_how: Option<OpenHowLayout>,
}

impl TraceLayout {
    fn resolve(kernel: &Kernel) -> Result<Self, LinuxError> {
        let profile = kernel.profile();
        Ok(Self {
            task: TaskLayout::resolve(profile)?,
            pt_regs: PtRegsLayout::resolve(profile)?,
            current: PerCpuCurrent::resolve(kernel)?,
            open_how: OpenHowLayout::resolve(profile).ok(),
        })
    }
}

/// `sys_call_table`: number -> function, and the functions' names.
#[derive(Debug, Default)]
struct SyscallTable {
    /// Entry `nr` is the run-time address of system call `nr`'s function.
    entries: Vec<u64>,
    /// The `__x64_sys_*` name of each address in `entries`.
    names: HashMap<u64, String>,
}

impl SyscallTable {
    /// Reads the table; anything missing leaves it empty (numbers then come from `orig_ax`).
    fn read(session: &Session, kernel: &Kernel) -> SyscallTable {
        let Ok(table) = kernel.symbol("sys_call_table") else {
            return SyscallTable::default();
        };
        let mut raw = vec![0u8; MAX_SYSCALLS * 8];
        let n = kernel.memory(session).read(table, &mut raw).unwrap_or(0);
        let words: Vec<u64> = raw[..n - n % 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let wanted: std::collections::HashSet<u64> = words.iter().copied().collect();
        // One pass over the profile's symbols (the table's length is not recorded anywhere:
        // it ends where the entries stop being system call functions).
        let slide = kernel.virtual_slide();
        let mut names: HashMap<u64, String> = HashMap::new();
        for (name, sym) in kernel.profile().symbols() {
            if !(name.starts_with(SYSCALL_PREFIX) || name == "sys_ni_syscall") {
                continue;
            }
            let addr = sym.address.wrapping_add(slide);
            if !wanted.contains(&addr) {
                continue;
            }
            let better = |old: &String| {
                // The wrapper's own name wins over an alias; then the first by name.
                (name.starts_with(SYSCALL_PREFIX), std::cmp::Reverse(name))
                    > (
                        old.starts_with(SYSCALL_PREFIX),
                        std::cmp::Reverse(old.as_str()),
                    )
            };
            match names.get(&addr) {
                Some(old) if !better(old) => {}
                _ => {
                    names.insert(addr, name.to_owned());
                }
            }
        }
        // Every slot of the table is filled (`sys_ni_syscall` where no call is), so it ends
        // at the first zero word at the latest; what follows it without a zero (other data)
        // names no system call function. A slot inside that points elsewhere (a hook) is
        // kept, nameless.
        let mut entries: Vec<u64> = words.into_iter().take_while(|&w| w != 0).collect();
        while entries.last().is_some_and(|w| !names.contains_key(w)) {
            entries.pop();
        }
        names.retain(|addr, _| entries.contains(addr));
        // Looked up by name too, so that a saved profile cache keeps them.
        for name in names.values() {
            let _ = kernel.profile().symbol(name);
        }
        SyscallTable { entries, names }
    }

    fn nr_of(&self, addr: Va) -> Option<u64> {
        let i = self.entries.iter().position(|&e| e == addr.raw())?;
        u64::try_from(i).ok()
    }

    fn name_of(&self, nr: u64) -> Option<String> {
        let addr = self.entries.get(usize::try_from(nr).ok()?)?;
        let name = self.names.get(addr)?;
        Some(name.strip_prefix(SYSCALL_PREFIX).unwrap_or(name).to_owned())
    }
}

/// What tracing resolved once: layouts (when trace points are first asked for) and the
/// system call table (at the first stop that needs it). Held by [`LinuxOs`].
#[derive(Debug, Default)]
pub struct Tracer {
    layout: OnceLock<TraceLayout>,
    syscalls: OnceLock<SyscallTable>,
}

impl Tracer {
    fn layout(&self, kernel: &Kernel) -> Result<&TraceLayout, LinuxError> {
        if let Some(l) = self.layout.get() {
            return Ok(l);
        }
        // Only success is kept: a failure is resolved (and reported) again.
        let l = TraceLayout::resolve(kernel)?;
        Ok(self.layout.get_or_init(|| l))
    }

    fn syscalls(&self, session: &Session, kernel: &Kernel) -> &SyscallTable {
        self.syscalls
            .get_or_init(|| SyscallTable::read(session, kernel))
    }

    /// The trace points of `kind` (see the module docs), resolving the layouts their stops
    /// need, so that a kernel that lacks one fails before any breakpoint is set.
    pub fn trace_points(
        &self,
        kernel: &Kernel,
        kind: &TraceKind,
    ) -> Result<Vec<TracePoint>, TraceFailure> {
        self.layout(kernel)?;
        let point = |symbol: &str, event: &'static str, on_return: bool| {
            Ok::<_, LinuxError>(TracePoint {
                symbol: symbol.to_owned(),
                addr: kernel.symbol(symbol)?,
                event,
                on_return,
            })
        };
        Ok(match kind {
            // Exec records are complete at the entry: a successful execve returns on the new
            // program's first run, past the point a return breakpoint matches (measured on
            // live 6.1 and 6.12 guests: it never fired), and a return breakpoint's shared
            // site stops the guest on every system call return meanwhile.
            TraceKind::Exec => vec![
                point(FORK, "fork", false)?,
                point(EXECVE, "exec", false)?,
                point(EXECVEAT, "exec", false)?,
            ],
            TraceKind::Open => match point(OPENAT2, "open", true) {
                Ok(p) => vec![p],
                Err(first) => match point(OPEN, "open", true) {
                    Ok(p) => vec![p],
                    Err(_) => return Err(TraceFailure::missing(first, TraceError::NoOpenFunction)),
                },
            },
            TraceKind::Syscalls { names } if names.is_empty() => {
                vec![point(ANY_SYSCALL, "syscall", true)?]
            }
            TraceKind::Syscalls { names } => {
                let mut points = Vec::with_capacity(names.len());
                let mut unknown = Vec::new();
                let mut first_missing = None;
                for (i, name) in names.iter().enumerate() {
                    if names[..i].contains(name) {
                        continue;
                    }
                    match point(&format!("{SYSCALL_PREFIX}{name}"), "syscall", true) {
                        Ok(p) => points.push(p),
                        Err(e) => {
                            unknown.push(name.clone());
                            first_missing.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_missing {
                    return Err(TraceFailure::missing(
                        e,
                        TraceError::UnknownSyscalls { names: unknown },
                    ));
                }
                points
            }
        })
    }

    /// What a stop of vCPU `vcpu` (registers `regs`) at the entry of `point` means.
    pub fn on_entry(
        &self,
        session: &Session,
        kernel: &Kernel,
        point: &TracePoint,
        vcpu: usize,
        regs: &X86Registers,
    ) -> Result<TraceRecord, TraceFailure> {
        let which = Point::of(point)?;
        let layout = self.layout(kernel)?;
        let kmem = kernel.memory(session);
        let tasks = TaskReader::new(kmem, &layout.task);
        let current = layout.current.current_task(&kmem, vcpu, regs)?.task;
        let mut record = TraceRecord {
            event: point.event,
            vcpu,
            pid: tasks.tgid(current)?,
            tid: tasks.pid(current)?,
            name: tasks.comm(current)?,
            ..TraceRecord::default()
        };
        let user = session.virtual_memory(PagingMode::from_registers(regs));
        let frame =
            || PtRegs::read(&kmem, &layout.pt_regs, Va::new(regs.rdi)).map_err(TraceFailure::from);
        match which {
            Point::Fork => {
                // rdi is the new task, not yet running: the record is about it.
                let child = kernel_pointer(&kmem, regs.rdi, "wake_up_new_task's task")?;
                record.pid = tasks.tgid(child)?;
                record.tid = tasks.pid(child)?;
                record.name = tasks.comm(child)?;
                record.ppid = Some(tasks.ppid(child)?);
            }
            Point::Execve | Point::Execveat => {
                let f = frame()?;
                let (filename, argv) = match which {
                    Point::Execve => (f.args[0], f.args[1]),
                    _ => (f.args[1], f.args[2]),
                };
                record.ppid = Some(tasks.ppid(current)?);
                record.filename = Some(user_string(&user, filename));
                record.argv = Some(user_argv(&user, argv));
                record.context = f.at.raw();
            }
            Point::OpenAt2 => {
                let open_how = match layout.open_how {
                    Some(l) => l,
                    None => OpenHowLayout::resolve(kernel.profile()).map_err(LinuxError::from)?,
                };
                record.path = Some(user_string(&user, regs.rsi));
                let how = kernel_pointer(&kmem, regs.rdx, "do_sys_openat2's open_how")?;
                record.flags = Some(open_how.flags(&kmem, how)?);
            }
            Point::Open => {
                record.path = Some(user_string(&user, regs.rsi));
                // `int flags`: the low half of rdx.
                record.flags = Some(regs.rdx & 0xffff_ffff);
            }
            Point::Named(name) => {
                let f = frame()?;
                let table = self.syscalls(session, kernel);
                record.nr = table.nr_of(point.addr).or_else(|| plausible_nr(f.orig_ax));
                record.syscall = Some(name);
                record.args = Some(f.args.to_vec());
                record.context = f.at.raw();
            }
            Point::AnySyscall => {
                let f = frame()?;
                // `int nr`: the low half of rsi; a negative one names no system call.
                let nr = regs.rsi as u32 as i32;
                let nr = u64::try_from(nr).ok();
                let table = self.syscalls(session, kernel);
                record.syscall = nr.and_then(|n| table.name_of(n));
                record.nr = nr;
                record.args = Some(f.args.to_vec());
                record.context = f.at.raw();
            }
            Point::Break => {}
        }
        Ok(record)
    }

    /// Completes `record` at the return of `point` (registers `regs` there).
    pub fn on_return(
        &self,
        session: &Session,
        kernel: &Kernel,
        point: &TracePoint,
        record: &mut TraceRecord,
        regs: &X86Registers,
    ) -> Result<(), TraceFailure> {
        match Point::of(point)? {
            // wake_up_new_task returns nothing; a bare breakpoint has no result.
            Point::Fork | Point::Break => {}
            Point::AnySyscall => {
                // do_syscall_64 returns void (6.1) or whether to return by sysret (6.12):
                // the system call's result is in the frame.
                if record.context == 0 {
                    return Err(TraceError::NoSavedFrame {
                        symbol: point.symbol.clone(),
                        event: record.event,
                    }
                    .into());
                }
                let layout = self.layout(kernel)?;
                let f = PtRegs::read(
                    &kernel.memory(session),
                    &layout.pt_regs,
                    Va::new(record.context),
                )?;
                record.result = Some(f.result());
            }
            _ => record.result = Some(regs.rax as i64),
        }
        Ok(())
    }
}

/// A system call number as `orig_ax` holds it, if it can be one (x32 calls carry bit 30).
fn plausible_nr(orig_ax: u64) -> Option<u64> {
    const X32_SYSCALL_BIT: u64 = 0x4000_0000;
    let nr = orig_ax & !X32_SYSCALL_BIT;
    (nr < MAX_SYSCALLS as u64).then_some(nr)
}

/// `raw` as a kernel pointer argument, checked.
fn kernel_pointer(mem: &VirtualMemory<'_>, raw: u64, what: &'static str) -> Result<Va, LinuxError> {
    let va = Va::new(raw);
    if crate::iter::list::is_kernel_pointer(mem.space().mode, va) {
        Ok(va)
    } else {
        Err(LinuxError::Corrupt {
            what,
            at: va,
            reason: "not an aligned kernel address".into(),
        })
    }
}

/// Whether `va` can be a user pointer in `mem`'s address space: not NULL, below the kernel
/// half (the kernel's `access_ok` refuses the rest with `EFAULT`).
fn is_user_pointer(mem: &VirtualMemory<'_>, va: Va) -> bool {
    va.raw() != 0
        && matches!(mem.space().mode, PagingMode::Ia32e4 | PagingMode::Ia32e5)
        && !is_kernel_half(mem.space().mode, va)
}

/// The user string at `raw`, at most [`MAX_STRING`] bytes; empty if it is not a user pointer
/// or cannot be read.
pub fn user_string(mem: &VirtualMemory<'_>, raw: u64) -> String {
    let va = Va::new(raw);
    if !is_user_pointer(mem, va) {
        return String::new();
    }
    mem.read_cstr(va, MAX_STRING).unwrap_or_default()
}

/// The NULL-terminated user array of user strings at `raw` (execve's argv): at most
/// [`MAX_ARGV`] entries, then [`TRUNCATED`]; [`TRUNCATED`] too where the array itself
/// becomes unreadable. A NULL argv is an empty one, as the kernel takes it.
pub fn user_argv(mem: &VirtualMemory<'_>, raw: u64) -> Vec<String> {
    let mut out = Vec::new();
    if raw == 0 {
        return out;
    }
    let base = Va::new(raw);
    if !is_user_pointer(mem, base) {
        out.push(TRUNCATED.to_owned());
        return out;
    }
    for i in 0..=MAX_ARGV as u64 {
        let entry = i
            .checked_mul(8)
            .and_then(|off| base.checked_add(off))
            .filter(|&slot| is_user_pointer(mem, slot))
            .and_then(|slot| mem.read_u64(slot).ok());
        match entry {
            Some(0) => return out,
            Some(_) if out.len() == MAX_ARGV => break,
            Some(p) => out.push(user_string(mem, p)),
            None => break,
        }
    }
    out.push(TRUNCATED.to_owned());
    out
}

/// Why tracing failed: the Linux layer's error, or one of tracing's own. Kept apart until
/// the neutral boundary, where a symbol missing from a cached profile becomes
/// [`OsError::IncompleteProfile`].
#[derive(Debug)]
pub enum TraceFailure {
    /// A Linux-layer error (memory, profile, corrupt structure).
    Linux(LinuxError),
    /// A tracing error; `cause` is the missing-symbol error behind it, if any.
    Trace {
        /// What tracing says.
        error: TraceError,
        /// The lookup that failed, which with a cached profile means "rediscover".
        cause: Option<LinuxError>,
    },
}

impl TraceFailure {
    fn missing(cause: LinuxError, error: TraceError) -> TraceFailure {
        TraceFailure::Trace {
            error,
            cause: Some(cause),
        }
    }
}

impl From<LinuxError> for TraceFailure {
    fn from(e: LinuxError) -> Self {
        TraceFailure::Linux(e)
    }
}

impl From<TraceError> for TraceFailure {
    fn from(error: TraceError) -> Self {
        TraceFailure::Trace { error, cause: None }
    }
}

impl std::fmt::Display for TraceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceFailure::Linux(e) => e.fmt(f),
            TraceFailure::Trace { error, .. } => error.fmt(f),
        }
    }
}

impl std::error::Error for TraceFailure {}

impl LinuxOs {
    fn neutral_trace(&self, e: TraceFailure) -> OsError {
        match e {
            TraceFailure::Linux(e) => self.neutral(e),
            TraceFailure::Trace {
                cause: Some(cause), ..
            } if self.from_cache() && cause.is_missing_profile_item() => self.neutral(cause),
            TraceFailure::Trace { error, .. } => OsError::os(error),
        }
    }
}

impl KernelTracing for LinuxOs {
    fn trace_points(&self, kind: &TraceKind) -> Result<Vec<TracePoint>, OsError> {
        self.tracer()
            .trace_points(self.kernel(), kind)
            .map_err(|e| self.neutral_trace(e))
    }

    fn on_entry(
        &self,
        session: &Session,
        point: &TracePoint,
        vcpu: usize,
        regs: &X86Registers,
    ) -> Result<TraceRecord, OsError> {
        self.tracer()
            .on_entry(session, self.kernel(), point, vcpu, regs)
            .map_err(|e| self.neutral_trace(e))
    }

    fn on_return(
        &self,
        session: &Session,
        point: &TracePoint,
        record: &mut TraceRecord,
        regs: &X86Registers,
    ) -> Result<(), OsError> {
        self.tracer()
            .on_return(session, self.kernel(), point, record, regs)
            .map_err(|e| self.neutral_trace(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmi_core::memory::BufferMemory;
    use vmi_core::{AddressSpace, Architecture, Pa, PageWalk, Translation, TranslationError};

    /// Identity "paging" over the first `LEN` bytes of user space: VA `x` is PA `x`.
    struct UserIdentity;

    const LEN: u64 = 1 << 20;

    impl Architecture for UserIdentity {
        fn name(&self) -> &'static str {
            "user-identity"
        }
        fn translate(
            &self,
            _mem: &dyn vmi_core::PhysicalMemory,
            _space: AddressSpace,
            va: Va,
        ) -> Result<Translation, TranslationError> {
            if va.raw() < LEN {
                Ok(Translation {
                    pa: Pa::new(va.raw()),
                    size: vmi_core::PageSize::Size4K,
                    perms: vmi_core::Permissions::ALL,
                })
            } else {
                Err(TranslationError::NotPresent {
                    va,
                    level: vmi_core::PagingLevel(4),
                    entry: 0,
                })
            }
        }
        fn walk(
            &self,
            mem: &dyn vmi_core::PhysicalMemory,
            space: AddressSpace,
            va: Va,
        ) -> PageWalk {
            PageWalk {
                va,
                space,
                steps: Vec::new(),
                result: self.translate(mem, space, va),
            }
        }
        fn for_each_mapping(
            &self,
            _mem: &dyn vmi_core::PhysicalMemory,
            _space: AddressSpace,
            _visit: &mut dyn FnMut(
                Result<vmi_core::Mapping, TranslationError>,
            ) -> std::ops::ControlFlow<()>,
        ) {
        }
    }

    fn with_memory(bytes: Vec<u8>, f: impl FnOnce(&VirtualMemory<'_>)) {
        let mem = BufferMemory::new(Pa::new(0), bytes);
        let space = AddressSpace {
            root: Pa::new(0),
            mode: PagingMode::Ia32e4,
        };
        f(&VirtualMemory::new(&mem, &UserIdentity, space));
    }

    fn put_u64(buf: &mut [u8], at: usize, v: u64) {
        buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn a_normal_argv_ends_at_its_null() {
        let mut m = vec![0u8; LEN as usize];
        m[0x2000..0x2004].copy_from_slice(b"/bin");
        m[0x2100..0x2102].copy_from_slice(b"-l");
        put_u64(&mut m, 0x1000, 0x2000);
        put_u64(&mut m, 0x1008, 0x2100);
        put_u64(&mut m, 0x1010, 0x2200); // an empty argument
        with_memory(m, |mem| {
            assert_eq!(user_argv(mem, 0x1000), ["/bin", "-l", ""]);
            assert_eq!(user_string(mem, 0x2000), "/bin");
            // NULL argv: no arguments, as the kernel takes it.
            assert!(user_argv(mem, 0).is_empty());
        });
    }

    #[test]
    fn a_cyclic_argv_stops_at_the_bound() {
        // Every slot points at the array itself: no NULL ever comes.
        let mut m = vec![0u8; LEN as usize];
        for i in 0..(LEN as usize / 8) {
            put_u64(&mut m, i * 8, 0x1000);
        }
        with_memory(m, |mem| {
            let argv = user_argv(mem, 0x1000);
            assert_eq!(argv.len(), MAX_ARGV + 1);
            assert_eq!(argv.last().map(String::as_str), Some(TRUNCATED));
            // Each "string" is the bytes of 0x1000: `\0\x10...`, empty at once.
            assert!(argv[..MAX_ARGV].iter().all(String::is_empty));
        });
    }

    #[test]
    fn huge_strings_are_capped() {
        // 64+ pointers at one 512 KiB string without a NUL.
        let mut m = vec![b'A'; LEN as usize];
        for i in 0..200 {
            put_u64(&mut m, 0x1000 + i * 8, 0x8_0000);
        }
        with_memory(m, |mem| {
            let argv = user_argv(mem, 0x1000);
            assert_eq!(argv.len(), MAX_ARGV + 1);
            assert!(argv[..MAX_ARGV].iter().all(|a| a.len() == MAX_STRING));
            assert_eq!(user_string(mem, 0x8_0000).len(), MAX_STRING);
        });
    }

    #[test]
    fn an_argv_running_into_unmapped_memory_is_marked() {
        // The array's last mapped slot is not NULL; the next is not mapped.
        let mut m = vec![0u8; LEN as usize];
        let last = LEN as usize - 8;
        put_u64(&mut m, last, 0x3000);
        m[0x3000] = b'x';
        with_memory(m, |mem| {
            assert_eq!(user_argv(mem, last as u64), ["x", TRUNCATED]);
            // Past the end of the address space: no overflow, no panic.
            assert_eq!(user_argv(mem, u64::MAX - 3), [TRUNCATED]);
            // A kernel address is no user pointer (the kernel would fault with EFAULT).
            assert_eq!(user_argv(mem, 0xffff_8880_0000_0000), [TRUNCATED]);
            assert_eq!(user_string(mem, 0xffff_8880_0000_0000), "");
            // Unmapped user memory: an empty string.
            assert_eq!(user_string(mem, LEN + 0x1000), "");
        });
    }

    #[test]
    fn syscall_numbers_from_orig_ax() {
        assert_eq!(plausible_nr(59), Some(59));
        assert_eq!(plausible_nr(0x4000_0000 | 1), Some(1));
        assert_eq!(plausible_nr(u64::MAX), None);
    }

    #[test]
    fn points_are_recognised_by_symbol_and_event() {
        let p = |symbol: &str, event: &'static str| TracePoint {
            symbol: symbol.into(),
            addr: Va::new(0xffff_ffff_8100_0000),
            event,
            on_return: true,
        };
        assert_eq!(Point::of(&p(EXECVE, "exec")).unwrap(), Point::Execve);
        assert_eq!(
            Point::of(&p(EXECVE, "syscall")).unwrap(),
            Point::Named("execve".into())
        );
        assert!(Point::of(&p("__x64_sys_", "syscall")).is_err());
        assert!(Point::of(&p("schedule", "exec")).is_err());
    }
}
