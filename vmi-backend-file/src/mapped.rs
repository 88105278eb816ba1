//! Physical memory over the bytes of a dump file: a sorted region table and a tiny read path.
//!
//! The table maps guest-physical ranges to file offsets. It is built once from the segments a
//! format parser found, validated (no region outside the file, no conflicting overlap) and then
//! only read, so `read` needs no locks: find the region (a one-entry cache of the last hit,
//! then binary search), check bounds, copy.

use std::sync::atomic::{AtomicUsize, Ordering};

use vmi_core::{MemoryError, MemoryRegion, Pa, PhysicalMemory};

use crate::error::DumpError;

/// A range of guest-physical memory backed by file bytes, as a format parser describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the program header (ELF) or range (LiME), for error messages.
    pub index: usize,
    /// First guest-physical address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// File offset of the first byte.
    pub file_offset: u64,
}

/// One entry of the region table: `[start, end)` is at `file_offset` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    start: u64,
    end: u64,
    file_offset: u64,
}

impl Region {
    fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// The validated, sorted region table of a dump.
#[derive(Debug, Clone)]
pub struct RegionTable {
    regions: Box<[Region]>,
    map: Box<[MemoryRegion]>,
}

impl RegionTable {
    /// Sorts and validates `segments` of a file of `file_len` bytes.
    ///
    /// Empty segments are dropped. Segments that overlap in physical memory are accepted only
    /// if they map the overlap to the same file bytes (QEMU paging dumps alias physical pages
    /// this way) and are then merged; any other overlap is
    /// [`DumpError::OverlappingSegments`]. Physically adjacent segments that are also adjacent
    /// in the file are merged so that more reads take the fast path.
    pub fn new(mut segments: Vec<Segment>, file_len: u64) -> Result<Self, DumpError> {
        segments.retain(|s| s.len > 0);
        for s in &segments {
            let file_end = s.file_offset.saturating_add(s.len);
            if file_end > file_len || s.file_offset.checked_add(s.len).is_none() {
                return Err(DumpError::SegmentBeyondFile {
                    index: s.index,
                    end: file_end,
                    file_len,
                });
            }
            if s.start.checked_add(s.len).is_none() {
                return Err(DumpError::SegmentAddressOverflow {
                    index: s.index,
                    start: s.start,
                    len: s.len,
                });
            }
        }
        segments.sort_by_key(|s| (s.start, s.index));

        let mut regions: Vec<Region> = Vec::with_capacity(segments.len());
        // Index of the segment that provides the current region's end, for error messages.
        let mut end_owner = 0usize;
        for s in &segments {
            // Checked above: neither addition overflows.
            let next = Region {
                start: s.start,
                end: s.start + s.len,
                file_offset: s.file_offset,
            };
            if let Some(cur) = regions.last_mut() {
                let same_delta = i128::from(next.file_offset) - i128::from(next.start)
                    == i128::from(cur.file_offset) - i128::from(cur.start);
                if next.start < cur.end {
                    if !same_delta {
                        return Err(DumpError::OverlappingSegments {
                            first: end_owner,
                            second: s.index,
                            at: next.start,
                        });
                    }
                    if next.end > cur.end {
                        cur.end = next.end;
                        end_owner = s.index;
                    }
                    continue;
                }
                if next.start == cur.end && same_delta {
                    cur.end = next.end;
                    end_owner = s.index;
                    continue;
                }
            }
            regions.push(next);
            end_owner = s.index;
        }
        if regions.is_empty() {
            return Err(DumpError::NoMemory);
        }

        // The memory map shows what the guest sees: physically adjacent regions are one range
        // even when their bytes are apart in the file.
        let mut map: Vec<MemoryRegion> = Vec::with_capacity(regions.len());
        for r in &regions {
            match map.last_mut() {
                Some(m) if m.end_raw() == r.start => m.len += r.len(),
                _ => map.push(MemoryRegion {
                    start: Pa::new(r.start),
                    len: r.len(),
                }),
            }
        }
        Ok(Self {
            regions: regions.into_boxed_slice(),
            map: map.into_boxed_slice(),
        })
    }

    /// A table with one region `[0, len)` at file offset 0 (a raw image).
    pub fn identity(len: u64) -> Result<Self, DumpError> {
        Self::new(
            vec![Segment {
                index: 0,
                start: 0,
                len,
                file_offset: 0,
            }],
            len,
        )
    }

