//! Shared helpers of the `vmi` command tests: running the real binary (the real-guest fixtures
//! and their truth come from `vmi-fixtures`).

#![allow(dead_code)] // each test file uses a different part

use std::path::Path;
use std::process::Command;

/// The `vmi` binary cargo built for these tests.
pub fn vmi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmi"));
    c.env_remove("VMI_TARGET");
    c
}

/// Runs `vmi` with `args`, expecting success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = vmi().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "vmi {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `vmi --format json ARGS`, expecting success; returns the parsed document.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let text = run_ok(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vmi {args:?}: bad JSON ({e}): {text}"))
}

/// Runs `vmi` expecting failure; returns stderr and checks stdout stayed empty.
pub fn run_err(args: &[&str]) -> String {
    let out = vmi().args(args).output().unwrap();
    assert!(!out.status.success(), "vmi {args:?} unexpectedly succeeded");
    assert!(
        out.stdout.is_empty(),
        "vmi {args:?} failed but wrote to stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Decodes the `bytes` hex string of `vmi read --format json`.
pub fn bytes_of(doc: &serde_json::Value) -> Vec<u8> {
    let hex = doc["bytes"].as_str().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A fresh profile cache directory for one test (so tests do not share cache state).
pub fn fresh_cache_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vmi-cli-cache-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `vmi --format json ARGS` with `$VMI_CACHE_DIR` set, expecting success.
pub fn run_json_cached(cache: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = vmi()
        .env("VMI_CACHE_DIR", cache)
        .args(&all)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmi {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
