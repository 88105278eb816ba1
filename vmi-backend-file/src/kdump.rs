//! makedumpfile's kdump-compressed format: `virsh dump --memory-only --format kdump-*`, QEMU's
//! `dump-guest-memory format=kdump-*`, `makedumpfile -c|-l|-p` of a crashed kernel.
//!
//! A flat file is, in blocks of `block_size` bytes: the `disk_dump_header` (signature
//! `KDUMP   `), the `kdump_sub_header` (phys_base, dump level, where the VMCOREINFO and ELF
//! notes are), two bitmaps of `max_mapnr` bits (the first marks the RAM pages, the second the
//! pages written), then one `page_desc` (offset, size, flags) per written page in PFN order,
//! and the page data, each page compressed alone (zlib, LZO, snappy) or stored raw.
//! A *flattened* file (signature `makedumpfile`, what QEMU 7.2 and `makedumpfile -F` write to a
//! pipe) is the same bytes as a stream of (offset, size) records; [`FlatView`] indexes the
//! records and reads through them without reassembling the file.
//!
//! Pages the dump left out (makedumpfile's `-d` levels exclude zero, cache, user or free pages)
//! are absent: the memory map covers only the written pages, and a read of another is an
//! error, never zeros. Headers are checked against the file before anything is sized by them.
//!
//! Decompression: zlib through `miniz_oxide` and snappy through `snap`, both pure Rust and
//! widely used; LZO1X through [`crate::lzo`], our own bounds-checked decoder (the Rust LZO
//! crates are C bindings or young unaudited ports). Pages are decompressed on demand into the
//! caller's buffer; the target sets `slow_reads` so the session's page cache keeps hot pages.

use std::collections::BTreeMap;

use vmi_core::{MemoryError, MemoryRegion, Pa, PhysicalMemory};

use crate::error::DumpError;

/// The signature of a flat kdump file.
pub const KDUMP_SIGNATURE: &[u8; 8] = b"KDUMP   ";
/// The signature of a flattened one (NUL-padded to 16 bytes).
pub const FLATTENED_SIGNATURE: &[u8; 12] = b"makedumpfile";

/// Page sizes accepted: x86 kdump files use 4 KiB blocks.
const PAGE: u64 = 4096;
/// Size of `struct disk_dump_header` (64-bit layout).
const HEADER_SIZE: usize = 464;
/// Size of `struct kdump_sub_header` up to `max_mapnr_64` (header version 6).
const SUB_HEADER_SIZE: usize = 104;
/// Size of `struct page_desc`.
const DESC_SIZE: u64 = 24;
/// Size of the flattened file's own header block.
const FLAT_HEADER_SIZE: u64 = 4096;
/// Bounds on guest data: 2^36 pages is 256 TiB of RAM; the note and VMCOREINFO are kilobytes.
const MAX_PFNS: u64 = 1 << 36;
const MAX_NOTE_BYTES: u64 = 16 << 20;
/// Flattened records indexed at most (QEMU writes one per buffer flush: thousands).
const MAX_RECORDS: usize = 1 << 24;

/// Per-page compression flags of `page_desc.flags`.
const FLAG_ZLIB: u32 = 0x1;
const FLAG_LZO: u32 = 0x2;
const FLAG_SNAPPY: u32 = 0x4;
const FLAG_ZSTD: u32 = 0x20;

/// Whether `bytes` start like a flat kdump file.
pub fn is_kdump(bytes: &[u8]) -> bool {
    bytes.starts_with(KDUMP_SIGNATURE)
}

/// Whether `bytes` start like a flattened kdump stream.
pub fn is_flattened(bytes: &[u8]) -> bool {
    bytes.starts_with(FLATTENED_SIGNATURE) && bytes.get(12..16).is_some_and(|p| p == [0; 4])
}

