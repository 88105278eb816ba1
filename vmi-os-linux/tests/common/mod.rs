//! Shared helpers of the Linux tests on real guests (found and parsed by `vmi-fixtures`):
//! opening sessions and kernels.

#![allow(dead_code, unused_imports)] // each test file uses a different part

use vmi_arch_x86 as _;
use vmi_backend_file as _;
use vmi_core::{OpenOptions, Session};
use vmi_os_linux::Kernel;

pub use vmi_fixtures::{comm_matches, guests, Guest, TargetTruth, TaskTruth};

/// Opening real guests as sessions and kernels.
pub trait GuestExt {
    /// A session on the guest's ELF dump.
    fn session(&self) -> Session;
    /// The kernel found from the guest's own memory (kallsyms + BTF).
    fn kernel(&self, session: &Session) -> Kernel;
}

impl GuestExt for Guest {
    fn session(&self) -> Session {
        Session::open(self.elf().to_str().unwrap(), &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    fn kernel(&self, session: &Session) -> Kernel {
        vmi_os_linux::discover(session).unwrap_or_else(|e| panic!("{}: discover: {e}", self.name))
    }
}
