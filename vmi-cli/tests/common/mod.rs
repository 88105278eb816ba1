//! Shared helpers of the `vmi` command tests: finding the real-guest fixtures built by
//! `scripts/fixture-guest` and running the real binary.

#![allow(dead_code)] // each test file uses a different part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A real guest built by `scripts/fixture-guest`, with the truth it printed about itself.
pub struct Guest {
    pub dir: PathBuf,
    pub name: String,
    /// 4 or 5.
    pub paging: u8,
    pub vcpus: usize,
    pub mem_bytes: u64,
    pub kernel_package: String,
}

/// One line of `vcpus.tsv`: what QEMU's `info registers -a` said at dump time.
#[derive(Debug)]
pub struct VcpuTruth {
    pub index: usize,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
}

impl Guest {
    pub fn elf(&self) -> PathBuf {
        self.dir.join("memory.elf")
    }

    pub fn raw(&self) -> PathBuf {
        self.dir.join("memory.raw")
    }

    pub fn truth(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("truth").join(name))
            .unwrap_or_else(|e| panic!("{}: truth/{name}: {e}", self.name))
    }

    /// `/proc/kallsyms` lines the guest printed: name -> address.
    pub fn kallsyms(&self) -> BTreeMap<String, u64> {
        self.truth("kallsyms")
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let _kind = it.next()?;
                Some((it.next()?.to_owned(), addr))
            })
            .collect()
    }

    pub fn vcpu_truth(&self) -> Vec<VcpuTruth> {
        let text = std::fs::read_to_string(self.dir.join("vcpus.tsv")).unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                VcpuTruth {
                    index: f[0].parse().unwrap(),
                    cr0: hex(f[1]),
                    cr3: hex(f[2]),
                    cr4: hex(f[3]),
                }
            })
            .collect()
    }

    pub fn paging_mode_name(&self) -> &'static str {
        if self.paging == 5 {
            "ia32e-5"
        } else {
            "ia32e-4"
        }
    }
}

pub fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("not hex: {s}"))
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

fn load_guest(dir: &Path) -> Option<Guest> {
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
        mem_bytes: meta["mem_bytes"].as_u64()?,
        kernel_package: meta["kernel_package"].as_str()?.to_owned(),
    })
}

/// The real guests to test: `$VMI_FIXTURE_GUESTS` (colon-separated directories), else every
/// complete guest in the fixture cache. Empty means skip, unless `$VMI_REQUIRE_FIXTURES` is
/// set (as `scripts/test` does), where the coverage the suite promises is enforced.
pub fn guests() -> Vec<Guest> {
    let dirs: Vec<PathBuf> = match std::env::var("VMI_FIXTURE_GUESTS") {
        Ok(list) if !list.is_empty() => list.split(':').map(PathBuf::from).collect(),
        _ => std::fs::read_dir(fixtures_dir().join("guests"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default(),
    };
    let mut guests: Vec<Guest> = dirs.iter().filter_map(|d| load_guest(d)).collect();
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    if std::env::var_os("VMI_REQUIRE_FIXTURES").is_some() {
        assert!(
            guests.iter().any(|g| g.paging == 5) && guests.iter().any(|g| g.paging == 4),
            "VMI_REQUIRE_FIXTURES: need guests with 5-level and 4-level paging"
        );
        let kernels: std::collections::BTreeSet<&str> =
            guests.iter().map(|g| g.kernel_package.as_str()).collect();
        assert!(
            kernels.len() >= 2,
            "VMI_REQUIRE_FIXTURES: need at least two kernels, have {kernels:?}"
        );
    } else if guests.is_empty() {
        eprintln!(
            "SKIP: no real-guest fixtures (run scripts/fixture-guest 6.1 5, or scripts/test)"
        );
    }
    guests
}

/// The `vmi` binary cargo built for these tests.
pub fn vmi() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmi"));
    c.env_remove("VMI_TARGET");
    c
}

/// Runs `vmi` with `args`, expecting success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    let out = vmi().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "vmi {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `vmi --format json ARGS`, expecting success; returns the parsed document.
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let text = run_ok(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vmi {args:?}: bad JSON ({e}): {text}"))
}

/// Runs `vmi` expecting failure; returns stderr and checks stdout stayed empty.
pub fn run_err(args: &[&str]) -> String {
    let out = vmi().args(args).output().unwrap();
    assert!(!out.status.success(), "vmi {args:?} unexpectedly succeeded");
    assert!(
        out.stdout.is_empty(),
        "vmi {args:?} failed but wrote to stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Decodes the `bytes` hex string of `vmi read --format json`.
pub fn bytes_of(doc: &serde_json::Value) -> Vec<u8> {
    let hex = doc["bytes"].as_str().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// `truth/tasks` as (pid, ppid, uid, gid, threads, name).
pub fn tasks(g: &Guest) -> Vec<(u64, u64, u64, u64, u64, String)> {
    g.truth("tasks")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.splitn(6, ' ');
            let mut num = || it.next().unwrap().parse::<u64>().unwrap();
            let (a, b, c, d, e) = (num(), num(), num(), num(), num());
            (a, b, c, d, e, it.next().unwrap_or("").to_owned())
        })
        .collect()
}

/// `truth/targets`: (pid, heap address) of the known processes.
pub fn targets(g: &Guest) -> Vec<(u64, u64)> {
    g.truth("targets")
        .lines()
        .filter(|l| l.starts_with("VMI-TARGET "))
        .map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(k))
                    .unwrap()
                    .to_owned()
            };
            (field("pid=").parse().unwrap(), hex(&field("heap=")))
        })
        .collect()
}

/// Whether `ours` (task->comm) names the same task as the truth's `/proc/PID/stat` comm:
/// workqueue workers carry a `-`/`+` suffix there, and long kthread names are complete.
pub fn comm_matches(ours: &str, truth: &str) -> bool {
    ours == truth
        || (ours.len() >= 15 && truth.starts_with(ours))
        || (truth.starts_with("kworker/")
            && truth.starts_with(ours)
            && matches!(truth.as_bytes().get(ours.len()), Some(b'-' | b'+')))
}

/// A fresh profile cache directory for one test (so tests do not share cache state).
pub fn fresh_cache_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vmi-cli-cache-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `vmi --format json ARGS` with `$VMI_CACHE_DIR` set, expecting success.
pub fn run_json_cached(cache: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = vmi()
        .env("VMI_CACHE_DIR", cache)
        .args(&all)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmi {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
