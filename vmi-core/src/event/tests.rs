//! The event loop against a simulated all-stop machine that behaves as QEMU's gdbstub does:
//! a vCPU resumed on an inserted breakpoint reports it again without executing it, a
//! watchpoint reports after the access, a step executes one instruction of one vCPU.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::*;
use crate::error::VcpuError;
use crate::memory::BufferMemory;
use crate::session::Target;
use crate::test_support::Identity;
use crate::vcpu::VcpuRegisters;

/// One instruction of a simulated program: its address and the data address it writes.
#[derive(Clone, Copy)]
struct Insn {
    pc: u64,
    writes: Option<u64>,
}

struct Cpu {
    program: Vec<Insn>,
    at: usize,
    /// Instructions executed so far (shown as RAX).
    executed: u64,
    cr3: u64,
}

struct Machine {
    cpus: Vec<Cpu>,
    running: bool,
    breakpoints: BTreeSet<u64>,
    watchpoints: BTreeSet<(u64, u64, WatchKind)>,
    released: bool,
    /// Round-robin position.
    turn: usize,
}

#[derive(Clone)]
struct Sim(Arc<Mutex<Machine>>);

impl Sim {
    fn new(programs: Vec<(Vec<Insn>, u64)>) -> Sim {
        Sim(Arc::new(Mutex::new(Machine {
            cpus: programs
                .into_iter()
                .map(|(program, cr3)| Cpu {
                    program,
                    at: 0,
                    executed: 0,
                    cr3,
                })
                .collect(),
            running: false,
            breakpoints: BTreeSet::new(),
            watchpoints: BTreeSet::new(),
            released: false,
            turn: 0,
        })))
    }

    fn m(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.0.lock().unwrap()
    }

    fn session(&self) -> Session {
        let target = Target::builder(
            "sim",
            "sim",
            Arc::new(BufferMemory::new(Pa::new(0), vec![0; 4096])),
        )
        .registers(Arc::new(self.clone()))
        .events(Arc::new(self.clone()))
        .build();
        Session::from_target("sim:test", target, Box::new(Identity))
    }
}

/// Executes the instruction at `cpu`'s PC; the watch stop it causes, if any.
fn execute(m: &mut Machine, cpu: usize) -> Option<Stop> {
    let c = &mut m.cpus[cpu];
    let insn = c.program[c.at];
    c.at = (c.at + 1) % c.program.len();
    c.executed += 1;
    let addr = insn.writes?;
    m.watchpoints
        .iter()
        .any(|(va, len, kind)| kind.covers(WatchKind::Write) && addr >= *va && addr - va < *len)
        .then_some(Stop {
            vcpu: cpu,
            reason: StopReason::Watch {
                addr: Va::new(addr),
                access: WatchKind::Write,
            },
        })
}

impl EventSource for Sim {
    fn capabilities(&self) -> EventCapabilities {
        EventCapabilities {
            breakpoints: true,
            write_watchpoints: true,
            read_watchpoints: true,
            access_watchpoints: true,
            single_step: true,
            process_switches: false,
        }
    }
    fn insert_breakpoint(&self, va: Va) -> Result<(), EventError> {
        assert!(!self.m().running, "inserted while running");
        self.m().breakpoints.insert(va.raw());
        Ok(())
    }
    fn remove_breakpoint(&self, va: Va) -> Result<(), EventError> {
        assert!(!self.m().running, "removed while running");
        self.m().breakpoints.remove(&va.raw());
        Ok(())
    }
    fn insert_watchpoint(&self, va: Va, len: u64, kind: WatchKind) -> Result<(), EventError> {
        self.m().watchpoints.insert((va.raw(), len, kind));
        Ok(())
    }
    fn remove_watchpoint(&self, va: Va, len: u64, kind: WatchKind) -> Result<(), EventError> {
        self.m().watchpoints.remove(&(va.raw(), len, kind));
        Ok(())
    }
    fn wait(&self, _: Duration) -> Result<Option<Stop>, EventError> {
        let mut m = self.m();
        m.running = true;
        // A bounded run stands for the timeout.
        for _ in 0..10_000 {
            let cpu = m.turn % m.cpus.len();
            m.turn += 1;
            let pc = m.cpus[cpu].program[m.cpus[cpu].at].pc;
            if m.breakpoints.contains(&pc) {
                m.running = false;
                return Ok(Some(Stop {
                    vcpu: cpu,
                    reason: StopReason::Trap,
                }));
            }
            if let Some(stop) = execute(&mut m, cpu) {
                m.running = false;
                return Ok(Some(stop));
            }
        }
        Ok(None)
    }
    fn step(&self, vcpu: usize) -> Result<Stop, EventError> {
        let mut m = self.m();
        assert!(!m.running);
        let pc = m.cpus[vcpu].program[m.cpus[vcpu].at].pc;
        if m.breakpoints.contains(&pc) {
            // As QEMU: the breakpoint is reported again, nothing executes.
            return Ok(Stop {
                vcpu,
                reason: StopReason::Trap,
            });
        }
        Ok(execute(&mut m, vcpu).unwrap_or(Stop {
            vcpu,
            reason: StopReason::Trap,
        }))
    }
    fn halt(&self) -> Result<Option<Stop>, EventError> {
        let mut m = self.m();
        let was = m.running;
        m.running = false;
        Ok(was.then_some(Stop {
            vcpu: 0,
            reason: StopReason::Interrupt,
        }))
    }
    fn release(&self) -> Result<(), EventError> {
        let mut m = self.m();
        m.breakpoints.clear();
        m.watchpoints.clear();
        m.released = true;
        m.running = true;
        Ok(())
    }
}

