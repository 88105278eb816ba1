//! `vmi`: introspect a guest VM from a memory dump or a live target.
//!
//! The command line is a stable contract (see the project README and DESIGN.md): scripts and
//! tests rely on the command names, options and JSON fields. This binary is a thin shell over
//! the vmi libraries; every analysis lives in a library crate.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

// Link the registered crates: their `ctor` registrations run only if the crate is linked.
use vmi_arch_x86 as _;
use vmi_backend_file as _;
use vmi_backend_qemu as _;
use vmi_backend_xen as _;
use vmi_os_linux as _;
use vmi_os_windows as _;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Human-readable tables.
    Table,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "vmi",
    version,
    about = "Virtual machine introspection: read a guest's state from a memory dump or a live VM",
    after_help = commands::registered_help()
)]
struct Cli {
    /// The target: a dump path (format detected from content), file:PATH, qemu:QMP_SOCKET or
    /// xen:NAME|ID (each needs its backend). Default: $VMI_TARGET.
    #[arg(long, global = true, env = "VMI_TARGET", value_name = "SPEC")]
    target: Option<String>,
    /// Symbols and types: a Volatility 3 ISF (.json, .json.xz) or a System.map; or a directory
    /// searched for the guest kernel's symbol table by its identity (Windows: PDB GUID and
    /// age, in Volatility 3's layout). May repeat. $VMI_SYMBOL_PATH adds directories.
    #[arg(long, global = true, value_name = "PATH")]
    symbols: Vec<std::path::PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Pause a live guest while the command runs, for a consistent view (dumps are always
    /// consistent).
    #[arg(long, global = true)]
    pause: bool,
    /// Allow writes to guest memory (live targets only).
    #[arg(long, global = true)]
    write: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backend, format, memory, vCPUs, paging mode and (once an OS is detected) the guest OS.
    Info,
    /// Translate a virtual address and show every paging level's entry.
    Translate(commands::translate::Args),
    /// Hex-dump guest memory: virtual through a vCPU's address space, or physical.
    Read(commands::read::Args),
    /// The run-time address of a kernel symbol.
    Symbol(commands::os::SymbolArgs),
    /// Write a Volatility 3 symbol table (ISF) of the guest's kernel (Linux: built from the
    /// guest itself).
    IsfExport(commands::os::IsfExportArgs),
    /// Processes: pid, ppid, name, uid, gid, dtb, threads, kernel thread, start; OS-specific
    /// fields under `os`.
    Ps,
    /// Processes as a tree.
    Pstree,
    /// The threads of a process.
    Threads(commands::os::PidArgs),
    /// A process's command line.
    Cmdline(commands::os::PidArgs),
    /// A process's environment.
    Env(commands::os::PidArgs),
    /// A process's memory map, as /proc/PID/maps shows it.
    Maps(commands::os::PidArgs),
    /// Kernel modules (or, with --pid, a process's DLLs / shared libraries): name, base, size.
    Modules(commands::os::ModulesArgs),
    /// The kernel log (the printk ring buffer).
    Dmesg,
    /// Open files of every process (or one): fd, type, position, flags, path.
    Lsof(commands::lsof::Args),
    /// Sockets (TCP, UDP, raw v4/v6, Unix, netlink, packet) with state, addresses, owners.
    #[command(alias = "netstat")]
    Sockets,
    /// The mounts of a process's mount namespace, as /proc/PID/mountinfo shows them.
    Mounts(commands::process_context::MountsArgs),
    /// Each process's namespaces, cgroup and pid inside its own PID namespace; with
    /// --containers, processes grouped by namespaces and cgroup (the container view).
    Namespaces(commands::process_context::NamespacesArgs),
    /// A process's user and group ids, groups, capabilities and seccomp mode.
    Creds(commands::process_context::CredsArgs),
    /// Kernel integrity checks: system call table, IDT, hidden modules, inline hooks, eBPF.
    Integrity(commands::integrity::Args),
    /// Files with pages in the kernel's page cache: inode, size, cached pages, filesystem, path.
    Files,
    /// Write a cached file's contents (from the page cache) to OUT; missing pages are holes.
    DumpFile(commands::page_cache::DumpFileArgs),
    /// Third-party analysis plugins: run PATH.so [-- ARGS] | info PATH.so | list.
    Plugin(commands::plugin::Args),
    /// Live tracing, streamed: exec (process creation and exec), open (file opens),
    /// syscalls (all, or the NAMES given); --pid N, --count N, --duration S.
    Trace(commands::events::TraceArgs),
    /// Stop at a kernel symbol or address at each hit, print the vCPU, thread, registers and
    /// stack, and go on; --pid N, --count N, --duration S.
    Break(commands::events::BreakArgs),
    /// Report each access to LEN bytes at ADDR (--kind write|read|access; --pid N for a
    /// user address), with the accessing thread and RIP.
    Watch(commands::events::WatchArgs),
}

impl Command {
    /// Whether the command still runs, with a warning, when the guest OS cannot be identified.
    fn works_without_os(&self) -> bool {
        match self {
            Command::Info | Command::Plugin(_) => true,
            Command::Translate(args) => args.space.pid.is_none(),
            Command::Read(args) => args.space.pid.is_none(),
            _ => false,
        }
    }

    /// Whether the command needs the guest OS detected first.
    fn needs_os(&self) -> bool {
        match self {
            // A kernel address without options means the kernel's own page tables.
            Command::Translate(args) => args.space.pid.is_some() || args.space.is_default(),
            Command::Read(args) => {
                args.space.pid.is_some() || (args.space.is_default() && !args.phys)
            }
            _ => true,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::print_error(err.as_ref());
            ExitCode::FAILURE
        }
    }
}
