//! `vmi integrity [CHECK...]`: kernel integrity checks through the OS-neutral
//! [`vmi_core::os::IntegrityChecks`] capability. Findings are output, not errors: the command
//! exits 0 with suspicious findings (scripts read `severity`); a check that could not run is a
//! warning on stderr, and an unknown check name is an error that lists the known ones.

use vmi_core::os::Severity;
use vmi_core::BoxError;

use super::Context;
use crate::output;

/// Arguments of `vmi integrity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Checks to run (default: all the OS profile has).
    checks: Vec<String>,
}

const HEADERS: [&str; 5] = ["check", "severity", "subject", "address", "detail"];

/// `vmi integrity [CHECK...]`.
pub fn run(ctx: &Context<'_>, args: &Args) -> Result<(), BoxError> {
    let integrity = ctx
        .session
        .os_capability("integrity checks", |os| os.integrity())?;
    let known = integrity.integrity_checks();
    if let Some(bad) = args.checks.iter().find(|c| !known.contains(&c.as_str())) {
        return Err(format!(
            "unknown integrity check `{bad}`; known checks: {}",
            known.join(", ")
        )
        .into());
    }
    let found = integrity.check_integrity(ctx.session, &args.checks)?;
    for w in &found.warnings {
        eprintln!("vmi: warning: {w}");
    }
    let findings = found.items;
    output::emit(ctx.format, &findings, || {
        let rows: Vec<Vec<String>> = findings
            .iter()
            .map(|f| {
                vec![
                    f.check.clone(),
                    match f.severity {
                        Severity::Info => "info".to_owned(),
                        Severity::Suspicious => "SUSPICIOUS".to_owned(),
                    },
                    f.subject.clone(),
                    f.address.map_or("-".to_owned(), |a| a.to_string()),
                    f.detail.clone(),
                ]
            })
            .collect();
        output::columns(&HEADERS, &rows)
    })
}
