//! One module per command; `run` opens the session and dispatches.

pub mod info;
pub mod linux;
pub mod plugin;
pub mod read;
pub mod space;
pub mod translate;

use std::sync::Arc;
use vmi_core::registry::{ARCHITECTURES, BACKENDS, OS_DETECTORS};

use vmi_core::error::ControlError;
use vmi_core::{BoxError, OpenOptions, Profile, Session, SessionError, VmControl};

use crate::{Cli, Command};

/// Opens the target and runs the command.
pub fn run(cli: &Cli) -> Result<(), BoxError> {
    if let Command::Plugin(args) = &cli.command {
        if !args.needs_target() {
            return plugin::without_target(cli.format, args);
        }
    }
    let spec = cli.target.as_deref().ok_or(SessionError::NoTarget)?;
    let options = OpenOptions { write: cli.write };
    let mut session = Session::open(spec, &options)?;
    let profiles = cli
        .symbols
        .iter()
        .map(|p| Profile::from_path(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Pause before the OS is detected, so detection sees the same state as the command.
    let _paused = PauseGuard::new(session.control_handle(), cli.pause)?;
    if cli.command.needs_os() {
        // An export needs the whole profile, which only discovery (or --symbols) gives.
        // Plugins may look up any symbol or type: they get the full profile too.
        let source = if matches!(cli.command, Command::IsfExport(_) | Command::Plugin(_)) {
            OsSource::Discovery
        } else {
            OsSource::CacheOrDiscovery
        };
        match bind_os(&mut session, &profiles, source) {
            Ok(()) => {}
            // `info` describes the target even when its OS cannot be analysed.
            // So do plugins, which may only need memory, and reads and translations that
            // name no process (they fall back on vCPU 0's address space).
            Err(e) if cli.command.works_without_os() => {
                eprintln!("vmi: warning: guest OS not identified: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    let result = dispatch(cli, &session, &profiles);
    // A cached profile holds only what earlier runs used: when this command needs more,
    // discover the full profile and run it again.
    let result = match result {
        Err(e) if missing_from_cached_profile(&session, &e) => {
            bind_os(&mut session, &profiles, OsSource::Discovery)?;
            dispatch(cli, &session, &profiles)
        }
        other => other,
    };
    if let Some(os) = vmi_os_linux::linux(&session) {
        if let Err(e) = os.save_cache() {
            eprintln!("vmi: warning: profile cache not written: {e}");
        }
    }
    result
}

fn dispatch(cli: &Cli, session: &Session, profiles: &[Profile]) -> Result<(), BoxError> {
    let ctx = Context {
        session,
        profiles,
        format: cli.format,
    };
    match &cli.command {
        Command::Info => info::run(&ctx),
        Command::Translate(args) => translate::run(&ctx, args),
        Command::Read(args) => read::run(&ctx, args),
        Command::Symbol(args) => linux::symbol(&ctx, args),
        Command::IsfExport(args) => linux::isf_export(&ctx, args),
        Command::Ps => linux::ps(&ctx),
        Command::Pstree => linux::pstree(&ctx),
        Command::Threads(args) => linux::threads(&ctx, args),
        Command::Cmdline(args) => linux::cmdline(&ctx, args),
        Command::Env(args) => linux::env(&ctx, args),
        Command::Maps(args) => linux::maps(&ctx, args),
        Command::Modules => linux::modules(&ctx),
        Command::Dmesg => linux::dmesg(&ctx),
        Command::Plugin(args) => plugin::run(&ctx, args),
    }
}

#[derive(PartialEq, Eq)]
enum OsSource {
    CacheOrDiscovery,
    Discovery,
}

/// Binds the guest's OS to the session: from `--symbols` when given, else through the
/// registered detectors (Linux: the profile cache, else discovery).
fn bind_os(session: &mut Session, profiles: &[Profile], source: OsSource) -> Result<(), BoxError> {
    if !profiles.is_empty() {
        let mut merged = Profile::new(
            profiles
                .iter()
                .map(|p| p.source.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
        );
        for p in profiles {
            merged.merge(p.clone());
        }
        let (spaces, source) = vmi_os_linux::kernel_space::search_spaces(session)?;
        let kernel = vmi_os_linux::discovery::from_profile(session, &spaces, source, merged)?;
        session.set_os(Box::new(vmi_os_linux::LinuxOs::new(kernel, false)));
        return Ok(());
    }
    if source == OsSource::Discovery {
        let os = vmi_os_linux::os::open(session, false)?;
        session.set_os(Box::new(os));
        return Ok(());
    }
    session.detect_os()?;
    Ok(())
}

fn missing_from_cached_profile(session: &Session, e: &BoxError) -> bool {
    vmi_os_linux::linux(session).is_some_and(|os| os.from_cache())
        && e.downcast_ref::<vmi_os_linux::LinuxError>()
            .is_some_and(|e| e.is_missing_profile_item())
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
struct PauseGuard {
    control: Option<Arc<dyn VmControl>>,
}

impl PauseGuard {
    fn new(control: Option<Arc<dyn VmControl>>, pause: bool) -> Result<Self, ControlError> {
        match control {
            Some(control) if pause => {
                control.pause()?;
                Ok(Self {
                    control: Some(control),
                })
            }
            // A dump never changes: --pause is trivially satisfied.
            _ => Ok(Self { control: None }),
        }
    }
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        if let Some(control) = &self.control {
            if let Err(e) = control.resume() {
                crate::output::print_error(&e);
            }
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
