//! Choosing the address space a virtual address is read in.

use vmi_core::{AddressSpace, BoxError, Pa, PagingMode, Va};

use super::parse_u64;

/// Options that select an address space.
#[derive(Debug, clap::Args)]
pub struct SpaceArgs {
    /// Use this process's address space (needs the guest OS).
    #[arg(long, value_name = "PID", conflicts_with_all = ["vcpu", "dtb", "paging_mode"])]
    pub pid: Option<u32>,
    /// Use this vCPU's CR3 and paging mode (default: the kernel's own page tables for kernel
    /// addresses once the guest OS is known, else vCPU 0's).
    #[arg(long, value_name = "N")]
    pub vcpu: Option<usize>,
    /// Walk this page-table root instead of the vCPU's CR3 (hex physical address).
    #[arg(long, value_parser = parse_u64, value_name = "PA")]
    pub dtb: Option<u64>,
    /// Paging mode for --dtb when the target has no vCPU registers (raw and LiME dumps).
    #[arg(long, value_parser = parse_mode, value_name = "MODE")]
    pub paging_mode: Option<PagingMode>,
}

fn parse_mode(s: &str) -> Result<PagingMode, String> {
    [
        PagingMode::Legacy,
        PagingMode::Pae,
        PagingMode::Ia32e4,
        PagingMode::Ia32e5,
        PagingMode::Disabled,
    ]
    .into_iter()
    .find(|m| m.name() == s)
    .ok_or_else(|| format!("unknown paging mode `{s}` (legacy, pae, ia32e-4, ia32e-5, none)"))
}

impl SpaceArgs {
    /// Whether no option names a space, so the address alone decides (see [`Self::resolve`]).
    pub fn is_default(&self) -> bool {
        self.pid.is_none()
            && self.vcpu.is_none()
            && self.dtb.is_none()
            && self.paging_mode.is_none()
    }

    /// The address space these options name for `va`. With none given, a kernel address of a
    /// guest whose OS is known is read through the kernel's own page tables (a vCPU caught in
    /// user mode under PTI runs on page tables that map almost none of the kernel); any other
    /// address goes through vCPU 0's.
    pub fn resolve(&self, ctx: &super::Context<'_>, va: Va) -> Result<AddressSpace, BoxError> {
        if let Some(pid) = self.pid {
            return super::os::process_space(ctx, pid);
        }
        let session = ctx.session;
        if self.is_default() {
            if let Some(os) = session.os().filter(|os| os.is_kernel_address(va)) {
                return Ok(os.kernel_space());
            }
        }
        let from_vcpu = || session.vcpu_address_space(self.vcpu.unwrap_or(0));
        match (self.dtb, self.paging_mode) {
            (Some(dtb), Some(mode)) => Ok(AddressSpace {
                root: Pa::new(dtb),
                mode,
            }),
            (Some(dtb), None) => Ok(AddressSpace {
                root: Pa::new(dtb),
                mode: from_vcpu()?.mode,
            }),
            (None, Some(mode)) => Ok(AddressSpace {
                root: from_vcpu()?.root,
                mode,
            }),
            (None, None) => Ok(from_vcpu()?),
        }
    }
}
