//! `maps(pid)` on every real guest against the guest's own `/proc/PID/maps`.

mod common;

use common::GuestExt;

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
            let binary = g.init.vmi_target_path();
            assert_eq!(find(t.data), Some(binary), "{}", g.name);
            eprintln!("{}: pid {}: {} mappings match", g.name, t.pid, ours.len());
        }
    }
}

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
    assert_eq!(json["path"], g.init.vmi_target_path());
}

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

fn every_user_process_has_clean_ordered_maps() {
    use vmi_os_linux::analysis::ps::processes;
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let ps = processes(&session, &kernel).unwrap();
        let mut users = 0;
        for p in ps.items.iter().filter(|p| !p.kernel_thread) {
            let got = maps(&session, &kernel, p.pid).unwrap();
            assert!(
                got.warnings.is_empty(),
                "{}: pid {}: {:?}",
                g.name,
                p.pid,
                got.warnings
            );
            assert!(!got.items.is_empty(), "{}: pid {}", g.name, p.pid);
            for w in got.items.windows(2) {
                assert!(w[0].end <= w[1].start, "{}: pid {}: {w:?}", g.name, p.pid);
            }
            // Every user process has a stack, the vDSO and its data, and at least one mapped file
            // (busybox and vmi-target are static binaries; systemd's services are dynamic).
            let names: Vec<&str> = got.items.iter().map(|m| m.path.as_str()).collect();
            assert!(
                names.contains(&"[stack]")
                    && names.contains(&"[vdso]")
                    && names.contains(&"[vvar]"),
                "{}: pid {} ({}): {names:?}",
                g.name,
                p.pid,
                p.name
            );
            assert!(
                names.iter().any(|n| n.starts_with('/')),
                "{}: pid {} ({}): {names:?}",
                g.name,
                p.pid,
                p.name
            );
            users += 1;
        }
        assert!(users >= 6, "{}: {users} user processes", g.name);
    }
}

/// Paths across mounts: the root dentry of each child mount of init's root mount renders as
/// its mount point, and those are the mount points that the truth's `mountinfo/1` gives the
/// root mount's children (busybox: proc, sysfs, devtmpfs and /tmp on the initramfs; systemd:
/// the API file systems, /run and /tmp on the ext4 root).
fn d_path_crosses_mounts() {
    use vmi_core::Va;
    use vmi_os_linux::analysis::ps::find_process;
    use vmi_os_linux::comps::file::{d_path, FileOffsets};
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let p = kernel.profile();
        let off = |ty: &str, f: &str| p.field_offset(ty, f).unwrap();
        let mem = kernel.memory(&session);
        let at = |va: Va, o: u64| mem.read_va(va.checked_add(o).unwrap()).unwrap();
        let init = find_process(&session, &kernel, 1).unwrap().task;
        let fs = at(init, off("task_struct", "fs"));
        let root = off("fs_struct", "root");
        let root_mnt = at(fs, root + off("path", "mnt"));
        let root_dentry = at(fs, root + off("path", "dentry"));
        let offsets = FileOffsets::resolve_for(&kernel).unwrap();
        assert_eq!(d_path(&mem, &offsets, root_mnt, root_dentry).unwrap(), "/");

        let mnt = off("mount", "mnt");
        let root_mount = root_mnt.checked_sub(mnt).unwrap();
        let head = root_mount.checked_add(off("mount", "mnt_mounts")).unwrap();
        let mut paths = Vec::new();
        let mut entry = at(head, 0);
        while entry != head && paths.len() < 64 {
            let child = entry.checked_sub(off("mount", "mnt_child")).unwrap();
            let vfsmount = child.checked_add(mnt).unwrap();
            let dentry = at(vfsmount, off("vfsmount", "mnt_root"));
            paths.push(d_path(&mem, &offsets, vfsmount, dentry).unwrap());
            entry = at(entry, 0);
        }
        paths.sort();
        assert_eq!(paths, root_children_in_truth(&g), "{}", g.name);
        assert!(paths.len() >= 4, "{}: {paths:?}", g.name);
    }
}

/// The mount points of the children of the root mount in `truth/mountinfo/1`
/// (`id parent major:minor root mount-point ...`), sorted. The busybox root (rootfs) is its own
/// parent.
fn root_children_in_truth(g: &common::Guest) -> Vec<String> {
    let info = g.truth("mountinfo/1");
    let lines: Vec<Vec<&str>> = info.lines().map(|l| l.split(' ').collect()).collect();
    let root = lines
        .iter()
        .find(|f| f.get(4) == Some(&"/"))
        .unwrap_or_else(|| panic!("{}: no / in mountinfo/1", g.name))[0];
    let mut out: Vec<String> = lines
        .iter()
        .filter(|f| f[1] == root && f[0] != root)
        .map(|f| f[4].to_owned())
        .collect();
    out.sort();
    out
}

vmi_fixtures::real_guest_tests!(
    maps_of_targets_match_proc_maps,
    maps_json_uses_hex_addresses,
    kernel_threads_have_no_maps_and_unknown_pids_are_errors,
    every_user_process_has_clean_ordered_maps,
    d_path_crosses_mounts,
);
