//! LiME parsing: arbitrary bytes through `lime::parse` and the whole `Dump` (region table,
//! every region read). Must never panic; the asserts check the invariants the parser promises.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vmi_backend_file::{lime, Dump, DumpFormat};
use vmi_core::Pa;

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
        exercise(&dump);
    }
});

/// Reads every region (whole if small, else its start) and just past its edges.
fn exercise(dump: &Dump) {
    let mem = dump.memory();
    let map = mem.memory_map();
    for pair in map.windows(2) {
        assert!(
            pair[0].end_raw() < pair[1].start.raw(),
            "map not sorted/coalesced: {map:?}"
        );
    }
    let mut buf = vec![0u8; 1 << 16];
    for r in map {
        assert!(r.len > 0);
        let whole = usize::try_from(r.len).unwrap_or(usize::MAX).min(buf.len());
        mem.read(r.start, &mut buf[..whole])
            .expect("a mapped region is readable");
        mem.read(Pa::new(r.end_raw() - 1), &mut buf[..1])
            .expect("last byte readable");
        let mut word = [0u8; 8];
        assert!(
            mem.read(Pa::new(r.end_raw().wrapping_sub(4)), &mut word)
                .is_err()
                || r.len < 4
        );
        if let Some(below) = r.start.checked_sub(4) {
            assert!(mem.read(below, &mut word).is_err());
        }
    }
}
