//! Processes, threads, command lines, environments and process memory of every real guest,
//! checked against the truth each guest printed about itself from `/proc` before its memory
//! was dumped.
//!
//! The truth's task snapshot was taken by the guest's init with shell builtins only, after
//! every known process had started; afterwards init ran only short-lived helpers (`grep`, `tr`)
//! that exited and were reaped before the dump. So the task list in memory must equal the
//! snapshot exactly, except for pid 0 (`init_task`), which `/proc` does not list.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use common::{Guest, GuestExt};
use vmi_core::os::{self, process_tree, TreeNode};
use vmi_core::{Session, Va};
use vmi_os_linux::analysis::process_memory::{cmdline, environ, read_process};
use vmi_os_linux::analysis::ps::{find_process, process_space, processes, threads, Process};
use vmi_os_linux::{Kernel, LinuxError};

/// Every guest with its session and kernel, discovered once for all tests of this file.
fn guests() -> &'static [(Guest, Session, Kernel)] {
    static GUESTS: OnceLock<Vec<(Guest, Session, Kernel)>> = OnceLock::new();
    let all = GUESTS.get_or_init(|| {
        common::guests()
            .into_iter()
            .map(|g| {
                let s = g.session();
                let k = g.kernel(&s);
                (g, s, k)
            })
            .collect()
    });
    if all.is_empty() {
        // Only the first test asked `vmi_fixtures`; every test reports its own skip.
        common::guests();
    }
    all
}

/// `processes()` of a guest, without warnings (a real guest's lists are intact), by pid.
fn listed(g: &Guest, s: &Session, k: &Kernel) -> BTreeMap<u32, Process> {
    let ps = processes(s, k).unwrap_or_else(|e| panic!("{}: processes: {e}", g.name));
    assert!(
        ps.warnings.is_empty(),
        "{}: warnings on a real guest: {:?}",
        g.name,
        ps.warnings
    );
    let mut by_pid = BTreeMap::new();
    for p in ps.items {
        let pid = p.pid;
        if let Some(old) = by_pid.insert(pid, p) {
            panic!("{}: pid {pid} listed twice ({old:?})", g.name);
        }
    }
    by_pid
}

fn processes_equal_the_truth() {
    for (g, s, k) in guests() {
        let ours = listed(g, s, k);
        let truth = g.tasks();

        let idle = &ours[&0];
        assert!(idle.is_idle() && idle.kernel_thread, "{}: {idle:?}", g.name);
        assert_eq!(idle.name, "swapper/0", "{}", g.name);
        assert_eq!(
            (idle.ppid, idle.mm, idle.dtb),
            (0, None, None),
            "{}",
            g.name
        );
        assert_eq!(idle.task, k.symbol("init_task").unwrap(), "{}", g.name);

        let truth_pids: BTreeSet<u32> = truth.iter().map(|t| t.pid).collect();
        let our_pids: BTreeSet<u32> = ours.keys().copied().filter(|&p| p != 0).collect();
        assert_eq!(
            our_pids,
            truth_pids,
            "{}: only in memory: {:?}; only in the truth: {:?}",
            g.name,
            our_pids
                .difference(&truth_pids)
                .map(|p| &ours[p])
                .collect::<Vec<_>>(),
            truth_pids.difference(&our_pids).collect::<Vec<_>>()
        );

        for t in &truth {
            let p = &ours[&t.pid];
            let ctx = format!("{}: pid {} ({:?} vs truth {:?})", g.name, t.pid, p, t);
            assert_eq!((p.ppid, p.uid, p.gid), (t.ppid, t.uid, t.gid), "{ctx}");
            assert_eq!(p.threads, t.threads, "{ctx}");
            assert!(common::comm_matches(&p.name, &t.name), "{ctx}");
            let kthread = t.pid == 2 || t.ppid == 2;
            assert_eq!(p.kernel_thread, kthread, "{ctx}");
            assert_eq!(p.mm.is_none(), kthread, "{ctx}");
            assert_eq!(p.dtb.is_none(), kthread, "{ctx}");
            assert!(p.start_time_ns > 0, "{ctx}");
        }
    }
}

