//! `vmi mounts PID`, `vmi namespaces [--containers]` and `vmi creds PID` on every real guest,
//! in JSON and as tables, from a cache an earlier `ps` left without their types, and then
//! from their own cache: every answer equal to the guest's own
//! `mountinfo`, `ns`, `cgroup` and `status`.

mod common;

use std::collections::BTreeMap;

use common::{fresh_cache_dir, run_json_cached, vmi};
use vmi_fixtures::{guests, Guest};

/// `vmi ARGS` (table format) with `$VMI_CACHE_DIR` set, expecting success: stdout.
fn run_table(cache: &std::path::Path, args: &[&str]) -> String {
    let out = vmi()
        .env("VMI_CACHE_DIR", cache)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmi {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn truth_pids(g: &Guest, dir: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(g.dir.join("truth").join(dir))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// A mountinfo line cut after the source (the super options are not rendered).
fn without_super_options(line: &str) -> String {
    let (left, right) = line.split_once(" - ").unwrap();
    let mut r = right.split(' ');
    format!("{left} - {} {}", r.next().unwrap(), r.next().unwrap())
}

fn mounts_equal_mountinfo_in_json_and_table() {
    for g in guests() {
        let cache = fresh_cache_dir("mounts");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        // From a cache ps wrote (no mount types, no nop_mnt_idmap): rediscovery, then warm.
        run_json_cached(&cache, &["--target", t, "ps"]);
        for pid in truth_pids(&g, "mountinfo") {
            let pid_s = pid.to_string();
            let truth = g.truth(&format!("mountinfo/{pid}"));
            let want: Vec<String> = truth.lines().map(without_super_options).collect();
            let doc = run_json_cached(&cache, &["--target", t, "mounts", &pid_s]);
            let warm = run_json_cached(&cache, &["--target", t, "mounts", &pid_s]);
            assert_eq!(doc, warm, "{}: cached profile answers otherwise", g.name);
            let got: Vec<String> = doc
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    assert!(m["object"].as_str().unwrap().starts_with("0xff"), "{m}");
                    let tags = m["os"]["propagation"]
                        .as_str()
                        .map_or(String::new(), |p| format!(" {p}"));
                    format!(
                        "{} {} {} {} {} {}{tags} - {} {}",
                        m["id"],
                        m["parent_id"],
                        m["device"].as_str().unwrap(),
                        m["root"].as_str().unwrap(),
                        m["mount_point"].as_str().unwrap(),
                        m["options"].as_str().unwrap(),
                        m["fs_type"].as_str().unwrap(),
                        m["source"].as_str().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{}: pid {pid} (json)", g.name);
            let table = run_table(&cache, &["--target", t, "mounts", &pid_s]);
            assert_eq!(
                table.lines().collect::<Vec<_>>(),
                want,
                "{}: pid {pid}",
                g.name
            );
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn namespaces_from_a_ps_cache_equal_proc_ns_and_cgroup() {
    for g in guests() {
        let cache = fresh_cache_dir("namespaces");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        // A cache written by ps lacks nsproxy, pid, css_set...: the command must rediscover.
        run_json_cached(&cache, &["--target", t, "ps"]);
        let doc = run_json_cached(&cache, &["--target", t, "namespaces"]);
        let warm = run_json_cached(&cache, &["--target", t, "namespaces"]);
        assert_eq!(doc, warm, "{}", g.name);
        let by_pid: BTreeMap<u64, &serde_json::Value> = doc
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["pid"].as_u64().unwrap(), p))
            .collect();
        assert!(
            !by_pid.contains_key(&0),
            "{}: the idle task is not listed",
            g.name
        );
        let mut n = 0;
        for line in g.truth("ns").lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let p = by_pid[&f[0].parse::<u64>().unwrap()];
            assert_eq!(
                p["namespaces"][f[1]].as_u64(),
                Some(f[2].parse().unwrap()),
                "{}: {line}",
                g.name
            );
            n += 1;
        }
        assert!(n >= 20, "{}", g.name);
        for line in g.truth("cgroup").lines() {
            let (pid, path) = line.split_once(" 0::").unwrap();
            assert_eq!(
                by_pid[&pid.parse::<u64>().unwrap()]["cgroup"],
                path,
                "{}",
                g.name
            );
        }
        let eta: u64 = g.truth("ns-target").trim().parse().unwrap();
        assert_eq!(
            by_pid[&eta]["nspid"],
            serde_json::json!([eta, 1]),
            "{}",
            g.name
        );
        assert_eq!(by_pid[&eta]["os"]["hostname"], "eta-box", "{}", g.name);
        // The table: a header and one row per process, eta's with its two pids.
        let table = run_table(&cache, &["--target", t, "namespaces"]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["pid", "name", "nspid", "cgroup", "pid_ns", "mnt_ns", "net_ns", "uts_ns"]
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows.len(), by_pid.len(), "{}", g.name);
        let row = rows.iter().find(|r| r[0] == eta.to_string()).unwrap();
        let e = by_pid[&eta];
        assert_eq!(row[2], format!("{eta},1"));
        assert_eq!(row[3], "/vmi-box");
        for (i, kind) in ["pid", "mnt", "net", "uts"].iter().enumerate() {
            assert_eq!(row[4 + i], e["namespaces"][kind].to_string(), "{}", g.name);
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn containers_group_eta_apart_from_the_host() {
    for g in guests() {
        let cache = fresh_cache_dir("containers");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        let doc = run_json_cached(&cache, &["--target", t, "namespaces", "--containers"]);
        let groups = doc.as_array().unwrap();
        let eta: u64 = g.truth("ns-target").trim().parse().unwrap();
        let with = |pid: u64| {
            groups
                .iter()
                .find(|c| {
                    c["processes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["pid"] == pid)
                })
                .unwrap_or_else(|| panic!("{}: no group holds {pid}", g.name))
        };
        let (container, host) = (with(eta), with(1));
        assert_eq!(container["hostname"], "eta-box", "{}", g.name);
        assert_eq!(container["cgroup"], "/vmi-box", "{}", g.name);
        let members = container["processes"].as_array().unwrap();
        assert_eq!(members.len(), 1, "{}: {members:?}", g.name);
        assert_eq!(members[0]["nspid"], serde_json::json!([eta, 1]));
        assert_ne!(host["hostname"], "eta-box", "{}", g.name);
        for kind in ["pid", "mnt", "net", "uts"] {
            assert_ne!(container["namespaces"][kind], host["namespaces"][kind]);
        }
        // Every process is in exactly one group.
        let total: usize = groups
            .iter()
            .map(|c| c["processes"].as_array().unwrap().len())
            .sum();
        let all = run_json_cached(&cache, &["--target", t, "namespaces"]);
        assert_eq!(total, all.as_array().unwrap().len(), "{}", g.name);
        let table = run_table(&cache, &["--target", t, "namespaces", "--containers"]);
        assert!(
            table.contains("hostname eta-box  cgroup /vmi-box"),
            "{table}"
        );
        assert_eq!(
            table.matches("hostname ").count(),
            groups.len(),
            "{}: {table}",
            g.name
        );
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn creds_equal_proc_status_in_json_and_table() {
    const KEYS: [&str; 10] = [
        "Uid",
        "Gid",
        "Groups",
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ];
    for g in guests() {
        let cache = fresh_cache_dir("creds");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        for pid in truth_pids(&g, "status") {
            let pid_s = pid.to_string();
            let status = g.truth(&format!("status/{pid}"));
            let field = |text: &str, k: &str| -> String {
                let v = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}:")))
                    .unwrap_or_else(|| panic!("{}: pid {pid}: no {k}", g.name));
                v.split_whitespace().collect::<Vec<_>>().join(" ")
            };
            let doc = run_json_cached(&cache, &["--target", t, "creds", &pid_s]);
            assert_eq!(doc["pid"].as_u64(), Some(pid.into()));
            let ids = |v: &serde_json::Value| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            assert_eq!(ids(&doc["uid"]), field(&status, "Uid"), "{}: {pid}", g.name);
            assert_eq!(ids(&doc["gid"]), field(&status, "Gid"), "{}: {pid}", g.name);
            assert_eq!(ids(&doc["groups"]), field(&status, "Groups"), "{}", g.name);
            let caps = &doc["capabilities"];
            for (k, name) in [
                ("CapInh", "inheritable"),
                ("CapPrm", "permitted"),
                ("CapEff", "effective"),
                ("CapBnd", "bounding"),
                ("CapAmb", "ambient"),
            ] {
                let want = u64::from_str_radix(&field(&status, k), 16).unwrap();
                assert_eq!(caps[name], format!("{want:#x}"), "{}: {pid} {k}", g.name);
            }
            assert_eq!(
                doc["no_new_privs"].as_bool(),
                Some(field(&status, "NoNewPrivs") == "1")
            );
            assert_eq!(doc["seccomp"].to_string(), field(&status, "Seccomp"));
            let table = run_table(&cache, &["--target", t, "creds", &pid_s]);
            for k in KEYS {
                assert_eq!(field(&table, k), field(&status, k), "{}: {pid} {k}", g.name);
            }
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn unknown_pids_are_errors() {
    let Some(g) = guests().into_iter().next() else {
        return;
    };
    let elf = g.elf();
    for cmd in ["mounts", "creds"] {
        let out = vmi()
            .args(["--target", elf.to_str().unwrap(), cmd, "4000000"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd}");
        assert!(out.stdout.is_empty(), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("4000000"), "{cmd}: {err}");
    }
}

vmi_fixtures::real_guest_tests!(
    mounts_equal_mountinfo_in_json_and_table,
    namespaces_from_a_ps_cache_equal_proc_ns_and_cgroup,
    containers_group_eta_apart_from_the_host,
    creds_equal_proc_status_in_json_and_table,
    unknown_pids_are_errors,
);
