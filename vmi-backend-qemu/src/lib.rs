//! Live QEMU/KVM guests with no patches: guest RAM from a shared memory file or the QEMU
//! process, vCPU registers and pause/resume through QEMU's gdbstub, all found from a QMP
//! socket.
//!
//! The target spec is `qemu:QMP_SOCKET`, a QMP Unix socket (`-qmp unix:PATH,server=on,wait=off`).
//! Opening it ([`Qemu::open`]):
//!
//! 1. **QMP** ([`qmp`]): greeting checked (a socket that is not QMP is a clear error within
//!    3 s), `qmp_capabilities`; QEMU's pid from the socket's peer credentials (`SO_PEERCRED`).
//! 2. **RAM layout** ([`layout`]): HMP `info mtree -f`, the FlatView of `system`, parsed
//!    generically: the RAM blocks are the memdev ids of `query-memdev` when there are any
//!    (`ram0`), else `pc.ram`, else the largest RAM region; every `ram`/`rom` range of those
//!    blocks becomes a guest-physical segment with its block offset (RAM above the PCI hole
//!    maps to another offset and is handled the same way). Block sizes come from HMP
//!    `info ramblock`.
//! 3. **Memory** ([`memory`]), chosen per block: a `memory-backend-file` with `share=on` whose
//!    `mem-path` (QOM) is a regular file is mapped here as well (zero-copy, shared-file
//!    path); otherwise the block is found in `/proc/PID/maps` (a read-write mapping of the
//!    block's size; `info ramblock` gives no host addresses) and read through
//!    `/proc/PID/mem`, which needs ptrace rights over QEMU (root, or the same user with
//!    `kernel.yama.ptrace_scope` 0). Each candidate mapping is checked against HMP `xp`
//!    samples before it is used. Both paths copy into the caller's buffer; the mapped path
//!    does so through vmi-core's volatile copy ([`vmi_core::memory::copy_from_live`]), the
//!    one audited place where live guest RAM is read (the Xen backend uses it too), since the
//!    guest may write the file during the copy.
//! 4. **vCPUs and control** ([`gdb`]): the gdbstub (`info chardev` names it; if there is none,
//!    HMP `gdbserver unix:DIR/qemu-PID.sock,server=on,wait=off` starts one). QEMU allows one
//!    per process and it listens until QEMU exits, so later runs find and reuse it through
//!    `info chardev`; whoever can connect to it controls the VM, so `DIR` is a directory only
//!    QEMU's user can enter (mode 0700, checked if it exists): `$XDG_RUNTIME_DIR/vmi-gdb` when
//!    QEMU runs as the user running vmi, else `/tmp/vmi-gdb-<QEMU's uid>` ([`gdb_socket`]).
//!    `vmi info` shows it (`details.gdbstub`, `details.gdbstub_socket`, which also warns about
//!    a reused stub that others can reach). Connecting stops the VM; the backend lets it run
//!    again at once if it was running. Registers of all vCPUs are one
//!    pipelined exchange (`Hg`/`g`), with a `\x03` stop and `c` around it if the guest runs.
//!    If the stub is taken by another debugger or does not answer, QMP `stop`/`cont` and HMP
//!    `info registers -a` are used instead (`details` says which).
//!
//! # Run state
//!
//! The guest is left as the user left it: running if it ran when the target was opened,
//! paused if it was paused. [`VmControl::pause`] then [`VmControl::resume`] restore the state
//! from before the pause (resuming a guest the user had paused does not run it). Dropping the
//! backend detaches from the gdbstub (`D;1`) and, if the guest had been paused by the user,
//! stops it again through QMP (it runs for that moment: QEMU's detach always resumes).
//! While paused, SIGINT/SIGTERM/SIGHUP (unless the process ignores them) only set a flag:
//! every memory read and QEMU request then fails with "interrupted", the command unwinds, the
//! guest is resumed and the signal is raised again. Work that reads no guest memory (printing
//! a large hex dump) runs to its end first.
//! A process killed with SIGKILL while the guest is paused leaves it paused (`cont` on the QMP
//! socket resumes it).
//!
//! # Events
//!
//! [`EventSource`] over the same gdbstub: `Z0`/`z0` breakpoints, `Z2`/`Z3`/`Z4` write, read
//! and access watchpoints, `vCont;s:TID` to step one vCPU while the others stay stopped, stop
//! replies parsed for the vCPU and the watched address (`T05thread:p01.02;watch:ADDR;`), `\x03`
//! to stop (an event reply already on its way is kept: QEMU ignores a `\x03` that finds it
//! stopped). The library's loop (`vmi_core::event::Events`) does the step-over, filters and
//! cleanup. What QEMU 7.2 under TCG does (`../shared/notes/events.md`, and measured here):
//!
//! - Every breakpoint or step stop flushes QEMU's whole translation cache: a breakpoint
//!   event costs ~12 ms of guest retranslation on a hot path, whatever the client does.
//! - A breakpoint is re-reported forever unless stepped over; the removal must be answered
//!   before the step is sent (pipelined, 7.2 ran the step with the breakpoint still in place).
//! - Breakpoints and watchpoints are on virtual addresses in every address space: a user
//!   address hook matches every process (the loop filters by CR3); and all-stop reports one
//!   stop at a time, so a watchpoint write by another vCPU in the same instant is not reported
//!   (its access is complete): watch an address only one process writes.
//! - Closing the connection leaves breakpoints in QEMU, so the backend removes them and
//!   detaches (`D;1`) before a signal ends the process.
//! - Seen once, not understood: tracing every system call of a 2-vCPU 5-level guest, QEMU
//!   itself exited (the gdbstub and QMP sockets closed) after a few Ctrl-C'd runs.
//!
//! Under KVM (not testable here: QEMU aborts on this host's KVM), the same protocol means
//! other mechanics: `Z0` writes a `0xCC` into guest memory (the guest can see it, and kernel
//! text patching can collide with it), `Z1` uses the four debug registers DR0-DR3 (so at most
//! four hardware breakpoints and watchpoints together, lengths 1/2/4/8 aligned), single-step
//! uses the trap flag, and no translation cache is flushed, so events are far cheaper.
//!
//! # Coherence
//!
//! The backend caches nothing but the registers of a paused guest (dropped on resume); reads
//! go to guest RAM each time, so `slow_reads` is false and no page cache sits in front.
//! Callers that keep a session across a resume call `Session::invalidate` (the TLB).
//!
//! ```no_run
//! use vmi_backend_qemu::{Qemu, QemuOptions};
//! use vmi_core::{Pa, PhysicalMemoryExt, VmControl};
//!
//! let qemu = Qemu::open("/tmp/vm.qmp", &QemuOptions::default())?;
//! qemu.control().pause()?;
//! let regs = qemu.control().all_registers()?;
//! let word = qemu.memory().read_u64(Pa::new(regs[0].cr3 & !0xfff))?;
//! qemu.control().resume()?;
//! # let _ = word;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod gdb;
pub mod gdb_socket;
pub mod layout;
pub mod memory;
pub mod qmp;
pub mod registers;
mod sys;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions as FsOpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use vmi_core::error::{ControlError, EventError};
use vmi_core::event::{EventCapabilities, EventSource, Stop, StopReason, WatchKind};
use vmi_core::registry::{BackendFactory, SpecMatch};
use vmi_core::{
    BoxError, OpenOptions, PhysicalMemory, PhysicalMemoryWrite, Register, Target, Va, VcpuError,
    VcpuRegisters, VcpuRegistersWrite, VmControl, X86Registers,
};

