//! `namespaces()` on every real guest against the guest's own view: every `/proc/PID/ns/*`
//! link in `truth/ns`, every cgroup line in `truth/cgroup`, every `NSpid:` in `truth/status/*`,
//! and eta's host name and namespaces.

mod common;

use std::collections::BTreeMap;

use common::GuestExt;

use vmi_os_linux::analysis::namespaces::{namespaces, ProcessNamespaces};

fn by_pid(items: &[ProcessNamespaces]) -> BTreeMap<u32, &ProcessNamespaces> {
    items.iter().map(|p| (p.pid, p)).collect()
}

/// `NSpid:` of `truth/status/<pid>`, for every pid that has one.
fn truth_nspid(g: &common::Guest) -> BTreeMap<u32, Vec<u32>> {
    let dir = g.dir.join("truth/status");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = e.unwrap().file_name().into_string().unwrap();
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let status = g.truth(&format!("status/{pid}"));
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .unwrap();
        out.insert(
            pid,
            line.split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect(),
        );
    }
    out
}

fn namespace_inodes_match_proc_ns() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let got = namespaces(&session, &kernel).unwrap();
        assert!(got.warnings.is_empty(), "{}: {:?}", g.name, got.warnings);
        let ours = by_pid(&got.items);
        let mut checked = 0;
        let mut truth: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
        for line in g.truth("ns").lines().filter(|l| !l.is_empty()) {
            let mut f = line.split_whitespace();
            let pid: u32 = f.next().unwrap().parse().unwrap();
            let kind = f.next().unwrap().to_owned();
            truth
                .entry(pid)
                .or_default()
                .insert(kind, f.next().unwrap().parse().unwrap());
        }
        assert!(truth.contains_key(&1), "{}", g.name);
        for (pid, want) in &truth {
            let p = ours
                .get(pid)
                .unwrap_or_else(|| panic!("{}: no pid {pid}", g.name));
            // Every link /proc shows, and nothing it does not.
            assert_eq!(&p.namespaces, want, "{}: pid {pid}", g.name);
            checked += want.len();
        }
        eprintln!(
            "{}: {checked} namespace links of {} processes match",
            g.name,
            truth.len()
        );
    }
}

fn cgroups_and_nspids_match() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let got = namespaces(&session, &kernel).unwrap();
        let ours = by_pid(&got.items);
        let mut n = 0;
        for line in g.truth("cgroup").lines().filter(|l| !l.is_empty()) {
            let (pid, rest) = line.split_once(' ').unwrap();
            let pid: u32 = pid.parse().unwrap();
            let path = rest.strip_prefix("0::").expect("a cgroup v2 line");
            assert_eq!(ours[&pid].cgroup, path, "{}: pid {pid}", g.name);
            n += 1;
        }
        let nspid = truth_nspid(&g);
        // kthreadd and init at least: kernel threads are listed too.
        assert!(
            nspid.contains_key(&2) && nspid.contains_key(&1),
            "{}",
            g.name
        );
        for (pid, want) in &nspid {
            assert_eq!(&ours[pid].nspid, want, "{}: pid {pid}", g.name);
        }
        assert!(ours[&2].kernel_thread, "{}", g.name);
        // Every process of the truth's task list, and only those, is listed.
        let pids: Vec<u32> = got.items.iter().map(|p| p.pid).collect();
        let want: Vec<u32> = g.tasks().iter().map(|t| t.pid).collect();
        let mut sorted = pids.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, want, "{}", g.name);
        eprintln!(
            "{}: {n} cgroups and {} NSpid lines match",
            g.name,
            nspid.len()
        );
    }
}

fn eta_is_in_its_own_container() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let got = namespaces(&session, &kernel).unwrap();
        let ours = by_pid(&got.items);
        let eta: u32 = g.truth("ns-target").trim().parse().unwrap();
        let (e, init) = (ours[&eta], ours[&1]);
        assert_eq!(e.hostname.as_deref(), Some("eta-box"), "{}", g.name);
        assert_ne!(init.hostname.as_deref(), Some("eta-box"), "{}", g.name);
        assert_eq!(e.nspid, [eta, 1], "{}", g.name);
        assert_eq!(e.cgroup, "/vmi-box", "{}", g.name);
        for kind in ["pid", "mnt", "net", "uts"] {
            assert_ne!(
                e.namespaces[kind], init.namespaces[kind],
                "{}: {kind}",
                g.name
            );
        }
        for kind in ["user", "ipc", "cgroup"] {
            assert_eq!(
                e.namespaces[kind], init.namespaces[kind],
                "{}: {kind}",
                g.name
            );
        }
        // Kernel threads are in the initial namespaces.
        let kthreadd = ours[&2];
        for kind in ["pid", "mnt", "net", "uts", "user"] {
            assert_eq!(
                kthreadd.namespaces[kind], init.namespaces[kind],
                "{}",
                g.name
            );
        }
    }
}

vmi_fixtures::real_guest_tests!(
    namespace_inodes_match_proc_ns,
    cgroups_and_nspids_match,
    eta_is_in_its_own_container,
);
