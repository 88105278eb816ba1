//! Commands that need a Linux kernel bound to the session.

use serde::Serialize;
use vmi_core::{AddressSpace, BoxError, Pa, Session, Va};
use vmi_os_linux::Kernel;

use super::Context;
use crate::output;

/// The kernel bound to the session, or an error saying none was found.
pub fn kernel<'a>(ctx: &Context<'a>) -> Result<&'a Kernel, BoxError> {
    vmi_os_linux::linux(ctx.session)
        .map(|os| os.kernel())
        .ok_or_else(|| "no Linux kernel was found in the target".into())
}

/// The address space kernel addresses are read in: vCPU 0's, with PTI's kernel half.
pub fn kernel_space(session: &Session) -> Result<AddressSpace, BoxError> {
    let space = session.vcpu_address_space(0)?;
    Ok(AddressSpace {
        root: Pa::new(space.root.raw() & !0x1000),
        ..space
    })
}

/// Arguments of `vmi symbol`.
#[derive(Debug, clap::Args)]
pub struct SymbolArgs {
    /// The symbol's name.
    name: String,
}

#[derive(Serialize)]
struct SymbolOut<'a> {
    name: &'a str,
    address: Va,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    link_address: u64,
}

/// `vmi symbol NAME`.
pub fn symbol(ctx: &Context<'_>, args: &SymbolArgs) -> Result<(), BoxError> {
    let kernel = kernel(ctx)?;
    let address = kernel.symbol(&args.name)?;
    let out = SymbolOut {
        name: &args.name,
        address,
        link_address: kernel.profile().symbol_address(&args.name)?,
    };
    output::emit(ctx.format, &out, || format!("{address} {}\n", args.name))
}
