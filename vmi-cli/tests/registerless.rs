//! Dumps that carry no vCPU registers (raw `pmemsave` images, LiME files): the kernel and its
//! page tables are found in physical memory alone, and every command answers as it does on the
//! ELF dump of the same guest, with no `--dtb` or `--paging-mode` given.

mod common;

use std::path::Path;

use common::{bytes_of, fresh_cache_dir, run_json_cached};
use vmi_fixtures::{guests, hex, Guest};

/// The commands compared between a register-less dump and the ELF dump of the same guest.
fn compare_with_elf(g: &Guest, dump: &Path, what: &str) {
    let cache = fresh_cache_dir(&format!("registerless-{what}"));
    let elf = g.elf();
    let (elf, dump) = (elf.to_str().unwrap(), dump.to_str().unwrap());
    let run = |target: &str, args: &[&str]| {
        let mut all = vec!["--target", target];
        all.extend_from_slice(args);
        run_json_cached(&cache, &all)
    };

    let info = run(dump, &["info"]);
    let os = &info["os"];
    assert_eq!(os["kind"], "linux", "{} {what}", g.name);
    assert_eq!(
        os["version"],
        g.truth("version").trim_end(),
        "{} {what}",
        g.name
    );
    assert_eq!(
        hex(os["kernel_base"].as_str().unwrap()),
        g.kallsyms()["_text"],
        "{} {what}",
        g.name
    );
    assert!(
        os["kernel_dtb_source"]
            .as_str()
            .unwrap()
            .contains("physical memory"),
        "{} {what}: {os}",
        g.name
    );
    assert_eq!(
        info["paging_mode"],
        g.paging_mode_name(),
        "{} {what}",
        g.name
    );
    assert_eq!(info["vcpus"], 0, "{} {what}", g.name);

    let ps = run(dump, &["ps"]);
    common::assert_ps_matches_truth(g, &ps);
    assert_eq!(ps, run(elf, &["ps"]), "{} {what}: ps", g.name);
    assert_eq!(
        run(dump, &["modules"]),
        run(elf, &["modules"]),
        "{} {what}: modules",
        g.name
    );
    for t in g.targets() {
        let pid = t.pid.to_string();
        assert_eq!(
            run(dump, &["maps", &pid]),
            run(elf, &["maps", &pid]),
            "{} {what}: maps {pid}",
            g.name
        );
        let heap = format!("{:#x}", t.heap);
        let secret = bytes_of(&run(dump, &["read", "--pid", &pid, &heap, "32"]));
        assert!(
            secret.starts_with(format!("VMI-HEAP-SECRET-{pid}").as_bytes()),
            "{} {what}: pid {pid} heap",
            g.name
        );
    }
    // A kernel address with no options: the kernel's own page tables.
    let banner = format!("{:#x}", g.kallsyms()["linux_banner"]);
    let version = g.truth("version");
    let bytes = bytes_of(&run(dump, &["read", &banner, &version.len().to_string()]));
    assert_eq!(bytes, version.as_bytes(), "{} {what}: linux_banner", g.name);
    let _ = std::fs::remove_dir_all(&cache);
}

fn raw_images_answer_as_the_elf_dump_does() {
    let all = guests();
    for g in &all {
        compare_with_elf(g, &g.raw(), "raw");
    }
}

fn lime_files_answer_as_the_elf_dump_does() {
    // One guest per paging depth: a LiME file is as large as the guest's RAM.
    let all = guests();
    let picked: Vec<&Guest> = [4, 5]
        .iter()
        .filter_map(|&p| all.iter().find(|g| g.paging == p))
        .collect();
    for g in picked {
        let dump = vmi_backend_file::Dump::open(g.elf()).unwrap();
        let path =
            std::env::temp_dir().join(format!("vmi-test-{}-{}.lime", g.name, std::process::id()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        vmi_backend_file::lime::write(&mut out, dump.memory()).unwrap();
        drop(out);
        compare_with_elf(g, &path, "lime");
        let _ = std::fs::remove_file(&path);
    }
}

/// Memory captured from inside the running guest by the real tools (LiME's lime.ko, avml and
/// avml --compress, minutes before the ELF dump): the kernel is found with no hint, and the
/// known processes, their maps and heap secrets, and init's modules are all there. Each
/// capture also holds the tool that took it, which the later truth does not.
fn in_guest_captures_of_lime_and_avml_are_introspected_with_no_hint() {
    let all = vmi_fixtures::select("with in-guest LiME/AVML captures", |g| {
        !g.captures().is_empty()
    });
    for g in &all {
        let cache = fresh_cache_dir("captures");
        let elf = g.elf();
        for c in g.captures() {
            let what = format!("{} {:?}", g.name, c.tool);
            let t = c.path.to_str().unwrap();
            let run = |args: &[&str]| {
                let mut all = vec!["--target", t];
                all.extend_from_slice(args);
                run_json_cached(&cache, &all)
            };
            let info = run(&["info"]);
            assert_eq!(
                info["os"]["version"],
                g.truth("version").trim_end(),
                "{what}"
            );
            assert!(
                info["os"]["kernel_dtb_source"]
                    .as_str()
                    .unwrap()
                    .contains("physical memory"),
                "{what}"
            );
            let ps = run(&["ps"]);
            let names: std::collections::BTreeMap<u64, String> = ps
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["pid"].as_u64().unwrap(),
                        p["name"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let tool = match c.tool {
                vmi_fixtures::CaptureTool::Lime => "insmod",
                _ => "avml",
            };
            assert!(
                names.values().any(|n| n == tool),
                "{what}: no {tool} in {names:?}"
            );
            assert_eq!(names.get(&1).map(String::as_str), Some("init"), "{what}");
            for target in g.targets() {
                let pid = target.pid.to_string();
                assert_eq!(
                    names.get(&u64::from(target.pid)).map(String::as_str),
                    Some("vmi-target"),
                    "{what}: pid {pid}"
                );
                let elf_maps =
                    run_json_cached(&cache, &["--target", elf.to_str().unwrap(), "maps", &pid]);
                assert_eq!(run(&["maps", &pid]), elf_maps, "{what}: maps {pid}");
                let heap = format!("{:#x}", target.heap);
                let secret = bytes_of(&run(&["read", "--pid", &pid, &heap, "32"]));
                assert!(
                    secret.starts_with(format!("VMI-HEAP-SECRET-{pid}").as_bytes()),
                    "{what}: pid {pid} heap"
                );
            }
            let modules = run(&["modules"]);
            for known in ["crc7", "crc_itu_t", "nls_ascii", "binfmt_misc"] {
                assert!(
                    modules
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["name"] == known),
                    "{what}: module {known}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
}

vmi_fixtures::real_guest_tests!(
    raw_images_answer_as_the_elf_dump_does,
    lime_files_answer_as_the_elf_dump_does,
    in_guest_captures_of_lime_and_avml_are_introspected_with_no_hint,
);
