//! `vmi` on Windows guests, through the same OS-neutral commands as Linux.
//!
//! No Windows guest can run here: the guests are synthetic, built by `vmi_fixtures::windows`
//! from the real Volatility 3 symbol tables of four real ntoskrnl builds (Windows 10 1809,
//! 2004, 20H2, Windows 11 21H2), and written as an ELF core with CPU notes, a raw image, LiME
//! and crash dumps of types 1 and 5. vmi is given only the file and a directory of symbol
//! tables; every answer is compared with the generator's truth.

mod common;

use std::path::{Path, PathBuf};

use common::{fresh_cache_dir, vmi};
use serde_json::Value;
use vmi_fixtures::windows::{cached, isf_dir, isf_files, Options, Truth};

/// The cached synthetic guest of every shared ISF, with its truth; none (a recorded skip)
/// without `../shared`.
fn guests() -> Vec<(PathBuf, Truth)> {
    if !isf_dir().is_dir() {
        vmi_fixtures::skip_optional(format!(
            "no Windows symbol tables in {} (../shared/data/windows-isf)",
            isf_dir().display()
        ));
        return Vec::new();
    }
    isf_files()
        .iter()
        .map(|isf| {
            let dir = cached(isf, &Options::default()).expect("building a synthetic guest");
            let truth = Truth::load(&dir).expect("its truth");
            (dir, truth)
        })
        .collect()
}

/// Every file of a guest that vmi reads.
const FORMATS: [&str; 5] = [
    "memory.elf",
    "memory.raw",
    "memory.lime",
    "memory.dmp",
    "memory.bmp.dmp",
];

