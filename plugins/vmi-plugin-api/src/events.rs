//! Events for plugins (API 1.1): what a plugin subscribes to, what it is told at each stop,
//! and how the run ended.
//!
//! A plugin that returns subscriptions from [`crate::Analysis::subscriptions`] is run as an
//! event loop by the host: it stops the guest at each event, calls
//! [`crate::Analysis::on_event`] with an [`EventRecord`] while the guest is stopped (the
//! [`crate::Host`] reads its memory and registers as they are at the stop), lets it go on,
//! and once the run is over (the `--count`/`--duration` bound of `vmi plugin run`, or the
//! plugin's [`Flow::Stop`]) removes every breakpoint, leaves the guest running as it was
//! found, and asks [`crate::Analysis::finish`] for the table.
//!
//! Nothing here is OS-specific: the host resolves a subscription through its OS profile's
//! neutral capabilities (the profile's system-call trace point, its kernel symbols), and a
//! record carries the fields every OS has. The types are fixed for the whole 1.x line
//! (`event` and `access` are strings so that new kinds need no new variant).

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;

use crate::types::Registers;

/// What a plugin asks to be stopped for.
///
/// ```
/// use vmi_plugin_api::Subscription;
/// let all = Subscription::syscalls(&[]);
/// let opens = Subscription::syscalls(&["openat", "close"]);
/// let sym = Subscription::symbol("finish_task_switch");
/// assert_ne!(all, opens);
/// # let _ = sym;
/// ```
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// System call entries: the named ones (the OS's own names, `openat`), or every one
    /// (empty `names`). Each record has `syscall` and `nr` where the OS profile can tell.
    Syscalls {
        /// The system calls; empty: all.
        names: RVec<RString>,
    },
    /// Execution of a kernel symbol's first instruction.
    Symbol {
        /// The kernel symbol.
        name: RString,
    },
    /// Accesses to `len` bytes at virtual `addr`, in every address space (breakpoints and
    /// watchpoints of today's backends ignore CR3: filter on `pid` or `registers.cr3`).
    Watch {
        /// Start of the range.
        addr: u64,
        /// Its length (backends take 1, 2, 4 or 8).
        len: u64,
        /// Which accesses.
        access: WatchAccess,
    },
}

impl Subscription {
    /// System calls by name; none: every one.
    pub fn syscalls(names: &[&str]) -> Subscription {
        Subscription::Syscalls {
            names: names.iter().map(|n| RString::from(*n)).collect(),
        }
    }

    /// A kernel symbol's entry.
    pub fn symbol(name: &str) -> Subscription {
        Subscription::Symbol { name: name.into() }
    }

    /// A watchpoint.
    pub fn watch(addr: u64, len: u64, access: WatchAccess) -> Subscription {
        Subscription::Watch { addr, len, access }
    }
}

/// Which accesses a [`Subscription::Watch`] reports.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchAccess {
    /// Writes.
    Write,
    /// Reads.
    Read,
    /// Reads and writes.
    Access,
}

/// One event, as the plugin is told of it (the guest is stopped during the call).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct EventRecord {
    /// Which subscription: its index in the list [`crate::Analysis::subscriptions`] returned.
    pub subscription: u32,
    /// What happened: `syscall`, `breakpoint`, `watch` (more may come in later 1.x versions:
    /// ignore what you do not know).
    pub event: RString,
    /// The vCPU it happened on.
    pub vcpu: u32,
    /// The process (thread group) id, when the host can tell (system calls: always; other
    /// events: when the vCPU runs on a listed process's page tables).
    pub pid: ROption<u32>,
    /// The thread id, when known.
    pub tid: ROption<u32>,
    /// The thread's (or process's) short name; empty when unknown.
    pub name: RString,
    /// The system call's name (`openat`); empty when not a system call or not known.
    pub syscall: RString,
    /// The system call's number, when known.
    pub nr: ROption<u64>,
    /// Its arguments, when known (up to six).
    pub args: RVec<u64>,
    /// The kernel symbol stopped at (the trace point's, or the subscribed one); empty for
    /// watchpoints.
    pub symbol: RString,
    /// The breakpoint's address, or the data address a watchpoint reported.
    pub addr: u64,
    /// `write`, `read` or `access` for watchpoints; empty otherwise.
    pub access: RString,
    /// The vCPU's registers at the stop.
    pub registers: Registers,
}

/// What a plugin wants after an event.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Let the guest go on; more events.
    Continue,
    /// End the run (then [`crate::Analysis::finish`] is called).
    Stop,
}

/// How an event run went, for [`crate::Analysis::finish`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct EventSummary {
    /// Events delivered to the plugin.
    pub events: u64,
    /// Stops of the guest the host handled (delivered, filtered, stepped over).
    pub stops: u64,
    /// Why the run ended: `count`, `duration`, `plugin` (it returned [`Flow::Stop`]).
    pub end: RString,
    /// How long it ran, in milliseconds.
    pub elapsed_ms: u64,
    /// What the host could not do for some stops (an event whose process it could not
    /// decode is delivered with the fields it lacks left empty, and counted here).
    pub warnings: RVec<RString>,
}
