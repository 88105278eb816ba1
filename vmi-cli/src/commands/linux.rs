//! Commands that need a Linux kernel bound to the session.

use serde::Serialize;
use vmi_core::{AddressSpace, BoxError, Va};
use vmi_os_linux::Kernel;

use super::Context;
use crate::output;

/// The kernel bound to the session, or an error saying none was found.
pub fn kernel<'a>(ctx: &Context<'a>) -> Result<&'a Kernel, BoxError> {
    vmi_os_linux::linux(ctx.session)
        .map(|os| os.kernel())
        .ok_or_else(|| "no Linux kernel was found in the target".into())
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
    let kernel = kernel(ctx)?;
    let address = kernel.symbol(&args.name)?;
    let out = SymbolOut {
        name: &args.name,
        address,
        link_address: kernel.profile().symbol_address(&args.name)?,
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
    let kernel = kernel(ctx)?;
    let doc = vmi_os_linux::isf_export::export(ctx.session, kernel)?;
    let bytes = serde_json::to_vec(&doc)?;
    // Write then rename: a half-written symbol table would mislead Volatility later.
    let tmp = args.out.with_extension("json.partial");
    std::fs::write(&tmp, &bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    let out = ExportOut {
        path: &args.out,
        symbols: doc.symbols.len(),
        user_types: doc.user_types.len(),
        banner: kernel.banner().trim_end(),
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

/// Prints the warnings of a partial result on stderr (the items still go to stdout).
fn warn<T>(partial: &vmi_os_linux::Partial<T>) {
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

/// The guest's processes as `/proc` lists them: the idle task (pid 0) is left out.
fn user_visible_processes(ctx: &Context<'_>) -> Result<Vec<vmi_os_linux::Process>, BoxError> {
    let partial = vmi_os_linux::processes(ctx.session, kernel(ctx)?)?;
    warn(&partial);
    Ok(partial.items.into_iter().filter(|p| !p.is_idle()).collect())
}

fn process_rows(processes: &[vmi_os_linux::Process]) -> Vec<Vec<String>> {
    processes
        .iter()
        .map(|p| {
            vec![
                p.pid.to_string(),
                p.ppid.to_string(),
                p.uid.to_string(),
                p.gid.to_string(),
                p.threads.to_string(),
                p.dtb.map_or("-".to_owned(), |d| d.to_string()),
                format!("{:.3}", p.start_time_ns as f64 / 1e9),
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
    let processes = user_visible_processes(ctx)?;
    output::emit(ctx.format, &processes, || {
        output::columns(&PROCESS_HEADERS, &process_rows(&processes))
    })
}

/// `vmi pstree`.
pub fn pstree(ctx: &Context<'_>) -> Result<(), BoxError> {
    let processes = user_visible_processes(ctx)?;
    let tree = vmi_os_linux::process_tree(&processes);
    output::emit(ctx.format, &tree, || {
        let mut out = String::new();
        // Iterative, so that a deep (hostile) tree cannot overflow the stack.
        let mut stack: Vec<(&vmi_os_linux::TreeNode, usize)> =
            tree.iter().rev().map(|n| (n, 0)).collect();
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
    let partial = vmi_os_linux::threads(ctx.session, kernel(ctx)?, args.pid)?;
    warn(&partial);
    let rows: Vec<Vec<String>> = partial
        .items
        .iter()
        .map(|t| {
            vec![
                t.tid.to_string(),
                t.tgid.to_string(),
                t.task.to_string(),
                t.name.clone(),
            ]
        })
        .collect();
    output::emit(ctx.format, &partial.items, || {
        output::columns(&["tid", "tgid", "task", "name"], &rows)
    })
}

#[derive(Serialize)]
struct Cmdline {
    pid: u32,
    args: Vec<String>,
}

/// `vmi cmdline PID`.
pub fn cmdline(ctx: &Context<'_>, args: &PidArgs) -> Result<(), BoxError> {
    let out = Cmdline {
        pid: args.pid,
        args: vmi_os_linux::cmdline(ctx.session, kernel(ctx)?, args.pid)?,
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
    let vars = vmi_os_linux::environ(ctx.session, kernel(ctx)?, args.pid)?;
    let text: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let out = Environ {
        pid: args.pid,
        env: vars.into_iter().collect(),
    };
    output::emit(ctx.format, &out, || text)
}

/// The address space of process `pid`.
pub fn process_space(ctx: &Context<'_>, pid: u32) -> Result<AddressSpace, BoxError> {
    let kernel = kernel(ctx)?;
    let process = vmi_os_linux::find_process(ctx.session, kernel, pid)?;
    Ok(vmi_os_linux::process_space(ctx.session, kernel, &process)?)
}

/// `vmi maps PID`.
pub fn maps(ctx: &Context<'_>, args: &PidArgs) -> Result<(), BoxError> {
    let partial = vmi_os_linux::maps(ctx.session, kernel(ctx)?, args.pid)?;
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

/// `vmi modules`.
pub fn modules(ctx: &Context<'_>) -> Result<(), BoxError> {
    let partial = vmi_os_linux::modules(ctx.session, kernel(ctx)?)?;
    warn(&partial);
    let rows: Vec<Vec<String>> = partial
        .items
        .iter()
        .map(|m| vec![m.name.clone(), m.base.to_string(), m.size.to_string()])
        .collect();
    output::emit(ctx.format, &partial.items, || {
        output::columns(&["name", "base", "size"], &rows)
    })
}

/// `vmi dmesg`.
pub fn dmesg(ctx: &Context<'_>) -> Result<(), BoxError> {
    let partial = vmi_os_linux::dmesg(ctx.session, kernel(ctx)?)?;
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
