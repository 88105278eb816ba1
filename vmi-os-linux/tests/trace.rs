//! Linux tracing ([`vmi_core::os::KernelTracing`]) on every real guest's dump: the current
//! task of each vCPU (the per-CPU base from GS or `MSR_KERNEL_GS_BASE`) is a task of the
//! truth; every trace kind resolves; and synthetic stops decode real guest data: an exec whose
//! `pt_regs` (patched into a page of the dump) points at a known process's own argv on its
//! user stack gives its `truth/cmdline`, and the open, system call and fork stops give what
//! was put in their registers, with numbers and names from the guest's `sys_call_table`. The
//! stops decode the same with only what tracing looked up (what the profile cache keeps), and a
//! cache from before tracing says that it is incomplete. The current task of a vCPU is also
//! the scheduler's `runqueues.curr` of that CPU.
//!
//! A dump cannot show a real breakpoint stop: that the functions are entered with these
//! registers, and the results at their returns, is the live end-to-end test's.

mod common;

use std::sync::Arc;

use common::{Guest, GuestExt};
use vmi_core::os::{KernelTracing, TraceKind, TracePoint, TraceRecord};
use vmi_core::registry::{ARCHITECTURES, BACKENDS};
use vmi_core::{
    MemoryError, MemoryRegion, OpenOptions, OsError, Pa, PhysicalMemory, Session, Va, X86Registers,
};
use vmi_os_linux::comps::percpu::{PerCpuBaseSource, PerCpuCurrent};
use vmi_os_linux::comps::task::{TaskLayout, TaskReader};
use vmi_os_linux::{Kernel, LinuxOs};

/// The idle task of CPU `n` is `swapper/n`, pid 0 (CPU 0's is `init_task`); `/proc` does not
/// list it.
fn is_idle(tgid: u32, tid: u32, comm: &str, vcpu: usize) -> bool {
    tgid == 0 && tid == 0 && comm == format!("swapper/{vcpu}")
}

fn current_task_is_a_truth_task() {
    let mut vcpus_checked = 0;
    let mut user_mode = 0;
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let current = PerCpuCurrent::resolve(&kernel)
            .unwrap_or_else(|e| panic!("{}: per-CPU current: {e}", g.name));
        let want_source = if g.kernel_release.starts_with("6.1.") {
            "current_task"
        } else {
            "pcpu_hot.current_task"
        };
        assert_eq!(current.source, want_source, "{}", g.name);
        let layout = TaskLayout::resolve(kernel.profile()).unwrap();
        let kmem = kernel.memory(&session);
        let tasks = TaskReader::new(kmem, &layout);
        let truth = g.tasks();
        let threads = g.task_threads();
        let init_task = kernel.symbol("init_task").unwrap();
        assert_eq!(session.vcpu_count(), g.vcpus, "{}", g.name);
        for vcpu in 0..session.vcpu_count() {
            let regs = session.registers(vcpu).unwrap();
            let found = current
                .current_task(&kmem, vcpu, &regs)
                .unwrap_or_else(|e| panic!("{}: vCPU {vcpu}: {e}", g.name));
            let cpl = regs.cs.selector & 3;
            assert!(found.verified, "{}: vCPU {vcpu}: this_cpu_off", g.name);
            if cpl == 3 {
                user_mode += 1;
                assert_eq!(
                    found.base_source,
                    PerCpuBaseSource::KernelGsBase,
                    "{}",
                    g.name
                );
            } else {
                assert_eq!(found.base_source, PerCpuBaseSource::GsBase, "{}", g.name);
            }
            // The scheduler's own record of what this CPU runs: `runqueues.curr`, another
            // per-CPU variable than the one the tracer reads.
            let rq = kernel.symbol("runqueues").unwrap().raw();
            let curr = kernel.profile().field_offset("rq", "curr").unwrap();
            let rq_curr = kmem
                .read_va(found.per_cpu_base.checked_add(rq + curr).unwrap())
                .unwrap();
            assert_eq!(
                rq_curr, found.task,
                "{}: vCPU {vcpu}: runqueues.curr",
                g.name
            );
            let (tgid, tid) = (
                tasks.tgid(found.task).unwrap(),
                tasks.pid(found.task).unwrap(),
            );
            let comm = tasks.comm(found.task).unwrap();
            eprintln!(
                "{}: vCPU {vcpu} (CPL {cpl}, {:?}): task {} tgid {tgid} tid {tid} {comm}",
                g.name, found.base_source, found.task
            );
            if is_idle(tgid, tid, &comm, vcpu) {
                assert!(cpl == 0, "{}: the idle task in user mode", g.name);
                if vcpu == 0 {
                    assert_eq!(found.task, init_task, "{}: CPU 0's idle task", g.name);
                }
            } else {
                let t = truth.iter().find(|t| t.pid == tgid).unwrap_or_else(|| {
                    panic!(
                        "{}: vCPU {vcpu}: tgid {tgid} ({comm}) not in truth/tasks",
                        g.name
                    )
                });
                assert!(
                    threads.get(&tgid).is_some_and(|ts| ts.contains(&tid)),
                    "{}: vCPU {vcpu}: tid {tid} not a thread of {tgid}: {:?}",
                    g.name,
                    threads.get(&tgid)
                );
                // A thread's comm may differ from its leader's; the leader's must match.
                if tid == tgid {
                    assert!(
                        common::comm_matches(&comm, &t.name),
                        "{}: vCPU {vcpu}: {comm} vs {}",
                        g.name,
                        t.name
                    );
                }
            }
            vcpus_checked += 1;
        }
    }
    eprintln!("{vcpus_checked} vCPUs checked, {user_mode} in user mode");
    if vcpus_checked > 0 {
        assert!(
            user_mode > 0 || !common::guests().iter().any(|g| g.pti),
            "no user-mode vCPU"
        );
    }
}

