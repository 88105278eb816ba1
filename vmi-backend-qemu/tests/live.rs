//! Real live guests: QEMU (TCG) booted by `scripts/fixture-live`, with and without a shared
//! RAM file, 5- and 4-level paging, 2 and 1 vCPUs. Each test starts its own guest and stops
//! it (by pid) when done, also when it fails.

mod common {
    pub mod live;
}

use std::collections::BTreeSet;
use std::time::Duration;

use common::live::LiveGuest;
use vmi_backend_qemu::{Qemu, QemuError, QemuOptions, PMEMSAVE_TIMEOUT};
use vmi_core::{Pa, PhysicalMemory, PhysicalMemoryWrite, Session, Va, VmControl};
use vmi_os_linux::Kernel;

fn session(q: Qemu) -> Session {
    Session::from_target(
        "qemu:test",
        q.into_target(),
        Box::new(vmi_arch_x86::X86::new()),
    )
}

/// Discovers the kernel from the live guest itself: a profile cached by some earlier run holds
/// only what that run used (and is not what this test is about).
fn bind_linux(s: &mut Session) {
    let os = vmi_os_linux::os::open(s, false).expect("Linux found in the live guest");
    s.set_os(Box::new(os));
}

fn kernel(s: &Session) -> &Kernel {
    vmi_os_linux::linux(s).unwrap().kernel()
}

fn user_pids(s: &Session) -> BTreeSet<(u32, u32, String)> {
    let ps = vmi_os_linux::processes(s, kernel(s)).expect("ps");
    ps.items
        .iter()
        .filter(|p| !p.kernel_thread)
        .map(|p| (p.pid, p.ppid, p.name.clone()))
        .collect()
}

fn read_user_u64(s: &Session, pid: u32, va: u64) -> u64 {
    let mut b = [0u8; 8];
    vmi_os_linux::read_process(s, kernel(s), pid, Va::new(va), &mut b).expect("read --pid");
    u64::from_le_bytes(b)
}

