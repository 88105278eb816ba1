//! PLACEHOLDER: being written (issue 11). Namespaces for [`LinuxOs`].

use vmi_core::os::{self, Namespaces};
use vmi_core::{OsError, Partial, Session};

use crate::LinuxOs;

impl Namespaces for LinuxOs {
    fn namespaces(&self, _session: &Session) -> Result<Partial<os::ProcessNamespaces>, OsError> {
        Err(OsError::os("namespaces: not written yet"))
    }
}
