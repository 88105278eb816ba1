//! Events: stop a live guest when a vCPU executes an address, touches memory or finishes a
//! single step, look at it through the same [`Session`], and let it go on.
//!
//! Two layers:
//!
//! - [`EventSource`], the backend capability: insert and remove breakpoints and watchpoints,
//!   let the guest run until its next stop (with a timeout), step one vCPU while the others
//!   stay stopped, stop the guest, and give it back. It knows nothing of filters or of
//!   stepping over a breakpoint.
//! - [`Events`], the library's event loop over a session. It owns what every backend would
//!   otherwise get wrong:
//!   - **step-over**: a vCPU stopped on a breakpoint would hit it again at once when
//!     continued (QEMU's gdbstub reports it forever). Before the guest runs again the loop
//!     removes that breakpoint, single-steps that vCPU alone (so no other vCPU runs through
//!     the gap), and re-inserts it. Any kernel text the guest patched meanwhile (ftrace,
//!     static keys) is stepped as it now is: nothing is emulated.
//!   - **filters**: breakpoints on user addresses match that address in every process (the
//!     backends' breakpoints ignore CR3), so each hook can carry the page-table roots it
//!     accepts; a stop no hook accepts is stepped over and never reported.
//!   - **coherence**: the session's caches are dropped whenever the guest has run.
//!   - **cleanup**: dropping the loop (or [`Events::finish`]) removes every breakpoint and
//!     watchpoint it set and leaves the guest in the run state it was found in, also when a
//!     handler fails or a signal interrupts a wait.
//!
//! ```no_run
//! use std::time::Duration;
//! use vmi_core::event::{Events, Filter};
//! use vmi_core::{OpenOptions, Session, Va};
//!
//! let session = Session::open("qemu:/tmp/vm.qmp", &OpenOptions::default())?;
//! let mut events = Events::new(&session)?;
//! events.break_at(Va::new(0xffff_ffff_8100_0000), Filter::any())?;
//! while let Some(event) = events.next(Duration::from_secs(1))? {
//!     println!("vCPU {} at {:#x}", event.vcpu, event.registers.rip);
//! }
//! events.finish()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::addr::{Pa, Va};
use crate::arch::PagingMode;
use crate::error::EventError;
use crate::session::Session;
use crate::vcpu::X86Registers;

/// Which accesses a watchpoint reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchKind {
    /// Writes only.
    Write,
    /// Reads only.
    Read,
    /// Reads and writes.
    Access,
}

impl WatchKind {
    /// Whether a watchpoint of this kind reports an access of kind `access`.
    pub fn covers(self, access: WatchKind) -> bool {
        self == WatchKind::Access || self == access
    }
}

impl std::fmt::Display for WatchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WatchKind::Write => "write",
            WatchKind::Read => "read",
            WatchKind::Access => "access",
        })
    }
}

/// Why the guest stopped, as the backend saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A vCPU reached an execution breakpoint or finished a single step (a trap with no data
    /// address).
    Trap,
    /// A watchpoint fired: the data address and the kind of access (the vCPU has completed
    /// the access; nothing needs stepping over).
    Watch {
        /// The accessed address the backend reported.
        addr: Va,
        /// The access.
        access: WatchKind,
    },
    /// The guest was stopped by a request, or by something the loop did not ask for.
    Interrupt,
}

/// One stop of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// The vCPU the backend says stopped (the others are stopped too: backends are all-stop).
    pub vcpu: usize,
    /// Why.
    pub reason: StopReason,
}

/// What a backend's events can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EventCapabilities {
    /// Execution breakpoints on virtual addresses.
    pub breakpoints: bool,
    /// Watchpoints on virtual ranges, with the kinds below.
    pub write_watchpoints: bool,
    /// Read watchpoints.
    pub read_watchpoints: bool,
    /// Access (read or write) watchpoints.
    pub access_watchpoints: bool,
    /// Single-step of one vCPU with the others stopped.
    pub single_step: bool,
    /// Process switches (a CR3 write) as events of their own.
    pub process_switches: bool,
}

/// The event capability of a live backend (see the module docs for what the library adds).
///
/// All-stop: when any vCPU stops, every vCPU stops. Every method except [`EventSource::wait`]
/// expects the guest stopped.
pub trait EventSource: Send + Sync {
    /// What this backend can do.
    fn capabilities(&self) -> EventCapabilities;

