//! Real page tables built in code, for tests, fuzzing and benchmarks.
//!
//! [`PageTableBuilder`] writes the paging structures of any of the four paging modes into a
//! [`BufferMemory`] starting at physical address 0, allocating each table from the memory's
//! pages: in order by default, or scattered by a seed ([`PageTableBuilder::with_seed`]) so
//! that tables are not adjacent, as in a real guest. It knows nothing of the walker: it encodes
//! entries from the SDM layout itself (with the shared bit and mask constants), so tests can
//! check the walker against an independent model.
//!
//! ```
//! use vmi_arch_x86::{testing::PageTableBuilder, X86};
//! use vmi_core::{Architecture, PageSize, Pa, PagingMode, Permissions, Va};
//!
//! let mut b = PageTableBuilder::new(PagingMode::Ia32e4, 1 << 20);
//! b.map(Va::new(0xffff_8000_0020_0000), Pa::new(0x4020_0000), PageSize::Size2M, Permissions::ALL)?;
//! let space = b.space();
//! let mem = b.into_memory();
//! let t = X86::new().translate(&mem, space, Va::new(0xffff_8000_0021_2345)).unwrap();
//! assert_eq!((t.pa, t.size), (Pa::new(0x4021_2345), PageSize::Size2M));
//! # Ok::<(), vmi_arch_x86::BuildError>(())
//! ```

use vmi_core::memory::BufferMemory;
use vmi_core::{
    AddressSpace, Mapping, Pa, PageSize, PagingLevel, PagingMode, Permissions, PhysicalMemory, Va,
};

use crate::entry::{bits, NO_EXECUTE, PAGE_SIZE, PRESENT, USER, WRITABLE};
use crate::error::BuildError;

const PAGE: u64 = 4096;

/// The builder's own description of a paging mode, written from the SDM independently of
/// [`crate::mode`], so that a mistake in the walker's tables is not repeated here.
#[derive(Debug)]
struct Layout {
    entry_bytes: u8,
    va_bits: u32,
    /// IA-32e: addresses are sign-extended above `va_bits`.
    sign_extended: bool,
    no_execute: bool,
    /// Lowest virtual-address bit indexed by each level, root first; the last is 12.
    shifts: &'static [u32],
    /// Page sizes mappable at each level (parallel to `shifts`).
    sizes: &'static [Option<PageSize>],
    /// PAE: the PDPT's entries have no R/W and U/S bits (they are reserved).
    root_without_rights: bool,
}

static LEGACY: Layout = Layout {
    entry_bytes: 4,
    va_bits: 32,
    sign_extended: false,
    no_execute: false,
    shifts: &[22, 12],
    sizes: &[Some(PageSize::Size4M), Some(PageSize::Size4K)],
    root_without_rights: false,
};

static PAE: Layout = Layout {
    entry_bytes: 8,
    va_bits: 32,
    sign_extended: false,
    no_execute: true,
    shifts: &[30, 21, 12],
    sizes: &[None, Some(PageSize::Size2M), Some(PageSize::Size4K)],
    root_without_rights: true,
};

static IA32E_4: Layout = Layout {
    entry_bytes: 8,
    va_bits: 48,
    sign_extended: true,
    no_execute: true,
    shifts: &[39, 30, 21, 12],
    sizes: &[
        None,
        Some(PageSize::Size1G),
        Some(PageSize::Size2M),
        Some(PageSize::Size4K),
    ],
    root_without_rights: false,
};

static IA32E_5: Layout = Layout {
    entry_bytes: 8,
    va_bits: 57,
    sign_extended: true,
    no_execute: true,
    shifts: &[48, 39, 30, 21, 12],
    sizes: &[
        None,
        None,
        Some(PageSize::Size1G),
        Some(PageSize::Size2M),
        Some(PageSize::Size4K),
    ],
    root_without_rights: false,
};

