//! PLACEHOLDER: being written (issue 11). ProcessCredentials for [`LinuxOs`].

use vmi_core::os::{self, ProcessCredentials};
use vmi_core::{OsError, Session};

use crate::LinuxOs;

impl ProcessCredentials for LinuxOs {
    fn credentials(&self, _session: &Session, _pid: u32) -> Result<os::Credentials, OsError> {
        Err(OsError::os("creds: not written yet"))
    }
}
