//! `struct task_struct`: where its fields are, resolved once from the profile, and how to read
//! them.
//!
//! Every offset comes from the profile (BTF of the guest, or an ISF); nothing here knows a
//! kernel version. The one constant is [`PF_KTHREAD`], a flag value that has not changed since
//! Linux 2.6.
//!
//! Threads: since 3.14 every thread of a group sits on `signal->thread_head`, linked through
//! `task->thread_node` (6.7 removed the older `task->thread_group` ring). Profiles without
//! `thread_node` fall back to `thread_group`.
//!
//! Every pointer read from a task is guest data: it is checked to be a kernel address before
//! it is followed, and every offset addition is checked.

use vmi_core::profile::TypeRef;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::error::LinuxError;
use crate::iter::list::{container_of, is_kernel_pointer, ListOffsets, ListWalker};

/// `PF_KTHREAD` in `task->flags`: the task is a kernel thread. Unlike `mm == NULL` (also true
/// of exited tasks, and false while a kernel thread borrows a user mm) this is the kernel's own
/// test (`is_kthread`).
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// The most bytes of `comm` read, whatever the profile claims (`TASK_COMM_LEN` is 16).
pub const MAX_COMM_LEN: usize = 64;

/// How the threads of a group are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadLinks {
    /// `signal->thread_head`, entries `task->thread_node` (3.14 and later).
    SignalList {
        /// Offset of `signal_struct.thread_head`.
        thread_head: u64,
        /// Offset of `task_struct.thread_node`.
        thread_node: u64,
    },
    /// The ring `task->thread_group` through all threads, without a separate head (before 6.7).
    GroupRing {
        /// Offset of `task_struct.thread_group`.
        thread_group: u64,
    },
}

/// Offsets of the `task_struct` fields the analyses read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `pid` (the thread id).
    pub pid: u64,
    /// `tgid` (the process id).
    pub tgid: u64,
    /// `comm`, the executable name the kernel keeps.
    pub comm: u64,
    /// Bytes of `comm` (16), capped at [`MAX_COMM_LEN`].
    pub comm_len: usize,
    /// `flags` (`PF_*`).
    pub flags: u64,
    /// `real_parent`: the parent `/proc` reports (not the ptracer).
    pub real_parent: u64,
    /// `real_cred`: the objective credentials `/proc/PID/status` reports. (`cred` differs only
    /// while a task temporarily overrides its credentials.)
    pub cred: u64,
    /// `mm`: the user address space (NULL for kernel threads and exited tasks).
    pub mm: u64,
    /// `tasks`: the list of all thread-group leaders, headed by `init_task.tasks`.
    pub tasks: u64,
    /// `signal`: the thread group's shared state.
    pub signal: u64,
    /// `start_time`: monotonic nanoseconds since boot, suspend excluded.
    pub start_time: u64,
    /// `start_boottime` (`real_start_time` before 5.5): nanoseconds since boot, suspend
    /// included; what `/proc/PID/stat` reports.
    pub start_boottime: Option<u64>,
    /// How the threads of a group are linked.
    pub threads: ThreadLinks,
}

impl TaskOffsets {
    /// Resolves the offsets from `profile`.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        let f = |name: &str| profile.field_offset("task_struct", name);
        let comm = profile.field("task_struct", "comm")?;
        let comm_len = match &comm.ty {
            TypeRef::Array { count, .. } => usize::try_from(*count).unwrap_or(MAX_COMM_LEN),
            _ => 16,
        }
        .clamp(1, MAX_COMM_LEN);
        let threads = match (
            f("thread_node"),
            profile.field_offset("signal_struct", "thread_head"),
        ) {
            (Ok(thread_node), Ok(thread_head)) => ThreadLinks::SignalList {
                thread_head,
                thread_node,
            },
            (Err(e), _) | (_, Err(e)) => match f("thread_group") {
                Ok(thread_group) => ThreadLinks::GroupRing { thread_group },
                Err(_) => return Err(e),
            },
        };
        Ok(Self {
            pid: f("pid")?,
            tgid: f("tgid")?,
            comm: comm.offset,
            comm_len,
            flags: f("flags")?,
            real_parent: f("real_parent")?,
            cred: f("real_cred").or_else(|_| f("cred"))?,
            mm: f("mm")?,
            tasks: f("tasks")?,
            signal: f("signal")?,
            start_time: f("start_time")?,
            start_boottime: f("start_boottime").or_else(|_| f("real_start_time")).ok(),
            threads,
        })
    }
}

