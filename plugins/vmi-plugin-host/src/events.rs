//! Running a plugin that subscribes to events (plugin API 1.1).
//!
//! [`LoadedPlugin::run_with_events`] asks the plugin for its subscriptions; none: it is run as
//! before ([`LoadedPlugin::run`]). Otherwise an [`Events`] loop is opened on the session and
//! each subscription is resolved through OS-neutral capabilities only: system calls through
//! the OS profile's [`vmi_core::os::KernelTracing`] (its trace points, and the decoding of a
//! stop there into pid, thread, system call), a symbol through its
//! [`vmi_core::os::KernelSymbols`], a watchpoint as given. The loop runs within the
//! [`EventLimits`], the plugin is called at each event with the guest stopped, and the loop is
//! finished (every breakpoint removed, the guest back in its run state) before the plugin's
//! `finish` makes the table. On any error, or a signal, dropping the loop cleans up the same.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vmi_core::event::{Event, EventKind, Events, Filter, Flow, HookId, RunEnd, RunLimits};
use vmi_core::os::{KernelTracing, TraceKind, TracePoint};
use vmi_core::{EventError, OsError, Session, Va, WatchKind};
use vmi_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use vmi_plugin_api::abi_stable::std_types::{ROption, RString, RVec};
use vmi_plugin_api::{
    EventRecord, EventSummary, HostInterface_TO, Subscription, Table, WatchAccess,
};

use crate::error::PluginError;
use crate::loader::{LoadedPlugin, PluginObject};
use crate::session_host::{registers, SessionHost};

