//! PLACEHOLDER (issue 11): `vmi lsof [PID]`.

use vmi_core::BoxError;

use super::Context;

/// Arguments of `vmi lsof`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this process (default: every process).
    pid: Option<u32>,
}

/// `vmi lsof [PID]`.
pub fn run(_ctx: &Context<'_>, _args: &Args) -> Result<(), BoxError> {
    Err("lsof: not written yet".into())
}
