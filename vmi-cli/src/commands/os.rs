//! Commands that ask the guest OS: they go through the OS-neutral capabilities of the bound
//! profile (`vmi_core::os`), whatever OS it is, and fail with a clear error when it lacks one.

use serde::Serialize;
use vmi_core::os::{process_tree, Partial, Process, TreeNode};
use vmi_core::{AddressSpace, BoxError, Va};

use super::Context;
use crate::output;

/// Prints the warnings of a partial result on stderr (the items still go to stdout).
pub fn warn<T>(partial: &Partial<T>) {
    for w in &partial.warnings {
        eprintln!("vmi: warning: {w}");
    }
}

/// A process id argument.
#[derive(Debug, clap::Args)]
pub struct PidArgs {
    /// The process id.
    pid: u32,
}

/// Arguments of `vmi symbol`.
#[derive(Debug, clap::Args)]
pub struct SymbolArgs {
    /// The symbol's name.
    name: String,
}

#[derive(Serialize)]
struct SymbolOut<'a> {
    name: &'a str,
    address: Va,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    link_address: u64,
}

/// `vmi symbol NAME`.
pub fn symbol(ctx: &Context<'_>, args: &SymbolArgs) -> Result<(), BoxError> {
    let symbols = ctx.session.os_capability("symbols", |os| os.symbols())?;
    let address = symbols.symbol(&args.name)?;
    let out = SymbolOut {
        name: &args.name,
        address,
        link_address: symbols.profile().symbol_address(&args.name)?,
    };
    output::emit(ctx.format, &out, || format!("{address} {}\n", args.name))
}

/// Arguments of `vmi isf-export`.
#[derive(Debug, clap::Args)]
pub struct IsfExportArgs {
    /// Where to write the ISF (JSON).
    out: std::path::PathBuf,
}

#[derive(Serialize)]
struct ExportOut<'a> {
    path: &'a std::path::Path,
    symbols: usize,
    user_types: usize,
    banner: &'a str,
}

/// `vmi isf-export OUT.json`.
pub fn isf_export(ctx: &Context<'_>, args: &IsfExportArgs) -> Result<(), BoxError> {
    let export = ctx
        .session
        .os_capability("a symbol table export", |os| os.symbol_table_export())?;
    let doc = export.export_isf(ctx.session)?;
    // Write then rename: a half-written symbol table would mislead Volatility later.
    let tmp = args.out.with_extension("json.partial");
    std::fs::write(&tmp, &doc.json).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    let version = ctx
        .session
        .os()
        .map(|os| os.info().version)
        .unwrap_or_default();
    let out = ExportOut {
        path: &args.out,
        symbols: doc.symbols,
        user_types: doc.user_types,
        banner: &version,
    };
    output::emit(ctx.format, &out, || {
        format!(
            "wrote {} ({} symbols, {} types) for {}\n",
            out.path.display(),
            out.symbols,
            out.user_types,
            out.banner
        )
    })
}

fn processes(ctx: &Context<'_>) -> Result<Vec<Process>, BoxError> {
    let processes = ctx
        .session
        .os_capability("processes", |os| os.processes())?;
    let partial = processes.processes(ctx.session)?;
    warn(&partial);
    Ok(partial.items)
}

fn id_or_dash(id: Option<u32>) -> String {
    id.map_or("-".to_owned(), |v| v.to_string())
}

fn process_rows(processes: &[Process]) -> Vec<Vec<String>> {
    processes
        .iter()
        .map(|p| {
            vec![
                p.pid.to_string(),
                p.ppid.to_string(),
                id_or_dash(p.uid),
                id_or_dash(p.gid),
                p.threads.to_string(),
                p.dtb.map_or("-".to_owned(), |d| d.to_string()),
                format!("{:.3}", p.start_time as f64 / 1e9),
                if p.kernel_thread {
                    format!("[{}]", p.name)
                } else {
                    p.name.clone()
                },
            ]
        })
        .collect()
}

const PROCESS_HEADERS: [&str; 8] = [
    "pid", "ppid", "uid", "gid", "threads", "dtb", "start_s", "name",
];

/// `vmi ps`.
pub fn ps(ctx: &Context<'_>) -> Result<(), BoxError> {
    let processes = processes(ctx)?;
    output::emit(ctx.format, &processes, || {
        output::columns(&PROCESS_HEADERS, &process_rows(&processes))
    })
}

