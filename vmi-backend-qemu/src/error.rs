//! [`QemuError`]: what can go wrong talking to a live QEMU. The doc comment of each variant is
//! its message.

use std::path::PathBuf;

/// Opening or driving a live QEMU failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QemuError {
    /// The QMP socket could not be reached.
    #[error("cannot connect to the QMP socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The socket answered, but not with a QMP greeting.
    #[error("{path} is not a QMP socket: {detail}")]
    NotQmp {
        /// The socket path.
        path: PathBuf,
        /// What was received instead (or that nothing came).
        detail: String,
    },
    /// QEMU closed a connection (it exited, or another client took over).
    #[error("QEMU closed the {channel} connection while {doing} (did QEMU exit?)")]
    Closed {
        /// "QMP" or "gdbstub".
        channel: &'static str,
        /// The command in flight.
        doing: String,
    },
    /// QEMU did not answer in time.
    #[error("no answer from QEMU's {channel} within {secs}s while {doing}")]
    Timeout {
        /// "QMP" or "gdbstub".
        channel: &'static str,
        /// The timeout.
        secs: u64,
        /// The command in flight.
        doing: String,
    },
    /// I/O on a socket failed.
    #[error("{channel} I/O while {doing}: {source}")]
    Io {
        /// "QMP" or "gdbstub".
        channel: &'static str,
        /// The command in flight.
        doing: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A QMP command returned an error.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP's error class.
        class: String,
        /// QMP's description.
        desc: String,
    },
    /// A reply could not be understood.
    #[error("unexpected reply from QEMU to {command}: {detail}")]
    Protocol {
        /// The command.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// The guest's RAM could not be located in QEMU's memory tree.
    #[error("no guest RAM found in QEMU's `info mtree -f` ({detail})")]
    NoRam {
        /// What was found instead.
        detail: String,
    },
    /// QEMU's RAM could not be opened for reading.
    #[error("cannot read QEMU's memory through {path}: {source}{hint}")]
    ProcessMemory {
        /// `/proc/PID/mem` or the RAM file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// A hint (ptrace rights).
        hint: &'static str,
    },
    /// The RAM block was not found in the QEMU process's address space.
    #[error("cannot find RAM block {block} ({size:#x} bytes) in /proc/{pid}/maps: {detail}")]
    RamMapping {
        /// The RAM block's name.
        block: String,
        /// Its size.
        size: u64,
        /// QEMU's pid.
        pid: u32,
        /// Why.
        detail: String,
    },
    /// The gdbstub is held by another debugger.
    #[error("QEMU's gdbstub ({address}) is in use by another client")]
    GdbBusy {
        /// The stub's address.
        address: String,
    },
    /// No directory private to QEMU's user could be had for the gdbstub's socket.
    #[error("no private directory for the gdbstub socket: {reason}")]
    GdbSocketDir {
        /// Why (the directory and what is wrong with it).
        reason: String,
    },
    /// The gdbstub refused a request.
    #[error("gdbstub request {request} failed: {reply}")]
    Gdb {
        /// The request.
        request: String,
        /// The reply.
        reply: String,
    },
    /// A signal (Ctrl-C) arrived while the guest was paused; the operation was abandoned so
    /// that the guest can be resumed.
    #[error("interrupted by signal {signal}")]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
}

impl QemuError {
    /// The error as an `io::Error`, for the vmi-core error enums that carry one.
    pub fn into_io(self) -> std::io::Error {
        let kind = match &self {
            QemuError::Interrupted { .. } => std::io::ErrorKind::Interrupted,
            QemuError::Timeout { .. } => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}