/// Most subscriptions a plugin may ask for (each is one or more breakpoints or watchpoints;
/// backends have few of the latter).
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Most distinct warnings kept for the summary (each is counted, only the first few are
/// spelled out).
const MAX_WARNINGS: usize = 8;

/// How long the process list that names the process of a non-system-call stop is trusted
/// before a stop on an unknown page-table root may refresh it.
const PROCESS_MAP_TTL: Duration = Duration::from_secs(1);

/// The bounds of an event run (`vmi plugin run --count N --duration S`); one is needed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventLimits {
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// What a run of a plugin gave.
#[derive(Debug)]
pub struct PluginRun {
    /// The plugin's table.
    pub table: Table,
    /// For an event run: how it went (`None`: the plugin subscribed to nothing).
    pub events: Option<EventSummary>,
}

/// A subscription resolved to what the loop watches.
enum Resolved {
    /// A trace point of the OS profile: its stops are decoded by it.
    Trace(TracePoint),
    /// A kernel symbol's entry.
    Symbol(String),
    /// A watchpoint.
    Watch,
}

/// Why the loop ended early.
enum LoopError {
    Event(EventError),
    Plugin(vmi_plugin_api::PluginError),
}

impl From<EventError> for LoopError {
    fn from(e: EventError) -> Self {
        LoopError::Event(e)
    }
}

/// Names the process a vCPU runs for from its page-table root, for stops the OS profile does
/// not decode (symbols, watchpoints): the processes' roots as the OS lists them, refreshed at
/// most once per [`PROCESS_MAP_TTL`] when a root is not in it.
struct ProcessByRoot {
    map: HashMap<u64, (u32, String)>,
    built: Option<Instant>,
}

/// The page-table root in a CR3 value (PCID and flag bits off), as [`Filter`] compares them.
fn root_frame(cr3: u64) -> u64 {
    cr3 & 0x000f_ffff_ffff_f000
}

impl ProcessByRoot {
    fn lookup(&mut self, session: &Session, cr3: u64) -> Option<(u32, String)> {
        let root = root_frame(cr3);
        if let Some(p) = self.map.get(&root) {
            return Some(p.clone());
        }
        if self.built.is_some_and(|t| t.elapsed() < PROCESS_MAP_TTL) {
            return None;
        }
        self.built = Some(Instant::now());
        self.map.clear();
        let processes = session.os()?.processes()?.processes(session).ok()?;
        for p in processes.items {
            if let Some(dtb) = p.dtb {
                self.map.insert(root_frame(dtb.raw()), (p.pid, p.name));
            }
        }
        self.map.get(&root).cloned()
    }
}

/// Counted warnings, the first few spelled out.
#[derive(Default)]
struct Warnings {
    counts: Vec<(String, u64)>,
}

impl Warnings {
    fn add(&mut self, what: String) {
        if let Some((_, n)) = self.counts.iter_mut().find(|(w, _)| *w == what) {
            *n += 1;
        } else if self.counts.len() < MAX_WARNINGS {
            self.counts.push((what, 1));
        }
    }

    fn into_rvec(self) -> RVec<RString> {
        self.counts
            .into_iter()
            .map(|(w, n)| RString::from(format!("{n} stop(s): {w}")))
            .collect()
    }
}

fn watch_kind(a: WatchAccess) -> WatchKind {
    match a {
        WatchAccess::Write => WatchKind::Write,
        WatchAccess::Read => WatchKind::Read,
        WatchAccess::Access => WatchKind::Access,
    }
}

impl LoadedPlugin {
    fn events_error(&self, message: impl std::fmt::Display) -> PluginError {
        PluginError::Events {
            plugin: self.name.clone(),
            message: message.to_string(),
        }
    }

    /// Runs the plugin on `host` with `args`: as an event loop within `limits` if it
    /// subscribes to events, else as [`LoadedPlugin::run`] (`limits` unused).
    ///
    /// # Errors
    ///
    /// The plugin's own errors and panics; for an event run also [`PluginError::Unbounded`]
    /// (no limit given), [`PluginError::Events`] (the target has no events, the OS profile
    /// cannot trace or lacks a symbol, the loop failed or was interrupted by a signal). The
    /// guest is cleaned up and left running in every case.
    pub fn run_with_events(
        &mut self,
        host: &SessionHost<'_>,
        args: &[String],
        limits: EventLimits,
    ) -> Result<PluginRun, PluginError> {
        let rargs: Vec<RString> = args.iter().map(|a| RString::from(a.as_str())).collect();
        // A 1.0 plugin knows no events.
        let PluginObject::Current(plugin) = &mut self.plugin else {
            return Ok(PluginRun {
                table: self.run(host, args)?,
                events: None,
            });
        };
        let subscriptions = plugin
            .subscriptions(
                HostInterface_TO::from_ptr(host, TD_Opaque),
                rargs.as_slice().into(),
            )
            .into_result()
            .map_err(|e| self.plugin_error(e))?
            .into_vec();
        if subscriptions.is_empty() {
            return Ok(PluginRun {
                table: self.run(host, args)?,
                events: None,
            });
        }
        if limits.count.is_none() && limits.duration.is_none() {
            return Err(PluginError::Unbounded {
                plugin: self.name.clone(),
            });
        }
        if subscriptions.len() > MAX_SUBSCRIPTIONS {
            return Err(self.events_error(format!(
                "{} subscriptions, at most {MAX_SUBSCRIPTIONS}",
                subscriptions.len()
            )));
        }
        let session = host.session();
        let mut events = Events::new(session).map_err(|e| self.events_error(e))?;
        let tracing = || {
            session
                .os_capability("trace system calls", |os| os.tracing())
                .map_err(|e: OsError| self.events_error(e))
        };
        let mut hooks: HashMap<HookId, (u32, Resolved)> = HashMap::new();
        let mut tracer: Option<&dyn KernelTracing> = None;
        for (index, sub) in subscriptions.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            match sub {
                Subscription::Syscalls { names } => {
                    let t = match tracer {
                        Some(t) => t,
                        None => *tracer.insert(tracing()?),
                    };
                    let kind = TraceKind::Syscalls {
                        names: names.iter().map(|n| n.as_str().to_owned()).collect(),
                    };
                    let points = t.trace_points(&kind).map_err(|e| self.events_error(e))?;
                    for point in points {
                        let id = events
                            .break_at(point.addr, Filter::any())
                            .map_err(|e| self.events_error(e))?;
                        hooks.insert(id, (index, Resolved::Trace(point)));
                    }
                }
                Subscription::Symbol { name } => {
                    let symbols = session
                        .os_capability("resolve kernel symbols", |os| os.symbols())
                        .map_err(|e| self.events_error(e))?;
                    let va = symbols
                        .symbol(name.as_str())
                        .map_err(|e| self.events_error(e))?;
                    let id = events
                        .break_at(va, Filter::any())
                        .map_err(|e| self.events_error(e))?;
                    hooks.insert(id, (index, Resolved::Symbol(name.as_str().to_owned())));
                }
                Subscription::Watch { addr, len, access } => {
                    let id = events
                        .watch(Va::new(*addr), *len, watch_kind(*access), Filter::any())
                        .map_err(|e| self.events_error(e))?;
                    hooks.insert(id, (index, Resolved::Watch));
                }
            }
        }

        let started = Instant::now();
        let mut delivered = 0u64;
        let mut warnings = Warnings::default();
        let mut by_root = ProcessByRoot {
            map: HashMap::new(),
            built: None,
        };
        let PluginObject::Current(plugin) = &mut self.plugin else {
            return Err(self.events_error("a 1.0 plugin has no events"));
        };
        let ended = events.run(
            RunLimits {
                count: limits.count,
                duration: limits.duration,
            },
            |_, event: &Event| -> Result<Flow, LoopError> {
                let mut flow = Flow::Continue;
                for id in &event.hooks {
                    let Some((index, what)) = hooks.get(id) else {
                        continue;
                    };
                    let record = record(
                        session,
                        tracer,
                        *index,
                        what,
                        event,
                        &mut by_root,
                        &mut warnings,
                    );
                    delivered += 1;
                    let answer = plugin
                        .on_event(HostInterface_TO::from_ptr(host, TD_Opaque), &record)
                        .into_result()
                        .map_err(LoopError::Plugin)?;
                    if answer == vmi_plugin_api::Flow::Stop {
                        flow = Flow::Break;
                    }
                }
                Ok(flow)
            },
        );
        let end = match ended {
            Ok(end) => end,
            Err(e) => {
                // Breakpoints out, guest running, before the error is reported.
                drop(events);
                return Err(match e {
                    LoopError::Event(e) => self.events_error(e),
                    LoopError::Plugin(e) => self.plugin_error(e),
                });
            }
        };
        let stats = events.finish().map_err(|e| self.events_error(e))?;
        let summary = EventSummary {
            events: delivered,
            stops: stats.stops,
            end: match end {
                RunEnd::Count => "count",
                RunEnd::Duration => "duration",
                RunEnd::Handler => "plugin",
            }
            .into(),
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            warnings: warnings.into_rvec(),
        };
        let PluginObject::Current(plugin) = &mut self.plugin else {
            return Err(self.events_error("a 1.0 plugin has no events"));
        };
        let table = plugin
            .finish(HostInterface_TO::from_ptr(host, TD_Opaque), &summary)
            .into_result()
            .map_err(|e| self.plugin_error(e))?;
        Ok(PluginRun {
            table: self.check_table(table)?,
            events: Some(summary),
        })
    }
}

