//! `vmi lsof [PID]`: every file descriptor of every process (or of one), as `/proc/PID/fd`
//! and `/proc/PID/fdinfo/FD` show them.
//!
//! For each thread-group leader on the task list (not `init_task`, which `/proc` does not
//! list) the descriptor table `task->files` is walked ([`crate::comps::fdtable`]); threads
//! share it, so the leader's is the process's. Each descriptor's `struct file` is read once
//! ([`open_file_state`]), and a file shared by several descriptors or processes (inherited
//! across `fork`) is rendered once per run. The fields are those of fs/proc/fd.c:
//!
//! - the link target: `d_path` of `f_path`, pseudo files through their `d_dname` callback
//!   (`pipe:[INO]`, `socket:[INO]`, `anon_inode:[eventfd]`, `/memfd:NAME (deleted)`; see
//!   [`crate::comps::file`]), relative to the root of the file's own mount namespace;
//! - `pos:` `f_pos`; `flags:` `f_flags`, plus `O_CLOEXEC` when the descriptor's
//!   `close_on_exec` bit is set (`seq_show`); `mnt_id:` `real_mount(f_path.mnt)->mnt_id`;
//!   `ino:` `file_inode(file)->i_ino`.
//!
//! Not reproduced: the extra lines some files add to fdinfo (`eventfd-count:`, `tfd:` of an
//! epoll, `inotify` marks). A path is resolved against the namespace root, not the reader's
//! chroot (the kernel resolves against the reader's root; a reader outside any chroot sees
//! the same).
//!
//! Bounds: the task walk's entry and time bounds ([`crate::iter::list`]); per table those of
//! [`crate::comps::fdtable`]; at most [`MAX_BAD_FILES`] unreadable files per process (then
//! the process's remaining descriptors are skipped, with a warning), at most
//! [`MAX_OPEN_FILES`] descriptors in all, and the whole analysis within
//! [`crate::iter::list::MAX_LIST_TIME`].

use std::ops::ControlFlow;
use std::time::Instant;

use rustc_hash::FxHashMap;
use vmi_core::os::{self, Detail, Details, FileKind, OpenFiles};
use vmi_core::{OsError, Partial as NeutralPartial, Session, Va, VirtualMemory};

use crate::comps::fdtable::{for_each_fd, task_files, FdLimits, FdTableOffsets, OpenFd};
use crate::comps::file::{open_file_state, OpenFileOffsets, OpenFileState};
use crate::comps::task::{TaskLayout, TaskReader};
use crate::error::LinuxError;
use crate::iter::list::MAX_LIST_TIME;
use crate::kernel::Kernel;
use crate::partial::Partial;
use crate::LinuxOs;

/// `O_CLOEXEC`, which fdinfo adds to `flags:` for a descriptor marked close-on-exec.
pub const O_CLOEXEC: u32 = 0o2000000;

/// The most descriptors listed in one run: above real systems (a busy server holds some
/// 100,000), small enough to bound the result's memory (some 100 bytes each, plus the path).
pub const MAX_OPEN_FILES: usize = 1 << 18;

/// Files of one process that cannot be read before the rest of its table is skipped.
pub const MAX_BAD_FILES: usize = 16;

/// One open descriptor of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdEntry {
    /// The process.
    pub pid: u32,
    /// The descriptor number.
    pub fd: u32,
    /// The `struct file`.
    pub file: Va,
    /// What `/proc/PID/fd/FD` and fdinfo show of it (`state.flags` without `O_CLOEXEC`).
    pub state: OpenFileState,
    /// Whether the descriptor is close-on-exec.
    pub close_on_exec: bool,
}

impl FdEntry {
    /// `flags:` as fdinfo prints it: `f_flags`, plus `O_CLOEXEC` for a close-on-exec
    /// descriptor.
    pub fn fdinfo_flags(&self) -> u32 {
        if self.close_on_exec {
            self.state.flags | O_CLOEXEC
        } else {
            self.state.flags
        }
    }

