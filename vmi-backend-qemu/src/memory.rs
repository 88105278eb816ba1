//! Guest RAM of a live QEMU: a mapped shared RAM file, or the QEMU process's memory through
//! `/proc/PID/mem`. Both copy into the caller's buffer; nothing hands out references into
//! memory the guest changes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use memmap2::MmapRaw;
use vmi_core::{MemoryError, MemoryRegion, Pa, PhysicalMemory, PhysicalMemoryWrite};

/// Where a RAM block's bytes are.
pub enum Backing {
    /// A `share=on` memory-backend-file, mapped here too (zero-copy path).
    Mapped {
        /// The mapping (raw: never turned into a slice).
        map: MmapRaw,
        /// The file.
        path: PathBuf,
    },
    /// The QEMU process's memory (`/proc/PID/mem`, needs ptrace rights).
    Process {
        /// `/proc/PID/mem`, opened read-only or read-write.
        mem: File,
        /// Host address of the block's first byte in QEMU.
        host_base: u64,
        /// The block's length.
        len: u64,
    },
}

impl Backing {
    /// The block's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Backing::Mapped { map, .. } => map.len() as u64,
            Backing::Process { len, .. } => *len,
        }
    }

    /// Whether the block is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// "shared-file" or "process-memory".
    pub fn kind(&self) -> &'static str {
        match self {
            Backing::Mapped { .. } => "shared-file",
            Backing::Process { .. } => "process-memory",
        }
    }
}

/// A guest-physical range backed by part of a RAM block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First guest-physical address.
    pub start: u64,
    /// Length.
    pub len: u64,
    /// Index into the blocks.
    pub block: usize,
    /// Offset into the block.
    pub offset: u64,
}

/// Copy direction of [`copy_live`].
enum Dir<'a> {
    Out(&'a mut [u8]),
    In(&'a [u8]),
}

/// The one place that touches the mapped RAM file through a pointer: copies between the
/// caller's buffer and `len` bytes at `offset` of `map`.
///
/// Bounds are checked here, against the mapping's fixed length, so callers cannot get them
/// wrong. No reference into the mapping is ever created: the guest (QEMU's vCPU threads, in
/// another process) may write it at any time, so the bytes are copied with vmi-core's volatile
/// copies ([`vmi_core::memory::copy_from_live`], [`vmi_core::memory::copy_to_live`]).
fn copy_live(map: &MmapRaw, offset: u64, dir: Dir<'_>) -> bool {
    let len = match &dir {
        Dir::Out(b) => b.len(),
        Dir::In(b) => b.len(),
    };
    let Ok(offset) = usize::try_from(offset) else {
        return false;
    };
    if offset.checked_add(len).is_none_or(|end| end > map.len()) {
        return false;
    }
    match dir {
        Dir::Out(buf) => {
            // SAFETY: `offset + len <= map.len()` (checked above), so the source range lies
            // inside the live mapping, which `map` keeps mapped for the duration of the
            // borrow. The destination is a distinct `&mut [u8]` of exactly `len` bytes, so the
            // ranges do not overlap, and no Rust reference into the mapping exists (the
            // backend only ever passes its raw pointer here).
            unsafe { vmi_core::memory::copy_from_live(map.as_ptr().wrapping_add(offset), buf) };
        }
        Dir::In(buf) => {
            // SAFETY: as above for bounds, overlap and references; the mapping is writable
            // (the backend only calls this for maps created read-write, with --write).
            unsafe { vmi_core::memory::copy_to_live(buf, map.as_mut_ptr().wrapping_add(offset)) };
        }
    }
    true
}

/// Guest-physical memory of a live QEMU.
pub struct LiveMemory {
    blocks: Vec<Backing>,
    segments: Vec<Segment>,
    map: Vec<MemoryRegion>,
    writable: bool,
}

impl LiveMemory {
    /// Memory from `segments` (sorted, non-overlapping) over `blocks`.
    pub fn new(blocks: Vec<Backing>, mut segments: Vec<Segment>, writable: bool) -> LiveMemory {
        segments.sort_by_key(|s| s.start);
        let mut map: Vec<MemoryRegion> = Vec::new();
        for s in &segments {
            match map.last_mut() {
                Some(last) if last.end_raw() == s.start => last.len += s.len,
                _ => map.push(MemoryRegion {
                    start: Pa::new(s.start),
                    len: s.len,
                }),
            }
        }
        LiveMemory {
            blocks,
            segments,
            map,
            writable,
        }
    }

    /// The RAM blocks.
    pub fn blocks(&self) -> &[Backing] {
        &self.blocks
    }

    /// The guest-physical segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Host location of one block offset range, for reads and writes.
    fn access(
        &self,
        pa: Pa,
        total: usize,
        mut f: impl FnMut(&Backing, u64, std::ops::Range<usize>) -> Result<(), MemoryError>,
    ) -> Result<(), MemoryError> {
        let out = || MemoryError::OutOfRange {
            pa,
            len: total as u64,
        };
        if let Some(signal) = crate::sys::pending_signal() {
            return Err(MemoryError::Io {
                pa,
                source: crate::QemuError::Interrupted { signal }.into_io(),
            });
        }
        // All or nothing: check the whole range first.
        let mut cur = pa.raw();
        let mut done = 0usize;
        let mut pieces = Vec::new();
        while done < total {
            let i = self
                .segments
                .partition_point(|s| s.start.saturating_add(s.len) <= cur);
            let seg = self
                .segments
                .get(i)
                .filter(|s| s.start <= cur)
                .ok_or_else(out)?;
            let in_seg = cur - seg.start;
            let n = usize::try_from(seg.len - in_seg)
                .unwrap_or(usize::MAX)
                .min(total - done);
            pieces.push((seg.block, seg.offset + in_seg, done..done + n));
            done += n;
            cur = cur.checked_add(n as u64).ok_or_else(out)?;
        }
        for (block, off, range) in pieces {
            f(&self.blocks[block], off, range)?;
        }
        Ok(())
    }
}

fn io_err(pa: Pa, source: std::io::Error) -> MemoryError {
    MemoryError::Io { pa, source }
}

impl PhysicalMemory for LiveMemory {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let total = buf.len();
        self.access(pa, total, |backing, off, range| match backing {
            Backing::Mapped { map, .. } => {
                if copy_live(map, off, Dir::Out(&mut buf[range.clone()])) {
                    Ok(())
                } else {
                    Err(MemoryError::OutOfRange {
                        pa,
                        len: total as u64,
                    })
                }
            }
            Backing::Process { mem, host_base, .. } => {
                let addr = host_base.checked_add(off).ok_or(MemoryError::OutOfRange {
                    pa,
                    len: total as u64,
                })?;
                mem.read_exact_at(&mut buf[range], addr)
                    .map_err(|e| io_err(pa, e))
            }
        })
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        &self.map
    }
}

