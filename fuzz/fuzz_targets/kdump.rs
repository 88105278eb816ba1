//! kdump parsing: arbitrary bytes as a flat kdump file and as a flattened stream, through the
//! whole `Dump` (headers, bitmaps, every written page decompressed), and arbitrary bytes
//! through the LZO decoder. Must never panic or allocate without bound; seeds come from
//! `vmi_backend_file::kdump::testing`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vmi_backend_file::{kdump, lzo, Dump};
use vmi_core::{Pa, VcpuRegisters};

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; 4096];
    if let Ok(n) = lzo::decompress(data, &mut out) {
        assert!(n <= out.len());
    }
    // Mutations of a valid file reach past the header checks; the first byte picks how.
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = kdump::testing::build(24);
    match mode % 3 {
        // Overwrite the valid file with the input from an offset the input chooses.
        0 => {
            let at = rest.first().map_or(0, |&b| usize::from(b) * 64) % file.len();
            let n = rest.len().min(file.len() - at);
            file[at..at + n].copy_from_slice(&rest[..n]);
        }
        // The input as a whole file, with the signature in place.
        1 => {
            file = rest.to_vec();
            if file.len() >= 8 {
                file[..8].copy_from_slice(kdump::KDUMP_SIGNATURE);
            }
        }
        // The valid file flattened, then overwritten in its records.
        _ => {
            file = kdump::testing::flatten(&file, 3000);
            let at = 4096 + rest.first().map_or(0, |&b| usize::from(b) * 16) % (file.len() - 4096);
            let n = rest.len().min(file.len() - at);
            file[at..at + n].copy_from_slice(&rest[..n]);
        }
    }
    if let Ok(dump) = Dump::from_bytes(file) {
        // A written page may still fail to decompress (an error, not a panic); the map stays
        // sorted and bounded by the bitmap.
        let _ = (dump.vmcoreinfo(), dump.details());
        let mem = dump.memory();
        let mut page = [0u8; 4096];
        for r in mem.memory_map().iter().take(64) {
            assert!(r.len > 0 && r.len % 4096 == 0);
            let mut pa = r.start.raw();
            while pa < r.end_raw().min(r.start.raw() + (64 << 12)) {
                let _ = mem.read(Pa::new(pa), &mut page);
                pa += 4096;
            }
        }
        if let Some(regs) = dump.registers() {
            for i in 0..regs.vcpu_count() {
                let _ = regs.registers(i);
            }
        }
    }
});