    /// Inserts an execution breakpoint at `va` (any address space).
    fn insert_breakpoint(&self, va: Va) -> Result<(), EventError>;

    /// Removes the breakpoint at `va`.
    fn remove_breakpoint(&self, va: Va) -> Result<(), EventError>;

    /// Inserts a watchpoint over `len` bytes at `va`.
    fn insert_watchpoint(&self, va: Va, len: u64, kind: WatchKind) -> Result<(), EventError>;

    /// Removes a watchpoint inserted with the same arguments.
    fn remove_watchpoint(&self, va: Va, len: u64, kind: WatchKind) -> Result<(), EventError>;

    /// Lets every vCPU run (if stopped) and waits up to `timeout` for the next stop.
    /// `Ok(None)`: the time passed and the guest still runs; the next call waits on.
    fn wait(&self, timeout: Duration) -> Result<Option<Stop>, EventError>;

    /// Executes one instruction on `vcpu` while the others stay stopped; returns that stop
    /// (a watchpoint the instruction fired is in its reason).
    fn step(&self, vcpu: usize) -> Result<Stop, EventError>;

    /// Steps `vcpu`, stopped on the inserted breakpoint at `va`, over it: removes it, steps
    /// that vCPU alone, inserts it again (also when the step failed). Backends that can send
    /// these together override it.
    fn step_over(&self, vcpu: usize, va: Va) -> Result<Stop, EventError> {
        self.remove_breakpoint(va)?;
        let stepped = self.step(vcpu);
        let rearmed = self.insert_breakpoint(va);
        let stop = stepped?;
        rearmed?;
        Ok(stop)
    }

    /// Stops the guest if it runs. Returns the stop that ended the run: the request's own
    /// (`Interrupt`), or an event that happened first. `None` if it was already stopped.
    fn halt(&self) -> Result<Option<Stop>, EventError>;

    /// Ends event handling: removes any breakpoint and watchpoint still inserted, and puts
    /// the guest back in the run state it had before events began (running, unless it was
    /// paused by the user or by [`crate::VmControl::pause`]).
    fn release(&self) -> Result<(), EventError>;
}

/// Which stops a hook accepts, beyond its address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Page-table roots (CR3 with the PCID and flag bits masked off) the stopped vCPU must run
    /// on; empty: any. A process's kernel and user roots both belong here where the OS keeps
    /// two (Linux PTI).
    pub roots: Vec<Pa>,
    /// The stack pointer the vCPU must have (return breakpoints: the caller's frame).
    pub stack_pointer: Option<u64>,
}

impl Filter {
    /// Every stop at the hook's address.
    pub fn any() -> Filter {
        Filter::default()
    }

    /// Stops of a vCPU running on one of `roots`.
    pub fn roots(roots: impl IntoIterator<Item = Pa>) -> Filter {
        Filter {
            roots: roots.into_iter().map(root_frame).collect(),
            stack_pointer: None,
        }
    }

    /// Whether a vCPU with these registers passes.
    pub fn accepts(&self, regs: &X86Registers) -> bool {
        (self.roots.is_empty() || self.roots.contains(&root_frame(Pa::new(regs.cr3))))
            && self.stack_pointer.is_none_or(|sp| sp == regs.rsp)
    }
}

/// The page-table root in a CR3 value: PCID (bits 0-11) and the bits above the physical
/// address width cleared.
fn root_frame(cr3: Pa) -> Pa {
    Pa::new(cr3.raw() & 0x000f_ffff_ffff_f000)
}

/// A hook's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct HookId(pub u32);

/// What a hook watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Execution of `va`.
    Breakpoint(Va),
    /// Accesses to `len` bytes at `va`.
    Watchpoint {
        /// Start of the range.
        va: Va,
        /// Length in bytes.
        len: u64,
        /// Which accesses.
        kind: WatchKind,
    },
}

#[derive(Debug, Clone)]
struct Hook {
    kind: HookKind,
    filter: Filter,
    /// Removed after its first accepted stop (return breakpoints).
    once: bool,
}

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    /// A breakpoint hook was reached.
    Breakpoint {
        /// The breakpoint's address (the vCPU's RIP).
        #[serde(serialize_with = "crate::serde_hex::va")]
        addr: Va,
    },
    /// A watchpoint hook fired.
    Watchpoint {
        /// The address accessed.
        #[serde(serialize_with = "crate::serde_hex::va")]
        addr: Va,
        /// The access.
        access: WatchKind,
    },
    /// [`Events::step`] finished.
    SingleStep,
    /// [`Events::pause`] stopped the guest.
    Pause,
}