/// Registers: gdbstub == HMP; memory: both paths == pmemsave; counter runs/stops.
fn check_guest(g: &LiveGuest) {
    let q = Qemu::open(
        &g.qmp,
        &QemuOptions {
            write: true,
            ..Default::default()
        },
    )
    .expect("open");
    let kind = q.memory().blocks()[0].kind();
    assert_eq!(
        kind,
        if g.shm.is_some() {
            "shared-file"
        } else {
            "process-memory"
        }
    );
    assert_eq!(
        q.control().register_source(),
        "gdbstub",
        "{:?}",
        q.details()
    );
    assert!(g.running(), "opening left the guest paused");
    // The second path, on the control socket, without the gdbstub (taken by the first).
    let p = Qemu::open(
        &g.ctl,
        &QemuOptions {
            force_process_memory: true,
            gdbstub: false,
            ..Default::default()
        },
    )
    .expect("open process path");
    assert_eq!(p.memory().blocks()[0].kind(), "process-memory");

    let control = q.control().clone();
    control.pause().unwrap();
    assert!(!p.control().is_running().unwrap());
    let gdb = control.all_registers().unwrap();
    let hmp = control.hmp_registers().unwrap();
    assert_eq!(gdb.len(), g.vcpus);
    assert_eq!(hmp.len(), g.vcpus);
    for (a, b) in gdb.iter().zip(&hmp) {
        assert_eq!(
            (a.cr0, a.cr2, a.cr3, a.cr4, a.efer, a.rip, a.rsp, a.rax, a.r15, a.rflags),
            (b.cr0, b.cr2, b.cr3, b.cr4, b.efer, b.rip, b.rsp, b.rax, b.r15, b.rflags)
        );
        assert_eq!(
            (a.fs_base, a.gs_base, a.cs.selector),
            (b.fs_base, b.gs_base, b.cs.selector)
        );
        assert_eq!(a.cr4 & 0x1000 != 0, g.paging == 5, "CR4.LA57");
    }

    // Both memory paths against a pmemsave of the same paused guest.
    let dump = std::env::temp_dir().join(format!("vmi-live-pmem-{}.raw", g.pid));
    p.control()
        .with_qmp(|qmp| {
            qmp.execute_timeout(
                "pmemsave",
                Some(serde_json::json!({"val": 0, "size": g.mem_bytes, "filename": dump.to_str().unwrap()})),
                PMEMSAVE_TIMEOUT,
            )
        })
        .expect("pmemsave");
    let raw = std::fs::read(&dump).unwrap();
    let _ = std::fs::remove_file(&dump);
    assert_eq!(raw.len() as u64, g.mem_bytes);
    let mut covered = 0u64;
    for mem in [q.memory() as &dyn PhysicalMemory, p.memory()] {
        for r in mem.memory_map() {
            let start = r.start.raw();
            let end = r.end_raw().min(g.mem_bytes);
            let mut pa = start;
            let mut buf = vec![0u8; 1 << 20];
            while pa < end {
                let n = ((end - pa) as usize).min(buf.len());
                mem.read(Pa::new(pa), &mut buf[..n]).unwrap();
                assert!(
                    buf[..n] == raw[pa as usize..pa as usize + n],
                    "bytes differ at {pa:#x}"
                );
                covered += n as u64;
                pa += n as u64;
            }
        }
    }
    assert!(
        covered >= g.mem_bytes * 2 - 0x100000,
        "covered only {covered:#x}"
    );
    // Outside RAM (the VGA window) is an error, not zeros.
    assert!(q.memory().read(Pa::new(0xa0000), &mut [0u8; 8]).is_err());
    drop(p);
    control.resume().unwrap();
    assert!(g.running());

    // Linux on the live guest: counter, ps, spawn, write.
    let writer_mem = q.memory() as *const _ as usize; // identity only, for the assert below
    let mut s = session(q);
    assert_eq!(
        s.writer()
            .map(|w| w as *const dyn PhysicalMemoryWrite as *const () as usize),
        Some(writer_mem)
    );
    bind_linux(&mut s);
    let targets = g.targets();
    assert_eq!(targets.len(), 3);
    let alpha = targets[0];
    let c1 = read_user_u64(&s, alpha.pid, alpha.counter);
    std::thread::sleep(Duration::from_millis(300));
    s.invalidate();
    let c2 = read_user_u64(&s, alpha.pid, alpha.counter);
    assert!(
        c2 > c1,
        "counter did not move while running: {c1:#x} {c2:#x}"
    );
    s.control().unwrap().pause().unwrap();
    let c3 = read_user_u64(&s, alpha.pid, alpha.counter);
    std::thread::sleep(Duration::from_millis(300));
    let c4 = read_user_u64(&s, alpha.pid, alpha.counter);
    assert_eq!(c3, c4, "counter moved while paused");
    // ps while paused == the truth, for user processes.
    let truth: BTreeSet<(u32, u32, String)> = g
        .tasks()
        .into_iter()
        .filter(|t| !t.name.starts_with('[') && t.ppid != 2 && t.pid != 2)
        .map(|t| (t.pid, t.ppid, t.name))
        .collect();
    let ours = user_pids(&s);
    assert_eq!(ours, truth, "live ps differs from the guest's /proc");
    s.control().unwrap().resume().unwrap();
    s.invalidate();

    // A process started after attach appears in the next ps.
    let late = g.spawn("late");
    s.invalidate();
    let ours = user_pids(&s);
    assert!(
        ours.iter()
            .any(|(pid, _, name)| *pid == late.pid && name == "vmi-target"),
        "{ours:?}"
    );

    // A write the guest notices: alpha's heap secret.
    let proc_ = vmi_os_linux::find_process(&s, kernel(&s), alpha.pid).unwrap();
    let space = vmi_os_linux::process_space(&s, kernel(&s), &proc_).unwrap();
    let pa = s.translate(space, Va::new(alpha.heap)).unwrap().pa;
    let value = format!("VMI-HEAP-WRITTEN-{}", alpha.pid);
    let mut bytes = value.clone().into_bytes();
    bytes.push(0);
    s.writer().unwrap().write(pa, &bytes).unwrap();
    let expect = format!("VMI-HEAP-CHANGED pid={} value={value}", alpha.pid);
    assert!(
        g.wait_serial(Duration::from_secs(20), |t| t
            .contains(&expect)
            .then_some(()))
            .is_some(),
        "the guest did not see the write"
    );

    drop(s);
    assert!(
        g.running(),
        "guest not running after the backend was dropped"
    );
}

fn live_5level_shared_file_2_vcpus() {
    let Some(g) = LiveGuest::start("6.12", 5, true, 2) else {
        return;
    };
    check_guest(&g);
}

fn live_4level_process_memory_1_vcpu() {
    let Some(g) = LiveGuest::start("6.1", 4, false, 1) else {
        return;
    };
    check_guest(&g);
}

