//! Events on a live QEMU guest (TCG, started by `scripts/fixture-live`; 2 vCPUs, the
//! `vmi-workload loop` program opening and closing a file in a tight loop):
//!
//! 1. the raw-protocol floor: a minimal gdb remote-protocol client of this file, with
//!    precomputed frames and no decoding beyond finding the stop reply (and RSP in the `g`
//!    reply), doing c -> stop -> g -> m rsp,8 -> z0 -> vCont;s:TID -> Z0 -> c with a
//!    breakpoint on `__x64_sys_openat`;
//! 2. the same through [`Events`] (break_at, next, an 8-byte read at RSP through the session),
//!    same guest, back to back, then again interleaved; the per-event library time is
//!    [`Events::timings`] (stop reply to resume, without the step-over, which runs the guest);
//! 3. write-watchpoint events on the loop's counter (written once per iteration);
//! 4. single steps ([`Events::step`] from a breakpoint stop);
//! 5. pause + registers of both vCPUs + resume ([`vmi_core::VmControl`]).
//!
//! Rates are criterion throughputs (elements = events); a summary line per part gives the
//! totals, the ratio to the floor and the medians. Skipped with a message when no fixture
//! kernel or QEMU is available, or with VMI_BENCH_SKIP_LIVE set.

#[path = "../../vmi-backend-qemu/tests/common/live.rs"]
mod live;

use std::hint::black_box;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use vmi_backend_qemu::{Qemu, QemuOptions};
use vmi_core::event::{EventKind, Events, Filter, WatchKind};
use vmi_core::{Pa, PagingMode, Session, Va};

/// Longest wait for any stop (a breakpoint hit on the open path takes ~12 ms).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Events per round of the interleaved comparison (about 1.3 s each at the notes' rate).
const INTERLEAVED_EVENTS: u64 = 100;
const INTERLEAVED_ROUNDS: usize = 3;

