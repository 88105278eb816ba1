//! Hostile guests: real dumps with task lists, strings and lengths patched in memory (an
//! overlay over the dump's physical memory; no file is written). Each analysis must end, without
//! a panic, with what could be read plus a warning, or with a clear error, and must not size an
//! allocation by guest data.

mod common;
mod hostile;

use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use common::Guest;
use hostile::{largest_alloc, Patches};
use vmi_core::{PageSize, PhysicalMemory, Session, Va};
use vmi_core::{VcpuRegisters, VirtualMemory};
use vmi_os_linux::analysis::process_memory::{cmdline, environ, read_process};
use vmi_os_linux::analysis::ps::{find_process, processes, threads, Process};
use vmi_os_linux::iter::list::{ListOffsets, ListWalker};
use vmi_os_linux::{Kernel, LinuxError};

/// A real guest, discovered once, and what it lists when intact.
struct Base {
    guest: Guest,
    memory: Arc<dyn PhysicalMemory>,
    registers: Option<Arc<dyn VcpuRegisters>>,
    session: Session,
    kernel: Kernel,
    procs: Vec<Process>,
}

impl Base {
    fn mem(&self) -> VirtualMemory<'_> {
        self.kernel.memory(&self.session)
    }

    fn off(&self, ty: &str, field: &str) -> u64 {
        self.kernel.profile().field_offset(ty, field).unwrap()
    }

    fn process(&self, pid: u32) -> &Process {
        self.procs.iter().find(|p| p.pid == pid).unwrap()
    }

    /// The session of this guest with `patches` applied.
    fn patched(&self, patches: &Patches) -> Session {
        hostile::patched_session(&self.memory, &self.registers, &patches.0)
    }

    /// A kernel virtual address that is a plausible pointer but is not mapped.
    fn unmapped_kernel_address(&self) -> Va {
        let from = self.procs[1].task.align_down(PageSize::Size1G);
        (1..4096u64)
            .map(|i| from.checked_add(i << 30).unwrap())
            .find(|&va| self.session.translate(self.kernel.space(), va).is_err())
            .expect("an unmapped kernel address")
    }
}

impl hostile::KernelView for Base {
    fn session(&self) -> &Session {
        &self.session
    }

    fn space(&self) -> vmi_core::AddressSpace {
        self.kernel.space()
    }
}

impl Patches {
    fn field(self, base: &Base, obj: Va, ty: &str, field: &str, value: u64) -> Self {
        let va = obj.checked_add(base.off(ty, field)).unwrap();
        self.u64_at(base, va, value)
    }
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        common::guests()
            .into_iter()
            .map(|guest| {
                let hostile::OpenGuest {
                    memory,
                    registers,
                    session,
                    kernel,
                } = hostile::open_guest(&guest);
                let ps = processes(&session, &kernel).unwrap();
                assert!(ps.warnings.is_empty(), "{}: {:?}", guest.name, ps.warnings);
                Base {
                    guest,
                    memory,
                    registers,
                    session,
                    kernel,
                    procs: ps.items,
                }
            })
            .collect()
    })
}

