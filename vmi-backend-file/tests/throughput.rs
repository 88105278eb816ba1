//! Read throughput of the region table, through `&dyn PhysicalMemory` as a session calls it.
//! Ignored by default (timings mean nothing in debug builds); run with
//! `cargo test -p vmi-backend-file --release --test throughput -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::Instant;

use vmi_backend_file::{lime, Dump};
use vmi_core::{Pa, PhysicalMemory};

mod common;

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

/// Open time and 4 KiB random-read rate of one fixture guest's dumps: the ELF dump against its
/// kdump files (QEMU's flattened kdump-zlib, the flat copies) and, when `$VMI_AVML` names the
/// real avml, an AVML capture of its raw image. Reads go to the dump directly (every read
/// decompresses) and through the session's page cache of 1024 pages, over the same random
/// pages (a fixed LCG) of the written memory.
#[test]
#[ignore = "timing; run in release with fixture guests"]
fn compressed_dumps_open_and_random_pages() {
    use vmi_core::PageCache;
    let Some(g) = vmi_fixtures::guests()
        .into_iter()
        .find(|g| !g.kdump_files.is_empty())
    else {
        println!("no fixture guest with kdump files");
        return;
    };
    let mut files: Vec<std::path::PathBuf> = vec![g.elf()];
    files.extend(g.kdump_files.iter().map(|n| g.dir.join(n)));
    let tmp = std::env::temp_dir().join(format!("vmi-throughput-{}", std::process::id()));
    if let Some(avml) = common::avml::avml_binary() {
        std::fs::create_dir_all(&tmp).unwrap();
        let out = tmp.join("raw.avml");
        common::avml::convert(&avml, "raw", "lime_compressed", &g.raw(), &out);
        files.push(out);
    }
    println!("guest {}", g.name);
    for path in &files {
        let t = Instant::now();
        let dump = Dump::open(path).unwrap();
        let open = t.elapsed();
        let mem = dump.memory();
        let pages: Vec<u64> = mem
            .memory_map()
            .iter()
            .flat_map(|r| (r.start.raw() / 4096..r.end_raw() / 4096).map(|p| p * 4096))
            .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let picks: Vec<u64> = (0..20_000)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                pages[(x >> 33) as usize % pages.len()]
            })
            .collect();
        let run = |m: &dyn PhysicalMemory| {
            let mut buf = [0u8; 4096];
            let t = Instant::now();
            let mut sum = 0u64;
            for &pa in &picks {
                m.read(Pa::new(pa), &mut buf).unwrap();
                sum = sum.wrapping_add(u64::from(buf[pa as usize % 4096]));
            }
            (
                picks.len() as f64 / t.elapsed().as_secs_f64(),
                black_box(sum),
            )
        };
        // The first pass also faults the mapped file in (cold); the second is warm.
        let (cold, _) = run(mem);
        let (direct, _) = run(mem);
        let cached = PageCache::new(mem, 1024);
        let (through_cache, _) = run(&cached);
        println!(
            "{:<26} {:<15} open {:>6.2} ms; 4 KiB random reads/s: cold {:>7.0}, warm {:>7.0} \
             ({:>6.1} MiB/s), through a 1024-page cache {:>7.0}",
            path.file_name().unwrap().to_string_lossy(),
            dump.format().name(),
            open.as_secs_f64() * 1e3,
            cold,
            direct,
            direct * 4096.0 / (1 << 20) as f64,
            through_cache
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
