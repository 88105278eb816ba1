//! Walks over page tables written byte by byte here (not by the builder), one SDM rule at a
//! time: reserved bits, canonical addresses, unreadable tables, self-referencing tables,
//! PAE PDPTEs, 32-bit 4 MiB pages and permission accumulation.

use std::ops::ControlFlow;

use vmi_arch_x86::testing::PageTableBuilder;
use vmi_arch_x86::X86;
use vmi_core::memory::BufferMemory;
use vmi_core::{
    AddressSpace, Architecture, Mapping, Pa, PageSize, PagingLevel, PagingMode, Permissions,
    Translation, TranslationError, Va,
};

const P: u64 = 1;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;

/// Guest memory being written by hand.
struct Image(Vec<u8>);

impl Image {
    fn new(bytes: usize) -> Self {
        Self(vec![0; bytes])
    }

    fn set64(&mut self, table: u64, index: u64, value: u64) -> &mut Self {
        let at = (table + index * 8) as usize;
        self.0[at..at + 8].copy_from_slice(&value.to_le_bytes());
        self
    }

    fn set32(&mut self, table: u64, index: u64, value: u32) -> &mut Self {
        let at = (table + index * 4) as usize;
        self.0[at..at + 4].copy_from_slice(&value.to_le_bytes());
        self
    }

    fn memory(&self) -> BufferMemory {
        BufferMemory::new(Pa::new(0), self.0.clone())
    }
}

fn space(mode: PagingMode, root: u64) -> AddressSpace {
    AddressSpace {
        root: Pa::new(root),
        mode,
    }
}

fn idx(va: u64, shift: u32) -> u64 {
    (va >> shift) & 0x1ff
}

fn all_mappings(
    arch: &X86,
    mem: &BufferMemory,
    space: AddressSpace,
) -> Vec<Result<Mapping, TranslationError>> {
    let mut out = Vec::new();
    arch.for_each_mapping(mem, space, &mut |m| {
        out.push(m);
        ControlFlow::Continue(())
    });
    out
}

const RWX_USER: Permissions = Permissions::ALL;

/// A 4-level hierarchy for `va`: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000, with the
/// leaf written by the caller.
fn four_level(va: u64) -> Image {
    let mut img = Image::new(0x10000);
    img.set64(0x1000, idx(va, 39), 0x2000 | P | RW | US)
        .set64(0x2000, idx(va, 30), 0x3000 | P | RW | US)
        .set64(0x3000, idx(va, 21), 0x4000 | P | RW | US);
    img
}

#[test]
fn ia32e_4k_translation_and_walk_report() {
    let va = 0xffff_8812_3456_7abc_u64;
    let mut img = four_level(va);
    img.set64(0x4000, idx(va, 12), 0xdead_b000 | P | RW);
    let mem = img.memory();
    let s = space(PagingMode::Ia32e4, 0x1000);
    let x86 = X86::new();
    let t = x86.translate(&mem, s, Va::new(va)).unwrap();
    assert_eq!(
        t,
        Translation {
            pa: Pa::new(0xdead_babc),
            size: PageSize::Size4K,
            perms: Permissions {
                writable: true,
                user: false,
                executable: true
            },
        }
    );
    let walk = x86.walk(&mem, s, Va::new(va));
    assert_eq!(walk.result, Ok(t));
    let levels: Vec<u8> = walk.steps.iter().map(|s| s.level.0).collect();
    assert_eq!(levels, [4, 3, 2, 1]);
    assert_eq!(walk.steps[0].index as u64, idx(va, 39));
    assert_eq!(walk.steps[0].entry_pa, Pa::new(0x1000 + idx(va, 39) * 8));
    assert_eq!(walk.steps[3].entry, 0xdead_b000 | P | RW);
    assert_eq!(walk.steps[3].entry_pa, Pa::new(0x4000 + idx(va, 12) * 8));
}

