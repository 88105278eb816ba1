//! Finding plugins: every shared library in the directories of `$VMI_PLUGIN_PATH`.

use std::path::{Path, PathBuf};

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
