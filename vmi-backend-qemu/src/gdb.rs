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
        let deadline = Instant::now() + TIMEOUT;
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
        if !self.running {
            return Ok(());
        }
        self.send_raw(&[0x03], "interrupt")?;
        loop {
            let r = self.recv("interrupt")?;
            if r.starts_with('T') || r.starts_with('S') {
                break;
            }
        }
        self.running = false;
        Ok(())
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