/// One event, delivered with the guest stopped.
#[derive(Debug, Clone)]
pub struct Event {
    /// The vCPU the event happened on.
    pub vcpu: usize,
    /// What happened.
    pub kind: EventKind,
    /// The hooks that accepted it (empty for steps and pauses).
    pub hooks: Vec<HookId>,
    /// That vCPU's registers at the stop.
    pub registers: X86Registers,
}

/// What a handler of [`Events::run`] wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Let the guest go on and wait for the next event.
    Continue,
    /// Stop the loop (the guest stays stopped until the loop is finished or dropped).
    Break,
}

/// Bounds of [`Events::run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimits {
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Stop after this much time.
    pub duration: Option<Duration>,
}

/// Why [`Events::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunEnd {
    /// `count` events were delivered.
    Count,
    /// `duration` passed.
    Duration,
    /// The handler returned [`Flow::Break`].
    Handler,
}

/// Counters of an event loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventStats {
    /// Stops the backend reported.
    pub stops: u64,
    /// Events delivered to the caller.
    pub events: u64,
    /// Stops on a hooked address that no hook's filter accepted (stepped over silently).
    pub filtered: u64,
    /// Breakpoints stepped over.
    pub step_overs: u64,
    /// Stops that matched no hook at all (a stale report, a trap the guest raised itself).
    pub unexplained: u64,
}

/// The most per-event timings [`Events::record_timings`] keeps.
const MAX_TIMINGS: usize = 1 << 20;

/// The event loop over a session (see the module docs).
pub struct Events<'s> {
    session: &'s Session,
    source: &'s dyn EventSource,
    hooks: BTreeMap<HookId, Hook>,
    next_id: u32,
    /// Breakpoints inserted in the backend, with the number of hooks on each.
    breakpoints: BTreeMap<Va, usize>,
    /// Watchpoints inserted in the backend, with the number of hooks on each.
    watchpoints: BTreeMap<(Va, u64, WatchKind), usize>,
    /// A vCPU stopped on an inserted breakpoint: stepped over before the guest runs.
    on_breakpoint: Option<(usize, Va)>,
    /// Stops seen but not yet turned into events.
    queued: VecDeque<Stop>,
    /// When the current stop was reported (for [`Events::record_timings`]).
    stopped_at: Option<Instant>,
    timings: Option<Vec<Duration>>,
    step_over_timings: Option<Vec<Duration>>,
    stats: EventStats,
    released: bool,
}

impl<'s> Events<'s> {
    /// An event loop on `session`'s target. The guest keeps its run state until the first
    /// wait.
    ///
    /// # Errors
    ///
    /// [`EventError::Unsupported`] if the target has no event capability.
    pub fn new(session: &'s Session) -> Result<Events<'s>, EventError> {
        let source = session.events()?;
        Ok(Events {
            session,
            source,
            hooks: BTreeMap::new(),
            next_id: 1,
            breakpoints: BTreeMap::new(),
            watchpoints: BTreeMap::new(),
            on_breakpoint: None,
            queued: VecDeque::new(),
            stopped_at: None,
            timings: None,
            step_over_timings: None,
            stats: EventStats::default(),
            released: false,
        })
    }

    /// The session the events are read through.
    pub fn session(&self) -> &'s Session {
        self.session
    }

    /// The loop's counters.
    pub fn stats(&self) -> EventStats {
        self.stats
    }

    /// Keeps, from now on, the time from each stop's report to the guest's next resume: the
    /// library's and the handler's time per event, without the step-over (which runs the
    /// guest for one instruction; its time is kept apart, [`Events::step_over_timings`]).
    pub fn record_timings(&mut self) {
        self.timings.get_or_insert_with(Vec::new);
        self.step_over_timings.get_or_insert_with(Vec::new);
    }

    /// The timings kept since [`Events::record_timings`].
    pub fn timings(&self) -> &[Duration] {
        self.timings.as_deref().unwrap_or(&[])
    }

    /// The step-overs' own times since [`Events::record_timings`]: breakpoint removal, the
    /// one-instruction step (the guest runs) and re-insertion.
    pub fn step_over_timings(&self) -> &[Duration] {
        self.step_over_timings.as_deref().unwrap_or(&[])
    }

