//! PLACEHOLDER: being written (issue 11). Sockets for [`LinuxOs`].

use vmi_core::os::{self, Sockets};
use vmi_core::{OsError, Partial, Session};

use crate::LinuxOs;

impl Sockets for LinuxOs {
    fn sockets(&self, _session: &Session) -> Result<Partial<os::Socket>, OsError> {
        Err(OsError::os("sockets: not written yet"))
    }
}
