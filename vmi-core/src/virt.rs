//! Reading guest-virtual memory through an [`Architecture`].

use crate::addr::{PageSize, Va};
use crate::arch::{AddressSpace, Architecture};
use crate::error::MemoryError;
use crate::memory::PhysicalMemory;

/// One address space of a guest, ready to read: physical memory, the paging logic (usually
/// behind a [`crate::Tlb`]) and the root to walk.
#[derive(Clone, Copy)]
pub struct VirtualMemory<'a> {
    mem: &'a dyn PhysicalMemory,
    arch: &'a dyn Architecture,
    space: AddressSpace,
}

impl<'a> VirtualMemory<'a> {
    /// A view of `space`.
    pub fn new(
        mem: &'a dyn PhysicalMemory,
        arch: &'a dyn Architecture,
        space: AddressSpace,
    ) -> Self {
        Self { mem, arch, space }
    }

    /// The address space this view reads.
    pub fn space(&self) -> AddressSpace {
        self.space
    }

    /// The physical memory under this view.
    pub fn physical(&self) -> &'a dyn PhysicalMemory {
        self.mem
    }

    /// The paging logic of this view.
    pub fn architecture(&self) -> &'a dyn Architecture {
        self.arch
    }

    /// Reads as much of `[va, va + buf.len())` as is mapped, page by page, stopping at the first
    /// page that does not translate or read. Returns the bytes read; fails only if not even the
    /// first byte could be read.
    pub fn read(&self, va: Va, buf: &mut [u8]) -> Result<usize, MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            let step = self.read_chunk(va, done, buf);
            match step {
                Ok(n) => done += n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    /// Fills all of `buf` from `va`, or fails naming the first address that could not be read.
    pub fn read_exact(&self, va: Va, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            done += self.read_chunk(va, done, buf)?;
        }
        Ok(())
    }

    /// Reads the part of `buf[done..]` that lies in one page.
    #[inline]
    fn read_chunk(&self, va: Va, done: usize, buf: &mut [u8]) -> Result<usize, MemoryError> {
        let cur = va.checked_add(done as u64).ok_or(MemoryError::OutOfRange {
            pa: crate::Pa::new(va.raw()),
            len: buf.len() as u64,
        })?;
        let t = self.arch.translate(self.mem, self.space, cur)?;
        // Stay inside the 4 KiB page even on large pages: the next 4 KiB may be outside the
        // memory map, and page-sized chunks keep reads of memory-mapped dumps simple.
        let in_page = PageSize::Size4K.bytes() - cur.page_offset(PageSize::Size4K);
        let n = (buf.len() - done).min(in_page as usize);
        self.mem.read(t.pa, &mut buf[done..done + n])?;
        Ok(n)
    }

    /// Reads a little-endian `u64`.
    #[inline]
    pub fn read_u64(&self, va: Va) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read_exact(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&self, va: Va) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read_exact(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a pointer-sized value as a virtual address.
    pub fn read_va(&self, va: Va) -> Result<Va, MemoryError> {
        self.read_u64(va).map(Va::new)
    }

    /// Reads a NUL-terminated string of at most `max` bytes (the terminator excluded). Bytes
    /// that are not UTF-8 are replaced. Stops early at unreadable memory.
    pub fn read_cstr(&self, va: Va, max: usize) -> Result<String, MemoryError> {
        let mut out = Vec::new();
        let mut cur = va;
        let mut chunk = [0u8; 256];
        while out.len() < max {
            let want = chunk.len().min(max - out.len());
            let n = match self.read(cur, &mut chunk[..want]) {
                Ok(n) => n,
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => break,
            };
            if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..end]);
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            if n < want {
                break;
            }
            match cur.checked_add(n as u64) {
                Some(next) => cur = next,
                None => break,
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}
