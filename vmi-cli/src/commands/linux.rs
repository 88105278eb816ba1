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

/// Arguments of `vmi isf-export`.
#[derive(Debug, clap::Args)]
pub struct IsfExportArgs {
    /// Where to write the ISF (JSON).
    out: std::path::PathBuf,
}

#[derive(Serialize)]
struct ExportOut<'a> {
    path: &'a std::path::Path,
    symbols: usize,
    user_types: usize,
    banner: &'a str,
}

/// `vmi isf-export OUT.json`.
pub fn isf_export(ctx: &Context<'_>, args: &IsfExportArgs) -> Result<(), BoxError> {
    let kernel = kernel(ctx)?;
    let doc = vmi_os_linux::isf_export::export(ctx.session, kernel)?;
    let bytes = serde_json::to_vec(&doc)?;
    // Write then rename: a half-written symbol table would mislead Volatility later.
    let tmp = args.out.with_extension("json.partial");
    std::fs::write(&tmp, &bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    let out = ExportOut {
        path: &args.out,
        symbols: doc.symbols.len(),
        user_types: doc.user_types.len(),
        banner: kernel.banner().trim_end(),
    };
    output::emit(ctx.format, &out, || {
        format!(
            "wrote {} ({} symbols, {} types) for {}\n",
            out.path.display(),
            out.symbols,
            out.user_types,
            out.banner
        )
    })
}