/// `vmi --format json --target FILE --symbols ISF_DIR ARGS`, expecting success.
fn json(target: &Path, cache: &Path, args: &[&str]) -> Value {
    let out = vmi()
        .env("VMI_CACHE_DIR", cache)
        .args(["--format", "json", "--target"])
        .arg(target)
        .arg("--symbols")
        .arg(isf_dir())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmi {args:?} on {}: {}",
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hex(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{v} is not an address"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// `CommandLineToArgvW` for command lines without backslash-quote sequences (all the
/// generator writes): whitespace separates arguments outside double quotes, quotes go.
fn split_simple(line: &str) -> Vec<String> {
    let (mut args, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' | '\t' if !quoted => {
                if any || !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        args.push(cur);
    }
    args
}

fn info_identifies_the_build_and_its_pdb_guid_in_every_format() {
    for (dir, truth) in guests() {
        let cache = fresh_cache_dir("windows-info");
        for file in FORMATS {
            let what = format!("{} {file}", truth.isf);
            let info = json(&dir.join(file), &cache, &["info"]);
            let os = &info["os"];
            assert_eq!(os["kind"], "windows", "{what}");
            assert_eq!(hex(&os["kernel_base"]), truth.kernel_base, "{what}");
            assert_eq!(os["details"]["pdb_guid"], truth.pdb_guid.as_str(), "{what}");
            assert_eq!(
                os["details"]["pdb_age"],
                truth.pdb_age.to_string(),
                "{what}"
            );
            let version = os["version"].as_str().unwrap();
            assert!(
                version.contains(&format!("10.0.{}", truth.build)),
                "{what}: {version}"
            );
            let windows = info["detectors"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["detector"] == "windows")
                .unwrap();
            assert_eq!(windows["bound"], true, "{what}");
            assert_eq!(windows["confidence"], 100, "{what}");
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn ps_and_modules_equal_the_truth_in_every_format_cold_and_cached() {
    for (dir, truth) in guests() {
        let mut want: Vec<(u32, u32, String, u32, u64)> = truth
            .processes
            .iter()
            .map(|p| {
                let threads = u32::try_from(p.threads.len()).unwrap();
                (
                    p.pid,
                    p.ppid,
                    p.image_file_name.clone(),
                    threads,
                    p.eprocess,
                )
            })
            .collect();
        want.sort();
        let mut want_modules: Vec<(String, u64, u64, String)> = truth
            .modules
            .iter()
            .map(|m| (m.name.clone(), m.base, m.size, m.path.clone()))
            .collect();
        want_modules.sort();
        for file in FORMATS {
            let what = format!("{} {file}", truth.isf);
            let cache = fresh_cache_dir("windows-ps");
            // Cold (symbol table read from the .json.xz), then from the profile cache.
            for run in ["cold", "cached"] {
                let ps = json(&dir.join(file), &cache, &["ps"]);
                let mut got: Vec<(u32, u32, String, u32, u64)> = ps
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        assert!(p.get("uid").is_none(), "{what}: Windows has no uid");
                        (
                            u32::try_from(p["pid"].as_u64().unwrap()).unwrap(),
                            u32::try_from(p["ppid"].as_u64().unwrap()).unwrap(),
                            p["name"].as_str().unwrap().to_owned(),
                            u32::try_from(p["threads"].as_u64().unwrap()).unwrap(),
                            hex(&p["object"]),
                        )
                    })
                    .collect();
                got.sort();
                assert_eq!(got, want, "{what} {run}");
                let modules = json(&dir.join(file), &cache, &["modules"]);
                let mut got: Vec<(String, u64, u64, String)> = modules
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        (
                            m["name"].as_str().unwrap().to_owned(),
                            hex(&m["base"]),
                            m["size"].as_u64().unwrap(),
                            m["path"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                got.sort();
                assert_eq!(got, want_modules, "{what} {run}");
            }
            let _ = std::fs::remove_dir_all(&cache);
        }
    }
}

fn process_views_equal_the_truth() {
    for (dir, truth) in guests() {
        let cache = fresh_cache_dir("windows-process");
        let target = dir.join("memory.elf");
        let with_user_space = truth.processes.iter().filter(|p| p.peb.is_some());
        for p in with_user_space.filter(|p| p.exit_time.is_none()) {
            let what = format!("{} pid {} ({})", truth.isf, p.pid, p.name);
            let pid = p.pid.to_string();
            let cmd = json(&target, &cache, &["cmdline", &pid]);
            let args: Vec<String> = cmd["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(args, split_simple(&p.cmdline), "{what}");
            let env = json(&target, &cache, &["env", &pid]);
            for (k, v) in &p.env {
                assert_eq!(env["env"][k], v.as_str(), "{what}: {k}");
            }
            assert_eq!(env["env"].as_object().unwrap().len(), p.env.len(), "{what}");

            let threads = json(&target, &cache, &["threads", &pid]);
            let mut got: Vec<u64> = threads
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["tid"].as_u64().unwrap())
                .collect();
            let mut want: Vec<u64> = p.threads.iter().map(|t| t.tid.into()).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{what}");

            // DLLs: the 64-bit loader list, and for WoW64 processes the 32-bit one too.
            let dlls = json(&target, &cache, &["modules", "--pid", &pid]);
            let mut got: Vec<(String, u64, u64)> = dlls
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["path"].as_str().unwrap().to_owned(),
                        hex(&m["base"]),
                        m["size"].as_u64().unwrap(),
                    )
                })
                .collect();
            let mut want: Vec<(String, u64, u64)> = p
                .dlls
                .iter()
                .chain(&p.dlls32)
                .map(|d| (d.path.clone(), d.base, d.size))
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{what}");

            // Memory regions: the VAD tree (truth ends are inclusive).
            let maps = json(&target, &cache, &["maps", &pid]);
            let got: Vec<(u64, u64, String)> = maps
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        hex(&m["start"]),
                        hex(&m["end"]),
                        m["path"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let mut want: Vec<(u64, u64, String)> = p
                .vads
                .iter()
                .map(|v| (v.start, v.end + 1, v.file.clone().unwrap_or_default()))
                .collect();
            want.sort();
            assert_eq!(got, want, "{what}");
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn linux_only_questions_are_clear_errors_on_windows() {
    let Some((dir, truth)) = guests().into_iter().next() else {
        return;
    };
    let cache = fresh_cache_dir("windows-lacks");
    let out = vmi()
        .env("VMI_CACHE_DIR", &cache)
        .args(["--target"])
        .arg(dir.join("memory.elf"))
        .arg("--symbols")
        .arg(isf_dir())
        .arg("dmesg")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", truth.isf);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the windows profile cannot list kernel log records"),
        "{}: {err}",
        truth.isf
    );
    let _ = std::fs::remove_dir_all(&cache);
}

vmi_fixtures::real_guest_tests!(
    info_identifies_the_build_and_its_pdb_guid_in_every_format,
    ps_and_modules_equal_the_truth_in_every_format_cold_and_cached,
    process_views_equal_the_truth,
    linux_only_questions_are_clear_errors_on_windows,
);
