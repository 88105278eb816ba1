//! LiME parsing: arbitrary bytes through `lime::parse` and the whole `Dump` (region table,
//! every region read). Must never panic; the asserts check the invariants the parser promises.

#![no_main]

#[path = "common/dump.rs"]
mod dump;

use libfuzzer_sys::fuzz_target;
use vmi_backend_file::{lime, Dump, DumpFormat};

fuzz_target!(|data: &[u8]| {
    if let Ok(ranges) = lime::parse(data) {
        for r in &ranges {
            let _ = r.segment();
        }
    }
    // Always present the LiME magic, so the fuzzer spends its time past detection.
    let mut bytes = data.to_vec();
    if bytes.len() >= 4 {
        bytes[..4].copy_from_slice(&lime::LIME_MAGIC.to_le_bytes());
    }
    if let Ok(dump) = Dump::from_bytes(bytes) {
        assert!(dump.registers().is_none() || dump.format() != DumpFormat::Lime);
        dump::exercise(&dump);
    }
});

