//! Guest-physical memory: the capability every target has.

use crate::addr::Pa;
use crate::error::MemoryError;

/// A contiguous range of guest-physical memory that the target backs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First address.
    pub start: Pa,
    /// Length in bytes (never zero).
    pub len: u64,
}

impl MemoryRegion {
    /// One past the last address, saturating at the top of the address space.
    pub fn end_raw(&self) -> u64 {
        self.start.raw().saturating_add(self.len)
    }

    /// Whether `[pa, pa + len)` lies entirely inside this region.
    pub fn contains_range(&self, pa: Pa, len: u64) -> bool {
        match pa.offset_from(self.start) {
            Some(off) => off <= self.len && len <= self.len - off,
            None => false,
        }
    }
}

/// Reads guest-physical memory.
///
/// Implementations copy into the caller's buffer and never hand out references into guest
/// memory, which a live guest may change underneath.
pub trait PhysicalMemory: Send + Sync {
    /// Fills `buf` from `pa`. All or nothing: a range that is not entirely backed is an error
    /// ([`MemoryError::OutOfRange`]), never silent zeros.
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// The regions of guest-physical memory the target backs, sorted and non-overlapping.
    fn memory_map(&self) -> &[MemoryRegion];

    /// Drops cached state (called when a live guest resumes). Dumps have nothing to drop.
    fn invalidate(&self) {}
}

/// Writes guest-physical memory. Only live targets opened for writing implement it.
pub trait PhysicalMemoryWrite: PhysicalMemory {
    /// Writes all of `buf` at `pa`, or fails without a partial write where the backend can
    /// guarantee that.
    fn write(&self, pa: Pa, buf: &[u8]) -> Result<(), MemoryError>;
}

/// Typed little-endian reads on top of [`PhysicalMemory`].
pub trait PhysicalMemoryExt: PhysicalMemory {
    /// Reads a little-endian `u64`.
    fn read_u64(&self, pa: Pa) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    fn read_u32(&self, pa: Pa) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(pa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Total bytes the memory map covers.
    fn total_bytes(&self) -> u64 {
        self.memory_map()
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(r.len))
    }
}

impl<T: PhysicalMemory + ?Sized> PhysicalMemoryExt for T {}

macro_rules! forward_physical_memory {
    ($($ptr:tt)+) => {
        impl<T: PhysicalMemory + ?Sized> PhysicalMemory for $($ptr)+ {
            fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
                (**self).read(pa, buf)
            }
            fn memory_map(&self) -> &[MemoryRegion] {
                (**self).memory_map()
            }
            fn invalidate(&self) {
                (**self).invalidate()
            }
        }
    };
}

forward_physical_memory!(std::sync::Arc<T>);
forward_physical_memory!(Box<T>);
forward_physical_memory!(&T);

// ---------------------------------------------------------------------------------------------
// Live guest RAM.

/// The word size of the volatile copies: one aligned `u64` load or store, which x86-64 performs
/// as a single access, so a guest word written whole is also copied whole.
const WORD: usize = std::mem::size_of::<u64>();