fn tracing(os: &LinuxOs) -> &dyn KernelTracing {
    vmi_core::OsProfile::tracing(os).expect("the Linux profile traces")
}

fn trace_points_resolve_for_every_kind() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let text = (
            kernel.symbol("_stext").unwrap().raw(),
            kernel.symbol("_etext").unwrap().raw(),
        );
        let os = LinuxOs::new(kernel.clone(), false);
        let t = tracing(&os);
        let kinds = [
            TraceKind::Exec,
            TraceKind::Open,
            TraceKind::Syscalls { names: vec![] },
            TraceKind::Syscalls {
                names: vec!["openat".into(), "read".into(), "openat".into()],
            },
        ];
        for kind in &kinds {
            let points = t
                .trace_points(kind)
                .unwrap_or_else(|e| panic!("{}: {kind:?}: {e}", g.name));
            let summary: Vec<(&str, &str, bool)> = points
                .iter()
                .map(|p| (p.symbol.as_str(), p.event, p.on_return))
                .collect();
            let want: Vec<(&str, &str, bool)> = match kind {
                TraceKind::Exec => vec![
                    ("wake_up_new_task", "fork", false),
                    ("__x64_sys_execve", "exec", false),
                    ("__x64_sys_execveat", "exec", false),
                ],
                TraceKind::Open => vec![("do_sys_openat2", "open", true)],
                TraceKind::Syscalls { names } if names.is_empty() => {
                    vec![("do_syscall_64", "syscall", true)]
                }
                _ => vec![
                    ("__x64_sys_openat", "syscall", true),
                    ("__x64_sys_read", "syscall", true),
                ],
            };
            assert_eq!(summary, want, "{}: {kind:?}", g.name);
            for p in &points {
                assert_eq!(p.addr, kernel.symbol(&p.symbol).unwrap(), "{}", g.name);
                assert!(
                    (text.0..text.1).contains(&p.addr.raw()),
                    "{}: {} at {} outside kernel text",
                    g.name,
                    p.symbol,
                    p.addr
                );
            }
        }
        let err = t
            .trace_points(&TraceKind::Syscalls {
                names: vec!["openat".into(), "no_such_call".into(), "neither".into()],
            })
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, OsError::Os(_)) && msg.contains("no_such_call, neither"),
            "{}: {msg}",
            g.name
        );
        eprintln!("{}: exec, open, syscalls resolve; unknown: {msg}", g.name);
    }
}

/// Physical memory with some bytes replaced: the synthetic frames a stop would point at.
struct Patched {
    inner: Arc<dyn PhysicalMemory>,
    patches: Vec<(Pa, Vec<u8>)>,
}

