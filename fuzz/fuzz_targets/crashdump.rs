//! Windows crash dumps: mutations of valid dumps of every DumpType vmi reads (full, bitmap,
//! live, RDMP kernel and complete, triage), through the whole `Dump` (header, runs, bitmap,
//! ranges, triage blocks and drivers, synthetic page tables). Must never panic or allocate
//! without bound; seeds come from `vmi_backend_file::crashdump::{write_runs, testing}`.

#![no_main]

#[path = "common/dump.rs"]
mod dump;

use libfuzzer_sys::fuzz_target;
use vmi_backend_file::crashdump::testing::{self, TriageDriver};
use vmi_backend_file::crashdump::{self, HeaderSpec, WriteLayout};
use vmi_backend_file::Dump;
use vmi_core::{Pa, PhysicalMemoryExt, VcpuRegisters};

fn seed(kind: u8) -> Vec<u8> {
    let pages: Vec<u8> = (0..5 * 4096u32).map(|i| (i / 4096 + i) as u8).collect();
    let runs = [
        (Pa::new(0x1000), &pages[..0x2000]),
        (Pa::new(0x10_0000), &pages[0x2000..0x3000]),
        (Pa::new(0x20_0000), &pages[0x3000..]),
    ];
    let spec = HeaderSpec {
        directory_table_base: 0x1000,
        ps_active_process_head: 0xFFFF_F802_0000_1000,
        ..Default::default()
    };
    let mut out = Vec::new();
    match kind % 6 {
        0 => {
            let _ = crashdump::write_runs(&mut out, &spec, WriteLayout::Full, &runs);
        }
        1 => {
            let _ = crashdump::write_runs(&mut out, &spec, WriteLayout::Bitmap, &runs);
        }
        2 => out = testing::bitmap(&spec, 6, b"SDMP", &runs),
        3 => out = testing::rdmp(&spec, 0xA, &runs).0,
        4 => out = testing::rdmp(&spec, 8, &runs).0,
        _ => {
            let drivers = [TriageDriver {
                name: "ntoskrnl.exe",
                base: 0xFFFF_F802_0000_0000,
                size: 0x100_0000,
            }];
            out = testing::triage(
                &spec,
                &[
                    (0xFFFF_F802_0000_0F00, &pages[..0x300]),
                    (0x7FFE_0000_0000, &pages[..0x1000]),
                ],
                &drivers,
                Some(&pages[..0x100]),
                Some((0xFFFF_8000_0000_0800, &pages[..0x900])),
            )
            .bytes;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = seed(mode);
    if mode & 0x80 != 0 {
        // The input as the whole file behind a valid signature and dump type.
        let dump_type = file.get(0xF98..0xF9C).map(<[u8]>::to_vec);
        file = rest.to_vec();
        if file.len() >= 8 {
            file[..8].copy_from_slice(b"PAGEDU64");
        }
        if let (Some(dst), Some(src)) = (file.get_mut(0xF98..0xF9C), dump_type) {
            dst.copy_from_slice(&src);
        }
    } else {
        // Overwrite the valid file from an offset the input chooses: the header's fields
        // (runs, dump type) or what follows 0x2000 (bitmap, RDMP, triage tables).
        let Some((&at, bytes)) = rest.split_first() else {
            return;
        };
        let base = if mode & 0x40 != 0 { 0x2000 } else { 0 };
        let at = (base + usize::from(at) * 16) % file.len();
        let n = bytes.len().min(file.len() - at);
        file[at..at + n].copy_from_slice(&bytes[..n]);
        if mode & 0x20 != 0 {
            file.truncate(file.len() / 2 + usize::from(mode & 0x1F) * 512);
        }
    }
    if let Ok(dump) = Dump::from_bytes(file) {
        dump::exercise(&dump);
        let hints = dump.kernel_hints().clone();
        if let Some(regs) = dump.context_registers() {
            assert_eq!(regs.vcpu_count(), 1);
            let _ = regs.registers(0);
        }
        // Walk a few VAs through the dump's own (or synthetic) tables.
        if let Some(dtb) = hints.dtb {
            let mem = dump.memory();
            for va in [
                0xFFFF_F802_0000_0F00u64,
                0x7FFE_0000_0000,
                0xFFFF_8000_0000_0800,
            ] {
                let mut table = dtb & 0x000F_FFFF_FFFF_F000;
                for shift in [39u32, 30, 21, 12] {
                    match mem.read_u64(Pa::new(table + ((va >> shift) & 0x1FF) * 8)) {
                        Ok(e) if e & 1 != 0 => table = e & 0x000F_FFFF_FFFF_F000,
                        _ => break,
                    }
                }
            }
        }
        let _ = dump.into_target();
    }
});
