//! kdump-compressed files of real guests, written by QEMU itself (`dump-guest-memory
//! format=kdump-zlib`, flattened), reassembled by the real `makedumpfile -R`, and recompressed
//! page by page with the real liblzo2 and libsnappy (`scripts/kdump-recompress.py`), all from
//! the same stop of the guest as its ELF dump: every page, register and VMCOREINFO byte must
//! equal the ELF dump's.

use vmi_backend_file::{Dump, DumpFormat};
use vmi_core::{Pa, VcpuRegisters};
use vmi_fixtures::guests;

fn kdump_files_equal_the_elf_dump_page_for_page() {
    let mut checked = 0usize;
    let all = guests();
    let had_guests = !all.is_empty();
    for g in all {
        assert!(
            !g.kdump_files.is_empty() || std::env::var_os("VMI_REQUIRE_FIXTURES").is_none(),
            "{}: no kdump files (rebuild the fixture with scripts/fixture-guest)",
            g.name
        );
        let elf = Dump::open(g.elf()).unwrap();
        for name in &g.kdump_files {
            let what = format!("{} {name}", g.name);
            let kdump = Dump::open(g.dir.join(name)).unwrap_or_else(|e| panic!("{what}: {e}"));
            let expected = if name.ends_with(".flat") {
                DumpFormat::Kdump
            } else {
                DumpFormat::KdumpFlattened
            };
            assert_eq!(kdump.format(), expected, "{what}");
            assert_eq!(kdump.vmcoreinfo(), elf.vmcoreinfo(), "{what}: VMCOREINFO");
            assert_eq!(
                kdump.vmcoreinfo().is_some(),
                g.elf_has_vmcoreinfo,
                "{what}: VMCOREINFO"
            );
            let (a, b) = (kdump.registers().unwrap(), elf.registers().unwrap());
            assert_eq!(a.vcpu_count(), b.vcpu_count(), "{what}");
            for i in 0..a.vcpu_count() {
                // Every register, segment and control register, and how EFER was found: the
                // kdump's note section is the ELF dump's notes.
                let (ra, rb) = (a.registers(i).unwrap(), b.registers(i).unwrap());
                assert_eq!(ra, rb, "{what}: vCPU {i}");
                assert!(
                    ra.cr3 != 0 && ra.rip != 0,
                    "{what}: vCPU {i} registers are empty"
                );
            }
            let map = kdump.memory().memory_map().to_vec();
            assert_eq!(map, elf.memory().memory_map(), "{what}: memory map");
            let (mut pa_buf, mut pb_buf) = ([0u8; 4096], [0u8; 4096]);
            let mut pages = 0u64;
            for r in &map {
                let mut pa = r.start.raw();
                while pa < r.end_raw() {
                    kdump.memory().read(Pa::new(pa), &mut pa_buf).unwrap();
                    elf.memory().read(Pa::new(pa), &mut pb_buf).unwrap();
                    assert!(pa_buf == pb_buf, "{what}: page {pa:#x} differs");
                    pa += 4096;
                    pages += 1;
                }
            }
            assert!(pages > 100_000, "{what}: only {pages} pages");
            // A read crossing out of RAM is an error, not zeros.
            let last = map.last().unwrap();
            let mut two = [0u8; 8192];
            assert!(kdump
                .memory()
                .read(Pa::new(last.end_raw() - 4096), &mut two)
                .is_err());
            checked += 1;
        }
    }
    if checked == 0 && had_guests {
        vmi_fixtures::skip("no fixture guest has kdump files (rebuild with scripts/fixture-guest)");
    }
    println!("{checked} kdump files checked page for page");
}

vmi_fixtures::real_guest_tests!(kdump_files_equal_the_elf_dump_page_for_page,);