/// The bytes of the flat file: the file itself, or the flattened records reassembled on read.
#[derive(Debug, Clone)]
pub enum FlatView {
    /// A flat file: offsets are file offsets.
    Flat,
    /// A flattened stream: flat offset -> (length, file offset of the data), non-overlapping;
    /// gaps read as zeros, as in the sparse file `makedumpfile -R` would write.
    Flattened(BTreeMap<u64, (u64, u64)>),
}

impl FlatView {
    /// Indexes the records of a flattened stream (later records overwrite earlier ones, as
    /// when the stream is reassembled).
    pub fn index_flattened(data: &[u8]) -> Result<FlatView, DumpError> {
        let be = |off: u64| -> Result<i64, DumpError> {
            let b = crate::elf::slice(data, off, 8).ok_or(DumpError::TruncatedHeader {
                what: "flattened kdump record",
                offset: off,
                needed: 16,
                file_len: data.len() as u64,
            })?;
            Ok(i64::from_be_bytes(b.try_into().unwrap_or_default()))
        };
        let (kind, version) = (be(16)?, be(24)?);
        if kind != 1 || version != 1 {
            return Err(DumpError::Kdump {
                offset: 16,
                reason: format!("flattened header type {kind} version {version}, expected 1 and 1"),
            });
        }
        let mut map: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut at = FLAT_HEADER_SIZE;
        loop {
            let (offset, size) = (be(at)?, be(at + 8)?);
            if offset == -1 {
                break;
            }
            let bad = |reason: String| DumpError::Kdump { offset: at, reason };
            let (Ok(offset), Ok(size)) = (u64::try_from(offset), u64::try_from(size)) else {
                return Err(bad(format!(
                    "record offset {offset} or size {size} is negative"
                )));
            };
            let data_at = at + 16;
            if data_at
                .checked_add(size)
                .is_none_or(|end| end > data.len() as u64)
            {
                return Err(bad(format!(
                    "record of {size:#x} bytes runs past the end of the file ({:#x})",
                    data.len()
                )));
            }
            // Both are at most i64::MAX, so offset + size fits in u64.
            if map.len() >= MAX_RECORDS {
                return Err(bad(format!("more than {MAX_RECORDS} records")));
            }
            if size > 0 {
                insert_piece(&mut map, offset, size, data_at);
            }
            at = data_at + size;
        }
        Ok(FlatView::Flattened(map))
    }

    /// Fills `buf` from flat offset `off`.
    pub fn read(&self, data: &[u8], off: u64, buf: &mut [u8]) -> Result<(), DumpError> {
        let len = buf.len() as u64;
        let short = || DumpError::TruncatedHeader {
            what: "kdump data",
            offset: off,
            needed: len,
            file_len: data.len() as u64,
        };
        match self {
            FlatView::Flat => {
                buf.copy_from_slice(crate::elf::slice(data, off, len).ok_or_else(short)?);
            }
            FlatView::Flattened(map) => {
                let end = off.checked_add(len).ok_or_else(short)?;
                buf.fill(0);
                let first = map.range(..=off).next_back().map_or(off, |(&s, _)| s);
                for (&start, &(plen, src)) in map.range(first..end) {
                    let (lo, hi) = (start.max(off), (start + plen).min(end));
                    if lo >= hi {
                        continue;
                    }
                    let from =
                        crate::elf::slice(data, src + (lo - start), hi - lo).ok_or_else(short)?;
                    buf[(lo - off) as usize..(hi - off) as usize].copy_from_slice(from);
                }
            }
        }
        Ok(())
    }
}

/// Puts `[start, start + len)` (data at `src`) into `map`, cutting what it overlaps.
fn insert_piece(map: &mut BTreeMap<u64, (u64, u64)>, start: u64, len: u64, src: u64) {
    let end = start + len;
    let overlapping: Vec<u64> = map
        .range(..end)
        .rev()
        .take_while(|(&s, &(l, _))| s + l > start)
        .map(|(&s, _)| s)
        .collect();
    for s in overlapping {
        let Some((l, f)) = map.remove(&s) else {
            continue;
        };
        if s < start {
            map.insert(s, (start - s, f));
        }
        if s + l > end {
            map.insert(end, (s + l - end, f + (end - s)));
        }
    }
    map.insert(start, (len, src));
}

