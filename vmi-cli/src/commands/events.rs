//! `vmi trace`, `vmi break`, `vmi watch`: events of a live guest, streamed as they happen
//! (a table row or, with `--format json`, one JSON object per line), bounded by `--count`
//! and `--duration`. Ctrl-C ends them: every breakpoint and watchpoint is removed and the
//! guest runs on before the signal ends the process.
//!
//! The OS profile names what to break at and decodes each stop ([`KernelTracing`]); the event
//! loop ([`Events`]) steps over breakpoints, filters by process and cleans up.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use vmi_core::event::{Event, EventKind, Events, Filter, HookId, WatchKind};
use vmi_core::os::{KernelTracing, TraceKind, TracePoint, TraceRecord};
use vmi_core::{BoxError, Va};

use super::{parse_u64, Context};
use crate::Format;

/// How long a command follows events.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Stop after N records.
    #[arg(long, global = true, value_name = "N")]
    count: Option<u64>,
    /// Stop after S seconds (fractions allowed).
    #[arg(long, global = true, value_name = "S")]
    duration: Option<f64>,
}

impl Limits {
    fn deadline(&self) -> Result<Option<Instant>, BoxError> {
        match self.duration {
            None => Ok(None),
            Some(s) if s.is_finite() && s >= 0.0 => {
                Ok(Some(Instant::now() + Duration::from_secs_f64(s)))
            }
            Some(s) => Err(format!("--duration {s}: not a number of seconds").into()),
        }
    }
}

/// Arguments of `vmi trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    #[command(subcommand)]
    what: TraceWhat,
    /// Only this process's events.
    #[arg(long, global = true)]
    pid: Option<u32>,
    #[command(flatten)]
    limits: Limits,
}

#[derive(Debug, clap::Subcommand)]
enum TraceWhat {
    /// Process creation and program execution: pid, ppid, filename, argv, result.
    Exec,
    /// File opens: pid, path, flags, result.
    Open,
    /// System calls (the named ones, or all): name, number, arguments, result.
    Syscalls {
        /// System call names (`openat`, `read`); none: every system call.
        names: Vec<String>,
    },
}

/// Arguments of `vmi break`.
#[derive(Debug, clap::Args)]
pub struct BreakArgs {
    /// A kernel symbol, or an address (`0x...`; a user address needs --pid).
    at: String,
    /// Only stops of this process (and, for a user address, in its address space).
    #[arg(long)]
    pid: Option<u32>,
    /// Bytes of stack to print at each hit.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    stack: u64,
    #[command(flatten)]
    limits: Limits,
}

/// Arguments of `vmi watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The first address watched (a kernel address, or a user address with --pid).
    addr: String,
    /// How many bytes.
    len: String,
    /// Which accesses.
    #[arg(long, value_enum, default_value_t = AccessKind::Write)]
    kind: AccessKind,
    /// Only accesses by this process.
    #[arg(long)]
    pid: Option<u32>,
    #[command(flatten)]
    limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AccessKind {
    Write,
    Read,
    Access,
}

impl From<AccessKind> for WatchKind {
    fn from(a: AccessKind) -> WatchKind {
        match a {
            AccessKind::Write => WatchKind::Write,
            AccessKind::Read => WatchKind::Read,
            AccessKind::Access => WatchKind::Access,
        }
    }
}

/// Writes records as they come: a header and one row each, or one JSON object per line.
struct Stream {
    format: Format,
    headers: &'static [(&'static str, usize)],
    written: u64,
}

impl Stream {
    fn new(format: Format, headers: &'static [(&'static str, usize)]) -> Stream {
        Stream {
            format,
            headers,
            written: 0,
        }
    }

    fn write(&mut self, json: &impl Serialize, row: &[String]) -> Result<(), BoxError> {
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut out, json)?;
                out.write_all(b"\n")?;
            }
            Format::Table => {
                if self.written == 0 {
                    let names: Vec<String> = self
                        .headers
                        .iter()
                        .map(|(h, w)| format!("{h:<w$}"))
                        .collect();
                    writeln!(out, "{}", names.join("  ").trim_end())?;
                }
                let cells: Vec<String> = row
                    .iter()
                    .zip(self.headers)
                    .map(|(c, (_, w))| format!("{c:<w$}"))
                    .collect();
                writeln!(out, "{}", cells.join("  ").trim_end())?;
            }
        }
        out.flush()?;
        self.written += 1;
        Ok(())
    }
}

