//! `open_files` on every real guest against the guest's own `/proc/PID/fd` and
//! `/proc/PID/fdinfo/FD` (`truth/fds`: `pid fd pos flags mnt_id ino target`).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::GuestExt;
use vmi_core::os::FileKind;
use vmi_os_linux::analysis::lsof::{open_files, FdEntry};
use vmi_os_linux::analysis::ps::processes;
use vmi_os_linux::LinuxError;

/// One descriptor as the truth and we see it: (fd, pos, flags, mnt_id, ino, target).
type Row = (u32, u64, u32, u32, u64, String);

/// `truth/fds` by pid.
fn parse_truth(text: &str) -> BTreeMap<u32, Vec<Row>> {
    let mut by_pid: BTreeMap<u32, Vec<Row>> = BTreeMap::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = l.splitn(7, ' ');
        let mut next = || it.next().unwrap_or_else(|| panic!("short line {l:?}"));
        let pid: u32 = next().parse().unwrap();
        let fd: u32 = next().parse().unwrap();
        let pos: u64 = next().parse().unwrap();
        let flags = u32::from_str_radix(next(), 8).unwrap();
        let mnt_id: u32 = next().parse().unwrap();
        let ino: u64 = next().parse().unwrap();
        let target = next().to_owned();
        by_pid
            .entry(pid)
            .or_default()
            .push((fd, pos, flags, mnt_id, ino, target));
    }
    for rows in by_pid.values_mut() {
        rows.sort();
    }
    by_pid
}

fn row(e: &FdEntry) -> Row {
    (
        e.fd,
        e.state.pos,
        e.fdinfo_flags(),
        e.state.mnt_id,
        e.state.inode,
        e.state.path.clone(),
    )
}

fn every_process_of_the_truth_has_exactly_its_fds() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let truth = parse_truth(&g.truth("fds"));
        assert!(
            truth.len() >= 3,
            "{}: truth/fds lists {} pids",
            g.name,
            truth.len()
        );
        let all = open_files(&session, &kernel, None)
            .unwrap_or_else(|e| panic!("{}: open_files: {e}", g.name));
        assert!(all.warnings.is_empty(), "{}: {:?}", g.name, all.warnings);
        let mut checked = 0;
        for (pid, want) in &truth {
            let ours: Vec<Row> = all
                .items
                .iter()
                .filter(|e| e.pid == *pid)
                .map(row)
                .collect();
            assert_eq!(&ours, want, "{}: pid {pid}", g.name);
            // One process alone gives the same.
            let one = open_files(&session, &kernel, Some(*pid)).unwrap();
            assert!(one.warnings.is_empty(), "{}: {:?}", g.name, one.warnings);
            let one: Vec<Row> = one.items.iter().map(row).collect();
            assert_eq!(&one, want, "{}: pid {pid} alone", g.name);
            checked += want.len();
        }
        // Ordered by pid then fd.
        for w in all.items.windows(2) {
            assert!(
                (w[0].pid, w[0].fd) < (w[1].pid, w[1].fd),
                "{}: {w:?}",
                g.name
            );
        }
        eprintln!(
            "{}: {} pids, {checked} fds match; {} fds in all",
            g.name,
            truth.len(),
            all.items.len()
        );
    }
}

fn the_fds_target_holds_one_fd_of_each_kind() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let pid: u32 = g.truth("fds-target").trim().parse().unwrap();
        let got = open_files(&session, &kernel, Some(pid)).unwrap();
        let kind = |prefix: &str| {
            let e = got
                .items
                .iter()
                .find(|e| e.state.path.starts_with(prefix))
                .unwrap_or_else(|| panic!("{}: pid {pid}: no {prefix}", g.name));
            e.kind()
        };
        assert_eq!(kind("/dev/null"), FileKind::CharDevice, "{}", g.name);
        assert_eq!(kind("/tmp/vmi-fds-"), FileKind::Regular, "{}", g.name);
        assert_eq!(kind("/tmp/vmi-deleted-"), FileKind::Regular, "{}", g.name);
        assert_eq!(kind("/memfd:"), FileKind::Regular, "{}", g.name);
        assert_eq!(kind("pipe:["), FileKind::Fifo, "{}", g.name);
        assert_eq!(kind("socket:["), FileKind::Socket, "{}", g.name);
        for anon in ["eventfd", "timerfd", "eventpoll"] {
            let path = format!("anon_inode:[{anon}]");
            assert_eq!(kind(&path), FileKind::Anonymous, "{}", g.name);
        }
        let root = got.items.iter().find(|e| e.state.path == "/").unwrap();
        assert_eq!(root.kind(), FileKind::Directory, "{}", g.name);
        // Every file is a distinct struct file but fds 1 and 2 (dup'ed stdout).
        let objects: BTreeSet<_> = got.items.iter().map(|e| e.file).collect();
        assert_eq!(objects.len() + 1, got.items.len(), "{}", g.name);
    }
}

fn kernel_threads_have_none_and_unknown_pids_are_errors() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let ps = processes(&session, &kernel).unwrap();
        let kthreads: Vec<u32> = ps
            .items
            .iter()
            .filter(|p| p.kernel_thread && !p.is_idle())
            .map(|p| p.pid)
            .collect();
        assert!(kthreads.len() > 10, "{}: {kthreads:?}", g.name);
        let all = open_files(&session, &kernel, None).unwrap();
        for pid in &kthreads {
            assert!(
                !all.items.iter().any(|e| e.pid == *pid),
                "{}: kernel thread {pid} has fds",
                g.name
            );
        }
        let one = open_files(&session, &kernel, Some(2)).unwrap();
        assert!(
            one.items.is_empty() && one.warnings.is_empty(),
            "{}",
            g.name
        );
        for pid in [0, 4_000_000] {
            match open_files(&session, &kernel, Some(pid)) {
                Err(LinuxError::NoSuchProcess(p)) if p == pid => {}
                other => panic!("{}: pid {pid}: {other:?}", g.name),
            }
        }
        // User processes the truth leaves out (init, the shell printing it) are listed too.
        let users = ps.items.iter().filter(|p| !p.kernel_thread).count();
        let with_fds: BTreeSet<u32> = all.items.iter().map(|e| e.pid).collect();
        assert!(with_fds.len() <= users, "{}", g.name);
        assert!(with_fds.contains(&1), "{}: init has no fds", g.name);
    }
}

vmi_fixtures::real_guest_tests!(
    every_process_of_the_truth_has_exactly_its_fds,
    the_fds_target_holds_one_fd_of_each_kind,
    kernel_threads_have_none_and_unknown_pids_are_errors,
);
