//! Property tests: the walker against an independent reference model, in all four paging
//! modes.
//!
//! Each case draws a set of mappings (4 KiB and every large-page size the mode has, random
//! permissions, clustered so that tables are shared, spread over the whole canonical address
//! space), builds real page tables with the builder, restricts rights at random upper-level
//! entries, and checks `translate`, `walk`, `for_each_mapping` and a small `Tlb` with random
//! flushes and unmaps against the model: a `BTreeMap` from first virtual address to
//! (physical address, size, permissions) plus a list of upper-level restrictions.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use proptest::prelude::*;
use vmi_arch_x86::testing::PageTableBuilder;
use vmi_arch_x86::{BuildError, X86};
use vmi_core::{
    Architecture, Mapping, Pa, PageSize, PagingLevel, PagingMode, Permissions, Tlb, Translation,
    TranslationError, Va,
};

/// What the model knows of a mode, written from the SDM for this test alone.
struct Spec {
    mode: PagingMode,
    va_bits: u32,
    sign_extended: bool,
    no_execute: bool,
    levels: u8,
    /// Bits per table index below the root (the root may be narrower: PAE's 2-bit PDPT).
    index_bits: u32,
    /// The large-page size at level 2 (and 1 GiB at level 3 in IA-32e).
    large: &'static [PageSize],
    /// Levels whose entries have R/W, U/S (and XD): all but PAE's PDPT.
    rights_above: u8,
    /// Widths of random VA neighbourhoods, in bits.
    spans: [u32; 4],
}

const LEGACY: Spec = Spec {
    mode: PagingMode::Legacy,
    va_bits: 32,
    sign_extended: false,
    no_execute: false,
    levels: 2,
    index_bits: 10,
    large: &[PageSize::Size4M],
    rights_above: 2,
    spans: [23, 26, 30, 32],
};

const PAE: Spec = Spec {
    mode: PagingMode::Pae,
    va_bits: 32,
    sign_extended: false,
    no_execute: true,
    levels: 3,
    index_bits: 9,
    large: &[PageSize::Size2M],
    rights_above: 2,
    spans: [22, 26, 30, 32],
};

const IA32E_4: Spec = Spec {
    mode: PagingMode::Ia32e4,
    va_bits: 48,
    sign_extended: true,
    no_execute: true,
    levels: 4,
    index_bits: 9,
    large: &[PageSize::Size2M, PageSize::Size1G],
    rights_above: 4,
    spans: [22, 31, 40, 48],
};

const IA32E_5: Spec = Spec {
    mode: PagingMode::Ia32e5,
    va_bits: 57,
    sign_extended: true,
    no_execute: true,
    levels: 5,
    index_bits: 9,
    large: &[PageSize::Size2M, PageSize::Size1G],
    rights_above: 5,
    spans: [22, 31, 49, 57],
};

impl Spec {
    fn mask(bits: u32) -> u64 {
        if bits >= 64 {
            u64::MAX
        } else {
            (1 << bits) - 1
        }
    }

    fn canonical(&self, va: u64) -> u64 {
        let va = va & Self::mask(self.va_bits);
        if self.sign_extended && va >> (self.va_bits - 1) & 1 == 1 {
            va | !Self::mask(self.va_bits)
        } else {
            va
        }
    }

    fn is_canonical(&self, va: u64) -> bool {
        self.canonical(va) == va
    }

    /// Lowest VA bit indexed at `level`.
    fn shift(&self, level: u8) -> u32 {
        12 + self.index_bits * u32::from(level - 1)
    }

    fn leaf_level(&self, size: PageSize) -> u8 {
        match size {
            PageSize::Size4K => 1,
            PageSize::Size2M | PageSize::Size4M => 2,
            PageSize::Size1G => 3,
        }
    }

    fn size(&self, pick: u8) -> PageSize {
        match pick % 8 {
            0..=4 => PageSize::Size4K,
            5 | 6 => self.large[0],
            _ => *self.large.last().unwrap(),
        }
    }