/// The page-table roots of `pid`, for a filter.
fn process_filter(ctx: &Context<'_>, pid: Option<u32>) -> Result<Filter, BoxError> {
    let Some(pid) = pid else {
        return Ok(Filter::any());
    };
    let processes = ctx
        .session
        .os_capability("processes", |os| os.processes())?;
    Ok(Filter::roots(
        processes.address_space_roots(ctx.session, pid)?,
    ))
}

/// A short summary on stderr when a command ends.
fn summary(events: &Events<'_>, records: u64, started: Instant) {
    let s = events.stats();
    eprintln!(
        "vmi: {records} records in {:.1} s ({} stops, {} filtered out, {} step-overs)",
        started.elapsed().as_secs_f64(),
        s.stops,
        s.filtered,
        s.step_overs
    );
}

/// Warnings about events that could not be decoded: a few in full, then a count.
struct Warnings(u64);

impl Warnings {
    fn warn(&mut self, what: impl std::fmt::Display) {
        self.0 += 1;
        if self.0 <= 10 {
            eprintln!("vmi: warning: {what}");
        } else if self.0 == 11 {
            eprintln!("vmi: warning: more events could not be decoded (counted at the end)");
        }
    }
}

/// The loop every command shares: waits for events until the limits, hands each to `on`
/// (which returns how many records it wrote).
fn follow(
    events: &mut Events<'_>,
    limits: &Limits,
    mut on: impl FnMut(&mut Events<'_>, &Event) -> Result<u64, BoxError>,
) -> Result<u64, BoxError> {
    let deadline = limits.deadline()?;
    let mut records = 0u64;
    loop {
        if limits.count.is_some_and(|n| records >= n) {
            return Ok(records);
        }
        let slice = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(Duration::from_millis(500)),
                _ => return Ok(records),
            },
            None => Duration::from_millis(500),
        };
        if let Some(event) = events.next(slice)? {
            records += on(events, &event)?;
        }
    }
}

/// What a trace hook stands for.
enum Hook {
    /// The entry of trace point `index`.
    Entry(usize),
    /// The return of trace point `index`, completing `record`.
    Return(usize, Box<TraceRecord>),
}

const TRACE_COLUMNS: &[(&str, usize)] = &[
    ("EVENT", 7),
    ("VCPU", 4),
    ("PID", 7),
    ("TID", 7),
    ("NAME", 16),
    ("RESULT", 6),
    ("DETAIL", 0),
];

fn trace_row(r: &TraceRecord) -> Vec<String> {
    let detail = match r.event {
        "exec" => format!(
            "{} {:?}",
            r.filename.as_deref().unwrap_or("?"),
            r.argv.as_deref().unwrap_or(&[])
        ),
        "fork" => format!("ppid {}", r.ppid.map_or("?".into(), |p| p.to_string())),
        "open" => format!(
            "{} flags {:#o}",
            r.path.as_deref().unwrap_or("?"),
            r.flags.unwrap_or(0)
        ),
        _ => {
            let args: Vec<String> = r
                .args
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|a| format!("{a:#x}"))
                .collect();
            format!(
                "{}({})",
                r.syscall.as_deref().unwrap_or("?"),
                args.join(", ")
            )
        }
    };
    vec![
        r.event.to_owned(),
        r.vcpu.to_string(),
        r.pid.to_string(),
        r.tid.to_string(),
        r.name.clone(),
        r.result.map_or(String::new(), |v| v.to_string()),
        detail,
    ]
}