    /// The guest-physical memory map (sorted, adjacent ranges coalesced).
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.map
    }

    /// Number of entries of the table (after merging).
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// Index of the last region starting at or below `addr`, if it contains `addr` or ends
    /// exactly at it.
    fn search(&self, addr: u64) -> Option<usize> {
        let i = self
            .regions
            .partition_point(|r| r.start <= addr)
            .checked_sub(1)?;
        (addr <= self.regions.get(i)?.end).then_some(i)
    }
}

/// Guest-physical memory backed by the bytes of a dump (a file mapping or an owned buffer).
pub struct MappedMemory<B> {
    bytes: B,
    table: RegionTable,
    /// Index of the region of the last read: consecutive reads mostly hit the same region.
    last: AtomicUsize,
}

impl<B: AsRef<[u8]>> MappedMemory<B> {
    /// Memory over `bytes` described by `table`. Fails if the table does not fit `bytes`.
    pub fn new(bytes: B, table: RegionTable) -> Result<Self, DumpError> {
        let file_len = bytes.as_ref().len() as u64;
        if let Some(r) = table
            .regions
            .iter()
            .find(|r| r.file_offset.saturating_add(r.len()) > file_len)
        {
            return Err(DumpError::SegmentBeyondFile {
                index: 0,
                end: r.file_offset.saturating_add(r.len()),
                file_len,
            });
        }
        Ok(Self {
            bytes,
            table,
            last: AtomicUsize::new(0),
        })
    }

    /// The region table.
    pub fn table(&self) -> &RegionTable {
        &self.table
    }

    #[inline]
    fn find(&self, addr: u64) -> Option<usize> {
        let last = self.last.load(Ordering::Relaxed);
        if let Some(r) = self.table.regions.get(last) {
            if r.start <= addr && addr < r.end {
                return Some(last);
            }
        }
        let i = self.table.search(addr)?;
        self.last.store(i, Ordering::Relaxed);
        Some(i)
    }

    /// A read that leaves region `first`: every following region must start where the previous
    /// one ends, or the range touches a hole. Checked before anything is copied.
    #[cold]
    fn read_across(&self, first: usize, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let out = || MemoryError::OutOfRange {
            pa: Pa::new(addr),
            len,
        };
        let end = addr.checked_add(len).ok_or_else(out)?;
        let regions = self.table.regions.get(first..).unwrap_or_default();
        let mut covered = addr;
        let mut last = first;
        for (i, r) in regions.iter().enumerate() {
            if r.start > covered {
                return Err(out());
            }
            covered = r.end;
            last = first + i;
            if covered >= end {
                break;
            }
        }
        if covered < end {
            return Err(out());
        }
        let bytes = self.bytes.as_ref();
        let mut pa = addr;
        let mut dst = &mut buf[..];
        for r in self.table.regions.get(first..=last).unwrap_or_default() {
            let off = pa - r.start;
            let n = (r.end - pa).min(dst.len() as u64);
            let src = r
                .file_offset
                .checked_add(off)
                .and_then(|fo| crate::elf::slice(bytes, fo, n))
                .ok_or_else(out)?;
            let (head, tail) = dst.split_at_mut(src.len());
            head.copy_from_slice(src);
            dst = tail;
            pa += n;
        }
        Ok(())
    }
}

impl<B: AsRef<[u8]> + Send + Sync> PhysicalMemory for MappedMemory<B> {
    #[inline]
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let addr = pa.raw();
        let len = buf.len() as u64;
        let out = || MemoryError::OutOfRange { pa, len };
        let i = self.find(addr).ok_or_else(out)?;
        let r = self.table.regions.get(i).ok_or_else(out)?;
        // find() guarantees start <= addr <= end.
        let off = addr - r.start;
        if len > r.end - addr {
            return self.read_across(i, addr, buf);
        }
        let src =
            crate::elf::slice(self.bytes.as_ref(), r.file_offset + off, len).ok_or_else(out)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        self.table.memory_map()
    }
}