    fn unsupported(&self, what: &'static str, why: &str) -> EventError {
        EventError::Unsupported {
            spec: self.session.spec().to_owned(),
            what,
            why: why.to_owned(),
        }
    }

    fn add_hook(&mut self, kind: HookKind, filter: Filter, once: bool) -> HookId {
        let id = HookId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.hooks.insert(id, Hook { kind, filter, once });
        id
    }

    fn ensure_stopped(&mut self) -> Result<(), EventError> {
        if let Some(stop) = self.source.halt()? {
            self.note_stop(stop);
        }
        Ok(())
    }

    fn note_stop(&mut self, stop: Stop) {
        self.stats.stops += 1;
        self.stopped_at = Some(Instant::now());
        if stop.reason != StopReason::Interrupt {
            self.queued.push_back(stop);
        }
    }

    /// A hook on execution of `va` (a kernel address, or a user address with a [`Filter`] of
    /// that process's roots).
    pub fn break_at(&mut self, va: Va, filter: Filter) -> Result<HookId, EventError> {
        self.break_inner(va, filter, false)
    }

    fn break_inner(&mut self, va: Va, filter: Filter, once: bool) -> Result<HookId, EventError> {
        if !self.source.capabilities().breakpoints {
            return Err(self.unsupported("set breakpoints", "the backend has no execution events"));
        }
        if !self.breakpoints.contains_key(&va) {
            self.ensure_stopped()?;
            self.source.insert_breakpoint(va)?;
        }
        *self.breakpoints.entry(va).or_default() += 1;
        Ok(self.add_hook(HookKind::Breakpoint(va), filter, once))
    }

    /// A one-shot hook on the return of the function the vCPU of `event` has just entered
    /// (x86-64: the return address is at RSP on entry; the hook accepts only that frame,
    /// RSP + 8). A kernel stack (upper half) belongs to one thread, whatever address space
    /// it returns in (a successful `execve` returns on a new one); a user stack address is
    /// matched on the same page-table root.
    pub fn break_on_return(&mut self, event: &Event) -> Result<HookId, EventError> {
        let regs = &event.registers;
        let memory = self
            .session
            .virtual_memory(PagingMode::from_registers(regs));
        let ret = memory.read_va(Va::new(regs.rsp))?;
        let kernel_stack = regs.rsp >> 63 == 1;
        let filter = Filter {
            roots: if kernel_stack {
                Vec::new()
            } else {
                vec![root_frame(Pa::new(regs.cr3))]
            },
            stack_pointer: Some(regs.rsp.wrapping_add(8)),
        };
        self.break_inner(ret, filter, true)
    }

    /// A hook on accesses of `kind` to `len` bytes at `va`.
    pub fn watch(
        &mut self,
        va: Va,
        len: u64,
        kind: WatchKind,
        filter: Filter,
    ) -> Result<HookId, EventError> {
        let caps = self.source.capabilities();
        let can = match kind {
            WatchKind::Write => caps.write_watchpoints,
            WatchKind::Read => caps.read_watchpoints,
            WatchKind::Access => caps.access_watchpoints,
        };
        if !can {
            return Err(self.unsupported(
                "set watchpoints",
                &format!("the backend has no {kind} watchpoints"),
            ));
        }
        if len == 0 || va.raw().checked_add(len).is_none() {
            return Err(self.unsupported(
                "set watchpoints",
                &format!("{len} bytes at {va} is not a range"),
            ));
        }
        let key = (va, len, kind);
        if !self.watchpoints.contains_key(&key) {
            self.ensure_stopped()?;
            self.source.insert_watchpoint(va, len, kind)?;
        }
        *self.watchpoints.entry(key).or_default() += 1;
        Ok(self.add_hook(HookKind::Watchpoint { va, len, kind }, filter, false))
    }

    /// Process switches are not events of their own on any backend yet: an OS profile can
    /// name the function that switches (Linux `finish_task_switch`) for [`Events::break_at`].
    pub fn on_process_switch(&mut self) -> Result<HookId, EventError> {
        Err(self.unsupported(
            "report process switches",
            "the backend cannot trap CR3 writes; break on the OS's context-switch function \
             instead",
        ))
    }