/// The headers of a kdump file, as far as vmi uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KdumpHeader {
    /// `header_version` (QEMU writes 6).
    pub version: u32,
    /// `block_size`: the page size.
    pub block_size: u64,
    /// Pages the bitmaps describe.
    pub max_mapnr: u64,
    /// `nr_cpus`.
    pub nr_cpus: u32,
    /// The release in the header's utsname.
    pub release: String,
    /// `phys_base` of the sub header.
    pub phys_base: u64,
    /// makedumpfile's `-d` level (0: every page, 31: only what a kernel crash needs).
    pub dump_level: u32,
    /// Where the VMCOREINFO text and the ELF notes are (flat offset, size).
    pub vmcoreinfo: Option<(u64, u64)>,
    /// Where the ELF notes are (flat offset, size).
    pub notes: Option<(u64, u64)>,
    /// Flat offset of the first bitmap.
    bitmap_offset: u64,
    /// Bytes of each bitmap.
    bitmap_bytes: u64,
    /// Flat offset of the page descriptors.
    descs_offset: u64,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or_default()))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or_default()))
}

impl KdumpHeader {
    /// Parses the headers through `view`, checking every size against the flat file's length
    /// `flat_len` before it is used.
    pub fn parse(data: &[u8], view: &FlatView, flat_len: u64) -> Result<Self, DumpError> {
        let mut h = [0u8; HEADER_SIZE];
        view.read(data, 0, &mut h)?;
        if !h.starts_with(KDUMP_SIGNATURE) {
            return Err(DumpError::Kdump {
                offset: 0,
                reason: "no KDUMP signature".into(),
            });
        }
        let bad = |offset: u64, reason: String| DumpError::Kdump { offset, reason };
        let version = u32_at(&h, 8);
        let release = String::from_utf8_lossy(&h[12 + 2 * 65..12 + 3 * 65])
            .trim_end_matches('\0')
            .to_owned();
        let block_size = u64::from(u32_at(&h, 428));
        if block_size != PAGE {
            return Err(bad(
                428,
                format!("block size {block_size}, only 4096 is supported"),
            ));
        }
        let sub_hdr_blocks = u64::from(u32_at(&h, 432));
        let bitmap_blocks = u64::from(u32_at(&h, 436));
        let nr_cpus = u32_at(&h, 460);
        let mut sub = [0u8; SUB_HEADER_SIZE];
        view.read(data, block_size, &mut sub)?;
        let mut max_mapnr = u64::from(u32_at(&h, 440));
        if version >= 6 {
            max_mapnr = u64_at(&sub, 96);
        }
        if max_mapnr == 0 || max_mapnr > MAX_PFNS {
            return Err(bad(
                440,
                format!("max_mapnr {max_mapnr} pages is not a machine"),
            ));
        }
        let bitmap_offset = (1 + sub_hdr_blocks) * block_size;
        let bitmap_bytes = bitmap_blocks
            .checked_mul(block_size)
            .map(|b| b / 2)
            .ok_or_else(|| bad(436, "bitmap size overflows".into()))?;
        if bitmap_bytes < max_mapnr.div_ceil(8) {
            return Err(bad(
                436,
                format!("bitmaps of {bitmap_bytes} bytes cannot describe {max_mapnr} pages"),
            ));
        }
        let descs_offset = bitmap_offset + 2 * bitmap_bytes;
        if descs_offset > flat_len {
            return Err(bad(
                436,
                format!(
                    "bitmaps end at {descs_offset:#x}, past the end of the dump ({flat_len:#x})"
                ),
            ));
        }
        let area = |at: usize, min_version: u32| {
            let (off, size) = (u64_at(&sub, at), u64_at(&sub, at + 8));
            (version >= min_version && size > 0).then_some((off, size))
        };
        let checked = |what: &str, a: Option<(u64, u64)>| -> Result<_, DumpError> {
            match a {
                Some((off, size))
                    if size > MAX_NOTE_BYTES
                        || off.checked_add(size).is_none_or(|e| e > flat_len) =>
                {
                    Err(bad(
                        block_size,
                        format!("{what} {off:#x}+{size:#x} is outside the dump"),
                    ))
                }
                other => Ok(other),
            }
        };
        Ok(Self {
            version,
            block_size,
            max_mapnr,
            nr_cpus,
            release,
            phys_base: u64_at(&sub, 0),
            dump_level: u32_at(&sub, 8),
            vmcoreinfo: checked("VMCOREINFO", area(32, 3))?,
            notes: checked("ELF notes", area(48, 4))?,
            bitmap_offset,
            bitmap_bytes,
            descs_offset,
        })
    }
}

