//! Hostile guests that flood kernel lists: real dumps whose task list is extended with a
//! million made-up tasks (each a copy of a real one, so every entry costs `ps` its full work),
//! and whose made-up tasks all share one thread list of a million entries (so the per-process
//! work would multiply the walk). The made-up memory is computed on demand and mapped into the
//! kernel's address space through its own page tables (see `hostile::made_up_kernel_memory`).
//! `ps` must end within seconds, with what it read and a warning saying where it stopped.

mod common;
mod hostile;

use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use common::Guest;
use hostile::{largest_alloc, made_up_kernel_memory, put, MadeUp, Patches};
use vmi_core::{AddressSpace, Session, Va};
use vmi_os_linux::analysis::ps::{processes, Process};
use vmi_os_linux::iter::list::MAX_LIST_TIME;
use vmi_os_linux::LinuxError;

/// Made-up tasks in the flood: the held-out campaign's largest.
const FLOOD: u64 = 1 << 20;
/// Entries of the shared made-up thread list.
const THREADS: u64 = 1 << 20;
/// Pids of made-up tasks start here (above any real pid of the fixtures).
const FAKE_PID0: u32 = 4_000_000;
/// How long a flooded `ps` may take: the walk's time bound, and slack for reading the entry
/// in hand and for a loaded machine.
const WITHIN: Duration = Duration::from_secs(MAX_LIST_TIME.as_secs() + 5);

struct Base {
    guest: Guest,
    open: hostile::OpenGuest,
    procs: Vec<Process>,
}

impl hostile::KernelView for Base {
    fn session(&self) -> &Session {
        &self.open.session
    }

    fn space(&self) -> AddressSpace {
        self.open.kernel.space()
    }
}

impl Base {
    fn off(&self, ty: &str, field: &str) -> u64 {
        self.open.kernel.profile().field_offset(ty, field).unwrap()
    }

    fn size(&self, ty: &str) -> u64 {
        self.open.kernel.profile().struct_size(ty).unwrap()
    }

    /// Whether threads hang off `signal->thread_head` (6.7+) rather than the
    /// `task->thread_group` ring.
    fn signal_threads(&self) -> bool {
        self.open
            .kernel
            .profile()
            .field_offset("signal_struct", "thread_head")
            .is_ok()
    }
}

/// Two guests, each flooded `ps` costing seconds: a 4-level 6.1 guest (threads on the
/// `task->thread_group` ring) and a 5-level 6.12 guest (threads on `signal->thread_head`), or
/// whatever is there when those are not.
fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        let guests: Vec<Guest> = common::guests().into_iter().filter(|g| !g.pti).collect();
        let wanted: [&dyn Fn(&Guest) -> bool; 2] = [
            &|g| g.kernel_release.starts_with("6.1.") && g.paging == 4,
            &|g| !g.kernel_release.starts_with("6.1.") && g.paging == 5,
        ];
        let mut picked: Vec<Guest> = Vec::new();
        for w in wanted {
            if let Some(g) = guests.iter().find(|g| w(g)) {
                picked.push(g.clone());
            }
        }
        if picked.is_empty() {
            picked.extend(guests.into_iter().take(1));
        }
        picked
            .into_iter()
            .map(|guest| {
                let open = hostile::open_guest(&guest);
                let ps = processes(&open.session, &open.kernel).unwrap();
                assert!(ps.warnings.is_empty(), "{}: {:?}", guest.name, ps.warnings);
                Base {
                    guest,
                    open,
                    procs: ps.items,
                }
            })
            .collect()
    })
}

