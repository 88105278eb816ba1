//! A live QEMU guest (TCG, started by `scripts/fixture-live` with a shared RAM file and
//! stopped by pid at the end): 64 KiB physical reads through the shared-file and the
//! process-memory paths, and a register fetch of all vCPUs through the gdbstub on a running
//! guest (stop, pipelined `Hg`/`g` per vCPU, continue). Skipped with a message when no
//! fixture kernel or QEMU is available, or with VMI_BENCH_SKIP_LIVE set.

#[path = "../../vmi-backend-qemu/tests/common/live.rs"]
mod live;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vmi_backend_qemu::{Qemu, QemuOptions};
use vmi_core::{Pa, PhysicalMemory};

fn live_qemu(c: &mut Criterion) {
    if std::env::var_os("VMI_BENCH_SKIP_LIVE").is_some() {
        eprintln!("SKIP live QEMU benchmarks: VMI_BENCH_SKIP_LIVE is set");
        return;
    }
    let Some(g) = live::LiveGuest::start("6.1", 5, true, 2) else {
        eprintln!("SKIP live QEMU benchmarks: no live guest");
        return;
    };
    let shared = Qemu::open(&g.qmp, &QemuOptions::default()).expect("open (shared file)");
    let process = Qemu::open(
        &g.ctl,
        &QemuOptions {
            force_process_memory: true,
            gdbstub: false,
            ..QemuOptions::default()
        },
    )
    .expect("open (process memory)");
    // 64 KiB reads at spread-out addresses of RAM above 1 MiB (cycling through 128 MiB).
    let addrs: Vec<u64> = (0..2048u64)
        .map(|i| 0x100000 + (i * 0x10000) % (128 << 20))
        .collect();
    let mut group = c.benchmark_group("qemu_read_64k");
    group.throughput(Throughput::Bytes(65536));
    for (name, q) in [("shared-file", &shared), ("process-memory", &process)] {
        let mem = q.memory();
        let mut buf = vec![0u8; 65536];
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % addrs.len();
                mem.read(Pa::new(addrs[i]), &mut buf).unwrap();
                black_box(&buf);
            })
        });
    }
    group.finish();
    let control = shared.control().clone();
    let vcpus = control.all_registers().expect("registers").len();
    c.bench_function(
        &format!("qemu_gdbstub_registers_all_{vcpus}_vcpus_running"),
        |b| b.iter(|| black_box(control.all_registers().unwrap())),
    );
    drop(process);
    drop(shared);
    drop(g);
}

criterion_group!(benches, live_qemu);
criterion_main!(benches);