/// Copies `dst.len()` bytes of live guest RAM at `src` into `dst`: the one audited place where
/// vmi reads memory that a running guest (another process's threads, another domain) may write
/// during the copy. Every backend of live RAM (QEMU's shared RAM file, Xen's foreign mappings)
/// copies through here.
///
/// A plain `copy_nonoverlapping` from such memory races with the guest's writes, which is
/// undefined behaviour in Rust's memory model (the compiler may assume the source does not
/// change). Volatile accesses are the model's way to touch memory that changes outside the
/// program: each is performed exactly once, as written, and yields whatever the memory holds at
/// that moment. As in rust-vmm's vm-memory, the bulk is copied with aligned word-sized
/// volatile loads (`u64`, single-copy atomic on x86-64: an aligned guest word written whole is
/// never torn here), the unaligned head and tail byte by byte. The result may still mix bytes
/// from before and after a guest write across words; every byte is a valid `u8`, and every
/// parser treats guest bytes as hostile anyway.
///
/// # Safety
///
/// - `src .. src + dst.len()` must be valid for reads (mapped and readable) for the whole call:
///   the caller keeps the mapping alive, e.g. by borrowing its owner.
/// - The range must not overlap `dst`.
/// - No Rust reference (`&[u8]`, `&mut [u8]`, ...) into the range may exist anywhere: the
///   memory is only ever touched through raw pointers, here and in [`copy_to_live`].
///
/// Other parties (the guest, QEMU, the hypervisor) may write the range concurrently; that is
/// what this function is for.
///
/// ```
/// let guest = vec![1u8, 2, 3, 4, 5, 6, 7, 8, 9];
/// let mut out = [0u8; 7];
/// // SAFETY: `guest` is a live allocation of 9 bytes, the range 1..8 is inside it, and `out`
/// // is another buffer. (A real caller points into a mapping of guest RAM.)
/// unsafe { vmi_core::memory::copy_from_live(guest.as_ptr().wrapping_add(1), &mut out) };
/// assert_eq!(out, [2, 3, 4, 5, 6, 7, 8]);
/// ```
pub unsafe fn copy_from_live(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let head = src.align_offset(WORD).min(len);
    for (i, d) in dst[..head].iter_mut().enumerate() {
        // SAFETY: `i < head <= len`, so `src + i` is inside the readable range (contract).
        *d = unsafe { src.wrapping_add(i).read_volatile() };
    }
    let words = src.wrapping_add(head).cast::<u64>();
    let mut body = dst[head..].chunks_exact_mut(WORD);
    for (w, d) in body.by_ref().enumerate() {
        // SAFETY: word `w` is bytes `head + w * WORD ..+ WORD <= len` of the readable range;
        // `src + head` is `WORD`-aligned (`align_offset`), and so is every word after it.
        let v = unsafe { words.wrapping_add(w).read_volatile() };
        d.copy_from_slice(&v.to_ne_bytes());
    }
    let tail_at = len - body.into_remainder().len();
    for (i, d) in dst.iter_mut().enumerate().skip(tail_at) {
        // SAFETY: `i < len`: inside the readable range.
        *d = unsafe { src.wrapping_add(i).read_volatile() };
    }
}

/// Copies `src` into live guest RAM at `dst`: the write counterpart of [`copy_from_live`], with
/// aligned word-sized volatile stores for the bulk (so an aligned word is written whole, as a
/// guest's own store would be) and byte stores for the unaligned head and tail.
///
/// # Safety
///
/// - `dst .. dst + src.len()` must be valid for writes (mapped writable) for the whole call.
/// - The range must not overlap `src`.
/// - No Rust reference into the range may exist anywhere (see [`copy_from_live`]).
pub unsafe fn copy_to_live(src: &[u8], dst: *mut u8) {
    let len = src.len();
    let head = dst.align_offset(WORD).min(len);
    for (i, b) in src[..head].iter().enumerate() {
        // SAFETY: `i < head <= len`: inside the writable range (contract).
        unsafe { dst.wrapping_add(i).write_volatile(*b) };
    }
    let words = dst.wrapping_add(head).cast::<u64>();
    let mut body = src[head..].chunks_exact(WORD);
    for (w, b) in body.by_ref().enumerate() {
        let mut bytes = [0u8; WORD];
        bytes.copy_from_slice(b);
        // SAFETY: word `w` is bytes `head + w * WORD ..+ WORD <= len` of the writable range;
        // `dst + head` is `WORD`-aligned and so is every word after it.
        unsafe {
            words
                .wrapping_add(w)
                .write_volatile(u64::from_ne_bytes(bytes))
        };
    }
    let tail_at = len - body.remainder().len();
    for (i, b) in src.iter().enumerate().skip(tail_at) {
        // SAFETY: `i < len`: inside the writable range.
        unsafe { dst.wrapping_add(i).write_volatile(*b) };
    }
}

