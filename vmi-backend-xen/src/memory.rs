//! Guest memory through foreign mappings: chunks of many frames mapped per call, a bounded
//! cache of mappings, and copies into caller buffers (never references into guest memory).

use std::collections::HashMap;
use std::ffi::c_int;
use std::io;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use vmi_core::{MemoryError, MemoryRegion, Pa, PhysicalMemory, PhysicalMemoryWrite};

use crate::handle::Xen;
use crate::sys::{self, xen_pfn_t};

const PAGE: u64 = 1 << sys::XC_PAGE_SHIFT;

/// Frames mapped by one `xenforeignmemory_map` call: 256 frames, 1 MiB.
pub const CHUNK_FRAMES: u64 = 256;
/// Mapped chunks kept at most: 64 (64 MiB of address space); the least recently used goes.
pub const MAX_CHUNKS: usize = 64;

/// One mapped chunk: `frames` frames from `first_gfn`, with each frame's mapping status.
struct Chunk {
    addr: NonNull<u8>,
    frames: usize,
    /// 0, or the negative errno of a frame that could not be mapped (its page is not
    /// accessible and must never be read).
    errs: Vec<c_int>,
    last_used: u64,
}

// SAFETY: a chunk is process memory (a foreign mapping) owned by the cache; it is only read,
// written or unmapped while the cache's mutex is held.
unsafe impl Send for Chunk {}

struct Cache {
    chunks: HashMap<u64, Chunk>,
    clock: u64,
}

/// Guest-physical (HVM) or machine (PV) memory of a domain.
pub struct XenMemory {
    xen: Arc<Xen>,
    domid: u32,
    prot: c_int,
    frames: u64,
    map: Vec<MemoryRegion>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for XenMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenMemory")
            .field("domid", &self.domid)
            .field("frames", &self.frames)
            .field("writable", &self.writable())
            .finish_non_exhaustive()
    }
}

impl XenMemory {
    /// Memory of `domid` covering frames `0..=max_frame`, writable if `write`.
    pub fn new(xen: Arc<Xen>, domid: u32, max_frame: u64, write: bool) -> XenMemory {
        let frames = max_frame
            .saturating_add(1)
            .min(u64::MAX >> sys::XC_PAGE_SHIFT);
        XenMemory {
            xen,
            domid,
            prot: if write {
                sys::PROT_READ | sys::PROT_WRITE
            } else {
                sys::PROT_READ
            },
            frames,
            map: vec![MemoryRegion {
                start: Pa::new(0),
                len: frames << sys::XC_PAGE_SHIFT,
            }],
            cache: Mutex::new(Cache {
                chunks: HashMap::new(),
                clock: 0,
            }),
        }
    }

    /// Whether mappings are made writable (`--write`).
    pub fn writable(&self) -> bool {
        self.prot & sys::PROT_WRITE != 0
    }

    /// Number of chunks currently mapped.
    pub fn mapped_chunks(&self) -> usize {
        self.lock().chunks.len()
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves the cache consistent (entries are inserted
        // whole), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls `f(page_pa, chunk_addr, offset_in_chunk, len)` for each page piece of
    /// `[pa, pa + len)`, mapping chunks as needed; stops at the first error.
    fn each_piece(
        &self,
        cache: &mut Cache,
        pa: Pa,
        len: usize,
        mut f: impl FnMut(usize, NonNull<u8>, usize, usize) -> Result<(), MemoryError>,
    ) -> Result<(), MemoryError> {
        if !self.map[0].contains_range(pa, len as u64) {
            return Err(MemoryError::OutOfRange {
                pa,
                len: len as u64,
            });
        }
        let mut done = 0usize;
        while done < len {
            let cur = pa.raw() + done as u64; // in range: checked above
            let gfn = cur >> sys::XC_PAGE_SHIFT;
            let in_page = (cur & (PAGE - 1)) as usize;
            let n = (PAGE as usize - in_page).min(len - done);
            let (index, frame) = (gfn / CHUNK_FRAMES, (gfn % CHUNK_FRAMES) as usize);
            let chunk = self.chunk(cache, index, Pa::new(cur))?;
            let err = chunk.errs.get(frame).copied().unwrap_or(-EFAULT);
            if err != 0 {
                return Err(MemoryError::Io {
                    pa: Pa::new(cur),
                    source: io::Error::other(format!(
                        "frame {gfn:#x} of domain {} cannot be mapped: {}",
                        self.domid,
                        io::Error::from_raw_os_error(err.saturating_neg())
                    )),
                });
            }
            f(done, chunk.addr, frame * PAGE as usize + in_page, n)?;
            done += n;
        }
        Ok(())
    }

    /// The chunk `index`, mapped now if it is not cached.
    fn chunk<'c>(
        &self,
        cache: &'c mut Cache,
        index: u64,
        pa: Pa,
    ) -> Result<&'c Chunk, MemoryError> {
        cache.clock += 1;
        let now = cache.clock;
        if !cache.chunks.contains_key(&index) {
            if cache.chunks.len() >= MAX_CHUNKS {
                if let Some(oldest) = cache
                    .chunks
                    .iter()
                    .min_by_key(|(_, c)| c.last_used)
                    .map(|(k, _)| *k)
                {
                    if let Some(old) = cache.chunks.remove(&oldest) {
                        self.unmap(old);
                    }
                }
            }
            let first = index * CHUNK_FRAMES;
            let frames = CHUNK_FRAMES.min(self.frames - first) as usize;
            let pfns: Vec<xen_pfn_t> = (first..first + frames as u64).collect();
            let mut errs = vec![0 as c_int; frames];
            let addr = self
                .xen
                .map(self.domid, self.prot, &pfns, &mut errs)
                .map_err(|e| MemoryError::Io {
                    pa,
                    source: io::Error::new(
                        e.kind(),
                        format!(
                            "xenforeignmemory_map of frames {first:#x}..{:#x} of domain {}: {e}",
                            first + frames as u64,
                            self.domid
                        ),
                    ),
                })?;
            cache.chunks.insert(
                index,
                Chunk {
                    addr,
                    frames,
                    errs,
                    last_used: now,
                },
            );
        }
        let chunk = cache
            .chunks
            .get_mut(&index)
            .ok_or(MemoryError::OutOfRange { pa, len: 0 })?;
        chunk.last_used = now;
        Ok(chunk)
    }