    /// Removes a hook (and the backend's breakpoint or watchpoint once no hook uses it).
    pub fn remove(&mut self, id: HookId) -> Result<(), EventError> {
        let Some(hook) = self.hooks.remove(&id) else {
            return Ok(());
        };
        match hook.kind {
            HookKind::Breakpoint(va) => {
                if let Some(n) = self.breakpoints.get_mut(&va) {
                    *n -= 1;
                    if *n == 0 {
                        self.breakpoints.remove(&va);
                        self.ensure_stopped()?;
                        self.source.remove_breakpoint(va)?;
                    }
                }
            }
            HookKind::Watchpoint { va, len, kind } => {
                let key = (va, len, kind);
                if let Some(n) = self.watchpoints.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        self.watchpoints.remove(&key);
                        self.ensure_stopped()?;
                        self.source.remove_watchpoint(va, len, kind)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The hooks, with what each watches.
    pub fn hooks(&self) -> impl Iterator<Item = (HookId, HookKind)> + '_ {
        self.hooks.iter().map(|(id, h)| (*id, h.kind))
    }

    fn vcpu_registers(&self, vcpu: usize) -> Result<X86Registers, EventError> {
        let count = self.session.vcpu_count();
        if vcpu >= count {
            return Err(EventError::UnknownVcpu { vcpu, count });
        }
        Ok(self.session.registers(vcpu)?)
    }

    /// Before the guest runs: steps the vCPU stopped on a breakpoint over it, drops caches.
    fn prepare_run(&mut self) -> Result<(), EventError> {
        let mut guest_time = Duration::ZERO;
        if let Some((vcpu, va)) = self.on_breakpoint.take() {
            if self.breakpoints.contains_key(&va) {
                let t = Instant::now();
                let stop = self.source.step_over(vcpu, va)?;
                guest_time = t.elapsed();
                self.stats.step_overs += 1;
                if let Some(t) = self.step_over_timings.as_mut() {
                    if t.len() < MAX_TIMINGS {
                        t.push(guest_time);
                    }
                }
                if matches!(stop.reason, StopReason::Watch { .. }) {
                    self.queued.push_back(stop);
                }
            }
        }
        self.session.invalidate();
        if let (Some(t), Some(at)) = (self.timings.as_mut(), self.stopped_at.take()) {
            if t.len() < MAX_TIMINGS {
                t.push(at.elapsed().saturating_sub(guest_time));
            }
        }
        Ok(())
    }

    /// Turns a stop into an event, or `None` if no hook accepts it.
    fn classify(&mut self, stop: Stop) -> Result<Option<Event>, EventError> {
        let registers = self.vcpu_registers(stop.vcpu)?;
        let (kind, matching): (EventKind, Vec<HookId>) = match stop.reason {
            StopReason::Trap => {
                let rip = Va::new(registers.rip);
                if !self.breakpoints.contains_key(&rip) {
                    self.stats.unexplained += 1;
                    return Ok(None);
                }
                self.on_breakpoint = Some((stop.vcpu, rip));
                let ids = self
                    .hooks
                    .iter()
                    .filter(|(_, h)| h.kind == HookKind::Breakpoint(rip))
                    .filter(|(_, h)| h.filter.accepts(&registers))
                    .map(|(id, _)| *id)
                    .collect();
                (EventKind::Breakpoint { addr: rip }, ids)
            }
            StopReason::Watch { addr, access } => {
                let ids = self
                    .hooks
                    .iter()
                    .filter(|(_, h)| match h.kind {
                        HookKind::Watchpoint { va, len, kind } => {
                            kind.covers(access)
                                && addr.raw() >= va.raw()
                                && addr.raw() - va.raw() < len
                        }
                        HookKind::Breakpoint(_) => false,
                    })
                    .filter(|(_, h)| h.filter.accepts(&registers))
                    .map(|(id, _)| *id)
                    .collect();
                (EventKind::Watchpoint { addr, access }, ids)
            }
            StopReason::Interrupt => return Ok(None),
        };
        if matching.is_empty() {
            self.stats.filtered += 1;
            return Ok(None);
        }
        for id in &matching {
            if self.hooks.get(id).is_some_and(|h| h.once) {
                self.remove(*id)?;
            }
        }
        self.stats.events += 1;
        Ok(Some(Event {
            vcpu: stop.vcpu,
            kind,
            hooks: matching,
            registers,
        }))
    }

    /// Lets the guest run until a hook accepts a stop, for at most `timeout`; the guest is
    /// stopped while the returned event is looked at. `Ok(None)`: the time passed with no
    /// event and the guest runs on.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Event>, EventError> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(stop) = self.queued.pop_front() {
                if let Some(event) = self.classify(stop)? {
                    return Ok(Some(event));
                }
            }
            self.prepare_run()?;
            if !self.queued.is_empty() {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.source.wait(left)? {
                Some(stop) => self.note_stop(stop),
                None => return Ok(None),
            }
            if Instant::now() >= deadline && self.queued.is_empty() {
                return Ok(None);
            }
        }
    }

