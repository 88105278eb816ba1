//! `vmi lsof PID` on every real guest: the JSON records of the fds target (epsilon, one fd of
//! each kind) equal the guest's `/proc/PID/fd` and fdinfo (`truth/fds`), and the table form
//! prints the same descriptors, flags in octal as fdinfo shows them.

mod common;

use common::{fresh_cache_dir, run_json_cached, vmi};
use vmi_fixtures::guests;

/// (fd, pos, flags, mnt_id, ino, target) of the target's lines of `truth/fds`.
fn truth_rows(fds: &str, pid: u32) -> Vec<(u64, u64, u64, u64, u64, String)> {
    let mut rows: Vec<_> = fds
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(7, ' ').collect();
            (f.len() == 7 && f[0].parse() == Ok(pid)).then(|| {
                (
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    u64::from_str_radix(f[3], 8).unwrap(),
                    f[4].parse().unwrap(),
                    f[5].parse().unwrap(),
                    f[6].to_owned(),
                )
            })
        })
        .collect();
    rows.sort();
    rows
}

fn lsof_of_the_fds_target_equals_proc_in_json_and_table() {
    for g in guests() {
        let cache = fresh_cache_dir("lsof");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        let pid: u32 = g.truth("fds-target").trim().parse().unwrap();
        let want = truth_rows(&g.truth("fds"), pid);
        assert!(want.len() >= 20, "{}: {} truth fds", g.name, want.len());
        let pid_s = pid.to_string();
        // Cold (discovery), then from the profile cache: the same answer.
        let doc = run_json_cached(&cache, &["--target", t, "lsof", &pid_s]);
        let warm = run_json_cached(&cache, &["--target", t, "lsof", &pid_s]);
        assert_eq!(doc, warm, "{}", g.name);
        let got: Vec<_> = doc
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                assert_eq!(f["pid"].as_u64(), Some(pid.into()), "{}", g.name);
                assert!(f["object"].as_str().unwrap().starts_with("0xff"), "{f}");
                (
                    f["fd"].as_u64().unwrap(),
                    f["position"].as_u64().unwrap(),
                    f["flags"].as_u64().unwrap(),
                    f["os"]["mnt_id"].as_u64().unwrap(),
                    f["inode"].as_u64().unwrap(),
                    f["path"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, want, "{}", g.name);
        let kind_of = |prefix: &str| {
            doc.as_array()
                .unwrap()
                .iter()
                .find(|f| f["path"].as_str().unwrap().starts_with(prefix))
                .map(|f| f["kind"].as_str().unwrap().to_owned())
        };
        assert_eq!(kind_of("pipe:").as_deref(), Some("fifo"), "{}", g.name);
        assert_eq!(kind_of("socket:").as_deref(), Some("socket"), "{}", g.name);
        assert_eq!(kind_of("anon_inode:").as_deref(), Some("anonymous"));
        assert_eq!(kind_of("/dev/null").as_deref(), Some("char_device"));

        let out = vmi()
            .env("VMI_CACHE_DIR", &cache)
            .args(["--target", t, "lsof", &pid_s])
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
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["pid", "fd", "type", "pos", "flags", "inode", "path"]
        );
        let table: Vec<_> = lines
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[1].parse::<u64>().unwrap(),
                    f[2].to_owned(),
                    f[3].parse::<u64>().unwrap(),
                    f[4].to_owned(),
                    f[5].parse::<u64>().unwrap(),
                    f[6..].join(" "),
                )
            })
            .collect();
        let want_table: Vec<_> = want
            .iter()
            .zip(doc.as_array().unwrap())
            .map(|(w, f)| {
                let lsof_type = match f["kind"].as_str().unwrap() {
                    "char_device" => "CHR",
                    "regular" => "REG",
                    "directory" => "DIR",
                    "fifo" => "FIFO",
                    "socket" => "sock",
                    "anonymous" => "a_inode",
                    other => panic!("{}: kind {other}", g.name),
                };
                (
                    w.0,
                    lsof_type.to_owned(),
                    w.1,
                    format!("0{:o}", w.2),
                    w.4,
                    w.5.clone(),
                )
            })
            .collect();
        assert_eq!(table, want_table, "{}", g.name);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn lsof_of_every_process_lists_the_target_and_an_unknown_pid_fails() {
    let Some(g) = guests().into_iter().next() else {
        return;
    };
    let cache = fresh_cache_dir("lsof-all");
    let elf = g.elf();
    let t = elf.to_str().unwrap();
    let all = run_json_cached(&cache, &["--target", t, "lsof"]);
    let pid: u64 = g.truth("fds-target").trim().parse().unwrap();
    let all = all.as_array().unwrap();
    let of_target = all
        .iter()
        .filter(|f| f["pid"].as_u64() == Some(pid))
        .count();
    assert_eq!(of_target, truth_rows(&g.truth("fds"), pid as u32).len());
    assert!(all.len() > of_target, "{}", g.name);
    let err = common::run_err(&["--target", t, "lsof", "4000000"]);
    assert!(err.contains("4000000"), "{err}");
    let _ = std::fs::remove_dir_all(&cache);
}

vmi_fixtures::real_guest_tests!(
    lsof_of_the_fds_target_equals_proc_in_json_and_table,
    lsof_of_every_process_lists_the_target_and_an_unknown_pid_fails,
);
