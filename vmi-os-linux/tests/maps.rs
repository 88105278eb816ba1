//! `maps(pid)` on every real guest against the guest's own `/proc/PID/maps`.

mod common;

use vmi_os_linux::analysis::maps::{maps, Map};
use vmi_os_linux::LinuxError;

/// One line of `/proc/PID/maps`: start, end, perms, offset, inode, path.
fn parse_truth(text: &str) -> Vec<(u64, u64, String, u64, u64, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let range = it.next().unwrap();
            let (s, e) = range.split_once('-').unwrap();
            let hex = |x: &str| u64::from_str_radix(x, 16).unwrap();
            let perms = it.next().unwrap().to_owned();
            let offset = hex(it.next().unwrap());
            let _dev = it.next().unwrap();
            let inode: u64 = it.next().unwrap().parse().unwrap();
            let path = it.collect::<Vec<_>>().join(" ");
            (hex(s), hex(e), perms, offset, inode, path)
        })
        .collect()
}

fn ours(m: &Map) -> (u64, u64, String, u64, u64, String) {
    (
        m.start.raw(),
        m.end.raw(),
        m.perms.clone(),
        m.offset,
        m.inode,
        m.path.clone(),
    )
}

#[test]
fn maps_of_targets_match_proc_maps() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let targets = g.targets();
        assert_eq!(targets.len(), 3, "{}", g.name);
        for t in &targets {
            let got = maps(&session, &kernel, t.pid)
                .unwrap_or_else(|e| panic!("{}: maps({}): {e}", g.name, t.pid));
            assert!(
                got.warnings.is_empty(),
                "{}: pid {}: warnings {:?}",
                g.name,
                t.pid,
                got.warnings
            );
            let truth = parse_truth(&g.truth(&format!("maps/{}", t.pid)));
            let ours: Vec<_> = got.items.iter().map(ours).collect();
            assert_eq!(ours, truth, "{}: pid {}", g.name, t.pid);
            // The known addresses the target printed lie in the right mappings.
            let find = |va: u64| {
                got.items
                    .iter()
                    .find(|m| m.start.raw() <= va && va < m.end.raw())
                    .map(|m| m.path.as_str())
            };
            assert_eq!(find(t.heap), Some("[heap]"), "{}: pid {}", g.name, t.pid);
            assert_eq!(find(t.data), Some("/bin/vmi-target"), "{}", g.name);
            eprintln!("{}: pid {}: {} mappings match", g.name, t.pid, ours.len());
        }
    }
}

#[test]
fn maps_json_uses_hex_addresses() {
    let Some(g) = common::guests().into_iter().next() else {
        return;
    };
    let session = g.session();
    let kernel = g.kernel(&session);
    let pid = g.targets()[0].pid;
    let got = maps(&session, &kernel, pid).unwrap();
    let json = serde_json::to_value(&got.items[0]).unwrap();
    assert_eq!(json["start"], "0x400000");
    assert_eq!(json["end"], "0x401000");
    assert_eq!(json["perms"], "r--p");
    assert_eq!(json["offset"], 0);
    assert_eq!(json["path"], "/bin/vmi-target");
}

#[test]
fn kernel_threads_have_no_maps_and_unknown_pids_are_errors() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        // pid 2 is kthreadd on every kernel.
        let got = maps(&session, &kernel, 2).unwrap();
        assert!(
            got.items.is_empty() && got.warnings.is_empty(),
            "{}",
            g.name
        );
        match maps(&session, &kernel, 4_000_000) {
            Err(LinuxError::NoSuchProcess(4_000_000)) => {}
            other => panic!("{}: {other:?}", g.name),
        }
    }
}
