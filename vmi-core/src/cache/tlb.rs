//! A translation cache over any [`Architecture`].

use std::ops::ControlFlow;
use std::sync::Mutex;

use crate::addr::{Pa, PageSize, Va};
use crate::arch::{AddressSpace, Architecture, PageWalk, PagingMode, Translation};
use crate::error::TranslationError;
use crate::memory::PhysicalMemory;

/// One cached translation of a 4 KiB virtual page.
#[derive(Clone, Copy)]
struct Entry {
    /// The address space root; `u64::MAX` marks an empty entry (no root is 2^64 - 1:
    /// roots are page aligned).
    root: u64,
    mode: PagingMode,
    vpn: u64,
    translation: Translation,
}

const EMPTY: Entry = Entry {
    root: u64::MAX,
    mode: PagingMode::Disabled,
    vpn: 0,
    translation: Translation {
        pa: Pa::new(0),
        size: PageSize::Size4K,
        perms: crate::arch::Permissions::ALL,
    },
};

/// A direct-mapped TLB keyed by (address space, 4 KiB virtual page), wrapping an
/// [`Architecture`] and implementing it.
///
/// Only successful translations are cached: a not-present page is re-walked, since guests map
/// pages on demand. Callers flush on resume ([`Architecture::flush`]) and whenever they know
/// page tables changed.
pub struct Tlb<A> {
    inner: A,
    entries: Mutex<Box<[Entry]>>,
    mask: usize,
}

impl<A: Architecture> Tlb<A> {
    /// Wraps `inner` with `2^bits` entries.
    pub fn new(inner: A, bits: u32) -> Self {
        let n = 1usize << bits.min(24);
        Self {
            inner,
            entries: Mutex::new(vec![EMPTY; n].into_boxed_slice()),
            mask: n - 1,
        }
    }

    /// The wrapped architecture.
    pub fn inner(&self) -> &A {
        &self.inner
    }

    fn slot(&self, root: u64, vpn: u64) -> usize {
        // Fold the root in so the same page in two address spaces lands in different slots.
        let h = vpn ^ (root >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h as usize) & self.mask
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
        let vpn = va.raw() >> PageSize::Size4K.shift();
        let root = space.root.raw();
        let slot = self.slot(root, vpn);
        {
            let entries = super::lock(&self.entries);
            let e = &entries[slot];
            if e.root == root && e.vpn == vpn && e.mode == space.mode {
                let t = e.translation;
                // The cached entry's pa is for the page start; add this address's offset.
                let base = t.pa.align_down(PageSize::Size4K);
                let pa = Pa::new(base.raw() | va.page_offset(PageSize::Size4K));
                return Ok(Translation { pa, ..t });
            }
        }
        let t = self.inner.translate(mem, space, va)?;
        let entry = Entry {
            root,
            mode: space.mode,
            vpn,
            translation: t,
        };
        super::lock(&self.entries)[slot] = entry;
        Ok(t)
    }

    fn walk(&self, mem: &dyn PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk {
        self.inner.walk(mem, space, va)
    }

    fn for_each_mapping(
        &self,
        mem: &dyn PhysicalMemory,
        space: AddressSpace,
        visit: &mut dyn FnMut(Result<crate::arch::Mapping, TranslationError>) -> ControlFlow<()>,
    ) {
        self.inner.for_each_mapping(mem, space, visit)
    }

    fn flush(&self) {
        super::lock(&self.entries).fill(EMPTY);
        self.inner.flush();
    }
}