#[test]
fn not_present_names_the_level_and_keeps_the_steps() {
    let va = 0x7f00_0020_1000_u64;
    let img = four_level(va);
    let mem = img.memory();
    let s = space(PagingMode::Ia32e4, 0x1000);
    let err = X86::new().translate(&mem, s, Va::new(va)).unwrap_err();
    assert_eq!(
        err,
        TranslationError::NotPresent {
            va: Va::new(va),
            level: PagingLevel(1),
            entry: 0
        }
    );
    let walk = X86::new().walk(&mem, s, Va::new(va));
    assert_eq!(walk.steps.len(), 4);
    assert_eq!(walk.result, Err(err));
    // A not-present entry with other bits set is still not present (P rules).
    let mut img = four_level(va);
    img.set64(0x4000, idx(va, 12), 0xffff_ffff_ffff_fffe);
    let err = X86::new()
        .translate(&img.memory(), s, Va::new(va))
        .unwrap_err();
    assert!(matches!(
        err,
        TranslationError::NotPresent {
            entry: 0xffff_ffff_ffff_fffe,
            ..
        }
    ));
}

#[test]
fn large_pages_and_their_reserved_bits() {
    let s = space(PagingMode::Ia32e4, 0x1000);
    let x86 = X86::new();
    let va = 0x0000_1234_5660_0000_u64;

    // 2 MiB page.
    let mut img = four_level(va);
    img.set64(0x3000, idx(va, 21), 0x8_4060_0000 | P | RW | US | PS);
    let t = x86
        .translate(&img.memory(), s, Va::new(va + 0x1_2345))
        .unwrap();
    assert_eq!((t.pa, t.size), (Pa::new(0x8_4061_2345), PageSize::Size2M));
    // Bit 12 is PAT in a large-page entry, not an address bit.
    img.set64(0x3000, idx(va, 21), 0x8_4060_0000 | (1 << 12) | P | PS);
    let t = x86.translate(&img.memory(), s, Va::new(va)).unwrap();
    assert_eq!(t.pa, Pa::new(0x8_4060_0000));
    // Bits 20:13 are reserved in a 2 MiB PDE.
    img.set64(0x3000, idx(va, 21), 0x8_4060_0000 | (1 << 13) | P | PS);
    assert_eq!(
        x86.translate(&img.memory(), s, Va::new(va)),
        Err(TranslationError::ReservedBits {
            va: Va::new(va),
            level: PagingLevel(2),
            entry: 0x8_4060_0000 | (1 << 13) | P | PS,
            reserved: 1 << 13
        })
    );

    // 1 GiB page; bits 29:13 reserved.
    let mut img = four_level(va);
    img.set64(0x2000, idx(va, 30), 0x40_c000_0000 | P | PS);
    let t = x86.translate(&img.memory(), s, Va::new(va)).unwrap();
    let off = va & 0x3fff_ffff;
    assert_eq!(
        (t.pa, t.size),
        (Pa::new(0x40_c000_0000 | off), PageSize::Size1G)
    );
    img.set64(0x2000, idx(va, 30), 0x40_c000_0000 | (1 << 29) | P | PS);
    assert!(matches!(
        x86.translate(&img.memory(), s, Va::new(va)),
        Err(TranslationError::ReservedBits {
            level: PagingLevel(3),
            reserved: 0x2000_0000,
            ..
        })
    ));

    // PS is reserved in a PML4E (and a PML5E).
    let mut img = four_level(va);
    img.set64(0x1000, idx(va, 39), 0x2000 | P | PS);
    assert!(matches!(
        x86.translate(&img.memory(), s, Va::new(va)),
        Err(TranslationError::ReservedBits {
            level: PagingLevel(4),
            reserved: 0x80,
            ..
        })
    ));
    let mut img = Image::new(0x2000);
    img.set64(0x1000, 0, 0x2000 | P | PS);
    assert!(matches!(
        x86.translate(
            &img.memory(),
            space(PagingMode::Ia32e5, 0x1000),
            Va::new(0x1000)
        ),
        Err(TranslationError::ReservedBits {
            level: PagingLevel(5),
            reserved: 0x80,
            ..
        })
    ));

    // Bits 62:52 are ignored in IA-32e entries (protection keys live at 62:59).
    let mut img = four_level(va);
    img.set64(0x4000, idx(va, 12), 0x7ff0_0000_0000_5000 | P);
    let t = x86.translate(&img.memory(), s, Va::new(va)).unwrap();
    assert_eq!(t.pa, Pa::new(0x5000));
}