/// A parsed kdump file: headers, the second bitmap with a rank index, and how to reach the
/// bytes.
#[derive(Debug)]
pub struct Kdump {
    /// The headers.
    pub header: KdumpHeader,
    view: FlatView,
    /// The second bitmap (pages written), as words.
    written: Vec<u64>,
    /// Written pages before each word of `written`.
    rank: Vec<u64>,
    map: Vec<MemoryRegion>,
    /// Pages in the first bitmap (RAM) and in the second (written).
    pub ram_pages: u64,
    /// Pages written.
    pub written_pages: u64,
    /// Length of the flat file.
    flat_len: u64,
}

impl Kdump {
    /// Parses a flat or flattened kdump file.
    pub fn parse(data: &[u8]) -> Result<Kdump, DumpError> {
        let view = if is_flattened(data) {
            FlatView::index_flattened(data)?
        } else {
            FlatView::Flat
        };
        let flat_len = match &view {
            FlatView::Flat => data.len() as u64,
            FlatView::Flattened(m) => m.iter().next_back().map_or(0, |(&s, &(l, _))| s + l),
        };
        let header = KdumpHeader::parse(data, &view, flat_len)?;
        let words = header.max_mapnr.div_ceil(64) as usize;
        let read_bitmap = |at: u64| -> Result<Vec<u64>, DumpError> {
            let mut bytes = vec![0u8; words * 8];
            let n = (header.max_mapnr.div_ceil(8) as usize).min(bytes.len());
            view.read(data, at, &mut bytes[..n])?;
            Ok(bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect())
        };
        let mut ram = read_bitmap(header.bitmap_offset)?;
        let mut written = read_bitmap(header.bitmap_offset + header.bitmap_bytes)?;
        // Bits past max_mapnr are padding.
        if header.max_mapnr % 64 != 0 {
            let keep = (1u64 << (header.max_mapnr % 64)) - 1;
            if let (Some(r), Some(w)) = (ram.last_mut(), written.last_mut()) {
                *r &= keep;
                *w &= keep;
            }
        }
        let mut rank = Vec::with_capacity(words);
        let mut count = 0u64;
        for w in &written {
            rank.push(count);
            count += u64::from(w.count_ones());
        }
        let descs_end = count
            .checked_mul(DESC_SIZE)
            .and_then(|b| header.descs_offset.checked_add(b))
            .filter(|&e| e <= flat_len)
            .ok_or_else(|| DumpError::Kdump {
                offset: header.descs_offset,
                reason: format!(
                    "the bitmap claims {count} written pages, whose descriptors run past the \
                     end of the dump ({flat_len:#x})"
                ),
            })?;
        let _ = descs_end;
        let map = runs(&written, header.block_size);
        let ram_pages = ram.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(Kdump {
            header,
            view,
            written,
            rank,
            map,
            ram_pages,
            written_pages: count,
            flat_len,
        })
    }