/// Guest memory held in one host buffer at a base address: for unit tests, fuzzing and
/// synthetic images built in code. Real targets use a backend crate.
#[derive(Debug, Clone)]
pub struct BufferMemory {
    bytes: Vec<u8>,
    map: [MemoryRegion; 1],
}

impl BufferMemory {
    /// Guest memory `[base, base + bytes.len())`.
    pub fn new(base: Pa, bytes: Vec<u8>) -> Self {
        let len = bytes.len() as u64;
        Self {
            bytes,
            map: [MemoryRegion { start: base, len }],
        }
    }

    /// The backing bytes, for building test images.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn range(&self, pa: Pa, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let out = MemoryError::OutOfRange {
            pa,
            len: len as u64,
        };
        if !self.map[0].contains_range(pa, len as u64) {
            return Err(out);
        }
        let off = usize::try_from(pa.offset_from(self.map[0].start).ok_or(out)?).map_err(|_| {
            MemoryError::OutOfRange {
                pa,
                len: len as u64,
            }
        })?;
        Ok(off..off + len)
    }
}

impl PhysicalMemory for BufferMemory {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let r = self.range(pa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        if self.map[0].len == 0 {
            &[]
        } else {
            &self.map
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_memory_bounds() {
        let mem = BufferMemory::new(Pa::new(0x1000), vec![7u8; 0x1000]);
        let mut b = [0u8; 8];
        mem.read(Pa::new(0x1ff8), &mut b).unwrap();
        assert_eq!(b, [7; 8]);
        assert!(matches!(
            mem.read(Pa::new(0x1ff9), &mut b),
            Err(MemoryError::OutOfRange { .. })
        ));
        assert!(mem.read(Pa::new(0xff8), &mut b).is_err());
        assert!(mem.read(Pa::new(u64::MAX - 2), &mut b).is_err());
        assert_eq!(mem.total_bytes(), 0x1000);
    }

    /// Every alignment of source and destination and every length around the word size.
    #[test]
    fn live_copies_are_exact_at_every_alignment() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..(2 * WORD) {
            for len in (0..40).chain([63, 64, 65, 127, 128, 129]) {
                if start + len > src.len() {
                    continue;
                }
                for dst_off in 0..=WORD {
                    let mut out = vec![0xeeu8; len + WORD];
                    // SAFETY: `start + len <= src.len()`: inside `src`; `out` is another buffer.
                    unsafe {
                        copy_from_live(
                            src.as_ptr().wrapping_add(start),
                            &mut out[dst_off..dst_off + len],
                        )
                    };
                    assert_eq!(&out[dst_off..dst_off + len], &src[start..start + len]);
                    assert!(out[..dst_off].iter().all(|&b| b == 0xee));
                    assert!(out[dst_off + len..].iter().all(|&b| b == 0xee));

                    let mut guest = vec![0x55u8; src.len() + WORD];
                    // SAFETY: as above, writing into `guest`.
                    unsafe {
                        copy_to_live(
                            &src[start..start + len],
                            guest.as_mut_ptr().wrapping_add(dst_off),
                        )
                    };
                    assert_eq!(&guest[dst_off..dst_off + len], &src[start..start + len]);
                    assert!(guest[..dst_off].iter().all(|&b| b == 0x55));
                    assert!(guest[dst_off + len..].iter().all(|&b| b == 0x55));
                }
            }
        }
    }

    #[test]
    fn region_contains() {
        let r = MemoryRegion {
            start: Pa::new(0x100),
            len: 0x100,
        };
        assert!(r.contains_range(Pa::new(0x100), 0x100));
        assert!(!r.contains_range(Pa::new(0x101), 0x100));
        assert!(r.contains_range(Pa::new(0x200), 0));
        assert!(!r.contains_range(Pa::new(0xff), 1));
    }
}