    /// The kind of file, from the inode's type bits (`S_IFMT`); anonymous inodes, which have
    /// none on some kernels (and `S_IFREG` on others), are told by their `anon_inode:` name.
    pub fn kind(&self) -> FileKind {
        if self.state.path.starts_with("anon_inode:") {
            return FileKind::Anonymous;
        }
        match self.state.mode & 0o170000 {
            0o140000 => FileKind::Socket,
            0o120000 => FileKind::Symlink,
            0o100000 => FileKind::Regular,
            0o060000 => FileKind::BlockDevice,
            0o040000 => FileKind::Directory,
            0o020000 => FileKind::CharDevice,
            0o010000 => FileKind::Fifo,
            _ => FileKind::Unknown,
        }
    }
}

/// Everything [`open_files`] needs from the profile, resolved once.
#[derive(Debug, Clone)]
pub struct LsofLayout {
    tasks: TaskLayout,
    fdtable: FdTableOffsets,
    file: OpenFileOffsets,
    init_task: Va,
}

impl LsofLayout {
    /// Resolves the layout for `kernel`.
    pub fn resolve(kernel: &Kernel) -> Result<LsofLayout, LinuxError> {
        Ok(LsofLayout {
            tasks: TaskLayout::resolve(kernel.profile())?,
            fdtable: FdTableOffsets::resolve(kernel.profile())?,
            file: OpenFileOffsets::resolve(kernel)?,
            init_task: kernel.symbol("init_task")?,
        })
    }
}

/// The open descriptors of process `pid`, or of every process when `None`, by pid then fd.
///
/// An unknown `pid` is [`LinuxError::NoSuchProcess`]; a kernel thread has none.
///
/// ```no_run
/// # fn demo(session: &vmi_core::Session, kernel: &vmi_os_linux::Kernel)
/// #     -> Result<(), vmi_os_linux::LinuxError> {
/// let fds = vmi_os_linux::analysis::lsof::open_files(session, kernel, Some(1))?;
/// for f in &fds.items {
///     println!("{} {} {:o} {}", f.pid, f.fd, f.fdinfo_flags(), f.state.path);
/// }
/// # Ok(()) }
/// ```
pub fn open_files(
    session: &Session,
    kernel: &Kernel,
    pid: Option<u32>,
) -> Result<Partial<FdEntry>, LinuxError> {
    let layout = LsofLayout::resolve(kernel)?;
    open_files_with(&kernel.memory(session), &layout, pid, &FdLimits::default())
}

/// [`open_files`] with a resolved layout and explicit table bounds.
pub fn open_files_with(
    mem: &VirtualMemory<'_>,
    layout: &LsofLayout,
    pid: Option<u32>,
    limits: &FdLimits,
) -> Result<Partial<FdEntry>, LinuxError> {
    if pid == Some(0) {
        // The idle task is no process /proc knows.
        return Err(LinuxError::NoSuchProcess(0));
    }
    let tasks = TaskReader::new(*mem, &layout.tasks);
    let mut run = Run {
        mem,
        layout,
        limits,
        started: Instant::now(),
        rendered: FxHashMap::default(),
        out: Partial::default(),
        stopped: false,
    };
    let mut found = false;
    let mut walk = tasks.tasks(layout.init_task)?;
    for task in walk.by_ref() {
        let tgid = match tasks.tgid(task) {
            Ok(t) => t,
            Err(e) => {
                run.out.warnings.push(in_context("task_struct", task, e));
                continue;
            }
        };
        if pid.is_some_and(|p| p != tgid) {
            continue;
        }
        found = true;
        run.process(tgid, task);
        if run.stopped || pid.is_some() {
            break;
        }
    }
    let walk_warning = walk.into_warning();
    if let Some(p) = pid.filter(|_| !found) {
        // A walk cut short may have missed the process: say why rather than "no such pid".
        return Err(walk_warning.unwrap_or(LinuxError::NoSuchProcess(p)));
    }
    let mut out = run.out;
    out.warnings.extend(walk_warning);
    out.items.sort_by_key(|e| (e.pid, e.fd));
    Ok(out)
}

/// The state of one run: the results so far and the files already rendered.
struct Run<'m, 'a> {
    mem: &'m VirtualMemory<'a>,
    layout: &'m LsofLayout,
    limits: &'m FdLimits,
    started: Instant,
    rendered: FxHashMap<Va, OpenFileState>,
    out: Partial<FdEntry>,
    stopped: bool,
}

