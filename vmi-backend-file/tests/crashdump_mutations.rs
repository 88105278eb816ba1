//! Seeded random mutations of valid crash dumps of every DumpType (the fuzz target's inputs,
//! deterministically, so that every `cargo test` runs them): parsing never panics, a parsed
//! dump's regions read back, and it never maps more bytes than the file holds (a triage dump:
//! more than its blocks, plus its page tables).

use vmi_backend_file::crashdump::testing::{seed, SEED_KINDS};
use vmi_backend_file::{Dump, DumpFormat};
use vmi_core::{Pa, PhysicalMemoryExt, VcpuRegisters};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn mutated_dumps_never_panic_and_stay_bounded() {
    let mut rng = Rng(0xC0FF_EE00_DEAD_BEEF);
    let mut parsed = 0usize;
    for kind in 0..SEED_KINDS {
        let good = seed(kind);
        Dump::from_bytes(good.clone()).unwrap();
        for _ in 0..5000 {
            let mut f = good.clone();
            for _ in 0..1 + rng.below(4) {
                // Mostly the header fields and the structures after 0x2000.
                let at = match rng.below(4) {
                    0 => rng.below(0x100),
                    1 => 0xF98 + rng.below(0x10),
                    2 => 0x2000 + rng.below(0x200),
                    _ => rng.below(f.len() as u64),
                } as usize;
                let value: [u8; 8] = match rng.below(5) {
                    0 => u64::MAX.to_le_bytes(),
                    1 => (1u64 << rng.below(64)).to_le_bytes(),
                    2 => *b"PAGEPAGE",
                    3 => [0; 8],
                    _ => rng.next().to_le_bytes(),
                };
                let n = (1 + rng.below(8) as usize).min(f.len().saturating_sub(at));
                f[at..at + n].copy_from_slice(&value[..n]);
            }
            if rng.below(8) == 0 {
                f.truncate(rng.below(f.len() as u64) as usize);
            }
            let len = f.len() as u64;
            let Ok(dump) = Dump::from_bytes(f) else {
                continue;
            };
            // A mutated signature makes a raw image (or nothing) of the file.
            if dump.format() != DumpFormat::WindowsCrashDump {
                continue;
            }
            parsed += 1;
            let mem = dump.memory();
            let total = mem.total_bytes();
            assert!(
                total <= len + 64 * 4096,
                "kind {kind}: {total:#x} bytes mapped from a {len:#x}-byte file"
            );
            let mut buf = vec![0u8; 0x3000];
            for r in mem.memory_map() {
                let n = (r.len as usize).min(buf.len());
                mem.read(r.start, &mut buf[..n]).unwrap();
            }
            let _ = mem.read_u64(Pa::new(u64::MAX - 3));
            let regs = dump.context_registers().unwrap();
            assert_eq!(regs.vcpu_count(), 1);
            let _ = dump.into_target();
        }
    }
    assert!(parsed > 1000, "only {parsed} mutated dumps parsed");
}