impl Layout {
    fn of(mode: PagingMode) -> Option<&'static Layout> {
        match mode {
            PagingMode::Legacy => Some(&LEGACY),
            PagingMode::Pae => Some(&PAE),
            PagingMode::Ia32e4 => Some(&IA32E_4),
            PagingMode::Ia32e5 => Some(&IA32E_5),
            _ => None,
        }
    }

    fn levels(&self) -> usize {
        self.shifts.len()
    }

    /// The paging level (5 = PML5 .. 1 = PT) of position `i` (0 = root).
    fn level(&self, i: usize) -> PagingLevel {
        PagingLevel((self.levels() - i) as u8)
    }

    /// Index of `va` in the table at position `i`.
    fn index(&self, i: usize, va: u64) -> u64 {
        let shift = self.shifts[i];
        let top = if i == 0 {
            self.va_bits
        } else {
            self.shifts[i - 1]
        };
        (va >> shift) & ((1 << (top - shift)) - 1)
    }

    fn is_canonical(&self, va: u64) -> bool {
        let high = va >> (self.va_bits - 1);
        if self.sign_extended {
            high == 0 || high == u64::MAX >> (self.va_bits - 1)
        } else {
            va >> self.va_bits == 0
        }
    }

    fn canonicalize(&self, va: u64) -> u64 {
        if self.sign_extended && va & (1 << (self.va_bits - 1)) != 0 {
            va | !bits(self.va_bits - 1, 0)
        } else {
            va
        }
    }

    /// Position of the level that maps `size` pages.
    fn leaf_of(&self, size: PageSize) -> Option<usize> {
        self.sizes.iter().position(|s| *s == Some(size))
    }

    /// Bits of a next-table address in a non-leaf entry.
    fn table_mask(&self) -> u64 {
        if self.entry_bytes == 4 {
            bits(31, 12)
        } else {
            bits(51, 12)
        }
    }

    /// Physical addresses a `size` page can have: 32 bits for 4 KiB pages in 32-bit paging,
    /// 40 for its PSE-36 4 MiB pages, 52 elsewhere.
    fn pa_mask(&self, size: PageSize) -> u64 {
        let top = match (self.entry_bytes, size) {
            (4, PageSize::Size4M) => 39,
            (4, _) => 31,
            _ => 51,
        };
        bits(top, size.shift())
    }

    /// The leaf entry for a `size` page at `pa` (without rights).
    fn leaf_entry(&self, pa: u64, size: PageSize) -> u64 {
        match (self.entry_bytes, size) {
            (_, PageSize::Size4K) => PRESENT | pa,
            // PSE-36 (SDM table 4-4): physical-address bits 39:32 go to entry bits 20:13.
            (4, _) => PRESENT | PAGE_SIZE | (pa & bits(31, 22)) | ((pa >> 32) & 0xff) << 13,
            _ => PRESENT | PAGE_SIZE | pa,
        }
    }
}

/// SplitMix64: a tiny, fast, seedable generator (not for cryptography) so that test, fuzz and
/// benchmark layouts are reproducible from one `u64`.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            // Multiply-shift: unbiased enough for test layouts, and no division.
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }
}

/// Hands out each page of the memory once: in order, or in a seeded full-cycle order.
#[derive(Debug, Clone)]
struct FrameAllocator {
    pages: u64,
    handed_out: u64,
    next: u64,
    stride: u64,
}

impl FrameAllocator {
    fn new(pages: u64, seed: Option<u64>) -> Self {
        let (next, stride) = match seed {
            None => (0, 1),
            Some(seed) if pages > 1 => {
                let mut rng = SplitMix64::new(seed);
                let start = rng.below(pages);
                // A stride coprime with the page count visits every page exactly once.
                let mut stride = 1 + rng.below(pages - 1);
                while gcd(stride, pages) != 1 {
                    stride = stride % (pages - 1) + 1;
                }
                (start, stride)
            }
            Some(_) => (0, 1),
        };
        Self {
            pages,
            handed_out: 0,
            next,
            stride,
        }
    }

