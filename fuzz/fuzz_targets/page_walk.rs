//! Page walks over fuzzer-chosen guest memory: translate, walk and for_each_mapping must never
//! panic or hang, and must agree with each other.
//!
//! Input: a 20-byte header, then guest-physical memory.
//!   [0]      bits 0-2: paging mode (mod 5); bit 3: use the root as given (else fold it into
//!            memory); bits 4-7: memory base in pages
//!   [1..9]   root (CR3-like), little endian
//!   [9..17]  virtual address to translate, little endian
//!   [17]     the enumeration visitor stops after this many items (+1)
//!   [18..20] reserved
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use vmi_arch_x86::X86;
use vmi_core::memory::BufferMemory;
use vmi_core::{AddressSpace, Architecture, Pa, PagingMode, Tlb, Translation, Va};

const HEADER: usize = 20;

fuzz_target!(|data: &[u8]| {
    let Some((header, memory)) = data.split_first_chunk::<HEADER>() else {
        return;
    };
    let mode = match header[0] & 7 {
        0 => PagingMode::Disabled,
        1 => PagingMode::Legacy,
        2 => PagingMode::Pae,
        3 => PagingMode::Ia32e4,
        _ => PagingMode::Ia32e5,
    };
    let base = u64::from(header[0] >> 4) * 0x1000;
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let raw_root = u64_at(1);
    let root = if header[0] & 8 != 0 {
        raw_root
    } else {
        // Mostly inside memory, aligned as CR3 would make it.
        let folded = base + raw_root % (memory.len() as u64 + 1);
        folded
            & if mode == PagingMode::Pae {
                !0x1f
            } else {
                !0xfff
            }
    };
    let va = Va::new(u64_at(9));
    let stop_after = usize::from(header[17]) + 1;

    let mem = BufferMemory::new(Pa::new(base), memory.to_vec());
    let space = AddressSpace {
        root: Pa::new(root),
        mode,
    };
    // A small table budget keeps every input fast; the default bound is tested in the crate.
    let x86 = X86::with_table_limit(32);

    let translated = x86.translate(&mem, space, va);
    let walk = x86.walk(&mem, space, va);
    assert_eq!(walk.result, translated);
    assert!(walk.steps.len() <= 5);

    let tlb = Tlb::new(X86::new(), 2);
    assert_eq!(tlb.translate(&mem, space, va), translated);
    assert_eq!(tlb.translate(&mem, space, va), translated);

    // Enumerated mappings are in ascending, non-overlapping order and translate back.
    let mut seen = 0usize;
    let mut next_free: Option<u64> = Some(0);
    x86.for_each_mapping(&mem, space, &mut |item| {
        seen += 1;
        if let Ok(m) = item {
            let start = next_free.expect("a mapping after one that ended the address space");
            assert!(
                m.va.raw() >= start,
                "{m:?} overlaps or precedes the previous mapping"
            );
            next_free = m.va.raw().checked_add(m.size.bytes());
            let t = x86
                .translate(&mem, space, m.va)
                .expect("an enumerated mapping translates");
            if mode == PagingMode::Disabled {
                assert_eq!((t.pa, t.perms), (m.pa, m.perms));
            } else {
                assert_eq!(
                    t,
                    Translation {
                        pa: m.pa,
                        size: m.size,
                        perms: m.perms
                    }
                );
            }
        }
        if seen >= stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
});
