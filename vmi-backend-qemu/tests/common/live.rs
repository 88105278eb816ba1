//! A live QEMU guest for tests, started by `scripts/fixture-live` and stopped (by its pid)
//! when dropped, on every path including panics. Shared by the backend's and the CLI's tests
//! (`#[path]`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running guest.
pub struct LiveGuest {
    pub pid: u32,
    pub dir: PathBuf,
    pub qmp: PathBuf,
    pub ctl: PathBuf,
    pub input: PathBuf,
    pub serial: PathBuf,
    pub shm: Option<PathBuf>,
    pub vcpus: usize,
    pub mem_bytes: u64,
    pub paging: u8,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A `vmi-workload` started by [`LiveGuest::run_workload`].
#[derive(Debug, Clone)]
pub struct Workload {
    pub pid: u32,
    /// The address of its counter (in its address space).
    pub counter: u64,
    /// Its VMI-WORKLOAD line.
    pub line: String,
}

impl Workload {
    /// The value of `KEY=` in its line.
    pub fn field(&self, key: &str) -> String {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{key} in {}", self.line))
            .to_owned()
    }

    /// An address field (`counter=0x...`).
    pub fn address(&self, key: &str) -> u64 {
        u64::from_str_radix(self.field(key).trim_start_matches("0x"), 16).unwrap()
    }
}

/// One process of the truth `tasks` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub ppid: u32,
    pub name: String,
}

/// A `VMI-TARGET` line.
#[derive(Debug, Clone, Copy)]
pub struct TargetLine {
    pub pid: u32,
    pub heap: u64,
    pub counter: u64,
}

pub fn parse_target_line(l: &str) -> Option<TargetLine> {
    let field = |k: &str| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_owned)
    };
    let hex = |s: String| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Some(TargetLine {
        pid: field("pid=")?.parse().ok()?,
        heap: hex(field("heap=")?)?,
        counter: hex(field("counter=")?)?,
    })
}

