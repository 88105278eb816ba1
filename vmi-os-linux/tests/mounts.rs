//! `mounts(pid)` on every real guest against the guest's own `/proc/PID/mountinfo`, for every
//! process the truth has one of (init, and eta in its own mount namespace): every field but
//! the super options (filesystem callbacks, not rendered: see `comps::mount`).

mod common;

use common::GuestExt;

use vmi_os_linux::analysis::mounts::mounts;
use vmi_os_linux::comps::mount::MountRecord;

/// A mountinfo line without its super options: `id parent dev root mount_point options
/// [tags...] - fs_type source`.
fn truth_line(line: &str) -> String {
    let (left, right) = line.split_once(" - ").expect("mountinfo separator");
    let mut r = right.split(' ');
    let (fs_type, source) = (r.next().unwrap(), r.next().unwrap());
    format!("{left} - {fs_type} {source}")
}

fn ours(m: &MountRecord) -> String {
    let mut tags = String::new();
    for t in &m.propagation {
        tags.push(' ');
        tags.push_str(t);
    }
    format!(
        "{} {} {} {} {} {}{} - {} {}",
        m.id, m.parent_id, m.device, m.root, m.mount_point, m.options, tags, m.fs_type, m.source
    )
}

/// The pids with a `truth/mountinfo/<pid>`.
fn truth_pids(g: &common::Guest) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(g.dir.join("truth/mountinfo"))
        .unwrap_or_else(|e| panic!("{}: truth/mountinfo: {e}", g.name))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

fn mounts_match_mountinfo() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let pids = truth_pids(&g);
        let eta: u32 = g.truth("ns-target").trim().parse().unwrap();
        assert!(
            pids.contains(&1) && pids.contains(&eta),
            "{}: {pids:?}",
            g.name
        );
        let mut namespaces = Vec::new();
        for pid in pids {
            let got = mounts(&session, &kernel, pid)
                .unwrap_or_else(|e| panic!("{}: mounts({pid}): {e}", g.name));
            assert!(
                got.warnings.is_empty(),
                "{}: {pid}: {:?}",
                g.name,
                got.warnings
            );
            let truth: Vec<String> = g
                .truth(&format!("mountinfo/{pid}"))
                .lines()
                .filter(|l| !l.is_empty())
                .map(truth_line)
                .collect();
            assert!(!truth.is_empty(), "{}: empty truth for {pid}", g.name);
            let ours: Vec<String> = got.items.iter().map(ours).collect();
            assert_eq!(ours, truth, "{}: pid {pid}", g.name);
            namespaces.push(got.items.iter().map(|m| m.mount).collect::<Vec<_>>());
            eprintln!("{}: pid {pid}: {} mounts match", g.name, ours.len());
        }
        // eta's namespace is a copy: none of its mounts is one of init's.
        assert!(
            namespaces[0].iter().all(|m| !namespaces[1].contains(m)),
            "{}",
            g.name
        );
    }
}

fn eta_has_its_own_tmpfs_on_mnt() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let eta: u32 = g.truth("ns-target").trim().parse().unwrap();
        let got = mounts(&session, &kernel, eta).unwrap();
        let mnt = got.items.iter().find(|m| m.mount_point == "/mnt");
        let mnt = mnt.unwrap_or_else(|| panic!("{}: no /mnt in eta's namespace", g.name));
        assert_eq!(
            (mnt.fs_type.as_str(), mnt.source.as_str()),
            ("tmpfs", "eta-tmp")
        );
        let init = mounts(&session, &kernel, 1).unwrap();
        assert!(
            init.items.iter().all(|m| m.mount_point != "/mnt"),
            "{}",
            g.name
        );
    }
}

fn kernel_threads_share_the_initial_namespace() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let init: Vec<String> = mounts(&session, &kernel, 1)
            .unwrap()
            .items
            .iter()
            .map(ours)
            .collect();
        let kthreadd: Vec<String> = mounts(&session, &kernel, 2)
            .unwrap()
            .items
            .iter()
            .map(ours)
            .collect();
        assert_eq!(kthreadd, init, "{}", g.name);
        assert!(
            matches!(
                mounts(&session, &kernel, 4_000_000),
                Err(vmi_os_linux::LinuxError::NoSuchProcess(4_000_000))
            ),
            "{}",
            g.name
        );
    }
}

vmi_fixtures::real_guest_tests!(
    mounts_match_mountinfo,
    eta_has_its_own_tmpfs_on_mnt,
    kernel_threads_share_the_initial_namespace,
);