pub use error::QemuError;
pub use gdb::Gdb;
pub use layout::GdbAddress;
pub use memory::{Backing, LiveMemory, Segment};
pub use qmp::Qmp;

/// The `qemu` backend in the registry.
pub static QEMU_BACKEND: BackendFactory = BackendFactory {
    name: "qemu",
    description:
        "live QEMU/KVM guest: qemu:QMP_SOCKET (shared RAM file or process memory, gdbstub)",
    spec: SpecMatch::Prefix("qemu"),
    open: open_target,
};
vmi_core::register_backend!(QEMU_BACKEND);

fn open_target(rest: &str, options: &OpenOptions) -> Result<Target, BoxError> {
    let qemu = Qemu::open(
        rest,
        &QemuOptions {
            write: options.write,
            ..QemuOptions::default()
        },
    )?;
    Ok(qemu.into_target())
}

/// How to open a live QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuOptions {
    /// Open guest RAM for writing.
    pub write: bool,
    /// Use the gdbstub for registers and pause (else QMP/HMP only).
    pub gdbstub: bool,
    /// Never map the shared RAM file: read the QEMU process (tests, benchmarks).
    pub force_process_memory: bool,
}

impl Default for QemuOptions {
    fn default() -> Self {
        QemuOptions {
            write: false,
            gdbstub: true,
            force_process_memory: false,
        }
    }
}

/// A live QEMU guest.
pub struct Qemu {
    pid: u32,
    memory: Arc<LiveMemory>,
    control: Arc<QemuControl>,
    writable: bool,
    details: Vec<(String, String)>,
}

impl std::fmt::Debug for Qemu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qemu")
            .field("pid", &self.pid)
            .field("details", &self.details)
            .finish_non_exhaustive()
    }
}