impl PhysicalMemory for Patched {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read(pa, buf)?;
        let (start, end) = (pa.raw(), pa.raw() + buf.len() as u64);
        for (at, bytes) in &self.patches {
            let (ps, pe) = (at.raw(), at.raw() + bytes.len() as u64);
            let (s, e) = (start.max(ps), end.min(pe));
            if s < e {
                buf[(s - start) as usize..(e - start) as usize]
                    .copy_from_slice(&bytes[(s - ps) as usize..(e - ps) as usize]);
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        self.inner.memory_map()
    }
}

/// A session over `g`'s ELF dump with `patches` (kernel address, bytes) applied, each
/// translated through `kernel`'s space of a plain session first.
fn patched_session(g: &Guest, kernel: &Kernel, patches: &[(Va, Vec<u8>)]) -> Session {
    let plain = g.session();
    let phys: Vec<(Pa, Vec<u8>)> = patches
        .iter()
        .map(|(va, bytes)| {
            let t = plain.translate(kernel.space(), *va).unwrap();
            // One page each.
            assert!(va.raw() % 4096 + bytes.len() as u64 <= 4096);
            (t.pa, bytes.clone())
        })
        .collect();
    let file = BACKENDS
        .items()
        .into_iter()
        .find(|b| b.name == "file")
        .expect("the file backend is linked");
    let path = g.elf();
    let mut target = (file.open)(path.to_str().unwrap(), &OpenOptions::default()).unwrap();
    target.memory = Arc::new(Patched {
        inner: target.memory.clone(),
        patches: phys,
    });
    let arch = (ARCHITECTURES.items()[0].make)();
    Session::from_target(path.to_str().unwrap(), target, arch)
}

/// A `pt_regs` image with `values` at the offsets of these fields.
fn pt_regs_bytes(kernel: &Kernel, values: &[(&str, u64)]) -> Vec<u8> {
    let size = kernel.profile().struct_size("pt_regs").unwrap() as usize;
    let mut buf = vec![0u8; size];
    for (field, value) in values {
        let off = kernel.profile().field_offset("pt_regs", field).unwrap() as usize;
        buf[off..off + 8].copy_from_slice(&value.to_le_bytes());
    }
    buf
}

fn point(points: &[TracePoint], symbol: &str) -> TracePoint {
    points
        .iter()
        .find(|p| p.symbol == symbol)
        .unwrap_or_else(|| panic!("no {symbol} point"))
        .clone()
}

/// Known x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
const NR: [(&str, u64); 6] = [
    ("read", 0),
    ("write", 1),
    ("execve", 59),
    ("openat", 257),
    ("execveat", 322),
    ("set_mempolicy_home_node", 450),
];

fn synthetic_stops_decode_guest_data() {
    let mut checked = 0;
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        // The known process with the longest command line.
        let (pid, truth_args) = g
            .targets()
            .iter()
            .map(|t| {
                // One argument a line.
                let text = g.truth(&format!("cmdline/{}", t.pid));
                (t.pid, text.lines().map(str::to_owned).collect::<Vec<_>>())
            })
            .max_by_key(|(_, a)| a.len())
            .unwrap_or_else(|| panic!("{}: no known process", g.name));
        let process = vmi_os_linux::find_process(&session, &kernel, pid).unwrap();
        let space = vmi_os_linux::process_space(&session, &kernel, &process).unwrap();
        let mm = process.mm.unwrap();
        let kmem = kernel.memory(&session);
        let start_stack_off = kernel
            .profile()
            .field_offset("mm_struct", "start_stack")
            .unwrap();
        let start_stack = kmem
            .read_u64(mm.checked_add(start_stack_off).unwrap())
            .unwrap();
        // The initial user stack: argc, then argv[0..argc], NULL: the shape of execve's argv.
        let umem = session.virtual_memory(space);
        let argc = umem.read_u64(Va::new(start_stack)).unwrap();
        assert_eq!(argc, truth_args.len() as u64, "{}: pid {pid} argc", g.name);
        let argv = start_stack + 8;
        let filename = umem.read_u64(Va::new(argv)).unwrap();

        // A page nothing reads, for the frames the stops point at.
        let page = kernel.symbol("empty_zero_page").unwrap();
        let frame_at = page;
        let how_at = page.checked_add(512).unwrap();
        let o_flags: u64 = 0o2_101_101; // O_CLOEXEC | O_NOFOLLOW... any bits: read back as is
        let args = [filename, argv, 0x11, 0x22, 0x33, 0x44];
        let mut frame = pt_regs_bytes(
            &kernel,
            &[
                ("di", args[0]),
                ("si", args[1]),
                ("dx", args[2]),
                ("r10", args[3]),
                ("r8", args[4]),
                ("r9", args[5]),
                ("orig_ax", 59),
                ("ax", (-2i64) as u64),
            ],
        );
        frame.resize(512, 0);
        frame.extend_from_slice(&o_flags.to_le_bytes());
        // execveat's frame, after it: dfd, filename, argv.
        let at_frame_at = page.checked_add(1024).unwrap();
        let at_frame = pt_regs_bytes(
            &kernel,
            &[("di", (-100i64) as u64), ("si", filename), ("dx", argv)],
        );
        let patched = patched_session(&g, &kernel, &[(frame_at, frame), (at_frame_at, at_frame)]);
        // Twice: with the full profile (recording what tracing looks up), then with only
        // what it looked up, as the profile cache would keep it.
        let mut recording = kernel.clone();
        recording.record_accesses();
        let mut os = LinuxOs::new(recording, false);
        for cached in [false, true] {
            if cached {
                let subset = os.kernel().profile().accessed_subset().unwrap();
                let k = Kernel::new(
                    subset,
                    kernel.virtual_slide(),
                    kernel.space(),
                    kernel.banner().to_owned(),
                );
                os = LinuxOs::new(k, true);
            }
            let t = tracing(&os);

            // The stop: vCPU 0, whatever it runs, but in this process's address space.
            let vcpu = 0;
            let real = patched.registers(vcpu).unwrap();
            let current = PerCpuCurrent::resolve(&kernel)
                .unwrap()
                .current_task(&kmem, vcpu, &real)
                .unwrap()
                .task;
            let layout = TaskLayout::resolve(kernel.profile()).unwrap();
            let tasks = TaskReader::new(kmem, &layout);
            let expect_who = |r: &TraceRecord| {
                assert_eq!(r.vcpu, vcpu);
                assert_eq!(r.pid, tasks.tgid(current).unwrap(), "{}", g.name);
                assert_eq!(r.tid, tasks.pid(current).unwrap(), "{}", g.name);
                assert_eq!(r.name, tasks.comm(current).unwrap(), "{}", g.name);
            };
            let stop = |rdi: u64, rsi: u64, rdx: u64| X86Registers {
                cr3: space.root.raw() | (real.cr3 & 0xfff),
                rdi,
                rsi,
                rdx,
                ..real.clone()
            };

            // exec.
            let exec = t.trace_points(&TraceKind::Exec).unwrap();
            let mut r = t
                .on_entry(
                    &patched,
                    &point(&exec, "__x64_sys_execve"),
                    vcpu,
                    &stop(frame_at.raw(), 0, 0),
                )
                .unwrap_or_else(|e| panic!("{}: execve: {e}", g.name));
            expect_who(&r);
            assert_eq!(r.event, "exec");
            assert_eq!(
                r.filename.as_deref(),
                Some(truth_args[0].as_str()),
                "{}",
                g.name
            );
            assert_eq!(r.argv.as_ref(), Some(&truth_args), "{}", g.name);
            assert_eq!(r.ppid, Some(tasks.ppid(current).unwrap()));
            let ret = X86Registers {
                rax: 0,
                ..real.clone()
            };
            t.on_return(&patched, &point(&exec, "__x64_sys_execve"), &mut r, &ret)
                .unwrap();
            assert_eq!(r.result, Some(0));
            let r = t
                .on_entry(
                    &patched,
                    &point(&exec, "__x64_sys_execveat"),
                    vcpu,
                    &stop(at_frame_at.raw(), 0, 0),
                )
                .unwrap();
            assert_eq!(
                r.filename.as_deref(),
                Some(truth_args[0].as_str()),
                "{}",
                g.name
            );
            assert_eq!(r.argv.as_ref(), Some(&truth_args), "{}", g.name);

            // fork: rdi is the new task (here the known process's).
            let r = t
                .on_entry(
                    &patched,
                    &point(&exec, "wake_up_new_task"),
                    vcpu,
                    &stop(process.task.raw(), 0, 0),
                )
                .unwrap();
            assert_eq!((r.event, r.pid, r.tid), ("fork", pid, pid), "{}", g.name);
            assert_eq!(r.name, process.name);
            assert_eq!(r.ppid, Some(process.ppid));

            // open: path in rsi (a user string), how in rdx.
            let open = t.trace_points(&TraceKind::Open).unwrap();
            let mut r = t
                .on_entry(
                    &patched,
                    &open[0],
                    vcpu,
                    &stop((-100i64) as u64, filename, how_at.raw()),
                )
                .unwrap();
            expect_who(&r);
            assert_eq!(
                r.path.as_deref(),
                Some(truth_args[0].as_str()),
                "{}",
                g.name
            );
            assert_eq!(r.flags, Some(o_flags), "{}", g.name);
            t.on_return(
                &patched,
                &open[0],
                &mut r,
                &X86Registers {
                    rax: (-13i64) as u64,
                    ..real.clone()
                },
            )
            .unwrap();
            assert_eq!(r.result, Some(-13));

            // System calls by name: numbers from sys_call_table.
            let names: Vec<String> = NR.iter().map(|(n, _)| n.to_string()).collect();
            let named = t
                .trace_points(&TraceKind::Syscalls {
                    names: names.clone(),
                })
                .unwrap();
            for (p, (name, nr)) in named.iter().zip(NR) {
                let r = t
                    .on_entry(&patched, p, vcpu, &stop(frame_at.raw(), 0, 0))
                    .unwrap();
                expect_who(&r);
                assert_eq!(r.syscall.as_deref(), Some(name), "{}", g.name);
                assert_eq!(r.nr, Some(nr), "{}: {name}", g.name);
                assert_eq!(r.args.as_deref(), Some(&args[..]), "{}", g.name);
            }

            // Every system call: do_syscall_64(regs, nr); the result from regs->ax at the return.
            let all = t
                .trace_points(&TraceKind::Syscalls { names: vec![] })
                .unwrap();
            for (name, nr) in NR {
                let mut r = t
                    .on_entry(&patched, &all[0], vcpu, &stop(frame_at.raw(), nr, 0))
                    .unwrap();
                assert_eq!(r.syscall.as_deref(), Some(name), "{}: nr {nr}", g.name);
                assert_eq!(r.nr, Some(nr));
                assert_eq!(r.args.as_deref(), Some(&args[..]));
                assert_eq!(r.context, frame_at.raw());
                t.on_return(&patched, &all[0], &mut r, &real).unwrap();
                assert_eq!(r.result, Some(-2), "{}", g.name);
            }
            // A number past the table: no name, no panic.
            let r = t
                .on_entry(&patched, &all[0], vcpu, &stop(frame_at.raw(), 5000, 0))
                .unwrap();
            assert_eq!((r.syscall, r.nr), (None, Some(5000)));
            // The table's end: 6.1 has 451 system calls (0..=450), 6.5 added cachestat.
            let r = t
                .on_entry(&patched, &all[0], vcpu, &stop(frame_at.raw(), 451, 0))
                .unwrap();
            let want = (!g.kernel_release.starts_with("6.1.")).then_some("cachestat");
            assert_eq!(r.syscall.as_deref(), want, "{}: nr 451", g.name);
        }
        // A cached profile from before any tracing lacks what tracing needs: it says so (the
        // CLI then rediscovers) instead of calling a kind or a system call unknown.
        let mut before = kernel.clone();
        before.record_accesses();
        before.symbol("init_task").unwrap();
        let stale = LinuxOs::new(
            Kernel::new(
                before.profile().accessed_subset().unwrap(),
                kernel.virtual_slide(),
                kernel.space(),
                kernel.banner().to_owned(),
            ),
            true,
        );
        for kind in [
            TraceKind::Exec,
            TraceKind::Syscalls {
                names: vec!["getppid".into()],
            },
        ] {
            let err = tracing(&stale).trace_points(&kind).unwrap_err();
            assert!(
                matches!(err, OsError::IncompleteProfile(_)),
                "{}: {kind:?}: {err}",
                g.name
            );
        }
        eprintln!(
            "{}: pid {pid}: execve/execveat argv {:?}, fork, open, {} named and numbered syscalls decode",
            g.name,
            truth_args,
            NR.len()
        );
        checked += 1;
    }
    eprintln!("{checked} guests");
}

vmi_fixtures::real_guest_tests!(
    current_task_is_a_truth_task,
    trace_points_resolve_for_every_kind,
    synthetic_stops_decode_guest_data,
);
