//! `vmi --target qemu:QMP_SOCKET ...` on a real live guest (QEMU TCG, booted by
//! `scripts/fixture-live`): every Linux command works live, `--pause` leaves the guest running
//! afterwards, and live `ps` equals the guest's own view.

#[path = "../../vmi-backend-qemu/tests/common/live.rs"]
mod live;

use std::collections::BTreeSet;
use std::process::Command;

use live::LiveGuest;

fn vmi(target: &str, args: &[&str]) -> (bool, String, String) {
    let cache = std::env::temp_dir().join(format!("vmi-live-cli-cache-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_vmi"))
        .env("VMI_CACHE_DIR", &cache)
        .arg("--target")
        .arg(target)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(target: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let (ok, out, err) = vmi(target, &a);
    assert!(ok, "vmi {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("vmi {args:?}: {e}: {out}"))
}

fn user_ps(v: &serde_json::Value) -> BTreeSet<(u64, u64, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kernel_thread"] == false)
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                p["ppid"].as_u64().unwrap(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn live_qemu_commands() {
    let Some(g) = LiveGuest::start("6.12", 4, true, 2) else {
        return;
    };
    let target = format!("qemu:{}", g.qmp.display());
    let info = json(&target, &["info"]);
    assert_eq!(info["backend"], "qemu");
    assert_eq!(info["paging_mode"], "ia32e-4");
    assert_eq!(info["vcpus"], 2);
    assert!(g.running());

    let truth: BTreeSet<(u64, u64, String)> = g
        .tasks()
        .into_iter()
        .filter(|t| t.ppid != 2 && t.pid != 2)
        .map(|t| (u64::from(t.pid), u64::from(t.ppid), t.name))
        .collect();
    // Paused: exact. Then running, with the profile cached.
    assert_eq!(user_ps(&json(&target, &["--pause", "ps"])), truth);
    assert!(g.running(), "--pause left the guest paused");
    assert_eq!(user_ps(&json(&target, &["ps"])), truth);
    assert!(g.running());

    let alpha = g.targets()[0];
    let pid = alpha.pid.to_string();
    let read = json(
        &target,
        &["read", "--pid", &pid, &format!("{:#x}", alpha.heap), "32"],
    );
    let hex = read["bytes"].as_str().unwrap();
    let expect: String = format!("VMI-HEAP-SECRET-{}", alpha.pid)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(hex.starts_with(&expect), "{hex}");
    let env = json(&target, &["env", &pid]);
    assert_eq!(env["env"]["VMI_ROLE"], "alpha");
    let maps = json(&target, &["maps", &pid]);
    assert!(maps
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["path"] == "[heap]"));
    let modules = json(&target, &["modules"]);
    assert!(modules
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "crc7"));

    // A process started now is in the next ps.
    let late = g.spawn("late");
    let ps = user_ps(&json(&target, &["ps"]));
    assert!(ps
        .iter()
        .any(|(p, _, n)| *p == u64::from(late.pid) && n == "vmi-target"));
    assert!(g.running());

    // Clear errors on bad targets, nothing on stdout.
    let (ok, out, err) = vmi("qemu:/nonexistent/qmp.sock", &["ps"]);
    assert!(!ok && out.is_empty());
    assert!(err.contains("QMP socket"), "{err}");
    let (ok, _, err) = vmi(&format!("qemu:{}", g.serial.display()), &["info"]);
    assert!(!ok, "{err}");
}

vmi_fixtures::real_guest_tests!(live_qemu_commands,);
