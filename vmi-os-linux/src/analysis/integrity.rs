//! PLACEHOLDER: being written (issue 11). IntegrityChecks for [`LinuxOs`].

use vmi_core::os::{self, IntegrityChecks};
use vmi_core::{OsError, Partial, Session};

use crate::LinuxOs;

impl IntegrityChecks for LinuxOs {
    fn integrity_checks(&self) -> Vec<&'static str> {
        Vec::new()
    }
    fn check_integrity(
        &self,
        _session: &Session,
        _checks: &[String],
    ) -> Result<Partial<os::Finding>, OsError> {
        Err(OsError::os("integrity: not written yet"))
    }
}