/// Bad input: not QMP, gdbstub taken, paused guest stays paused, QEMU gone.
fn live_bad_input() {
    // A Unix socket that accepts and says nothing, and one that says garbage.
    let dir = std::env::temp_dir().join(format!("vmi-notqmp-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let silent = dir.join("silent.sock");
    let noisy = dir.join("noisy.sock");
    let _ = std::fs::remove_file(&silent);
    let _ = std::fs::remove_file(&noisy);
    let l1 = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let l2 = std::os::unix::net::UnixListener::bind(&noisy).unwrap();
    std::thread::spawn(move || {
        let _keep = l1.accept();
        std::thread::sleep(Duration::from_secs(10));
    });
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l2.accept() {
            use std::io::Write;
            let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n");
            std::thread::sleep(Duration::from_secs(10));
        }
    });
    let t0 = std::time::Instant::now();
    let e = Qemu::open(&silent, &QemuOptions::default()).unwrap_err();
    assert!(matches!(e, QemuError::NotQmp { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(6));
    let e = Qemu::open(&noisy, &QemuOptions::default()).unwrap_err();
    assert!(matches!(e, QemuError::NotQmp { .. }), "{e}");
    assert!(e.to_string().contains("not a QMP socket"), "{e}");
    let e = Qemu::open(dir.join("missing.sock"), &QemuOptions::default()).unwrap_err();
    assert!(matches!(e, QemuError::Connect { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);

    let Some(g) = LiveGuest::start("6.1", 5, false, 2) else {
        return;
    };
    // gdbstub taken by another client: fall back to QMP/HMP, guest left running.
    let first = Qemu::open(&g.qmp, &QemuOptions::default()).unwrap();
    let second = Qemu::open(&g.ctl, &QemuOptions::default()).unwrap();
    assert_eq!(second.control().register_source(), "hmp");
    assert!(second
        .details()
        .iter()
        .any(|(k, v)| k == "gdbstub" && v.contains("in use by another client")));
    let regs = second.control().all_registers().unwrap();
    assert_eq!(regs.len(), 2);
    // (The control socket is `second`'s now: a QMP socket serves one client.)
    second.control().pause().unwrap();
    assert!(!second.control().is_running().unwrap());
    second.control().resume().unwrap();
    assert!(second.control().is_running().unwrap());
    drop(second);
    drop(first);
    assert!(g.running());

    // A guest the user paused stays paused through open, pause/resume and drop.
    g.ctl("stop", serde_json::json!({}));
    let q = Qemu::open(&g.qmp, &QemuOptions::default()).unwrap();
    assert!(!g.running());
    q.control().pause().unwrap();
    q.control().resume().unwrap();
    assert!(!g.running());
    assert_eq!(q.control().all_registers().unwrap().len(), 2);
    drop(q);
    assert!(!g.running(), "a guest the user paused was resumed");
    g.ctl("cont", serde_json::json!({}));

    // QEMU exits mid-session: clear errors, no hang.
    let q = Qemu::open(&g.qmp, &QemuOptions::default()).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", &g.pid.to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    let e = q.control().all_registers().unwrap_err();
    assert!(
        matches!(
            e,
            QemuError::Closed { .. } | QemuError::Io { .. } | QemuError::Timeout { .. }
        ),
        "{e}"
    );
    let e = q.control().is_running().unwrap_err();
    assert!(e.to_string().contains("QEMU"), "{e}");
    drop(q);
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// The gdbstub vmi starts is a socket in a directory only QEMU's user can enter (0700), named
/// in the details; a second run reuses that stub (QEMU starts one per process) and says so;
/// pausing a QEMU that is gone is a control error naming it.
fn live_gdbstub_socket_is_private_and_reused() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let Some(g) = LiveGuest::start("6.1", 4, false, 1) else {
        return;
    };
    let detail = |q: &Qemu, key: &str| {
        q.details()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {:?}", q.details()))
    };
    let first = Qemu::open(&g.qmp, &QemuOptions::default()).unwrap();
    assert_eq!(first.control().register_source(), "gdbstub");
    let address = detail(&first, "gdbstub");
    let path = std::path::PathBuf::from(address.strip_prefix("unix:").expect("a Unix socket"));
    let qemu_uid = std::fs::metadata(format!("/proc/{}", g.pid)).unwrap().uid();
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from);
    let dir = vmi_backend_qemu::gdb_socket::socket_dir(
        qemu_uid,
        std::fs::metadata("/proc/self").unwrap().uid(),
        runtime.as_deref(),
    );
    assert_eq!(path, dir.join(format!("qemu-{}.sock", g.pid)), "{address}");
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "{}",
        dir.display()
    );
    assert_eq!(meta.uid(), qemu_uid);
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    let note = detail(&first, "gdbstub_socket");
    assert!(
        note.contains("started by vmi") && note.contains("0700"),
        "{note}"
    );
    let regs = first.control().all_registers().unwrap();
    drop(first);
    assert!(g.running());
    // The socket stays (QEMU listens until it exits) and the next run takes it again.
    assert!(path.exists());
    let second = Qemu::open(&g.qmp, &QemuOptions::default()).unwrap();
    assert_eq!(second.control().register_source(), "gdbstub");
    assert_eq!(detail(&second, "gdbstub"), address);
    let note = detail(&second, "gdbstub_socket");
    assert!(
        note.contains("reused") && !note.contains("warning"),
        "{note}"
    );
    assert_eq!(second.control().all_registers().unwrap().len(), regs.len());
    eprintln!("gdbstub {address}: {note}");

    // QEMU gone: pausing is a control error naming the target, not a register error.
    let _ = std::process::Command::new("kill")
        .args(["-9", &g.pid.to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    let e = second.control().pause().unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, vmi_core::error::ControlError::Pause { .. }),
        "{text}"
    );
    assert!(
        text.starts_with(&format!("pausing QEMU pid {} (qmp ", g.pid)),
        "{text}"
    );
    assert!(!text.contains("vCPU"), "{text}");
}

vmi_fixtures::real_guest_tests!(
    live_5level_shared_file_2_vcpus,
    live_4level_process_memory_1_vcpu,
    live_bad_input,
    live_gdbstub_socket_is_private_and_reused,
);
