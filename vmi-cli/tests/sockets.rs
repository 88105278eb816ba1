//! `vmi sockets` (and its alias `netstat`) on every real guest: the JSON records of the fds
//! target's sockets are those of its `/proc/PID/fd` (`socket:[INODE]`), the same cold, from a
//! profile cache written by `ps` (which must send it to rediscovery) and warm; the table has
//! `ss`'s columns and rows.

mod common;

use std::collections::BTreeSet;

use common::{fresh_cache_dir, run_json_cached, vmi};
use vmi_fixtures::guests;

fn sockets_of_the_fds_target_in_json_and_table() {
    for g in guests() {
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        let pid: u32 = g.truth("fds-target").trim().parse().unwrap();
        let want: BTreeSet<u64> = g
            .truth("fds")
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.splitn(7, ' ').collect();
                (f.len() == 7 && f[0].parse() == Ok(pid))
                    .then(|| {
                        f[6].strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .parse()
                            .ok()
                    })
                    .flatten()
            })
            .collect();
        assert_eq!(want.len(), 12, "{}: {want:?}", g.name);

        let cold = run_json_cached(&fresh_cache_dir("sockets"), &["--target", t, "sockets"]);
        // A cache written by another command lacks what sockets needs: same answer.
        let cache = fresh_cache_dir("sockets-after-ps");
        run_json_cached(&cache, &["--target", t, "ps"]);
        let after_ps = run_json_cached(&cache, &["--target", t, "sockets"]);
        let warm = run_json_cached(&cache, &["--target", t, "netstat"]);
        assert_eq!(cold, after_ps, "{}", g.name);
        assert_eq!(cold, warm, "{}", g.name);

        let records = cold.as_array().unwrap();
        let got: BTreeSet<u64> = records
            .iter()
            .filter(|s| {
                s["pids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p.as_u64() == Some(pid.into()))
            })
            .map(|s| s["inode"].as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{}", g.name);
        for s in records {
            for field in [
                "family",
                "protocol",
                "state",
                "local_address",
                "remote_address",
            ] {
                assert!(s[field].is_string(), "{}: {field} of {s}", g.name);
            }
            assert!(s["local_port"].is_u64() && s["remote_port"].is_u64(), "{s}");
            assert!(s["object"].as_str().unwrap().starts_with("0xff"), "{s}");
            assert!(s["os"]["sources"].is_string(), "{s}");
        }
        let listener = records
            .iter()
            .find(|s| {
                s["protocol"] == "tcp"
                    && s["state"] == "LISTEN"
                    && s["family"] == "inet"
                    && s["local_address"] == "127.0.0.1"
            })
            .unwrap_or_else(|| panic!("{}: no TCP listener on 127.0.0.1", g.name));
        let port = listener["local_port"].as_u64().unwrap();

        let out = vmi()
            .env("VMI_CACHE_DIR", &cache)
            .args(["--target", t, "sockets"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["netid", "state", "local", "peer", "inode", "pids"],
            "{}",
            g.name
        );
        assert_eq!(rows.len(), records.len() + 1, "{}", g.name);
        let has = |want: &[&str]| rows.iter().any(|r| r.starts_with(want));
        let listen = format!("127.0.0.1:{port}");
        assert!(
            has(&["tcp", "LISTEN", &listen, "0.0.0.0:*"]),
            "{}: {table}",
            g.name
        );
        let path = format!("/tmp/vmi-{pid}.sock");
        assert!(has(&["u_str", "LISTEN", &path, "*"]), "{}: {table}", g.name);
        let abstract_name = format!("@vmi-abstract-{pid}");
        assert!(
            has(&["u_str", "LISTEN", &abstract_name]),
            "{}: {table}",
            g.name
        );
        assert!(has(&["nl", "UNCONN", "route:0"]), "{}: {table}", g.name);
        assert!(has(&["p_raw", "UNCONN", "*:0x0003"]), "{}: {table}", g.name);
    }
}

vmi_fixtures::real_guest_tests!(sockets_of_the_fds_target_in_json_and_table);
