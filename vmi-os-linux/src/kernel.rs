//! A Linux kernel bound to a session: its symbols and types, and where it was loaded.

use vmi_core::{AddressSpace, Profile, Session, Va, VirtualMemory};

use crate::error::LinuxError;
use crate::kernel_space::RootSource;

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
    root_source: RootSource,
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
            root_source: RootSource::VcpuCr3,
            banner,
        }
    }

    /// Moves kernel reads onto the kernel's own page tables, `init_top_pgt`, when the profile
    /// names it and it maps the banner at `banner` as the current space does (see
    /// [`crate::kernel_space`]); else keeps the current space, which came about as `current`
    /// says.
    pub fn use_own_space(&mut self, session: &Session, banner: Va, current: RootSource) {
        self.root_source = current;
        let Ok(init_top_pgt) = self.symbol("init_top_pgt") else {
            return;
        };
        if current == RootSource::PhysicalScan || current == RootSource::Vmcoreinfo {
            // Those spaces are init_top_pgt already.
            return;
        }
        if let Some(own) = crate::kernel_space::own_space(session, self.space, init_top_pgt, banner)
        {
            self.space = own;
            self.root_source = RootSource::InitTopPgt;
        }
    }

    /// Where the kernel's page-table root came from.
    pub fn root_source(&self) -> RootSource {
        self.root_source
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

    /// The address space kernel addresses are read in: `init_top_pgt` when it could be used
    /// ([`Kernel::root_source`]).
    pub fn space(&self) -> AddressSpace {
        self.space
    }

    /// The kernel's banner (`Linux version ...`), as found in memory.
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// The run-time address of a symbol. Only addresses in the kernel image's range are
    /// slid: per-CPU symbols are offsets into each CPU's area (add the CPU's GS base or
    /// `__per_cpu_offset[cpu]`), and other absolute symbols are not relocated by KASLR.
    pub fn symbol(&self, name: &str) -> Result<Va, LinuxError> {
        let link = self.profile.symbol_address(name)?;
        Ok(Va::new(relocate(link, self.virtual_slide)))
    }

    /// A reader of kernel virtual memory.
    pub fn memory<'a>(&self, session: &'a Session) -> VirtualMemory<'a> {
        session.virtual_memory(self.space)
    }
}

/// The start of the x86-64 kernel image mapping (`__START_KERNEL_map`); KASLR moves the image
/// within the 1 GiB above it, and only symbols there.
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

fn relocate(link: u64, slide: u64) -> u64 {
    if link >= START_KERNEL_MAP {
        link.wrapping_add(slide)
    } else {
        link
    }
}

#[cfg(test)]
mod tests {
    use super::relocate;

    #[test]
    fn per_cpu_offsets_are_not_slid() {
        assert_eq!(relocate(0x31540, 0x3700_0000), 0x31540);
        assert_eq!(
            relocate(0xffff_ffff_82a1_aa40, 0x3700_0000),
            0xffff_ffff_b9a1_aa40
        );
    }
}