impl Qemu {
    /// Opens the QEMU whose QMP Unix socket is `socket`.
    pub fn open(socket: impl AsRef<Path>, options: &QemuOptions) -> Result<Qemu, QemuError> {
        let socket = socket.as_ref();
        let mut qmp = Qmp::connect(socket)?;
        let pid = sys::peer_pid(qmp.stream()).map_err(|source| QemuError::Connect {
            path: socket.to_owned(),
            source,
        })?;
        let mut details = vec![
            ("qmp".to_owned(), socket.display().to_string()),
            ("qemu_pid".to_owned(), pid.to_string()),
        ];
        if let Ok(v) = qmp.execute("query-version", None) {
            let q = &v["qemu"];
            details.push((
                "qemu_version".into(),
                format!("{}.{}.{}", q["major"], q["minor"], q["micro"]),
            ));
        }
        let memory = open_memory(&mut qmp, pid, options, &mut details)?;
        let target = format!("QEMU pid {pid} (qmp {})", socket.display());
        let control = QemuControl::new(qmp, pid, target, options.gdbstub, &mut details)?;
        Ok(Qemu {
            pid,
            memory: Arc::new(memory),
            control: Arc::new(control),
            writable: options.write,
            details,
        })
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Guest-physical memory.
    pub fn memory(&self) -> &LiveMemory {
        &self.memory
    }

    /// Registers, pause/resume and the QMP connection.
    pub fn control(&self) -> &Arc<QemuControl> {
        &self.control
    }

    /// Facts for `vmi info`.
    pub fn details(&self) -> &[(String, String)] {
        &self.details
    }

    /// The guest as a session target of the `qemu` backend.
    pub fn into_target(self) -> Target {
        let format = self
            .memory
            .blocks()
            .first()
            .map_or("qmp", |b| b.kind())
            .to_owned();
        let writer = self
            .writable
            .then(|| self.memory.clone() as Arc<dyn PhysicalMemoryWrite>);
        let mut builder = Target::builder(QEMU_BACKEND.name, format, self.memory.clone())
            .registers(self.control.clone())
            .control(self.control.clone())
            .writer(writer);
        if self.control.register_source() == "gdbstub" {
            builder = builder.events(self.control.clone()).register_writer(
                self.writable
                    .then(|| self.control.clone() as Arc<dyn VcpuRegistersWrite>),
            );
        }
        builder.details(self.details).build()
    }
}

fn open_memory(
    qmp: &mut Qmp,
    pid: u32,
    options: &QemuOptions,
    details: &mut Vec<(String, String)>,
) -> Result<LiveMemory, QemuError> {
    let ranges = layout::parse_mtree_system(&qmp.hmp("info mtree -f")?);
    let blocks = layout::parse_ramblocks(&qmp.hmp("info ramblock")?);
    let memdevs = qmp.execute("query-memdev", None).unwrap_or(json!([]));
    let memdevs: Vec<serde_json::Value> = memdevs.as_array().cloned().unwrap_or_default();
    let is_ram = |k: &str| matches!(k, "ram" | "rom" | "romd");
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for r in ranges.iter().filter(|r| is_ram(&r.kind)) {
        *totals.entry(r.region.as_str()).or_default() += r.len;
    }
    let memdev_ids: Vec<&str> = memdevs
        .iter()
        .filter_map(|m| m["id"].as_str())
        .filter(|id| totals.contains_key(id))
        .collect();
    let names: Vec<String> = if !memdev_ids.is_empty() {
        memdev_ids.iter().map(|s| (*s).to_owned()).collect()
    } else if totals.contains_key("pc.ram") {
        vec!["pc.ram".to_owned()]
    } else {
        totals
            .iter()
            .max_by_key(|(_, t)| **t)
            .map(|(n, _)| vec![(*n).to_owned()])
            .ok_or_else(|| QemuError::NoRam {
                detail: format!("{} ranges, none of them RAM", ranges.len()),
            })?
    };
    let mut backings = Vec::new();
    let mut segments = Vec::new();
    let mut maps_text: Option<String> = None;
    for (bi, name) in names.iter().enumerate() {
        let segs: Vec<Segment> = ranges
            .iter()
            .filter(|r| is_ram(&r.kind) && &r.region == name)
            .map(|r| Segment {
                start: r.start,
                len: r.len,
                block: bi,
                offset: r.offset,
            })
            .collect();
        let needed = segs
            .iter()
            .map(|s| s.offset.saturating_add(s.len))
            .max()
            .unwrap_or(0);
        let block = blocks.iter().find(|b| &b.name == name);
        let used = block.map_or(needed, |b| b.used);
        let total = block.map_or(needed, |b| b.total);
        if needed > used {
            return Err(QemuError::NoRam {
                detail: format!("block {name} is {used:#x} bytes but mapped up to {needed:#x}"),
            });
        }
        let memdev = memdevs.iter().find(|m| m["id"].as_str() == Some(name));
        let mut backing = None;
        if let Some(m) = memdev.filter(|m| m["share"].as_bool() == Some(true)) {
            if !options.force_process_memory {
                match map_shared_file(qmp, name, m, used, options.write) {
                    Ok(b) => backing = Some(b),
                    Err(why) => {
                        details.push((format!("{name}_shared_file"), format!("not used: {why}")))
                    }
                }
            }
        }
        let backing = match backing {
            Some(b) => {
                if let Err(why) = verify_block(qmp, &b, &segs) {
                    return Err(QemuError::NoRam {
                        detail: format!(
                            "the shared file of {name} does not hold the guest's RAM: {why}"
                        ),
                    });
                }
                b
            }
            None => {
                let maps = match &maps_text {
                    Some(t) => t,
                    None => maps_text.insert(
                        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| {
                            QemuError::ProcessMemory {
                                path: format!("/proc/{pid}/maps").into(),
                                source,
                                hint: "",
                            }
                        })?,
                    ),
                };
                find_in_process(qmp, pid, name, used, total, &segs, maps, options.write)?
            }
        };
        details.push((format!("{name}_memory"), describe(&backing)));
        backings.push(backing);
        segments.extend(segs);
    }
    Ok(LiveMemory::new(backings, segments, options.write))
}

