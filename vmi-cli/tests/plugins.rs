//! Third-party plugins through the real `vmi` binary: the example plugins (real `.so` files,
//! built here) on real guests, and deliberately broken plugins that must be refused or
//! contained.
//!
//! Cargo does not build the `cdylib`s of other workspace members for an integration test, so
//! the first test to need them runs `cargo build` for them itself, with the cargo, profile and
//! target directory of this test (found from the `vmi` binary's path). That works the same on
//! a clean clone, in CI and under `cargo test -p vmi-cli`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{bytes_of, fresh_cache_dir, run_err, vmi};
use serde_json::Value;
use vmi_fixtures::{guests, hex, Guest};

/// The plugin packages the tests load.
const PLUGINS: &[&str] = &[
    "syscall-check",
    "scan",
    "hidden-tasks",
    "vmi-test-plugin-panics",
    "vmi-test-plugin-abi-v2",
    "vmi-test-plugin-bad-layout",
];

/// Builds the plugin libraries once per test binary; returns the directory they are in.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_vmi"));
        let profile_dir = bin.parent().expect("vmi has a directory").to_owned();
        let target_dir = profile_dir.parent().expect("a target directory").to_owned();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_owned(),
            Some(other) => other.to_owned(),
            None => "dev".to_owned(),
        };
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--profile", &profile, "--target-dir"])
            .arg(&target_dir)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        for p in PLUGINS {
            cmd.args(["-p", p]);
        }
        let status = cmd.status().expect("running cargo build for the plugins");
        assert!(status.success(), "building the plugins failed");
        profile_dir
    })
}

