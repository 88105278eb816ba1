//! Loading plugin libraries through their abi_stable library header.
//!
//! `RootModule::load_from_file` caches the first root module of each type per process, so a
//! second plugin would silently be the first one again. Here every library is opened on its
//! own (`lib_header_from_path`), its API version is checked against ours with a message that
//! names both, and only then is its root module initialised (`init_root_module`, which checks
//! the layout of every type crossing the boundary).

use std::path::{Path, PathBuf};

use vmi_plugin_api::abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use vmi_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use vmi_plugin_api::abi_stable::std_types::RString;
use vmi_plugin_api::compat::v1_0;
use vmi_plugin_api::{
    HostInterface_TO, PluginBox, PluginErrorKind, PluginModuleRef, Table, API_VERSION,
    ROOT_MODULE_NAME,
};

use crate::error::PluginError;
use crate::session_host::SessionHost;

/// A loaded plugin, ready to run. Libraries are never unloaded (abi_stable's rule: a type
/// layout or vtable may still point into them).
pub struct LoadedPlugin {
    /// The library's path.
    pub path: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// The plugin's own version (may be empty).
    pub version: String,
    /// One line on what it does.
    pub description: String,
    /// How to call it.
    pub usage: String,
    /// The plugin-API version it was built against.
    pub api_version: String,
    pub(crate) plugin: PluginObject,
}

/// The plugin object, through the ABI version the plugin was built for.
pub(crate) enum PluginObject {
    /// This host's API version (1.1): events.
    Current(PluginBox),
    /// API 1.0 (no events), loaded through its frozen root module.
    V1_0(v1_0::PluginBox),
}

impl PluginObject {
    fn name(&self) -> RString {
        match self {
            PluginObject::Current(p) => p.name(),
            PluginObject::V1_0(p) => p.name(),
        }
    }
    fn version(&self) -> RString {
        match self {
            PluginObject::Current(p) => p.version(),
            PluginObject::V1_0(p) => p.version(),
        }
    }
    fn description(&self) -> RString {
        match self {
            PluginObject::Current(p) => p.description(),
            PluginObject::V1_0(p) => p.description(),
        }
    }
    fn usage(&self) -> RString {
        match self {
            PluginObject::Current(p) => p.usage(),
            PluginObject::V1_0(p) => p.usage(),
        }
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

/// The plugin's name before it can be asked: the file stem without `lib`.
fn stem(path: &Path) -> String {
    let s = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    s.strip_prefix("lib").map(str::to_owned).unwrap_or(s)
}

/// `(major, minor)` of a `major.minor.patch` string.
fn major_minor(v: &str) -> Option<(u64, u64)> {
    let mut it = v.split('.');
    let major = it.next()?.trim().parse().ok()?;
    let minor = it.next()?.trim().parse().ok()?;
    Some((major, minor))
}

/// Whether a plugin built against API `theirs` can be loaded by a host speaking `ours`
/// (plugins/README.md, "ABI rules"): the same major version, and a minor version no newer
/// than ours (for 0.x: the same minor). Within a major version the root module and the
/// plugin and host interfaces only grow at their ends (prefix types, which abi_stable's layout
/// check verifies next), so an older plugin lacks only what this host can do without; a newer
/// one may rely on what this host does not offer (a 1.1 plugin's events) and is refused.
pub fn compatible(ours: &str, theirs: &str) -> bool {
    match (major_minor(ours), major_minor(theirs)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, x)), Some((b, y))) => a == b && y <= x,
        _ => false,
    }
}

/// Whether `theirs` is of our major version but a newer minor one (the refusal then says
/// "upgrade vmi" rather than "rebuild").
fn newer_minor(ours: &str, theirs: &str) -> bool {
    match (major_minor(ours), major_minor(theirs)) {
        (Some((a, x)), Some((b, y))) => a == b && a > 0 && y > x,
        _ => false,
    }
}