/// Runs `f` on another thread; fails if it panics or does not end within `limit`. Returns its
/// result and how long it took.
fn timed<R: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> (R, Duration) {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    let handle = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(limit) {
        Ok(()) => (
            handle.join().unwrap_or_else(|_| panic!("{what}: panicked")),
            started.elapsed(),
        ),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no end within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// The made-up memory of a flood of `FLOOD` copies of the real task `template`, linked after
/// the last real task and back to the head; with `shared_threads`, every copy's thread list is
/// one made-up list of `THREADS` entries.
struct Flood {
    made_up: MadeUp,
    patches: Patches,
}

fn flood(b: &Base, shared_threads: bool, bare: bool) -> Flood {
    let tasks_off = b.off("task_struct", "tasks");
    let pid_off = b.off("task_struct", "pid");
    let tgid_off = b.off("task_struct", "tgid");
    let task_size = b.size("task_struct");
    let stride = task_size.div_ceil(64) * 64;
    let template_task = b.procs.iter().find(|p| p.pid == 1).unwrap().task;
    let mut template = vec![0u8; task_size as usize];
    b.open
        .kernel
        .memory(&b.open.session)
        .read_exact(template_task, &mut template)
        .unwrap();
    let head = b
        .open
        .kernel
        .symbol("init_task")
        .unwrap()
        .checked_add(tasks_off)
        .unwrap();
    // Layout of the made-up memory: the tasks from 0, then (for the shared thread list) a
    // signal_struct at 16 GiB and the list's nodes from 17 GiB, 64 bytes apart.
    let tasks_bytes = FLOOD * stride;
    assert!(tasks_bytes <= 16 << 30, "task_struct of {task_size} bytes");
    let signal_at: u64 = 16 << 30;
    let nodes_at: u64 = 17 << 30;
    let signal_threads = b.signal_threads();
    let (thread_head_off, signal_off, group_off) = if signal_threads {
        (
            b.off("signal_struct", "thread_head"),
            b.off("task_struct", "signal"),
            0,
        )
    } else {
        (0, 0, b.off("task_struct", "thread_group"))
    };
    // The made-up region's base address is needed inside `fill`: it is known only once mapped,
    // so map a placeholder first to learn the slot, then the real fill.
    let probe = made_up_kernel_memory(b, 18, Arc::new(|_, buf: &mut [u8]| buf.fill(0)));
    let base = probe.va.raw();
    let template: Arc<[u8]> = template.into();
    let fill = move |off: u64, buf: &mut [u8]| {
        buf.fill(0);
        let end = off + buf.len() as u64;
        if off < tasks_bytes {
            let mut k = off / stride;
            while k < FLOOD && k * stride < end {
                let t0 = k * stride;
                // The template's bytes of this copy that fall in `buf` (a bare list_head has
                // nothing but its pointers).
                if !bare {
                    put(buf, off, t0, &template);
                }
                let next = if k + 1 < FLOOD {
                    base + (k + 1) * stride + tasks_off
                } else {
                    head.raw()
                };
                put(buf, off, t0 + tasks_off, &next.to_le_bytes());
                let pid = FAKE_PID0 + k as u32;
                put(buf, off, t0 + pid_off, &pid.to_le_bytes());
                put(buf, off, t0 + tgid_off, &pid.to_le_bytes());
                if shared_threads {
                    if signal_threads {
                        put(buf, off, t0 + signal_off, &(base + signal_at).to_le_bytes());
                    } else {
                        // The thread_group ring of every copy runs into the shared nodes.
                        put(buf, off, t0 + group_off, &(base + nodes_at).to_le_bytes());
                    }
                }
                k += 1;
            }
        }
        if shared_threads {
            // signal->thread_head.next: the first node.
            put(
                buf,
                off,
                signal_at + thread_head_off,
                &(base + nodes_at).to_le_bytes(),
            );
            if end > nodes_at && off < nodes_at + THREADS * 64 {
                let first = off.saturating_sub(nodes_at) / 64;
                let mut j = first;
                while j < THREADS && nodes_at + j * 64 < end {
                    let next = if j + 1 < THREADS {
                        base + nodes_at + (j + 1) * 64
                    } else {
                        // The proper end of a signal list; a ring without its head otherwise
                        // (cut as a cycle after a million entries).
                        base + signal_at + thread_head_off
                    };
                    put(buf, off, nodes_at + j * 64, &next.to_le_bytes());
                    j += 1;
                }
            }
        }
    };
    let made_up = made_up_kernel_memory(b, 18, Arc::new(fill));
    assert_eq!(made_up.va, probe.va);
    // The last real task now leads into the flood.
    let last = b.procs.last().unwrap().task.checked_add(tasks_off).unwrap();
    let mut patches = Patches::default().u64_at(b, last, base + tasks_off);
    patches
        .0
        .insert(made_up.root_patch.0, made_up.root_patch.1.clone());
    Flood { made_up, patches }
}

fn flooded_session(b: &Base, f: &Flood) -> Session {
    hostile::synthetic_session(
        &b.open.memory,
        &b.open.registers,
        &f.patches.0,
        vec![f.made_up.region.clone()],
    )
}

fn warning_text(ws: &[LinuxError]) -> String {
    ws.iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Which bound a flooded walk must end at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bound {
    /// The time bound.
    Time,
    /// Either: a cheap flood reaches the entry bound first, an expensive one (or a loaded
    /// machine) the time bound.
    Any,
}

/// Checks a flooded `ps`: the real processes first and intact, then made-up ones in order
/// (with `listed`, each read as a process), and one warning that the task list walk stopped at
/// a bound.
fn check(
    b: &Base,
    name: &str,
    ps: &vmi_os_linux::Partial<Process>,
    took: Duration,
    bound: Bound,
    listed: bool,
) {
    let n = b.procs.len();
    assert!(took < WITHIN, "{name}: took {took:?}");
    assert_eq!(ps.items[..n], b.procs[..], "{name}: the real processes");
    let fakes = &ps.items[n..];
    if listed {
        assert!(!fakes.is_empty(), "{name}: no made-up task was listed");
        for (k, p) in fakes.iter().enumerate() {
            assert_eq!(p.pid, FAKE_PID0 + k as u32, "{name}: made-up task {k}");
        }
    }
    let stops: Vec<&LinuxError> = ps
        .warnings
        .iter()
        .filter(|w| match w {
            LinuxError::TimedOut { what, .. } => *what == "task list",
            LinuxError::Unbounded { what, .. } => *what == "task list" && bound == Bound::Any,
            _ => false,
        })
        .collect();
    let tail = &ps.warnings[ps.warnings.len().saturating_sub(3)..];
    assert_eq!(stops.len(), 1, "{name}: {}", warning_text(tail));
    let walked = match stops[0] {
        LinuxError::TimedOut { entries, .. } => *entries,
        LinuxError::Unbounded { limit, .. } => *limit,
        _ => unreachable!(),
    };
    assert!(
        walked < n + FLOOD as usize,
        "{name}: the whole flood was walked"
    );
    if listed {
        assert_eq!(walked, ps.items.len() - 1, "{name}: {}", stops[0]);
    }
    eprintln!(
        "{name}: {} made-up tasks listed in {took:?}, {} warnings; {}",
        fakes.len(),
        ps.warnings.len(),
        stops[0]
    );
}

fn a_task_list_flooded_with_a_million_tasks_ends_within_seconds_at_a_bound() {
    for (i, b) in bases().iter().enumerate() {
        let name = format!("{}: {FLOOD} made-up tasks", b.guest.name);
        let ((ps, took), _) = timed(&name, WITHIN * 2, move || {
            let b = &bases()[i];
            let f = flood(b, false, false);
            let s = flooded_session(b, &f);
            let started = Instant::now();
            let ps = processes(&s, &b.open.kernel).unwrap();
            (ps, started.elapsed())
        });
        check(b, &name, &ps, took, Bound::Any, true);
    }
}

fn a_task_list_flooded_with_a_million_bare_list_heads_ends_at_a_bound() {
    for (i, b) in bases().iter().enumerate() {
        let name = format!("{}: {FLOOD} bare list_heads", b.guest.name);
        let ((ps, took), _) = timed(&name, WITHIN * 2, move || {
            let b = &bases()[i];
            let f = flood(b, false, true);
            let s = flooded_session(b, &f);
            let started = Instant::now();
            let (ps, largest) = largest_alloc(|| processes(&s, &b.open.kernel).unwrap());
            eprintln!(
                "{}: bare flood: largest allocation {largest} bytes ({} warnings of {} bytes)",
                b.guest.name,
                ps.warnings.len(),
                std::mem::size_of::<LinuxError>()
            );
            (ps, started.elapsed())
        });
        // Nothing of them reads as a task: each is skipped with a warning.
        check(b, &name, &ps, took, Bound::Any, false);
        assert_eq!(ps.items.len(), b.procs.len(), "{name}");
    }
}

fn made_up_tasks_sharing_a_flooded_thread_list_end_at_the_outer_bound() {
    for (i, b) in bases().iter().enumerate() {
        let name = format!(
            "{}: {FLOOD} made-up tasks sharing a {THREADS}-entry thread list",
            b.guest.name
        );
        let ((ps, took), _) = timed(&name, WITHIN * 2, move || {
            let b = &bases()[i];
            let f = flood(b, true, false);
            let s = flooded_session(b, &f);
            let started = Instant::now();
            let ps = processes(&s, &b.open.kernel).unwrap();
            (ps, started.elapsed())
        });
        check(b, &name, &ps, took, Bound::Time, true);
        // The per-process thread walks were cut by the task list's deadline, not each by its
        // own: a few made-up processes at most, each with a partial thread count.
        let fakes = &ps.items[bases()[i].procs.len()..];
        assert!(
            fakes.iter().all(|p| u64::from(p.threads) <= THREADS),
            "{name}"
        );
    }
}

/// The made-up memory itself: translated through the kernel's patched page tables, and read
/// back as the fill function made it.
fn made_up_memory_reads_back() {
    for b in bases() {
        let f = flood(b, true, false);
        let s = flooded_session(b, &f);
        let mem = b.open.kernel.memory(&s);
        let tasks_off = b.off("task_struct", "tasks");
        let stride = b.size("task_struct").div_ceil(64) * 64;
        let base = f.made_up.va;
        let at = |k: u64| Va::new(base.raw() + k * stride + tasks_off);
        assert_eq!(mem.read_va(at(0)).unwrap(), at(1));
        assert_eq!(mem.read_va(at(FLOOD / 2)).unwrap(), at(FLOOD / 2 + 1));
        let head = b
            .open
            .kernel
            .symbol("init_task")
            .unwrap()
            .checked_add(tasks_off)
            .unwrap();
        assert_eq!(mem.read_va(at(FLOOD - 1)).unwrap(), head);
        let last = b.procs.last().unwrap().task.checked_add(tasks_off).unwrap();
        assert_eq!(mem.read_va(last).unwrap(), at(0));
    }
}

vmi_fixtures::real_guest_tests!(
    a_task_list_flooded_with_a_million_tasks_ends_within_seconds_at_a_bound,
    a_task_list_flooded_with_a_million_bare_list_heads_ends_at_a_bound,
    made_up_tasks_sharing_a_flooded_thread_list_end_at_the_outer_bound,
    made_up_memory_reads_back,
);