impl Run<'_, '_> {
    /// Lists the descriptors of the process `pid` led by `task`.
    fn process(&mut self, pid: u32, task: Va) {
        let (mem, layout, limits) = (self.mem, self.layout, self.limits);
        let mut bad = 0usize;
        let walk = task_files(mem, &layout.fdtable, task).and_then(|files| match files {
            Some(files) => for_each_fd(mem, &layout.fdtable, files, limits, |fd| {
                self.descriptor(pid, task, fd, &mut bad)
            }),
            None => Ok(Vec::new()),
        });
        match walk {
            Ok(warnings) => self.out.warnings.extend(warnings),
            Err(e) => self
                .out
                .warnings
                .push(in_context("descriptor table of a task", task, e)),
        }
    }

    /// Adds descriptor `fd` of process `pid`; breaks when the process's table or the whole
    /// run must stop (`bad` counts the files of this process that could not be read).
    fn descriptor(&mut self, pid: u32, task: Va, fd: OpenFd, bad: &mut usize) -> ControlFlow<()> {
        if self.out.items.len() >= MAX_OPEN_FILES {
            self.out.warnings.push(LinuxError::Unbounded {
                what: "open files of all processes",
                head: task,
                limit: MAX_OPEN_FILES,
            });
            self.stopped = true;
            return ControlFlow::Break(());
        }
        let elapsed = self.started.elapsed();
        if elapsed > MAX_LIST_TIME {
            self.out.warnings.push(LinuxError::TimedOut {
                what: "open files of all processes",
                head: task,
                entries: self.out.items.len(),
                elapsed,
                limit: MAX_LIST_TIME,
                inherited: false,
            });
            self.stopped = true;
            return ControlFlow::Break(());
        }
        let state = match self.rendered.get(&fd.file) {
            Some(s) => s.clone(),
            None => match open_file_state(self.mem, &self.layout.file, fd.file) {
                Ok(s) => {
                    self.rendered.insert(fd.file, s.clone());
                    s
                }
                Err(e) => {
                    self.out.warnings.push(LinuxError::Corrupt {
                        what: "file",
                        at: fd.file,
                        reason: format!("pid {pid} fd {}: {e}", fd.fd),
                    });
                    *bad += 1;
                    if *bad >= MAX_BAD_FILES {
                        self.out.warnings.push(LinuxError::Corrupt {
                            what: "descriptor table of a task",
                            at: task,
                            reason: format!(
                                "pid {pid}: {bad} files cannot be read, the rest of its \
                                 descriptors are skipped"
                            ),
                        });
                        return ControlFlow::Break(());
                    }
                    return ControlFlow::Continue(());
                }
            },
        };
        self.out.items.push(FdEntry {
            pid,
            fd: fd.fd,
            file: fd.file,
            state,
            close_on_exec: fd.close_on_exec,
        });
        ControlFlow::Continue(())
    }
}

/// A warning that says which structure a failed read was for.
fn in_context(what: &'static str, at: Va, e: LinuxError) -> LinuxError {
    match e {
        LinuxError::Memory(m) => LinuxError::Corrupt {
            what,
            at,
            reason: format!("cannot be read: {m}"),
        },
        other => other,
    }
}

impl From<FdEntry> for os::OpenFile {
    fn from(e: FdEntry) -> os::OpenFile {
        let mut details = Details::new();
        details.insert("mnt_id", Detail::Int(e.state.mnt_id.into()));
        details.insert("mode", Detail::Int(e.state.mode.into()));
        os::OpenFile {
            pid: e.pid,
            fd: e.fd.into(),
            kind: e.kind(),
            position: e.state.pos,
            flags: e.fdinfo_flags().into(),
            inode: Some(e.state.inode),
            object: e.file,
            path: e.state.path,
            os: details,
        }
    }
}

impl OpenFiles for LinuxOs {
    fn open_files(
        &self,
        session: &Session,
        pid: Option<u32>,
    ) -> Result<NeutralPartial<os::OpenFile>, OsError> {
        self.neutral_partial(open_files(session, self.kernel(), pid), os::OpenFile::from)
    }
}