/// The record of one event for the hook of subscription `index`. What cannot be decoded (the
/// guest's data is hostile, a task may be half set up) is left empty and warned about: one bad
/// stop does not end the run.
fn record(
    session: &Session,
    tracer: Option<&dyn KernelTracing>,
    index: u32,
    what: &Resolved,
    event: &Event,
    by_root: &mut ProcessByRoot,
    warnings: &mut Warnings,
) -> EventRecord {
    let mut r = EventRecord {
        subscription: index,
        vcpu: u32::try_from(event.vcpu).unwrap_or(u32::MAX),
        registers: registers(&event.registers),
        ..EventRecord::default()
    };
    match event.kind {
        EventKind::Breakpoint { addr } => {
            r.event = "breakpoint".into();
            r.addr = addr.raw();
        }
        EventKind::Watchpoint { addr, access } => {
            r.event = "watch".into();
            r.addr = addr.raw();
            r.access = access.to_string().into();
        }
        EventKind::SingleStep | EventKind::Pause => {}
    }
    match (what, tracer) {
        (Resolved::Trace(point), Some(t)) => {
            r.event = point.event.into();
            r.symbol = point.symbol.as_str().into();
            match t.on_entry(session, point, event.vcpu, &event.registers) {
                Ok(tr) => {
                    r.pid = ROption::RSome(tr.pid);
                    r.tid = ROption::RSome(tr.tid);
                    r.name = tr.name.into();
                    r.syscall = tr.syscall.unwrap_or_default().into();
                    r.nr = tr.nr.into();
                    r.args = tr.args.unwrap_or_default().into();
                }
                Err(e) => warnings.add(format!("at {}: {e}", point.symbol)),
            }
        }
        (Resolved::Trace(_), None) => {}
        (Resolved::Symbol(name), _) => {
            r.symbol = name.as_str().into();
            name_process(session, event, by_root, &mut r);
        }
        (Resolved::Watch, _) => name_process(session, event, by_root, &mut r),
    }
    r
}

/// Fills pid and name from the vCPU's page-table root, where a listed process has it.
fn name_process(
    session: &Session,
    event: &Event,
    by_root: &mut ProcessByRoot,
    r: &mut EventRecord,
) {
    if let Some((pid, name)) = by_root.lookup(session, event.registers.cr3) {
        r.pid = ROption::RSome(pid);
        r.name = name.into();
    }
}