fn list_order_is_creation_order() {
    for (g, s, k) in guests() {
        let ps = processes(s, k).unwrap().items;
        assert_eq!(ps[0].pid, 0, "{}", g.name);
        // fork appends to the task list, so start times never decrease along it.
        for w in ps.windows(2) {
            assert!(
                w[0].start_time_ns <= w[1].start_time_ns,
                "{}: {:?} listed before {:?}",
                g.name,
                w[0],
                w[1]
            );
        }
        // Distinct processes, distinct address spaces.
        let dtbs: Vec<_> = ps.iter().filter_map(|p| p.dtb).collect();
        let unique: BTreeSet<_> = dtbs.iter().collect();
        assert_eq!(unique.len(), dtbs.len(), "{}: shared dtb", g.name);
    }
}

fn threads_equal_the_truth() {
    for (g, s, k) in guests() {
        let truth = g.task_threads();
        for (pid, tids) in &truth {
            let t = threads(s, k, *pid).unwrap_or_else(|e| panic!("{}: {pid}: {e}", g.name));
            assert!(t.warnings.is_empty(), "{}: {pid}: {:?}", g.name, t.warnings);
            let ours: BTreeSet<u32> = t.items.iter().map(|t| t.tid).collect();
            let want: BTreeSet<u32> = tids.iter().copied().collect();
            assert_eq!(ours, want, "{}: threads of {pid}", g.name);
            assert_eq!(t.items.len(), tids.len(), "{}: {pid}", g.name);
            assert!(t.items.iter().all(|t| t.tgid == *pid), "{}: {pid}", g.name);
            // The leader comes first.
            assert_eq!(t.items[0].tid, *pid, "{}", g.name);
        }
        for target in g.targets() {
            let t = threads(s, k, target.pid).unwrap().items;
            assert_eq!(
                t.len() as u32,
                target.threads + 1,
                "{}: {}",
                g.name,
                target.pid
            );
            assert!(
                t.iter().all(|t| t.name == "vmi-target"),
                "{}: {t:?}",
                g.name
            );
            assert!(
                t.iter().all(|x| x.start_time_ns >= t[0].start_time_ns),
                "{}: {t:?}",
                g.name
            );
            assert!(
                t.iter().all(|x| x.start_boottime_ns.is_some()),
                "{}",
                g.name
            );
        }
    }
}

/// A truth file of `tr '\0' '\n'` output, as lines.
fn truth_lines(g: &Guest, name: &str) -> Vec<String> {
    g.truth(name).lines().map(str::to_owned).collect()
}

fn cmdline_and_environ_of_targets() {
    for (g, s, k) in guests() {
        for t in g.targets() {
            let args = cmdline(s, k, t.pid).unwrap_or_else(|e| panic!("{}: {e}", g.name));
            assert_eq!(
                args,
                truth_lines(g, &format!("cmdline/{}", t.pid)),
                "{}: cmdline of {}",
                g.name,
                t.pid
            );
            let env = environ(s, k, t.pid).unwrap_or_else(|e| panic!("{}: {e}", g.name));
            let want: Vec<(String, String)> = truth_lines(g, &format!("environ/{}", t.pid))
                .into_iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            assert_eq!(env, want, "{}: environ of {}", g.name, t.pid);
        }
    }
}

fn read_process_finds_the_secrets() {
    for (g, s, k) in guests() {
        for t in g.targets() {
            let mut buf = [0u8; 64];
            read_process(s, k, t.pid, Va::new(t.heap), &mut buf)
                .unwrap_or_else(|e| panic!("{}: heap of {}: {e}", g.name, t.pid));
            let want = format!("VMI-HEAP-SECRET-{}\0", t.pid);
            assert_eq!(
                &buf[..want.len()],
                want.as_bytes(),
                "{}: heap of {}",
                g.name,
                t.pid
            );
            let mut buf = [0u8; 16];
            read_process(s, k, t.pid, Va::new(t.data), &mut buf).unwrap();
            assert_eq!(&buf, b"VMI-DATA-SECRET\0", "{}: data of {}", g.name, t.pid);
            let mut counter = [0u8; 8];
            read_process(s, k, t.pid, Va::new(t.counter), &mut counter).unwrap();
            assert!(u64::from_le_bytes(counter) >= 0x100_0000, "{}", g.name);
        }
        // The heap secret of one process is not at that address in another (distinct spaces).
        let ts = g.targets();
        let mut buf = [0u8; 24];
        if read_process(s, k, ts[1].pid, Va::new(ts[0].heap), &mut buf).is_ok() {
            assert!(!buf.starts_with(format!("VMI-HEAP-SECRET-{}", ts[0].pid).as_bytes()));
        }
    }
}

