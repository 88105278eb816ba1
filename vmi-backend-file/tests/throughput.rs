//! Read throughput of the region table, through `&dyn PhysicalMemory` as a session calls it.
//! Ignored by default (timings mean nothing in debug builds); run with
//! `cargo test -p vmi-backend-file --release --test throughput -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::Instant;

use vmi_backend_file::{lime, Dump};
use vmi_core::{Pa, PhysicalMemory};

/// A LiME image with QEMU's `pc` layout: low RAM, RAM above the VGA window, VRAM, BIOS.
fn qemu_like_dump(ram: u64) -> Dump {
    let mut image = Vec::new();
    for (start, len) in [
        (0u64, 0xa0000u64),
        (0xc0000, ram - 0xc0000),
        (0xfd00_0000, 0x100_0000),
        (0xfffc_0000, 0x4_0000),
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        lime::write_range(&mut image, Pa::new(start), &data).unwrap();
    }
    Dump::from_bytes(image).unwrap()
}

fn rate(label: &str, n: u64, f: impl FnOnce() -> u64) -> f64 {
    let t = Instant::now();
    let sum = f();
    let secs = t.elapsed().as_secs_f64();
    let per_sec = n as f64 / secs;
    println!(
        "{label}: {:.1} M reads/s ({:.1} ns/read, checksum {sum:#x})",
        per_sec / 1e6,
        1e9 / per_sec
    );
    per_sec
}

#[test]
#[ignore = "timing; run in release"]
fn eight_byte_reads() {
    const N: u64 = 20_000_000;
    let ram = 64 << 20;
    let dump = qemu_like_dump(ram);
    let mem: &dyn PhysicalMemory = black_box(dump.memory());

    // Random reads in a cache-resident 2 MiB window measure the backend's own cost; random
    // reads over all 64 MiB mostly measure host cache and TLB misses.
    let random = |window: u64| {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut sum = 0u64;
        let mut b = [0u8; 8];
        for _ in 0..N {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pa = 0x100_0000 + (x & (window - 1) & !7);
            mem.read(Pa::new(pa), &mut b).unwrap();
            sum = sum.wrapping_add(u64::from_le_bytes(b));
        }
        sum
    };
    let same_region = rate("random in a 2 MiB window", N, || random(2 << 20));
    rate("random over 32 MiB (host cache misses)", N, || {
        random(32 << 20)
    });
    rate("alternating regions (cache misses)", N, || {
        let mut sum = 0u64;
        let mut b = [0u8; 8];
        for i in 0..N {
            let pa = if i & 1 == 0 {
                0x1000 + (i & 0xfff8)
            } else {
                0xfd00_0000 + (i & 0xfff8)
            };
            mem.read(Pa::new(pa), &mut b).unwrap();
            sum = sum.wrapping_add(u64::from_le_bytes(b));
        }
        sum
    });
    rate("sequential page-table-like walk", N, || {
        let mut sum = 0u64;
        let mut b = [0u8; 8];
        for i in 0..N {
            let pa = 0x10_0000 + ((i * 8) % (32 << 20));
            mem.read(Pa::new(pa), &mut b).unwrap();
            sum = sum.wrapping_add(u64::from_le_bytes(b));
        }
        sum
    });
    // The stack target is 40 M reads/s end to end; the backend's share must be well above.
    assert!(same_region > 40e6, "{same_region:.0} reads/s");
}