fn describe(b: &Backing) -> String {
    match b {
        Backing::Mapped { path, map } => {
            format!("shared-file {} ({:#x} bytes)", path.display(), map.len())
        }
        Backing::Process { host_base, len, .. } => {
            format!("process-memory at host {host_base:#x} ({len:#x} bytes)")
        }
    }
}

fn map_shared_file(
    qmp: &mut Qmp,
    id: &str,
    memdev: &serde_json::Value,
    used: u64,
    write: bool,
) -> Result<Backing, String> {
    let path = qmp
        .execute(
            "qom-get",
            Some(json!({ "path": format!("/objects/{id}"), "property": "mem-path" })),
        )
        .map_err(|e| e.to_string())?;
    let path = PathBuf::from(path.as_str().ok_or("mem-path is not a string")?);
    let file = FsOpenOptions::new()
        .read(true)
        .write(write)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file (QEMU made and unlinked its own file in that directory)",
            path.display()
        ));
    }
    let size = memdev["size"].as_u64().unwrap_or(used);
    if meta.len() < used || size < used {
        return Err(format!("{} is smaller than the block", path.display()));
    }
    let len = usize::try_from(used).map_err(|e| e.to_string())?;
    let mut opts = memmap2::MmapOptions::new();
    opts.len(len);
    let map = if write {
        opts.map_raw(&file)
    } else {
        opts.map_raw_read_only(&file)
    }
    .map_err(|e| format!("mapping {}: {e}", path.display()))?;
    Ok(Backing::Mapped { map, path })
}

/// Samples per block for [`verify_block`].
const SAMPLES: u64 = 16;

