//! Hostile descriptor tables: real dumps whose `fdtable` or dentries are patched in memory (an
//! overlay; no file is written). `open_files` must end, without a panic, with what could be
//! read plus warnings, keep the other processes' descriptors intact, and size no allocation
//! by guest data.

mod common;
mod hostile;

use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use hostile::{largest_alloc, made_up_kernel_memory, Patches};
use vmi_core::{PageSize, PhysicalMemory, Session, Va, VcpuRegisters, VirtualMemory};
use vmi_os_linux::analysis::lsof::{open_files, FdEntry, MAX_OPEN_FILES};
use vmi_os_linux::analysis::ps::processes;
use vmi_os_linux::comps::fdtable::{task_files, FdTableOffsets, MAX_FDS};
use vmi_os_linux::{Kernel, LinuxError, Partial};

/// A real guest, discovered once, with its fds target (epsilon) as it is intact.
struct Base {
    name: String,
    memory: Arc<dyn PhysicalMemory>,
    registers: Option<Arc<dyn VcpuRegisters>>,
    session: Session,
    kernel: Kernel,
    /// Epsilon's pid.
    pid: u32,
    /// Its `fdtable`.
    fdt: Va,
    /// Its descriptors.
    fds: Vec<FdEntry>,
    /// Every process's descriptors.
    all: Vec<FdEntry>,
    /// The largest single allocation of an intact `open_files(None)`.
    intact_alloc: usize,
}