impl LiveGuest {
    /// Starts a guest; `None` when no fixture kernel can be had or QEMU is missing: a
    /// `vmi_fixtures::skip`, so the test is reported ignored (or fails under
    /// `$VMI_REQUIRE_FIXTURES`). Other failures panic.
    pub fn start(kernel: &str, paging: u8, shared: bool, vcpus: usize) -> Option<LiveGuest> {
        if Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_err()
        {
            vmi_fixtures::skip("no live guest: qemu-system-x86_64 is not installed");
            return None;
        }
        let mut cmd = Command::new(repo_root().join("scripts/fixture-live"));
        cmd.args([
            "start",
            kernel,
            &paging.to_string(),
            "--vcpus",
            &vcpus.to_string(),
        ]);
        if shared {
            cmd.arg("--shared");
        }
        let out = cmd.output().expect("running scripts/fixture-live");
        if out.status.code() == Some(77) {
            vmi_fixtures::skip(format_args!(
                "no live guest: scripts/fixture-live found no kernel package for {kernel} \
                 (exit 77): {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
            return None;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_owned)
        };
        // Even if start failed half-way, stop what it started.
        let pid: Option<u32> = get("pid").and_then(|p| p.parse().ok());
        assert!(
            out.status.success() && pid.is_some(),
            "fixture-live start failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let g = LiveGuest {
            pid: pid.unwrap_or(0),
            dir: get("dir").unwrap_or_default().into(),
            qmp: get("qmp").unwrap_or_default().into(),
            ctl: get("ctl").unwrap_or_default().into(),
            input: get("input").unwrap_or_default().into(),
            serial: get("serial").unwrap_or_default().into(),
            shm: get("shm").filter(|s| !s.is_empty()).map(PathBuf::from),
            vcpus: get("vcpus").and_then(|v| v.parse().ok()).unwrap_or(0),
            mem_bytes: get("mem_bytes").and_then(|v| v.parse().ok()).unwrap_or(0),
            paging: get("paging").and_then(|v| v.parse().ok()).unwrap_or(0),
        };
        Some(g)
    }

    /// The console so far (`\r` removed).
    pub fn serial_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).replace('\r', "")
    }

    /// Lines of a truth section.
    pub fn section(&self, name: &str) -> Vec<String> {
        let text = self.serial_text();
        let begin = format!("@@VMI-BEGIN {name}@@");
        let end = format!("@@VMI-END {name}@@");
        text.lines()
            .skip_while(|l| *l != begin)
            .skip(1)
            .take_while(|l| *l != end)
            .map(str::to_owned)
            .collect()
    }

    /// The truth `tasks` (pid, ppid, name).
    pub fn tasks(&self) -> Vec<Task> {
        self.section("tasks")
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.splitn(6, ' ').collect();
                Some(Task {
                    pid: f.first()?.parse().ok()?,
                    ppid: f.get(1)?.parse().ok()?,
                    name: (*f.get(5)?).to_owned(),
                })
            })
            .collect()
    }

    /// The three known targets (alpha, beta, gamma).
    pub fn targets(&self) -> Vec<TargetLine> {
        self.section("targets")
            .iter()
            .filter_map(|l| parse_target_line(l))
            .collect()
    }

    /// Starts one more vmi-target in the guest (through ttyS1) and returns its line.
    pub fn spawn(&self, role: &str) -> TargetLine {
        let before = self.serial_text().matches("VMI-TARGET ").count();
        let mut s = UnixStream::connect(&self.input).expect("guest input socket");
        s.write_all(format!("spawn {role}\n").as_bytes()).unwrap();
        let line = self
            .wait_serial(Duration::from_secs(30), |t| {
                t.lines()
                    .filter(|l| l.starts_with("VMI-TARGET "))
                    .nth(before)
                    .map(str::to_owned)
            })
            .expect("the spawned vmi-target printed nothing");
        parse_target_line(&line).expect("VMI-TARGET line")
    }

    /// Starts `/bin/vmi-workload ARGS` in the guest (scripts/guest/vmi-workload.c) and
    /// returns what its VMI-WORKLOAD line says.
    pub fn run_workload(&self, args: &str) -> Workload {
        let mode = args.split_whitespace().next().unwrap_or("");
        let before = self.serial_text().matches("VMI-WORKLOAD ").count();
        let mut s = UnixStream::connect(&self.input).expect("guest input socket");
        s.write_all(format!("run {args}\n").as_bytes()).unwrap();
        let line = self
            .wait_serial(Duration::from_secs(30), |t| {
                // Complete lines only: the console may be caught mid-line.
                let complete = &t[..t.rfind('\n').map_or(0, |i| i + 1)];
                complete
                    .lines()
                    .filter(|l| l.starts_with("VMI-WORKLOAD "))
                    .nth(before)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("vmi-workload {args} printed nothing"));
        let w = Workload {
            pid: 0,
            counter: 0,
            line,
        };
        assert_eq!(w.field("mode"), mode, "{}", w.line);
        Workload {
            pid: w.field("pid").parse().unwrap(),
            counter: w.address("counter"),
            ..w
        }
    }

    /// The workload binary the guest runs (for its disassembly).
    pub fn workload_binary(&self) -> PathBuf {
        self.dir.join("vmi-workload")
    }

    /// Polls the console until `f` finds something.
    pub fn wait_serial<T>(&self, timeout: Duration, f: impl Fn(&str) -> Option<T>) -> Option<T> {
        let t0 = Instant::now();
        loop {
            if let Some(v) = f(&self.serial_text()) {
                return Some(v);
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One QMP command on the control socket (a fresh connection each time).
    pub fn ctl(&self, command: &str, arguments: serde_json::Value) -> serde_json::Value {
        let s = UnixStream::connect(&self.ctl).expect("ctl socket");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        // The greeting, after any events queued while the previous client was connected.
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "QMP control socket closed");
            if line.contains("\"QMP\"") {
                break;
            }
        }
        let mut send = |v: serde_json::Value| {
            w.write_all(format!("{v}\n").as_bytes()).unwrap();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                let v: serde_json::Value = serde_json::from_str(&l).expect("QMP JSON");
                if v.get("event").is_none() {
                    return v;
                }
            }
        };
        send(serde_json::json!({"execute": "qmp_capabilities"}));
        let reply = send(serde_json::json!({"execute": command, "arguments": arguments}));
        assert!(reply.get("error").is_none(), "{command}: {reply}");
        reply["return"].clone()
    }

    /// Whether the guest runs (QMP `query-status` on the control socket).
    pub fn running(&self) -> bool {
        self.ctl("query-status", serde_json::json!({}))["running"]
            .as_bool()
            .unwrap()
    }
}

impl Drop for LiveGuest {
    fn drop(&mut self) {
        if self.pid == 0 {
            return;
        }
        let ok = Command::new(repo_root().join("scripts/fixture-live"))
            .args(["stop", &self.pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Our own QEMU, by its pid (it may be gone already: a test killed it).
            let _ = Command::new("kill")
                .args(["-9", &self.pid.to_string()])
                .status();
            if self.dir.to_string_lossy().starts_with("/tmp/vmi-live.") {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            if let Some(shm) = &self.shm {
                let _ = std::fs::remove_file(shm);
            }
        }
    }
}
