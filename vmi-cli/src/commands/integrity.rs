//! PLACEHOLDER (issue 11): `vmi integrity [CHECK...]`.

use vmi_core::BoxError;

use super::Context;

/// Arguments of `vmi integrity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checks to run (default: all the OS profile has).
    checks: Vec<String>,
}

/// `vmi integrity [CHECK...]`.
pub fn run(_ctx: &Context<'_>, _args: &Args) -> Result<(), BoxError> {
    Err("integrity: not written yet".into())
}