#[test]
fn non_canonical_addresses_are_refused() {
    let mem = Image::new(0x2000).memory();
    let x86 = X86::new();
    for (mode, va) in [
        (PagingMode::Ia32e4, 0x0000_8000_0000_0000_u64),
        (PagingMode::Ia32e4, 0xffff_7fff_ffff_ffff),
        (PagingMode::Ia32e4, 0x0100_0000_0000_0000),
        (PagingMode::Ia32e5, 0x0100_0000_0000_0000),
        (PagingMode::Ia32e5, 0xfeff_ffff_ffff_ffff),
        (PagingMode::Legacy, 0x1_0000_0000),
        (PagingMode::Pae, 0xffff_ffff_8000_0000),
    ] {
        let s = space(mode, 0x1000);
        let want = Err(TranslationError::NonCanonical {
            va: Va::new(va),
            mode,
        });
        assert_eq!(x86.translate(&mem, s, Va::new(va)), want, "{mode} {va:#x}");
        let walk = x86.walk(&mem, s, Va::new(va));
        assert!(walk.steps.is_empty());
        assert_eq!(walk.result, want);
    }
    // The top of each canonical half is fine (it walks and finds nothing).
    for (mode, va) in [
        (PagingMode::Ia32e4, 0xffff_8000_0000_0000_u64),
        (PagingMode::Ia32e5, 0xff00_0000_0000_0000),
        (PagingMode::Ia32e5, 0x00ff_ffff_ffff_f000),
    ] {
        assert!(matches!(
            x86.translate(&mem, space(mode, 0x1000), Va::new(va)),
            Err(TranslationError::NotPresent { .. })
        ));
    }
}

#[test]
fn tables_outside_ram_are_unreadable() {
    let va = 0x4000_0000_u64;
    let mut img = Image::new(0x3000);
    img.set64(0x1000, idx(va, 39), 0x2000 | P | RW).set64(
        0x2000,
        idx(va, 30),
        0x10_0000_0000 | P | RW,
    );
    let mem = img.memory();
    let s = space(PagingMode::Ia32e4, 0x1000);
    let err = X86::new().translate(&mem, s, Va::new(va)).unwrap_err();
    assert!(
        matches!(
            &err,
            TranslationError::TableUnreadable { level: PagingLevel(2), entry_pa, .. }
                if *entry_pa == Pa::new(0x10_0000_0000)
        ),
        "{err:?}"
    );
    // The root itself outside RAM, and a root whose entry address overflows.
    let err = X86::new()
        .translate(&mem, space(PagingMode::Ia32e4, 0x8000_0000), Va::new(va))
        .unwrap_err();
    assert!(matches!(
        err,
        TranslationError::TableUnreadable {
            level: PagingLevel(4),
            ..
        }
    ));
    let err = X86::new()
        .translate(
            &mem,
            space(PagingMode::Ia32e4, u64::MAX - 7),
            Va::new(0x0000_7fff_ffff_ffff),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        TranslationError::TableUnreadable {
            level: PagingLevel(4),
            ..
        }
    ));

    // Enumeration reports the unreadable table once and carries on with its siblings.
    img.set64(0x2000, 7, P | PS | RW);
    let got = all_mappings(&X86::new(), &img.memory(), s);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        matches!(&got[0], Err(TranslationError::TableUnreadable { va: v, .. }) if *v == Va::new(va))
    );
    assert_eq!(
        got[1],
        Ok(Mapping {
            va: Va::new(7 << 30),
            pa: Pa::new(0),
            size: PageSize::Size1G,
            perms: Permissions {
                writable: true,
                user: false,
                executable: true
            }
        })
    );
}

