//! `struct open_how` (5.6 and later): how `openat2` (and, since 5.6, every open through
//! `do_sys_openat2`) opens a file. `do_sys_openat2(dfd, filename, how)` takes a kernel copy
//! (built by `build_open_how` for `open`/`openat`, copied from the user for `openat2`), so
//! `how` is read from kernel memory.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{struct_size, Scalar, StructBuf};
use crate::error::LinuxError;

/// Where `open_how.flags` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenHowLayout {
    /// `sizeof(struct open_how)` (24).
    pub size: usize,
    /// `flags` (`O_*`, a `u64`).
    pub flags: Scalar,
}

impl OpenHowLayout {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        Ok(Self {
            size: struct_size(profile, "open_how")?,
            flags: Scalar::resolve(profile, "open_how", "flags")?,
        })
    }

    /// `how->flags` of the `open_how` at `how` (a kernel address).
    pub fn flags(&self, mem: &VirtualMemory<'_>, how: Va) -> Result<u64, LinuxError> {
        StructBuf::read(mem, "open_how", how, self.size)?.get(self.flags)
    }
}
