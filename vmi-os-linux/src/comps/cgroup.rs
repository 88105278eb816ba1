//! `struct css_set`, `struct cgroup` and `struct kernfs_node`: a task's cgroup v2 path, the
//! `0::PATH` line of `/proc/PID/cgroup`.
//!
//! `task->cgroups` is the task's `css_set`; its `dfl_cgrp` is its cgroup on the default (v2)
//! hierarchy, whose directory is the kernfs node `cgrp->kn`. The path is the names of the
//! nodes up the `parent` chain (renamed `__parent` in 6.15), the hierarchy's root (no parent)
//! excluded: `/` for the root cgroup. The kernel prints it relative to the reading task's
//! cgroup namespace root; here it is relative to the hierarchy root, which is what a reader
//! in the initial cgroup namespace sees. v1 hierarchies (`N:controllers:PATH` lines) are not
//! read.
//!
//! The chain is guest data: it is cut at [`MAX_CGROUP_DEPTH`] nodes or `PATH_MAX` bytes (a
//! parent cycle ends there), names at `NAME_MAX` bytes.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::file::{NAME_MAX, PATH_MAX};
use crate::comps::layout::Scalar;
use crate::comps::nsproxy::read_pointer;
use crate::error::LinuxError;

/// The deepest cgroup path followed (cgroup.max.depth is unlimited by default, but a path is
/// at most `PATH_MAX` bytes, so at most 2048 levels).
pub const MAX_CGROUP_DEPTH: usize = 2048;

/// Where `task->cgroups`, `css_set.dfl_cgrp`, `cgroup.kn` and the kernfs node's parent and
/// name are.
#[derive(Debug, Clone, Copy)]
pub struct CgroupLayout {
    task_cgroups: Scalar,
    dfl_cgrp: Scalar,
    cgroup_kn: Scalar,
    kn_parent: Scalar,
    kn_name: Scalar,
}

impl CgroupLayout {
    /// Resolves the layout from the profile.
    pub fn resolve(profile: &Profile) -> Result<CgroupLayout, ProfileError> {
        Ok(CgroupLayout {
            task_cgroups: Scalar::resolve(profile, "task_struct", "cgroups")?,
            dfl_cgrp: Scalar::resolve(profile, "css_set", "dfl_cgrp")?,
            cgroup_kn: Scalar::resolve(profile, "cgroup", "kn")?,
            kn_parent: Scalar::resolve(profile, "kernfs_node", "parent")
                .or_else(|_| Scalar::resolve(profile, "kernfs_node", "__parent"))?,
            kn_name: Scalar::resolve(profile, "kernfs_node", "name")?,
        })
    }
}

/// The cgroup v2 path of `task` (`/` for the root cgroup), or `None` when it has no
/// `css_set` or cgroup (an exiting task).
pub fn task_cgroup_path(
    mem: &VirtualMemory<'_>,
    layout: &CgroupLayout,
    task: Va,
) -> Result<Option<String>, LinuxError> {
    let Some(cset) = read_pointer(mem, task, layout.task_cgroups, "task_struct")? else {
        return Ok(None);
    };
    let Some(cgrp) = read_pointer(mem, cset, layout.dfl_cgrp, "css_set")? else {
        return Ok(None);
    };
    let Some(kn) = read_pointer(mem, cgrp, layout.cgroup_kn, "cgroup")? else {
        return Ok(None);
    };
    kernfs_path(mem, layout, kn).map(Some)
}

/// The path of the kernfs node `kn` from its hierarchy's root.
pub fn kernfs_path(
    mem: &VirtualMemory<'_>,
    layout: &CgroupLayout,
    kn: Va,
) -> Result<String, LinuxError> {
    let mut names: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut cur = kn;
    loop {
        let Some(parent) = read_pointer(mem, cur, layout.kn_parent, "kernfs_node")? else {
            break; // the root: its name is not part of the path
        };
        if names.len() >= MAX_CGROUP_DEPTH || parent == cur {
            return Err(LinuxError::Unbounded {
                what: "parent chain of a cgroup's kernfs node",
                head: kn,
                limit: MAX_CGROUP_DEPTH,
            });
        }
        let name_at = read_pointer(mem, cur, layout.kn_name, "kernfs_node")?.ok_or_else(|| {
            LinuxError::Corrupt {
                what: "kernfs_node",
                at: cur,
                reason: "NULL name".into(),
            }
        })?;
        let name = mem.read_cstr(name_at, NAME_MAX as usize)?;
        total = total.saturating_add(name.len() + 1);
        if total > PATH_MAX {
            return Err(LinuxError::Unbounded {
                what: "path of a cgroup (bytes)",
                head: kn,
                limit: PATH_MAX,
            });
        }
        names.push(name);
        cur = parent;
    }
    if names.is_empty() {
        return Ok("/".to_owned());
    }
    let mut path = String::with_capacity(total);
    for n in names.iter().rev() {
        path.push('/');
        path.push_str(n);
    }
    Ok(path)
}