/// `vmi trace exec|open|syscalls`.
pub fn trace(ctx: &Context<'_>, args: &TraceArgs) -> Result<(), BoxError> {
    let tracing: &dyn KernelTracing = ctx
        .session
        .os_capability("kernel tracing", |os| os.tracing())?;
    let kind = match &args.what {
        TraceWhat::Exec => TraceKind::Exec,
        TraceWhat::Open => TraceKind::Open,
        TraceWhat::Syscalls { names } => TraceKind::Syscalls {
            names: names.clone(),
        },
    };
    let points = tracing.trace_points(&kind)?;
    let filter = process_filter(ctx, args.pid)?;
    let mut events = Events::new(ctx.session)?;
    let mut hooks: BTreeMap<HookId, Hook> = BTreeMap::new();
    for (i, p) in points.iter().enumerate() {
        hooks.insert(events.break_at(p.addr, filter.clone())?, Hook::Entry(i));
    }
    let mut stream = Stream::new(ctx.format, TRACE_COLUMNS);
    let mut warnings = Warnings(0);
    let started = Instant::now();
    let result = follow(&mut events, &args.limits, |events, event| {
        let mut written = 0;
        for id in &event.hooks {
            match hooks.remove(id) {
                Some(Hook::Entry(i)) => {
                    hooks.insert(*id, Hook::Entry(i));
                    let point = &points[i];
                    let record =
                        match tracing.on_entry(ctx.session, point, event.vcpu, &event.registers) {
                            Ok(r) => r,
                            Err(e) => {
                                warnings
                                    .warn(format_args!("{} at {}: {e}", point.event, point.symbol));
                                continue;
                            }
                        };
                    if point.on_return {
                        match events.break_on_return(event) {
                            Ok(ret) => {
                                hooks.insert(ret, Hook::Return(i, Box::new(record)));
                                continue;
                            }
                            Err(e) => warnings.warn(format_args!(
                                "the return of {} cannot be followed: {e}",
                                point.symbol
                            )),
                        }
                    }
                    stream.write(&record, &trace_row(&record))?;
                    written += 1;
                }
                Some(Hook::Return(i, mut record)) => {
                    if let Err(e) =
                        tracing.on_return(ctx.session, &points[i], &mut record, &event.registers)
                    {
                        warnings.warn(format_args!("the result of {}: {e}", points[i].symbol));
                    }
                    stream.write(&record, &trace_row(&record))?;
                    written += 1;
                }
                None => {}
            }
        }
        Ok(written)
    });
    // Records whose return was not reached before the end: they happened, without a result.
    let mut records = result?;
    for hook in hooks.into_values() {
        if let Hook::Return(_, record) = hook {
            if args.limits.count.is_some_and(|n| records >= n) {
                break;
            }
            stream.write(&record, &trace_row(&record))?;
            records += 1;
        }
    }
    summary(&events, records, started);
    if warnings.0 > 0 {
        eprintln!("vmi: {} events could not be decoded", warnings.0);
    }
    events.finish()?;
    Ok(())
}

/// One stop of `vmi break` or `vmi watch`.
#[derive(Serialize)]
struct Hit<'a> {
    event: &'static str,
    vcpu: usize,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    rip: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex_opt")]
    addr: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access: Option<WatchKind>,
    pid: Option<u32>,
    tid: Option<u32>,
    name: Option<String>,
    registers: &'a vmi_core::X86Registers,
    /// Stack bytes from RSP, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<String>,
}

fn hex_opt<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(&format_args!("{v:#x}")),
        None => s.serialize_none(),
    }
}

/// Who was running: the OS's view of the stopped thread, when it has one.
fn thread_of(ctx: &Context<'_>, event: &Event) -> (Option<u32>, Option<u32>, Option<String>) {
    let Some(tracing) = ctx.session.os().and_then(|os| os.tracing()) else {
        return (None, None, None);
    };
    let point = TracePoint {
        symbol: String::new(),
        addr: Va::new(event.registers.rip),
        event: "break",
        on_return: false,
    };
    match tracing.on_entry(ctx.session, &point, event.vcpu, &event.registers) {
        Ok(r) => (Some(r.pid), Some(r.tid), Some(r.name)),
        Err(_) => (None, None, None),
    }
}