/// Offsets of the credentials in `struct cred`: `uid.val` and `gid.val`, the real ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredOffsets {
    /// `cred.uid` plus `kuid_t.val`.
    pub uid: u64,
    /// `cred.gid` plus `kgid_t.val`.
    pub gid: u64,
}

impl CredOffsets {
    /// Resolves the offsets from `profile`.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        let inner = |field: &str, wrapper: &str| -> Result<u64, ProfileError> {
            let outer = profile.field_offset("cred", field)?;
            let val = profile.field_offset(wrapper, "val")?;
            outer
                .checked_add(val)
                .ok_or_else(|| ProfileError::MissingField {
                    ty: wrapper.to_owned(),
                    field: "val".to_owned(),
                })
        };
        Ok(Self {
            uid: inner("uid", "kuid_t")?,
            gid: inner("gid", "kgid_t")?,
        })
    }
}

/// Everything needed to read tasks, resolved once per analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLayout {
    /// `task_struct`.
    pub task: TaskOffsets,
    /// `cred`.
    pub cred: CredOffsets,
    /// `list_head`.
    pub list: ListOffsets,
}

impl TaskLayout {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        Ok(Self {
            task: TaskOffsets::resolve(profile)?,
            cred: CredOffsets::resolve(profile)?,
            list: ListOffsets::resolve(profile)?,
        })
    }
}

/// Reads `task_struct`s through a kernel address space.
#[derive(Clone, Copy)]
pub struct TaskReader<'a> {
    mem: VirtualMemory<'a>,
    layout: &'a TaskLayout,
}

impl<'a> TaskReader<'a> {
    /// A reader over `mem` (kernel virtual memory) with `layout`.
    pub fn new(mem: VirtualMemory<'a>, layout: &'a TaskLayout) -> Self {
        Self { mem, layout }
    }

