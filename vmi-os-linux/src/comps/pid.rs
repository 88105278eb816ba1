//! `struct pid` and `struct upid`: a task's number in each PID namespace it is in.
//!
//! `task->thread_pid` is allocated in the task's own PID namespace at depth `pid->level`, and
//! holds one `upid {nr, ns}` per level from the initial namespace (0) down to its own
//! (`numbers[level]`), so `NSpid:` of `/proc/PID/status` (read from the initial namespace) is
//! `numbers[0..=level].nr`, and `/proc/PID/ns/pid` is `numbers[level].ns`. The kernel caps
//! nesting at [`MAX_PID_NS_LEVEL`]; a larger `level` is corruption.

use vmi_core::profile::TypeRef;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{unexpected_layout, Scalar};
use crate::comps::nsproxy::{read_field, read_pointer};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;

/// `MAX_PID_NS_LEVEL` (kernel/pid_namespace.c): PID namespaces nest at most 32 deep.
pub const MAX_PID_NS_LEVEL: u64 = 32;

/// Where `task->thread_pid`, `pid.level` and `pid.numbers[]` are.
#[derive(Debug, Clone, Copy)]
pub struct PidLayout {
    task_thread_pid: Scalar,
    level: Scalar,
    numbers: u64,
    upid_size: u64,
    upid_nr: Scalar,
    upid_ns: Scalar,
}

impl PidLayout {
    /// Resolves the layout from the profile.
    pub fn resolve(profile: &Profile) -> Result<PidLayout, ProfileError> {
        let numbers = profile.field("pid", "numbers")?;
        let TypeRef::Array { element, .. } = &numbers.ty else {
            return Err(unexpected_layout("pid", "numbers", "not an array"));
        };
        let upid_size = profile
            .type_size(element)
            .filter(|&s| (12..=64).contains(&s))
            .ok_or_else(|| unexpected_layout("pid", "numbers", "upid size unexpected"))?;
        Ok(PidLayout {
            task_thread_pid: Scalar::resolve(profile, "task_struct", "thread_pid")?,
            level: Scalar::resolve(profile, "pid", "level")?,
            numbers: numbers.offset,
            upid_size,
            upid_nr: Scalar::resolve(profile, "upid", "nr")?,
            upid_ns: Scalar::resolve(profile, "upid", "ns")?,
        })
    }
}

/// A task's number in one PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidNumber {
    /// `upid.nr`.
    pub nr: u32,
    /// `upid.ns`: the `pid_namespace`.
    pub ns: Va,
}

/// The numbers of `task` in every PID namespace it is in, the initial one first (empty for a
/// task without `thread_pid`, which only an exiting task has).
pub fn task_pid_numbers(
    mem: &VirtualMemory<'_>,
    layout: &PidLayout,
    task: Va,
) -> Result<Vec<PidNumber>, LinuxError> {
    let Some(pid) = read_pointer(mem, task, layout.task_thread_pid, "task_struct")? else {
        return Ok(Vec::new());
    };
    let level = read_field(mem, pid, layout.level, "pid")?;
    if level >= MAX_PID_NS_LEVEL {
        return Err(LinuxError::Corrupt {
            what: "pid",
            at: pid,
            reason: format!("level {level} is beyond MAX_PID_NS_LEVEL ({MAX_PID_NS_LEVEL})"),
        });
    }
    let mut out = Vec::with_capacity(level as usize + 1);
    for i in 0..=level {
        let upid = pid
            .checked_add(layout.numbers)
            .and_then(|a| a.checked_add(i * layout.upid_size))
            .ok_or_else(|| LinuxError::Corrupt {
                what: "pid",
                at: pid,
                reason: "numbers[] overflows".into(),
            })?;
        let nr = read_field(mem, upid, layout.upid_nr, "upid")? as u32;
        let ns = Va::new(read_field(mem, upid, layout.upid_ns, "upid")?);
        if !is_kernel_pointer(mem.space().mode, ns) {
            return Err(LinuxError::Corrupt {
                what: "upid",
                at: upid,
                reason: format!("namespace pointer {ns} is not an aligned kernel address"),
            });
        }
        out.push(PidNumber { nr, ns });
    }
    Ok(out)
}