impl VcpuRegisters for Sim {
    fn vcpu_count(&self) -> usize {
        self.m().cpus.len()
    }
    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError> {
        let m = self.m();
        let c = m.cpus.get(index).ok_or(VcpuError::NoSuchVcpu {
            index,
            count: m.cpus.len(),
        })?;
        Ok(X86Registers {
            rip: c.program[c.at].pc,
            rax: c.executed,
            cr3: c.cr3,
            ..X86Registers::default()
        })
    }
}

fn program(pcs: &[u64]) -> Vec<Insn> {
    pcs.iter().map(|&pc| Insn { pc, writes: None }).collect()
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn each_pass_over_a_breakpoint_is_one_event_on_every_vcpu() {
    // Both vCPUs run through 0x20 once per loop of three instructions.
    let sim = Sim::new(vec![
        (program(&[0x10, 0x20, 0x30]), 0x1000),
        (program(&[0x20, 0x40, 0x50]), 0x2000),
    ]);
    let session = sim.session();
    let mut events = Events::new(&session).unwrap();
    events.break_at(Va::new(0x20), Filter::any()).unwrap();
    let mut last: [Option<u64>; 2] = [None, None];
    for _ in 0..200 {
        let e = events.next(SECOND).unwrap().expect("an event");
        assert_eq!(
            e.kind,
            EventKind::Breakpoint {
                addr: Va::new(0x20)
            }
        );
        assert_eq!(e.registers.rip, 0x20);
        // Exactly one loop of its program since its last event: nothing missed, nothing twice.
        if let Some(prev) = last[e.vcpu] {
            assert_eq!(e.registers.rax, prev + 3, "vCPU {}", e.vcpu);
        }
        last[e.vcpu] = Some(e.registers.rax);
    }
    assert!(last.iter().all(Option::is_some), "both vCPUs hit");
    let stats = events.finish().unwrap();
    assert_eq!(stats.events, 200);
    assert!(stats.step_overs >= 199);
    let m = sim.m();
    assert!(m.released && m.breakpoints.is_empty());
}

#[test]
fn a_filtered_stop_is_stepped_over_and_never_reported() {
    let sim = Sim::new(vec![
        (program(&[0x10, 0x20]), 0x1000),
        (program(&[0x20, 0x30]), 0x2000 | 0x5), // PCID bits must not matter
    ]);
    let session = sim.session();
    let mut events = Events::new(&session).unwrap();
    events
        .break_at(Va::new(0x20), Filter::roots([Pa::new(0x2000)]))
        .unwrap();
    for _ in 0..50 {
        let e = events.next(SECOND).unwrap().unwrap();
        assert_eq!(e.vcpu, 1);
    }
    let stats = events.stats();
    assert!(stats.filtered >= 49, "{stats:?}");
    drop(events);
    // vCPU 0 was never stuck on the breakpoint it was filtered out of.
    assert!(sim.m().cpus[0].executed >= 98);
    assert!(sim.m().breakpoints.is_empty());
}

#[test]
fn watchpoints_fire_once_per_write_and_only_for_their_kind() {
    let mut prog = program(&[0x10, 0x20, 0x30]);
    prog[1].writes = Some(0x9008);
    let sim = Sim::new(vec![(prog, 0x1000)]);
    let session = sim.session();
    let mut events = Events::new(&session).unwrap();
    let reads = events
        .watch(Va::new(0x9000), 16, WatchKind::Read, Filter::any())
        .unwrap();
    let writes = events
        .watch(Va::new(0x9000), 16, WatchKind::Write, Filter::any())
        .unwrap();
    let mut last = None;
    for _ in 0..100 {
        let e = events.next(SECOND).unwrap().unwrap();
        assert_eq!(
            e.kind,
            EventKind::Watchpoint {
                addr: Va::new(0x9008),
                access: WatchKind::Write
            }
        );
        assert_eq!(e.hooks, [writes]);
        assert_ne!(e.hooks, [reads]);
        if let Some(prev) = last {
            assert_eq!(e.registers.rax, prev + 3);
        }
        last = Some(e.registers.rax);
    }
    assert_eq!(
        events.stats().step_overs,
        0,
        "a watchpoint needs no step-over"
    );
    events.remove(writes).unwrap();
    events.remove(reads).unwrap();
    assert!(sim.m().watchpoints.is_empty());
    assert!(events.next(Duration::ZERO).unwrap().is_none());
}

#[test]
fn a_step_from_a_breakpoint_executes_one_instruction_and_keeps_the_hook() {
    let sim = Sim::new(vec![(program(&[0x10, 0x20, 0x30, 0x40]), 0x1000)]);
    let session = sim.session();
    let mut events = Events::new(&session).unwrap();
    events.break_at(Va::new(0x20), Filter::any()).unwrap();
    let e = events.next(SECOND).unwrap().unwrap();
    assert_eq!(e.registers.rip, 0x20);
    let s = events.step(0).unwrap();
    assert_eq!((s.kind, s.registers.rip), (EventKind::SingleStep, 0x30));
    let s = events.step(0).unwrap();
    assert_eq!(s.registers.rip, 0x40);
    assert!(sim.m().breakpoints.contains(&0x20));
    let e = events.next(SECOND).unwrap().unwrap();
    assert_eq!((e.registers.rip, e.registers.rax), (0x20, 5));
    // Stepping onto the breakpoint: the next run steps over it rather than stalling.
    let sim2 = Sim::new(vec![(program(&[0x10, 0x20, 0x30]), 0x1000)]);
    let session2 = sim2.session();
    let mut events2 = Events::new(&session2).unwrap();
    events2.break_at(Va::new(0x20), Filter::any()).unwrap();
    let s = events2.step(0).unwrap();
    assert_eq!(s.registers.rip, 0x20);
    let e = events2.next(SECOND).unwrap().unwrap();
    assert_eq!((e.registers.rip, e.registers.rax), (0x20, 4));
}

#[test]
fn a_failing_handler_still_leaves_no_hook_and_the_guest_running() {
    let sim = Sim::new(vec![(program(&[0x10, 0x20]), 0x1000)]);
    let session = sim.session();
    {
        let mut events = Events::new(&session).unwrap();
        events.break_at(Va::new(0x10), Filter::any()).unwrap();
        events
            .watch(Va::new(0x50), 8, WatchKind::Access, Filter::any())
            .unwrap();
        let mut seen = 0;
        let r: Result<RunEnd, EventError> = events.run(RunLimits::default(), |_, _| {
            seen += 1;
            if seen == 3 {
                Err(EventError::Interrupted { signal: 2 })
            } else {
                Ok(Flow::Continue)
            }
        });
        assert!(matches!(r, Err(EventError::Interrupted { signal: 2 })));
    }
    let m = sim.m();
    assert!(m.released && m.running);
    assert!(m.breakpoints.is_empty() && m.watchpoints.is_empty());
}

#[test]
fn run_stops_at_its_count() {
    let sim = Sim::new(vec![(program(&[0x10, 0x20]), 0x1000)]);
    let session = sim.session();
    let mut events = Events::new(&session).unwrap();
    events.break_at(Va::new(0x10), Filter::any()).unwrap();
    let mut n = 0;
    let end = events
        .run::<EventError>(
            RunLimits {
                count: Some(7),
                duration: None,
            },
            |_, _| {
                n += 1;
                Ok(Flow::Continue)
            },
        )
        .unwrap();
    assert_eq!((end, n), (RunEnd::Count, 7));
}

#[test]
fn a_target_without_events_says_so() {
    let target = Target::builder(
        "file",
        "elf-core",
        Arc::new(BufferMemory::new(Pa::new(0), vec![0; 4096])),
    )
    .build();
    let session = Session::from_target("guest.elf", target, Box::new(Identity));
    let e = Events::new(&session).err().expect("no events on a dump");
    assert_eq!(
        e.to_string(),
        "target `guest.elf` cannot set breakpoints, watchpoints or single-step: it is not a \
         live guest"
    );
}
