//! Traps (notes §4.3): software PTEs (transition, prototype, pagefile), large user pages,
//! shuffled and cyclic lists; hostile patches (cycles, unreadable links, absurd lengths) give
//! partial results with warnings or clear errors, never a hang or a panic.

mod common;

use common::{guests, options, Guest};
use vmi_core::{Session, Va};
use vmi_fixtures::windows::{Options, Traps};
use vmi_os_windows::discovery::Methods;
use vmi_os_windows::mem::GuestMemory;
use vmi_os_windows::os::{open, Opened};
use vmi_os_windows::{analysis, Kernel, WindowsError};

fn kernel(session: &Session) -> Kernel {
    match open(session, &options(), Methods::ALL).unwrap() {
        Opened::Found(os, _) => os.into_kernel(),
        Opened::NotWindows(why) => panic!("not Windows: {why}"),
    }
}

#[test]
fn software_ptes_and_large_pages() {
    let o = Options {
        traps: Traps {
            transition_ptes: true,
            prototype_ptes: true,
            pagefile_ptes: true,
            large_user_pages: true,
            ..Traps::default()
        },
        seed: 3,
        ..Options::default()
    };
    for g in guests(&o) {
        let t = g.truth();
        let s = g.session();
        let k = kernel(&s);
        let mut kinds = std::collections::BTreeSet::new();
        for sp in &t.special_pages {
            kinds.insert(sp.kind.clone());
            let p = t.process(sp.pid).unwrap();
            let mem = k.process_memory(&s, vmi_core::Pa::new(p.dtb_pa));
            let mut head = [0u8; 16];
            let got = mem.read_exact(Va::new(sp.va), &mut head);
            match sp.kind.as_str() {
                "paged_out" => {
                    assert!(
                        matches!(got, Err(WindowsError::PagedOut { .. })),
                        "{} {:#x}: {got:?}",
                        t.isf,
                        sp.va
                    );
                    // The hardware walk alone does not read it as zeros either.
                    assert!(s
                        .virtual_memory(vmi_core::AddressSpace {
                            root: vmi_core::Pa::new(p.dtb_pa),
                            mode: k.space().mode
                        })
                        .read_exact(Va::new(sp.va), &mut head)
                        .is_err());
                }
                _ => {
                    got.unwrap_or_else(|e| panic!("{} {} {:#x}: {e}", t.isf, sp.kind, sp.va));
                    if let Some(want) = &sp.head {
                        assert_eq!(&head.to_vec(), want, "{} {}", t.isf, sp.kind);
                    }
                    if let Some(pa) = sp.pa {
                        assert_eq!(
                            mem.translate(Va::new(sp.va)).unwrap().raw(),
                            pa,
                            "{} {}",
                            t.isf,
                            sp.kind
                        );
                    }
                }
            }
        }
        for kind in ["transition", "prototype", "paged_out", "large"] {
            assert!(
                kinds.contains(kind),
                "{}: no {kind} page in the guest",
                t.isf
            );
        }
        // Environments live on transition pages: still read whole.
        for p in t
            .processes
            .iter()
            .filter(|p| p.peb.is_some() && p.exit_time.is_none())
        {
            assert_eq!(
                analysis::environment(&s, &k, p.pid).unwrap(),
                p.env,
                "{}",
                t.isf
            );
            let dlls = analysis::process_modules(&s, &k, p.pid).unwrap();
            assert_eq!(dlls.items.len(), p.dlls.len() + p.dlls32.len());
        }
    }
}

#[test]
fn shuffled_lists() {
    let o = Options {
        traps: Traps {
            shuffled_lists: true,
            ..Traps::default()
        },
        seed: 11,
        ..Options::default()
    };
    for g in guests(&o) {
        let t = g.truth();
        let s = g.session();
        let k = kernel(&s);
        let ps = analysis::processes(&s, &k).unwrap();
        assert!(ps.warnings.is_empty());
        let mut got: Vec<u32> = ps.items.iter().map(|p| p.pid).collect();
        let mut want: Vec<u32> = t.processes.iter().map(|p| p.pid).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let mut mods: Vec<u64> = analysis::kernel_modules(&s, &k)
            .unwrap()
            .items
            .iter()
            .map(|m| m.base.raw())
            .collect();
        let mut want: Vec<u64> = t.modules.iter().map(|m| m.base).collect();
        mods.sort();
        want.sort();
        assert_eq!(mods, want);
    }
}