fn process_space_is_the_translated_pgd() {
    for (g, s, k) in guests() {
        let pgd_off = k.profile().field_offset("mm_struct", "pgd").unwrap();
        let mem = k.memory(s);
        let ps = listed(g, s, k);
        for p in ps.values().filter(|p| !p.kernel_thread) {
            let mm = p.mm.unwrap();
            let pgd = mem.read_va(mm.checked_add(pgd_off).unwrap()).unwrap();
            let pa = s.translate(k.space(), pgd).unwrap().pa;
            let space = process_space(s, k, p).unwrap();
            assert_eq!(space.root, pa, "{}: {p:?}", g.name);
            assert_eq!(p.dtb, Some(pa), "{}: {p:?}", g.name);
            assert_eq!(space.mode, k.space().mode, "{}", g.name);
            assert_eq!(space.mode.levels() as u8, g.paging, "{}", g.name);
        }
        // Kernel threads have no user address space.
        let e = process_space(s, k, &ps[&2]).unwrap_err();
        assert!(e.to_string().contains("no user address space"), "{e}");

        // Each vCPU's CR3 is the dtb of the mm the kernel says it has loaded
        // (`cpu_tlbstate.loaded_mm`, a per-CPU variable at GS base + its symbol's value);
        // idle vCPUs keep the last user mm (lazy TLB), which here is a listed process's.
        let tlbstate = k.profile().symbol_address("cpu_tlbstate").unwrap();
        let loaded_off = k.profile().field_offset("tlb_state", "loaded_mm").unwrap();
        let init_mm = k.symbol("init_mm").unwrap();
        for cpu in 0..s.vcpu_count() {
            let regs = s.registers(cpu).unwrap();
            let cr3 = s.vcpu_address_space(cpu).unwrap().root.raw();
            // In user mode the kernel's GS base is swapped out to KERNEL_GS_BASE.
            let gs = if regs.gs.base >> 63 == 1 {
                regs.gs.base
            } else {
                regs.kernel_gs_base
            };
            let slot = Va::new(gs + tlbstate + loaded_off);
            let loaded = mem.read_va(slot).unwrap();
            let owner = ps.values().find(|p| p.mm == Some(loaded));
            let dtb = match owner {
                Some(p) => p.dtb.unwrap(),
                None => {
                    assert_eq!(
                        loaded, init_mm,
                        "{}: vCPU {cpu} runs an unlisted mm",
                        g.name
                    );
                    let pgd = mem.read_va(init_mm.checked_add(pgd_off).unwrap()).unwrap();
                    s.translate(k.space(), pgd).unwrap().pa
                }
            };
            // With PTI, a vCPU in user mode runs on the user PGD, the page after the dtb.
            assert!(
                cr3 == dtb.raw() || cr3 == dtb.raw() + 0x1000,
                "{}: vCPU {cpu} CR3 {cr3:#x}, loaded mm {loaded} with dtb {dtb}",
                g.name
            );
            eprintln!(
                "{}: vCPU {cpu} CR3 {cr3:#x} = dtb of {}",
                g.name,
                owner.map_or("init_mm".to_owned(), |p| format!(
                    "pid {} ({})",
                    p.pid, p.name
                ))
            );
        }
    }
}

fn tree_of_a_real_guest() {
    for (g, s, k) in guests() {
        let ps: Vec<os::Process> = processes(s, k)
            .unwrap()
            .items
            .into_iter()
            .map(Into::into)
            .collect();
        let tree = process_tree(&ps);
        assert_eq!(tree.len(), 1, "{}: one root, pid 0", g.name);
        assert_eq!(tree[0].process.pid, 0);
        let top: Vec<u32> = tree[0].children.iter().map(|c| c.process.pid).collect();
        assert_eq!(top, [1, 2], "{}", g.name);
        fn walk(n: &TreeNode, out: &mut Vec<(u32, u32)>) {
            for c in &n.children {
                assert_eq!(c.process.ppid, n.process.pid);
                out.push((c.process.pid, n.process.pid));
                walk(c, out);
            }
            let pids: Vec<u32> = n.children.iter().map(|c| c.process.pid).collect();
            assert!(pids.windows(2).all(|w| w[0] < w[1]));
        }
        let mut edges = Vec::new();
        walk(&tree[0], &mut edges);
        assert_eq!(edges.len() + 1, ps.len(), "{}", g.name);
        // The /proc view: init and kthreadd are the roots.
        let no_idle: Vec<os::Process> = ps.into_iter().filter(|p| p.pid != 0).collect();
        let roots: Vec<u32> = process_tree(&no_idle)
            .iter()
            .map(|n| n.process.pid)
            .collect();
        assert_eq!(roots, [1, 2], "{}", g.name);
    }
}