    /// Reads `len` bytes at flat offset `off` (the VMCOREINFO text, the notes).
    pub fn flat_bytes(&self, data: &[u8], off: u64, len: u64) -> Result<Vec<u8>, DumpError> {
        let mut buf = vec![0u8; len.min(MAX_NOTE_BYTES) as usize];
        self.view.read(data, off, &mut buf)?;
        Ok(buf)
    }

    /// Whether the stream is flattened.
    pub fn is_flattened(&self) -> bool {
        matches!(self.view, FlatView::Flattened(_))
    }

    /// The written pages as physical regions.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.map
    }

    /// The index of `pfn`'s descriptor, if the page was written.
    fn desc_index(&self, pfn: u64) -> Option<u64> {
        let w = *self.written.get(usize::try_from(pfn / 64).ok()?)?;
        let bit = pfn % 64;
        (w >> bit & 1 == 1).then(|| {
            self.rank[(pfn / 64) as usize] + u64::from((w & ((1u64 << bit) - 1)).count_ones())
        })
    }

    /// Decompresses page `pfn` into `out` (one block).
    pub fn page(&self, data: &[u8], pfn: u64, out: &mut [u8]) -> Result<(), PageError> {
        let index = self.desc_index(pfn).ok_or(PageError::NotWritten)?;
        let mut d = [0u8; DESC_SIZE as usize];
        self.view
            .read(data, self.header.descs_offset + index * DESC_SIZE, &mut d)
            .map_err(|e| PageError::Corrupt(e.to_string()))?;
        let (offset, size, flags) = (u64_at(&d, 0), u64::from(u32_at(&d, 8)), u32_at(&d, 12));
        let block = self.header.block_size;
        if size == 0 || size > block || offset.checked_add(size).is_none_or(|e| e > self.flat_len) {
            return Err(PageError::Corrupt(format!(
                "descriptor {index}: {size:#x} bytes at {offset:#x} (dump is {:#x} bytes)",
                self.flat_len
            )));
        }
        let mut packed = [0u8; PAGE as usize];
        let packed = &mut packed[..size as usize];
        self.view
            .read(data, offset, packed)
            .map_err(|e| PageError::Corrupt(e.to_string()))?;
        let out = &mut out[..block as usize];
        let n = match flags & (FLAG_ZLIB | FLAG_LZO | FLAG_SNAPPY | FLAG_ZSTD) {
            0 if size == block => {
                out.copy_from_slice(packed);
                block as usize
            }
            0 => {
                return Err(PageError::Corrupt(format!(
                    "uncompressed page of {size} bytes, not {block}"
                )))
            }
            FLAG_ZLIB => miniz_oxide::inflate::decompress_slice_iter_to_slice(
                out,
                std::iter::once(&*packed),
                true,
                false,
            )
            .map_err(|e| PageError::Decompress(format!("zlib: {e:?}")))?,
            FLAG_LZO => crate::lzo::decompress(packed, out)
                .map_err(|e| PageError::Decompress(e.to_string()))?,
            FLAG_SNAPPY => snap::raw::Decoder::new()
                .decompress(packed, out)
                .map_err(|e| PageError::Decompress(format!("snappy: {e}")))?,
            other => return Err(PageError::Unsupported(other)),
        };
        if n != block as usize {
            return Err(PageError::Decompress(format!(
                "page decompressed to {n} bytes, not {block}"
            )));
        }
        Ok(())
    }

    /// The compression named by the first written page's flags (for `vmi info`).
    pub fn compression(&self, data: &[u8]) -> &'static str {
        let mut d = [0u8; DESC_SIZE as usize];
        // The first non-raw page: QEMU writes its shared zero page raw.
        for index in 0..self.written_pages.min(4096) {
            if self
                .view
                .read(data, self.header.descs_offset + index * DESC_SIZE, &mut d)
                .is_err()
            {
                break;
            }
            match u32_at(&d, 12) & (FLAG_ZLIB | FLAG_LZO | FLAG_SNAPPY | FLAG_ZSTD) {
                FLAG_ZLIB => return "zlib",
                FLAG_LZO => return "lzo",
                FLAG_SNAPPY => return "snappy",
                FLAG_ZSTD => return "zstd",
                _ => {}
            }
        }
        "none"
    }
}

