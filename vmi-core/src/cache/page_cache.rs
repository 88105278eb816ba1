//! A bounded cache of 4 KiB guest pages over any [`PhysicalMemory`].

use std::sync::Mutex;

use rustc_hash::FxHashMap;

use crate::addr::{Gfn, Pa, PageSize};
use crate::error::MemoryError;
use crate::memory::{MemoryRegion, PhysicalMemory};

const PAGE: usize = 4096;

struct Slots {
    /// gfn -> index into `pages`.
    index: FxHashMap<u64, usize>,
    pages: Vec<(u64, Box<[u8; PAGE]>)>,
    /// Next slot to replace once full (FIFO replacement: cheap and good enough for page tables
    /// and kernel structures, which are re-read in bursts).
    hand: usize,
}

/// Caches whole 4 KiB pages read from `M`, up to a fixed number of pages.
///
/// Worth it for backends where a read is expensive (a live QEMU process, Xen foreign mappings);
/// a memory-mapped dump is its own cache. Live targets call [`PhysicalMemory::invalidate`] on
/// resume, which empties it.
pub struct PageCache<M> {
    inner: M,
    capacity: usize,
    slots: Mutex<Slots>,
}

impl<M: PhysicalMemory> PageCache<M> {
    /// Wraps `inner`, caching at most `capacity` pages (at least one).
    pub fn new(inner: M, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner,
            capacity,
            slots: Mutex::new(Slots {
                index: FxHashMap::default(),
                pages: Vec::new(),
                hand: 0,
            }),
        }
    }

    /// The wrapped memory.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// Number of pages currently cached.
    pub fn cached_pages(&self) -> usize {
        super::lock(&self.slots).pages.len()
    }

    /// Copies from the cached page `gfn`, filling the cache on a miss. Returns `false` if the
    /// whole page cannot be read (a region ending mid-page); the caller then reads uncached.
    fn read_from_page(&self, gfn: u64, offset: usize, out: &mut [u8]) -> Result<bool, MemoryError> {
        let mut slots = super::lock(&self.slots);
        if let Some(&i) = slots.index.get(&gfn) {
            out.copy_from_slice(&slots.pages[i].1[offset..offset + out.len()]);
            return Ok(true);
        }
        let mut page = Box::new([0u8; PAGE]);
        let Some(page_pa) = Gfn::new(gfn).to_pa() else {
            return Ok(false);
        };
        if self.inner.read(page_pa, &mut page[..]).is_err() {
            return Ok(false);
        }
        out.copy_from_slice(&page[offset..offset + out.len()]);
        if slots.pages.len() < self.capacity {
            let i = slots.pages.len();
            slots.pages.push((gfn, page));
            slots.index.insert(gfn, i);
        } else {
            let i = slots.hand;
            slots.hand = (i + 1) % self.capacity;
            let old = std::mem::replace(&mut slots.pages[i], (gfn, page)).0;
            slots.index.remove(&old);
            slots.index.insert(gfn, i);
        }
        Ok(true)
    }
}

impl<M: PhysicalMemory> PhysicalMemory for PageCache<M> {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        // Large reads bypass the cache: caching them would evict the small hot structures
        // (page tables, task structs) the cache exists for. Empty reads go to the backend too,
        // which decides whether an empty range at `pa` is inside its map.
        if buf.len() > PAGE || buf.is_empty() {
            return self.inner.read(pa, buf);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let cur = pa.checked_add(done as u64).ok_or(MemoryError::OutOfRange {
                pa,
                len: buf.len() as u64,
            })?;
            let offset = cur.page_offset(PageSize::Size4K) as usize;
            let n = (PAGE - offset).min(buf.len() - done);
            let chunk = &mut buf[done..done + n];
            if !self.read_from_page(Gfn::from_pa(cur).raw(), offset, chunk)? {
                self.inner.read(cur, chunk)?;
            }
            done += n;
        }
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        self.inner.memory_map()
    }

    fn invalidate(&self) {
        let mut slots = super::lock(&self.slots);
        slots.index.clear();
        slots.pages.clear();
        slots.hand = 0;
        drop(slots);
        self.inner.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::BufferMemory;
    use proptest::prelude::*;

    fn patterned(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    proptest! {
        #[test]
        fn cached_reads_equal_uncached(
            ops in proptest::collection::vec((0u64..0x9000, 0usize..9000, any::<bool>()), 1..200),
            capacity in 1usize..6,
        ) {
            let plain = BufferMemory::new(Pa::new(0x1000), patterned(0x8000));
            let cached = PageCache::new(plain.clone(), capacity);
            for (pa, len, flush) in ops {
                if flush {
                    cached.invalidate();
                }
                let mut a = vec![0u8; len];
                let mut b = vec![0u8; len];
                let ra = plain.read(Pa::new(pa), &mut a);
                let rb = cached.read(Pa::new(pa), &mut b);
                prop_assert_eq!(ra.is_ok(), rb.is_ok());
                if ra.is_ok() {
                    prop_assert_eq!(a, b);
                }
                prop_assert!(cached.cached_pages() <= capacity);
            }
        }
    }
}
