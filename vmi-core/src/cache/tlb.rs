//! A translation cache over any [`Architecture`].

use std::ops::ControlFlow;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::addr::{Pa, PageSize, Va};
use crate::arch::{
    AddressSpace, Architecture, Mapping, PageWalk, PagingMode, Permissions, Translation,
};
use crate::error::TranslationError;
use crate::memory::PhysicalMemory;

/// One cached translation of a 4 KiB virtual page, guarded by a per-entry sequence number
/// (a seqlock): readers never block and never see a torn entry, writers that find an entry
/// being written by another thread simply do not cache.
struct Entry {
    /// Low 32 bits: the seqlock counter (even: stable, odd: being written). High 32 bits: the
    /// [`Tlb`] generation the entry was filled in; an entry of an older generation is empty.
    seq: AtomicU64,
    /// The address space root.
    root: AtomicU64,
    /// `vpn << 4 | mode << 1 | 1`; 0 marks an empty entry (no valid key is 0, whatever the
    /// root: a root is any value a caller passes, even with paging disabled).
    key: AtomicU64,
    /// The 4 KiB frame of the translation | page size (bits 0-1) | permissions (bits 2-4).
    value: AtomicU64,
}

impl Entry {
    fn empty() -> Self {
        Self {
            seq: AtomicU64::new(0),
            root: AtomicU64::new(0),
            key: AtomicU64::new(0),
            value: AtomicU64::new(0),
        }
    }
}

fn mode_tag(mode: PagingMode) -> u64 {
    match mode {
        PagingMode::Disabled => 0,
        PagingMode::Legacy => 1,
        PagingMode::Pae => 2,
        PagingMode::Ia32e4 => 3,
        PagingMode::Ia32e5 => 4,
    }
}

fn size_code(size: PageSize) -> usize {
    match size {
        PageSize::Size4K => 0,
        PageSize::Size2M => 1,
        PageSize::Size4M => 2,
        PageSize::Size1G => 3,
    }
}

/// The page's first physical address | page size | permissions.
fn encode(t: &Translation) -> u64 {
    let perms = u64::from(t.perms.writable) << 2
        | u64::from(t.perms.user) << 3
        | u64::from(t.perms.executable) << 4;
    t.pa.align_down(t.size).raw() | perms | size_code(t.size) as u64
}

fn decode(value: u64, va: Va) -> Translation {
    let size = match value & 3 {
        0 => PageSize::Size4K,
        1 => PageSize::Size2M,
        2 => PageSize::Size4M,
        _ => PageSize::Size1G,
    };
    Translation {
        pa: Pa::new((value & !0xfff) | va.page_offset(size)),
        size,
        perms: Permissions {
            writable: value & (1 << 2) != 0,
            user: value & (1 << 3) != 0,
            executable: value & (1 << 4) != 0,
        },
    }
}

/// The stable sequence value after `s` (the counter advanced by two, wrapping within its 32
/// bits), tagged with `generation`.
fn seq_next(s: u64, generation: u64) -> u64 {
    generation << 32 | u64::from((s as u32).wrapping_add(2))
}

/// One direct-mapped table of translations of one page size.
struct Table {
    entries: Box<[Entry]>,
    mask: usize,
}

impl Table {
    fn new(bits: u32) -> Self {
        let n = 1usize << bits.min(24);
        Self {
            entries: (0..n).map(|_| Entry::empty()).collect(),
            mask: n - 1,
        }
    }

    fn slot(&self, root: u64, vpn: u64) -> &Entry {
        // Fold the root in so the same page in two address spaces lands in different slots.
        let h = vpn ^ (root >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.entries[(h as usize) & self.mask]
    }

    fn lookup(e: &Entry, root: u64, key: u64, generation: u64) -> Option<u64> {
        let s1 = e.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 || s1 >> 32 != generation {
            return None;
        }
        let hit = e.root.load(Ordering::Relaxed) == root && e.key.load(Ordering::Relaxed) == key;
        let value = e.value.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (hit && e.seq.load(Ordering::Relaxed) == s1).then_some(value)
    }

    fn store(e: &Entry, root: u64, key: u64, value: u64, generation: u64) {
        let s = e.seq.load(Ordering::Relaxed);
        if s & 1 != 0
            || e.seq
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return; // another thread is writing this slot: skip caching
        }
        fence(Ordering::Release);
        e.root.store(root, Ordering::Relaxed);
        e.key.store(key, Ordering::Relaxed);
        e.value.store(value, Ordering::Relaxed);
        e.seq.store(seq_next(s, generation), Ordering::Release);
    }

