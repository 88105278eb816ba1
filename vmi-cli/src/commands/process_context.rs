//! PLACEHOLDER (issue 11): `vmi mounts PID`, `vmi namespaces`, `vmi creds PID`.

use vmi_core::BoxError;

use super::os::PidArgs;
use super::Context;

/// `vmi mounts PID`.
pub fn mounts(_ctx: &Context<'_>, _args: &PidArgs) -> Result<(), BoxError> {
    Err("mounts: not written yet".into())
}

/// `vmi namespaces`.
pub fn namespaces(_ctx: &Context<'_>) -> Result<(), BoxError> {
    Err("namespaces: not written yet".into())
}

/// `vmi creds PID`.
pub fn creds(_ctx: &Context<'_>, _args: &PidArgs) -> Result<(), BoxError> {
    Err("creds: not written yet".into())
}
