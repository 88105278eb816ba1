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