/// The library of plugin package `name`.
fn lib(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// `vmi --format json --target GUEST plugin run LIB -- ARGS`, expecting success.
fn run_plugin(elf: &Path, cache: &Path, plugin: &str, args: &[&str]) -> Value {
    let out = vmi()
        .env("VMI_CACHE_DIR", cache)
        .args(["--format", "json", "--target"])
        .arg(elf)
        .args(["plugin", "run"])
        .arg(lib(plugin))
        .arg("--")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plugin {plugin} {args:?} on {}: {}",
        elf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `vmi --format json --target ELF ARGS`, expecting success.
fn json(elf: &Path, cache: &Path, args: &[&str]) -> Value {
    let out = vmi()
        .env("VMI_CACHE_DIR", cache)
        .args(["--format", "json", "--target"])
        .arg(elf)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmi {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Rows of a plugin table as `column -> cell` maps.
fn rows(table: &Value) -> Vec<serde_json::Map<String, Value>> {
    let columns: Vec<String> = table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            columns
                .iter()
                .cloned()
                .zip(r.as_array().unwrap().iter().cloned())
                .collect()
        })
        .collect()
}

fn addr(v: &Value) -> u64 {
    hex(v.as_str().unwrap_or_else(|| panic!("not an address: {v}")))
}

fn a_plugin_of_another_api_major_version_is_refused_naming_both_versions() {
    let err = run_err(&[
        "plugin",
        "info",
        lib("vmi-test-plugin-abi-v2").to_str().unwrap(),
    ]);
    assert!(err.contains("vmi_test_plugin_abi_v2"), "{err}");
    assert!(err.contains("vmi-plugin-api 2.0.0"), "{err}");
    assert!(err.contains("plugin API 1.1.0"), "{err}");
    assert!(err.lines().count() < 5, "a short message: {err}");
}

fn a_plugin_of_another_layout_is_refused() {
    let err = run_err(&[
        "plugin",
        "info",
        lib("vmi-test-plugin-bad-layout").to_str().unwrap(),
    ]);
    assert!(err.contains("vmi_test_plugin_bad_layout"), "{err}");
    assert!(err.contains("in layout"), "{err}");
    assert!(err.contains("1.1.0"), "{err}");
    assert!(err.lines().count() < 10, "a short message: {err}");
}

fn a_file_that_is_not_a_plugin_is_refused() {
    let exe = env!("CARGO_BIN_EXE_vmi");
    let err = run_err(&["plugin", "info", exe]);
    assert!(
        err.contains(&format!("{exe}: not a loadable library")),
        "{err}"
    );
}

fn info_describes_a_plugin_without_a_target() {
    let out = vmi()
        .args(["--format", "json", "plugin", "info"])
        .arg(lib("syscall-check"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["name"], "syscall-check");
    assert_eq!(doc["api_version"], "1.1.0");
    assert!(doc["usage"].as_str().unwrap().starts_with("syscall-check"));
}

fn list_loads_several_plugins_in_one_process_and_reports_refusals() {
    let dir = std::env::temp_dir().join(format!("vmi-plugin-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for p in PLUGINS {
        let src = lib(p);
        std::fs::copy(&src, dir.join(src.file_name().unwrap())).unwrap();
    }
    let out = vmi()
        .env("VMI_PLUGIN_PATH", &dir)
        .args(["--format", "json", "plugin", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let status = |name: &str| {
        list.iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {list:?}"))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Each loaded library answers with its own name: no root-module cache mixes them up.
    for name in ["syscall-check", "scan", "hidden-tasks", "panics"] {
        assert_eq!(status(name), "ok", "{name}");
    }
    assert!(status("vmi_test_plugin_abi_v2").contains("2.0.0"));
    assert!(status("vmi_test_plugin_bad_layout").contains("layout"));
    // By name from the path.
    let out = vmi()
        .env("VMI_PLUGIN_PATH", &dir)
        .args(["--format", "json", "plugin", "info", "hidden-tasks"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn a_panicking_plugin_is_an_error_and_the_host_goes_on() {
    let Some(g) = guests().into_iter().next() else {
        return;
    };
    let out = vmi()
        .args(["--target"])
        .arg(g.elf())
        .args(["plugin", "run"])
        .arg(lib("vmi-test-plugin-panics"))
        .args(["--", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // An ordinary error exit (not an abort by signal), with the panic's message.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.contains("plugin panics panicked in run"), "{err}");
    assert!(err.contains("deliberate panic in run"), "{err}");
}

fn syscall_check_names_every_entry_on_clean_guests() {
    for g in guests() {
        let cache = fresh_cache_dir("plugin-syscalls");
        let table = run_plugin(&g.elf(), &cache, "syscall-check", &[]);
        let rows = rows(&table);
        // 6.1: 451 system calls; 6.12: 463.
        assert!(
            (400..600).contains(&rows.len()),
            "{}: {}",
            g.name,
            rows.len()
        );
        for r in &rows {
            assert_eq!(r["status"], "ok", "{}: {r:?}", g.name);
            let sym = r["symbol"].as_str().unwrap();
            assert!(sym.starts_with("__x64_sys_"), "{}: {r:?}", g.name);
        }
        assert_eq!(rows[0]["symbol"], "__x64_sys_read", "{}", g.name);
        assert_eq!(rows[1]["symbol"], "__x64_sys_write", "{}", g.name);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn scan_finds_each_target_process_heap_secret_where_the_guest_printed_it() {
    for g in guests() {
        let cache = fresh_cache_dir("plugin-scan");
        for t in g.targets() {
            let pid = t.pid.to_string();
            let secret = format!("VMI-HEAP-SECRET-{pid}");
            let table = run_plugin(&g.elf(), &cache, "scan", &["--pid", &pid, &secret]);
            let rows = rows(&table);
            let hit = rows
                .iter()
                .find(|r| addr(&r["va"]) == t.heap)
                .unwrap_or_else(|| panic!("{} pid {pid}: not at {:#x}: {rows:?}", g.name, t.heap));
            assert_eq!(hit["where"], "[heap]", "{}", g.name);
            let walk = json(
                &g.elf(),
                &cache,
                &["translate", "--pid", &pid, &format!("{:#x}", t.heap)],
            );
            assert_eq!(addr(&hit["pa"]), addr(&walk["pa"]), "{} pid {pid}", g.name);
        }
        // A regex in the kernel image: the banner, at linux_banner.
        let table = run_plugin(
            &g.elf(),
            &cache,
            "scan",
            &["--regex", "Linux version [0-9][0-9.]+"],
        );
        assert!(
            rows(&table)
                .iter()
                .any(|r| r["where"] == "linux_banner+0x0"),
            "{}: {table}",
            g.name
        );
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn hidden_tasks_sees_nothing_hidden_on_clean_guests() {
    for g in guests() {
        let cache = fresh_cache_dir("plugin-hidden-clean");
        let table = run_plugin(&g.elf(), &cache, "hidden-tasks", &["--all"]);
        let rows = rows(&table);
        assert!(
            rows.iter().all(|r| r["status"] == "ok"),
            "{}: {rows:?}",
            g.name
        );
        // Every process the guest listed is seen by both views.
        for t in g.tasks() {
            assert!(
                rows.iter().any(|r| r["pid"] == t.pid),
                "{}: pid {} missing",
                g.name,
                t.pid
            );
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

/// PT_LOAD segments of an ELF64 core: (file offset, physical address, size in file).
fn loads(elf: &Path) -> Vec<(u64, u64, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(elf).unwrap();
    let mut h = [0u8; 64];
    f.read_exact(&mut h).unwrap();
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(&h, 0x20), u16_at(&h, 0x36), u16_at(&h, 0x38));
    let mut out = Vec::new();
    for i in 0..u64::from(phnum) {
        let mut p = vec![0u8; usize::from(phentsize)];
        f.seek(SeekFrom::Start(phoff + i * u64::from(phentsize)))
            .unwrap();
        f.read_exact(&mut p).unwrap();
        if u32::from_le_bytes(p[0..4].try_into().unwrap()) == 1 {
            out.push((u64_at(&p, 8), u64_at(&p, 0x18), u64_at(&p, 0x20)));
        }
    }
    out
}

/// Writes `value` at kernel virtual `va` of the dump copy `copy` (translated in `orig`).
fn patch_u64(orig: &Path, copy: &Path, cache: &Path, va: u64, value: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let pa = addr(&json(orig, cache, &["translate", &format!("{va:#x}")])["pa"]);
    let (off, base, _) = loads(orig)
        .into_iter()
        .find(|&(_, base, size)| (base..base + size).contains(&pa))
        .unwrap_or_else(|| panic!("{pa:#x} is in no PT_LOAD"));
    let mut f = std::fs::OpenOptions::new().write(true).open(copy).unwrap();
    f.seek(SeekFrom::Start(off + (pa - base))).unwrap();
    f.write_all(&value.to_le_bytes()).unwrap();
}

fn read_u64(elf: &Path, cache: &Path, va: u64) -> u64 {
    let doc = json(elf, cache, &["read", &format!("{va:#x}"), "8"]);
    u64::from_le_bytes(bytes_of(&doc).try_into().unwrap())
}

/// A copy of `g`'s dump with sys_call_table[1] pointing at `linux_banner` (outside kernel
/// text) and the first target process unlinked from the task list. Returns the copy, the
/// hooked value and the hidden pid.
fn patched_copy(g: &Guest, cache: &Path, dir: &Path) -> (PathBuf, u64, u32) {
    let orig = g.elf();
    let copy = dir.join("memory.elf");
    std::fs::copy(&orig, &copy).unwrap();
    let symbol = |name: &str| addr(&json(&orig, cache, &["symbol", name])["address"]);
    // The hook.
    let table = symbol("sys_call_table");
    let banner = symbol("linux_banner");
    patch_u64(&orig, &copy, cache, table + 8, banner);
    // The unlink: prev->next = next, next->prev = prev.
    let victim = g.targets()[0].pid;
    let ps = json(&orig, cache, &["ps"]);
    let task = addr(
        &ps.as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == victim)
            .unwrap()["object"],
    );
    let offsets = run_plugin(&orig, cache, "hidden-tasks", &["--offsets"]);
    let tasks_off = rows(&offsets)
        .iter()
        .find(|r| r["field"] == "task_struct.tasks")
        .unwrap()["offset"]
        .as_u64()
        .unwrap();
    let node = task + tasks_off;
    let next = read_u64(&orig, cache, node);
    let prev = read_u64(&orig, cache, node + 8);
    patch_u64(&orig, &copy, cache, prev, next);
    patch_u64(&orig, &copy, cache, next + 8, prev);
    (copy, banner, victim)
}

fn patched_dumps_syscall_hook_and_hidden_task_are_each_flagged_exactly() {
    for g in guests() {
        let cache = fresh_cache_dir("plugin-patched");
        let dir =
            std::env::temp_dir().join(format!("vmi-patched-{}-{}", g.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (copy, banner, victim) = patched_copy(&g, &cache, &dir);

        let hooked = rows(&run_plugin(&copy, &cache, "syscall-check", &["--hooked"]));
        assert_eq!(hooked.len(), 1, "{}: {hooked:?}", g.name);
        assert_eq!(hooked[0]["index"], 1, "{}", g.name);
        assert_eq!(addr(&hooked[0]["target"]), banner, "{}", g.name);
        assert_eq!(hooked[0]["symbol"], "linux_banner", "{}", g.name);
        assert_eq!(hooked[0]["status"], "HOOKED", "{}", g.name);

        // The task list no longer shows the victim ...
        let ps = json(&copy, &cache, &["ps"]);
        assert!(
            !ps.as_array().unwrap().iter().any(|p| p["pid"] == victim),
            "{}: pid {victim} still listed",
            g.name
        );
        // ... and the cross-view finds exactly it.
        let hidden = rows(&run_plugin(&copy, &cache, "hidden-tasks", &[]));
        assert_eq!(hidden.len(), 1, "{}: {hidden:?}", g.name);
        assert_eq!(hidden[0]["pid"], victim, "{}", g.name);
        assert!(hidden[0]["status"].as_str().unwrap().starts_with("HIDDEN"));
        assert_eq!(hidden[0]["task_list"], "no");
        assert_eq!(hidden[0]["pid_idr"], "yes");

        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

/// One binary `.so`, two OSes: `scan` asks only OS-neutral questions (processes, regions,
/// reads), so it runs unchanged on a Linux guest and on a synthetic Windows guest (built from
/// a real ntoskrnl symbol table; no Windows guest can run here).
fn the_same_scan_plugin_binary_runs_on_linux_and_on_windows() {
    use vmi_fixtures::windows::{cached, isf_dir, isf_files, Options, Truth};
    let Some(g) = guests().into_iter().next() else {
        return;
    };
    if !isf_dir().is_dir() {
        vmi_fixtures::skip_optional(format!(
            "no Windows symbol tables in {}",
            isf_dir().display()
        ));
        return;
    }
    let cache = fresh_cache_dir("plugin-two-oses");
    let t = &g.targets()[0];
    let secret = format!("VMI-HEAP-SECRET-{}", t.pid);
    let linux = rows(&run_plugin(
        &g.elf(),
        &cache,
        "scan",
        &["--pid", &t.pid.to_string(), &secret],
    ));
    assert!(
        linux.iter().any(|r| addr(&r["va"]) == t.heap),
        "{}: {linux:?}",
        g.name
    );

    let isf = &isf_files()[0];
    let dir = cached(isf, &Options::default()).unwrap();
    let truth = Truth::load(&dir).unwrap();
    let explorer = truth
        .processes
        .iter()
        .find(|p| p.name == "explorer.exe")
        .unwrap();
    // Its environment holds VMI_PID=<pid>, in UTF-16 as Windows keeps it.
    let needle: String = format!("VMI_PID={}", explorer.pid)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = vmi()
        .env("VMI_CACHE_DIR", &cache)
        .env("VMI_SYMBOL_PATH", isf_dir())
        .args(["--format", "json", "--target"])
        .arg(dir.join("memory.elf"))
        .args(["plugin", "run"])
        .arg(lib("scan"))
        .args(["--", "--pid", &explorer.pid.to_string(), "--hex", &needle])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let windows = rows(&serde_json::from_slice(&out.stdout).unwrap());
    assert!(
        !windows.is_empty(),
        "{}: no VMI_PID= in explorer's memory",
        truth.isf
    );
    // Each hit reads back as the needle through `vmi read --pid`, outside the plugin.
    for hit in &windows {
        let va = format!("{:#x}", addr(&hit["va"]));
        let out = vmi()
            .env("VMI_CACHE_DIR", &cache)
            .env("VMI_SYMBOL_PATH", isf_dir())
            .args(["--format", "json", "--target"])
            .arg(dir.join("memory.elf"))
            .args([
                "read",
                "--pid",
                &explorer.pid.to_string(),
                &va,
                &(needle.len() / 2).to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["bytes"], needle.as_str(), "{} at {va}", truth.isf);
    }
    let _ = std::fs::remove_dir_all(&cache);
}

vmi_fixtures::real_guest_tests!(
    a_plugin_of_another_api_major_version_is_refused_naming_both_versions,
    a_plugin_of_another_layout_is_refused,
    a_file_that_is_not_a_plugin_is_refused,
    info_describes_a_plugin_without_a_target,
    list_loads_several_plugins_in_one_process_and_reports_refusals,
    a_panicking_plugin_is_an_error_and_the_host_goes_on,
    syscall_check_names_every_entry_on_clean_guests,
    scan_finds_each_target_process_heap_secret_where_the_guest_printed_it,
    hidden_tasks_sees_nothing_hidden_on_clean_guests,
    patched_dumps_syscall_hook_and_hidden_task_are_each_flagged_exactly,
    the_same_scan_plugin_binary_runs_on_linux_and_on_windows,
);