/// `vmi pstree`.
pub fn pstree(ctx: &Context<'_>) -> Result<(), BoxError> {
    let tree = process_tree(&processes(ctx)?);
    output::emit(ctx.format, &tree, || {
        let mut out = String::new();
        // Iterative, so that a deep (hostile) tree cannot overflow the stack.
        let mut stack: Vec<(&TreeNode, usize)> = tree.iter().rev().map(|n| (n, 0)).collect();
        while let Some((node, depth)) = stack.pop() {
            out.push_str(&format!(
                "{}{} {}\n",
                "  ".repeat(depth),
                node.process.pid,
                node.process.name
            ));
            stack.extend(node.children.iter().rev().map(|c| (c, depth + 1)));
        }
        out
    })
}

/// `vmi threads PID`.
pub fn threads(ctx: &Context<'_>, args: &PidArgs) -> Result<(), BoxError> {
    let threads = ctx.session.os_capability("threads", |os| os.threads())?;
    let partial = threads.threads(ctx.session, args.pid)?;
    warn(&partial);
    let rows: Vec<Vec<String>> = partial
        .items
        .iter()
        .map(|t| vec![t.tid.to_string(), t.pid.to_string(), t.name.clone()])
        .collect();
    output::emit(ctx.format, &partial.items, || {
        output::columns(&["tid", "pid", "name"], &rows)
    })
}

#[derive(Serialize)]
struct Cmdline {
    pid: u32,
    args: Vec<String>,
}

/// `vmi cmdline PID`.
pub fn cmdline(ctx: &Context<'_>, args: &PidArgs) -> Result<(), BoxError> {
    let arguments = ctx
        .session
        .os_capability("command lines", |os| os.arguments())?;
    let out = Cmdline {
        pid: args.pid,
        args: arguments.command_line(ctx.session, args.pid)?,
    };
    output::emit(ctx.format, &out, || format!("{}\n", out.args.join(" ")))
}

#[derive(Serialize)]
struct Environ {
    pid: u32,
    env: std::collections::BTreeMap<String, String>,
}

/// `vmi env PID`.
pub fn env(ctx: &Context<'_>, args: &PidArgs) -> Result<(), BoxError> {
    let arguments = ctx
        .session
        .os_capability("environments", |os| os.arguments())?;
    let vars = arguments.environment(ctx.session, args.pid)?;
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let out = Environ {
        pid: args.pid,
        env: vars.into_iter().collect(),
    };
    output::emit(ctx.format, &out, || text)
}

/// The address space of process `pid`.
pub fn process_space(ctx: &Context<'_>, pid: u32) -> Result<AddressSpace, BoxError> {
    let processes = ctx
        .session
        .os_capability("processes", |os| os.processes())?;
    Ok(processes.process_space(ctx.session, pid)?)
}

/// `vmi maps PID`.
pub fn maps(ctx: &Context<'_>, args: &PidArgs) -> Result<(), BoxError> {
    let regions = ctx
        .session
        .os_capability("memory regions", |os| os.regions())?;
    let partial = regions.regions(ctx.session, args.pid)?;
    warn(&partial);
    output::emit(ctx.format, &partial.items, || {
        partial
            .items
            .iter()
            .map(|m| {
                format!(
                    "{:x}-{:x} {} {:08x} {}\n",
                    m.start, m.end, m.perms, m.offset, m.path
                )
            })
            .collect()
    })
}

/// Arguments of `vmi modules`.
#[derive(Debug, clap::Args)]
pub struct ModulesArgs {
    /// The modules (DLLs, shared libraries) loaded in this process instead of the kernel's.
    #[arg(long)]
    pid: Option<u32>,
}

/// `vmi modules [--pid N]`.
pub fn modules(ctx: &Context<'_>, args: &ModulesArgs) -> Result<(), BoxError> {
    let partial = match args.pid {
        None => ctx
            .session
            .os_capability("kernel modules", |os| os.kernel_modules())?
            .kernel_modules(ctx.session)?,
        Some(pid) => ctx
            .session
            .os_capability("process modules", |os| os.process_modules())?
            .process_modules(ctx.session, pid)?,
    };
    warn(&partial);
    let rows: Vec<Vec<String>> = partial
        .items
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.base.to_string(),
                m.size.to_string(),
                m.path.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::emit(ctx.format, &partial.items, || {
        output::columns(&["name", "base", "size", "path"], &rows)
    })
}

/// `vmi dmesg`.
pub fn dmesg(ctx: &Context<'_>) -> Result<(), BoxError> {
    let log = ctx
        .session
        .os_capability("kernel log records", |os| os.kernel_log())?;
    let partial = log.kernel_log(ctx.session)?;
    warn(&partial);
    output::emit(ctx.format, &partial.items, || {
        partial
            .items
            .iter()
            .map(|r| {
                format!(
                    "[{:5}.{:06}] {}\n",
                    r.timestamp_ns / 1_000_000_000,
                    r.timestamp_ns % 1_000_000_000 / 1000,
                    r.text
                )
            })
            .collect()
    })
}