fn median(d: &[Duration]) -> Duration {
    let mut d = d.to_vec();
    d.sort();
    d.get(d.len() / 2).copied().unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `$data#cs`.
fn frame(data: &str) -> Vec<u8> {
    let sum = data.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    format!("${data}#{sum:02x}").into_bytes()
}

/// The raw-protocol floor: one gdbstub connection, frames built once, replies found by
/// scanning for `$...#xx` (acks and console output are skipped; checksums are not checked).
struct RawClient {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    start: usize,
    /// The last packet's payload in `buf`.
    last: (usize, usize),
    g: Vec<u8>,
    z0_vcont: Vec<(Vec<u8>, Vec<u8>)>,
    arm_continue: Vec<u8>,
    /// `+$m<rsp>,8#cs`, rebuilt per event (the address changes).
    m: Vec<u8>,
    /// Stopped at a breakpoint on this thread (the step-over comes next).
    stopped_on: Option<Vec<u8>>,
    /// Per event: stop reply to resume, without the step's own wait.
    handling: Vec<Duration>,
    /// Per event: z0 + vCont;s sent to the step's stop reply.
    step_over: Vec<Duration>,
    events: u64,
}

impl RawClient {
    fn connect(path: &str, breakpoint: u64) -> RawClient {
        let stream = UnixStream::connect(path).expect("connect to the gdbstub");
        stream.set_read_timeout(Some(STOP_TIMEOUT)).unwrap();
        let mut c = RawClient {
            stream,
            buf: Vec::with_capacity(1 << 16),
            start: 0,
            last: (0, 0),
            g: [b"+".as_slice(), &frame("g")].concat(),
            z0_vcont: Vec::new(),
            arm_continue: [
                b"+".as_slice(),
                &frame(&format!("Z0,{breakpoint:x},1")),
                &frame("c"),
            ]
            .concat(),
            m: Vec::with_capacity(64),
            stopped_on: None,
            handling: Vec::new(),
            step_over: Vec::new(),
            events: 0,
        };
        // Connecting stops the VM (QEMU may push a stop reply first). A request that reaches
        // QEMU before its stop is taken for an interrupt and dropped: ask again until the
        // answer to qSupported comes.
        c.stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut answered = false;
        for _ in 0..30 {
            c.send(&frame("qSupported:swbreak+;hwbreak+"));
            loop {
                match c.try_packet() {
                    Some(p) if p.starts_with(b"PacketSize") => {
                        answered = true;
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            if answered {
                break;
            }
        }
        assert!(answered, "the gdbstub at {path} does not answer");
        c.stream.set_read_timeout(Some(STOP_TIMEOUT)).unwrap();
        // The threads, for the step frames: one or more per reply, `l` at the end.
        let mut request = frame("qfThreadInfo");
        while c.z0_vcont.len() < 64 {
            c.send(&[b"+".as_slice(), &request].concat());
            let list = c.packet().to_vec();
            let Some(list) = list.strip_prefix(b"m") else {
                break;
            };
            for tid in list.split(|&b| b == b',').filter(|t| !t.is_empty()) {
                let tid = String::from_utf8_lossy(tid).into_owned();
                let step = [
                    b"+".as_slice(),
                    &frame(&format!("z0,{breakpoint:x},1")),
                    &frame(&format!("vCont;s:{tid}")),
                ]
                .concat();
                c.z0_vcont.push((tid.into_bytes(), step));
            }
            request = frame("qsThreadInfo");
        }
        assert!(!c.z0_vcont.is_empty(), "qfThreadInfo lists no thread");
        c
    }

    /// Connects and inserts the breakpoint the events stop on.
    fn with_breakpoint(path: &str, breakpoint: u64) -> RawClient {
        let mut c = RawClient::connect(path, breakpoint);
        assert_eq!(c.request(&format!("Z0,{breakpoint:x},1")), b"OK");
        c
    }

    /// One request, its reply (not for requests that let the VM run).
    fn request(&mut self, data: &str) -> Vec<u8> {
        self.send(&[b"+".as_slice(), &frame(data)].concat());
        self.packet().to_vec()
    }

    /// One watchpoint event (the watchpoint inserted, the VM stopped): continue, wait for
    /// the stop, read the registers.
    fn watch_event(&mut self) -> usize {
        self.send(b"+$c#63");
        self.stop_thread();
        let g = std::mem::take(&mut self.g);
        self.send(&g);
        self.g = g;
        self.packet().len()
    }

    /// One single step of `step` (`+$vCont;s:TID#cs`) and a register read.
    fn step_event(&mut self, step: &[u8]) -> usize {
        self.send(step);
        self.stop_thread();
        let g = std::mem::take(&mut self.g);
        self.send(&g);
        self.g = g;
        self.packet().len()
    }

    /// Detaches (`D;1`) from a stopped VM, which runs on.
    fn detach_stopped(mut self) {
        assert_eq!(self.request("D;1"), b"OK");
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the gdbstub");
    }

    /// The next packet's payload.
    fn packet(&mut self) -> &[u8] {
        match self.next_packet() {
            Ok(()) => {}
            Err(e) => panic!("read from the gdbstub: {e}"),
        }
        &self.buf[self.last.0..self.last.1]
    }

    /// The next packet's payload, `None` if none comes within the read timeout.
    fn try_packet(&mut self) -> Option<&[u8]> {
        match self.next_packet() {
            Ok(()) => Some(&self.buf[self.last.0..self.last.1]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("read from the gdbstub: {e}"),
        }
    }

    /// Finds the next `$...#xx` in the buffer (reading more as needed); its payload is then
    /// `buf[last.0..last.1]`.
    fn next_packet(&mut self) -> std::io::Result<()> {
        loop {
            let pending = &self.buf[self.start..];
            if let Some(dollar) = pending.iter().position(|&b| b == b'$') {
                if let Some(hash) = pending[dollar..].iter().position(|&b| b == b'#') {
                    let end = dollar + hash + 3;
                    if pending.len() >= end {
                        self.last = (self.start + dollar + 1, self.start + dollar + hash);
                        self.start += end;
                        return Ok(());
                    }
                }
            }
            if self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next stop reply's thread (`T05thread:01;` -> `01`), skipping other packets.
    fn stop_thread(&mut self) -> Vec<u8> {
        loop {
            let p = self.packet();
            if p.first() == Some(&b'T') || p.first() == Some(&b'S') {
                let tid = p
                    .windows(7)
                    .position(|w| w == b"thread:")
                    .map(|i| &p[i + 7..])
                    .map(|t| t.split(|&b| b == b';').next().unwrap_or(t).to_vec());
                return tid.unwrap_or_default();
            }
        }
    }

    /// z0 + vCont;s of the stopped thread.
    fn step_frame<'a>(frames: &'a [(Vec<u8>, Vec<u8>)], tid: &[u8]) -> &'a [u8] {
        frames
            .iter()
            .find(|(t, _)| t == tid)
            .map(|(_, f)| f.as_slice())
            .unwrap_or_else(|| panic!("a stop on thread {}", String::from_utf8_lossy(tid)))
    }

    /// One breakpoint event: step over the breakpoint the VM is stopped on (if any), let it
    /// run to the next hit, read the registers and 8 bytes at RSP.
    fn event(&mut self) -> u64 {
        let mut handling = Duration::ZERO;
        if let Some(tid) = self.stopped_on.take() {
            let t = Instant::now();
            let step = RawClient::step_frame(&self.z0_vcont, &tid);
            self.stream.write_all(step).expect("write to the gdbstub");
            self.stop_thread();
            let stepped = Instant::now();
            self.step_over.push(stepped - t);
            let arm = std::mem::take(&mut self.arm_continue);
            self.send(&arm);
            self.arm_continue = arm;
            handling += stepped.elapsed();
        } else {
            self.send(&[b"+".as_slice(), &frame("c")].concat());
        }
        let tid = self.stop_thread();
        let stopped = Instant::now();
        let g = std::mem::take(&mut self.g);
        self.send(&g);
        self.g = g;
        // RSP is register 7: 16 hex digits, little-endian, at offset 7 * 16.
        let rsp = {
            let regs = self.packet();
            let hex = std::str::from_utf8(&regs[7 * 16..8 * 16]).expect("hex registers");
            u64::from_str_radix(hex, 16)
                .expect("hex registers")
                .swap_bytes()
        };
        self.m.clear();
        self.m.push(b'+');
        self.m.extend_from_slice(&frame(&format!("m{rsp:x},8")));
        let m = std::mem::take(&mut self.m);
        self.send(&m);
        self.m = m;
        let word = {
            let p = self.packet();
            let hex = std::str::from_utf8(p).unwrap_or("0");
            u64::from_str_radix(hex, 16).unwrap_or(0)
        };
        self.stopped_on = Some(tid);
        self.handling.push(handling + stopped.elapsed());
        self.events += 1;
        word
    }

    /// Steps off the breakpoint, removes it and detaches (`D;1`: the VM runs on).
    fn detach(mut self, breakpoint: u64) {
        if let Some(tid) = self.stopped_on.take() {
            let step = RawClient::step_frame(&self.z0_vcont, &tid).to_vec();
            self.send(&step);
            self.stop_thread();
        } else {
            // Stopped by the connection only; the breakpoint is armed.
            self.send(&[b"+".as_slice(), &frame(&format!("z0,{breakpoint:x},1"))].concat());
            while self.packet() != b"OK" {}
        }
        self.send(&[b"+".as_slice(), &frame("D;1")].concat());
        while self.packet() != b"OK" {}
    }
}

/// A session on the guest's QMP socket with the gdbstub (no OS: the events need none).
fn event_session(g: &live::LiveGuest) -> Session {
    let q = Qemu::open(&g.qmp, &QemuOptions::default()).expect("open the guest");
    Session::from_target(
        "qemu:bench",
        q.into_target(),
        Box::new(vmi_arch_x86::X86::new()),
    )
}

/// One breakpoint event through the library: the next stop on the hook and 8 bytes at RSP
/// read through the session.
fn library_event(events: &mut Events<'_>, session: &Session, openat: Va) -> u64 {
    let e = events
        .next(STOP_TIMEOUT)
        .expect("next event")
        .expect("openat is called");
    assert_eq!(e.kind, EventKind::Breakpoint { addr: openat });
    let mut word = [0u8; 8];
    session
        .virtual_memory(PagingMode::from_registers(&e.registers))
        .read(Va::new(e.registers.rsp), &mut word)
        .expect("8 bytes at RSP");
    u64::from_le_bytes(word)
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
}

fn live_events(c: &mut Criterion) {
    if std::env::var_os("VMI_BENCH_SKIP_LIVE").is_some() {
        eprintln!("SKIP live event benchmarks: VMI_BENCH_SKIP_LIVE is set");
        return;
    }
    let Some(g) = live::LiveGuest::start("6.1", 4, true, 2) else {
        eprintln!("SKIP live event benchmarks: no live guest");
        return;
    };
    let smoke = std::env::args().any(|a| a == "--test");
    let loop_wl = g.run_workload("loop");

    // Symbols and page-table roots from a session without the gdbstub (on the second QMP
    // socket), kept open to read the loop's counter with the guest running.
    let info = {
        let q = Qemu::open(
            &g.ctl,
            &QemuOptions {
                gdbstub: false,
                ..QemuOptions::default()
            },
        )
        .expect("open the guest (no gdbstub)");
        let mut s = Session::from_target(
            "qemu:bench-info",
            q.into_target(),
            Box::new(vmi_arch_x86::X86::new()),
        );
        let os = vmi_os_linux::os::open(&s, false).expect("Linux in the live guest");
        s.set_os(Box::new(os));
        s
    };
    let kernel = vmi_os_linux::linux(&info).unwrap().kernel();
    let openat = kernel.symbol("__x64_sys_openat").expect("__x64_sys_openat");
    let loop_roots = {
        let ps = vmi_os_linux::processes(&info, kernel).expect("processes");
        let dtb = ps
            .items
            .iter()
            .find(|p| p.pid == loop_wl.pid)
            .and_then(|p| p.dtb)
            .expect("the loop's page tables");
        // A PTI kernel's user PGD is the next page.
        vec![dtb, Pa::new(dtb.raw() | 0x1000)]
    };
    let counter = || {
        let mut b = [0u8; 8];
        vmi_os_linux::read_process(&info, kernel, loop_wl.pid, Va::new(loop_wl.counter), &mut b)
            .expect("the loop's counter");
        u64::from_le_bytes(b)
    };
    let loop_rate = |d: Duration| {
        let (a, t) = (counter(), Instant::now());
        std::thread::sleep(d);
        counter().saturating_sub(a) as f64 / t.elapsed().as_secs_f64()
    };
    let unhooked = loop_rate(Duration::from_millis(500));
    assert!(unhooked > 100.0, "the open loop runs: {unhooked}/s");

    // The gdbstub the backend uses (it starts one if QEMU has none; QEMU allows one).
    let gdb_path = {
        let q = Qemu::open(&g.qmp, &QemuOptions::default()).expect("open the guest");
        let address = q
            .details()
            .iter()
            .find(|(k, _)| k == "gdbstub")
            .map(|(_, v)| v.clone())
            .expect("details.gdbstub");
        address
            .strip_prefix("unix:")
            .unwrap_or_else(|| panic!("the gdbstub is not a Unix socket: {address}"))
            .to_owned()
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!(
        "events bench: guest 6.1 4-level, {} vCPUs, gdbstub {gdb_path}, open loop unhooked \
         {unhooked:.0}/s, host load average {}",
        g.vcpus,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // 1 and 2: the floor, then the library, back to back.
    let mut group = c.benchmark_group("events_breakpoint_openat");
    configure(&mut group);
    let mut raw = RawClient::with_breakpoint(&gdb_path, openat.raw());
    let mut raw_time = Duration::ZERO;
    let before = counter();
    group.bench_function("raw_protocol_floor", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(raw.event());
            }
            let d = t.elapsed();
            raw_time += d;
            d
        })
    });
    let raw_events = raw.events;
    let raw_handling = median(&raw.handling);
    let raw_step = median(&raw.step_over);
    raw.detach(openat.raw());
    let raw_progress = counter().saturating_sub(before);

    let session = event_session(&g);
    let mut events = Events::new(&session).expect("events");
    events.record_timings();
    events.break_at(openat, Filter::any()).expect("break_at");
    let mut lib_time = Duration::ZERO;
    let mut lib_events = 0u64;
    group.bench_function("events_next_and_read", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(library_event(&mut events, &session, openat));
            }
            let d = t.elapsed();
            lib_time += d;
            lib_events += iters;
            d
        })
    });
    group.finish();
    let lib_handling = median(events.timings());
    let lib_step = median(events.step_over_timings());
    let stats = events.stats();
    events.finish().expect("finish");
    let raw_rate = raw_events as f64 / raw_time.as_secs_f64();
    let lib_rate = lib_events as f64 / lib_time.as_secs_f64();
    eprintln!(
        "events bench: breakpoint back to back: floor {raw_rate:.1} hits/s over {raw_events} \
         (handling median {:.0} us, step-over {:.0} us, loop progressed {raw_progress}), \
         Events {lib_rate:.1} hits/s over {lib_events} (timings median {:.0} us, step-over \
         {:.0} us, {stats:?}); ratio {:.3}",
        us(raw_handling),
        us(raw_step),
        us(lib_handling),
        us(lib_step),
        lib_rate / raw_rate
    );

    // The gdbstub takes one client at a time.
    drop(session);

    // 2b. Interleaved rounds of the same (skipped in criterion's test mode).
    if !smoke {
        let (mut raw_sum, mut lib_sum) = ((0u64, Duration::ZERO), (0u64, Duration::ZERO));
        let mut lib_timings = Vec::new();
        for round in 0..INTERLEAVED_ROUNDS {
            let mut raw = RawClient::with_breakpoint(&gdb_path, openat.raw());
            raw.event(); // the first stop: its run started at the connection
            let t = Instant::now();
            for _ in 0..INTERLEAVED_EVENTS {
                black_box(raw.event());
            }
            let raw_d = t.elapsed();
            raw.detach(openat.raw());
            let session = event_session(&g);
            let mut events = Events::new(&session).expect("events");
            events.break_at(openat, Filter::any()).expect("break_at");
            library_event(&mut events, &session, openat);
            events.record_timings();
            let t = Instant::now();
            for _ in 0..INTERLEAVED_EVENTS {
                black_box(library_event(&mut events, &session, openat));
            }
            let lib_d = t.elapsed();
            lib_timings.extend_from_slice(events.timings());
            events.finish().expect("finish");
            drop(session);
            let n = INTERLEAVED_EVENTS as f64;
            eprintln!(
                "events bench: interleaved round {round}: floor {:.1} hits/s, Events {:.1} \
                 hits/s, ratio {:.3}",
                n / raw_d.as_secs_f64(),
                n / lib_d.as_secs_f64(),
                raw_d.as_secs_f64() / lib_d.as_secs_f64()
            );
            raw_sum = (raw_sum.0 + INTERLEAVED_EVENTS, raw_sum.1 + raw_d);
            lib_sum = (lib_sum.0 + INTERLEAVED_EVENTS, lib_sum.1 + lib_d);
        }
        let raw_rate = raw_sum.0 as f64 / raw_sum.1.as_secs_f64();
        let lib_rate = lib_sum.0 as f64 / lib_sum.1.as_secs_f64();
        eprintln!(
            "events bench: breakpoint interleaved ({INTERLEAVED_ROUNDS} x {INTERLEAVED_EVENTS}): \
             floor {raw_rate:.1} hits/s, Events {lib_rate:.1} hits/s, ratio {:.3}, Events \
             timings median {:.0} us",
            lib_rate / raw_rate,
            us(median(&lib_timings))
        );
    }

    // 3. A write watchpoint on the loop's counter (one write per iteration): the floor
    // (c -> stop -> g), then the library, filtered to the loop's page-table roots (the other
    // processes of the same binary would write that VA too; none runs).
    let mut group = c.benchmark_group("events_watchpoint_counter");
    configure(&mut group);
    let mut raw = RawClient::connect(&gdb_path, openat.raw());
    assert_eq!(raw.request(&format!("Z2,{:x},8", loop_wl.counter)), b"OK");
    let (mut raw_watch_n, mut raw_watch_time) = (0u64, Duration::ZERO);
    group.bench_function("raw_protocol_floor", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(raw.watch_event());
            }
            let d = t.elapsed();
            raw_watch_n += iters;
            raw_watch_time += d;
            d
        })
    });
    assert_eq!(raw.request(&format!("z2,{:x},8", loop_wl.counter)), b"OK");
    raw.detach_stopped();
    let session = event_session(&g);
    let mut events = Events::new(&session).expect("events");
    events.record_timings();
    events
        .watch(
            Va::new(loop_wl.counter),
            8,
            WatchKind::Write,
            Filter::roots(loop_roots),
        )
        .expect("watch");
    let (mut watch_n, mut watch_time) = (0u64, Duration::ZERO);
    group.bench_function("events_next", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let e = events
                    .next(STOP_TIMEOUT)
                    .expect("next event")
                    .expect("the counter is written");
                assert!(
                    matches!(e.kind, EventKind::Watchpoint { .. }),
                    "{:?}",
                    e.kind
                );
                black_box(e);
            }
            let d = t.elapsed();
            watch_n += iters;
            watch_time += d;
            d
        })
    });
    group.finish();
    let watch_handling = median(events.timings());
    let watch_stats = events.stats();
    events.finish().expect("finish");
    drop(session);
    let (raw_watch, lib_watch) = (
        raw_watch_n as f64 / raw_watch_time.as_secs_f64(),
        watch_n as f64 / watch_time.as_secs_f64(),
    );
    eprintln!(
        "events bench: watchpoint floor {raw_watch:.0} events/s over {raw_watch_n}, Events \
         {lib_watch:.0} events/s over {watch_n} (timings median {:.0} us, {watch_stats:?}); \
         ratio {:.3}",
        us(watch_handling),
        lib_watch / raw_watch
    );

    // 4. Single steps of the vCPU stopped on the open path, the breakpoint removed after the
    // hit: from there on every stop is a step (through the kernel and the user loop). The
    // floor (vCont;s:TID -> stop -> g), then the library.
    let mut group = c.benchmark_group("events_single_step");
    configure(&mut group);
    let mut raw = RawClient::with_breakpoint(&gdb_path, openat.raw());
    raw.send(b"+$c#63");
    let tid = raw.stop_thread();
    assert_eq!(raw.request(&format!("z0,{:x},1", openat.raw())), b"OK");
    let step_frame = [
        b"+".as_slice(),
        &frame(&format!("vCont;s:{}", String::from_utf8_lossy(&tid))),
    ]
    .concat();
    let (mut raw_steps, mut raw_step_time) = (0u64, Duration::ZERO);
    group.bench_function("raw_protocol_floor", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(raw.step_event(&step_frame));
            }
            let d = t.elapsed();
            raw_steps += iters;
            raw_step_time += d;
            d
        })
    });
    raw.detach_stopped();
    let session = event_session(&g);
    let mut events = Events::new(&session).expect("events");
    let hook = events.break_at(openat, Filter::any()).expect("break_at");
    let first = events
        .next(STOP_TIMEOUT)
        .expect("next event")
        .expect("openat is called");
    events.remove(hook).expect("remove the hook");
    let vcpu = first.vcpu;
    let (mut steps, mut step_time) = (0u64, Duration::ZERO);
    let mut last_rip = first.registers.rip;
    let mut moved = 0u64;
    group.bench_function("events_step", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let e = events.step(vcpu).expect("step");
                moved += u64::from(e.registers.rip != last_rip);
                last_rip = e.registers.rip;
            }
            let d = t.elapsed();
            steps += iters;
            step_time += d;
            d
        })
    });
    group.finish();
    events.finish().expect("finish");
    drop(session);
    assert!(moved > 0, "the steps moved RIP");
    let (raw_step, lib_step) = (
        raw_steps as f64 / raw_step_time.as_secs_f64(),
        steps as f64 / step_time.as_secs_f64(),
    );
    eprintln!(
        "events bench: single-step floor {raw_step:.0} steps/s over {raw_steps}, Events \
         {lib_step:.0} steps/s over {steps} ({moved} changed RIP); ratio {:.3}",
        lib_step / raw_step
    );

    let session = event_session(&g);
    // 5. Pause, both vCPUs' registers, resume (the guest running in between: 1 ms, untimed).
    let control = session.control_handle().expect("VmControl");
    let vcpus = session.vcpu_count();
    let mut pauses = Vec::new();
    let mut group = c.benchmark_group("events_pause");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function(format!("pause_registers_{vcpus}_vcpus_resume"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::thread::sleep(Duration::from_millis(1));
                let t = Instant::now();
                control.pause().expect("pause");
                for v in 0..vcpus {
                    black_box(session.registers(v).expect("registers"));
                }
                control.resume().expect("resume");
                let d = t.elapsed();
                pauses.push(d);
                total += d;
            }
            total
        })
    });
    group.finish();
    eprintln!(
        "events bench: pause + {vcpus} vCPUs' registers + resume median {:.0} us over {}",
        us(median(&pauses)),
        pauses.len()
    );
    drop(control);
    drop(session);

    // Other load on the host changes the guest's speed too: a few tries before concluding
    // that something of ours is still armed.
    let mut back = 0.0f64;
    for _ in 0..4 {
        back = back.max(loop_rate(Duration::from_millis(500)));
        if back > unhooked * 0.5 {
            break;
        }
    }
    eprintln!("events bench: open loop after the events {back:.0}/s (before {unhooked:.0}/s)");
    assert!(
        raw_progress > 0,
        "the guest progressed under the raw client"
    );
    assert!(
        back > unhooked * 0.5,
        "the guest is back to speed: {back:.0}/s vs {unhooked:.0}/s"
    );
    drop(info);
    drop(g);
}

criterion_group!(benches, live_events);
criterion_main!(benches);
