//! Reads on a real guest dump (a QEMU ELF core of a Debian kernel, see scripts/fixture-guest):
//! the same operations as the synthetic benchmarks, through the file backend and vCPU 0's
//! real page tables. Skipped with a message when no fixture exists.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vmi_arch_x86::testing::SplitMix64;
use vmi_arch_x86::X86;
use vmi_backend_file::Dump;
use vmi_core::{Architecture, PageSize, PagingMode, Tlb, Va, VcpuRegisters, VirtualMemory};

fn real_dump(c: &mut Criterion) {
    let Some(dir) = vmi_benches::real_guest() else {
        eprintln!("SKIP real-dump benchmarks: no fixture (scripts/fixture-guest 6.1 5)");
        return;
    };
    let dump = Dump::open(dir.join("memory.elf")).expect("opening the fixture dump");
    let regs = dump
        .registers()
        .expect("the fixture has vCPU notes")
        .registers(0)
        .expect("vCPU 0");
    let space = PagingMode::from_registers(&regs);
    let mem = dump.memory();
    let x86 = X86::new();

    // Every 4 KiB page the kernel maps (its direct map covers all RAM), as the address pool.
    let mut pages: Vec<Va> = Vec::new();
    x86.for_each_mapping(mem, space, &mut |m| {
        if let Ok(m) = m {
            // The kernel half in both 4- and 5-level paging.
            if m.va.raw() >= 0xff00_0000_0000_0000 {
                let n = m.size.bytes() / PageSize::Size4K.bytes();
                for i in 0..n.min(1 << 18) {
                    if let Some(va) = m.va.checked_add(i * 4096) {
                        let readable = x86
                            .translate(mem, space, va)
                            .is_ok_and(|t| mem.read(t.pa, &mut [0u8; 8]).is_ok());
                        if readable {
                            pages.push(va);
                        }
                    }
                }
            }
        }
        if pages.len() >= 1 << 17 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    assert!(
        !pages.is_empty(),
        "no mapped kernel pages in {}",
        dir.display()
    );
    let mut rng = SplitMix64::new(7);
    let random: Vec<Va> = (0..1 << 16)
        .map(|_| {
            let p = pages[rng.below(pages.len() as u64) as usize];
            Va::new(p.raw() + rng.below(4096 / 8) * 8)
        })
        .collect();
    let hot: Vec<Va> = random.iter().take(256).copied().collect();

    let tlb = Tlb::new(X86::new(), 14);
    let view = VirtualMemory::new(mem, &tlb, space);
    let mut g = c.benchmark_group("real_dump");
    g.throughput(Throughput::Elements(1));
    let label = dir.file_name().unwrap().to_string_lossy().into_owned();
    for (name, addrs) in [
        ("read_u64_hot", &hot),
        ("read_u64_random_kernel_pages", &random),
    ] {
        let mut i = 0;
        g.bench_function(BenchmarkId::new(name, &label), |b| {
            b.iter(|| {
                i = (i + 1) % addrs.len();
                black_box(view.read_u64(addrs[i]).unwrap())
            })
        });
    }
    let uncached = VirtualMemory::new(mem, &x86, space);
    let mut i = 0;
    g.bench_function(BenchmarkId::new("read_u64_uncached", &label), |b| {
        b.iter(|| {
            i = (i + 1) % random.len();
            black_box(uncached.read_u64(random[i]).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, real_dump);
criterion_main!(benches);
