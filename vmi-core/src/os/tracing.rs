//! Tracing a live kernel: which functions to break at for a question ("what does the guest
//! exec", "what does it open"), and what a stop there means. The OS profile knows both; the
//! event loop ([`crate::event::Events`]) and the `vmi trace` command know neither.

use serde::Serialize;

use crate::addr::Va;

/// What to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceKind {
    /// Process creation and program execution.
    Exec,
    /// File opens, with their result.
    Open,
    /// System calls: the named ones (the OS's own names, `openat`, `read`), or every one.
    Syscalls {
        /// Names to trace; empty: all.
        names: Vec<String>,
    },
}

/// A kernel function entry to break at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracePoint {
    /// The kernel symbol.
    pub symbol: String,
    /// Its address.
    pub addr: Va,
    /// The record a stop here starts (`exec`, `fork`, `open`, `syscall`; `break` for any
    /// other address, whose record names only the stopped thread).
    pub event: &'static str,
    /// Whether the record is completed at the function's return (its result).
    pub on_return: bool,
}

/// One traced event, in the JSON contract's field names (absent fields are left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TraceRecord {
    /// `exec`, `fork`, `open`, `syscall`.
    pub event: &'static str,
    /// The vCPU it happened on.
    pub vcpu: usize,
    /// The process (thread group) id.
    pub pid: u32,
    /// The thread id.
    pub tid: u32,
    /// The thread's short name (Linux `comm`) at the stop.
    pub name: String,
    /// The parent's pid (`fork`, `exec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    /// The program (`exec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Its arguments (`exec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// The path opened (`open`), as the process passed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Open flags (`open`), as the OS defines them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    /// The system call's name (`syscall`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// Its number (`syscall`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nr: Option<u64>,
    /// Its first six arguments (`syscall`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<u64>>,
    /// The result (a file descriptor, 0, or a negative errno), once the function returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<i64>,
    /// What the OS wants back at the return (a saved register-frame pointer); not output.
    #[serde(skip)]
    pub context: u64,
}