impl Base {
    fn mem(&self) -> VirtualMemory<'_> {
        self.kernel.memory(&self.session)
    }

    fn off(&self, ty: &str, field: &str) -> u64 {
        self.kernel.profile().field_offset(ty, field).unwrap()
    }

    /// A field of epsilon's `fdtable`.
    fn fdt_field(&self, field: &str) -> Va {
        self.fdt.checked_add(self.off("fdtable", field)).unwrap()
    }

    /// The dentry of the `struct file` of epsilon's descriptor whose path starts with `prefix`.
    fn dentry_of(&self, prefix: &str) -> (u32, Va) {
        let e = self
            .fds
            .iter()
            .find(|e| e.state.path.starts_with(prefix))
            .unwrap_or_else(|| panic!("{}: no fd {prefix}", self.name));
        let at = e
            .file
            .checked_add(self.off("file", "f_path") + self.off("path", "dentry"))
            .unwrap();
        (e.fd, self.mem().read_va(at).unwrap())
    }

    /// A kernel virtual address that is a plausible pointer but is not mapped.
    fn unmapped_kernel_address(&self) -> Va {
        let from = self.fdt.align_down(PageSize::Size1G);
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
                let pid: u32 = guest.truth("fds-target").trim().parse().unwrap();
                let ps = processes(&session, &kernel).unwrap();
                let task = ps.items.iter().find(|p| p.pid == pid).unwrap().task;
                let mem = kernel.memory(&session);
                let offsets = FdTableOffsets::resolve(kernel.profile()).unwrap();
                let files = task_files(&mem, &offsets, task).unwrap().unwrap();
                let fdt_at = files
                    .checked_add(
                        kernel
                            .profile()
                            .field_offset("files_struct", "fdt")
                            .unwrap(),
                    )
                    .unwrap();
                let fdt = mem.read_va(fdt_at).unwrap();
                let (all, intact_alloc) = largest_alloc(|| open_files(&session, &kernel, None));
                let all = all.unwrap();
                assert!(
                    all.warnings.is_empty(),
                    "{}: {:?}",
                    guest.name,
                    all.warnings
                );
                let fds: Vec<FdEntry> =
                    all.items.iter().filter(|e| e.pid == pid).cloned().collect();
                assert!(fds.len() >= 20, "{}: {} fds", guest.name, fds.len());
                Base {
                    name: guest.name.clone(),
                    memory,
                    registers,
                    session,
                    kernel,
                    pid,
                    fdt,
                    fds,
                    all: all.items,
                    intact_alloc,
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

/// The largest allocation a patched run may make: what an intact run makes, plus slack for
/// warnings and the (bounded) vectors that grow with what was read.
const ALLOC_SLACK: usize = 1 << 20;

fn warning_text(ws: &[LinuxError]) -> String {
    ws.iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `open_files(None)` on base `i` patched with `patches`, bounded in time, with its largest
/// allocation.
fn run_patched(
    i: usize,
    name: &str,
    patches: Patches,
    extra: Vec<hostile::Synthetic>,
) -> (Result<Partial<FdEntry>, LinuxError>, usize, Duration) {
    bounded(name, LIMIT, move || {
        let b = &bases()[i];
        let s = hostile::synthetic_session(&b.memory, &b.registers, &patches.0, extra);
        let started = Instant::now();
        let (r, largest) = largest_alloc(|| open_files(&s, &b.kernel, None));
        (r, largest, started.elapsed())
    })
}

/// The descriptors of processes other than epsilon are those of the intact guest.
fn others_intact(b: &Base, got: &[FdEntry], name: &str) {
    let others =
        |v: &[FdEntry]| -> Vec<FdEntry> { v.iter().filter(|e| e.pid != b.pid).cloned().collect() };
    assert_eq!(
        others(got),
        others(&b.all),
        "{name}: other processes changed"
    );
}

fn of_target<'a>(b: &Base, got: &'a [FdEntry]) -> Vec<&'a FdEntry> {
    got.iter().filter(|e| e.pid == b.pid).collect()
}

// ---------------------------------------------------------------------------------------------

fn absurd_max_fds_is_capped() {
    for (i, b) in bases().iter().enumerate() {
        for max_fds in [1u32 << 31, u32::MAX] {
            let patches = Patches::default().at(b, b.fdt_field("max_fds"), &max_fds.to_le_bytes());
            let name = format!("{}: max_fds = {max_fds:#x}", b.name);
            let (r, largest, took) = run_patched(i, &name, patches, Vec::new());
            let got = r.unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = warning_text(&got.warnings);
            eprintln!("{name}: {took:?}, largest allocation {largest}: {text}");
            assert!(
                text.contains(&format!("max_fds {max_fds} is above the bound {MAX_FDS}")),
                "{name}: {text}"
            );
            // The real descriptors come first, unchanged; what the slots past the real table
            // hold (the neighbouring slab objects) may add made-up ones after them.
            let ours = of_target(b, &got.items);
            assert!(ours.len() >= b.fds.len(), "{name}");
            for (o, want) in ours.iter().zip(&b.fds) {
                assert_eq!(*o, want, "{name}");
            }
            others_intact(b, &got.items, &name);
            assert!(
                largest <= b.intact_alloc + ALLOC_SLACK,
                "{name}: allocated {largest}"
            );
        }
    }
}

fn fd_array_into_unmapped_or_non_kernel_memory() {
    for (i, b) in bases().iter().enumerate() {
        let unmapped = b.unmapped_kernel_address();
        for (field, value, expect) in [
            ("fd", unmapped.raw(), "cannot be read, the walk stops"),
            ("fd", 0x1000, "fd 0x1000 is not an aligned kernel address"),
            ("fd", b.fdt.raw() + 3, "is not an aligned kernel address"),
            ("open_fds", unmapped.raw(), "cannot be read, the walk stops"),
            (
                "close_on_exec",
                0,
                "close_on_exec 0x0 is not an aligned kernel address",
            ),
        ] {
            let patches = Patches::default().u64_at(b, b.fdt_field(field), value);
            let name = format!("{}: {field} = {value:#x}", b.name);
            let (r, largest, took) = run_patched(i, &name, patches, Vec::new());
            let got = r.unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = warning_text(&got.warnings);
            eprintln!("{name}: {took:?}: {text}");
            assert_eq!(got.warnings.len(), 1, "{name}: {text}");
            assert!(
                text.contains(expect) && text.contains("fdtable"),
                "{name}: {text}"
            );
            assert!(of_target(b, &got.items).is_empty(), "{name}");
            others_intact(b, &got.items, &name);
            assert!(
                largest <= b.intact_alloc + ALLOC_SLACK,
                "{name}: allocated {largest}"
            );
        }
        // A NULL slot pointer is an empty table, not an error... only when max_fds is 0.
        let patches = Patches::default().at(b, b.fdt_field("max_fds"), &0u32.to_le_bytes());
        let (r, _, _) = run_patched(i, "max_fds = 0", patches, Vec::new());
        let got = r.unwrap();
        assert!(got.warnings.is_empty() && of_target(b, &got.items).is_empty());
    }
}

fn slots_holding_garbage_are_skipped_then_cut() {
    for (i, b) in bases().iter().enumerate() {
        // Slots 0..=19 hold non-kernel values: each is a warning, and the walk stops at the
        // bad-slot bound (16), before the real descriptors 16..=24.
        let fd_array = b.mem().read_va(b.fdt_field("fd")).unwrap();
        let garbage: Vec<u8> = (0..20u64)
            .flat_map(|k| (0x4141_0000 + k).to_le_bytes())
            .collect();
        let patches = Patches::default().at(b, fd_array, &garbage);
        let name = format!("{}: garbage slots", b.name);
        let (r, _, _) = run_patched(i, &name, patches, Vec::new());
        let got = r.unwrap();
        let text = warning_text(&got.warnings);
        assert_eq!(got.warnings.len(), 17, "{name}: {text}");
        assert!(
            text.contains("16 bad descriptors: the walk stops at 15"),
            "{name}: {text}"
        );
        assert!(of_target(b, &got.items).is_empty(), "{name}");
        others_intact(b, &got.items, &name);

        // A slot whose file is unreadable skips that descriptor only.
        let unmapped = b.unmapped_kernel_address();
        let at = fd_array.checked_add(3 * 8).unwrap();
        let patches = Patches::default().u64_at(b, at, unmapped.raw());
        let (r, _, _) = run_patched(i, "unreadable file", patches, Vec::new());
        let got = r.unwrap();
        let text = warning_text(&got.warnings);
        assert_eq!(got.warnings.len(), 1, "{name}: {text}");
        assert!(text.contains("fd 3"), "{text}");
        let want: Vec<&FdEntry> = b.fds.iter().filter(|e| e.fd != 3).collect();
        assert_eq!(of_target(b, &got.items), want, "{name}");

        // A file hidden from open_fds is listed, and said to be.
        let open_map = b.mem().read_va(b.fdt_field("open_fds")).unwrap();
        let word = b.mem().read_u64(open_map).unwrap();
        let patches = Patches::default().u64_at(b, open_map, word & !(1 << 5));
        let (r, _, _) = run_patched(i, "hidden fd", patches, Vec::new());
        let got = r.unwrap();
        let text = warning_text(&got.warnings);
        assert!(
            text.contains("not marked open in open_fds")
                && text.contains("allocator?): 5 (1 in all)"),
            "{text}"
        );
        assert_eq!(of_target(b, &got.items).len(), b.fds.len());
    }
}

fn dentry_parent_cycle_is_bounded() {
    for (i, b) in bases().iter().enumerate() {
        let (fd_a, a) = b.dentry_of("/tmp/vmi-fds-");
        let (fd_b, d) = b.dentry_of("/tmp/vmi-append-");
        let d_parent = b.off("dentry", "d_parent");
        // a -> d -> a -> ...: neither reaches its mount's root.
        let patches = Patches::default()
            .u64_at(b, a.checked_add(d_parent).unwrap(), d.raw())
            .u64_at(b, d.checked_add(d_parent).unwrap(), a.raw());
        let name = format!("{}: d_parent cycle", b.name);
        let (r, largest, took) = run_patched(i, &name, patches, Vec::new());
        let got = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = warning_text(&got.warnings);
        eprintln!("{name}: {took:?}: {text}");
        assert_eq!(got.warnings.len(), 2, "{name}: {text}");
        for fd in [fd_a, fd_b] {
            assert!(
                text.contains(&format!("fd {fd}: path of a dentry")),
                "{name}: {text}"
            );
        }
        assert!(text.contains("no end after 4096"), "{name}: {text}");
        let want: Vec<&FdEntry> = b
            .fds
            .iter()
            .filter(|e| e.fd != fd_a && e.fd != fd_b)
            .collect();
        assert_eq!(of_target(b, &got.items), want, "{name}");
        others_intact(b, &got.items, &name);
        assert!(
            largest <= b.intact_alloc + ALLOC_SLACK,
            "{name}: allocated {largest}"
        );
    }
}

fn flooded_table_is_bounded() {
    for (i, b) in bases().iter().enumerate() {
        // A table of 2^31 slots in made-up memory, every one the same real file (and every
        // bitmap word that pointer's bits): capped at MAX_FDS slots, the run at
        // MAX_OPEN_FILES descriptors.
        let file = b.fds[3].file.raw();
        let made_up = made_up_kernel_memory(
            b,
            1,
            Arc::new(move |off, buf| {
                for (k, byte) in buf.iter_mut().enumerate() {
                    *byte = file.to_le_bytes()[((off + k as u64) % 8) as usize];
                }
            }),
        );
        let va = made_up.va.raw();
        let patches = Patches::default()
            .u64_at(b, b.fdt_field("fd"), va)
            .u64_at(b, b.fdt_field("open_fds"), va)
            .u64_at(b, b.fdt_field("close_on_exec"), va)
            .at(b, b.fdt_field("max_fds"), &(1u32 << 31).to_le_bytes());
        let mut patches = patches;
        patches.0.insert(made_up.root_patch.0, made_up.root_patch.1);
        let name = format!("{}: flooded fd table", b.name);
        let (r, largest, took) = run_patched(i, &name, patches, vec![made_up.region]);
        let got = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = warning_text(&got.warnings);
        eprintln!(
            "{name}: {} fds in {took:?}, largest allocation {largest}: {text}",
            got.items.len()
        );
        assert_eq!(got.items.len(), MAX_OPEN_FILES, "{name}");
        assert!(
            text.contains("open files of all processes"),
            "{name}: {text}"
        );
        assert!(text.contains("max_fds 2147483648"), "{name}: {text}");
        assert!(got.warnings.len() <= 3, "{name}: {text}");
        assert!(
            of_target(b, &got.items)
                .iter()
                .all(|e| e.state == b.fds[3].state),
            "{name}"
        );
        // The result's own vector is the largest allocation: MAX_OPEN_FILES entries.
        let entry = std::mem::size_of::<FdEntry>();
        assert!(
            largest <= 2 * MAX_OPEN_FILES * entry,
            "{name}: allocated {largest}"
        );
    }
}

vmi_fixtures::real_guest_tests!(
    absurd_max_fds_is_capped,
    fd_array_into_unmapped_or_non_kernel_memory,
    slots_holding_garbage_are_skipped_then_cut,
    dentry_parent_cycle_is_bounded,
    flooded_table_is_bounded,
);
