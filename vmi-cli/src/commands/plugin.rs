//! `vmi plugin run | info | list`: third-party analysis plugins (see plugins/README.md).

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use vmi_core::BoxError;
use vmi_plugin_host::search::{candidates, plugin_dirs, PLUGIN_PATH_VAR};
use vmi_plugin_host::{Cell, EventLimits, LoadedPlugin, SessionHost, Table};

use super::Context;
use crate::output;
use crate::Format;

/// `vmi plugin ...`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Run a plugin on the target: `vmi plugin run PATH.so [-- ARGS]`.
    Run {
        /// For a plugin that subscribes to events (plugin API 1.1): stop after N events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// For a plugin that subscribes to events: stop after S seconds (fractions allowed).
        #[arg(long, value_name = "S", value_parser = parse_seconds)]
        duration: Option<Duration>,
        /// The plugin library, or a plugin name found on $VMI_PLUGIN_PATH.
        plugin: String,
        /// Arguments for the plugin (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Name, version, API version, description and usage of a plugin (no target needed).
    Info {
        /// The plugin library, or a plugin name found on $VMI_PLUGIN_PATH.
        plugin: String,
    },
    /// Every plugin on $VMI_PLUGIN_PATH (colon-separated directories), loaded or refused.
    List,
}

impl Args {
    /// Whether the command needs a target (only `run` does).
    pub fn needs_target(&self) -> bool {
        matches!(self.action, Action::Run { .. })
    }
}

/// Finds a plugin: a path (a name with a slash), else a name looked up in the current
/// directory and then on `$VMI_PLUGIN_PATH` (see `vmi_plugin_host::search::resolve_in`).
fn resolve(plugin: &str) -> Result<LoadedPlugin, BoxError> {
    Ok(vmi_plugin_host::search::resolve(plugin)?)
}

/// `vmi plugin run`.
pub fn run(ctx: &Context<'_>, args: &Args) -> Result<(), BoxError> {
    let Action::Run {
        plugin,
        args,
        count,
        duration,
    } = &args.action
    else {
        return without_target(ctx.format, args);
    };
    let mut plugin = resolve(plugin)?;
    let host = SessionHost::new(ctx.session);
    let limits = EventLimits {
        count: *count,
        duration: *duration,
    };
    let run = plugin.run_with_events(&host, args, limits)?;
    if let Some(summary) = &run.events {
        // Not part of the table (stdout stays one document): how the event run went.
        eprintln!(
            "vmi: {} events in {:.1} s ({} guest stops), ended by {}",
            summary.events,
            summary.elapsed_ms as f64 / 1000.0,
            summary.stops,
            summary.end
        );
        for w in summary.warnings.iter() {
            eprintln!("vmi: warning: {w}");
        }
    }
    render(ctx.format, &run.table)
}

/// `--duration S`: seconds, fractions allowed.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a duration"))
}

/// `vmi plugin info` and `vmi plugin list`, which open no target.
pub fn without_target(format: Format, args: &Args) -> Result<(), BoxError> {
    match &args.action {
        Action::Run { .. } => Err("`vmi plugin run` needs a target".into()),
        Action::Info { plugin } => {
            let p = resolve(plugin)?;
            let doc = json!({
                "name": p.name,
                "version": p.version,
                "api_version": p.api_version,
                "description": p.description,
                "usage": p.usage,
                "path": p.path.display().to_string(),
            });
            output::emit(format, &doc, || {
                format!(
                    "name          {}\nversion       {}\napi_version   {} (this vmi: {})\ndescription   {}\nusage         {}\npath          {}\n",
                    p.name,
                    p.version,
                    p.api_version,
                    vmi_plugin_host::API_VERSION,
                    p.description,
                    p.usage,
                    p.path.display()
                )
            })
        }
        Action::List => list(format),
    }
}

fn list(format: Format) -> Result<(), BoxError> {
    let dirs = plugin_dirs();
    let mut docs = Vec::new();
    let mut rows = Vec::new();
    for path in candidates(&dirs) {
        let (doc, row) = match vmi_plugin_host::load(&path) {
            Ok(p) => (
                json!({
                    "name": p.name, "version": p.version, "api_version": p.api_version,
                    "status": "ok", "description": p.description,
                    "path": path.display().to_string(),
                }),
                vec![
                    p.name.clone(),
                    p.version.clone(),
                    p.api_version.clone(),
                    "ok".to_owned(),
                    p.description.clone(),
                    path.display().to_string(),
                ],
            ),
            Err(e) => {
                let name = stem(&path);
                let status = format!("refused: {e}");
                (
                    json!({
                        "name": name, "version": null, "api_version": null,
                        "status": status, "description": null,
                        "path": path.display().to_string(),
                    }),
                    vec![
                        name,
                        "-".into(),
                        "-".into(),
                        status.lines().next().unwrap_or("").to_owned(),
                        "-".into(),
                        path.display().to_string(),
                    ],
                )
            }
        };
        docs.push(doc);
        rows.push(row);
    }
    if dirs.is_empty() {
        eprintln!("vmi: warning: ${PLUGIN_PATH_VAR} is not set: no plugin directories to search");
    }
    output::emit(format, &docs, || {
        output::columns(
            &["name", "version", "api", "status", "description", "path"],
            &rows,
        )
    })
}

fn stem(path: &Path) -> String {
    let s = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    s.strip_prefix("lib").map(str::to_owned).unwrap_or(s)
}

fn cell_json(c: &Cell) -> Value {
    match c {
        Cell::Empty => Value::Null,
        Cell::Int(i) => json!(i),
        Cell::Address(a) => json!(format!("{a:#x}")),
        Cell::Text(s) => json!(s.as_str()),
        Cell::Bytes(b) => json!(output::hex_string(b)),
    }
}

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Empty => "-".to_owned(),
        Cell::Int(i) => i.to_string(),
        Cell::Address(a) => format!("{a:#x}"),
        Cell::Text(s) => s.as_str().to_owned(),
        Cell::Bytes(b) => output::hex_string(b),
    }
}

/// Prints a plugin's table: columns for people, `{"columns": [..], "rows": [[..], ..]}` in
/// JSON.
fn render(format: Format, table: &Table) -> Result<(), BoxError> {
    let doc = json!({
        "columns": table.columns.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "rows": table
            .rows
            .iter()
            .map(|r| r.iter().map(cell_json).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
    });
    output::emit(format, &doc, || {
        let headers: Vec<&str> = table.columns.iter().map(|c| c.as_str()).collect();
        let rows: Vec<Vec<String>> = table
            .rows
            .iter()
            .map(|r| r.iter().map(cell_text).collect())
            .collect();
        output::columns(&headers, &rows)
    })
}
