//! The `vmi` command against real Linux guests booted under QEMU from Debian kernel packages
//! (`scripts/fixture-guest`), checked against what each guest printed about itself.

mod common;

use common::{bytes_of, run_json};
use vmi_fixtures::{guests, hex, Guest};

/// The banner string at `linux_banner`, read through `vmi read` with `extra` options.
fn banner_via(target: &str, banner: u64, extra: &[&str]) -> String {
    let addr = format!("{banner:#x}");
    let mut args = vec!["--target", target, "read", addr.as_str(), "512"];
    args.extend_from_slice(extra);
    let bytes = bytes_of(&run_json(&args));
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .expect("banner has no NUL within 512 bytes");
    String::from_utf8(bytes[..end].to_vec()).unwrap()
}

fn banner_address(g: &Guest) -> u64 {
    *g.kallsyms()
        .get("linux_banner")
        .unwrap_or_else(|| panic!("{}: no linux_banner in truth/kallsyms", g.name))
}

fn info_reports_paging_mode_and_every_vcpu_cr3() {
    for g in guests() {
        let info = run_json(&["--target", g.elf().to_str().unwrap(), "info"]);
        assert_eq!(info["backend"], "file", "{}", g.name);
        assert_eq!(info["format"], "elf-core", "{}", g.name);
        assert_eq!(info["paging_mode"], g.paging_mode_name(), "{}", g.name);
        assert_eq!(info["vcpus"].as_u64(), Some(g.vcpus as u64), "{}", g.name);
        let truth = g.vcpu_truth();
        assert_eq!(truth.len(), g.vcpus, "{}: vcpus.tsv", g.name);
        let regs = info["vcpu_registers"].as_array().unwrap();
        for t in &truth {
            let r = &regs[t.index];
            assert_eq!(
                hex(r["cr3"].as_str().unwrap()),
                t.cr3,
                "{} vcpu {}",
                g.name,
                t.index
            );
            assert_eq!(
                hex(r["cr0"].as_str().unwrap()),
                t.cr0,
                "{} vcpu {}",
                g.name,
                t.index
            );
            assert_eq!(
                hex(r["cr4"].as_str().unwrap()),
                t.cr4,
                "{} vcpu {}",
                g.name,
                t.index
            );
            assert_eq!(
                r["paging_mode"],
                g.paging_mode_name(),
                "{} vcpu {}",
                g.name,
                t.index
            );
        }
        assert_eq!(
            hex(info["dtb"].as_str().unwrap()),
            truth[0].cr3 & 0x000f_ffff_ffff_f000,
            "{}",
            g.name
        );
        // RAM is [0, 640K) and [768K, mem_bytes) on QEMU's pc machine; the dump also carries
        // the VGA memory and the BIOS ROM.
        let mem = info["memory_bytes"].as_u64().unwrap();
        assert!(
            mem >= g.mem_bytes - (128 << 10),
            "{}: memory_bytes {mem}",
            g.name
        );
        let ram_end = format!("{:#x}", g.mem_bytes);
        assert!(
            info["memory_map"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["end"] == ram_end.as_str()),
            "{}: no region ends at {ram_end}",
            g.name
        );
    }
}

fn linux_banner_read_through_each_vcpu_equals_proc_version() {
    // Through the vCPUs' own spaces: a PTI guest dumped in user mode has none mapping the
    // kernel (pti.rs tests those).
    for g in vmi_fixtures::select("without PTI", |g| !g.pti) {
        let version = g.truth("version");
        let expected = version.trim_end_matches('\n');
        let banner = banner_address(&g);
        let elf = g.elf();
        for vcpu in 0..g.vcpus {
            let got = banner_via(
                elf.to_str().unwrap(),
                banner,
                &["--vcpu", &vcpu.to_string()],
            );
            assert_eq!(
                got.trim_end_matches('\n'),
                expected,
                "{} vcpu {vcpu}",
                g.name
            );
        }
    }
}

fn translate_then_physical_read_and_raw_dump_agree() {
    // Through the vCPUs' own spaces: a PTI guest dumped in user mode has none mapping the
    // kernel (pti.rs tests those).
    for g in vmi_fixtures::select("without PTI", |g| !g.pti) {
        let banner = banner_address(&g);
        let elf = g.elf();
        let elf = elf.to_str().unwrap();
        let t = run_json(&["--target", elf, "translate", &format!("{banner:#x}")]);
        let steps = t["steps"].as_array().unwrap();
        assert!(
            steps.len() <= usize::from(g.paging) && steps.len() + 2 >= usize::from(g.paging),
            "{}: {} steps for {}-level paging",
            g.name,
            steps.len(),
            g.paging
        );
        assert_eq!(
            steps[0]["level"],
            if g.paging == 5 { "PML5" } else { "PML4" }
        );
        let pa = t["pa"].as_str().unwrap().to_owned();
        let expected = g.truth("version");
        let expected = expected.trim_end_matches('\n');

        let phys = bytes_of(&run_json(&["--target", elf, "read", "--phys", &pa, "256"]));
        assert!(
            phys.starts_with(expected.as_bytes()),
            "{}: physical read at {pa} is not the banner",
            g.name
        );

        // The raw dump has no registers: walk it from the CR3 QEMU reported.
        let raw = g.raw();
        let cr3 = format!("{:#x}", g.vcpu_truth()[0].cr3 & 0x000f_ffff_ffff_f000);
        let via_raw = banner_via(
            raw.to_str().unwrap(),
            banner,
            &["--dtb", &cr3, "--paging-mode", g.paging_mode_name()],
        );
        assert_eq!(
            via_raw.trim_end_matches('\n'),
            expected,
            "{}: raw dump",
            g.name
        );
        let raw_phys = bytes_of(&run_json(&[
            "--target",
            raw.to_str().unwrap(),
            "read",
            "--phys",
            &pa,
            "256",
        ]));
        assert_eq!(raw_phys, phys, "{}: raw and ELF differ at {pa}", g.name);
    }
}

fn translate_table_shows_every_level() {
    for g in guests() {
        let banner = format!("{:#x}", banner_address(&g));
        let text = common::run_ok(&["--target", g.elf().to_str().unwrap(), "translate", &banner]);
        for level in ["PML4", "PDPT", "PD"] {
            assert!(
                text.contains(level),
                "{}: no {level} row in\n{text}",
                g.name
            );
        }
        assert_eq!(text.contains("PML5"), g.paging == 5, "{}:\n{text}", g.name);
        assert!(text.contains("-> 0x"), "{}:\n{text}", g.name);
    }
}

vmi_fixtures::real_guest_tests!(
    info_reports_paging_mode_and_every_vcpu_cr3,
    linux_banner_read_through_each_vcpu_equals_proc_version,
    translate_then_physical_read_and_raw_dump_agree,
    translate_table_shows_every_level,
);
