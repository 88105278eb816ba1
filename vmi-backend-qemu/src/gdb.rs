//! A small GDB remote serial protocol client for QEMU's gdbstub: registers of every vCPU, stop
//! and continue. No-ack mode, pipelined requests, a timeout on every read.
//!
//! QEMU's stub stops the VM when a client connects and resumes it on `D;1`. While the VM
//! runs, any byte is an interrupt (the request is dropped), so the client tracks the stub's
//! state and always stops (`\x03`) before a request.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vmi_core::event::WatchKind;

use crate::error::QemuError;
use crate::layout::GdbAddress;

/// Time for any reply (QEMU answers in microseconds; a busy stub never answers).
const TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a packet's size (a `g` reply is ~1.2 KiB).
const MAX_PACKET: usize = 1 << 20;

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
        }
    }
    fn set_write_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A connection to the gdbstub.
pub struct Gdb {
    stream: Stream,
    buf: Vec<u8>,
    /// Whether the stub believes the VM runs (then any byte interrupts it).
    running: bool,
    no_ack: bool,
    /// Thread ids of the vCPUs, in vCPU order.
    threads: Vec<String>,
    address: String,
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// Frames `data` as a packet (`$data#cs`).
fn frame(data: &str, out: &mut Vec<u8>) {
    out.push(b'$');
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(format!("#{:02x}", checksum(data.as_bytes())).as_bytes());
}

impl Gdb {
    /// Connects (which stops the VM), checks the stub answers, enters no-ack mode and lists
    /// the vCPU threads. The stub is left stopped.
    pub fn connect(address: &GdbAddress) -> Result<Gdb, QemuError> {
        let io = |source| QemuError::Io {
            channel: "gdbstub",
            doing: format!("connecting to {address}"),
            source,
        };
        let stream = match address {
            GdbAddress::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(io)?),
            GdbAddress::Tcp(a) => {
                let s = TcpStream::connect(a.as_str()).map_err(io)?;
                // Without it, small request/reply exchanges wait for delayed ACKs.
                s.set_nodelay(true).map_err(io)?;
                Stream::Tcp(s)
            }
        };
        stream.set_write_timeout(TIMEOUT).map_err(io)?;
        let mut gdb = Gdb {
            stream,
            buf: Vec::new(),
            running: false,
            no_ack: false,
            threads: Vec::new(),
            address: address.to_string(),
        };
        match gdb.request("qSupported:swbreak+;hwbreak+") {
            Ok(_) => {}
            Err(QemuError::Timeout { .. } | QemuError::Closed { .. }) => {
                return Err(QemuError::GdbBusy {
                    address: address.to_string(),
                })
            }
            Err(e) => return Err(e),
        }
        if gdb.request("QStartNoAckMode")? == "OK" {
            gdb.no_ack = true;
        }
        let mut threads = Vec::new();
        let mut reply = gdb.request("qfThreadInfo")?;
        while let Some(list) = reply.strip_prefix('m') {
            threads.extend(list.split(',').filter(|t| !t.is_empty()).map(str::to_owned));
            if threads.len() > 4096 {
                break;
            }
            reply = gdb.request("qsThreadInfo")?;
        }
        if threads.is_empty() {
            return Err(QemuError::Gdb {
                request: "qfThreadInfo".into(),
                reply,
            });
        }
        gdb.threads = threads;
        Ok(gdb)
    }

    /// The stub's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Number of vCPUs (threads).
    pub fn vcpus(&self) -> usize {
        self.threads.len()
    }

