//! What the dump fuzz targets do with a parsed `Dump`: read every region and vCPU, and check
//! the invariants the parser promises. Shared by `elf_core` and `lime`.

use vmi_backend_file::Dump;
use vmi_core::{Pa, VcpuRegisters};

/// Reads every region (whole if small, else its edges), across every region boundary, and
/// every vCPU.
pub fn exercise(dump: &Dump) {
    let _ = dump.vmcoreinfo();
    let _ = dump.details();
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
        let last = Pa::new(r.end_raw() - 1);
        mem.read(last, &mut buf[..1])
            .expect("the last byte of a region is readable");
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
    let _ = mem.read(Pa::new(u64::MAX - 3), &mut [0u8; 8]);
    if let Some(regs) = dump.registers() {
        let n = regs.vcpu_count();
        for i in 0..n {
            regs.registers(i).expect("every counted vCPU has registers");
        }
        assert!(regs.registers(n).is_err());
    }
}
