//! `vmi read ADDR LEN`: hex-dump guest memory.

use serde::Serialize;
use vmi_core::{BoxError, Pa, Va};

use super::space::SpaceArgs;
use super::{parse_u64, Context};
use crate::output;

/// Reads larger than this are refused: the output is a hex dump for people and scripts, and
/// the length must not let a typo allocate the host's memory away.
const MAX_READ: u64 = 64 << 20;

/// Arguments of `vmi read`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address: virtual unless --phys (a kernel address goes through the kernel's own page
    /// tables, any other through vCPU 0's, unless --pid, --vcpu or --dtb say otherwise).
    #[arg(value_parser = parse_u64)]
    addr: u64,
    /// Number of bytes (at most 64 MiB).
    #[arg(value_parser = parse_u64)]
    len: u64,
    /// ADDR is a guest-physical address.
    #[arg(long, conflicts_with_all = ["vcpu", "dtb", "paging_mode", "pid"])]
    pub phys: bool,
    #[command(flatten)]
    pub space: SpaceArgs,
}

#[derive(Serialize)]
struct Output {
    addr: String,
    space: &'static str,
    bytes: String,
}

pub fn run(ctx: &Context<'_>, args: &Args) -> Result<(), BoxError> {
    if args.len > MAX_READ {
        return Err(format!(
            "length {:#x} exceeds the {MAX_READ:#x}-byte limit of `read`",
            args.len
        )
        .into());
    }
    let mut buf = vec![0u8; usize::try_from(args.len)?];
    if args.phys {
        ctx.session.memory().read(Pa::new(args.addr), &mut buf)?;
    } else {
        let space = args.space.resolve(ctx, Va::new(args.addr))?;
        ctx.session
            .virtual_memory(space)
            .read_exact(Va::new(args.addr), &mut buf)?;
    }
    let out = Output {
        addr: format!("{:#x}", args.addr),
        space: if args.phys { "physical" } else { "virtual" },
        bytes: output::hex_string(&buf),
    };
    output::emit(ctx.format, &out, || output::hex_dump(args.addr, &buf))
}
