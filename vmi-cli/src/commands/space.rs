//! Choosing the address space a virtual address is read in.

use vmi_core::{AddressSpace, BoxError, Pa, PagingMode};

use super::parse_u64;

/// Options that select an address space.
#[derive(Debug, clap::Args)]
pub struct SpaceArgs {
    /// Use this process's address space (needs the guest OS).
    #[arg(long, value_name = "PID", conflicts_with_all = ["vcpu", "dtb", "paging_mode"])]
    pub pid: Option<u32>,
    /// Use this vCPU's CR3 and paging mode.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub vcpu: usize,
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
    /// The address space these options name.
    pub fn resolve(&self, ctx: &super::Context<'_>) -> Result<AddressSpace, BoxError> {
        if let Some(pid) = self.pid {
            return super::linux::process_space(ctx, pid);
        }
        let session = ctx.session;
        let from_vcpu = || session.vcpu_address_space(self.vcpu);
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
