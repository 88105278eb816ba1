//! The detector on guests that are not Windows (cheap `NotThisOs`), and on a Windows kernel
//! whose RSDS record is gone (a triage dump's case): the table is found by fingerprint.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{guests, options, Regs};
use vmi_core::memory::BufferMemory;
use vmi_core::{
    Confidence, DetectOptions, Detection, KernelHints, Pa, PhysicalMemory, Session, Target, Va,
    X86Registers,
};
use vmi_fixtures::windows::Options;
use vmi_os_windows::discovery::Methods;
use vmi_os_windows::kernel::TableMatch;
use vmi_os_windows::os::{open, Opened, WINDOWS_DETECTOR};

/// 32 MiB of memory with a Linux-like PML4 at 0x1000 (kernel entries, no self-reference).
fn linux_like(registers: bool) -> Session {
    let mut bytes = vec![0u8; 32 << 20];
    for i in 256..300usize {
        let e: u64 = (0x2000 + (i as u64) * 0x1000) | 0x63;
        bytes[0x1000 + i * 8..0x1000 + i * 8 + 8].copy_from_slice(&e.to_le_bytes());
    }
    let memory: Arc<dyn PhysicalMemory> = Arc::new(BufferMemory::new(Pa::new(0), bytes));
    let mut b = Target::builder("test", "linux-like", memory);
    if registers {
        let regs = X86Registers {
            cr0: 0x8005_0033,
            cr3: 0x1000,
            cr4: 0x20,
            efer: 0x500,
            ..Default::default()
        };
        b = b.registers(Arc::new(Regs(vec![regs])));
    }
    Session::from_target("linux-like", b.build(), Box::new(vmi_arch_x86::X86::new()))
}

#[test]
fn not_windows_cheaply() {
    for registers in [true, false] {
        let s = linux_like(registers);
        let started = Instant::now();
        let verdict = (WINDOWS_DETECTOR.detect)(&s, &DetectOptions::default());
        let took = started.elapsed();
        assert!(took < Duration::from_millis(50), "{took:?}");
        match verdict {
            // With a vCPU: its CR3's PML4 does not map itself.
            Detection::NotThisOs(why) if registers => assert!(why.contains("vCPU"), "{why}"),
            // Without: the 16 MiB scan is left for when no other detector proved its OS.
            Detection::Deferred(why) if !registers => assert!(why.contains("16 MiB"), "{why}"),
            Detection::Found { .. } => panic!("found Windows"),
            Detection::Failed(e) => panic!("failed: {e}"),
            Detection::NotThisOs(why) | Detection::Deferred(why) => {
                panic!("registers {registers}: {why}")
            }
        }
    }
    // The exhaustive round scans, and finds no kernel PML4.
    let s = linux_like(false);
    let exhaustive = DetectOptions {
        exhaustive: true,
        ..DetectOptions::default()
    };
    assert!(matches!(
        (WINDOWS_DETECTOR.detect)(&s, &exhaustive),
        Detection::NotThisOs(_)
    ));
}

#[test]
fn raw_windows_guest_without_low_stub_is_found_in_the_second_round() {
    let o = Options {
        low_stub: false,
        ..Options::default()
    };
    let g = &guests(&o)[0];
    let mut s = g.session_with(false);
    assert!(matches!(
        (WINDOWS_DETECTOR.detect)(&s, &options()),
        Detection::Deferred(_)
    ));
    let os = s.detect_os(&options());
    assert!(os.is_some(), "{:?}", s.detections());
    assert_eq!(s.os().unwrap().info().kind, "windows");
}

/// Replaces every RSDS record naming ntkrnlmp.pdb in nt's first 4 MiB.
fn without_rsds(g: &common::Guest, hints: Option<KernelHints>) -> Session {
    let plain = g.session();
    let Opened::Found(os, _) = open(&plain, &options(), Methods::ALL).unwrap() else {
        panic!()
    };
    let k = os.kernel();
    let vm = plain.virtual_memory(k.space());
    let mut image = vec![0u8; 4 << 20];
    let n = vm.read(k.base(), &mut image).unwrap();
    let patches: Vec<(Va, Vec<u8>)> = memchr::memmem::find_iter(&image[..n], b"RSDS")
        .map(|at| (k.base().checked_add(at as u64).unwrap(), b"XXXX".to_vec()))
        .collect();
    assert!(!patches.is_empty());
    let s = g.patched(k.space(), &patches);
    match hints {
        None => s,
        Some(h) => {
            let memory: Arc<dyn PhysicalMemory> = Arc::new(Snapshot(s));
            let target = Target::builder("test", "triage-like", memory)
                .registers(Arc::new(Regs(g.guest.vcpus().to_vec())))
                .kernel_hints(h)
                .build();
            Session::from_target("triage-like", target, Box::new(vmi_arch_x86::X86::new()))
        }
    }
}

/// A session's physical memory as a target's.
struct Snapshot(Session);

impl PhysicalMemory for Snapshot {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), vmi_core::MemoryError> {
        self.0.memory().read(pa, buf)
    }
    fn memory_map(&self) -> &[vmi_core::MemoryRegion] {
        self.0.memory().memory_map()
    }
}

#[test]
fn fingerprint_without_rsds() {
    for g in guests(&Options::default()) {
        let t = g.truth();
        let mut hints = KernelHints::default();
        hints.symbols.insert(
            "PsActiveProcessHead".into(),
            Va::new(t.ps_active_process_head),
        );
        hints.symbols.insert(
            "PsLoadedModuleList".into(),
            Va::new(t.ps_loaded_module_list),
        );
        hints.dtb = Some(t.dtb);
        for h in [Some(hints), None] {
            let with_hints = h.is_some();
            let s = without_rsds(&g, h);
            match open(&s, &options(), Methods::ALL).unwrap() {
                Opened::Found(os, c) => {
                    assert_eq!(c, Confidence(80));
                    let k = os.kernel();
                    assert_eq!(k.table_match(), &TableMatch::Fingerprint);
                    assert!(k.pdb().is_none());
                    assert_eq!(k.base(), Va::new(t.kernel_base));
                    assert!(
                        k.profile().source.contains(&t.pdb_guid),
                        "{} hints {with_hints}: {}",
                        t.isf,
                        k.profile().source
                    );
                    let ps = vmi_os_windows::analysis::processes(&s, k).unwrap();
                    assert_eq!(ps.items.len(), t.processes.len());
                }
                Opened::NotWindows(why) => panic!("{}: {why}", t.isf),
            }
        }
    }
}