impl<B> std::fmt::Debug for MappedMemory<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedMemory")
            .field("regions", &self.table.regions.len())
            .field("map", &self.table.map)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(index: usize, start: u64, len: u64, file_offset: u64) -> Segment {
        Segment {
            index,
            start,
            len,
            file_offset,
        }
    }

    fn memory(segments: Vec<Segment>, file: Vec<u8>) -> MappedMemory<Vec<u8>> {
        let table = RegionTable::new(segments, file.len() as u64).unwrap();
        MappedMemory::new(file, table).unwrap()
    }

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn reads_inside_and_across_regions() {
        // [0x1000, 0x2000) at 0, [0x2000, 0x3000) at 0x2000 (adjacent, not file-contiguous),
        // [0x5000, 0x6000) at 0x1000.
        let f = file(0x3000);
        let mem = memory(
            vec![
                seg(2, 0x5000, 0x1000, 0x1000),
                seg(0, 0x1000, 0x1000, 0),
                seg(1, 0x2000, 0x1000, 0x2000),
            ],
            f.clone(),
        );
        assert_eq!(
            mem.memory_map(),
            &[
                MemoryRegion {
                    start: Pa::new(0x1000),
                    len: 0x2000
                },
                MemoryRegion {
                    start: Pa::new(0x5000),
                    len: 0x1000
                },
            ]
        );
        assert_eq!(mem.table().region_count(), 3);
        let mut b = [0u8; 8];
        mem.read(Pa::new(0x1008), &mut b).unwrap();
        assert_eq!(b, f[8..16]);
        mem.read(Pa::new(0x5ff8), &mut b).unwrap();
        assert_eq!(b, f[0x1ff8..0x2000]);
        // Across the adjacent boundary at 0x2000: file bytes 0xffc..0x1000 then 0x2000..0x2004.
        mem.read(Pa::new(0x1ffc), &mut b).unwrap();
        assert_eq!(b[..4], f[0xffc..0x1000]);
        assert_eq!(b[4..], f[0x2000..0x2004]);
        // Touching the hole [0x3000, 0x5000).
        let err = mem.read(Pa::new(0x2ffc), &mut b).unwrap_err();
        assert!(matches!(err, MemoryError::OutOfRange { pa, len: 8 } if pa == Pa::new(0x2ffc)));
        assert!(mem.read(Pa::new(0x4ffc), &mut b).is_err());
        assert!(mem.read(Pa::new(0x3000), &mut b).is_err());
        assert!(mem.read(Pa::new(0xff8), &mut b).is_err());
        assert!(mem.read(Pa::new(0x5ffc), &mut b).is_err());
        assert!(mem.read(Pa::new(u64::MAX - 3), &mut b).is_err());
        // A large read spanning both adjacent regions.
        let mut big = vec![0u8; 0x2000];
        mem.read(Pa::new(0x1000), &mut big).unwrap();
        assert_eq!(big[..0x1000], f[..0x1000]);
        assert_eq!(big[0x1000..], f[0x2000..0x3000]);
        // Empty reads succeed inside or at the end of a region.
        mem.read(Pa::new(0x3000), &mut []).unwrap();
        assert!(mem.read(Pa::new(0x4000), &mut []).is_err());
    }

    #[test]
    fn file_contiguous_neighbours_merge() {
        let mem = memory(
            vec![seg(0, 0, 0x1000, 0x100), seg(1, 0x1000, 0x1000, 0x1100)],
            file(0x2100),
        );
        assert_eq!(mem.table().region_count(), 1);
        assert_eq!(mem.memory_map().len(), 1);
    }

    #[test]
    fn overlaps() {
        // Conflicting overlap.
        let err = RegionTable::new(
            vec![seg(0, 0x1000, 0x2000, 0), seg(1, 0x2000, 0x1000, 0x2000)],
            0x3000,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DumpError::OverlappingSegments {
                first: 0,
                second: 1,
                at: 0x2000
            }
        ));
        // Aliases of the same file bytes (QEMU paging dumps) merge.
        let t = RegionTable::new(
            vec![seg(0, 0x1000, 0x2000, 0), seg(1, 0x2000, 0x1800, 0x1000)],
            0x3000,
        )
        .unwrap();
        assert_eq!(
            t.memory_map(),
            &[MemoryRegion {
                start: Pa::new(0x1000),
                len: 0x2800
            }]
        );
        // Exact duplicates merge too.
        let t = RegionTable::new(vec![seg(0, 0, 0x1000, 0), seg(1, 0, 0x1000, 0)], 0x1000).unwrap();
        assert_eq!(t.region_count(), 1);
    }

    #[test]
    fn table_validation() {
        assert!(matches!(
            RegionTable::new(vec![], 0),
            Err(DumpError::NoMemory)
        ));
        assert!(matches!(
            RegionTable::new(vec![seg(0, 0, 0, 0)], 0),
            Err(DumpError::NoMemory)
        ));
        assert!(matches!(
            RegionTable::new(vec![seg(3, 0, 0x2000, 0)], 0x1000),
            Err(DumpError::SegmentBeyondFile {
                index: 3,
                end: 0x2000,
                file_len: 0x1000
            })
        ));
        assert!(matches!(
            RegionTable::new(vec![seg(4, u64::MAX, 2, 0)], 0x1000),
            Err(DumpError::SegmentAddressOverflow { index: 4, .. })
        ));
        let t = RegionTable::identity(0x1000).unwrap();
        assert!(MappedMemory::new(vec![0u8; 0x800], t).is_err());
    }

    #[test]
    fn last_hit_cache_follows_reads() {
        let mem = memory(
            vec![seg(0, 0, 0x1000, 0), seg(1, 0x10_0000, 0x1000, 0x1000)],
            file(0x2000),
        );
        let mut b = [0u8; 4];
        for _ in 0..3 {
            mem.read(Pa::new(0x10_0010), &mut b).unwrap();
            assert_eq!(mem.last.load(Ordering::Relaxed), 1);
            mem.read(Pa::new(0x10), &mut b).unwrap();
            assert_eq!(mem.last.load(Ordering::Relaxed), 0);
        }
    }

    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        /// Physical segments in address order as (gap before, length), placed in the file in
        /// a permuted order, read at random against a byte-by-byte model.
        /// (gap, length) per segment in address order, file order, (address, length) reads.
        type Layout = (Vec<(u64, u64)>, Vec<usize>, Vec<(u64, usize)>);

        fn layout() -> impl Strategy<Value = Layout> {
            prop::collection::vec((prop_oneof![Just(0u64), 1..0x300u64], 1..0x400u64), 1..6)
                .prop_flat_map(|segs| {
                    let n = segs.len();
                    let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
                    let reads = prop::collection::vec((0..0x2000u64, 0..0x500usize), 1..64);
                    (Just(segs), order, reads)
                })
        }

        proptest! {
            #[test]
            fn reads_match_model((segs, order, reads) in layout()) {
                let mut phys = Vec::new();
                let mut at = 0u64;
                for (gap, len) in &segs {
                    at += gap;
                    phys.push((at, *len));
                    at += len;
                }
                // Lay the segments out in the file in `order`, with a 16-byte gap between.
                let mut file = Vec::new();
                let mut segments = Vec::new();
                let mut model = BTreeMap::new();
                for &i in &order {
                    let (start, len) = phys[i];
                    file.extend_from_slice(&[0xee; 16]);
                    let off = file.len() as u64;
                    for k in 0..len {
                        let byte = (start + k).wrapping_mul(31) as u8 ^ i as u8;
                        file.push(byte);
                        model.insert(start + k, byte);
                    }
                    segments.push(seg(i, start, len, off));
                }
                let table = RegionTable::new(segments, file.len() as u64).unwrap();
                let total: u64 = table.memory_map().iter().map(|r| r.len).sum();
                prop_assert_eq!(total, model.len() as u64);
                let mem = MappedMemory::new(file, table).unwrap();
                for (pa, len) in reads {
                    let mut buf = vec![0u8; len];
                    // An empty read succeeds inside a region or at its end (as BufferMemory).
                    let expected: Option<Vec<u8>> = if len == 0 {
                        let inside = model.contains_key(&pa)
                            || pa.checked_sub(1).is_some_and(|p| model.contains_key(&p));
                        inside.then(Vec::new)
                    } else {
                        (pa..pa + len as u64).map(|a| model.get(&a).copied()).collect()
                    };
                    match (mem.read(Pa::new(pa), &mut buf), expected) {
                        (Ok(()), Some(bytes)) => prop_assert_eq!(buf, bytes),
                        (Err(MemoryError::OutOfRange { .. }), None) => {}
                        (got, want) => {
                            prop_assert!(false, "read {pa:#x}+{len:#x}: {got:?} vs {want:?}")
                        }
                    }
                }
            }
        }
    }
}