impl PhysicalMemoryWrite for LiveMemory {
    fn write(&self, pa: Pa, buf: &[u8]) -> Result<(), MemoryError> {
        if !self.writable {
            return Err(MemoryError::ReadOnly);
        }
        let total = buf.len();
        self.access(pa, total, |backing, off, range| match backing {
            Backing::Mapped { map, .. } => {
                if copy_live(map, off, Dir::In(&buf[range.clone()])) {
                    Ok(())
                } else {
                    Err(MemoryError::OutOfRange {
                        pa,
                        len: total as u64,
                    })
                }
            }
            Backing::Process { mem, host_base, .. } => {
                let addr = host_base.checked_add(off).ok_or(MemoryError::OutOfRange {
                    pa,
                    len: total as u64,
                })?;
                mem.write_all_at(&buf[range], addr)
                    .map_err(|e| io_err(pa, e))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_bounds() {
        let dir = std::env::temp_dir().join(format!("vmi-qemu-mem-{}", std::process::id()));
        let bytes: Vec<u8> = (0..0x3000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&dir, &bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dir)
            .unwrap();
        let map = memmap2::MmapOptions::new().map_raw(&file).unwrap();
        let blocks = vec![Backing::Mapped {
            map,
            path: dir.clone(),
        }];
        // [0, 0x1000) -> block 0; [0x2000, 0x4000) -> block 0x1000..
        let segs = vec![
            Segment {
                start: 0,
                len: 0x1000,
                block: 0,
                offset: 0,
            },
            Segment {
                start: 0x1000,
                len: 0x1000,
                block: 0,
                offset: 0x2000,
            },
            Segment {
                start: 0x8000,
                len: 0x1000,
                block: 0,
                offset: 0x1000,
            },
        ];
        let mem = LiveMemory::new(blocks, segs, true);
        assert_eq!(mem.memory_map().len(), 2);
        let mut b = [0u8; 8];
        mem.read(Pa::new(0xffc), &mut b).unwrap();
        assert_eq!(&b[..4], &bytes[0xffc..0x1000]);
        assert_eq!(&b[4..], &bytes[0x2000..0x2004]);
        assert!(mem.read(Pa::new(0x1ffc), &mut b).is_err());
        assert!(mem.read(Pa::new(u64::MAX - 2), &mut b).is_err());
        mem.write(Pa::new(0x8000), b"hello").unwrap();
        let mut c = [0u8; 5];
        mem.read(Pa::new(0x8000), &mut c).unwrap();
        assert_eq!(&c, b"hello");
        assert_eq!(&std::fs::read(&dir).unwrap()[0x1000..0x1005], b"hello");
        let ro = LiveMemory::new(Vec::new(), Vec::new(), false);
        assert!(matches!(
            ro.write(Pa::new(0), b"x"),
            Err(MemoryError::ReadOnly)
        ));
        std::fs::remove_file(&dir).unwrap();
    }
}
