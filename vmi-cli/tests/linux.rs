//! The Linux commands of `vmi` on real guests (Debian 6.1, 6.12 and 6.12-cloud kernels, 4- and
//! 5-level paging), with nothing but the guest's memory: every answer is checked against what
//! the guest printed about itself before the dump.

mod common;

use std::collections::BTreeMap;

use common::{fresh_cache_dir, run_json_cached};
use vmi_fixtures::{guests, hex, Guest};

fn info_identifies_the_kernel_and_its_kaslr_slide() {
    for g in guests() {
        let cache = fresh_cache_dir("info");
        let info = run_json_cached(&cache, &["--target", g.elf().to_str().unwrap(), "info"]);
        let os = &info["os"];
        assert_eq!(os["kind"], "linux", "{}", g.name);
        assert_eq!(os["version"], g.truth("version").trim_end(), "{}", g.name);
        let text = g.kallsyms()["_text"];
        assert_eq!(hex(os["kernel_base"].as_str().unwrap()), text, "{}", g.name);
        assert_eq!(
            hex(os["kaslr_slide"].as_str().unwrap()),
            text - 0xffff_ffff_8100_0000,
            "{}",
            g.name
        );
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn ps_equals_the_guest_process_list_cold_and_cached() {
    for g in guests() {
        let cache = fresh_cache_dir("ps");
        let elf = g.elf();
        let args = ["--target", elf.to_str().unwrap(), "ps"];
        let cold = run_json_cached(&cache, &args);
        let warm = run_json_cached(&cache, &args);
        assert_eq!(
            cold, warm,
            "{}: cached profile gives another answer",
            g.name
        );
        common::assert_ps_matches_truth(&g, &cold);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn cmdline_env_and_process_reads_match_the_known_processes() {
    for g in guests() {
        let cache = fresh_cache_dir("proc");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        for target in g.targets() {
            let (pid, heap) = (target.pid, target.heap);
            let pid_s = pid.to_string();
            let cmd = run_json_cached(&cache, &["--target", t, "cmdline", &pid_s]);
            let want: Vec<String> = g
                .truth(&format!("cmdline/{pid}"))
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(cmd["pid"].as_u64(), Some(pid.into()));
            assert_eq!(
                cmd["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect::<Vec<_>>(),
                want,
                "{} pid {pid}",
                g.name
            );
            let env = run_json_cached(&cache, &["--target", t, "env", &pid_s]);
            let want: BTreeMap<String, String> = g
                .truth(&format!("environ/{pid}"))
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let got: BTreeMap<String, String> = env["env"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            assert_eq!(got, want, "{} pid {pid}", g.name);
            let read = run_json_cached(
                &cache,
                &[
                    "--target",
                    t,
                    "read",
                    "--pid",
                    &pid_s,
                    &format!("{heap:#x}"),
                    "32",
                ],
            );
            let bytes = common::bytes_of(&read);
            let secret = format!("VMI-HEAP-SECRET-{pid}\0");
            assert!(bytes.starts_with(secret.as_bytes()), "{} pid {pid}", g.name);
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn symbol_and_explicit_symbols_agree_with_kallsyms_truth() {
    for g in guests() {
        let cache = fresh_cache_dir("sym");
        let elf = g.elf();
        // Every truth symbol is compared in vmi-os-linux's kallsyms tests; here, the command.
        let truth = g.kallsyms();
        for name in ["linux_banner", "init_task", "sys_call_table", "_stext"] {
            let addr = truth[name];
            let s = run_json_cached(&cache, &["--target", elf.to_str().unwrap(), "symbol", name]);
            assert_eq!(
                hex(s["address"].as_str().unwrap()),
                addr,
                "{} {name}",
                g.name
            );
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

fn modules_and_maps_equal_proc() {
    for g in guests() {
        let cache = fresh_cache_dir("maps");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        // /proc/modules: name size refcount deps state address
        let mut want: Vec<(String, u64, u64)> = g
            .truth("modules")
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_owned(), f[1].parse().unwrap(), hex(f[5]))
            })
            .collect();
        let mods = run_json_cached(&cache, &["--target", t, "modules"]);
        let mut got: Vec<(String, u64, u64)> = mods
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["size"].as_u64().unwrap(),
                    hex(m["base"].as_str().unwrap()),
                )
            })
            .collect();
        want.sort();
        got.sort();
        assert!(!want.is_empty(), "{}: the guest loaded no modules", g.name);
        assert_eq!(got, want, "{}", g.name);

        for pid in g.targets().iter().map(|t| t.pid) {
            // /proc/PID/maps: start-end perms offset dev inode path
            // The inode, OS-specific, is under `os`.
            let want: Vec<(u64, u64, String, u64, u64, String)> = g
                .truth(&format!("maps/{pid}"))
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let (s, e) = f[0].split_once('-').unwrap();
                    (
                        hex(s),
                        hex(e),
                        f[1].to_owned(),
                        hex(f[2]),
                        f[4].parse().unwrap(),
                        f.get(5).copied().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            let maps = run_json_cached(&cache, &["--target", t, "maps", &pid.to_string()]);
            let got: Vec<(u64, u64, String, u64, u64, String)> = maps
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        hex(m["start"].as_str().unwrap()),
                        hex(m["end"].as_str().unwrap()),
                        m["perms"].as_str().unwrap().to_owned(),
                        m["offset"].as_u64().unwrap(),
                        m["os"]["inode"].as_u64().unwrap(),
                        m["path"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{} pid {pid}", g.name);
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

/// For every kernel of a real dwarf2json ISF in `../shared/data/linux-isf` (or
/// `$VMI_SHARED_DIR/data/linux-isf`; see `vmi_fixtures::isf_kernels`), on its guests.
fn symbols_from_a_dwarf2json_isf_or_a_system_map_give_the_same_processes() {
    for k in vmi_fixtures::isf_kernels() {
        symbols_from_isf_or_system_map(&k.isf, &k.release, &k.guests);
    }
}

fn symbols_from_isf_or_system_map(isf: &std::path::Path, release: &str, guests: &[Guest]) {
    let isf = isf.to_owned();
    // A System.map of the same kernel, written from the ISF's symbols (Debian ships only a
    // stub): symbols from the file, types from the guest's BTF.
    let profile = vmi_core::Profile::from_path(&isf).unwrap();
    let dir = std::env::temp_dir().join(format!("vmi-sysmap-{release}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let map = dir.join("System.map");
    let text: String = profile
        .symbols()
        // dwarf2json lists a few names nm would not print (empty ones): leave them out.
        .filter(|(name, _)| !name.is_empty() && !name.contains(char::is_whitespace))
        .map(|(name, s)| format!("{:016x} T {name}\n", s.address))
        .collect();
    std::fs::write(&map, text).unwrap();

    for g in guests {
        let cache = fresh_cache_dir("symbols");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        let own = run_json_cached(&cache, &["--target", t, "ps"]);
        for source in [&isf, &map] {
            let s = source.to_str().unwrap();
            let with = run_json_cached(&cache, &["--target", t, "--symbols", s, "ps"]);
            assert_eq!(with, own, "{}: --symbols {s}", g.name);
            let info = run_json_cached(&cache, &["--target", t, "--symbols", s, "info"]);
            assert_eq!(
                info["os"]["version"],
                g.truth("version").trim_end(),
                "{}",
                g.name
            );
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn cmdline_shows_a_title_rewritten_past_the_arguments_as_proc_does() {
    for g in guests() {
        let cache = fresh_cache_dir("title");
        let (pid, truth) = g.title_truth();
        let elf = g.elf();
        let doc = run_json_cached(
            &cache,
            &[
                "--target",
                elf.to_str().unwrap(),
                "cmdline",
                &pid.to_string(),
            ],
        );
        // /proc/PID/cmdline of a rewritten title is the title and its NUL.
        let title = std::str::from_utf8(truth.strip_suffix(&[0]).unwrap()).unwrap();
        assert!(title.starts_with("vmi-title: "), "{}: {title}", g.name);
        assert_eq!(doc["args"], serde_json::json!([title]), "{}", g.name);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

vmi_fixtures::real_guest_tests!(
    info_identifies_the_kernel_and_its_kaslr_slide,
    ps_equals_the_guest_process_list_cold_and_cached,
    cmdline_env_and_process_reads_match_the_known_processes,
    symbol_and_explicit_symbols_agree_with_kallsyms_truth,
    modules_and_maps_equal_proc,
    symbols_from_a_dwarf2json_isf_or_a_system_map_give_the_same_processes,
    cmdline_shows_a_title_rewritten_past_the_arguments_as_proc_does,
);
