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

/// Checks a `vmi ps --format json` document against the guest's `truth/tasks`: the same pids
/// (the idle task aside), and for each the same ppid, uid, gid, thread count and name
/// (`comm_matches`), kernel threads exactly kthreadd and its children, with no dtb.
pub fn assert_ps_matches_truth(g: &vmi_fixtures::Guest, ps: &serde_json::Value) {
    let ours: std::collections::BTreeMap<u64, &serde_json::Value> = ps
        .as_array()
        .expect("ps prints an array")
        .iter()
        .map(|p| (p["pid"].as_u64().unwrap(), p))
        .collect();
    let truth = g.tasks();
    assert_eq!(
        ours.keys().copied().collect::<Vec<_>>(),
        truth.iter().map(|t| u64::from(t.pid)).collect::<Vec<_>>(),
        "{}: pid sets differ",
        g.name
    );
    for t in &truth {
        let p = ours[&u64::from(t.pid)];
        let what = format!("{} pid {}", g.name, t.pid);
        assert_eq!(p["ppid"].as_u64(), Some(t.ppid.into()), "{what}");
        assert_eq!(p["uid"].as_u64(), Some(t.uid.into()), "{what}");
        assert_eq!(p["gid"].as_u64(), Some(t.gid.into()), "{what}");
        assert_eq!(p["threads"].as_u64(), Some(t.threads.into()), "{what}");
        let name = p["name"].as_str().unwrap();
        assert!(
            vmi_fixtures::comm_matches(name, &t.name),
            "{what}: {name} vs {}",
            t.name
        );
        let kthread = t.pid == 2 || t.ppid == 2;
        assert_eq!(p["kernel_thread"].as_bool(), Some(kthread), "{what}");
        assert_eq!(p["dtb"].is_null(), kthread, "{what}");
    }
}
