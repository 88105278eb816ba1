//! PLACEHOLDER (issue 11): `vmi sockets`.

use vmi_core::BoxError;

use super::Context;

/// `vmi sockets`.
pub fn run(_ctx: &Context<'_>) -> Result<(), BoxError> {
    Err("sockets: not written yet".into())
}