/// Compares `backing` with HMP `xp` at a few guest-physical addresses of the block.
/// Returns the number of informative (non-zero) matching samples.
fn verify_block(qmp: &mut Qmp, backing: &Backing, segs: &[Segment]) -> Result<usize, String> {
    let tmp = LiveMemory::new(
        vec![match backing {
            Backing::Mapped { .. } | Backing::Process { .. } => clone_backing(backing)?,
        }],
        segs.iter().map(|s| Segment { block: 0, ..*s }).collect(),
        false,
    );
    let (mut good, mut bad) = (0usize, 0usize);
    // The large segments only (the ROM-shadow pieces below 1 MiB add HMP round trips, each
    // waiting for QEMU's main loop, and tell nothing more).
    let large = segs.iter().any(|s| s.len >= 0x100000);
    for s in segs
        .iter()
        .filter(|s| s.len >= if large { 0x100000 } else { 0x1000 })
    {
        for k in 0..SAMPLES {
            let pa = (s.start + s.len / SAMPLES * k) & !0x3f;
            if pa < s.start {
                continue;
            }
            let text = qmp
                .hmp(&format!("xp /8gx {pa:#x}"))
                .map_err(|e| e.to_string())?;
            let theirs = layout::parse_xp(&text);
            let mut ours = [0u8; 64];
            if tmp.read(vmi_core::Pa::new(pa), &mut ours).is_err() {
                bad += 1;
                continue;
            }
            for (i, v) in theirs.iter().take(8).enumerate() {
                let o = u64::from_le_bytes(ours[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
                if o != *v {
                    bad += 1;
                } else if o != 0 {
                    good += 1;
                }
            }
        }
    }
    // A running guest may change a word between the two reads; allow some.
    if bad > good / 4 + 2 {
        return Err(format!(
            "{bad} of the sampled words differ from QEMU's xp ({good} equal)"
        ));
    }
    Ok(good)
}

fn clone_backing(b: &Backing) -> Result<Backing, String> {
    match b {
        Backing::Mapped { path, .. } => {
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            let map = memmap2::MmapOptions::new()
                .len(usize::try_from(b.len()).map_err(|e| e.to_string())?)
                .map_raw_read_only(&file)
                .map_err(|e| e.to_string())?;
            Ok(Backing::Mapped {
                map,
                path: path.clone(),
            })
        }
        Backing::Process {
            mem,
            host_base,
            len,
        } => Ok(Backing::Process {
            mem: mem.try_clone().map_err(|e| e.to_string())?,
            host_base: *host_base,
            len: *len,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn find_in_process(
    qmp: &mut Qmp,
    pid: u32,
    name: &str,
    used: u64,
    total: u64,
    segs: &[Segment],
    maps: &str,
    write: bool,
) -> Result<Backing, QemuError> {
    let mem_path = PathBuf::from(format!("/proc/{pid}/mem"));
    let mem = FsOpenOptions::new()
        .read(true)
        .write(write)
        .open(&mem_path)
        .map_err(|source| QemuError::ProcessMemory {
            path: mem_path.clone(),
            hint: if matches!(source.kind(), std::io::ErrorKind::PermissionDenied) {
                " (reading QEMU's memory needs ptrace rights over it: run as root or as QEMU's \
                 user with kernel.yama.ptrace_scope=0, or start QEMU with a share=on \
                 memory-backend-file)"
            } else {
                ""
            },
            source,
        })?;
    let candidates: Vec<layout::HostMapping> = layout::parse_rw_mappings(maps)
        .into_iter()
        .filter(|m| m.len == used || m.len == total)
        .collect();
    if candidates.is_empty() {
        return Err(QemuError::RamMapping {
            block: name.to_owned(),
            size: used,
            pid,
            detail: "no read-write mapping of that size".into(),
        });
    }
    let mut best: Option<(usize, Backing)> = None;
    let mut why = Vec::new();
    for c in &candidates {
        let b = Backing::Process {
            mem: mem.try_clone().map_err(|source| QemuError::ProcessMemory {
                path: mem_path.clone(),
                source,
                hint: "",
            })?,
            host_base: c.start,
            len: used,
        };
        match verify_block(qmp, &b, segs) {
            Ok(score) if best.as_ref().is_none_or(|(s, _)| score > *s) => best = Some((score, b)),
            Ok(_) => {}
            Err(e) => why.push(format!("{:#x}: {e}", c.start)),
        }
    }
    best.map(|(_, b)| b).ok_or_else(|| QemuError::RamMapping {
        block: name.to_owned(),
        size: used,
        pid,
        detail: format!("no candidate matches QEMU's xp: {}", why.join("; ")),
    })
}

/// What the control state tracks.
struct State {
    qmp: Qmp,
    gdb: Option<Gdb>,
    /// The run state the user left the guest in (restored on drop).
    user_running: bool,
    /// Set while paused by [`VmControl::pause`]: whether the guest ran before.
    paused: Option<bool>,
    /// Registers of a guest paused by us (dropped on resume).
    cache: Option<Vec<X86Registers>>,
    /// Breakpoints and watchpoints inserted through [`EventSource`]: (gdb type, address,
    /// length), removed on release and on drop.
    points: BTreeSet<(u8, u64, u64)>,
    /// Whether the guest is stopped at an event (its registers may be cached until it runs).
    event_stop: bool,
}

/// Registers, pause/resume and the QMP connection of a live QEMU.
pub struct QemuControl {
    state: Mutex<State>,
    vcpus: usize,
    source: &'static str,
    /// `QEMU pid 4242 (qmp /run/vm.qmp)`, for errors.
    target: String,
}

impl QemuControl {
    fn new(
        mut qmp: Qmp,
        pid: u32,
        target: String,
        use_gdb: bool,
        details: &mut Vec<(String, String)>,
    ) -> Result<QemuControl, QemuError> {
        let running = qmp.running()?;
        let vcpus_qmp = qmp
            .execute("query-cpus-fast", None)?
            .as_array()
            .map_or(0, Vec::len);
        let gdb = if use_gdb {
            match attach_gdb(&mut qmp, pid, running) {
                Ok((g, note)) => {
                    details.push(("gdbstub".into(), g.address().to_owned()));
                    details.push(("gdbstub_socket".into(), note));
                    Some(g)
                }
                Err(e) => {
                    details.push(("gdbstub".into(), format!("not used: {e}")));
                    // The guest's run state must not change because the stub failed.
                    if qmp.running().unwrap_or(running) != running {
                        qmp.execute(if running { "cont" } else { "stop" }, None)?;
                    }
                    None
                }
            }
        } else {
            None
        };
        let source = if gdb.is_some() { "gdbstub" } else { "hmp" };
        details.push(("registers".into(), source.into()));
        let vcpus = gdb.as_ref().map_or(vcpus_qmp, Gdb::vcpus);
        Ok(QemuControl {
            state: Mutex::new(State {
                qmp,
                gdb,
                user_running: running,
                paused: None,
                cache: None,
                points: BTreeSet::new(),
                event_stop: false,
            }),
            vcpus,
            source,
            target,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where registers come from: `gdbstub` or `hmp`.
    pub fn register_source(&self) -> &'static str {
        self.source
    }

    /// Runs `f` on the QMP connection (it is the only one: a QMP socket takes one client).
    /// Do not `stop`/`cont` through it while the gdbstub is attached; use [`VmControl`].
    pub fn with_qmp<R>(&self, f: impl FnOnce(&mut Qmp) -> R) -> R {
        f(&mut self.lock().qmp)
    }

    /// Whether the guest's vCPUs run now (QMP `query-status`).
    pub fn is_running(&self) -> Result<bool, QemuError> {
        self.lock().qmp.running()
    }

    /// Registers of every vCPU, fetched together (one stop if the guest runs).
    pub fn all_registers(&self) -> Result<Vec<X86Registers>, QemuError> {
        let mut st = self.lock();
        if let Some(c) = &st.cache {
            return Ok(c.clone());
        }
        let regs = match st.gdb.as_mut() {
            Some(gdb) => {
                let was_running = gdb.is_running();
                gdb.stop()?;
                let raw = gdb.read_all_registers();
                if was_running {
                    gdb.cont()?;
                }
                raw?.iter()
                    .enumerate()
                    .map(|(i, hex)| {
                        registers::from_g_packet(hex).ok_or_else(|| QemuError::Gdb {
                            request: format!("g (vCPU {i})"),
                            reply: hex.chars().take(40).collect(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => registers::from_hmp(&st.qmp.hmp("info registers -a")?),
        };
        if st.paused.is_some() || st.event_stop {
            st.cache = Some(regs.clone());
        }
        Ok(regs)
    }

    /// HMP `info registers -a`, parsed (also when the gdbstub is used: for comparisons).
    pub fn hmp_registers(&self) -> Result<Vec<X86Registers>, QemuError> {
        registers::from_hmp(&self.lock().qmp.hmp("info registers -a")?).pipe(Ok)
    }

    fn pause_inner(&self) -> Result<(), QemuError> {
        let mut st = self.lock();
        if st.paused.is_some() {
            return Ok(());
        }
        let was_running = match st.gdb.as_mut() {
            Some(gdb) => {
                let r = gdb.is_running();
                gdb.stop()?;
                r
            }
            None => {
                let r = st.qmp.running()?;
                if r {
                    st.qmp.execute("stop", None)?;
                }
                r
            }
        };
        st.paused = Some(was_running);
        st.cache = None;
        sys::install_interrupt_handlers();
        Ok(())
    }

    fn resume_inner(&self) -> Result<(), QemuError> {
        let result = (|| {
            let mut st = self.lock();
            let Some(was_running) = st.paused.take() else {
                return Ok(());
            };
            st.cache = None;
            if was_running {
                match st.gdb.as_mut() {
                    Some(gdb) => gdb.cont()?,
                    None => {
                        st.qmp.execute("cont", None)?;
                    }
                }
            }
            Ok(())
        })();
        if sys::pending_signal().is_some() {
            // The process is about to die of the signal: leave the guest as the user left it.
            self.restore();
        }
        sys::restore_and_reraise();
        result
    }

    /// Detaches from the gdbstub and puts back the run state the user left (idempotent).
    fn restore(&self) {
        let mut st = self.lock();
        if let Some(gdb) = st.gdb.as_mut() {
            // Detaching makes QEMU drop them too; removed first all the same, so that a
            // failed detach leaves none behind.
            if gdb.stop().is_ok() {
                for (kind, addr, len) in std::mem::take(&mut st.points) {
                    if let Some(gdb) = st.gdb.as_mut() {
                        let _ = gdb.point(false, kind, addr, len);
                    }
                }
            }
        }
        st.event_stop = false;
        let paused = st.paused.take();
        st.cache = None;
        let user_running = match (st.gdb.take(), paused) {
            (Some(gdb), _) => {
                // D;1 lets the VM run, whatever its state was.
                let _ = gdb.detach();
                st.user_running
            }
            // Paused by us through QMP: back to the state before the pause.
            (None, Some(was_running)) => was_running,
            // Nothing of ours to undo: leave the run state to whoever set it.
            (None, None) => return,
        };
        if let Ok(now) = st.qmp.running() {
            if now != user_running {
                let _ = st
                    .qmp
                    .execute(if user_running { "cont" } else { "stop" }, None);
            }
        }
    }
}

/// `Ok`-wrapping in method position.
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

/// Connects to QEMU's gdbstub, starting one if it has none (see [`gdb_socket`] for where);
/// returns it and a note on its socket for `vmi info`.
fn attach_gdb(qmp: &mut Qmp, pid: u32, running: bool) -> Result<(Gdb, String), QemuError> {
    let chardevs = qmp.hmp("info chardev")?;
    let socket_dir_error = |reason: String| QemuError::GdbSocketDir { reason };
    let (qemu_uid, our_uid) = gdb_socket::uids(pid)
        .map_err(|e| socket_dir_error(format!("the owner of /proc/{pid}: {e}")))?;
    let (address, note) = match layout::parse_gdb_chardev(&chardevs) {
        Some((address, true)) => {
            return Err(QemuError::GdbBusy {
                address: address.to_string(),
            })
        }
        // Started earlier (by an earlier vmi, or by whoever started QEMU): QEMU starts one
        // per process only, so it is the one to use.
        Some((address, false)) => {
            let note = match &address {
                GdbAddress::Unix(path) => match gdb_socket::is_private(Path::new(path), qemu_uid) {
                    Ok(()) => {
                        format!("{path}, reused; its directory is private to uid {qemu_uid} (0700)")
                    }
                    Err(why) => format!("{path}, reused; warning: {why}"),
                },
                GdbAddress::Tcp(a) => {
                    format!("tcp {a}, reused; warning: any local user can connect to it")
                }
            };
            (address, note)
        }
        None => {
            let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
            let dir = gdb_socket::socket_dir(qemu_uid, our_uid, runtime.as_deref());
            gdb_socket::ensure_private_dir(&dir, qemu_uid, our_uid).map_err(socket_dir_error)?;
            let path = gdb_socket::socket_path(&dir, pid);
            // QEMU has no gdbstub, so a file there is left by an earlier QEMU of that pid;
            // QEMU could not bind over it. The directory is private: nobody else put it there.
            if std::fs::symlink_metadata(&path).is_ok() {
                std::fs::remove_file(&path).map_err(|e| {
                    socket_dir_error(format!("removing the stale {}: {e}", path.display()))
                })?;
            }
            let path = path
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| socket_dir_error(format!("{} is not UTF-8", path.display())))?;
            let out = qmp.hmp(&format!("gdbserver unix:{path},server=on,wait=off"))?;
            if !out.contains("Waiting for gdb connection") {
                return Err(QemuError::Gdb {
                    request: "gdbserver (HMP)".into(),
                    reply: out.trim().to_owned(),
                });
            }
            let note = format!(
                "{path}, started by vmi (it listens until QEMU exits; later runs reuse it); its \
                 directory is private to uid {qemu_uid} (0700)"
            );
            (GdbAddress::Unix(path), note)
        }
    };
    let mut gdb = Gdb::connect(&address)?;
    if running {
        gdb.cont()?;
    }
    Ok((gdb, note))
}

impl Drop for QemuControl {
    fn drop(&mut self) {
        self.restore();
    }
}

fn vcpu_err(index: usize, e: QemuError) -> VcpuError {
    VcpuError::Io {
        index,
        source: e.into_io(),
    }
}

impl VcpuRegisters for QemuControl {
    fn vcpu_count(&self) -> usize {
        self.vcpus
    }

    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError> {
        if index >= self.vcpus {
            return Err(VcpuError::NoSuchVcpu {
                index,
                count: self.vcpus,
            });
        }
        {
            // Stopped at an event: only the vCPU asked for (one round trip, not one per vCPU).
            let mut st = self.lock();
            if st.event_stop && st.cache.is_none() {
                if let Some(gdb) = st.gdb.as_mut().filter(|g| !g.is_running()) {
                    let hex = gdb.read_registers(index).map_err(|e| vcpu_err(index, e))?;
                    return registers::from_g_packet(&hex).ok_or_else(|| {
                        vcpu_err(
                            index,
                            QemuError::Gdb {
                                request: format!("g (vCPU {index})"),
                                reply: hex.chars().take(40).collect(),
                            },
                        )
                    });
                }
            }
        }
        let all = self.all_registers().map_err(|e| vcpu_err(index, e))?;
        all.into_iter().nth(index).ok_or(VcpuError::NoSuchVcpu {
            index,
            count: self.vcpus,
        })
    }
}

impl VmControl for QemuControl {
    fn pause(&self) -> Result<(), ControlError> {
        self.pause_inner().map_err(|e| ControlError::Pause {
            target: self.target.clone(),
            source: Box::new(e),
        })
    }

    fn resume(&self) -> Result<(), ControlError> {
        self.resume_inner().map_err(|e| ControlError::Resume {
            target: self.target.clone(),
            source: Box::new(e),
        })
    }
}

impl QemuControl {
    fn event_error(&self, doing: impl Into<String>, e: QemuError) -> EventError {
        match e {
            QemuError::Interrupted { signal } => EventError::Interrupted { signal },
            e => EventError::Backend {
                target: self.target.clone(),
                doing: doing.into(),
                source: Box::new(e),
            },
        }
    }

    /// Runs `f` on the gdbstub, which events need.
    fn with_gdb<R>(
        &self,
        doing: &str,
        f: impl FnOnce(&mut Gdb, &mut BTreeSet<(u8, u64, u64)>) -> Result<R, QemuError>,
    ) -> Result<R, EventError> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(gdb) = st.gdb.as_mut() else {
            return Err(EventError::Unsupported {
                spec: self.target.clone(),
                what: "set breakpoints, watchpoints or single-step",
                why: "QEMU's gdbstub is not available (see `vmi info`, details.gdbstub)".into(),
            });
        };
        f(gdb, &mut st.points).map_err(|e| self.event_error(doing, e))
    }

    fn point(&self, insert: bool, kind: u8, va: Va, len: u64) -> Result<(), EventError> {
        let doing = format!(
            "{} a {} at {va} ({len} bytes)",
            if insert { "inserting" } else { "removing" },
            match kind {
                0 => "breakpoint",
                2 => "write watchpoint",
                3 => "read watchpoint",
                _ => "watchpoint",
            }
        );
        if insert {
            // From the first hook on, a signal only ends the wait: the loop unwinds, removes
            // its hooks and resumes the guest before the signal is acted on.
            sys::install_interrupt_handlers();
        }
        self.with_gdb(&doing, |gdb, points| {
            gdb.stop()?;
            gdb.point(insert, kind, va.raw(), len)?;
            if insert {
                points.insert((kind, va.raw(), len));
            } else {
                points.remove(&(kind, va.raw(), len));
            }
            Ok(())
        })
    }

    fn to_stop(&self, gdb: &Gdb, reply: &gdb::StopReply) -> Result<Stop, QemuError> {
        let vcpu = gdb.vcpu_of(reply).ok_or_else(|| QemuError::Gdb {
            request: "a stop reply".into(),
            reply: format!("names thread {:?}, not one of the vCPUs", reply.thread),
        })?;
        let reason = match (reply.signal, reply.watch) {
            (_, Some((access, addr))) => StopReason::Watch {
                addr: Va::new(addr),
                access,
            },
            (5, None) => StopReason::Trap,
            _ => StopReason::Interrupt,
        };
        Ok(Stop { vcpu, reason })
    }

    fn set_event_stop(&self, stopped: bool) {
        let mut st = self.lock();
        st.event_stop = stopped;
        st.cache = None;
    }
}

fn watch_type(kind: WatchKind) -> u8 {
    match kind {
        WatchKind::Write => 2,
        WatchKind::Read => 3,
        WatchKind::Access => 4,
    }
}

/// Events through QEMU's gdbstub (see `EVENTS.md` beside this crate's sources for the
/// protocol, the quirks handled and what changes under KVM).
impl EventSource for QemuControl {
    fn capabilities(&self) -> EventCapabilities {
        let live = self.source == "gdbstub";
        let mut caps = EventCapabilities::default();
        caps.breakpoints = live;
        caps.write_watchpoints = live;
        caps.read_watchpoints = live;
        caps.access_watchpoints = live;
        caps.single_step = live;
        caps
    }

    fn insert_breakpoint(&self, va: Va) -> Result<(), EventError> {
        self.point(true, 0, va, 1)
    }

    fn remove_breakpoint(&self, va: Va) -> Result<(), EventError> {
        self.point(false, 0, va, 1)
    }

    fn insert_watchpoint(&self, va: Va, len: u64, kind: WatchKind) -> Result<(), EventError> {
        self.point(true, watch_type(kind), va, len)
    }

    fn remove_watchpoint(&self, va: Va, len: u64, kind: WatchKind) -> Result<(), EventError> {
        self.point(false, watch_type(kind), va, len)
    }

    fn wait(&self, timeout: Duration) -> Result<Option<Stop>, EventError> {
        // A signal that arrived while the guest was stopped (no read to interrupt) ends the
        // loop here, before the guest runs again.
        if let Some(signal) = sys::pending_signal() {
            return Err(EventError::Interrupted { signal });
        }
        self.set_event_stop(false);
        let deadline = Instant::now() + timeout;
        let stop = self.with_gdb("waiting for the guest to stop", |gdb, _| {
            match gdb.wait_stop(deadline)? {
                Some(reply) => self.to_stop(gdb, &reply).map(Some),
                None => Ok(None),
            }
        })?;
        if stop.is_some() {
            self.set_event_stop(true);
        }
        Ok(stop)
    }

    fn step(&self, vcpu: usize) -> Result<Stop, EventError> {
        self.set_event_stop(false);
        let stop = self.with_gdb(&format!("single-stepping vCPU {vcpu}"), |gdb, _| {
            gdb.stop()?;
            let reply = gdb.step(vcpu)?;
            self.to_stop(gdb, &reply)
        })?;
        self.set_event_stop(true);
        Ok(stop)
    }

    fn step_over(&self, vcpu: usize, va: Va) -> Result<Stop, EventError> {
        self.set_event_stop(false);
        let stop = self.with_gdb(&format!("stepping vCPU {vcpu} over {va}"), |gdb, _| {
            gdb.stop()?;
            let reply = gdb.step_over(vcpu, va.raw())?;
            self.to_stop(gdb, &reply)
        })?;
        self.set_event_stop(true);
        Ok(stop)
    }

    fn halt(&self) -> Result<Option<Stop>, EventError> {
        let stop = self.with_gdb("stopping the guest", |gdb, _| match gdb.halt()? {
            Some(reply) => self.to_stop(gdb, &reply).map(Some),
            None => Ok(None),
        })?;
        self.set_event_stop(true);
        Ok(stop)
    }

    fn release(&self) -> Result<(), EventError> {
        let result = self.with_gdb("removing breakpoints and watchpoints", |gdb, points| {
            gdb.stop()?;
            let mut first_error = None;
            for (kind, addr, len) in std::mem::take(points) {
                if let Err(e) = gdb.point(false, kind, addr, len) {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        let resumed = {
            let mut st = self.lock();
            st.event_stop = false;
            st.cache = None;
            // Paused by the user or by VmControl::pause: it stays so; else it runs again.
            let run = st.paused.is_none() && st.user_running;
            match st.gdb.as_mut() {
                Some(gdb) if run => gdb.cont(),
                _ => Ok(()),
            }
        };
        let paused = self.lock().paused.is_some();
        if !paused {
            if sys::pending_signal().is_some() {
                // The process is about to die of the signal: detach (QEMU keeps no
                // breakpoint of a detached client) and leave the run state as the user had it.
                self.restore();
            }
            sys::restore_and_reraise();
        }
        result?;
        resumed.map_err(|e| self.event_error("resuming the guest", e))
    }
}

impl VcpuRegistersWrite for QemuControl {
    fn set_register(&self, index: usize, register: Register, value: u64) -> Result<(), VcpuError> {
        if index >= self.vcpus {
            return Err(VcpuError::NoSuchVcpu {
                index,
                count: self.vcpus,
            });
        }
        let number = Register::ALL
            .iter()
            .position(|r| *r == register)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let mut st = self.lock();
        st.cache = None;
        let Some(gdb) = st.gdb.as_mut() else {
            return Err(vcpu_err(
                index,
                QemuError::Gdb {
                    request: "a register write".into(),
                    reply: "QEMU's gdbstub is not available".into(),
                },
            ));
        };
        let was_running = gdb.is_running();
        let r = gdb
            .stop()
            .and_then(|()| gdb.write_register(index, number, value));
        if was_running {
            let _ = gdb.cont();
        }
        r.map_err(|e| vcpu_err(index, e))
    }
}

/// How long a test or tool may wait for a `pmemsave` of a whole guest.
pub const PMEMSAVE_TIMEOUT: Duration = Duration::from_secs(120);
