//! The cost of the plugin ABI: an 8-byte kernel read made by a plugin (through the
//! `HostInterface` trait object: an `extern "C"` vtable call, `RSliceMut`/`RResult` at the
//! boundary, then the host's read) against the same read made directly on the session. The
//! issue's bar: at most 2x. Skipped with a message when no real-guest fixture exists.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use vmi_core::{OpenOptions, Session, Va};
use vmi_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use vmi_plugin_api::{Host, HostInterface_TO, Space};
use vmi_plugin_host::SessionHost;

// The registrations a session needs (backend, paging, OS detector).
use vmi_arch_x86 as _;
use vmi_backend_file as _;

fn plugin_abi(c: &mut Criterion) {
    let Some(dir) = vmi_benches::real_guest() else {
        eprintln!("SKIP plugin ABI benchmarks: no fixture (scripts/fixture-guest 6.1 5)");
        return;
    };
    let elf = dir.join("memory.elf");
    let mut session =
        Session::open(elf.to_str().expect("UTF-8 path"), &OpenOptions::default()).expect("open");
    // The whole profile, as a plugin gets it: a cached one holds only what earlier runs used.
    let full = vmi_core::DetectOptions {
        full_profile: true,
        ..Default::default()
    };
    assert!(session.detect_os(&full).is_some(), "Linux found");
    let kernel = vmi_os_linux::linux(&session).expect("Linux").kernel();
    // Eight words of init_task: kernel data, mapped, read through the real page tables.
    let base = kernel.symbol("init_task").expect("init_task").raw();
    let mem = kernel.memory(&session);
    let host = SessionHost::new(&session);
    let plugin_view = Host::new(HostInterface_TO::from_ptr(&host, TD_Opaque));

    let mut group = c.benchmark_group("plugin_abi");
    let mut i = 0u64;
    group.bench_function("read_u64_direct", |b| {
        b.iter(|| {
            i = (i + 8) & 0x3f;
            let mut buf = [0u8; 8];
            mem.read_exact(Va::new(base + i), &mut buf).unwrap();
            black_box(buf)
        })
    });
    group.bench_function("read_u64_through_plugin_abi", |b| {
        b.iter(|| {
            i = (i + 8) & 0x3f;
            let mut buf = [0u8; 8];
            plugin_view.read(Space::Kernel, base + i, &mut buf).unwrap();
            black_box(buf)
        })
    });
    group.finish();
}

criterion_group!(benches, plugin_abi);
criterion_main!(benches);