    fn pa_bits(&self, size: PageSize) -> u32 {
        match (self.mode, size) {
            (PagingMode::Legacy, PageSize::Size4M) => 40,
            (PagingMode::Legacy, _) => 32,
            _ => 52,
        }
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    cluster: usize,
    span: usize,
    offset: u64,
    size: u8,
    pa: u64,
    perms: u8,
}

#[derive(Debug, Clone)]
enum Op {
    /// Translate an address inside the n-th mapping (modulo the count) at this offset.
    Mapped(usize, u64),
    /// Translate an arbitrary address.
    Anywhere(u64),
    Flush,
    /// Clear the leaf entry of the n-th mapping, then flush.
    Unmap(usize),
}

#[derive(Debug, Clone)]
struct Case {
    clusters: [u64; 3],
    candidates: Vec<Candidate>,
    /// (mapping index, level pick, 0 = clear R/W, 1 = clear U/S, 2 = set XD)
    restrictions: Vec<(usize, u8, u8)>,
    probes: Vec<u64>,
    ops: Vec<Op>,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    let candidate = (
        0usize..3,
        0usize..4,
        any::<u64>(),
        any::<u8>(),
        any::<u64>(),
        any::<u8>(),
    )
        .prop_map(|(cluster, span, offset, size, pa, perms)| Candidate {
            cluster,
            span,
            offset,
            size,
            pa,
            perms,
        });
    let op = prop_oneof![
        4 => (any::<usize>(), any::<u64>()).prop_map(|(i, o)| Op::Mapped(i, o)),
        2 => any::<u64>().prop_map(Op::Anywhere),
        1 => Just(Op::Flush),
        1 => any::<usize>().prop_map(Op::Unmap),
    ];
    (
        any::<[u64; 3]>(),
        prop::collection::vec(candidate, 1..40),
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..6),
        prop::collection::vec(any::<u64>(), 0..24),
        prop::collection::vec(op, 0..64),
        any::<u64>(),
    )
        .prop_map(
            |(clusters, candidates, restrictions, probes, ops, seed)| Case {
                clusters,
                candidates,
                restrictions,
                probes,
                ops,
                seed,
            },
        )
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ModelPage {
    pa: u64,
    size: PageSize,
    perms: Permissions,
}

/// The reference model: mappings by first VA, and rights restricted at upper levels.
struct Model<'s> {
    spec: &'s Spec,
    pages: BTreeMap<u64, ModelPage>,
    /// (first VA covered, bytes covered, what) of restricted upper-level entries.
    restrictions: Vec<(u64, u64, u8)>,
}

impl Model<'_> {
    fn last_byte(va: u64, size: PageSize) -> u64 {
        va + (size.bytes() - 1)
    }

    fn overlaps(&self, va: u64, size: PageSize) -> bool {
        let end = Self::last_byte(va, size);
        self.pages
            .range(..=end)
            .next_back()
            .is_some_and(|(&v, p)| Self::last_byte(v, p.size) >= va)
    }

    fn lookup(&self, va: u64) -> Option<(u64, ModelPage)> {
        let (&v, p) = self.pages.range(..=va).next_back()?;
        (Self::last_byte(v, p.size) >= va).then_some((v, *p))
    }

    fn effective(&self, va: u64, page: &ModelPage) -> Permissions {
        let mut perms = page.perms;
        for &(base, span, what) in &self.restrictions {
            if va & !(span - 1) == base {
                match what {
                    0 => perms.writable = false,
                    1 => perms.user = false,
                    _ => perms.executable = false,
                }
            }
        }
        perms
    }

    fn expect(&self, va: u64) -> Result<Translation, &'static str> {
        if !self.spec.is_canonical(va) {
            return Err("non-canonical");
        }
        match self.lookup(va) {
            Some((first, p)) => Ok(Translation {
                pa: Pa::new(p.pa + (va - first)),
                size: p.size,
                perms: self.effective(first, &p),
            }),
            None => Err("not present"),
        }
    }

    fn mappings(&self) -> Vec<Mapping> {
        self.pages
            .iter()
            .map(|(&va, p)| Mapping {
                va: Va::new(va),
                pa: Pa::new(p.pa),
                size: p.size,
                perms: self.effective(va, p),
            })
            .collect()
    }
}

