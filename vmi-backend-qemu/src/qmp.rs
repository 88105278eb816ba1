//! A small QMP client: one JSON object per line, asynchronous events skipped, a timeout on
//! every read.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::QemuError;

/// At most this many queued events are skipped before the greeting.
const MAX_EVENTS_BEFORE_GREETING: usize = 16;

/// How long to wait for the greeting: a socket that is not QMP may say nothing at all.
const GREETING_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time for a command's reply (HMP `info mtree -f` takes milliseconds).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply line longer than this is not QMP (`info mtree -f` of a large machine is ~100 KiB).
const MAX_LINE: usize = 64 << 20;

/// A QMP connection in command mode.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").finish_non_exhaustive()
    }
}

impl Qmp {
    /// Connects to the QMP Unix socket at `path`, checks the greeting and enters command mode.
    pub fn connect(path: &Path) -> Result<Qmp, QemuError> {
        let stream = UnixStream::connect(path).map_err(|source| QemuError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let writer = stream.try_clone().map_err(|source| QemuError::Connect {
            path: path.to_owned(),
            source,
        })?;
        writer
            .set_write_timeout(Some(COMMAND_TIMEOUT))
            .map_err(|source| QemuError::Connect {
                path: path.to_owned(),
                source,
            })?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let not_qmp = |detail: String| QemuError::NotQmp {
            path: path.to_owned(),
            detail,
        };
        // The greeting comes first on a fresh connection, but an event QEMU queued on the
        // socket's chardev while the previous client left (seen: `RESUME`) may come before
        // it; skip a bounded number of those.
        let mut greeting = None;
        for _ in 0..MAX_EVENTS_BEFORE_GREETING {
            let value = match qmp.read_value("waiting for the QMP greeting", GREETING_TIMEOUT) {
                Ok(v) => v,
                Err(QemuError::Timeout { .. }) => {
                    return Err(not_qmp(format!(
                        "no greeting within {}s",
                        GREETING_TIMEOUT.as_secs()
                    )))
                }
                Err(QemuError::Protocol { detail, .. }) => return Err(not_qmp(detail)),
                Err(QemuError::Closed { .. }) => {
                    return Err(not_qmp(
                        "the peer closed the connection without a greeting".into(),
                    ))
                }
                Err(e) => return Err(e),
            };
            if value.get("QMP").is_some() {
                greeting = Some(value);
                break;
            }
            if value.get("event").is_none() {
                return Err(not_qmp(format!("greeting without \"QMP\": {value}")));
            }
        }
        if greeting.is_none() {
            return Err(not_qmp(format!(
                "{MAX_EVENTS_BEFORE_GREETING} events and no greeting"
            )));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// The underlying socket (for its peer credentials).
    pub fn stream(&self) -> &UnixStream {
        &self.writer
    }

    fn read_value(&mut self, doing: &str, timeout: Duration) -> Result<Value, QemuError> {
        let io = |source: std::io::Error| QemuError::Io {
            channel: "QMP",
            doing: doing.to_owned(),
            source,
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(io)?;
        let mut line = Vec::new();
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(QemuError::Timeout {
                        channel: "QMP",
                        secs: timeout.as_secs(),
                        doing: doing.to_owned(),
                    })
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    if let Some(signal) = crate::sys::pending_signal() {
                        return Err(QemuError::Interrupted { signal });
                    }
                    continue;
                }
                Err(e) => return Err(io(e)),
            };
            if buf.is_empty() {
                return Err(QemuError::Closed {
                    channel: "QMP",
                    doing: doing.to_owned(),
                });
            }
            let (used, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&buf[..i]);
                    (i + 1, true)
                }
                None => {
                    line.extend_from_slice(buf);
                    (buf.len(), false)
                }
            };
            self.reader.consume(used);
            if line.len() > MAX_LINE {
                return Err(QemuError::Protocol {
                    command: doing.to_owned(),
                    detail: format!("a line longer than {MAX_LINE} bytes"),
                });
            }
            if done {
                return serde_json::from_slice(&line).map_err(|e| QemuError::Protocol {
                    command: doing.to_owned(),
                    detail: format!(
                        "not JSON ({e}): {:?}",
                        String::from_utf8_lossy(&line[..line.len().min(80)])
                    ),
                });
            }
        }
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QemuError> {
        self.execute_timeout(command, arguments, COMMAND_TIMEOUT)
    }

    /// [`Qmp::execute`] with a given reply timeout (`pmemsave` of a large guest).
    pub fn execute_timeout(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QemuError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .map_err(|source| match source.kind() {
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset => QemuError::Closed {
                    channel: "QMP",
                    doing: command.to_owned(),
                },
                _ => QemuError::Io {
                    channel: "QMP",
                    doing: command.to_owned(),
                    source,
                },
            })?;
        loop {
            let reply = self.read_value(command, timeout)?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(QemuError::Command {
                    command: command.to_owned(),
                    class: err["class"].as_str().unwrap_or("?").to_owned(),
                    desc: err["desc"].as_str().unwrap_or("?").to_owned(),
                });
            }
            return Err(QemuError::Protocol {
                command: command.to_owned(),
                detail: format!("neither return nor error: {reply}"),
            });
        }
    }

    /// Runs a human monitor (HMP) command and returns its text.
    pub fn hmp(&mut self, command_line: &str) -> Result<String, QemuError> {
        let v = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| QemuError::Protocol {
                command: command_line.to_owned(),
                detail: format!("HMP output is not a string: {v}"),
            })
    }

    /// Whether the guest's vCPUs run (`query-status`).
    pub fn running(&mut self) -> Result<bool, QemuError> {
        let v = self.execute("query-status", None)?;
        v["running"].as_bool().ok_or_else(|| QemuError::Protocol {
            command: "query-status".into(),
            detail: format!("no running field: {v}"),
        })
    }
}