    /// Executes one instruction on `vcpu` (the others stay stopped), stepping over a
    /// breakpoint it is stopped on; a watchpoint the instruction fires is delivered by the
    /// next [`Events::next`].
    pub fn step(&mut self, vcpu: usize) -> Result<Event, EventError> {
        if !self.source.capabilities().single_step {
            return Err(self.unsupported("single-step", "the backend cannot step a vCPU"));
        }
        self.ensure_stopped()?;
        let count = self.session.vcpu_count();
        if vcpu >= count {
            return Err(EventError::UnknownVcpu { vcpu, count });
        }
        let stop = match self.on_breakpoint {
            Some((v, va)) if v == vcpu && self.breakpoints.contains_key(&va) => {
                self.on_breakpoint = None;
                self.source.step_over(vcpu, va)?
            }
            _ => self.source.step(vcpu)?,
        };
        self.session.invalidate();
        self.stats.stops += 1;
        if matches!(stop.reason, StopReason::Watch { .. }) {
            self.queued.push_back(stop);
        }
        let registers = self.vcpu_registers(vcpu)?;
        // A step that lands on a breakpoint must step over it before the guest runs.
        let rip = Va::new(registers.rip);
        if self.breakpoints.contains_key(&rip) {
            self.on_breakpoint = Some((vcpu, rip));
        }
        Ok(Event {
            vcpu,
            kind: EventKind::SingleStep,
            hooks: Vec::new(),
            registers,
        })
    }

    /// Stops the guest now (a pause event, reported on vCPU 0); an event that happened first
    /// is delivered by the next [`Events::next`].
    pub fn pause(&mut self) -> Result<Event, EventError> {
        self.ensure_stopped()?;
        Ok(Event {
            vcpu: 0,
            kind: EventKind::Pause,
            hooks: Vec::new(),
            registers: self.vcpu_registers(0)?,
        })
    }

    /// The callback form: calls `handler` for each event until it breaks, `limits` are
    /// reached, or an error (the handler's own errors end the loop too).
    pub fn run<E>(
        &mut self,
        limits: RunLimits,
        mut handler: impl FnMut(&mut Events<'s>, &Event) -> Result<Flow, E>,
    ) -> Result<RunEnd, E>
    where
        E: From<EventError>,
    {
        let start = Instant::now();
        let mut delivered = 0u64;
        loop {
            if limits.count.is_some_and(|n| delivered >= n) {
                return Ok(RunEnd::Count);
            }
            let slice = match limits.duration {
                Some(d) => match d.checked_sub(start.elapsed()) {
                    Some(left) if !left.is_zero() => left.min(Duration::from_millis(500)),
                    _ => return Ok(RunEnd::Duration),
                },
                None => Duration::from_millis(500),
            };
            if let Some(event) = self.next(slice)? {
                delivered += 1;
                if handler(self, &event)? == Flow::Break {
                    return Ok(RunEnd::Handler);
                }
            }
        }
    }

    fn release_inner(&mut self) -> Result<(), EventError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let mut first_error = self.ensure_stopped().err();
        for va in std::mem::take(&mut self.breakpoints).into_keys() {
            if let Err(e) = self.source.remove_breakpoint(va) {
                first_error.get_or_insert(e);
            }
        }
        for (va, len, kind) in std::mem::take(&mut self.watchpoints).into_keys() {
            if let Err(e) = self.source.remove_watchpoint(va, len, kind) {
                first_error.get_or_insert(e);
            }
        }
        self.hooks.clear();
        self.on_breakpoint = None;
        self.queued.clear();
        self.session.invalidate();
        // Always given back, even after an error above (the backend removes what is left).
        let released = self.source.release();
        match first_error {
            Some(e) => Err(e),
            None => released,
        }
    }

    /// Removes every hook and gives the guest back in the run state it was found in.
    pub fn finish(mut self) -> Result<EventStats, EventError> {
        self.release_inner()?;
        Ok(self.stats)
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}

#[cfg(test)]
mod tests;