fn json_follows_the_contract() {
    let Some((g, s, k)) = guests().first() else {
        return;
    };
    let ps = processes(s, k).unwrap().items;
    let v = serde_json::to_value(&ps).unwrap();
    for (p, j) in ps.iter().zip(v.as_array().unwrap()) {
        let o = j.as_object().unwrap();
        let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = [
            "pid",
            "ppid",
            "name",
            "uid",
            "gid",
            "dtb",
            "threads",
            "kernel_thread",
            "start_time",
            "task",
            "mm",
        ]
        .into();
        assert_eq!(keys, want, "{}", g.name);
        assert_eq!(o["pid"].as_u64(), Some(u64::from(p.pid)));
        assert_eq!(o["start_time"].as_u64(), Some(p.start_time_ns));
        assert_eq!(
            o["task"].as_str(),
            Some(format!("{:#x}", p.task.raw()).as_str())
        );
        match p.dtb {
            Some(d) => assert_eq!(o["dtb"].as_str(), Some(format!("{:#x}", d.raw()).as_str())),
            None => assert!(o["dtb"].is_null()),
        }
    }
}

fn lookups_fail_clearly() {
    let Some((g, s, k)) = guests().first() else {
        return;
    };
    let missing = 4_000_000;
    assert!(matches!(
        find_process(s, k, missing),
        Err(LinuxError::NoSuchProcess(p)) if p == missing
    ));
    assert!(matches!(
        cmdline(s, k, missing),
        Err(LinuxError::NoSuchProcess(_))
    ));
    // A kernel thread has no command line to read in user memory.
    assert!(cmdline(s, k, 2).is_err(), "{}", g.name);
    assert!(read_process(s, k, 2, Va::new(0x40_0000), &mut [0u8; 8]).is_err());
    // find_process agrees with processes().
    for p in processes(s, k).unwrap().items {
        assert_eq!(find_process(s, k, p.pid).unwrap(), p, "{}", g.name);
    }
    // pid 1 is init; an unmapped user address fails with the address named.
    let e = read_process(s, k, 1, Va::new(0x10), &mut [0u8; 8]).unwrap_err();
    assert!(e.to_string().contains("0x10"), "{e}");
}

/// Release-mode timing of `ps` on the 6.1 guest (cold: open + discovery + processes):
/// `cargo test --release -p vmi-os-linux --test processes -- --ignored --nocapture timing`.
fn timing() {
    for g in vmi_fixtures::select("of a 6.1 kernel", |g| g.kernel_release.starts_with("6.1.")) {
        let t0 = std::time::Instant::now();
        let s = g.session();
        let t1 = std::time::Instant::now();
        let k = g.kernel(&s);
        let t2 = std::time::Instant::now();
        let ps = processes(&s, &k).unwrap();
        let t3 = std::time::Instant::now();
        let again = processes(&s, &k).unwrap();
        let t4 = std::time::Instant::now();
        assert_eq!(ps.items, again.items);
        eprintln!(
            "{}: open {:?}, discover {:?}, processes {:?} ({} items), warm {:?}, total cold {:?}",
            g.name,
            t1 - t0,
            t2 - t1,
            t3 - t2,
            ps.items.len(),
            t4 - t3,
            t3 - t0
        );
    }
}

vmi_fixtures::real_guest_tests!(
    processes_equal_the_truth,
    list_order_is_creation_order,
    threads_equal_the_truth,
    cmdline_and_environ_of_targets,
    read_process_finds_the_secrets,
    process_space_is_the_translated_pgd,
    tree_of_a_real_guest,
    json_follows_the_contract,
    lookups_fail_clearly,
    #[ignore]
    timing,
);