    /// Whether the stub has the VM running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    fn err_io(&self, doing: &str, source: std::io::Error) -> QemuError {
        match source.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => QemuError::Timeout {
                channel: "gdbstub",
                secs: TIMEOUT.as_secs(),
                doing: doing.to_owned(),
            },
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof => {
                QemuError::Closed {
                    channel: "gdbstub",
                    doing: doing.to_owned(),
                }
            }
            _ => QemuError::Io {
                channel: "gdbstub",
                doing: doing.to_owned(),
                source,
            },
        }
    }

    fn send_raw(&mut self, bytes: &[u8], doing: &str) -> Result<(), QemuError> {
        self.stream
            .write_all(bytes)
            .map_err(|e| self.err_io(doing, e))
    }

    /// Reads more bytes into the buffer, honouring the deadline.
    fn fill(&mut self, doing: &str, deadline: Instant) -> Result<(), QemuError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.err_io(doing, ErrorKind::TimedOut.into()));
        }
        self.stream
            .set_read_timeout(left)
            .map_err(|e| self.err_io(doing, e))?;
        let mut chunk = [0u8; 16384];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(self.err_io(doing, ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    if let Some(signal) = crate::sys::pending_signal() {
                        return Err(QemuError::Interrupted { signal });
                    }
                }
                Err(e) => return Err(self.err_io(doing, e)),
            }
        }
    }

    /// Receives one packet's payload (acks and stray bytes before `$` are skipped).
    fn recv(&mut self, doing: &str) -> Result<String, QemuError> {
        self.recv_by(doing, Instant::now() + TIMEOUT)
    }

    /// [`Gdb::recv`] with a deadline of the caller's.
    fn recv_by(&mut self, doing: &str, deadline: Instant) -> Result<String, QemuError> {
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == b'$') {
                if let Some(hash) = self.buf[start..].iter().position(|&b| b == b'#') {
                    let hash = start + hash;
                    if self.buf.len() >= hash + 3 {
                        let payload = self.buf[start + 1..hash].to_vec();
                        let sum = std::str::from_utf8(&self.buf[hash + 1..hash + 3])
                            .ok()
                            .and_then(|s| u8::from_str_radix(s, 16).ok());
                        self.buf.drain(..hash + 3);
                        if sum != Some(checksum(&payload)) {
                            return Err(QemuError::Gdb {
                                request: doing.to_owned(),
                                reply: "bad checksum".into(),
                            });
                        }
                        if !self.no_ack {
                            self.send_raw(b"+", doing)?;
                        }
                        return String::from_utf8(payload).map_err(|_| QemuError::Gdb {
                            request: doing.to_owned(),
                            reply: "not UTF-8".into(),
                        });
                    }
                }
                if self.buf.len() - start > MAX_PACKET {
                    return Err(QemuError::Gdb {
                        request: doing.to_owned(),
                        reply: format!("a packet longer than {MAX_PACKET} bytes"),
                    });
                }
            } else {
                self.buf.clear();
            }
            self.fill(doing, deadline)?;
        }
    }

    /// Sends `data` and returns the reply. The stub must be stopped.
    pub fn request(&mut self, data: &str) -> Result<String, QemuError> {
        let mut out = Vec::new();
        frame(data, &mut out);
        self.send_raw(&out, data)?;
        self.recv_reply(data)
    }

    /// The reply to a request other than `?`: console output (`O...`) and stop replies
    /// (`T..`, `S..`; QEMU sends one unasked when a client connects and the VM stops) are
    /// skipped. No reply to those requests starts with `T` or `S`: hex is lowercase.
    fn recv_reply(&mut self, doing: &str) -> Result<String, QemuError> {
        loop {
            let r = self.recv(doing)?;
            let stop_reply = (r.starts_with('T') || r.starts_with('S'))
                && r.as_bytes().get(1).is_some_and(u8::is_ascii_hexdigit);
            if stop_reply || (r.starts_with('O') && r != "OK") {
                continue;
            }
            return Ok(r);
        }
    }

    /// Sends several requests at once and reads their replies in order.
    ///
    /// QEMU's system-mode stub does not wait for acks before sending, so this works in ack
    /// mode too (QEMU 7.2 has no no-ack mode); our acks are sent while the VM is stopped.
    pub fn pipeline(&mut self, requests: &[String]) -> Result<Vec<String>, QemuError> {
        let mut out = Vec::new();
        for r in requests {
            frame(r, &mut out);
        }
        self.send_raw(&out, "pipelined requests")?;
        requests.iter().map(|r| self.recv_reply(r)).collect()
    }

    /// Stops the VM if the stub has it running, and waits for the stop reply.
    pub fn stop(&mut self) -> Result<(), QemuError> {
        self.halt().map(drop)
    }

    /// Stops the VM if the stub has it running; returns the stop reply that ended the run
    /// (the interrupt's own `T02`, or an event's that was on its way: QEMU ignores a `\x03`
    /// that reaches it stopped, so exactly one reply comes). `None` if it was stopped.
    pub fn halt(&mut self) -> Result<Option<StopReply>, QemuError> {
        if !self.running {
            return Ok(None);
        }
        self.send_raw(&[0x03], "interrupt")?;
        loop {
            let r = self.recv("interrupt")?;
            if let Some(stop) = StopReply::parse(&r) {
                self.running = false;
                return Ok(Some(stop));
            }
        }
    }

    /// Waits until `deadline` for the stop reply of a running VM (letting it run first if it
    /// is stopped). `None`: the deadline passed and it still runs.
    pub fn wait_stop(&mut self, deadline: Instant) -> Result<Option<StopReply>, QemuError> {
        self.cont()?;
        loop {
            match self.recv_by("waiting for a stop", deadline) {
                Ok(r) => {
                    if let Some(stop) = StopReply::parse(&r) {
                        self.running = false;
                        return Ok(Some(stop));
                    }
                }
                Err(QemuError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Executes one instruction on vCPU `index` alone (`vCont;s:TID`: the others stay
    /// stopped; a plain `s` would let them run) and returns its stop reply.
    pub fn step(&mut self, index: usize) -> Result<StopReply, QemuError> {
        let thread = self.thread(index, || format!("step vCPU {index}"))?;
        let request = format!("vCont;s:{thread}");
        let mut out = Vec::new();
        frame(&request, &mut out);
        self.send_raw(&out, &request)?;
        self.running = true;
        loop {
            let r = self.recv(&request)?;
            if let Some(stop) = StopReply::parse(&r) {
                self.running = false;
                return Ok(stop);
            }
        }
    }

    /// The thread id of vCPU `index`, or an error for `doing` naming how many there are.
    fn thread(&self, index: usize, doing: impl FnOnce() -> String) -> Result<String, QemuError> {
        self.threads
            .get(index)
            .cloned()
            .ok_or_else(|| QemuError::Gdb {
                request: doing(),
                reply: format!("the stub lists {} vCPUs", self.threads.len()),
            })
    }

    /// The vCPU index of a stop reply's thread (vCPU 0 when it names none).
    pub fn vcpu_of(&self, stop: &StopReply) -> Option<usize> {
        match &stop.thread {
            None => Some(0),
            Some(t) => self.threads.iter().position(|x| thread_eq(x, t)),
        }
    }

    /// Inserts (`Z`) or removes (`z`) a breakpoint or watchpoint of gdb type `kind` (0 soft
    /// breakpoint, 1 hardware, 2 write, 3 read, 4 access watchpoint). The stub must be stopped.
    pub fn point(&mut self, insert: bool, kind: u8, addr: u64, len: u64) -> Result<(), QemuError> {
        let request = format!("{}{kind},{addr:x},{len:x}", if insert { 'Z' } else { 'z' });
        match self.request(&request)?.as_str() {
            "OK" => Ok(()),
            "" => Err(QemuError::Gdb {
                request,
                reply: "not supported by this stub".into(),
            }),
            other => Err(QemuError::Gdb {
                request,
                reply: other.to_owned(),
            }),
        }
    }

    /// Sets register `number` (gdb numbering) of vCPU `index` (`Hg` + `P`). Stopped stub.
    pub fn write_register(
        &mut self,
        index: usize,
        number: u32,
        value: u64,
    ) -> Result<(), QemuError> {
        let thread = self.thread(index, || format!("write a register of vCPU {index}"))?;
        let hex: String = value
            .to_le_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let replies = self.pipeline(&[format!("Hg{thread}"), format!("P{number:x}={hex}")])?;
        if replies.iter().all(|r| r == "OK") {
            Ok(())
        } else {
            Err(QemuError::Gdb {
                request: format!("P{number:x}"),
                reply: replies.join(" / "),
            })
        }
    }

    /// Lets the VM run (`c`; no reply until the next stop).
    pub fn cont(&mut self) -> Result<(), QemuError> {
        if self.running {
            return Ok(());
        }
        let mut out = Vec::new();
        frame("c", &mut out);
        self.send_raw(&out, "c")?;
        self.running = true;
        Ok(())
    }

    /// The raw `g` payloads (hex) of every vCPU. The stub must be stopped.
    pub fn read_all_registers(&mut self) -> Result<Vec<String>, QemuError> {
        let mut reqs = Vec::with_capacity(self.threads.len() * 2);
        for t in &self.threads {
            reqs.push(format!("Hg{t}"));
            reqs.push("g".to_owned());
        }
        let replies = self.pipeline(&reqs)?;
        let mut out = Vec::with_capacity(self.threads.len());
        for (i, pair) in replies.chunks(2).enumerate() {
            if pair[0] != "OK" || pair[1].starts_with('E') || pair[1].is_empty() {
                return Err(QemuError::Gdb {
                    request: format!("registers of vCPU {i}"),
                    reply: format!("{} / {}", pair[0], pair[1]),
                });
            }
            out.push(pair[1].clone());
        }
        Ok(out)
    }

    /// The raw `g` payload (hex) of vCPU `index` alone (one pipelined `Hg`/`g`). Stopped stub.
    pub fn read_registers(&mut self, index: usize) -> Result<String, QemuError> {
        let thread = self.thread(index, || format!("registers of vCPU {index}"))?;
        let mut replies = self.pipeline(&[format!("Hg{thread}"), "g".to_owned()])?;
        let g = replies.pop().unwrap_or_default();
        if replies.first().map(String::as_str) != Some("OK") || g.starts_with('E') || g.is_empty() {
            return Err(QemuError::Gdb {
                request: format!("registers of vCPU {index}"),
                reply: format!("{replies:?} / {g}"),
            });
        }
        Ok(g)
    }

    /// Steps vCPU `index` over the software breakpoint at `addr` it is stopped on: removes
    /// it, steps that vCPU alone, inserts it again (also when the step failed, so that the
    /// hook does not silently vanish). Returns the step's stop reply.
    ///
    /// The removal must be answered before the step is sent: pipelined, QEMU 7.2 may run the
    /// step while the breakpoint is still in place and report it again with nothing executed.
    pub fn step_over(&mut self, index: usize, addr: u64) -> Result<StopReply, QemuError> {
        self.point(false, 0, addr, 1)?;
        let stepped = self.step(index);
        let inserted = self.point(true, 0, addr, 1);
        let stop = stepped?;
        inserted?;
        Ok(stop)
    }

    /// Detaches (`D;1`, which lets the VM run) and closes. Stops first if running.
    pub fn detach(mut self) -> Result<(), QemuError> {
        self.stop()?;
        let r = self.request("D;1")?;
        if r != "OK" {
            return Err(QemuError::Gdb {
                request: "D;1".into(),
                reply: r,
            });
        }
        Ok(())
    }
}

/// Whether two thread ids name the same thread (`p01.02` and `p1.2` are one; QEMU zero-pads).
fn thread_eq(a: &str, b: &str) -> bool {
    fn norm(t: &str) -> Vec<u64> {
        t.trim_start_matches('p')
            .split('.')
            .map(|n| u64::from_str_radix(n, 16).unwrap_or(u64::MAX))
            .collect()
    }
    a == b || norm(a) == norm(b)
}

/// A stop reply (`T05thread:p01.02;watch:4a82f0;`, `S05`, `T02thread:p01.01;`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReply {
    /// The signal: 5 (SIGTRAP) for breakpoints, steps and watchpoints, 2 for an interrupt.
    pub signal: u8,
    /// The thread (vCPU) it names.
    pub thread: Option<String>,
    /// A watchpoint's kind (`watch`, `rwatch`, `awatch`) and data address.
    pub watch: Option<(WatchKind, u64)>,
}

impl StopReply {
    /// Parses a stop reply; `None` for any other packet.
    pub fn parse(reply: &str) -> Option<StopReply> {
        let kind = reply.as_bytes().first()?;
        if !matches!(kind, b'T' | b'S') {
            return None;
        }
        let signal = u8::from_str_radix(reply.get(1..3)?, 16).ok()?;
        let mut stop = StopReply {
            signal,
            thread: None,
            watch: None,
        };
        if *kind == b'T' {
            for pair in reply[3..].split(';').filter(|p| !p.is_empty()) {
                let Some((key, value)) = pair.split_once(':') else {
                    continue;
                };
                let watch = match key {
                    "thread" => {
                        stop.thread = Some(value.to_owned());
                        continue;
                    }
                    "watch" => WatchKind::Write,
                    "rwatch" => WatchKind::Read,
                    "awatch" => WatchKind::Access,
                    _ => continue,
                };
                if let Ok(addr) = u64::from_str_radix(value, 16) {
                    stop.watch = Some((watch, addr));
                }
            }
        }
        Some(stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_replies_as_qemu_sends_them() {
        assert_eq!(
            StopReply::parse("T05thread:p01.02;"),
            Some(StopReply {
                signal: 5,
                thread: Some("p01.02".into()),
                watch: None
            })
        );
        assert_eq!(
            StopReply::parse("T05thread:p01.01;watch:ffffffff8a82f0;")
                .unwrap()
                .watch,
            Some((WatchKind::Write, 0x00ff_ffff_ff8a_82f0))
        );
        assert_eq!(
            StopReply::parse("T05thread:01;awatch:10;").unwrap().watch,
            Some((WatchKind::Access, 0x10))
        );
        assert_eq!(StopReply::parse("S02").unwrap().signal, 2);
        for not_a_stop in ["OK", "E22", "", "T", "Tzz", "m0102"] {
            assert_eq!(StopReply::parse(not_a_stop), None, "{not_a_stop}");
        }
        assert!(thread_eq("p01.02", "p1.2"));
        assert!(!thread_eq("p01.02", "p01.01"));
    }
}
