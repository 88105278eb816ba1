//! The mounts of a process's mount namespace (`vmi mounts PID`), as its
//! `/proc/PID/mountinfo` lists them: `task->nsproxy->mnt_ns`, each mount rendered relative to
//! the task's root by [`crate::comps::mount`] (which says what is left out: the super options,
//! and what filesystems' callbacks print).
//!
//! A broken list or tree of mounts gives the mounts walked and a warning; a mount whose own
//! fields cannot be read is skipped with a warning.

use vmi_core::os::{self, Detail, Details, Mounts};
use vmi_core::{OsError, Partial, Session};

use crate::comps::mount::{MountLayout, MountReader, MountRecord};
use crate::comps::nsproxy::{NsproxyLayout, NsproxyReader};
use crate::error::LinuxError;
use crate::kernel::Kernel;
use crate::LinuxOs;

/// The mounts of the mount namespace of process `pid`, in mountinfo's order. A process
/// without a namespace (exited: no `nsproxy`) or without a root has none.
pub fn mounts(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<crate::Partial<MountRecord>, LinuxError> {
    let profile = kernel.profile();
    let layout = MountLayout::resolve_for(kernel)?;
    let ns_layout = NsproxyLayout::resolve(profile)?;
    let mem = kernel.memory(session);
    let process = crate::find_process(session, kernel, pid)?;
    let reader = MountReader::new(mem, &layout);
    let nsr = NsproxyReader::new(mem, &ns_layout);
    let mut out = crate::Partial::default();
    let Some(nsproxy) = nsr.task_nsproxy(process.task)? else {
        return Ok(out);
    };
    let Some(mnt_ns) = nsr.mnt_ns(&nsr.read(nsproxy)?)? else {
        return Ok(out);
    };
    let Some(root) = reader.task_root(process.task)? else {
        return Ok(out);
    };
    let walked = reader.namespace_mounts(mnt_ns);
    out.warnings = walked.warnings;
    for mount in walked.items {
        match reader.record(mount, root) {
            Ok(Some(r)) => out.items.push(r),
            Ok(None) => {}
            Err(e) => out.warnings.push(LinuxError::Corrupt {
                what: "mount",
                at: mount,
                reason: format!("skipped: {e}"),
            }),
        }
    }
    Ok(out)
}

/// The neutral form: mountinfo's fields; propagation, flags and the callback notes under `os`.
fn neutral_mount(m: MountRecord) -> os::Mount {
    let mut details = Details::new();
    if !m.propagation.is_empty() {
        details.insert("propagation", Detail::Text(m.propagation.join(" ")));
    }
    details.insert("mnt_flags", Detail::Int(m.flags));
    if m.source_by_callback {
        details.insert("source_by_callback", Detail::Bool(true));
    }
    if m.root_by_callback {
        details.insert("root_by_callback", Detail::Bool(true));
    }
    os::Mount {
        id: m.id,
        parent_id: m.parent_id,
        device: m.device,
        root: m.root,
        mount_point: m.mount_point,
        options: m.options,
        fs_type: m.fs_type,
        source: m.source,
        object: m.mount,
        os: details,
    }
}

impl Mounts for LinuxOs {
    fn mounts(&self, session: &Session, pid: u32) -> Result<Partial<os::Mount>, OsError> {
        self.neutral_partial(mounts(session, self.kernel(), pid), neutral_mount)
    }
}
