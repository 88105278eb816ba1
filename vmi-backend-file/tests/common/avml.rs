//! Running Microsoft's real `avml` in tests (shared by the AVML, hostile-dump and throughput
//! tests).

use std::path::{Path, PathBuf};
use std::process::Command;

/// An avml binary that has the `convert` subcommand.
pub fn avml_binary() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("VMI_AVML") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|p| p.into_string().ok()) {
        candidates.extend(path.split(':').map(|d| Path::new(d).join("avml")));
    }
    if let Ok(versions) = std::fs::read_dir(vmi_fixtures::fixtures_dir().join("avml")) {
        candidates.extend(versions.flatten().map(|v| v.path().join("bin/avml")));
    }
    candidates.into_iter().find(|p| {
        p.is_file()
            && Command::new(p)
                .args(["convert", "--help"])
                .output()
                .is_ok_and(|o| o.status.success())
    })
}

/// Runs `avml convert` from format `from` to `to`, failing the test if avml does.
pub fn convert(avml: &Path, from: &str, to: &str, src: &Path, dst: &Path) {
    let out = Command::new(avml)
        .args(["convert", "--source-format", from, "--format", to])
        .arg(src)
        .arg(dst)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", avml.display()));
    assert!(
        out.status.success(),
        "avml convert {from} -> {to} of {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