#[test]
fn cyclic_lists_end_with_a_warning() {
    let o = Options {
        traps: Traps {
            cyclic_lists: true,
            ..Traps::default()
        },
        seed: 5,
        ..Options::default()
    };
    for g in guests(&o) {
        let t = g.truth();
        let s = g.session();
        let k = kernel(&s);
        let ps = analysis::processes(&s, &k).unwrap();
        assert_eq!(ps.items.len(), t.processes.len(), "{}", t.isf);
        assert!(
            matches!(ps.warnings.as_slice(), [WindowsError::Cycle { .. }]),
            "{:?}",
            ps.warnings
        );
        let mods = analysis::kernel_modules(&s, &k).unwrap();
        assert_eq!(mods.items.len(), t.modules.len());
        assert!(matches!(
            mods.warnings.as_slice(),
            [WindowsError::Cycle { .. }]
        ));
    }
}

fn off(k: &Kernel, ty: &str, field: &str) -> u64 {
    k.profile().field_offset(ty, field).unwrap()
}

#[test]
fn hostile_patches() {
    let o = Options::default();
    for g in guests(&o) {
        hostile(&g);
    }
}

fn hostile(g: &Guest) {
    let t = g.truth();
    let s = g.session();
    let k = kernel(&s);
    let space = k.space();
    let links = off(&k, "_EPROCESS", "ActiveProcessLinks");
    let third = Va::new(t.processes[2].eprocess);

    // A process's Flink into unmapped memory: the processes up to it, and a warning.
    let bad = g.patched(
        space,
        &[(
            third.checked_add(links).unwrap(),
            0xFFFF_F6FF_DEAD_0000u64.to_le_bytes().to_vec(),
        )],
    );
    let ps = analysis::processes(&bad, &k).unwrap();
    assert_eq!(ps.items.len(), 3, "{}", t.isf);
    assert!(
        matches!(ps.warnings.as_slice(), [WindowsError::Unreadable { .. }]),
        "{:?}",
        ps.warnings
    );

    // A thread list entry pointing at itself.
    let explorer = t
        .processes
        .iter()
        .find(|p| p.name == "explorer.exe")
        .unwrap();
    let tle = off(&k, "_ETHREAD", "ThreadListEntry");
    let first = Va::new(explorer.threads[0].ethread)
        .checked_add(tle)
        .unwrap();
    let bad = g.patched(space, &[(first, first.raw().to_le_bytes().to_vec())]);
    let th = analysis::threads(&bad, &k, explorer.pid).unwrap();
    assert_eq!(th.items.len(), 1);
    assert!(matches!(
        th.warnings.as_slice(),
        [WindowsError::Cycle { .. }]
    ));

    // A VAD whose left child is the root: a cycle, reported; the walk ends.
    let root_at = Va::new(explorer.eprocess)
        .checked_add(off(&k, "_EPROCESS", "VadRoot"))
        .unwrap();
    let root = GuestMemory::read_va(&s.virtual_memory(space), root_at).unwrap();
    let leaf = Va::new(
        explorer
            .vads
            .iter()
            .map(|v| v.node)
            .find(|&n| n != root.raw())
            .unwrap(),
    );
    let bad = g.patched(space, &[(leaf, root.raw().to_le_bytes().to_vec())]);
    let vads = analysis::regions(&bad, &k, explorer.pid).unwrap();
    assert!(vads.items.len() <= explorer.vads.len());
    assert!(
        vads.warnings
            .iter()
            .any(|w| matches!(w, WindowsError::Cycle { .. })),
        "{:?}",
        vads.warnings
    );

    // A kernel module name of 0xFFFF bytes at an unmapped buffer: that module is skipped.
    let kname = Va::new(t.modules[1].entry)
        .checked_add(off(&k, "_KLDR_DATA_TABLE_ENTRY", "BaseDllName"))
        .unwrap();
    let mut us = vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
    us.extend(0xFFFF_F6FF_DEAD_0000u64.to_le_bytes());
    let bad = g.patched(space, &[(kname, us)]);
    let mods = analysis::kernel_modules(&bad, &k).unwrap();
    assert_eq!(mods.items.len(), t.modules.len() - 1);
    assert_eq!(mods.warnings.len(), 1);

    // A process's ImageFileName without a NUL and an absurd thread count: read as given.
    let name_at = third
        .checked_add(off(&k, "_EPROCESS", "ImageFileName"))
        .unwrap();
    let bad = g.patched(space, &[(name_at, vec![b'A'; 15])]);
    let ps = analysis::processes(&bad, &k).unwrap();
    assert_eq!(ps.items[2].name, "A".repeat(15));
}
