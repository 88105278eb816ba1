//! [`PluginError`]: why a plugin could not be loaded or run.

use std::path::PathBuf;

/// Why a plugin could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// No file of that name was found where plugins are looked for.
    #[error(
        "no plugin `{name}`: looked for {}{}",
        paths(.searched),
        .plugin_path.as_deref().map(|p| format!("; {p}")).unwrap_or_default()
    )]
    NotFound {
        /// The name or path given.
        name: String,
        /// Every path looked at, in order.
        searched: Vec<PathBuf>,
        /// What the search of `$VMI_PLUGIN_PATH` by plugin name found (`None` for a path).
        plugin_path: Option<String>,
    },
    /// The file could not be opened as a shared library.
    #[error("{path}: not a loadable library: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The dynamic loader's message.
        reason: String,
    },
    /// The library exports no abi_stable root module (not a vmi plugin).
    #[error("{path}: not a vmi plugin (no abi_stable library header): {reason}")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// What was missing.
        reason: String,
    },
    /// The library's root module is another program's (another abi_stable root module name).
    #[error(
        "{path}: not a vmi plugin: its root module is `{found}`, vmi plugins export `{expected}`"
    )]
    OtherRootModule {
        /// The file.
        path: PathBuf,
        /// The root module name found.
        found: String,
        /// `vmi_plugin`.
        expected: &'static str,
    },
    /// The plugin was built against an incompatible plugin-API version.
    #[error(
        "plugin {plugin} ({path}) was built against vmi-plugin-api {theirs}, incompatible with \
         this vmi's plugin API {ours}: rebuild it against vmi-plugin-api {ours_major}.x"
    )]
    ApiVersion {
        /// The plugin's name (its file stem when it cannot be asked).
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The API version it was built against.
        theirs: String,
        /// Ours.
        ours: &'static str,
        /// Our major version (the compatible line).
        ours_major: String,
    },
    /// The plugin was built against a newer minor version of the plugin API than this vmi's
    /// (it may use what this vmi does not offer, such as events in 1.1).
    #[error(
        "plugin {plugin} ({path}) was built against vmi-plugin-api {theirs}, newer than this \
         vmi's plugin API {ours}: upgrade vmi, or rebuild the plugin against vmi-plugin-api {ours}"
    )]
    NewerApi {
        /// The plugin's name (its file stem).
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The API version it was built against.
        theirs: String,
        /// Ours.
        ours: &'static str,
    },
    /// The plugin subscribed to events and they could not be had: the target has none, the
    /// OS profile cannot resolve a subscription, or the event loop failed.
    #[error("plugin {plugin}: events: {message}")]
    Events {
        /// The plugin's name.
        plugin: String,
        /// What failed (the event layer's or the OS profile's message).
        message: String,
    },
    /// The plugin subscribed to events but the run was given no bound.
    #[error(
        "plugin {plugin} runs on events: bound the run with `--count N` or `--duration SECONDS` \
         (before the plugin: `vmi plugin run --count 1000 {plugin}`)"
    )]
    Unbounded {
        /// The plugin's name.
        plugin: String,
    },
    /// The plugin was built with an abi_stable whose library header is incompatible.
    #[error("plugin {plugin} ({path}) was built with an incompatible abi_stable: {reason}")]
    AbiStable {
        /// The plugin's name (its file stem).
        plugin: String,
        /// The file.
        path: PathBuf,
        /// abi_stable's message.
        reason: String,
    },
    /// A type crossing the boundary has another layout than this vmi expects.
    #[error(
        "plugin {plugin} ({path}, vmi-plugin-api {theirs}) does not match this vmi's plugin API \
         {ours} in layout:\n{details}"
    )]
    Layout {
        /// The plugin's name (its file stem).
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The API version it claims.
        theirs: String,
        /// Ours.
        ours: &'static str,
        /// abi_stable's layout report.
        details: String,
    },
    /// The plugin's constructor failed or panicked.
    #[error("plugin {plugin} ({path}) failed to start: {message}")]
    Constructor {
        /// The plugin's name (its file stem).
        plugin: String,
        /// The file.
        path: PathBuf,
        /// Its message.
        message: String,
    },
    /// The plugin's analysis returned an error.
    #[error("plugin {plugin}: {message}")]
    Failed {
        /// The plugin's name.
        plugin: String,
        /// Its message.
        message: String,
    },
    /// The plugin panicked; the panic was caught at the boundary and the host goes on.
    #[error("plugin {plugin} {message}")]
    Panicked {
        /// The plugin's name.
        plugin: String,
        /// Where and with what message.
        message: String,
    },
    /// The plugin returned a table whose rows do not match its columns.
    #[error("plugin {plugin} returned a malformed table: row {row} has {len} cells for {columns} columns")]
    MalformedTable {
        /// The plugin's name.
        plugin: String,
        /// The row.
        row: usize,
        /// Its length.
        len: usize,
        /// Number of columns.
        columns: usize,
    },
}

/// `a, b, c` for a list of paths.
fn paths(p: &[PathBuf]) -> String {
    if p.is_empty() {
        return "nothing (an empty name)".to_owned();
    }
    p.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