/// Loads the plugin library at `path`.
///
/// # Errors
///
/// [`PluginError`] says why: not a library, not a vmi plugin, another API major version or
/// another layout (naming the plugin, its version and ours), or a failing constructor.
pub fn load(path: &Path) -> Result<LoadedPlugin, PluginError> {
    let plugin = stem(path);
    let header = lib_header_from_path(path).map_err(|e| match e {
        LibraryError::OpenError { .. } => PluginError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        LibraryError::GetSymbolError { .. } => PluginError::NotAPlugin {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        other => PluginError::AbiStable {
            plugin: plugin.clone(),
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })?;
    let found = header.root_mod_consts().name().to_string();
    if found != ROOT_MODULE_NAME {
        return Err(PluginError::OtherRootModule {
            path: path.to_owned(),
            found,
            expected: ROOT_MODULE_NAME,
        });
    }
    let theirs = header.version_strings().version.to_string();
    if newer_minor(API_VERSION, &theirs) {
        return Err(PluginError::NewerApi {
            plugin,
            path: path.to_owned(),
            theirs,
            ours: API_VERSION,
        });
    }
    if !compatible(API_VERSION, &theirs) {
        return Err(PluginError::ApiVersion {
            plugin,
            path: path.to_owned(),
            theirs,
            ours: API_VERSION,
            ours_major: API_VERSION.split('.').next().unwrap_or("").to_owned(),
        });
    }
    let layout_error = |e: LibraryError| match e {
        LibraryError::RootModule { .. } => PluginError::Constructor {
            plugin: plugin.clone(),
            path: path.to_owned(),
            message: e.to_string(),
        },
        other => PluginError::Layout {
            plugin: plugin.clone(),
            path: path.to_owned(),
            theirs: theirs.clone(),
            ours: API_VERSION,
            details: layout_summary(&other.to_string()),
        },
    };
    let constructor_error = |e: vmi_plugin_api::PluginError| PluginError::Constructor {
        plugin: plugin.clone(),
        path: path.to_owned(),
        message: e.message.into_string(),
    };
    // Checked against the layout of the version it claims (abi_stable refuses an older
    // library's shorter vtables against ours: see vmi_plugin_api::compat).
    let object = if major_minor(&theirs) == Some((1, 0)) {
        let module = header
            .init_root_module::<v1_0::PluginModuleRef>()
            .map_err(layout_error)?;
        PluginObject::V1_0(module.new()().into_result().map_err(constructor_error)?)
    } else {
        let module = header
            .init_root_module::<PluginModuleRef>()
            .map_err(layout_error)?;
        PluginObject::Current(module.new()().into_result().map_err(constructor_error)?)
    };
    Ok(LoadedPlugin {
        path: path.to_owned(),
        name: object.name().into_string(),
        version: object.version().into_string(),
        description: object.description().into_string(),
        usage: object.usage().into_string(),
        api_version: theirs,
        plugin: object,
    })
}

impl LoadedPlugin {
    /// Runs the plugin on `host` with `args`.
    ///
    /// # Errors
    ///
    /// The plugin's own error, a caught panic ([`PluginError::Panicked`]; the host goes on),
    /// or a table whose rows do not match its columns.
    pub fn run(&self, host: &SessionHost<'_>, args: &[String]) -> Result<Table, PluginError> {
        let host = HostInterface_TO::from_ptr(host, TD_Opaque);
        let args: Vec<RString> = args.iter().map(|a| RString::from(a.as_str())).collect();
        let table = match &self.plugin {
            PluginObject::Current(p) => p.run(host, args.as_slice().into()),
            PluginObject::V1_0(p) => p.run(host, args.as_slice().into()),
        }
        .into_result()
        .map_err(|e| self.plugin_error(e))?;
        self.check_table(table)
    }

    /// The host's error for one the plugin returned.
    pub(crate) fn plugin_error(&self, e: vmi_plugin_api::PluginError) -> PluginError {
        match e.kind {
            PluginErrorKind::Panicked => PluginError::Panicked {
                plugin: self.name.clone(),
                message: e.message.into_string(),
            },
            _ => PluginError::Failed {
                plugin: self.name.clone(),
                message: e.message.into_string(),
            },
        }
    }

    /// `table`, if its rows match its columns.
    pub(crate) fn check_table(&self, table: Table) -> Result<Table, PluginError> {
        let columns = table.columns.len();
        if let Some((row, r)) = table
            .rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != columns)
        {
            return Err(PluginError::MalformedTable {
                plugin: self.name.clone(),
                row,
                len: r.len(),
                columns,
            });
        }
        Ok(table)
    }
}

/// The gist of abi_stable's layout report (hundreds of lines: both layouts in full): its
/// closing `Error:` paragraphs, whitespace folded.
fn layout_summary(report: &str) -> String {
    let tail = report.find("\nError:").map_or(report, |i| &report[i + 1..]);
    let mut out = String::new();
    for para in tail.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let folded: Vec<&str> = para.split_whitespace().collect();
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("  ");
        out.push_str(&folded.join(" "));
    }
    out
}

/// The root module type plugins export, for messages: `vmi_plugin` at API [`API_VERSION`].
pub fn describe_abi() -> String {
    format!(
        "root module `{}`, vmi-plugin-api {}",
        <PluginModuleRef as RootModule>::NAME,
        API_VERSION
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        // Older minors load on newer hosts; a newer minor is refused by an older host.
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(compatible("1.1.0", "1.1.3"));
        assert!(compatible("1.1.0", "1.0.0"));
        assert!(!compatible("1.0.0", "1.1.0"));
        assert!(!compatible("1.0.0", "1.4.2"));
        assert!(newer_minor("1.0.0", "1.1.0"));
        assert!(!newer_minor("1.1.0", "1.0.0"));
        assert!(!newer_minor("1.0.0", "2.0.0"));
        assert!(!compatible("1.0.0", "2.0.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(compatible("0.1.0", "0.1.7"));
        assert!(!compatible("1.0.0", "x"));
    }

    #[test]
    fn stems() {
        assert_eq!(stem(Path::new("/a/libscan.so")), "scan");
        assert_eq!(stem(Path::new("plugin.so")), "plugin");
    }
}