#[test]
fn a_table_straddling_the_end_of_memory_is_read_entry_by_entry() {
    // The PT's first half is in RAM, its second half is not.
    let mut img = Image::new(0x4800);
    img.set64(0x1000, 0, 0x2000 | P | RW)
        .set64(0x2000, 0, 0x3000 | P | RW)
        .set64(0x3000, 0, 0x4000 | P | RW)
        .set64(0x4000, 3, 0x9000 | P);
    let mem = img.memory();
    let s = space(PagingMode::Ia32e4, 0x1000);
    let got = all_mappings(&X86::new(), &mem, s);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].as_ref().unwrap().va, Va::new(0x3000));
    assert!(matches!(
        &got[1],
        Err(TranslationError::TableUnreadable { va, entry_pa, .. })
            if *va == Va::new(256 << 12) && *entry_pa == Pa::new(0x4800)
    ));
    assert!(X86::new().translate(&mem, s, Va::new(0x3000)).is_ok());
    assert!(matches!(
        X86::new().translate(&mem, s, Va::new(0x10_0000)),
        Err(TranslationError::TableUnreadable { .. })
    ));
}

#[test]
fn self_referencing_pml4_terminates() {
    // Windows-style self map: PML4[0x1ed] points at the PML4 itself.
    let va = 0x0000_0000_0040_0000_u64;
    let mut img = four_level(va);
    img.set64(0x4000, idx(va, 12), 0x7000 | P | RW | US);
    img.set64(0x1000, 0x1ed, 0x1000 | P | RW);
    let mem = img.memory();
    let s = space(PagingMode::Ia32e4, 0x1000);
    let x86 = X86::new();

    // The CPU follows the self reference; so does translate: the self-map address of the
    // PML4 (index 0x1ed at every level) is the PML4's own frame.
    let self_map = 0xffff_f6fb_7dbe_d000_u64;
    let t = x86.translate(&mem, s, Va::new(self_map + 8)).unwrap();
    assert_eq!(t.pa, Pa::new(0x1008));

    // Enumeration does not enter a table already on its path: one mapping, no loop.
    let got = all_mappings(&x86, &mem, s);
    assert_eq!(
        got,
        [Ok(Mapping {
            va: Va::new(va),
            pa: Pa::new(0x7000),
            size: PageSize::Size4K,
            perms: Permissions {
                writable: true,
                user: true,
                executable: true
            }
        })]
    );

    // Every entry of every level pointing back at the root.
    let mut img = Image::new(0x2000);
    for i in 0..512 {
        img.set64(0x1000, i, 0x1000 | P | RW);
    }
    assert!(all_mappings(&x86, &img.memory(), s).is_empty());
    // Two tables pointing at each other.
    let mut img = Image::new(0x3000);
    for i in 0..512 {
        img.set64(0x1000, i, 0x2000 | P);
        img.set64(0x2000, i, 0x1000 | P);
    }
    assert!(all_mappings(&x86, &img.memory(), s).is_empty());
}

