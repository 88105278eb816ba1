//! `credentials(pid)` on every real guest against `truth/status/<pid>` of every process the
//! truth has: `Uid`, `Gid`, `Groups`, the five `Cap*` sets, `NoNewPrivs`, `Seccomp`; and the
//! known processes zeta (uid 1000, groups 24 1001) and epsilon (seccomp filter, no_new_privs).

mod common;

use common::GuestExt;

use vmi_os_linux::analysis::creds::credentials;
use vmi_os_linux::comps::cred::TaskCreds;

/// The fields of a `status` file that `TaskCreds` answers, as text.
fn truth_fields(status: &str) -> Vec<(String, String)> {
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
    KEYS.iter()
        .map(|k| {
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .unwrap_or_else(|| panic!("no {k}: in status"));
            (
                k.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

fn ours(c: &TaskCreds) -> Vec<(String, String)> {
    let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    let mut out = vec![
        ("Uid".to_owned(), join(&c.uid)),
        ("Gid".to_owned(), join(&c.gid)),
        ("Groups".to_owned(), join(&c.groups)),
    ];
    for (k, v) in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .zip(c.caps)
    {
        out.push((k.to_string(), format!("{v:016x}")));
    }
    out.push(("NoNewPrivs".into(), u8::from(c.no_new_privs).to_string()));
    out.push(("Seccomp".into(), c.seccomp.to_string()));
    out
}

fn status_pids(g: &common::Guest) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(g.dir.join("truth/status"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

fn credentials_match_proc_status() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let pids = status_pids(&g);
        assert!(pids.len() >= 3, "{}: {pids:?}", g.name);
        for &pid in &pids {
            let (c, warnings) = credentials(&session, &kernel, pid)
                .unwrap_or_else(|e| panic!("{}: creds({pid}): {e}", g.name));
            assert!(warnings.is_empty(), "{}: {pid}: {warnings:?}", g.name);
            let want = truth_fields(&g.truth(&format!("status/{pid}")));
            assert_eq!(ours(&c), want, "{}: pid {pid}", g.name);
        }
        eprintln!("{}: credentials of {} processes match", g.name, pids.len());
    }
}

fn zeta_and_epsilon_are_what_they_were_started_as() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let zeta = g
            .tasks()
            .into_iter()
            .find(|t| t.uid == 1000 && t.name == "vmi-target")
            .unwrap_or_else(|| panic!("{}: no zeta", g.name));
        let (z, _) = credentials(&session, &kernel, zeta.pid).unwrap();
        assert_eq!((z.uid, z.gid), ([1000; 4], [1000; 4]), "{}", g.name);
        assert_eq!(z.groups, [24, 1001], "{}", g.name);
        assert_eq!(z.caps[..3], [0, 0, 0], "{}", g.name);
        let epsilon: u32 = g.truth("fds-target").trim().parse().unwrap();
        let (e, _) = credentials(&session, &kernel, epsilon).unwrap();
        assert_eq!((e.seccomp, e.no_new_privs), (2, true), "{}", g.name);
        let (init, _) = credentials(&session, &kernel, 1).unwrap();
        assert_eq!(
            (init.seccomp, init.no_new_privs, init.uid),
            (0, false, [0; 4])
        );
    }
}

fn kernel_cap_layout_is_read_from_btf() {
    // 6.1's kernel_cap_t is {u32 cap[2]}, 6.12's {u64 val}: both give the full 41-bit set
    // of a root process (CAP_LAST_CAP 40 on both).
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let (c, _) = credentials(&session, &kernel, 1).unwrap();
        assert_eq!(c.caps[3], (1u64 << 41) - 1, "{}: CapBnd", g.name);
    }
}

vmi_fixtures::real_guest_tests!(
    credentials_match_proc_status,
    zeta_and_epsilon_are_what_they_were_started_as,
    kernel_cap_layout_is_read_from_btf,
);