    fn flush(&self) {
        for e in self.entries.iter() {
            // Unlike a fill, invalidation must not be skipped: wait out a concurrent writer
            // (it holds the slot for three stores), then clear through the seqlock so a
            // concurrent reader cannot mistake a half-cleared entry for a hit.
            loop {
                let s = e.seq.load(Ordering::Relaxed);
                if s & 1 == 0
                    && e.seq
                        .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    fence(Ordering::Release);
                    e.key.store(0, Ordering::Relaxed);
                    e.seq.store(seq_next(s, s >> 32), Ordering::Release);
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
}

/// The page sizes a mode can map, smallest first: the order lookups try the tables in.
fn sizes(mode: PagingMode) -> &'static [PageSize] {
    match mode {
        PagingMode::Disabled => &[PageSize::Size4K],
        PagingMode::Legacy => &[PageSize::Size4K, PageSize::Size4M],
        PagingMode::Pae => &[PageSize::Size4K, PageSize::Size2M],
        PagingMode::Ia32e4 | PagingMode::Ia32e5 => {
            &[PageSize::Size4K, PageSize::Size2M, PageSize::Size1G]
        }
    }
}

/// A TLB keyed by (address space, virtual page), wrapping an [`Architecture`] and
/// implementing it. Like a CPU's, it keeps one direct-mapped table per page size, so a large
/// page (the kernel's direct map of all RAM, its text) takes one entry, not one per 4 KiB.
/// Lock-free: a lookup is a handful of atomic loads per table tried.
///
/// Only successful translations are cached: a not-present page is re-walked, since guests map
/// pages on demand. Callers flush on resume ([`Architecture::flush`]) and whenever they know
/// page tables changed.
pub struct Tlb<A> {
    inner: A,
    /// Indexed by [`size_code`].
    tables: [Table; 4],
    /// Entries of another generation are empty: a flush is one increment (a live guest's
    /// event loop flushes at every resume), with a full clear only when the 32-bit count wraps.
    generation: AtomicU64,
}

impl<A: Architecture> Tlb<A> {
    /// Wraps `inner` with `2^bits` entries for 4 KiB pages and a sixteenth as many (at least
    /// 16) for each large page size.
    pub fn new(inner: A, bits: u32) -> Self {
        let large = bits.saturating_sub(4).max(4);
        Self {
            inner,
            tables: [
                Table::new(bits),
                Table::new(large),
                Table::new(large),
                Table::new(large),
            ],
            generation: AtomicU64::new(1),
        }
    }

    /// The wrapped architecture.
    pub fn inner(&self) -> &A {
        &self.inner
    }
}

impl<A: Architecture> Architecture for Tlb<A> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    #[inline]
    fn translate(
        &self,
        mem: &dyn PhysicalMemory,
        space: AddressSpace,
        va: Va,
    ) -> Result<Translation, TranslationError> {
        let root = space.root.raw();
        let tag = mode_tag(space.mode) << 1 | 1;
        // Read before the walk: a fill that races a flush is stored under the old generation.
        let generation = self.generation.load(Ordering::Acquire);
        for &size in sizes(space.mode) {
            let vpn = va.raw() >> size.shift();
            let table = &self.tables[size_code(size)];
            if let Some(value) =
                Table::lookup(table.slot(root, vpn), root, vpn << 4 | tag, generation)
            {
                return Ok(decode(value, va));
            }
        }
        let t = self.inner.translate(mem, space, va)?;
        let value = encode(&t);
        let vpn = va.raw() >> t.size.shift();
        let table = &self.tables[size_code(t.size)];
        Table::store(
            table.slot(root, vpn),
            root,
            vpn << 4 | tag,
            value,
            generation,
        );
        if t.size != PageSize::Size4K {
            // Also under the 4 KiB page, so that a hot page hits on the first lookup; the
            // large-page table serves the rest of the large page.
            let vpn = va.raw() >> PageSize::Size4K.shift();
            Table::store(
                self.tables[0].slot(root, vpn),
                root,
                vpn << 4 | tag,
                value,
                generation,
            );
        }
        Ok(t)
    }

    fn walk(&self, mem: &dyn PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk {
        self.inner.walk(mem, space, va)
    }

    fn for_each_mapping(
        &self,
        mem: &dyn PhysicalMemory,
        space: AddressSpace,
        visit: &mut dyn FnMut(Result<Mapping, TranslationError>) -> ControlFlow<()>,
    ) {
        self.inner.for_each_mapping(mem, space, visit)
    }

    fn flush(&self) {
        let next = (self.generation.load(Ordering::Acquire) + 1) & 0xffff_ffff;
        if next == 0 {
            // Wrapped: entries of generation 1 could come back to life; clear them all.
            for table in &self.tables {
                table.flush();
            }
            self.generation.store(1, Ordering::Release);
        } else {
            self.generation.store(next, Ordering::Release);
        }
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_entries_never_hit() {
        // Found by fuzzing: an empty entry once matched root u64::MAX with paging disabled.
        let mem = crate::memory::BufferMemory::new(Pa::new(0), vec![0; 4096]);
        use crate::test_support::Identity;
        let tlb = Tlb::new(Identity, 2);
        for root in [0, u64::MAX] {
            let space = AddressSpace {
                root: Pa::new(root),
                mode: PagingMode::Disabled,
            };
            for _ in 0..2 {
                let t = tlb.translate(&mem, space, Va::new(0x1ff)).unwrap();
                assert_eq!(t.perms, Permissions::ALL);
            }
            tlb.flush();
        }
    }

    #[test]
    fn a_flush_empties_every_table_also_when_the_generation_wraps() {
        use std::sync::atomic::AtomicUsize;
        let mem = crate::memory::BufferMemory::new(Pa::new(0), vec![0; 4096]);
        /// Maps every page to a frame that changes with each walk, counting the walks.
        struct Moving(AtomicUsize);
        impl Architecture for Moving {
            fn name(&self) -> &'static str {
                "moving"
            }
            fn translate(
                &self,
                _: &dyn PhysicalMemory,
                _: AddressSpace,
                _: Va,
            ) -> Result<Translation, TranslationError> {
                let n = self.0.fetch_add(1, Ordering::Relaxed) as u64;
                Ok(Translation {
                    pa: Pa::new(n << 21),
                    size: PageSize::Size2M,
                    perms: Permissions::ALL,
                })
            }
            fn walk(&self, _: &dyn PhysicalMemory, _: AddressSpace, _: Va) -> PageWalk {
                unreachable!("not used by this test")
            }
            fn for_each_mapping(
                &self,
                _: &dyn PhysicalMemory,
                _: AddressSpace,
                _: &mut dyn FnMut(Result<Mapping, TranslationError>) -> ControlFlow<()>,
            ) {
            }
        }
        let tlb = Tlb::new(Moving(AtomicUsize::new(0)), 4);
        let space = AddressSpace {
            root: Pa::new(0x1000),
            mode: PagingMode::Ia32e4,
        };
        let va = Va::new(0xffff_8880_0020_0000);
        let first = tlb.translate(&mem, space, va).unwrap().pa;
        assert_eq!(tlb.translate(&mem, space, va).unwrap().pa, first, "cached");
        for round in 0..3 {
            if round == 2 {
                // The next flush wraps the 32-bit generation: the full clear must happen.
                tlb.generation.store(0xffff_ffff, Ordering::Release);
            }
            tlb.flush();
            let again = tlb.translate(&mem, space, va).unwrap().pa;
            assert_ne!(again, first, "walked again after flush {round}");
            assert_eq!(tlb.translate(&mem, space, va).unwrap().pa, again);
            // And through the large-page table (another address of the same 2 MiB page).
            let near = Va::new(va.raw() + 0x1000);
            assert_eq!(
                tlb.translate(&mem, space, near).unwrap().pa.raw(),
                again.raw() + 0x1000
            );
        }
        assert_eq!(tlb.inner().0.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn encode_decode_round_trip() {
        for size in [
            PageSize::Size4K,
            PageSize::Size2M,
            PageSize::Size4M,
            PageSize::Size1G,
        ] {
            for bits in 0..8u8 {
                let t = Translation {
                    pa: Pa::new(0x000f_ffff_ffff_f123)
                        .align_down(size)
                        .checked_add(0x123)
                        .unwrap(),
                    size,
                    perms: Permissions {
                        writable: bits & 1 != 0,
                        user: bits & 2 != 0,
                        executable: bits & 4 != 0,
                    },
                };
                assert_eq!(decode(encode(&t), Va::new(0xffff_8000_0000_0123)), t);
            }
        }
    }
}
