//! AVML parsing: arbitrary bytes through `avml::parse` and the whole `Dump` (chunk index, every
//! region read through the chunk cache). Must never panic or allocate without bound. Mutations
//! of a valid capture (built like `avml --compress` writes one, a stored LiME block after it)
//! reach past the header checks; the first byte picks how.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vmi_backend_file::{avml, Dump};
use vmi_core::{MemoryError, Pa};

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = avml::parse(data) {
        for pair in parsed.pieces().windows(2) {
            assert!(pair[0].pa + pair[0].len <= pair[1].pa, "pieces overlap");
        }
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let seed: Vec<u8> = (0..70_000u32).map(|i| (i / 100) as u8).collect();
    let mut file = avml::testing::compressed(&[(0x1000, seed), (0x10_0000, vec![3; 0x2000])]);
    avml::testing::stored(&mut file, 0x20_0000, &[5; 0x1000]);
    match mode % 3 {
        // Overwrite the valid capture from an offset the input chooses.
        0 => {
            let at = rest.first().map_or(0, |&b| usize::from(b) * 97) % file.len();
            let n = rest.len().min(file.len() - at);
            file[at..at + n].copy_from_slice(&rest[..n]);
        }
        // The input as a whole capture, with the AVML magic and version in place.
        1 => {
            file = rest.to_vec();
            if file.len() >= 8 {
                file[..4].copy_from_slice(&avml::AVML_MAGIC.to_le_bytes());
                file[4..8].copy_from_slice(&avml::AVML_VERSION.to_le_bytes());
            }
        }
        // The valid capture cut short, then the input appended.
        _ => {
            let cut = rest.first().map_or(0, |&b| usize::from(b) * 613) % file.len();
            file.truncate(cut);
            file.extend_from_slice(rest);
        }
    }
    if let Ok(dump) = Dump::from_bytes(file) {
        let _ = dump.details();
        assert!(dump.registers().is_none());
        let mem = dump.memory();
        let map = mem.memory_map();
        for pair in map.windows(2) {
            assert!(pair[0].end_raw() < pair[1].start.raw(), "map not coalesced");
        }
        let mut buf = vec![0u8; 1 << 16];
        for r in map.iter().take(64) {
            let n = usize::try_from(r.len).unwrap_or(usize::MAX).min(buf.len());
            // A chunk may fail to decompress or fail its CRC: an I/O error, never "out of
            // range" inside the map, never a panic.
            match mem.read(r.start, &mut buf[..n]) {
                Ok(()) | Err(MemoryError::Io { .. }) => {}
                Err(e) => panic!("reading a mapped region: {e}"),
            }
            if let Some(below) = r.start.checked_sub(1) {
                assert!(mem.read(below, &mut buf[..2]).is_err());
            }
        }
        let _ = mem.read(Pa::new(u64::MAX - 3), &mut [0u8; 8]);
    }
});
