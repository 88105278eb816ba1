//! `vmi integrity [CHECK...]` on every real guest: the JSON contract (one object per finding,
//! hex addresses), no suspicious finding on a clean guest, the same answer cold and with a
//! warm profile cache, the table's columns, a subset of checks, and an unknown check name
//! refused with the known ones listed.

mod common;

use common::{fresh_cache_dir, run_err, run_json_cached, vmi};
use vmi_fixtures::guests;

const CHECKS: [&str; 5] = [
    "syscall_table",
    "idt",
    "hidden_modules",
    "inline_hooks",
    "ebpf",
];

/// The findings with the carve's timing (which varies run to run) taken out of the details.
fn stable(doc: &serde_json::Value) -> serde_json::Value {
    let mut doc = doc.clone();
    for f in doc.as_array_mut().unwrap() {
        if f["check"] == "hidden_modules" && f["subject"] == "modules" {
            let d = f["detail"].as_str().unwrap();
            let cut = d.find(" pages of the module area").unwrap_or(d.len());
            f["detail"] = serde_json::Value::String(d[..cut].to_owned());
        }
    }
    doc
}

fn integrity_json_has_no_suspicious_finding_on_clean_guests() {
    for g in guests() {
        let cache = fresh_cache_dir("integrity");
        let elf = g.elf();
        let args = ["--target", elf.to_str().unwrap(), "integrity"];
        let cold = run_json_cached(&cache, &args);
        let warm = run_json_cached(&cache, &args);
        assert_eq!(
            stable(&cold),
            stable(&warm),
            "{}: cached run differs",
            g.name
        );
        let findings = cold.as_array().expect("an array of findings");
        for check in CHECKS {
            assert!(
                findings.iter().any(|f| f["check"] == check),
                "{}: no finding of {check}",
                g.name
            );
        }
        for f in findings {
            assert_eq!(f["severity"], "info", "{}: {f}", g.name);
            assert!(f["subject"].is_string() && f["detail"].is_string(), "{f}");
            if let Some(a) = f.get("address") {
                let a = a.as_str().unwrap();
                assert!(a.starts_with("0x") && a == a.to_lowercase(), "{f}");
            }
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn integrity_table_and_subsets() {
    for g in guests() {
        let cache = fresh_cache_dir("integrity-table");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        let out = vmi()
            .env("VMI_CACHE_DIR", &cache)
            .args(["--target", t, "integrity", "idt", "syscall_table"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["check", "severity", "subject", "address", "detail"]
        );
        let checks: std::collections::BTreeSet<&str> = lines
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            checks.into_iter().collect::<Vec<_>>(),
            ["idt", "syscall_table"],
            "{}",
            g.name
        );
        let only = run_json_cached(&cache, &["--target", t, "integrity", "ebpf"]);
        assert!(only
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["check"] == "ebpf"));
        let err = run_err(&["--target", t, "integrity", "idt", "rootkits"]);
        assert!(
            err.contains("unknown integrity check `rootkits`")
                && CHECKS.iter().all(|c| err.contains(c)),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&cache);
    }
}

vmi_fixtures::real_guest_tests!(
    integrity_json_has_no_suspicious_finding_on_clean_guests,
    integrity_table_and_subsets,
);
