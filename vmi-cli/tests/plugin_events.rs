//! Plugins on events (plugin API 1.1), through the real `vmi` binary and the real
//! `syscall-count` `.so`: on a live guest (QEMU TCG, booted by `scripts/fixture-live`) running
//! the `loop` workload (open + close of one file in a tight loop), a bounded run counts
//! exactly `--count` system calls, the workload's openat and close dominate and alternate,
//! and afterwards the guest runs with no breakpoint left (the workload is back to its
//! unhooked rate). On a dump, the same plugin fails with the event layer's message; without a
//! bound, with the host's. A plugin built against the frozen API 1.0.0 still loads and runs.

#[path = "../../vmi-backend-qemu/tests/common/live.rs"]
mod live;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use live::{LiveGuest, Workload};
use serde_json::Value;

/// Builds the syscall-count library once (cargo does not build other members' cdylibs for an
/// integration test; as vmi-cli/tests/plugins.rs does, with this test's cargo, profile and
/// target directory).
fn plugin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_vmi"));
        let profile_dir = bin.parent().expect("vmi has a directory").to_owned();
        let target_dir = profile_dir.parent().expect("a target directory").to_owned();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--profile", &profile, "--target-dir"])
            .arg(&target_dir)
            .args(["-p", "syscall-count"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("running cargo build for syscall-count");
        assert!(status.success(), "building syscall-count failed");
        let lib = profile_dir.join(format!(
            "{}syscall_count{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
}

fn cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("vmi-plugin-events-cache-{}", std::process::id()))
}

fn vmi(target: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmi"))
        .env_remove("VMI_TARGET")
        .env("VMI_CACHE_DIR", cache_dir())
        .arg("--target")
        .arg(target)
        .args(args)
        .output()
        .unwrap()
}

fn running(g: &LiveGuest) -> bool {
    g.ctl("query-status", serde_json::json!({}))["status"] == "running"
}

/// The workload's counter, read by `vmi read --pid` with the guest running.
fn counter(target: &str, w: &Workload) -> u64 {
    let out = vmi(
        target,
        &[
            "--format",
            "json",
            "read",
            "--pid",
            &w.pid.to_string(),
            &format!("{:#x}", w.counter),
            "8",
        ],
    );
    assert!(
        out.status.success(),
        "vmi read: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex = doc["bytes"].as_str().expect("bytes");
    let bytes: Vec<u8> = (0..8)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    u64::from_le_bytes(bytes.try_into().unwrap())
}

/// The workload's open+close rounds per second over about `d`.
fn rate(target: &str, w: &Workload, d: Duration) -> f64 {
    let t = Instant::now();
    let a = counter(target, w);
    std::thread::sleep(d);
    let b = counter(target, w);
    b.saturating_sub(a) as f64 / t.elapsed().as_secs_f64()
}

/// One row of the plugin's table.
#[derive(Debug)]
struct Row {
    pid: Option<u64>,
    name: String,
    syscall: Option<String>,
    count: u64,
}

fn rows(doc: &Value) -> Vec<Row> {
    let columns: Vec<&str> = doc["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(columns, ["pid", "name", "syscall", "nr", "count"]);
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Row {
            pid: r[0].as_u64(),
            name: r[1].as_str().unwrap_or("").to_owned(),
            syscall: r[2].as_str().map(str::to_owned),
            count: r[4].as_u64().expect("a count"),
        })
        .collect()
}

fn check(g: &LiveGuest) {
    let target = format!("qemu:{}", g.qmp.display());
    let lib = plugin().to_str().unwrap().to_owned();
    let w = g.run_workload("loop");
    // Builds the profile cache too, so the plugin run's own start is quick.
    let unhooked = rate(&target, &w, Duration::from_secs(1));
    assert!(unhooked > 100.0, "the open loop runs: {unhooked:.0}/s");

    const COUNT: u64 = 200;
    let t = Instant::now();
    let out = vmi(
        &target,
        &[
            "--format",
            "json",
            "plugin",
            "run",
            "--count",
            &COUNT.to_string(),
            &lib,
        ],
    );
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "syscall-count: {stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let table = rows(&doc);
    eprintln!(
        "syscall-count: {COUNT} events in {took:.1?} ({stderr}), top rows {:?}",
        &table[..table.len().min(4)]
    );
    assert!(
        stderr.contains(&format!("{COUNT} events")),
        "the summary: {stderr}"
    );
    let total: u64 = table.iter().map(|r| r.count).sum();
    assert_eq!(total, COUNT, "every event counted once: {table:?}");
    let of = |name: &str| {
        table
            .iter()
            .find(|r| r.pid == Some(u64::from(w.pid)) && r.syscall.as_deref() == Some(name))
            .map_or(0, |r| r.count)
    };
    let (opens, closes) = (of("openat"), of("close"));
    let workload_total: u64 = table
        .iter()
        .filter(|r| r.pid == Some(u64::from(w.pid)))
        .map(|r| r.count)
        .sum();
    // Every system call stops the guest (~10 ms a stop under TCG), which slows the loop while
    // the guest's timed sleepers (vmi-target, clock_nanosleep) keep their wall-clock rate:
    // the loop does not get most of the events, but its own are its open and close.
    assert!(
        opens >= 5 && closes >= 5,
        "the workload's openat ({opens}) and close ({closes}) are counted: {table:?}"
    );
    assert!(
        opens + closes >= workload_total * 9 / 10,
        "openat and close dominate pid {}'s calls ({workload_total}): {table:?}",
        w.pid
    );
    assert!(
        opens.abs_diff(closes) <= 1,
        "the loop alternates open and close: {opens} vs {closes}"
    );
    // Each row's process is one the guest has, under its name.
    let ps: Vec<(u64, String)> = {
        let out = vmi(&target, &["--format", "json", "ps"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["pid"].as_u64().unwrap(),
                    p["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    for r in &table {
        let pid = r.pid.expect("every system call stop names its process");
        assert!(
            ps.iter().any(|(p, n)| *p == pid && *n == r.name),
            "{r:?} is a process of the guest: {ps:?}"
        );
    }
    assert!(
        table
            .iter()
            .filter(|r| r.pid == Some(u64::from(w.pid)))
            .all(|r| r.name == "vmi-workload"),
        "the workload's thread name: {table:?}"
    );

    // Nothing of ours is left: the guest runs, at its unhooked speed.
    assert!(running(g), "the guest runs after the plugin");
    let back = rate(&target, &w, Duration::from_secs(1));
    eprintln!("open loop: unhooked {unhooked:.0}/s, after the plugin {back:.0}/s");
    assert!(
        back > unhooked * 0.5,
        "the workload is back to speed: {back:.0}/s vs {unhooked:.0}/s before"
    );

    // Only the named calls, one process, bounded by time: only its openat and close, and
    // these alone stop the guest, so the loop gets (nearly) all events.
    let out = vmi(
        &target,
        &[
            "--format",
            "json",
            "plugin",
            "run",
            "--duration",
            "2",
            &lib,
            "--",
            "--pid",
            &w.pid.to_string(),
            "openat",
            "close",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "syscall-count openat close: {stderr}");
    assert!(stderr.contains("ended by duration"), "{stderr}");
    let table = rows(&serde_json::from_slice(&out.stdout).unwrap());
    let mut calls: Vec<&str> = table
        .iter()
        .map(|r| r.syscall.as_deref().unwrap_or("?"))
        .collect();
    calls.sort_unstable();
    assert_eq!(calls, ["close", "openat"], "{table:?}");
    assert!(table
        .iter()
        .all(|r| r.pid == Some(u64::from(w.pid)) && r.count > 0));
    let named: Vec<u64> = table.iter().map(|r| r.count).collect();
    assert!(named[0].abs_diff(named[1]) <= 1, "alternating: {table:?}");
    eprintln!(
        "syscall-count --pid {} openat close, 2 s: {table:?} ({stderr})",
        w.pid
    );
    assert!(running(g), "the guest runs after the timed run");

    // Without a bound the host refuses before setting anything.
    let out = vmi(&target, &["plugin", "run", &lib]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--count N"), "{stderr}");
    assert!(running(g));
}

fn syscall_count_4level_1_vcpu() {
    let Some(g) = LiveGuest::start("6.1", 4, false, 1) else {
        return;
    };
    check(&g);
}

fn syscall_count_5level_2_vcpus() {
    let Some(g) = LiveGuest::start("6.12", 5, true, 2) else {
        return;
    };
    check(&g);
}

/// The plugin of `plugins/tests/api-1.0`, built against the frozen vmi-plugin-api 1.0.0 (its
/// own workspace, built here into this test's target directory).
fn api_1_0_plugin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_vmi"));
    let target_dir = bin
        .parent()
        .and_then(Path::parent)
        .expect("a target directory")
        .join("api-1.0");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/tests/api-1.0");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--offline", "--manifest-path"])
        .arg(format!("{root}/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("running cargo build for the API 1.0 plugin");
    assert!(status.success(), "building the API 1.0 plugin failed");
    let lib = target_dir.join(format!(
        "debug/{}vmi_test_plugin_api_1_0{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// A plugin built against API 1.0.0 loads on this (1.1) host and runs as before: its vtable
/// lacks the 1.1 methods, so it subscribes to nothing (also when a bound is given).
fn a_plugin_of_api_1_0_still_loads_and_runs() {
    let Some(g) = vmi_fixtures::guests().into_iter().next() else {
        vmi_fixtures::skip("no fixture guest");
        return;
    };
    let lib = api_1_0_plugin();
    let lib = lib.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmi"))
        .args(["--format", "json", "plugin", "info", lib])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["name"], "api-1.0");
    assert_eq!(info["api_version"], "1.0.0");
    for extra in [&[][..], &["--count", "5"][..]] {
        let mut args = vec!["--format", "json", "plugin", "run"];
        args.extend_from_slice(extra);
        args.push(lib);
        let out = vmi(g.elf().to_str().unwrap(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {stderr}");
        assert!(!stderr.contains("events"), "not an event run: {stderr}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            doc["columns"],
            serde_json::json!(["os_kind", "kernel_base"])
        );
        assert_eq!(doc["rows"][0][0], "linux", "{doc}");
        assert!(
            doc["rows"][0][1].as_str().unwrap().starts_with("0xffff"),
            "{doc}"
        );
    }
}

/// A memory dump has no events: the plugin fails with the event layer's message.
fn on_a_dump_the_event_layer_says_why() {
    let Some(g) = vmi_fixtures::guests().into_iter().next() else {
        vmi_fixtures::skip("no fixture guest");
        return;
    };
    let lib = plugin().to_str().unwrap().to_owned();
    let out = vmi(
        g.elf().to_str().unwrap(),
        &["plugin", "run", "--count", "10", &lib],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("syscall-count: events:") && stderr.contains("cannot set breakpoints"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing half-written on stdout");
}

vmi_fixtures::real_guest_tests!(
    a_plugin_of_api_1_0_still_loads_and_runs,
    on_a_dump_the_event_layer_says_why,
    syscall_count_4level_1_vcpu,
    syscall_count_5level_2_vcpus,
);
