//! ELF core parsing: arbitrary bytes through `elf::parse`, note decoding and the whole `Dump`
//! (region table, every region read, every vCPU). Must never panic; the asserts check the
//! invariants the parser promises (a sorted map whose regions are readable).

#![no_main]

#[path = "common/dump.rs"]
mod dump;

use libfuzzer_sys::fuzz_target;
use vmi_backend_file::{elf, notes, Dump, DumpRegisters};

fuzz_target!(|data: &[u8]| {
    if let Ok(core) = elf::parse(data) {
        let _ = core.segments();
        if let Ok(decoded) = notes::decode(&core.notes) {
            let _ = DumpRegisters::from_notes(&decoded, core.machine == elf::EM_X86_64);
        }
    }
    // Always present the ELF magic, so the fuzzer spends its time past detection.
    let mut bytes = data.to_vec();
    if bytes.len() >= 4 {
        bytes[..4].copy_from_slice(b"\x7fELF");
    }
    if let Ok(dump) = Dump::from_bytes(bytes) {
        dump::exercise(&dump);
    }
});

