//! Windows crash dumps: mutations of valid dumps of every DumpType vmi reads (full, bitmap,
//! live, RDMP kernel and complete, triage), through the whole `Dump` (header, runs, bitmap,
//! ranges, triage blocks and drivers, synthetic page tables). Must never panic or allocate
//! without bound; seeds come from `vmi_backend_file::crashdump::{write_runs, testing}`.

#![no_main]

#[path = "common/dump.rs"]
mod dump;

use libfuzzer_sys::fuzz_target;
use vmi_backend_file::crashdump::testing::seed;
use vmi_backend_file::Dump;
use vmi_core::{Pa, PhysicalMemoryExt, VcpuRegisters};

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