#[test]
fn enumeration_work_is_capped() {
    // A fan-out of distinct tables: PML4 -> 512 x PDPT -> 512 x PD -> 512 x PT, all the same
    // PDPT/PD/PT, which would be 2^27 PTs' worth of entries without the cap.
    let mut img = Image::new(0x5000);
    for i in 0..512 {
        img.set64(0x1000, i, 0x2000 | P);
        img.set64(0x2000, i, 0x3000 | P);
        img.set64(0x3000, i, 0x4000 | P);
    }
    img.set64(0x4000, 0, 0x9000 | P);
    let mem = img.memory();
    let s = space(PagingMode::Ia32e4, 0x1000);
    let x86 = X86::with_table_limit(1000);
    let got = all_mappings(&x86, &mem, s);
    let (errors, oks): (Vec<_>, Vec<_>) = got.iter().partition(|r| r.is_err());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(matches!(
        errors[0],
        Err(TranslationError::LimitReached { limit: 1000, .. })
    ));
    // 1000 tables = the PML4, the PDPT, the PD (as PDPT entry 0) with its 512 PTs, the PD
    // again (as entry 1) and 484 more PTs, each PT mapping one page.
    assert_eq!(oks.len(), 512 + 484);
    // Stopping early is honoured.
    let mut n = 0;
    X86::new().for_each_mapping(&mem, s, &mut |_| {
        n += 1;
        if n == 10 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(n, 10);
}

#[test]
fn pae_pdpt_rules() {
    // PDPT at 0x20 (32-byte aligned, inside the first page), PD 0x1000, PT 0x2000.
    let va = 0xc012_3456_u64; // PDPT index 3, PD index 0, PT index 0x123.
    let mut img = Image::new(0x4000);
    img.set64(0x20, 3, 0x1000 | P)
        .set64(0x1000, 0, 0x2000 | P | RW | US)
        .set64(0x2000, 0x123, 0x3000 | P | NX);
    let s = space(PagingMode::Pae, 0x20);
    let x86 = X86::new();
    let t = x86.translate(&img.memory(), s, Va::new(va)).unwrap();
    assert_eq!(t.pa, Pa::new(0x3456));
    // PDPTEs carry no access rights: the PD and PT decide.
    assert_eq!(
        t.perms,
        Permissions {
            writable: false,
            user: false,
            executable: false
        }
    );
    let walk = x86.walk(&img.memory(), s, Va::new(va));
    assert_eq!(walk.steps[0].entry_pa, Pa::new(0x38));
    assert_eq!(walk.steps[0].index, 3);

    // Bits 2:1, 8:5 (PS among them) and 63:52 (NX among them) are reserved in a PDPTE.
    for bad in [RW, US, PS, 1 << 5, 1 << 8, NX, 1 << 52] {
        img.set64(0x20, 3, 0x1000 | P | bad);
        assert_eq!(
            x86.translate(&img.memory(), s, Va::new(va)),
            Err(TranslationError::ReservedBits {
                va: Va::new(va),
                level: PagingLevel(3),
                entry: 0x1000 | P | bad,
                reserved: bad
            }),
            "{bad:#x}"
        );
    }
    // Unlike IA-32e, PAE reserves bits 62:52 of PDEs and PTEs too.
    img.set64(0x20, 3, 0x1000 | P);
    img.set64(0x2000, 0x123, 0x3000 | P | (1 << 58));
    assert!(matches!(
        x86.translate(&img.memory(), s, Va::new(va)),
        Err(TranslationError::ReservedBits {
            level: PagingLevel(1),
            reserved: 0x0400_0000_0000_0000,
            ..
        })
    ));
    // A 2 MiB PAE page.
    img.set64(0x1000, 1, 0x8_0020_0000 | P | PS | RW);
    let t = x86
        .translate(&img.memory(), s, Va::new(0xc020_0042))
        .unwrap();
    assert_eq!((t.pa, t.size), (Pa::new(0x8_0020_0042), PageSize::Size2M));
    // The 4-entry PDPT ends: the walker never reads past entry 3, and 32-bit VAs only.
    let got = all_mappings(&x86, &img.memory(), s);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(got[0], Err(TranslationError::ReservedBits { .. })));
    assert_eq!(got[1].as_ref().unwrap().va, Va::new(0xc020_0000));
}

#[test]
fn legacy_4k_and_4m_pages() {
    // PD at 0x1000, PT at 0x2000.
    let mut img = Image::new(0x3000);
    img.set32(0x1000, 0x300, 0x2000 | (P | RW | US) as u32)
        .set32(0x2000, 0x45, 0x0abc_d000 | P as u32)
        // A 4 MiB page at 0x1_0080_0000 (PSE-36: bits 39:32 = 0x01 in entry bits 20:13).
        .set32(0x1000, 0x2, 0x0080_0000 | (1 << 13) | (P | PS | US) as u32);
    let mem = img.memory();
    let s = space(PagingMode::Legacy, 0x1000);
    let x86 = X86::new();

    let t = x86.translate(&mem, s, Va::new(0xc004_5123)).unwrap();
    assert_eq!((t.pa, t.size), (Pa::new(0x0abc_d123), PageSize::Size4K));
    // No NX in 32-bit paging: everything is executable.
    assert_eq!(
        t.perms,
        Permissions {
            writable: false,
            user: false,
            executable: true
        }
    );
    let t = x86.translate(&mem, s, Va::new(0x0091_2345)).unwrap();
    assert_eq!((t.pa, t.size), (Pa::new(0x1_0091_2345), PageSize::Size4M));
    assert_eq!(
        t.perms,
        Permissions {
            writable: false,
            user: true,
            executable: true
        }
    );

    let got: Vec<Mapping> = all_mappings(&x86, &mem, s)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        got.iter()
            .map(|m| (m.va.raw(), m.pa.raw(), m.size))
            .collect::<Vec<_>>(),
        [
            (0x0080_0000, 0x1_0080_0000, PageSize::Size4M),
            (0xc004_5000, 0x0abc_d000, PageSize::Size4K)
        ]
    );

    // Bit 21 is reserved in a 4 MiB PDE (M = 40).
    img.set32(0x1000, 0x2, 0x0080_0000 | (1 << 21) | (P | PS) as u32);
    assert!(matches!(
        x86.translate(&img.memory(), s, Va::new(0x0080_0000)),
        Err(TranslationError::ReservedBits {
            level: PagingLevel(2),
            reserved: 0x20_0000,
            ..
        })
    ));
    // The upper half of a 4-byte entry does not exist: a PTE never sets "bit 63".
    let t = x86
        .translate(&img.memory(), s, Va::new(0xc004_5000))
        .unwrap();
    assert!(t.perms.executable);
}