/// Why a page could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// The dump left the page out (its dump level excluded it).
    #[error("page not in the dump (excluded by makedumpfile's dump level)")]
    NotWritten,
    /// The page's descriptor or data is malformed.
    #[error("corrupt kdump page: {0}")]
    Corrupt(String),
    /// The page did not decompress.
    #[error("page does not decompress: {0}")]
    Decompress(String),
    /// A compression vmi does not read.
    #[error("page compressed with unsupported flags {0:#x} (zstd is not supported)")]
    Unsupported(u32),
}

/// The runs of set bits of `bitmap` as regions of `page`-sized frames.
fn runs(bitmap: &[u64], page: u64) -> Vec<MemoryRegion> {
    let mut out: Vec<MemoryRegion> = Vec::new();
    for (i, &w) in bitmap.iter().enumerate() {
        if w == 0 {
            continue;
        }
        for bit in 0..64 {
            if w >> bit & 1 == 0 {
                continue;
            }
            let pa = (i as u64 * 64 + bit) * page;
            match out.last_mut() {
                Some(r) if r.end_raw() == pa => r.len += page,
                _ => out.push(MemoryRegion {
                    start: Pa::new(pa),
                    len: page,
                }),
            }
        }
    }
    out
}

/// Guest-physical memory of a kdump file, decompressed page by page.
pub struct KdumpMemory<B> {
    bytes: B,
    kdump: Kdump,
}

impl<B: AsRef<[u8]>> KdumpMemory<B> {
    /// Memory over `bytes`, parsed as `kdump`.
    pub fn new(bytes: B, kdump: Kdump) -> Self {
        Self { bytes, kdump }
    }
}

impl<B: AsRef<[u8]> + Send + Sync> PhysicalMemory for KdumpMemory<B> {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let out = || MemoryError::OutOfRange { pa, len };
        let end = pa.raw().checked_add(len).ok_or_else(out)?;
        let mut page = [0u8; PAGE as usize];
        let mut at = pa.raw();
        // All or nothing: every page must be readable before the caller sees any byte, which
        // holds because `buf` is only returned on success.
        while at < end {
            let pfn = at / PAGE;
            let off = (at % PAGE) as usize;
            let n = ((PAGE as usize) - off).min((end - at) as usize);
            match self.kdump.page(self.bytes.as_ref(), pfn, &mut page) {
                Ok(()) => {}
                Err(PageError::NotWritten) => return Err(out()),
                Err(e) => {
                    return Err(MemoryError::Io {
                        pa: Pa::new(pfn * PAGE),
                        source: std::io::Error::other(e),
                    })
                }
            }
            let dst = (at - pa.raw()) as usize;
            buf[dst..dst + n].copy_from_slice(&page[off..off + n]);
            at += n as u64;
        }
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        self.kdump.memory_map()
    }
}