    fn unmap(&self, chunk: Chunk) {
        // SAFETY: `chunk` was returned by `Xen::map` on this handle with `frames` frames and
        // has just left the cache, so nothing else refers to it.
        unsafe { self.xen.unmap(chunk.addr, chunk.frames) };
    }

    fn unmap_all(&self) {
        let mut cache = self.lock();
        for (_, chunk) in cache.chunks.drain() {
            self.unmap(chunk);
        }
    }
}

const EFAULT: c_int = 14;

impl PhysicalMemory for XenMemory {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut cache = self.lock();
        let len = buf.len();
        self.each_piece(&mut cache, pa, len, |done, addr, off, n| {
            // SAFETY: `addr + off .. + n` lies inside one mapped frame whose status is 0
            // (checked by `each_piece`), and the mapping stays alive while the cache lock
            // is held (for this whole closure). `done + n <= buf.len()`.
            unsafe { copy_from_guest(addr, off, &mut buf[done..done + n]) };
            Ok(())
        })
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        &self.map
    }

    fn invalidate(&self) {
        self.unmap_all();
    }
}

impl PhysicalMemoryWrite for XenMemory {
    fn write(&self, pa: Pa, buf: &[u8]) -> Result<(), MemoryError> {
        if !self.writable() {
            return Err(MemoryError::ReadOnly);
        }
        let mut cache = self.lock();
        // First every frame's status, so a hole fails the write before anything is written.
        self.each_piece(&mut cache, pa, buf.len(), |_, _, _, _| Ok(()))?;
        self.each_piece(&mut cache, pa, buf.len(), |done, addr, off, n| {
            // SAFETY: as in `read`; the mapping was made with PROT_WRITE (`writable`).
            unsafe { copy_to_guest(addr, off, &buf[done..done + n]) };
            Ok(())
        })
    }
}

impl Drop for XenMemory {
    fn drop(&mut self) {
        self.unmap_all();
    }
}

/// Copies `dst.len()` bytes of guest memory at `base + offset` into `dst`: the one place
/// this backend reads guest bytes, through vmi-core's volatile copy
/// ([`vmi_core::memory::copy_from_live`]).
///
/// # Safety
///
/// `base + offset .. + dst.len()` must lie inside a live, readable mapping that is not
/// unmapped during the call.
unsafe fn copy_from_guest(base: NonNull<u8>, offset: usize, dst: &mut [u8]) {
    // SAFETY: the caller guarantees the source range is mapped and readable for the call. The
    // source is memory of another domain, which the guest may change while it is copied (what
    // `copy_from_live` is for); no reference into it is ever created; the ranges cannot
    // overlap (`dst` is a Rust buffer, the source a foreign mapping).
    unsafe { vmi_core::memory::copy_from_live(base.as_ptr().wrapping_add(offset), dst) };
}

/// Copies `src` into guest memory at `base + offset`: the one place this backend writes guest
/// bytes, through [`vmi_core::memory::copy_to_live`].
///
/// # Safety
///
/// `base + offset .. + src.len()` must lie inside a live mapping made with `PROT_WRITE` that
/// is not unmapped during the call.
unsafe fn copy_to_guest(base: NonNull<u8>, offset: usize, src: &[u8]) {
    // SAFETY: the caller guarantees the destination is mapped writable for the call; no Rust
    // reference into it exists; the ranges cannot overlap.
    unsafe { vmi_core::memory::copy_to_live(src, base.as_ptr().wrapping_add(offset)) };
}
