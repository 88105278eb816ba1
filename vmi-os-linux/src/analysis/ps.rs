//! Processes and threads (`vmi ps`, `vmi pstree`), from the kernel's task list.
//!
//! The walk starts at `init_task` (pid 0, the idle task of CPU 0, `swapper/0`) and follows
//! `task->tasks`, which links every thread-group leader. `/proc` does not list pid 0; here it
//! comes first and [`Process::is_idle`] tells it apart. The idle tasks of the other CPUs are on
//! no list and are not reported.
//!
//! Everything is read from guest memory with offsets from the profile. A corrupted list ends
//! the walk with a warning ([`Partial::warnings`]); a task whose own fields cannot be read is
//! skipped with a warning; a process whose page-table root or thread list is damaged is listed
//! with what could be read (no `dtb`, the threads counted so far) and a warning.

use serde::Serialize;
use vmi_core::{AddressSpace, Pa, Session, Va};

use crate::comps::mm::{MmOffsets, MmReader};
use crate::comps::task::{TaskLayout, TaskReader, PF_KTHREAD};
use crate::error::LinuxError;
use crate::kernel::Kernel;
use crate::partial::Partial;

/// A process (thread group) as `vmi ps` reports it. JSON field names are those of the `vmi`
/// contract: `start_time` is `start_time_ns`, addresses are `"0x..."` strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Process id (`task->tgid`; equal to `pid` for the group leader listed here).
    pub pid: u32,
    /// Parent's process id (`real_parent->tgid`); 0 for pid 0, 1 and 2.
    pub ppid: u32,
    /// `task->comm`: at most 15 bytes of the executable name (kernel threads name themselves).
    pub name: String,
    /// Real user id (`real_cred->uid`).
    pub uid: u32,
    /// Real group id (`real_cred->gid`).
    pub gid: u32,
    /// Physical address of the top-level page table of the process (`mm->pgd` translated);
    /// `None` for kernel threads. With PTI this is the kernel PGD, which maps user memory too;
    /// a vCPU running the process in user mode has the user PGD, `dtb + 0x1000`, in CR3.
    pub dtb: Option<Pa>,
    /// Threads in the group, the leader included.
    pub threads: u32,
    /// Whether the task is a kernel thread (`PF_KTHREAD`); pid 0 is one too.
    pub kernel_thread: bool,
    /// `task->start_time`: nanoseconds since boot (monotonic clock, suspend excluded).
    #[serde(rename = "start_time")]
    pub start_time_ns: u64,
    /// The `task_struct` of the group leader.
    pub task: Va,
    /// `task->mm`, `None` for kernel threads and exited tasks.
    pub mm: Option<Va>,
}

impl Process {
    /// Whether this is `init_task`, the idle task of CPU 0 (pid 0), which `/proc` does not list.
    pub fn is_idle(&self) -> bool {
        self.pid == 0
    }
}

/// A thread of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thread {
    /// Thread id (`task->pid`).
    pub tid: u32,
    /// Process id of its group (`task->tgid`).
    pub tgid: u32,
    /// `task->comm` of the thread (threads may rename themselves).
    pub name: String,
    /// The thread's `task_struct`.
    pub task: Va,
    /// `task->start_time`: nanoseconds since boot (monotonic clock).
    #[serde(rename = "start_time")]
    pub start_time_ns: u64,
    /// `task->start_boottime` where the profile has it: nanoseconds since boot, suspend
    /// included (what `/proc/PID/stat` reports).
    #[serde(rename = "start_boottime")]
    pub start_boottime_ns: Option<u64>,
}

/// Offsets and readers for one analysis: resolved once, used for every task.
struct Ctx<'a> {
    tasks: TaskReader<'a>,
    mms: MmReader<'a>,
    init_task: Va,
}

/// Resolves the offsets `ps` needs and runs `f` with readers over them.
fn with_ctx<R>(
    session: &Session,
    kernel: &Kernel,
    f: impl FnOnce(&Ctx<'_>) -> Result<R, LinuxError>,
) -> Result<R, LinuxError> {
    let layout = TaskLayout::resolve(kernel.profile())?;
    let mm = MmOffsets::resolve(kernel.profile())?;
    let mem = kernel.memory(session);
    let ctx = Ctx {
        tasks: TaskReader::new(mem, &layout),
        mms: MmReader::new(mem, &mm),
        init_task: kernel.symbol("init_task")?,
    };
    f(&ctx)
}

impl Ctx<'_> {
    /// Reads the process led by `task`. Errors in the task's own fields fail it; a damaged
    /// page-table root or thread list only adds warnings.
    fn process(&self, task: Va, warnings: &mut Vec<LinuxError>) -> Result<Process, LinuxError> {
        let r = &self.tasks;
        let pid = r.tgid(task)?;
        let flags = r.flags(task)?;
        let name = r.comm(task)?;
        let ppid = r.ppid(task)?;
        let (uid, gid) = r.uid_gid(task)?;
        let mm = r.mm(task)?;
        let start_time_ns = r.start_time(task)?;
        let kernel_thread = flags & PF_KTHREAD != 0 || task == self.init_task;
        let dtb = match mm {
            Some(mm) if !kernel_thread => match self.mms.dtb(mm) {
                Ok(pa) => Some(pa),
                Err(e) => {
                    warnings.push(e);
                    None
                }
            },
            _ => None,
        };
        let threads = self.count_threads(task, warnings);
        Ok(Process {
            pid,
            ppid,
            name,
            uid,
            gid,
            dtb,
            threads,
            kernel_thread,
            start_time_ns,
            task,
            mm,
        })
    }

    /// Counts the threads of the group led by `task`; a damaged list counts what it walked
    /// (at least the leader) and adds a warning.
    fn count_threads(&self, task: Va, warnings: &mut Vec<LinuxError>) -> u32 {
        let mut walk = match self.tasks.threads(task) {
            Ok(w) => w,
            Err(e) => {
                warnings.push(e);
                return 1;
            }
        };
        let n = walk.by_ref().count();
        if let Some(w) = walk.into_warning() {
            warnings.push(w);
        }
        u32::try_from(n).unwrap_or(u32::MAX).max(1)
    }

    /// The `task_struct` of the group leader with process id `pid`.
    fn find(&self, pid: u32) -> Result<Va, LinuxError> {
        if pid == 0 {
            return Ok(self.init_task);
        }
        let mut walk = self.tasks.tasks(self.init_task)?;
        for task in walk.by_ref() {
            if self.tasks.tgid(task).ok() == Some(pid) {
                return Ok(task);
            }
        }
        // A walk cut short may have missed the process: say why rather than "no such pid".
        Err(walk
            .into_warning()
            .unwrap_or(LinuxError::NoSuchProcess(pid)))
    }
}