    /// The kernel memory this reader reads.
    pub fn memory(&self) -> VirtualMemory<'a> {
        self.mem
    }

    /// The layout this reader uses.
    pub fn layout(&self) -> &'a TaskLayout {
        self.layout
    }

    fn at(&self, base: Va, offset: u64, what: &'static str) -> Result<Va, LinuxError> {
        base.checked_add(offset).ok_or_else(|| LinuxError::Corrupt {
            what,
            at: base,
            reason: format!("field offset {offset:#x} runs past the end of the address space"),
        })
    }

    fn u32_at(&self, base: Va, offset: u64, what: &'static str) -> Result<u32, LinuxError> {
        Ok(self.mem.read_u32(self.at(base, offset, what)?)?)
    }

    /// Reads a pointer field and checks that it is NULL or a kernel address.
    fn pointer(&self, base: Va, offset: u64, what: &'static str) -> Result<Option<Va>, LinuxError> {
        let p = self.mem.read_va(self.at(base, offset, what)?)?;
        if p.raw() == 0 {
            Ok(None)
        } else if is_kernel_pointer(self.mem.space().mode, p) {
            Ok(Some(p))
        } else {
            Err(LinuxError::Corrupt {
                what,
                at: base,
                reason: format!(
                    "pointer {p} at offset {offset:#x} is not an aligned kernel address"
                ),
            })
        }
    }

    /// A pointer field that must not be NULL.
    fn non_null(&self, base: Va, offset: u64, what: &'static str) -> Result<Va, LinuxError> {
        self.pointer(base, offset, what)?
            .ok_or_else(|| LinuxError::Corrupt {
                what,
                at: base,
                reason: format!("NULL pointer at offset {offset:#x}"),
            })
    }

    /// `task->pid`: the thread id.
    pub fn pid(&self, task: Va) -> Result<u32, LinuxError> {
        self.u32_at(task, self.layout.task.pid, "task_struct")
    }

    /// `task->tgid`: the process (thread group) id.
    pub fn tgid(&self, task: Va) -> Result<u32, LinuxError> {
        self.u32_at(task, self.layout.task.tgid, "task_struct")
    }

    /// `task->flags`.
    pub fn flags(&self, task: Va) -> Result<u32, LinuxError> {
        self.u32_at(task, self.layout.task.flags, "task_struct")
    }

    /// `task->comm` up to its first NUL; bytes that are not UTF-8 are replaced. At most
    /// [`TaskOffsets::comm_len`] bytes are read, NUL or not.
    pub fn comm(&self, task: Va) -> Result<String, LinuxError> {
        let mut buf = [0u8; MAX_COMM_LEN];
        let buf = &mut buf[..self.layout.task.comm_len];
        self.mem
            .read_exact(self.at(task, self.layout.task.comm, "task_struct")?, buf)?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }

    /// `task->real_parent`.
    pub fn real_parent(&self, task: Va) -> Result<Va, LinuxError> {
        self.non_null(task, self.layout.task.real_parent, "task_struct")
    }

    /// The process id of `task`'s parent (`real_parent->tgid`), as `/proc/PID/stat` reports it.
    pub fn ppid(&self, task: Va) -> Result<u32, LinuxError> {
        self.tgid(self.real_parent(task)?)
    }

    /// The real uid and gid of `task` (`real_cred->uid.val`, `real_cred->gid.val`).
    pub fn uid_gid(&self, task: Va) -> Result<(u32, u32), LinuxError> {
        let cred = self.non_null(task, self.layout.task.cred, "task_struct")?;
        Ok((
            self.u32_at(cred, self.layout.cred.uid, "cred")?,
            self.u32_at(cred, self.layout.cred.gid, "cred")?,
        ))
    }

    /// `task->mm`, `None` when NULL (kernel threads, exited tasks).
    pub fn mm(&self, task: Va) -> Result<Option<Va>, LinuxError> {
        self.pointer(task, self.layout.task.mm, "task_struct")
    }

    /// `task->start_time`: monotonic nanoseconds since boot.
    pub fn start_time(&self, task: Va) -> Result<u64, LinuxError> {
        let at = self.at(task, self.layout.task.start_time, "task_struct")?;
        Ok(self.mem.read_u64(at)?)
    }

    /// `task->start_boottime`, if the profile has it: nanoseconds since boot, suspend included.
    pub fn start_boottime(&self, task: Va) -> Result<Option<u64>, LinuxError> {
        match self.layout.task.start_boottime {
            Some(off) => Ok(Some(self.mem.read_u64(self.at(
                task,
                off,
                "task_struct",
            )?)?)),
            None => Ok(None),
        }
    }

    /// A walk over every thread-group leader after `init_task` (the head of the list, which is
    /// not produced). Yields `task_struct` addresses.
    pub fn tasks(&self, init_task: Va) -> Result<TaskWalk<'a>, LinuxError> {
        let head = self.at(init_task, self.layout.task.tasks, "task_struct")?;
        Ok(TaskWalk {
            walker: ListWalker::new(self.mem, self.layout.list, head, "task list"),
            member: self.layout.task.tasks,
            leader: None,
            warning: None,
        })
    }

    /// A walk over the threads of `leader`'s group, the leader included (first, for
    /// [`ThreadLinks::GroupRing`]; in list order otherwise, where it is first too).
    pub fn threads(&self, leader: Va) -> Result<TaskWalk<'a>, LinuxError> {
        match self.layout.task.threads {
            ThreadLinks::SignalList {
                thread_head,
                thread_node,
            } => {
                let signal = self.non_null(leader, self.layout.task.signal, "task_struct")?;
                let head = self.at(signal, thread_head, "signal_struct")?;
                Ok(TaskWalk {
                    walker: ListWalker::new(self.mem, self.layout.list, head, "thread list"),
                    member: thread_node,
                    leader: None,
                    warning: None,
                })
            }
            ThreadLinks::GroupRing { thread_group } => {
                let head = self.at(leader, thread_group, "task_struct")?;
                Ok(TaskWalk {
                    walker: ListWalker::new(self.mem, self.layout.list, head, "thread list"),
                    member: thread_group,
                    leader: Some(leader),
                    warning: None,
                })
            }
        }
    }
}

/// A bounded walk over tasks linked by a `list_head` member: yields `task_struct` addresses.
/// See [`ListWalker`] for how it ends on corrupted lists.
pub struct TaskWalk<'a> {
    walker: ListWalker<'a>,
    member: u64,
    leader: Option<Va>,
    warning: Option<LinuxError>,
}

impl TaskWalk<'_> {
    /// Why the walk ended early, if it did.
    pub fn into_warning(self) -> Option<LinuxError> {
        self.warning.or_else(|| self.walker.into_warning())
    }
}

impl Iterator for TaskWalk<'_> {
    type Item = Va;

    fn next(&mut self) -> Option<Va> {
        if let Some(leader) = self.leader.take() {
            return Some(leader);
        }
        if self.warning.is_some() {
            return None;
        }
        let entry = self.walker.next()?;
        match container_of(entry, self.member) {
            Some(task) => Some(task),
            None => {
                self.warning = Some(LinuxError::Corrupt {
                    what: "task list",
                    at: entry,
                    reason: format!("entry lies below its member offset {:#x}", self.member),
                });
                None
            }
        }
    }
}
