//! PLACEHOLDER: being written (issue 11). OpenFiles for [`LinuxOs`].

use vmi_core::os::{self, OpenFiles};
use vmi_core::{OsError, Partial, Session};

use crate::LinuxOs;

impl OpenFiles for LinuxOs {
    fn open_files(
        &self,
        _session: &Session,
        _pid: Option<u32>,
    ) -> Result<Partial<os::OpenFile>, OsError> {
        Err(OsError::os("lsof: not written yet"))
    }
}
