//! Shared helpers of the Linux tests on real guests built by `scripts/fixture-guest`: finding
//! the guests, parsing the truth each printed about itself, opening sessions and kernels.

#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vmi_arch_x86 as _;
use vmi_backend_file as _;
use vmi_core::{OpenOptions, Session};
use vmi_os_linux::Kernel;

/// A real guest and the truth it printed.
pub struct Guest {
    pub dir: PathBuf,
    pub name: String,
    pub paging: u8,
    pub vcpus: usize,
    pub kernel_package: String,
    pub kernel_release: String,
}

/// One line of `truth/tasks`: `pid ppid uid gid threads name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTruth {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub threads: u32,
    /// The comm field of /proc/PID/stat: task->comm, except that workqueue workers carry a
    /// `-workqueue`/`+workqueue` suffix and long kthread names are complete, so task->comm
    /// is a prefix of it.
    pub name: String,
}

/// One line of `truth/targets`: a known process and the addresses it printed.
#[derive(Debug, Clone)]
pub struct TargetTruth {
    pub pid: u32,
    pub heap: u64,
    pub data: u64,
    pub counter: u64,
    pub threads: u32,
}

impl Guest {
    pub fn elf(&self) -> PathBuf {
        self.dir.join("memory.elf")
    }

    pub fn truth(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("truth").join(name))
            .unwrap_or_else(|e| panic!("{}: truth/{name}: {e}", self.name))
    }

    pub fn kallsyms(&self) -> BTreeMap<String, u64> {
        self.truth("kallsyms")
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                it.next()?;
                Some((it.next()?.to_owned(), addr))
            })
            .collect()
    }

    pub fn tasks(&self) -> Vec<TaskTruth> {
        self.truth("tasks")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut it = l.splitn(6, ' ');
                let mut num = || it.next().unwrap().parse::<u32>().unwrap();
                let (pid, ppid, uid, gid, threads) = (num(), num(), num(), num(), num());
                TaskTruth {
                    pid,
                    ppid,
                    uid,
                    gid,
                    threads,
                    name: it.next().unwrap_or("").to_owned(),
                }
            })
            .collect()
    }

    /// `truth/tasks-threads`: pid -> thread ids.
    pub fn task_threads(&self) -> BTreeMap<u32, Vec<u32>> {
        self.truth("tasks-threads")
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace().map(|x| x.parse::<u32>().unwrap());
                Some((it.next()?, it.collect()))
            })
            .collect()
    }

    pub fn targets(&self) -> Vec<TargetTruth> {
        self.truth("targets")
            .lines()
            .filter(|l| l.starts_with("VMI-TARGET "))
            .map(|l| {
                let field = |k: &str| {
                    l.split_whitespace()
                        .find_map(|f| f.strip_prefix(k))
                        .unwrap_or_else(|| panic!("no {k} in {l}"))
                        .to_owned()
                };
                let hex = |s: String| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
                TargetTruth {
                    pid: field("pid=").parse().unwrap(),
                    heap: hex(field("heap=")),
                    data: hex(field("data=")),
                    counter: hex(field("counter=")),
                    threads: field("threads=").parse().unwrap(),
                }
            })
            .collect()
    }

    pub fn session(&self) -> Session {
        Session::open(self.elf().to_str().unwrap(), &OpenOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// The kernel found from the guest's own memory (kallsyms + BTF).
    pub fn kernel(&self, session: &Session) -> Kernel {
        vmi_os_linux::discover(session).unwrap_or_else(|e| panic!("{}: discover: {e}", self.name))
    }
}

fn fixtures_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VMI_FIXTURES_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("vmi-fixtures")
}

fn load(dir: &Path) -> Option<Guest> {
    if !dir.join("COMPLETE").exists() {
        return None;
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("guest.json")).ok()?).ok()?;
    Some(Guest {
        dir: dir.to_owned(),
        name: dir.file_name()?.to_string_lossy().into_owned(),
        paging: u8::try_from(meta["paging"].as_u64()?).ok()?,
        vcpus: usize::try_from(meta["vcpus"].as_u64()?).ok()?,
        kernel_package: meta["kernel_package"].as_str()?.to_owned(),
        kernel_release: meta["kernel_release"].as_str()?.to_owned(),
    })
}

/// The real guests: `$VMI_FIXTURE_GUESTS` (colon-separated), else every complete guest in the
/// fixture cache. Empty means skip (with a message), unless `$VMI_REQUIRE_FIXTURES` is set.
pub fn guests() -> Vec<Guest> {
    let dirs: Vec<PathBuf> = match std::env::var("VMI_FIXTURE_GUESTS") {
        Ok(list) if !list.is_empty() => list.split(':').map(PathBuf::from).collect(),
        _ => std::fs::read_dir(fixtures_dir().join("guests"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default(),
    };
    let mut guests: Vec<Guest> = dirs.iter().filter_map(|d| load(d)).collect();
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    if guests.is_empty() {
        assert!(
            std::env::var_os("VMI_REQUIRE_FIXTURES").is_none(),
            "VMI_REQUIRE_FIXTURES is set but no real-guest fixture exists"
        );
        eprintln!("SKIP: no real-guest fixtures (scripts/fixture-guest 6.1 5, or scripts/test)");
    }
    guests
}

/// Whether `ours` (task->comm) names the same task as the truth's `/proc/PID/stat` comm.
pub fn comm_matches(ours: &str, truth: &str) -> bool {
    ours == truth || (ours.len() >= 15 && truth.starts_with(ours)) || {
        // kworker/0:1-events, kworker/u4:0+flush-...: the suffix is the workqueue's name.
        truth.starts_with("kworker/")
            && truth.starts_with(ours)
            && matches!(truth.as_bytes().get(ours.len()), Some(b'-' | b'+'))
    }
}
