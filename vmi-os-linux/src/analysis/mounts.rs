//! PLACEHOLDER: being written (issue 11). Mounts for [`LinuxOs`].

use vmi_core::os::{self, Mounts};
use vmi_core::{OsError, Partial, Session};

use crate::LinuxOs;

impl Mounts for LinuxOs {
    fn mounts(&self, _session: &Session, _pid: u32) -> Result<Partial<os::Mount>, OsError> {
        Err(OsError::os("mounts: not written yet"))
    }
}
