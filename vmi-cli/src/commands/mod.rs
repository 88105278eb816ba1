//! One module per command; `run` opens the session and dispatches.

pub mod events;
pub mod info;
pub mod integrity;
pub mod lsof;
pub mod os;
pub mod page_cache;
pub mod plugin;
pub mod process_context;
pub mod read;
pub mod sockets;
pub mod space;
pub mod translate;

use std::sync::Arc;
use vmi_core::registry::{ARCHITECTURES, BACKENDS, OS_DETECTORS};

use vmi_core::error::ControlError;
use vmi_core::{
    BoxError, DetectOptions, OpenOptions, OsError, Profile, Session, SessionError, VmControl,
};

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
    let (profiles, mut symbol_path) = symbol_sources(&cli.symbols)?;
    symbol_path.extend(
        std::env::var_os("VMI_SYMBOL_PATH")
            .map(|v| std::env::split_paths(&v).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    let mut detect = DetectOptions {
        profiles,
        symbol_path,
        use_cache: true,
        // An export needs the whole profile, which only discovery (or --symbols) gives.
        // Plugins may look up any symbol or type: they get the full profile too. Integrity
        // checks name addresses by the nearest symbol, which needs all of them.
        // Live tracing decodes stops with whatever the OS profile needs, mid-stream: a
        // command cannot start over with more, so it starts with all of it.
        full_profile: matches!(
            cli.command,
            Command::IsfExport(_)
                | Command::Plugin(_)
                | Command::Integrity(_)
                | Command::Trace(_)
                | Command::Break(_)
                | Command::Watch(_)
        ),
        exhaustive: false,
    };
    // Pause before the OS is detected, so detection sees the same state as the command.
    let _paused = PauseGuard::new(session.control_handle(), cli.pause)?;
    if cli.command.needs_os() && session.detect_os(&detect).is_none() {
        let e = session
            .identified_os()
            .err()
            .map_or_else(|| "no guest OS was identified".into(), BoxError::from);
        // `info` describes the target even when its OS cannot be analysed.
        // So do plugins, which may only need memory, and reads and translations that
        // name no process (they fall back on vCPU 0's address space).
        if !cli.command.works_without_os() {
            return Err(e);
        }
        eprintln!("vmi: warning: {e}");
    }
    let result = dispatch(cli, &session, &detect.profiles);
    // A cached profile holds only what earlier runs used: when this command needs more,
    // discover the full profile and run it again.
    let result = match result {
        Err(e) if needs_full_profile(&e) => {
            detect.full_profile = true;
            session.detect_os(&detect);
            dispatch(cli, &session, &detect.profiles)
        }
        other => other,
    };
    if let Some(os) = session.os() {
        if let Err(e) = os.save_cache() {
            eprintln!("vmi: warning: profile cache not written: {e}");
        }
    }
    result
}

/// `--symbols` paths: files are loaded as symbol tables, directories are searched (by OS
/// profiles that look tables up by the kernel's identity, as Windows does by PDB GUID).
fn symbol_sources(
    paths: &[std::path::PathBuf],
) -> Result<(Vec<Profile>, Vec<std::path::PathBuf>), BoxError> {
    let mut profiles = Vec::new();
    let mut dirs = Vec::new();
    for p in paths {
        if p.is_dir() {
            dirs.push(p.clone());
        } else {
            profiles.push(Profile::from_path(p)?);
        }
    }
    Ok((profiles, dirs))
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
        Command::Symbol(args) => os::symbol(&ctx, args),
        Command::IsfExport(args) => os::isf_export(&ctx, args),
        Command::Ps => os::ps(&ctx),
        Command::Pstree => os::pstree(&ctx),
        Command::Threads(args) => os::threads(&ctx, args),
        Command::Cmdline(args) => os::cmdline(&ctx, args),
        Command::Env(args) => os::env(&ctx, args),
        Command::Maps(args) => os::maps(&ctx, args),
        Command::Modules(args) => os::modules(&ctx, args),
        Command::Dmesg => os::dmesg(&ctx),
        Command::Lsof(args) => lsof::run(&ctx, args),
        Command::Sockets => sockets::run(&ctx),
        Command::Mounts(args) => process_context::mounts(&ctx, args),
        Command::Namespaces(args) => process_context::namespaces(&ctx, args),
        Command::Creds(args) => process_context::creds(&ctx, args),
        Command::Integrity(args) => integrity::run(&ctx, args),
        Command::Files => page_cache::files(&ctx),
        Command::DumpFile(args) => page_cache::dump_file(&ctx, args),
        Command::Plugin(args) => plugin::run(&ctx, args),
        Command::Trace(args) => events::trace(&ctx, args),
        Command::Break(args) => events::breakpoint(&ctx, args),
        Command::Watch(args) => events::watch(&ctx, args),
    }
}

/// Whether `e` says the cached profile lacked something full discovery would give.
fn needs_full_profile(e: &BoxError) -> bool {
    matches!(
        e.downcast_ref::<OsError>(),
        Some(OsError::IncompleteProfile(_))
    )
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
