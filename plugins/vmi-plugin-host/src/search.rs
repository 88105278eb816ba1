//! Finding plugins: a path, or a name looked up in the current directory and then in the
//! directories of `$VMI_PLUGIN_PATH`.
//!
//! A name is never handed to the dynamic loader as it is: `dlopen("libscan.so")` searches the
//! system library paths, not the current directory, so a plugin sitting next to the user would
//! be "not a loadable library". [`resolve`] turns every name into a path first (one that
//! contains a slash, which `dlopen` opens as a path).

use std::path::{Path, PathBuf};

use crate::error::PluginError;
use crate::loader::{load, LoadedPlugin};

/// The environment variable listing plugin directories (colon-separated, like `$PATH`).
pub const PLUGIN_PATH_VAR: &str = "VMI_PLUGIN_PATH";

/// The directories of `$VMI_PLUGIN_PATH`, in order (empty when unset).
pub fn plugin_dirs() -> Vec<PathBuf> {
    std::env::var_os(PLUGIN_PATH_VAR)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `path` names a shared library (`.so`, `.dylib`, `.dll`).
pub fn is_library(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib" | "dll")
    )
}

/// The shared libraries in `dirs`, sorted by path within each directory; unreadable
/// directories are skipped.
pub fn candidates(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut libs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_library(p))
            .collect();
        libs.sort();
        out.extend(libs);
    }
    out
}

/// The file names a plugin name may have: the name itself, and for a name that is not already
/// a library file name, `lib<name>.so` and `<name>.so`, also with `-` spelled `_` (Cargo names
/// the library of package `syscall-check` `libsyscall_check.so`).
pub fn file_names(name: &str) -> Vec<String> {
    let mut out = vec![name.to_owned()];
    if !is_library(Path::new(name)) {
        let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
        for n in [name.to_owned(), name.replace('-', "_")] {
            for f in [format!("{prefix}{n}{suffix}"), format!("{n}{suffix}")] {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
    }
    out
}

/// A plugin name compared loosely: without `lib` and the library suffix, `_` as `-`.
fn normalised_stem(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.strip_prefix(std::env::consts::DLL_PREFIX)
        .filter(|s| !s.is_empty())
        .unwrap_or(&stem)
        .replace('_', "-")
}

/// Finds and loads the plugin `name` as a user expects, with the current directory and
/// `$VMI_PLUGIN_PATH` of this process (see [`resolve_in`]).
///
/// # Errors
///
/// [`PluginError::NotFound`] listing every place looked at, or the loader's error for the file
/// found.
pub fn resolve(name: &str) -> Result<LoadedPlugin, PluginError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    resolve_in(name, &cwd, &plugin_dirs())
}

/// Finds and loads the plugin `name`:
///
/// 1. a name containing a slash is a path, loaded as it is;
/// 2. otherwise each file name of [`file_names`] is looked for in `cwd`, then in each of
///    `dirs` in order: the first one that is a file is loaded (and its error, if it is not a
///    loadable plugin, is the answer: it is the file the user named);
/// 3. otherwise, in `dirs` only, a library whose file stem is the name (without `lib`, `_` as
///    `-`), and then one whose plugin calls itself `name` (libraries of the plugin path are
///    trusted code, so loading them to ask is allowed; the current directory is not searched
///    this way).
///
/// The path handed to the loader always contains a slash, so the loader never searches the
/// system library paths for it.
///
/// ```no_run
/// use std::path::{Path, PathBuf};
/// let plugin = vmi_plugin_host::search::resolve_in(
///     "scan",
///     Path::new("/home/me"),
///     &[PathBuf::from("/usr/local/lib/vmi")],
/// )?;
/// println!("{}", plugin.path.display()); // /home/me/libscan.so or /usr/local/lib/vmi/libscan.so
/// # Ok::<(), vmi_plugin_host::PluginError>(())
/// ```
///
/// # Errors
///
/// [`PluginError::NotFound`] listing every place looked at, or the loader's error for the file
/// found.
pub fn resolve_in(name: &str, cwd: &Path, dirs: &[PathBuf]) -> Result<LoadedPlugin, PluginError> {
    if name.contains('/') {
        let path = Path::new(name);
        if path.exists() {
            return load(path);
        }
        return Err(PluginError::NotFound {
            name: name.to_owned(),
            searched: vec![path.to_owned()],
            plugin_path: None,
        });
    }
    let mut searched = Vec::new();
    if !name.is_empty() {
        for dir in std::iter::once(cwd).chain(dirs.iter().map(PathBuf::as_path)) {
            for file in file_names(name) {
                let path = dir.join(file);
                if path.is_file() {
                    return load(&path);
                }
                searched.push(path);
            }
        }
        let wanted = name.replace('_', "-");
        let libs = candidates(dirs);
        if let Some(path) = libs.iter().find(|p| normalised_stem(p) == wanted) {
            return load(path);
        }
        for path in &libs {
            if let Ok(p) = load(path) {
                if p.name == name {
                    return Ok(p);
                }
            }
        }
    }
    Err(PluginError::NotFound {
        name: name.to_owned(),
        searched,
        plugin_path: Some(if dirs.is_empty() {
            format!("${PLUGIN_PATH_VAR} is not set")
        } else {
            format!(
                "no library in ${PLUGIN_PATH_VAR} ({}) calls itself `{name}`",
                std::env::join_paths(dirs)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_names("libscan.so"), ["libscan.so"]);
        assert_eq!(file_names("scan"), ["scan", "libscan.so", "scan.so"]);
        assert_eq!(
            file_names("syscall-check"),
            [
                "syscall-check",
                "libsyscall-check.so",
                "syscall-check.so",
                "libsyscall_check.so",
                "syscall_check.so"
            ]
        );
        assert_eq!(
            normalised_stem(Path::new("/a/libsyscall_check.so")),
            "syscall-check"
        );
        assert_eq!(normalised_stem(Path::new("lib.so")), "lib");
    }
}
