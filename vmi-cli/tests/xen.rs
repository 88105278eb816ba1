//! `vmi` on Xen targets. With Debian's real Xen 4.17 libraries (installed by `scripts/test`)
//! on this machine, which is not a Xen dom0: `vmi --target xen:web01 info` fails with a clear
//! message. With `vmi-fake-xen` (a test-only library exporting the Xen functions, backed by a
//! real guest dump, loaded through the backend's loader via `$VMI_XEN_LIBRARY_DIR`):
//! `vmi --target xen:NAME ps` runs the whole Linux analysis through the Xen code path and
//! matches the guest's truth. No Xen hypervisor runs here.

mod common;

#[path = "../../vmi-backend-xen/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{fresh_cache_dir, vmi};
use vmi_fixtures::guests;

/// Runs `cmd`, killing it after `limit` (a hang is a failure).
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("vmi hung for more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn fake_vmi(dump: &Path, cache: &Path, log: Option<&Path>) -> Command {
    let mut c = vmi();
    c.env("VMI_XEN_LIBRARY_DIR", support::fake_library_dir())
        .env("VMI_FAKE_XEN_DUMP", dump)
        .env("VMI_FAKE_XEN_NAME", "web01")
        .env("VMI_CACHE_DIR", cache);
    if let Some(log) = log {
        c.env("VMI_FAKE_XEN_LOG", log);
    }
    c
}

fn xen_target_outside_dom0_fails_clearly_without_panic_or_hang() {
    if !support::real_libraries_present("vmi --target xen:web01 info (real libraries)") {
        return;
    }
    if support::is_xen_domain() {
        return;
    }
    let mut cmd = vmi();
    cmd.env_remove("VMI_XEN_LIBRARY_DIR")
        .args(["--target", "xen:web01", "info"]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded outside dom0");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "wrote to stdout: {:?}", out.stdout);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("vmi: error: xen backend: xc_interface_open failed")
            && stderr.contains("not a Xen dom0"),
        "{stderr}"
    );
}

fn missing_libraries_are_named_with_their_package() {
    let dir = std::env::temp_dir().join("vmi-no-xen-libraries-here");
    let mut cmd = vmi();
    cmd.env("VMI_XEN_LIBRARY_DIR", &dir)
        .args(["--target", "xen:web01", "info"]);
    let out = run_bounded(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(
        stderr.contains("cannot load libxenctrl")
            && stderr.contains("libxenctrl.so.4.17")
            && stderr.contains("libxenmisc4.17"),
        "{stderr}"
    );
}

fn ps_through_xen_equals_the_guest_truth_and_the_dump() {
    for g in guests() {
        let cache = fresh_cache_dir("xen-ps");
        let mut cmd = fake_vmi(&g.elf(), &cache, None);
        cmd.args(["--format", "json", "--target", "xen:web01", "ps"]);
        let out = run_bounded(cmd, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "{}: {}",
            g.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let ours: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        common::assert_ps_matches_truth(&g, &ours);
        // The same analysis over the dump itself gives the same document.
        let dump = common::run_json_cached(&cache, &["--target", g.elf().to_str().unwrap(), "ps"]);
        assert_eq!(ours, dump, "{}: xen and file backends disagree", g.name);

        let mut cmd = fake_vmi(&g.elf(), &cache, None);
        cmd.args(["--format", "json", "--target", "xen:7", "info"]);
        let out = run_bounded(cmd, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["backend"], "xen");
        assert_eq!(info["paging_mode"], g.paging_mode_name(), "{}", g.name);
        assert_eq!(
            info["os"]["version"],
            g.truth("version").trim_end(),
            "{}",
            g.name
        );
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn pause_is_undone_when_the_command_fails() {
    let Some(g) = guests().into_iter().next() else {
        return;
    };
    let cache = fresh_cache_dir("xen-pause");
    let log = std::env::temp_dir().join(format!("vmi-xen-pause-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut cmd = fake_vmi(&g.elf(), &cache, Some(&log));
    // A pid no guest has: the command fails after pausing.
    cmd.args(["--pause", "--target", "xen:web01", "maps", "4000000"]);
    let out = run_bounded(cmd, Duration::from_secs(300));
    assert!(!out.status.success());
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("pause"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        ["pause", "unpause"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_dir_all(&cache);
}

vmi_fixtures::real_guest_tests!(
    xen_target_outside_dom0_fails_clearly_without_panic_or_hang,
    missing_libraries_are_named_with_their_package,
    ps_through_xen_equals_the_guest_truth_and_the_dump,
    pause_is_undone_when_the_command_fails,
);
