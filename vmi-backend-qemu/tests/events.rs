//! Events on real live guests through QEMU's gdbstub (TCG, booted by `scripts/fixture-live`):
//! breakpoints with step-over on 2 vCPUs and 1, watchpoints that fire once per write, single
//! steps that land where the guest program's own disassembly says, and a guest left running
//! with no breakpoint once the loop ends.

mod common {
    pub mod live;
}

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::live::{LiveGuest, Workload};
use vmi_backend_qemu::{Qemu, QemuOptions};
use vmi_core::event::{EventKind, Events, Filter, WatchKind};
use vmi_core::{Pa, Session, Va};
use vmi_os_linux::Kernel;

fn session(g: &LiveGuest) -> Session {
    let q = Qemu::open(&g.qmp, &QemuOptions::default()).expect("open");
    let mut s = Session::from_target(
        "qemu:test",
        q.into_target(),
        Box::new(vmi_arch_x86::X86::new()),
    );
    let os = vmi_os_linux::os::open(&s, false).expect("Linux found in the live guest");
    s.set_os(Box::new(os));
    s
}

fn kernel(s: &Session) -> &Kernel {
    vmi_os_linux::linux(s).unwrap().kernel()
}

/// The page-table root of process `pid` (its kernel PGD; a PTI kernel's user PGD is the next
/// page).
fn roots(s: &Session, pid: u32) -> Vec<Pa> {
    let ps = vmi_os_linux::processes(s, kernel(s)).expect("ps");
    let dtb = ps
        .items
        .iter()
        .find(|p| p.pid == pid)
        .and_then(|p| p.dtb)
        .unwrap_or_else(|| panic!("no process {pid}"));
    vec![dtb, Pa::new(dtb.raw() | 0x1000)]
}

fn read_counter(s: &Session, w: &Workload) -> u64 {
    let mut b = [0u8; 8];
    vmi_os_linux::read_process(s, kernel(s), w.pid, Va::new(w.counter), &mut b).expect("read");
    u64::from_le_bytes(b)
}

/// The workload's counter rate over `d`, read with the guest running.
fn rate(s: &Session, w: &Workload, d: Duration) -> f64 {
    let a = read_counter(s, w);
    let t = Instant::now();
    std::thread::sleep(d);
    let b = read_counter(s, w);
    (b.saturating_sub(a)) as f64 / t.elapsed().as_secs_f64()
}

fn running(g: &LiveGuest) -> bool {
    g.ctl("query-status", serde_json::json!({}))["status"] == "running"
}

/// Instruction addresses of `function` in `binary`, from `objdump -d`, up to its `ret`.
fn disassembly(binary: &std::path::Path, function: &str) -> Vec<u64> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(binary)
        .output()
        .expect("objdump (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let header = format!("<{function}>:");
    let mut lines = text.lines().skip_while(|l| !l.ends_with(&header)).skip(1);
    let mut addrs = Vec::new();
    for l in lines.by_ref() {
        let Some((addr, insn)) = l.trim().split_once(':') else {
            break;
        };
        let Ok(a) = u64::from_str_radix(addr.trim(), 16) else {
            break;
        };
        addrs.push(a);
        if insn.trim_start().starts_with("ret") {
            break;
        }
    }
    assert!(
        addrs.len() > 5,
        "{function} in {}: {addrs:?}",
        binary.display()
    );
    addrs
}

