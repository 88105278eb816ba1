//! A guest with page-table isolation (`pti=on`) whose only vCPU was in user mode when it was
//! dumped: its CR3 is a user PGD, which maps almost none of the kernel. Kernel addresses must
//! still read, through the kernel's own page tables.

mod common;

use common::{bytes_of, fresh_cache_dir, run_err, run_json_cached};
use vmi_fixtures::Guest;

/// Guests built with `pti=on` (`scripts/fixture-guest KERNEL 4 --pti`).
fn pti_guests() -> Vec<Guest> {
    vmi_fixtures::select(
        "built with pti=on (scripts/fixture-guest KERNEL 4 --pti)",
        |g| g.pti,
    )
}

fn kernel_addresses_read_through_the_kernel_page_tables_of_a_user_mode_pti_guest() {
    for g in pti_guests() {
        let cache = fresh_cache_dir("pti");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        let info = run_json_cached(&cache, &["--target", t, "info"]);
        // The case under test: vCPU 0 runs on a user PGD (the odd page of a PTI pair).
        let cr3 = vmi_fixtures::hex(info["vcpu_registers"][0]["cr3"].as_str().unwrap());
        assert_ne!(cr3 & 0x1000, 0, "{}: vCPU 0 is not on a user PGD", g.name);
        let banner = format!("{:#x}", g.kallsyms()["linux_banner"]);
        let err = run_err(&["--target", t, "read", "--vcpu", "0", &banner, "16"]);
        assert!(err.contains("not present"), "{}: {err}", g.name);

        let version = g.truth("version");
        let len = version.len().to_string();
        let read = run_json_cached(&cache, &["--target", t, "read", &banner, &len]);
        assert_eq!(bytes_of(&read), version.as_bytes(), "{}", g.name);
        let walk = run_json_cached(&cache, &["--target", t, "translate", &banner]);
        assert_eq!(walk["dtb"], info["os"]["kernel_dtb"], "{}", g.name);
        // Found through the vCPU (these guests carry no VMCOREINFO): the odd CR3's kernel half,
        // then init_top_pgt.
        assert_eq!(
            info["os"]["kernel_dtb_source"], "init_top_pgt, translated through a vCPU's CR3",
            "{}",
            g.name
        );
        let ps = run_json_cached(&cache, &["--target", t, "ps"]);
        common::assert_ps_matches_truth(&g, &ps);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

vmi_fixtures::real_guest_tests!(
    kernel_addresses_read_through_the_kernel_page_tables_of_a_user_mode_pti_guest,
);
