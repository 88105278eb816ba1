//! A Linux kernel bound to a session: its symbols and types, and where it was loaded.

use vmi_core::{AddressSpace, Profile, Session, Va, VirtualMemory};

use crate::error::LinuxError;

/// A Linux kernel found in a guest: the profile (symbols at link-time addresses, types) and
/// the KASLR slide that maps them to run time.
///
/// Every analysis takes a `Kernel`; where its profile came from (the guest's own BTF and
/// kallsyms, a Volatility 3 ISF, a System.map) does not matter to them.
#[derive(Debug, Clone)]
pub struct Kernel {
    profile: Profile,
    virtual_slide: u64,
    space: AddressSpace,
    banner: String,
}

impl Kernel {
    /// A kernel whose symbols are `profile`'s link-time addresses plus `virtual_slide`
    /// (wrapping: a slide is a two's-complement distance), read in `space` (any address space
    /// of the guest maps the kernel half; vCPU 0's is the usual choice).
    pub fn new(profile: Profile, virtual_slide: u64, space: AddressSpace, banner: String) -> Self {
        Self {
            profile,
            virtual_slide,
            space,
            banner,
        }
    }

    /// Starts recording which symbols and types the analyses look up (for the cache).
    pub fn record_accesses(&mut self) {
        self.profile.record_accesses();
    }

    /// Symbols and types.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Run-time minus link-time address of the kernel image.
    pub fn virtual_slide(&self) -> u64 {
        self.virtual_slide
    }

    /// The address space kernel addresses are read in.
    pub fn space(&self) -> AddressSpace {
        self.space
    }

    /// The kernel's banner (`Linux version ...`), as found in memory.
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// The run-time address of a symbol.
    pub fn symbol(&self, name: &str) -> Result<Va, LinuxError> {
        let link = self.profile.symbol_address(name)?;
        Ok(Va::new(link.wrapping_add(self.virtual_slide)))
    }

    /// A reader of kernel virtual memory.
    pub fn memory<'a>(&self, session: &'a Session) -> VirtualMemory<'a> {
        session.virtual_memory(self.space)
    }
}