fn check_events(g: &LiveGuest) {
    let s = session(g);
    let loop_wl = g.run_workload("loop");
    let step = g.run_workload("step");
    let unhooked = rate(&s, &loop_wl, Duration::from_secs(1));
    assert!(unhooked > 100.0, "the open loop runs: {unhooked}/s");

    // 1. A kernel breakpoint on the open path: every event stops a vCPU at it, the loop's
    // step-over lets each vCPU go on (no livelock: the workload keeps counting).
    let openat = kernel(&s).symbol("__x64_sys_openat").unwrap();
    let mut events = Events::new(&s).unwrap();
    events.record_timings();
    let hook = events.break_at(openat, Filter::any()).unwrap();
    let before = read_counter(&s, &loop_wl);
    let mut per_vcpu = BTreeMap::<usize, u64>::new();
    let t = Instant::now();
    let mut n = 0u64;
    while n < 60 {
        let e = events
            .next(Duration::from_secs(10))
            .unwrap()
            .expect("openat is called");
        assert_eq!(e.kind, EventKind::Breakpoint { addr: openat });
        assert_eq!(e.registers.rip, openat.raw());
        assert_eq!(e.hooks, [hook]);
        *per_vcpu.entry(e.vcpu).or_default() += 1;
        n += 1;
    }
    let hooked_rate = n as f64 / t.elapsed().as_secs_f64();
    let stats = events.stats();
    assert!(stats.step_overs >= n - 1, "{stats:?}");
    let after = read_counter(&s, &loop_wl);
    assert!(
        after > before,
        "the guest made progress through the breakpoint"
    );
    let median = |t: &[Duration]| {
        let mut t = t.to_vec();
        t.sort();
        t[t.len() / 2]
    };
    eprintln!(
        "breakpoint: {hooked_rate:.0} events/s, per vCPU {per_vcpu:?}, library time median {:?}, \
         step-over median {:?}",
        median(events.timings()),
        median(events.step_over_timings())
    );
    events.finish().unwrap();
    assert!(running(g), "the guest runs after the loop");

    // 2. A write watchpoint on a process's counter, filtered to that process: one event per
    // increment, the values consecutive. The counter is in a page of its own: the guest's
    // other processes write their counters at one shared address (one binary), and QEMU
    // reports one stop per stop, so a write of another vCPU in the same instant would go
    // unreported.
    let tick = g.run_workload("tick");
    let mut events = Events::new(&s).unwrap();
    events
        .watch(
            Va::new(tick.counter),
            8,
            WatchKind::Write,
            Filter::roots(roots(&s, tick.pid)),
        )
        .unwrap();
    let mut last = None;
    for _ in 0..40 {
        let e = events
            .next(Duration::from_secs(10))
            .unwrap()
            .expect("the counter is written");
        assert!(
            matches!(e.kind, EventKind::Watchpoint { addr, access: WatchKind::Write } if addr == Va::new(tick.counter)),
            "{:?}",
            e.kind
        );
        let v = read_counter(&s, &tick);
        if let Some(prev) = last {
            assert_eq!(
                v,
                prev + 1,
                "one event per increment (vCPU {}, rip {:#x}, {:?})",
                e.vcpu,
                e.registers.rip,
                events.stats()
            );
        }
        last = Some(v);
    }
    events.finish().unwrap();

    // 3. Single-step from a user breakpoint through straight-line code: each step lands on the
    // next instruction of the guest binary's own disassembly.
    let expected = disassembly(&g.workload_binary(), "vmi_straight_line");
    let entry = step.address("step");
    assert_eq!(
        entry, expected[0],
        "the workload's function is where objdump says"
    );
    let mut events = Events::new(&s).unwrap();
    events
        .break_at(Va::new(entry), Filter::roots(roots(&s, step.pid)))
        .unwrap();
    let e = events
        .next(Duration::from_secs(10))
        .unwrap()
        .expect("the function is called");
    assert_eq!(e.registers.rip, entry);
    for want in &expected[1..] {
        let st = events.step(e.vcpu).unwrap();
        assert_eq!(st.kind, EventKind::SingleStep);
        assert_eq!(st.registers.rip, *want, "step from {:#x}", entry);
    }
    events.finish().unwrap();

    // 4. Nothing of ours is left: the open loop is back to its unhooked rate.
    assert!(running(g));
    let back = rate(&s, &loop_wl, Duration::from_secs(1));
    eprintln!("open loop: unhooked {unhooked:.0}/s, after the events {back:.0}/s");
    assert!(
        back > unhooked * 0.5,
        "the workload is back to speed: {back:.0}/s vs {unhooked:.0}/s before"
    );
}

fn events_5level_2_vcpus() {
    let Some(g) = LiveGuest::start("6.12", 5, true, 2) else {
        return;
    };
    check_events(&g);
}

fn events_4level_1_vcpu() {
    let Some(g) = LiveGuest::start("6.1", 4, false, 1) else {
        return;
    };
    check_events(&g);
}

vmi_fixtures::real_guest_tests!(events_5level_2_vcpus, events_4level_1_vcpu);
