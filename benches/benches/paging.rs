//! The translation hot path on synthetic guests (512 MiB of RAM mapped with 4 KiB pages):
//! warm-TLB translation, cold walks, random and hot 8-byte virtual reads, bulk reads.
//! Addresses are seeded, so every run measures the same work.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vmi_arch_x86::X86;
use vmi_benches::{seeded_addresses, SyntheticGuest, DIRECT_MAP};
use vmi_core::{Architecture, PageCache, PagingMode, Tlb, VirtualMemory};

const RAM: u64 = 512 << 20;
const ADDRESSES: usize = 1 << 16;
/// The session's TLB size (vmi-core's Session uses 2^14 entries).
const TLB_BITS: u32 = 14;

fn modes() -> [(PagingMode, &'static str); 2] {
    [
        (PagingMode::Ia32e4, "4-level"),
        (PagingMode::Ia32e5, "5-level"),
    ]
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(1));
    for (mode, name) in modes() {
        let guest = SyntheticGuest::new(mode, RAM);
        // Warm TLB: 4096 distinct pages (16 MiB), all resident after the first pass.
        let tlb = Tlb::new(X86::new(), TLB_BITS);
        let hot = seeded_addresses(1, DIRECT_MAP, 16 << 20, ADDRESSES);
        for &va in &hot {
            tlb.translate(&guest.memory, guest.space, va).unwrap();
        }
        let mut i = 0;
        g.bench_function(BenchmarkId::new("warm_tlb", name), |b| {
            b.iter(|| {
                i = (i + 1) % hot.len();
                black_box(tlb.translate(&guest.memory, guest.space, hot[i]).unwrap())
            })
        });
        // Cold walk: no TLB; the page tables are in the page cache (as on a live target).
        let cached = PageCache::new(&guest.memory, 1 << 20);
        let all = seeded_addresses(2, DIRECT_MAP, RAM, ADDRESSES);
        let mut i = 0;
        g.bench_function(BenchmarkId::new("cold_walk_page_cache", name), |b| {
            b.iter(|| {
                i = (i + 1) % all.len();
                black_box(X86::new().translate(&cached, guest.space, all[i]).unwrap())
            })
        });
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("read_u64");
    g.throughput(Throughput::Elements(1));
    for (mode, name) in modes() {
        let guest = SyntheticGuest::new(mode, RAM);
        let tlb = Tlb::new(X86::new(), TLB_BITS);
        let view = VirtualMemory::new(&guest.memory, &tlb, guest.space);
        let hot = seeded_addresses(3, DIRECT_MAP, 1 << 20, ADDRESSES);
        let all = seeded_addresses(4, DIRECT_MAP, guest.mapped_bytes, ADDRESSES);
        for (label, addrs) in [("hot_1MiB", &hot), ("random_all_ram", &all)] {
            let mut i = 0;
            g.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter(|| {
                    i = (i + 1) % addrs.len();
                    black_box(view.read_u64(addrs[i]).unwrap())
                })
            });
        }
        // Fully uncached: no TLB, no page cache: every read walks the tables.
        let walker = X86::new();
        let uncached = VirtualMemory::new(&guest.memory, &walker, guest.space);
        let mut i = 0;
        g.bench_function(BenchmarkId::new("uncached", name), |b| {
            b.iter(|| {
                i = (i + 1) % all.len();
                black_box(uncached.read_u64(all[i]).unwrap())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("read_block");
    let guest = SyntheticGuest::new(PagingMode::Ia32e5, RAM);
    let tlb = Tlb::new(X86::new(), TLB_BITS);
    let view = VirtualMemory::new(&guest.memory, &tlb, guest.space);
    for size in [4usize << 10, 64 << 10] {
        let mut buf = vec![0u8; size];
        let starts = seeded_addresses(5, DIRECT_MAP, 8 << 20, 256);
        for &va in &starts {
            view.read_exact(va, &mut buf).unwrap();
        }
        g.throughput(Throughput::Bytes(size as u64));
        let mut i = 0;
        g.bench_function(
            BenchmarkId::new("warm", format!("{}KiB", size >> 10)),
            |b| {
                b.iter(|| {
                    i = (i + 1) % starts.len();
                    view.read_exact(starts[i], &mut buf).unwrap();
                    black_box(&buf);
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, translate, reads);
criterion_main!(benches);
