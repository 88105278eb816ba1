//! The real Volatility 3 client (2.28.2 from PyPI, installed by `scripts/test` into a venv and
//! named by `$VMI_VOLATILITY`) reads 4-level guests with the ISF that `vmi isf-export` builds
//! from the guest itself: `linux.pslist` must list exactly the guest's processes.
//! (Stock Volatility 3 cannot read 5-level guests at all, so those are not tried.)

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::run_ok;
use vmi_fixtures::comm_matches;

fn volatility_pslist_with_our_isf_lists_exactly_the_guest_processes() {
    let Some(vol) = std::env::var_os("VMI_VOLATILITY") else {
        vmi_fixtures::skip(
            "$VMI_VOLATILITY (path to `vol`) is not set (scripts/test installs Volatility 3)",
        );
        return;
    };
    let four_level = vmi_fixtures::select("with 4-level paging", |g| g.paging == 4);
    for g in four_level {
        let dir = std::env::temp_dir().join(format!("vmi-vol-{}-{}", g.name, std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let isf = dir.join("vmi.json");
        run_ok(&[
            "--target",
            g.elf().to_str().unwrap(),
            "isf-export",
            isf.to_str().unwrap(),
        ]);
        let out = Command::new(&vol)
            .args(["-q", "-r", "json", "-f"])
            .arg(g.elf())
            .arg("-s")
            .arg(&dir)
            // Volatility caches identified symbol tables per user; keep ours out of the way.
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .arg("linux.pslist")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: vol failed: {}",
            g.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: vol output is not JSON ({e})", g.name));
        let vol_tasks: BTreeMap<u64, (u64, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["PID"].as_u64().unwrap(),
                    (
                        r["PPID"].as_u64().unwrap(),
                        r["COMM"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect();
        let truth = g.tasks();
        assert_eq!(
            vol_tasks.keys().copied().collect::<Vec<_>>(),
            truth.iter().map(|t| u64::from(t.pid)).collect::<Vec<_>>(),
            "{}: Volatility's pids differ from the guest's",
            g.name
        );
        for t in &truth {
            let (pid, name) = (t.pid, &t.name);
            let (vol_ppid, vol_name) = &vol_tasks[&u64::from(pid)];
            assert_eq!(*vol_ppid, u64::from(t.ppid), "{} pid {pid}", g.name);
            assert!(
                comm_matches(vol_name, name),
                "{} pid {pid}: {vol_name} vs {name}",
                g.name
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

vmi_fixtures::real_guest_tests!(volatility_pslist_with_our_isf_lists_exactly_the_guest_processes,);
