//! A process's credentials (`vmi creds PID`), as `/proc/PID/status` shows them: its ids,
//! supplementary groups, capability sets, `NoNewPrivs` and `Seccomp`, read from the group
//! leader (see [`crate::comps::cred`]).
//!
//! The neutral [`os::Credentials`] has no place for warnings: a problem with the groups (an
//! absurd `ngroups`, an unreadable array) keeps the groups read and is reported under
//! `os.warnings`.

use vmi_core::os::{self, CapabilitySets, Detail, Details, ProcessCredentials};
use vmi_core::{OsError, Session};

use crate::comps::cred::{task_creds, CredLayout, TaskCreds};
use crate::error::LinuxError;
use crate::kernel::Kernel;
use crate::LinuxOs;

/// The credentials of process `pid` and the warnings met reading them.
pub fn credentials(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<(TaskCreds, Vec<LinuxError>), LinuxError> {
    let layout = CredLayout::resolve(kernel.profile())?;
    let process = crate::find_process(session, kernel, pid)?;
    let mut warnings = Vec::new();
    let creds = task_creds(
        &kernel.memory(session),
        &layout,
        process.task,
        &mut warnings,
    )?;
    Ok((creds, warnings))
}

impl ProcessCredentials for LinuxOs {
    fn credentials(&self, session: &Session, pid: u32) -> Result<os::Credentials, OsError> {
        let (c, warnings) =
            credentials(session, self.kernel(), pid).map_err(|e| self.neutral(e))?;
        let mut details = Details::new();
        details.insert("securebits", Detail::Int(c.securebits.into()));
        details.insert("cred", Detail::Address(c.cred));
        details.insert("user_ns", Detail::Address(c.user_ns));
        if !warnings.is_empty() {
            let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
            details.insert("warnings", Detail::Text(text.join("; ")));
        }
        let [inheritable, permitted, effective, bounding, ambient] = c.caps;
        Ok(os::Credentials {
            pid,
            uid: c.uid,
            gid: c.gid,
            groups: c.groups,
            capabilities: CapabilitySets {
                inheritable,
                permitted,
                effective,
                bounding,
                ambient,
            },
            no_new_privs: c.no_new_privs,
            seccomp: c.seccomp,
            os: details,
        })
    }
}