/// Every process of the guest: `init_task` (pid 0) first, then the task list in its order
/// (creation order, which is pid order until pids wrap).
///
/// Fails only if the profile lacks what `ps` needs or `init_task` cannot be read; everything
/// after that is best effort, with warnings.
///
/// ```no_run
/// # fn demo(session: &vmi_core::Session, kernel: &vmi_os_linux::Kernel)
/// #     -> Result<(), vmi_os_linux::LinuxError> {
/// use vmi_os_linux::analysis::ps::processes;
///
/// let ps = processes(session, kernel)?;
/// for p in ps.items.iter().filter(|p| !p.is_idle()) {
///     println!("{:>6} {:>6} {}", p.pid, p.ppid, p.name);
/// }
/// for w in &ps.warnings {
///     eprintln!("warning: {w}");
/// }
/// # Ok(()) }
/// ```
pub fn processes(session: &Session, kernel: &Kernel) -> Result<Partial<Process>, LinuxError> {
    with_ctx(session, kernel, |ctx| {
        let mut out = Partial::default();
        let init = ctx.process(ctx.init_task, &mut out.warnings)?;
        out.items.push(init);
        let mut walk = ctx.tasks.tasks(ctx.init_task)?;
        for task in walk.by_ref() {
            match ctx.process(task, &mut out.warnings) {
                Ok(p) => out.items.push(p),
                // Say which task a bare memory error is about.
                Err(LinuxError::Memory(e)) => out.warnings.push(LinuxError::Corrupt {
                    what: "task_struct",
                    at: task,
                    reason: format!("skipped, a field cannot be read: {e}"),
                }),
                Err(e) => out.warnings.push(e),
            }
        }
        if let Some(w) = walk.into_warning() {
            out.warnings.push(w);
        }
        Ok(out)
    })
}

/// The process with process id `pid` (0 is `init_task`). Warnings about its page-table root
/// or thread list are dropped here (`dtb` is then `None`, `threads` a lower bound); use
/// [`processes`] to see them.
pub fn find_process(session: &Session, kernel: &Kernel, pid: u32) -> Result<Process, LinuxError> {
    with_ctx(session, kernel, |ctx| {
        let task = ctx.find(pid)?;
        ctx.process(task, &mut Vec::new())
    })
}

/// The threads of process `pid`, in the kernel's list order (the leader first).
pub fn threads(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<Partial<Thread>, LinuxError> {
    with_ctx(session, kernel, |ctx| {
        let leader = ctx.find(pid)?;
        let r = &ctx.tasks;
        let mut out = Partial::default();
        let mut walk = r.threads(leader)?;
        for task in walk.by_ref() {
            let thread = (|| {
                Ok::<_, LinuxError>(Thread {
                    tid: r.pid(task)?,
                    tgid: r.tgid(task)?,
                    name: r.comm(task)?,
                    task,
                    start_time_ns: r.start_time(task)?,
                    start_boottime_ns: r.start_boottime(task)?,
                })
            })();
            match thread {
                Ok(t) => out.items.push(t),
                Err(e) => out.warnings.push(e),
            }
        }
        if let Some(w) = walk.into_warning() {
            out.warnings.push(w);
        }
        Ok(out)
    })
}

/// The user address space of `process`: `mm->pgd` (read again from `process.mm`) translated
/// through the kernel address space, walked in the kernel's paging mode.
///
/// With PTI the root is the kernel PGD, which maps user memory as well as the kernel; a vCPU
/// running the process in user mode shows the user PGD (`root + 0x1000`) in CR3. Kernel
/// threads have no user address space ([`LinuxError::Corrupt`] says so; their memory is the
/// kernel's, [`Kernel::space`]).
pub fn process_space(
    session: &Session,
    kernel: &Kernel,
    process: &Process,
) -> Result<AddressSpace, LinuxError> {
    let mm = user_mm(process)?;
    let offsets = MmOffsets::resolve(kernel.profile())?;
    MmReader::new(kernel.memory(session), &offsets).address_space(mm)
}

/// `process.mm`, or an error if the process has no user address space.
pub(crate) fn user_mm(process: &Process) -> Result<Va, LinuxError> {
    match process.mm {
        Some(mm) if !process.kernel_thread => Ok(mm),
        _ => Err(LinuxError::NoAddressSpace { pid: process.pid }),
    }
}