/// Test support: a small kdump file built in memory (also used by the fuzz target's seeds).
#[doc(hidden)]
pub mod testing {
    /// A flat kdump file of `pages` 4 KiB pages (page `i` filled with byte `i`), every third
    /// page left out of the dump, even pages zlib-compressed and odd ones stored raw.
    pub fn build(pages: u64) -> Vec<u8> {
        let block = 4096usize;
        let bitmap_bytes = (pages.div_ceil(8) as usize).div_ceil(block) * block;
        let mut f = vec![0u8; block * 2 + 2 * bitmap_bytes];
        f[..8].copy_from_slice(super::KDUMP_SIGNATURE);
        f[8..12].copy_from_slice(&6u32.to_le_bytes());
        let put32 =
            |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put32(&mut f, 428, block as u32);
        put32(&mut f, 432, 1);
        put32(&mut f, 436, (2 * bitmap_bytes / block) as u32);
        put32(&mut f, 440, pages as u32);
        put32(&mut f, 460, 1);
        f[block + 96..block + 104].copy_from_slice(&pages.to_le_bytes());
        let bitmaps = 2 * block;
        let written: Vec<u64> = (0..pages).filter(|p| p % 3 != 2).collect();
        for p in 0..pages {
            f[bitmaps + (p / 8) as usize] |= 1 << (p % 8);
        }
        for &p in &written {
            f[bitmaps + bitmap_bytes + (p / 8) as usize] |= 1 << (p % 8);
        }
        let descs = f.len();
        f.resize(descs + 24 * written.len(), 0);
        for (i, &p) in written.iter().enumerate() {
            let page = vec![p as u8; block];
            let (data, flags) = if p % 2 == 0 {
                (miniz_oxide::deflate::compress_to_vec_zlib(&page, 6), 1u32)
            } else {
                (page, 0)
            };
            let at = f.len() as u64;
            let d = descs + 24 * i;
            f[d..d + 8].copy_from_slice(&at.to_le_bytes());
            f[d + 8..d + 12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            f[d + 12..d + 16].copy_from_slice(&flags.to_le_bytes());
            f.extend_from_slice(&data);
        }
        f
    }

    /// `flat` as a flattened stream, in records of at most `chunk` bytes, written in reverse
    /// order with one stale record first (later records must win).
    pub fn flatten(flat: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = vec![0u8; 4096];
        out[..12].copy_from_slice(super::FLATTENED_SIGNATURE);
        out[16..24].copy_from_slice(&1i64.to_be_bytes());
        out[24..32].copy_from_slice(&1i64.to_be_bytes());
        let record = |out: &mut Vec<u8>, off: usize, data: &[u8]| {
            out.extend_from_slice(&(off as i64).to_be_bytes());
            out.extend_from_slice(&(data.len() as i64).to_be_bytes());
            out.extend_from_slice(data);
        };
        record(&mut out, 0, &vec![0xee; chunk.min(flat.len())]);
        let starts: Vec<usize> = (0..flat.len()).step_by(chunk).collect();
        for &s in starts.iter().rev() {
            record(&mut out, s, &flat[s..(s + chunk).min(flat.len())]);
        }
        out.extend_from_slice(&(-1i64).to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(bytes: Vec<u8>) -> Result<KdumpMemory<Vec<u8>>, DumpError> {
        let k = Kdump::parse(&bytes)?;
        Ok(KdumpMemory::new(bytes, k))
    }

    #[test]
    fn synthetic_flat_and_flattened_files_read_back() {
        let flat = testing::build(40);
        for bytes in [flat.clone(), testing::flatten(&flat, 1000)] {
            let mem = memory(bytes).unwrap();
            let mut page = [0u8; 4096];
            for p in 0..40u64 {
                let r = mem.read(Pa::new(p * 4096), &mut page);
                if p % 3 == 2 {
                    assert!(matches!(r, Err(MemoryError::OutOfRange { .. })), "page {p}");
                } else {
                    r.unwrap();
                    assert!(page.iter().all(|&b| b == p as u8), "page {p}");
                }
            }
            // Crossing from a written page into a left-out one fails whole.
            let mut two = [0u8; 8192];
            assert!(mem.read(Pa::new(4096), &mut two).is_err());
            assert_eq!(mem.memory_map().len(), 14);
        }
    }

    #[test]
    fn hostile_headers_are_precise_errors() {
        let good = testing::build(40);
        let err = |patch: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            patch(&mut b);
            Kdump::parse(&b).map(|_| ()).unwrap_err().to_string()
        };
        assert!(err(&|b| b.truncate(300)).contains("truncated"));
        assert!(err(&|b| b[428..432].copy_from_slice(&512u32.to_le_bytes())).contains("block size"));
        // max_mapnr of 2^40 pages.
        assert!(
            err(&|b| b[4096 + 96..4096 + 104].copy_from_slice(&(1u64 << 40).to_le_bytes()))
                .contains("max_mapnr")
        );
        // Bitmaps claiming more blocks than the file has.
        assert!(
            err(&|b| b[436..440].copy_from_slice(&100_000u32.to_le_bytes()))
                .contains("past the end")
        );
        // A bitmap with every bit set: more descriptors than the file holds.
        assert!(err(&|b| {
            for x in &mut b[8192 + 4096..8192 + 4096 + 5] {
                *x = 0xff;
            }
            b[4096 + 96..4096 + 104].copy_from_slice(&40u64.to_le_bytes());
            let len = b.len();
            b.truncate(len.min(8192 + 8192 + 24 * 20));
        })
        .contains("descriptors"));
    }

    #[test]
    fn hostile_pages_are_read_errors() {
        let good = testing::build(40);
        let descs = 2 * 4096 + 2 * 4096;
        let read0 = |patch: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            patch(&mut b);
            let mem = memory(b).unwrap();
            let mut page = [0u8; 4096];
            mem.read(Pa::new(0), &mut page).unwrap_err().to_string()
        };
        // Size larger than a page, offset past the end, garbage data, unknown flags.
        assert!(
            read0(&|b| b[descs + 8..descs + 12].copy_from_slice(&5000u32.to_le_bytes()))
                .contains("corrupt")
        );
        assert!(
            read0(&|b| b[descs..descs + 8].copy_from_slice(&u64::MAX.to_le_bytes()))
                .contains("corrupt")
        );
        assert!(read0(&|b| {
            let off = u64::from_le_bytes(b[descs..descs + 8].try_into().unwrap()) as usize;
            b[off..off + 8].fill(0x55);
        })
        .contains("decompress"));
        assert!(
            read0(&|b| b[descs + 12..descs + 16].copy_from_slice(&0x20u32.to_le_bytes()))
                .contains("unsupported")
        );
    }

    #[test]
    fn hostile_flattened_streams_are_errors() {
        let flat = testing::build(10);
        let good = testing::flatten(&flat, 4096);
        let patch = |at: usize, v: i64| {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&v.to_be_bytes());
            Kdump::parse(&b).map(|_| ()).unwrap_err().to_string()
        };
        assert!(patch(4096 + 8, i64::MAX).contains("runs past"));
        assert!(patch(4096 + 8, -5).contains("negative"));
        // A stale record far away only makes the flat file longer: nothing is sized by it.
        let mut far = good.clone();
        far[4096..4104].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
        assert!(Kdump::parse(&far).is_ok());
        assert!(patch(16, 2).contains("type"));
        let mut cut = good.clone();
        cut.truncate(good.len() - 16);
        assert!(Kdump::parse(&cut).is_err());
    }

    #[test]
    fn flattened_records_later_writes_win() {
        let mut map = BTreeMap::new();
        insert_piece(&mut map, 0, 100, 1000);
        insert_piece(&mut map, 10, 20, 2000);
        insert_piece(&mut map, 90, 20, 3000);
        let v: Vec<_> = map.into_iter().collect();
        assert_eq!(
            v,
            [
                (0, (10, 1000)),
                (10, (20, 2000)),
                (30, (60, 1030)),
                (90, (20, 3000))
            ]
        );
    }

    #[test]
    fn bitmap_runs() {
        let map = runs(&[0b1110_0011, 1 << 63, 1], 4096);
        let got: Vec<(u64, u64)> = map
            .iter()
            .map(|r| (r.start.raw() / 4096, r.len / 4096))
            .collect();
        assert_eq!(got, [(0, 2), (5, 3), (127, 2)]);
    }
}