#[test]
fn permissions_accumulate_over_levels() {
    let va = Va::new(0x7f00_1234_5000);
    let mut b = PageTableBuilder::new(PagingMode::Ia32e4, 1 << 16);
    b.map(va, Pa::new(0x9000), PageSize::Size4K, Permissions::ALL)
        .unwrap();
    let x86 = X86::new();
    let perms = |b: &PageTableBuilder| x86.translate(b.memory(), b.space(), va).unwrap().perms;
    assert_eq!(perms(&b), RWX_USER);

    // A user page under a supervisor PDE is not user.
    b.update_entry(va, PagingLevel(2), |e| e & !US).unwrap();
    assert_eq!(
        perms(&b),
        Permissions {
            writable: true,
            user: false,
            executable: true
        }
    );
    // NX at the PD makes the 4 KiB page non-executable.
    b.update_entry(va, PagingLevel(2), |e| e | NX).unwrap();
    assert_eq!(
        perms(&b),
        Permissions {
            writable: true,
            user: false,
            executable: false
        }
    );
    // Read-only at the PML4 makes everything below read-only.
    b.update_entry(va, PagingLevel(4), |e| e & !RW).unwrap();
    let want = Permissions {
        writable: false,
        user: false,
        executable: false,
    };
    assert_eq!(perms(&b), want);
    // Enumeration accumulates the same way.
    let got = all_mappings(&x86, b.memory(), b.space());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().unwrap().perms, want);
}

#[test]
fn disabled_paging_is_the_identity() {
    let mem = BufferMemory::new(Pa::new(0x1000), vec![0; 0x40_3000]);
    let s = space(PagingMode::Disabled, 0);
    let x86 = X86::new();
    let t = x86.translate(&mem, s, Va::new(0x1_2345_6789)).unwrap();
    assert_eq!((t.pa, t.perms), (Pa::new(0x1_2345_6789), Permissions::ALL));
    let walk = x86.walk(&mem, s, Va::new(0x42));
    assert!(walk.steps.is_empty());
    assert_eq!(walk.result.unwrap().pa, Pa::new(0x42));
    // RAM [0x1000, 0x40_4000): 4 KiB pages up to 2 MiB, a 2 MiB page, then 4 KiB pages.
    let got: Vec<Mapping> = all_mappings(&x86, &mem, s)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len(), 511 + 1 + 4);
    assert_eq!(got[0].va, Va::new(0x1000));
    assert_eq!(
        (got[511].va, got[511].size),
        (Va::new(0x20_0000), PageSize::Size2M)
    );
    assert_eq!(got.last().unwrap().va, Va::new(0x40_3000));
    assert!(got.iter().all(|m| m.va.raw() == m.pa.raw()));
}

#[test]
fn x86_is_registered() {
    let names: Vec<&str> = vmi_core::registry::ARCHITECTURES
        .items()
        .iter()
        .map(|a| a.name)
        .collect();
    assert!(names.contains(&"x86"), "{names:?}");
    let arch = (vmi_arch_x86::ENTRY.make)();
    assert_eq!(arch.name(), "x86");
}