    fn alloc(&mut self) -> Option<u64> {
        if self.handed_out >= self.pages {
            return None;
        }
        let frame = self.next;
        self.handed_out += 1;
        // `next` and `stride` are below `pages`, so the sum cannot overflow.
        self.next = (self.next + self.stride) % self.pages;
        Some(frame)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Builds page tables of one paging mode into memory it owns.
///
/// Intermediate entries it creates allow everything (present, writable, user, executable), so
/// a mapping's effective permissions are those given to [`PageTableBuilder::map`]; tests that
/// need restrictive upper levels edit entries with [`PageTableBuilder::update_entry`].
#[derive(Debug, Clone)]
pub struct PageTableBuilder {
    mode: PagingMode,
    layout: Option<&'static Layout>,
    memory: BufferMemory,
    root: Pa,
    frames: FrameAllocator,
    tables: usize,
}

impl PageTableBuilder {
    /// A builder for `mode` over `memory_bytes` (rounded down to whole pages) of zeroed guest
    /// memory at physical address 0, allocating tables in ascending order. The root table is
    /// allocated at once (except with paging disabled, where there are no tables).
    ///
    /// # Panics
    ///
    /// If paging is enabled and `memory_bytes` holds less than one page.
    pub fn new(mode: PagingMode, memory_bytes: usize) -> Self {
        Self::build(mode, memory_bytes, None)
    }

    /// Like [`PageTableBuilder::new`], but tables (and [`PageTableBuilder::alloc_page`]
    /// frames) are scattered over the memory in an order chosen by `seed`.
    ///
    /// # Panics
    ///
    /// If paging is enabled and `memory_bytes` holds less than one page.
    pub fn with_seed(mode: PagingMode, memory_bytes: usize, seed: u64) -> Self {
        Self::build(mode, memory_bytes, Some(seed))
    }

    fn build(mode: PagingMode, memory_bytes: usize, seed: Option<u64>) -> Self {
        let pages = memory_bytes as u64 / PAGE;
        let mut b = Self {
            mode,
            layout: Layout::of(mode),
            memory: BufferMemory::new(Pa::new(0), vec![0; (pages * PAGE) as usize]),
            root: Pa::new(0),
            frames: FrameAllocator::new(pages, seed),
            tables: 0,
        };
        if b.layout.is_some() {
            match b.alloc_table() {
                Ok(root) => b.root = root,
                Err(e) => panic!("PageTableBuilder needs memory for the root table: {e}"),
            }
        }
        b
    }

    /// The paging mode.
    pub fn mode(&self) -> PagingMode {
        self.mode
    }

    /// Physical address of the root table (0 with paging disabled).
    pub fn root(&self) -> Pa {
        self.root
    }

    /// The address space to translate in: the root and the mode.
    pub fn space(&self) -> AddressSpace {
        AddressSpace {
            root: self.root,
            mode: self.mode,
        }
    }

    /// The guest memory built so far.
    pub fn memory(&self) -> &BufferMemory {
        &self.memory
    }

    /// The guest memory, to write data pages or corrupt tables on purpose.
    pub fn memory_mut(&mut self) -> &mut BufferMemory {
        &mut self.memory
    }

    /// The guest memory, done.
    pub fn into_memory(self) -> BufferMemory {
        self.memory
    }

    /// Number of paging structures allocated (the root included).
    pub fn tables(&self) -> usize {
        self.tables
    }

    /// Allocates a zeroed 4 KiB frame from the same allocator as the tables (for data pages
    /// that must be readable through the mapping).
    pub fn alloc_page(&mut self) -> Result<Pa, BuildError> {
        let frame = self.frames.alloc().ok_or(BuildError::OutOfMemory {
            pages: self.frames.pages,
        })?;
        let start = (frame * PAGE) as usize;
        if let Some(page) = self
            .memory
            .bytes_mut()
            .get_mut(start..start + PAGE as usize)
        {
            page.fill(0);
        }
        Ok(Pa::new(frame * PAGE))
    }

    fn alloc_table(&mut self) -> Result<Pa, BuildError> {
        let pa = self.alloc_page()?;
        self.tables += 1;
        Ok(pa)
    }

    fn layout(&self) -> Result<&'static Layout, BuildError> {
        self.layout.ok_or(BuildError::PagingDisabled)
    }

    fn read_raw(&self, pa: Pa, entry_bytes: u8) -> Option<u64> {
        if entry_bytes == 4 {
            let mut b = [0u8; 4];
            self.memory.read(pa, &mut b).ok()?;
            Some(u64::from(u32::from_le_bytes(b)))
        } else {
            let mut b = [0u8; 8];
            self.memory.read(pa, &mut b).ok()?;
            Some(u64::from_le_bytes(b))
        }
    }

    fn write_raw(&mut self, pa: Pa, entry_bytes: u8, value: u64) -> Option<()> {
        let at = usize::try_from(pa.raw()).ok()?;
        let len = usize::from(entry_bytes);
        let dst = self.memory.bytes_mut().get_mut(at..at.checked_add(len)?)?;
        dst.copy_from_slice(&value.to_le_bytes()[..len]);
        Some(())
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` with `perms`, creating the tables on the way.
    ///
    /// `va` and `pa` must be aligned to `size`, `size` must be one the mode supports
    /// (4 KiB everywhere; 4 MiB in 32-bit paging; 2 MiB in PAE and IA-32e; 1 GiB in IA-32e),
    /// `va` canonical and `pa` within the entry format's reach. 32-bit paging has no
    /// execute-disable bit, so `perms.executable` must be true there.
    pub fn map(
        &mut self,
        va: Va,
        pa: Pa,
        size: PageSize,
        perms: Permissions,
    ) -> Result<(), BuildError> {
        let layout = self.layout()?;
        let mode = self.mode;
        let leaf = layout
            .leaf_of(size)
            .ok_or(BuildError::UnsupportedPageSize { mode, size })?;
        if !va.is_aligned(size) {
            return Err(BuildError::Misaligned {
                what: "virtual",
                addr: va.raw(),
                size,
            });
        }
        if !pa.is_aligned(size) {
            return Err(BuildError::Misaligned {
                what: "physical",
                addr: pa.raw(),
                size,
            });
        }
        if !layout.is_canonical(va.raw()) {
            return Err(BuildError::NonCanonical { va, mode });
        }
        if pa.raw() & !layout.pa_mask(size) != 0 {
            return Err(BuildError::PhysicalOutOfRange { pa, mode, size });
        }
        if !layout.no_execute && !perms.executable {
            return Err(BuildError::NoExecuteUnsupported { mode });
        }

        let eb = layout.entry_bytes;
        let mut table = self.root;
        for i in 0..leaf {
            let level = layout.level(i);
            let entry_pa = Pa::new(table.raw() + layout.index(i, va.raw()) * u64::from(eb));
            let entry = self
                .read_raw(entry_pa, eb)
                .ok_or(BuildError::NoEntry { va, level })?;
            if entry & PRESENT == 0 {
                let next = self.alloc_table()?;
                let flags = if i == 0 && layout.root_without_rights {
                    PRESENT
                } else {
                    PRESENT | WRITABLE | USER
                };
                self.write_raw(entry_pa, eb, next.raw() | flags)
                    .ok_or(BuildError::NoEntry { va, level })?;
                table = next;
            } else if layout.sizes[i].is_some() && entry & PAGE_SIZE != 0 {
                return Err(BuildError::Overlap { va, size });
            } else {
                table = Pa::new(entry & layout.table_mask());
            }
        }

        let level = layout.level(leaf);
        let entry_pa = Pa::new(table.raw() + layout.index(leaf, va.raw()) * u64::from(eb));
        let old = self
            .read_raw(entry_pa, eb)
            .ok_or(BuildError::NoEntry { va, level })?;
        if old & PRESENT != 0 {
            return Err(BuildError::Overlap { va, size });
        }
        let mut entry = layout.leaf_entry(pa.raw(), size);
        if perms.writable {
            entry |= WRITABLE;
        }
        if perms.user {
            entry |= USER;
        }
        if layout.no_execute && !perms.executable {
            entry |= NO_EXECUTE;
        }
        self.write_raw(entry_pa, eb, entry)
            .ok_or(BuildError::NoEntry { va, level })
    }

    /// Maps `count` pages at random, non-overlapping, canonical virtual addresses anywhere in
    /// the mode's address space, of sizes drawn from `sizes`, to random physical addresses
    /// (anywhere the entry format reaches: most are not backed by the builder's memory) with
    /// random permissions. Reproducible from `seed`. Returns the mappings in ascending
    /// virtual order.
    ///
    /// Fails if a size is not supported, memory for tables runs out, or `count` non-overlapping
    /// places are not found in a bounded number of tries (asking for more pages than fit).
    pub fn map_random(
        &mut self,
        seed: u64,
        count: usize,
        sizes: &[PageSize],
    ) -> Result<Vec<Mapping>, BuildError> {
        let layout = self.layout()?;
        let mode = self.mode;
        if let Some(&size) = sizes.iter().find(|s| layout.leaf_of(**s).is_none()) {
            return Err(BuildError::UnsupportedPageSize { mode, size });
        }
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::with_capacity(count);
        let mut tries = count.saturating_mul(64).saturating_add(64);
        while out.len() < count && !sizes.is_empty() {
            let size = sizes[rng.below(sizes.len() as u64) as usize];
            let va = Va::new(
                layout.canonicalize(rng.next_u64() & bits(layout.va_bits - 1, size.shift())),
            );
            let pa = Pa::new(rng.next_u64() & layout.pa_mask(size));
            let r = rng.next_u64();
            let perms = Permissions {
                writable: r & 1 != 0,
                user: r & 2 != 0,
                executable: !layout.no_execute || r & 4 != 0,
            };
            match self.map(va, pa, size, perms) {
                Ok(()) => out.push(Mapping {
                    va,
                    pa,
                    size,
                    perms,
                }),
                Err(BuildError::Overlap { .. }) if tries > 0 => tries -= 1,
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|m| m.va);
        Ok(out)
    }

    /// Physical address of the entry at `level` that `va` goes through, if the tables above
    /// it exist (present and not large pages).
    pub fn entry_pa(&self, va: Va, level: PagingLevel) -> Result<Pa, BuildError> {
        let layout = self.layout()?;
        let missing = BuildError::NoEntry { va, level };
        let eb = layout.entry_bytes;
        let mut table = self.root;
        for i in 0..layout.levels() {
            let entry_pa = table
                .checked_add(layout.index(i, va.raw()) * u64::from(eb))
                .ok_or(missing.clone())?;
            if layout.level(i) == level {
                return Ok(entry_pa);
            }
            let entry = self.read_raw(entry_pa, eb).ok_or(missing.clone())?;
            if entry & PRESENT == 0 || (layout.sizes[i].is_some() && entry & PAGE_SIZE != 0) {
                return Err(missing);
            }
            table = Pa::new(entry & layout.table_mask());
        }
        Err(missing)
    }

    /// Rewrites the entry at `level` that `va` goes through with `f(old)`, returning the new
    /// value. For tests: restrict rights at an upper level, set reserved bits, unmap a page.
    pub fn update_entry(
        &mut self,
        va: Va,
        level: PagingLevel,
        f: impl FnOnce(u64) -> u64,
    ) -> Result<u64, BuildError> {
        let eb = self.layout()?.entry_bytes;
        let pa = self.entry_pa(va, level)?;
        let missing = BuildError::NoEntry { va, level };
        let old = self.read_raw(pa, eb).ok_or(missing.clone())?;
        let new = f(old);
        self.write_raw(pa, eb, new).ok_or(missing)?;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_allocation_visits_every_page_once() {
        for pages in [1u64, 2, 3, 12, 64, 97] {
            let mut a = FrameAllocator::new(pages, Some(pages * 7 + 1));
            let mut seen: Vec<u64> = std::iter::from_fn(|| a.alloc()).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..pages).collect::<Vec<_>>());
        }
    }

    #[test]
    fn map_rejects_bad_requests() {
        let mut b = PageTableBuilder::new(PagingMode::Legacy, 1 << 16);
        let all = Permissions::ALL;
        let nx = Permissions {
            executable: false,
            ..all
        };
        assert!(matches!(
            b.map(Va::new(0), Pa::new(0), PageSize::Size2M, all),
            Err(BuildError::UnsupportedPageSize { .. })
        ));
        assert!(matches!(
            b.map(Va::new(0x1000), Pa::new(0), PageSize::Size4K, nx),
            Err(BuildError::NoExecuteUnsupported { .. })
        ));
        assert!(matches!(
            b.map(Va::new(0x1_0000_0000), Pa::new(0), PageSize::Size4K, all),
            Err(BuildError::NonCanonical { .. })
        ));
        assert!(matches!(
            b.map(
                Va::new(0x1000),
                Pa::new(0x1_0000_0000),
                PageSize::Size4K,
                all
            ),
            Err(BuildError::PhysicalOutOfRange { .. })
        ));
        b.map(
            Va::new(0x40_0000),
            Pa::new(0xff_0040_0000),
            PageSize::Size4M,
            all,
        )
        .unwrap();
        assert!(matches!(
            b.map(Va::new(0x40_1000), Pa::new(0), PageSize::Size4K, all),
            Err(BuildError::Overlap { .. })
        ));
        let mut d = PageTableBuilder::new(PagingMode::Disabled, 0);
        assert_eq!(
            d.map(Va::new(0), Pa::new(0), PageSize::Size4K, all),
            Err(BuildError::PagingDisabled)
        );
    }

    #[test]
    fn map_random_is_reproducible_and_sorted() {
        let sizes = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];
        let mut a = PageTableBuilder::with_seed(PagingMode::Ia32e5, 4 << 20, 9);
        let mut b = PageTableBuilder::with_seed(PagingMode::Ia32e5, 4 << 20, 9);
        let ma = a.map_random(42, 100, &sizes).unwrap();
        let mb = b.map_random(42, 100, &sizes).unwrap();
        assert_eq!(ma, mb);
        assert_eq!(ma.len(), 100);
        assert!(ma.windows(2).all(|w| w[0].va < w[1].va));
        assert_eq!(a.root(), b.root());
    }
}