const HIT_COLUMNS: &[(&str, usize)] = &[
    ("EVENT", 10),
    ("VCPU", 4),
    ("PID", 7),
    ("NAME", 16),
    ("RIP", 18),
    ("WHERE", 0),
];

fn hit_row(h: &Hit<'_>) -> Vec<String> {
    let place = match (h.addr, h.access) {
        (Some(a), Some(k)) => format!("{k} of {a:#x}"),
        _ => h.symbol.clone().unwrap_or_default(),
    };
    let mut place = place;
    if let Some(stack) = &h.stack {
        place.push_str(&format!("  stack {stack}"));
    }
    vec![
        h.event.to_owned(),
        h.vcpu.to_string(),
        h.pid.map_or(String::new(), |p| p.to_string()),
        h.name.clone().unwrap_or_default(),
        format!("{:#x}", h.rip),
        place,
    ]
}

/// A kernel symbol or a number.
fn resolve(ctx: &Context<'_>, text: &str) -> Result<Va, BoxError> {
    if let Ok(v) = parse_u64(text) {
        return Ok(Va::new(v));
    }
    let symbols = ctx.session.os_capability("symbols", |os| os.symbols())?;
    Ok(symbols.symbol(text)?)
}

fn stack_bytes(ctx: &Context<'_>, event: &Event, len: u64) -> Option<String> {
    if len == 0 {
        return None;
    }
    let memory = ctx
        .session
        .virtual_memory(vmi_core::PagingMode::from_registers(&event.registers));
    let mut buf = vec![0u8; usize::try_from(len.min(4096)).ok()?];
    let n = memory.read(Va::new(event.registers.rsp), &mut buf).ok()?;
    Some(buf[..n].iter().map(|b| format!("{b:02x}")).collect())
}

fn hit<'e>(ctx: &Context<'_>, event: &'e Event, symbol: Option<&str>, stack: u64) -> Hit<'e> {
    let (pid, tid, name) = thread_of(ctx, event);
    let (addr, access) = match event.kind {
        EventKind::Watchpoint { addr, access } => (Some(addr.raw()), Some(access)),
        _ => (None, None),
    };
    Hit {
        event: match event.kind {
            EventKind::Watchpoint { .. } => "watchpoint",
            _ => "breakpoint",
        },
        vcpu: event.vcpu,
        rip: event.registers.rip,
        symbol: symbol.map(str::to_owned),
        addr,
        access,
        pid,
        tid,
        name,
        registers: &event.registers,
        stack: stack_bytes(ctx, event, stack),
    }
}

/// `vmi break SYMBOL|ADDR`.
pub fn breakpoint(ctx: &Context<'_>, args: &BreakArgs) -> Result<(), BoxError> {
    let at = resolve(ctx, &args.at)?;
    let symbol = parse_u64(&args.at).is_err().then_some(args.at.as_str());
    let filter = process_filter(ctx, args.pid)?;
    let mut events = Events::new(ctx.session)?;
    events.break_at(at, filter)?;
    let mut stream = Stream::new(ctx.format, HIT_COLUMNS);
    let started = Instant::now();
    let records = follow(&mut events, &args.limits, |_, event| {
        let h = hit(ctx, event, symbol, args.stack);
        stream.write(&h, &hit_row(&h))?;
        Ok(1)
    })?;
    summary(&events, records, started);
    events.finish()?;
    Ok(())
}

/// `vmi watch ADDR LEN`.
pub fn watch(ctx: &Context<'_>, args: &WatchArgs) -> Result<(), BoxError> {
    let addr = resolve(ctx, &args.addr)?;
    let len = parse_u64(&args.len)?;
    let filter = process_filter(ctx, args.pid)?;
    let mut events = Events::new(ctx.session)?;
    events.watch(addr, len, args.kind.into(), filter)?;
    let mut stream = Stream::new(ctx.format, HIT_COLUMNS);
    let started = Instant::now();
    let records = follow(&mut events, &args.limits, |_, event| {
        let h = hit(ctx, event, None, 0);
        stream.write(&h, &hit_row(&h))?;
        Ok(1)
    })?;
    summary(&events, records, started);
    events.finish()?;
    Ok(())
}