fn same(
    spec: &Spec,
    got: &Result<Translation, TranslationError>,
    want: &Result<Translation, &'static str>,
    va: u64,
) -> Result<(), TestCaseError> {
    match (got, want) {
        (Ok(g), Ok(w)) => prop_assert_eq!(g, w, "va {:#x}", va),
        (Err(TranslationError::NonCanonical { va: v, mode }), Err("non-canonical")) => {
            prop_assert_eq!(v.raw(), va);
            prop_assert_eq!(*mode, spec.mode);
        }
        (Err(TranslationError::NotPresent { va: v, .. }), Err("not present")) => {
            prop_assert_eq!(v.raw(), va)
        }
        _ => prop_assert!(false, "va {:#x}: got {:?}, model says {:?}", va, got, want),
    }
    Ok(())
}

fn check(spec: &Spec, case: Case) -> Result<(), TestCaseError> {
    let mut b = PageTableBuilder::with_seed(spec.mode, 2 << 20, case.seed);
    let mut model = Model {
        spec,
        pages: BTreeMap::new(),
        restrictions: Vec::new(),
    };

    for c in &case.candidates {
        let size = spec.size(c.size);
        let span = Spec::mask(spec.spans[c.span]);
        let raw = (case.clusters[c.cluster] & !span) | (c.offset & span);
        let va = spec.canonical(raw) & !size.offset_mask();
        let pa = c.pa & Spec::mask(spec.pa_bits(size)) & !size.offset_mask();
        let perms = Permissions {
            writable: c.perms & 1 != 0,
            user: c.perms & 2 != 0,
            executable: !spec.no_execute || c.perms & 4 != 0,
        };
        let built = b.map(Va::new(va), Pa::new(pa), size, perms);
        if model.overlaps(va, size) {
            prop_assert!(
                matches!(built, Err(BuildError::Overlap { .. })),
                "{:#x} {:?}",
                va,
                built
            );
        } else {
            prop_assert_eq!(built, Ok(()));
            model.pages.insert(va, ModelPage { pa, size, perms });
        }
    }

    // Restrict rights at upper-level entries above some mappings.
    let firsts: Vec<(u64, PageSize)> = model.pages.iter().map(|(&v, p)| (v, p.size)).collect();
    for &(which, level_pick, what) in &case.restrictions {
        let (va, size) = firsts[which % firsts.len()];
        let lowest = spec.leaf_level(size) + 1;
        let highest = spec.rights_above;
        if lowest > highest {
            continue;
        }
        let level = lowest + level_pick % (highest - lowest + 1);
        let what = if what == 2 && !spec.no_execute {
            0
        } else {
            what
        };
        let bit = match what {
            0 => 1 << 1,
            1 => 1 << 2,
            _ => 1 << 63,
        };
        b.update_entry(Va::new(va), PagingLevel(level), |e| {
            if what == 2 {
                e | bit
            } else {
                e & !bit
            }
        })
        .unwrap();
        let span = 1u64 << spec.shift(level);
        model.restrictions.push((va & !(span - 1), span, what));
    }

    let x86 = X86::new();
    let space = b.space();

    // Every mapping translates, at its first byte, its last byte and one inside.
    for (&first, page) in &model.pages {
        for off in [0, page.size.bytes() - 1, case.seed % page.size.bytes()] {
            let va = first + off;
            let want = model.expect(va);
            let got = x86.translate(b.memory(), space, Va::new(va));
            same(spec, &got, &want, va)?;
            let walk = x86.walk(b.memory(), space, Va::new(va));
            prop_assert_eq!(&walk.result, &got);
            let leaf = spec.leaf_level(page.size);
            prop_assert_eq!(walk.steps.len(), usize::from(spec.levels - leaf + 1));
            prop_assert_eq!(walk.steps.last().map(|s| s.level), Some(PagingLevel(leaf)));
        }
        // The neighbours on either side.
        for va in [first.wrapping_sub(1), first.wrapping_add(page.size.bytes())] {
            let got = x86.translate(b.memory(), space, Va::new(va));
            same(spec, &got, &model.expect(va), va)?;
        }
    }

    // Random addresses: canonical ones near the clusters, and anything at all.
    for (i, &p) in case.probes.iter().enumerate() {
        let va = match i % 3 {
            0 => p,
            1 => spec.canonical(p),
            _ => spec.canonical((case.clusters[i % 3] & !0x3fff_ffff) | (p & 0x3fff_ffff)),
        };
        let got = x86.translate(b.memory(), space, Va::new(va));
        same(spec, &got, &model.expect(va), va)?;
        prop_assert_eq!(&x86.walk(b.memory(), space, Va::new(va)).result, &got);
    }

    // Enumeration yields exactly the model, in order.
    let mut listed = Vec::new();
    x86.for_each_mapping(b.memory(), space, &mut |m| {
        listed.push(m);
        ControlFlow::Continue(())
    });
    let want: Vec<Result<Mapping, TranslationError>> =
        model.mappings().into_iter().map(Ok).collect();
    prop_assert_eq!(listed, want);

    // A tiny TLB agrees with the uncached walker through flushes and unmaps.
    let tlb = Tlb::new(X86::new(), 3);
    for op in &case.ops {
        let va = match *op {
            Op::Flush => {
                tlb.flush();
                continue;
            }
            Op::Unmap(i) => {
                if model.pages.is_empty() {
                    continue;
                }
                let (&first, page) = model.pages.iter().nth(i % model.pages.len()).unwrap();
                b.update_entry(
                    Va::new(first),
                    PagingLevel(spec.leaf_level(page.size)),
                    |_| 0,
                )
                .unwrap();
                model.pages.remove(&first);
                tlb.flush();
                continue;
            }
            Op::Anywhere(va) => spec.canonical(va),
            Op::Mapped(i, off) => match model.pages.iter().nth(i % model.pages.len().max(1)) {
                Some((&first, page)) => first + off % page.size.bytes(),
                None => spec.canonical(off),
            },
        };
        let cached = tlb.translate(b.memory(), space, Va::new(va));
        let uncached = x86.translate(b.memory(), space, Va::new(va));
        prop_assert_eq!(&cached, &uncached);
        same(spec, &cached, &model.expect(va), va)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn legacy_matches_the_model(case in case()) {
        check(&LEGACY, case)?;
    }

    #[test]
    fn pae_matches_the_model(case in case()) {
        check(&PAE, case)?;
    }

    #[test]
    fn ia32e_4_level_matches_the_model(case in case()) {
        check(&IA32E_4, case)?;
    }

    #[test]
    fn ia32e_5_level_matches_the_model(case in case()) {
        check(&IA32E_5, case)?;
    }
}

/// The builder's random layouts (used by benchmarks and fuzzing) are what the walker sees.
#[test]
fn random_layouts_enumerate_back() {
    for (mode, sizes) in [
        (
            PagingMode::Legacy,
            &[PageSize::Size4K, PageSize::Size4M][..],
        ),
        (PagingMode::Pae, &[PageSize::Size4K, PageSize::Size2M][..]),
        (
            PagingMode::Ia32e4,
            &[PageSize::Size4K, PageSize::Size2M, PageSize::Size1G][..],
        ),
        (
            PagingMode::Ia32e5,
            &[PageSize::Size4K, PageSize::Size2M, PageSize::Size1G][..],
        ),
    ] {
        let mut b = PageTableBuilder::with_seed(mode, 8 << 20, 7);
        let want = b.map_random(11, 300, sizes).unwrap();
        let mut got = Vec::new();
        X86::new().for_each_mapping(b.memory(), b.space(), &mut |m| {
            got.push(m.unwrap());
            ControlFlow::Continue(())
        });
        assert_eq!(got, want, "{mode}");
    }
}