/// Runs `f` on another thread and fails if it does not end within `limit` (a hang) or panics.
fn bounded<R: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(limit) {
        Ok(()) => handle.join().unwrap_or_else(|_| panic!("{what}: panicked")),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no end within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

const LIMIT: Duration = Duration::from_secs(60);

fn pids(ps: &[Process]) -> Vec<u32> {
    ps.iter().map(|p| p.pid).collect()
}

fn warning_text(ws: &[LinuxError]) -> String {
    ws.iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------

fn task_list_cycle_is_cut() {
    for (i, b) in bases().iter().enumerate() {
        let tasks = b.off("task_struct", "tasks");
        let n = b.procs.len();
        // The 11th task's next goes back to the 6th; and separately, a task's next to itself.
        for (from, to) in [(10, 5), (n / 2, n / 2), (n - 1, 1)] {
            let entry = |k: usize| b.procs[k].task.checked_add(tasks).unwrap();
            let patches = Patches::default().u64_at(b, entry(from), entry(to).raw());
            let name = format!("{}: cycle {from} -> {to}", b.guest.name);
            let ps = bounded(&name, LIMIT, move || {
                let b = &bases()[i];
                let s = b.patched(&patches);
                processes(&s, &b.kernel).unwrap()
            });
            assert_eq!(pids(&ps.items), pids(&b.procs[..=from]), "{name}");
            assert_eq!(
                ps.warnings.len(),
                1,
                "{name}: {}",
                warning_text(&ps.warnings)
            );
            let w = ps.warnings[0].to_string();
            eprintln!("{name}: {w}");
            assert!(
                w.contains("task list") && w.contains("cycle"),
                "{name}: {w}"
            );
        }
    }
}

fn task_list_into_unmapped_memory() {
    for (i, b) in bases().iter().enumerate() {
        let tasks = b.off("task_struct", "tasks");
        let bad = b.unmapped_kernel_address();
        for (k, value, expect) in [
            (7, bad.raw(), "cannot be read"),
            (8, 0, "not an aligned kernel address"),
            (9, 0xdead_0000_0000_0100, "not an aligned kernel address"), // LIST_POISON1
            (3, 0x40_0000, "not an aligned kernel address"),
            (
                4,
                b.procs[5].task.raw() + tasks + 4,
                "not an aligned kernel address",
            ), // misaligned
        ] {
            let entry = b.procs[k].task.checked_add(tasks).unwrap();
            let patches = Patches::default().u64_at(b, entry, value);
            let name = format!("{}: next of task {k} = {value:#x}", b.guest.name);
            let ps = bounded(&name, LIMIT, move || {
                let b = &bases()[i];
                processes(&b.patched(&patches), &b.kernel).unwrap()
            });
            // The tasks up to the damaged one are listed. An unmapped entry is still produced
            // by the list walk (its address looks right) but its task cannot be read: a second
            // warning.
            assert_eq!(pids(&ps.items), pids(&b.procs[..=k]), "{name}");
            let text = warning_text(&ps.warnings);
            eprintln!("{name}: {text}");
            assert!(text.contains(expect), "{name}: {text}");
            assert!(ps.warnings.len() <= 2, "{name}: {text}");
        }
    }
}

fn garbage_comm_is_bounded_and_lossy() {
    for (i, b) in bases().iter().enumerate() {
        let comm = b.off("task_struct", "comm");
        let init = b.process(1).task.checked_add(comm).unwrap();
        let kthreadd = b.process(2).task.checked_add(comm).unwrap();
        // No NUL at all, and the bytes after comm made printable too: only 16 bytes are read.
        let patches = Patches::default()
            .at(b, init, &[0xff; 16])
            .at(b, kthreadd, &[b'A'; 32]);
        let ps = bounded("comm", LIMIT, move || {
            let b = &bases()[i];
            processes(&b.patched(&patches), &b.kernel).unwrap()
        });
        assert!(ps.warnings.is_empty(), "{}", warning_text(&ps.warnings));
        let by = |pid| ps.items.iter().find(|p| p.pid == pid).unwrap();
        assert_eq!(by(1).name, "\u{fffd}".repeat(16), "{}", b.guest.name);
        assert_eq!(by(2).name, "A".repeat(16), "{}", b.guest.name);
        assert_eq!(ps.items.len(), b.procs.len());
    }
}

fn absurd_argument_areas_are_refused_without_allocating() {
    for (i, b) in bases().iter().enumerate() {
        let target = b.guest.targets()[0].pid;
        let mm = b.process(target).mm.unwrap();
        let arg_start = b
            .mem()
            .read_u64(mm.checked_add(b.off("mm_struct", "arg_start")).unwrap())
            .unwrap();
        let env_start = b
            .mem()
            .read_u64(mm.checked_add(b.off("mm_struct", "env_start")).unwrap())
            .unwrap();
        let cases = [
            ("arg_end", arg_start + (1 << 30), "more than"),
            ("arg_end", arg_start - 1, "precedes"),
            ("arg_end", u64::MAX, "more than"),
            ("env_end", env_start + (1 << 30), "more than"),
        ];
        for (field, value, expect) in cases {
            let patches = Patches::default().field(b, mm, "mm_struct", field, value);
            let name = format!("{}: {field} = {value:#x}", b.guest.name);
            let (result, largest) = bounded(&name, LIMIT, move || {
                let b = &bases()[i];
                let s = b.patched(&patches);
                largest_alloc(|| {
                    if field == "arg_end" {
                        cmdline(&s, &b.kernel, target).map(|_| ())
                    } else {
                        environ(&s, &b.kernel, target).map(|_| ())
                    }
                })
            });
            let e = result.expect_err(&name).to_string();
            eprintln!("{name}: {e}");
            assert!(e.contains(expect) && e.contains("mm_struct"), "{name}: {e}");
            assert!(largest < 1 << 20, "{name}: allocated {largest} bytes");
        }

        // Just under the bound but mostly unmapped: read up to the hole, allocation bounded by
        // the 6 MiB cap.
        let patches = Patches::default()
            .field(b, mm, "mm_struct", "arg_start", 0x1000)
            .field(b, mm, "mm_struct", "arg_end", 0x1000 + (6 << 20));
        let (result, largest) = bounded("unmapped args", LIMIT, move || {
            let b = &bases()[i];
            let s = b.patched(&patches);
            largest_alloc(|| cmdline(&s, &b.kernel, target))
        });
        assert!(
            result.is_err(),
            "page 0x1000 is not mapped in a static binary"
        );
        assert!(largest <= 6 << 20, "allocated {largest}");
    }
}

fn damaged_task_fields() {
    for (i, b) in bases().iter().enumerate() {
        let bad = b.unmapped_kernel_address();
        let t = b.guest.targets();
        let (victim, other) = (b.process(t[0].pid), b.process(t[1].pid));
        let n = b.procs.len();

        // A task whose parent, credentials or pid cannot be read is skipped with a warning.
        for (field, value) in [
            ("real_parent", 0),
            ("real_parent", bad.raw()),
            ("real_cred", 0x7fff_0000_0000),
            ("real_cred", bad.raw()),
        ] {
            let patches = Patches::default().field(b, victim.task, "task_struct", field, value);
            let name = format!("{}: {field} = {value:#x}", b.guest.name);
            let ps = bounded(&name, LIMIT, move || {
                let b = &bases()[i];
                processes(&b.patched(&patches), &b.kernel).unwrap()
            });
            assert_eq!(ps.items.len(), n - 1, "{name}");
            assert!(!ps.items.iter().any(|p| p.pid == victim.pid), "{name}");
            assert_eq!(
                ps.warnings.len(),
                1,
                "{name}: {}",
                warning_text(&ps.warnings)
            );
        }

        // A damaged page-table root: listed without a dtb, with a warning; its memory cannot
        // be read.
        let patches = Patches::default().field(b, victim.mm.unwrap(), "mm_struct", "pgd", 0x1234);
        let pid = victim.pid;
        let (ps, cmd) = bounded("pgd", LIMIT, move || {
            let b = &bases()[i];
            let s = b.patched(&patches);
            (
                processes(&s, &b.kernel).unwrap(),
                cmdline(&s, &b.kernel, pid),
            )
        });
        let p = ps.items.iter().find(|p| p.pid == victim.pid).unwrap();
        assert_eq!(p.dtb, None);
        assert_eq!(ps.warnings.len(), 1, "{}", warning_text(&ps.warnings));
        assert!(ps.warnings[0].to_string().contains("pgd"));
        assert!(cmd.is_err());

        // A thread list that loops without passing its head: counted up to the loop.
        let node = b.off("task_struct", "thread_node");
        let ths = threads(&b.session, &b.kernel, other.pid).unwrap().items;
        assert!(ths.len() >= 3, "the target with threads");
        let last = ths[ths.len() - 1].task.checked_add(node).unwrap();
        let first = ths[0].task.checked_add(node).unwrap();
        let patches = Patches::default().u64_at(b, last, first.raw());
        let pid = other.pid;
        let (ps, th) = bounded("thread cycle", LIMIT, move || {
            let b = &bases()[i];
            let s = b.patched(&patches);
            (
                processes(&s, &b.kernel).unwrap(),
                threads(&s, &b.kernel, pid).unwrap(),
            )
        });
        let p = ps.items.iter().find(|p| p.pid == other.pid).unwrap();
        assert_eq!(p.threads as usize, ths.len());
        assert_eq!(ps.warnings.len(), 1, "{}", warning_text(&ps.warnings));
        assert!(ps.warnings[0].to_string().contains("thread list"));
        assert_eq!(th.items.len(), ths.len());
        assert_eq!(th.warnings.len(), 1);
    }
}

fn list_bound_is_enforced() {
    for b in bases() {
        let list = ListOffsets::resolve(b.kernel.profile()).unwrap();
        let head = b
            .kernel
            .symbol("init_task")
            .unwrap()
            .checked_add(b.off("task_struct", "tasks"))
            .unwrap();
        let mut w = ListWalker::new(b.mem(), list, head, "task list").with_limit(5);
        assert_eq!(w.by_ref().count(), 5);
        let e = w.into_warning().unwrap();
        assert!(matches!(e, LinuxError::Unbounded { limit: 5, .. }), "{e}");
        let mut w = ListWalker::new(b.mem(), list, head, "task list");
        assert_eq!(w.by_ref().count(), b.procs.len() - 1);
        assert!(w.into_warning().is_none());
    }
}

/// Every pointer and number of a task replaced by hostile values, one at a time: each
/// analysis ends, quickly and without a panic.
fn hostile_values_never_panic_or_hang() {
    for (i, b) in bases().iter().enumerate() {
        hostile_matrix(i, b);
    }
}

fn hostile_matrix(i: usize, b: &'static Base) {
    let bad = b.unmapped_kernel_address();
    let t = b.guest.targets()[1].pid;
    let victim = b.process(t);
    let mut fields: Vec<(&str, Va, &str)> = [
        "tasks",
        "real_parent",
        "real_cred",
        "mm",
        "signal",
        "pid",
        "tgid",
        "flags",
        "start_time",
        "comm",
        "thread_node",
    ]
    .into_iter()
    .map(|f| (f, victim.task, "task_struct"))
    .collect();
    for f in ["pgd", "arg_start", "arg_end", "env_start", "env_end"] {
        fields.push((f, victim.mm.unwrap(), "mm_struct"));
    }
    let values = [
        0,
        u64::MAX,
        !7, // the last aligned address
        0xdead_0000_0000_0100,
        0x40_0000,
        bad.raw(),
        victim.task.raw(),
        victim.task.raw() + 1,
        b.procs[1].task.raw(),
    ];
    let started = Instant::now();
    for (field, obj, ty) in fields {
        for value in values {
            let patches = Patches::default().field(b, obj, ty, field, value);
            let name = format!("{ty}.{field} = {value:#x}");
            bounded(&name, LIMIT, move || {
                let b = &bases()[i];
                let s = b.patched(&patches);
                let ps = processes(&s, &b.kernel).unwrap();
                let neutral: Vec<vmi_core::os::Process> =
                    ps.items.iter().cloned().map(Into::into).collect();
                let _ = vmi_core::os::process_tree(&neutral);
                let _ = find_process(&s, &b.kernel, t);
                let _ = threads(&s, &b.kernel, t);
                let _ = cmdline(&s, &b.kernel, t);
                let _ = environ(&s, &b.kernel, t);
                let _ = read_process(&s, &b.kernel, t, Va::new(0x40_0000), &mut [0u8; 64]);
            });
        }
    }
    eprintln!(
        "{}: hostile matrix in {:?}",
        b.guest.name,
        started.elapsed()
    );
}

vmi_fixtures::real_guest_tests!(
    task_list_cycle_is_cut,
    task_list_into_unmapped_memory,
    garbage_comm_is_bounded_and_lossy,
    absurd_argument_areas_are_refused_without_allocating,
    damaged_task_fields,
    list_bound_is_enforced,
    hostile_values_never_panic_or_hang,
);
