//! One module per command; `run` opens the session and dispatches.

pub mod info;
pub mod read;
pub mod space;
pub mod translate;

use vmi_core::registry::{ARCHITECTURES, BACKENDS, OS_DETECTORS};
use vmi_core::{BoxError, OpenOptions, Profile, Session, SessionError};

use crate::{Cli, Command};

/// Opens the target and runs the command.
pub fn run(cli: &Cli) -> Result<(), BoxError> {
    let spec = cli.target.as_deref().ok_or(SessionError::NoTarget)?;
    let options = OpenOptions { write: cli.write };
    let session = Session::open(spec, &options)?;
    let profiles = cli
        .symbols
        .iter()
        .map(|p| Profile::from_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    let _paused = PauseGuard::new(&session, cli.pause)?;
    let ctx = Context {
        session: &session,
        profiles: &profiles,
        format: cli.format,
    };
    match &cli.command {
        Command::Info => info::run(&ctx),
        Command::Translate(args) => translate::run(&ctx, args),
        Command::Read(args) => read::run(&ctx, args),
    }
}

/// What every command gets.
pub struct Context<'a> {
    /// The open target.
    pub session: &'a Session,
    /// Profiles loaded with `--symbols`.
    pub profiles: &'a [Profile],
    /// Output format.
    pub format: crate::Format,
}

/// Pauses a live guest for the command's duration and resumes it on every exit path
/// (including errors, which drop the guard).
struct PauseGuard<'a> {
    session: Option<&'a Session>,
}

impl<'a> PauseGuard<'a> {
    fn new(session: &'a Session, pause: bool) -> Result<Self, BoxError> {
        match session.control() {
            Some(control) if pause => {
                control.pause()?;
                session.invalidate();
                Ok(Self {
                    session: Some(session),
                })
            }
            // A dump never changes: --pause is trivially satisfied.
            _ => Ok(Self { session: None }),
        }
    }
}

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session {
            if let Some(control) = session.control() {
                if let Err(e) = control.resume() {
                    crate::output::print_error(&e);
                }
            }
            session.invalidate();
        }
    }
}

/// Parses an address or length: `0x` hex or decimal.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let s = s.trim().replace('_', "");
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not a number (use 0x... for hex)"))
}

/// The registry as `vmi --help` shows it.
pub fn registered_help() -> String {
    let mut s = String::from("Registered backends:\n");
    for b in BACKENDS.items() {
        s.push_str(&format!("  {:<10} {}\n", b.name, b.description));
    }
    s.push_str("Registered architectures:");
    for a in ARCHITECTURES.items() {
        s.push_str(&format!(" {}", a.name));
    }
    s.push_str("\nRegistered OS profiles:");
    let detectors = OS_DETECTORS.items();
    if detectors.is_empty() {
        s.push_str(" none yet");
    }
    for d in detectors {
        s.push_str(&format!("\n  {:<10} {}", d.name, d.description));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_u64("0xffff_8000"), Ok(0xffff_8000));
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert!(parse_u64("zz").is_err());
        assert!(parse_u64("0x1_0000_0000_0000_0000").is_err());
    }
}
