//! makedumpfile's kdump-compressed format: `virsh dump --memory-only --format kdump-*`, QEMU's
//! `dump-guest-memory format=kdump-*`, `makedumpfile -c|-l|-p` of a crashed kernel.
//!
//! A flat file is, in blocks of `block_size` bytes: the `disk_dump_header` (signature
//! `KDUMP   `), the `kdump_sub_header` (phys_base, dump level, split range, where the
//! VMCOREINFO, ELF notes and erase info are), two bitmaps of `max_mapnr` bits (the first marks
//! the RAM pages, the second the pages written), then one `page_desc` (offset, size, flags) per
//! written page in PFN order, and the page data, each page compressed alone (zlib, LZO, snappy)
//! or stored raw. A *flattened* file (signature `makedumpfile`, what QEMU 7.2 and
//! `makedumpfile -F` write to a pipe) is the same bytes as a stream of (offset, size) records;
//! [`FlatView`] indexes the records and reads through them from the mapped file, without
//! reassembling it in RAM. The index holds one entry per record (QEMU writes 16 KiB records:
//! about 2,500 for a 512 MiB guest), at most [`MAX_RECORDS`], and never more than the file
//! has records, since each one needs its 16-byte header in the file.
//!
//! Pages the dump left out (makedumpfile's `-d` levels exclude zero, cache, user or free
//! pages) are absent: the memory map covers only the written pages, and a read of another is an
//! error, never zeros. A page that *is* written and holds zeros reads as zeros: QEMU (which
//! says dump level 1 but excludes nothing) and makedumpfile below level 1 point every zero
//! page's descriptor at one shared, stored page of zeros. A split dump (`makedumpfile
//! --split`) holds the PFNs `start_pfn..end_pfn` of the machine; the other parts' pages are
//! absent from it.
//!
//! Every header value is checked against the file before anything is sized by it: the
//! bitmaps must fit both the reassembled length and the file on disk (so a small flattened
//! stream with one record far away cannot make vmi allocate a bitmap for 2^36 pages), the
//! descriptors of every page the bitmap marks must fit the dump, and the notes are capped.
//! Allocation is therefore bounded by the size of the file.
//!
//! Decompression crates, chosen for being pure Rust (no C toolchain, no `unsafe` of ours):
//! - zlib: `miniz_oxide`, the default backend of `flate2`, maintained with the Rust toolchain's
//!   own dependencies in mind, `#![forbid(unsafe_code)]`; used through its slice API, so no
//!   `flate2` wrapper is needed.
//! - snappy: `snap` (BurntSushi), the de-facto Rust snappy, fuzzed upstream; its raw decoder
//!   writes into a caller buffer after checking the declared length against it.
//! - LZO1X: [`crate::lzo`], our own bounds-checked decoder. The crates.io options were C
//!   bindings (`lzo-sys`, `rust-lzo` with a C2Rust translation full of `unsafe`) or small
//!   young ports with few users; the decoder is a hundred lines of checked arithmetic over
//!   the instruction set of the kernel's `lzo1x_decompress_safe`.
//! - zstd pages (makedumpfile 1.7's `-z`, flag 0x20) are reported as unsupported.
//!
//! Pages are decompressed on demand into the caller's buffer; there is no cache here, because
//! the target sets `slow_reads` and the session's page cache sits in front (a cache here would
//! hold the same pages twice).

use std::collections::BTreeMap;

use vmi_core::{MemoryError, MemoryRegion, Pa, PhysicalMemory};

use crate::error::{DumpError, PageError};

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
/// Most page frames accepted: 2^36 pages is 256 TiB of RAM.
pub const MAX_PFNS: u64 = 1 << 36;
/// Largest VMCOREINFO, note or erase-info area accepted (they are kilobytes).
pub const MAX_NOTE_BYTES: u64 = 16 << 20;
/// Flattened records indexed at most (QEMU writes one per 16 KiB: 2^24 records are 256 GiB).
pub const MAX_RECORDS: usize = 1 << 24;

/// Per-page compression flags of `page_desc.flags` (also the header's `status` bits).
const FLAG_ZLIB: u32 = 0x1;
const FLAG_LZO: u32 = 0x2;
const FLAG_SNAPPY: u32 = 0x4;
const FLAG_ZSTD: u32 = 0x20;
const FLAG_COMPRESSION: u32 = FLAG_ZLIB | FLAG_LZO | FLAG_SNAPPY | FLAG_ZSTD;
/// `status` bit: makedumpfile ran out of space and the dump is incomplete.
const STATUS_INCOMPLETE: u32 = 0x8;
/// Header offsets of the fields vmi reads (64-bit `disk_dump_header`).
const OFF_VERSION: usize = 8;
const OFF_RELEASE: usize = 12 + 2 * 65;
const OFF_STATUS: usize = 424;
const OFF_BLOCK_SIZE: usize = 428;
const OFF_SUB_HDR_SIZE: usize = 432;
const OFF_BITMAP_BLOCKS: usize = 436;
const OFF_MAX_MAPNR: usize = 440;
const OFF_NR_CPUS: usize = 460;

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

fn be_i64(data: &[u8], at: u64) -> Result<i64, DumpError> {
    let b = crate::elf::slice(data, at, 8).ok_or(DumpError::TruncatedHeader {
        what: "flattened kdump record",
        offset: at,
        needed: 16,
        file_len: data.len() as u64,
    })?;
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    Ok(i64::from_be_bytes(w))
}

impl FlatView {
    /// Indexes the records of a flattened stream (later records overwrite earlier ones, as
    /// when `makedumpfile -R` reassembles the stream).
    pub fn index_flattened(data: &[u8]) -> Result<FlatView, DumpError> {
        let file_len = data.len() as u64;
        if file_len < FLAT_HEADER_SIZE {
            return Err(DumpError::TruncatedHeader {
                what: "flattened kdump header",
                offset: 0,
                needed: FLAT_HEADER_SIZE,
                file_len,
            });
        }
        let (kind, version) = (be_i64(data, 16)?, be_i64(data, 24)?);
        if kind != 1 || version != 1 {
            return Err(DumpError::KdumpFlattenedHeader { kind, version });
        }
        let mut map: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut at = FLAT_HEADER_SIZE;
        let mut records = 0usize;
        // Each pass consumes at least the 16-byte record header, so the loop ends within
        // file_len / 16 passes; MAX_RECORDS bounds the index below that.
        loop {
            let (offset, size) = (be_i64(data, at)?, be_i64(data, at + 8)?);
            if offset == -1 && size == -1 {
                break;
            }
            let (Ok(flat), Ok(len)) = (u64::try_from(offset), u64::try_from(size)) else {
                return Err(DumpError::KdumpRecordNegative { at, offset, size });
            };
            // at + 16 <= file_len: the header was read.
            let data_at = at + 16;
            if data_at.checked_add(len).is_none_or(|end| end > file_len) {
                return Err(DumpError::KdumpRecordBeyondFile {
                    at,
                    size: len,
                    file_len,
                });
            }
            records += 1;
            if records > MAX_RECORDS {
                return Err(DumpError::KdumpTooManyRecords { max: MAX_RECORDS });
            }
            // flat and len are at most i64::MAX, so flat + len fits in u64.
            if len > 0 {
                insert_piece(&mut map, flat, len, data_at);
            }
            at = data_at + len;
        }
        Ok(FlatView::Flattened(map))
    }

    /// The length of the flat file this view reassembles.
    pub fn flat_len(&self, data: &[u8]) -> u64 {
        match self {
            FlatView::Flat => data.len() as u64,
            FlatView::Flattened(m) => m.iter().next_back().map_or(0, |(&s, &(l, _))| s + l),
        }
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

/// Puts `[start, start + len)` (data at `src`) into `map`, cutting what it overlaps. Each call
/// adds at most two entries (the new piece and the tail of one it splits) and removes the ones
/// it covers, so the map never holds more than twice the records.
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
    /// `status`: compression bits, and 0x8 for an incomplete dump.
    pub status: u32,
    /// `block_size`: the page size.
    pub block_size: u64,
    /// Pages the bitmaps describe (`max_mapnr_64` from version 6, else `max_mapnr`).
    pub max_mapnr: u64,
    /// `nr_cpus`.
    pub nr_cpus: u32,
    /// The release in the header's utsname.
    pub release: String,
    /// `phys_base` of the sub header.
    pub phys_base: u64,
    /// makedumpfile's `-d` level (0: every page, 31: only what a kernel crash needs).
    pub dump_level: u32,
    /// For a part of a split dump, the PFNs it holds (`start_pfn..end_pfn`).
    pub split: Option<(u64, u64)>,
    /// Where the VMCOREINFO text is (flat offset, size).
    pub vmcoreinfo: Option<(u64, u64)>,
    /// Where the ELF notes are (flat offset, size).
    pub notes: Option<(u64, u64)>,
    /// Where the erase information is (flat offset, size): what `makedumpfile --config`
    /// filtered out of the pages.
    pub eraseinfo: Option<(u64, u64)>,
    /// Flat offset of the first bitmap.
    bitmap_offset: u64,
    /// Bytes of each bitmap.
    bitmap_bytes: u64,
    /// Flat offset of the page descriptors.
    descs_offset: u64,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

impl KdumpHeader {
    /// Parses the headers through `view`, checking every size against the flat file's length
    /// `flat_len` and the file's own length before it is used.
    pub fn parse(data: &[u8], view: &FlatView, flat_len: u64) -> Result<Self, DumpError> {
        let file_len = data.len() as u64;
        let mut h = [0u8; HEADER_SIZE];
        view.read(data, 0, &mut h)
            .map_err(|_| DumpError::TruncatedHeader {
                what: "kdump disk_dump_header",
                offset: 0,
                needed: HEADER_SIZE as u64,
                file_len: flat_len,
            })?;
        if !h.starts_with(KDUMP_SIGNATURE) {
            return Err(DumpError::KdumpNoSignature {
                first_bytes: crate::elf::hex_prefix(&h),
            });
        }
        let version = u32_at(&h, OFF_VERSION);
        let release = String::from_utf8_lossy(&h[OFF_RELEASE..OFF_RELEASE + 65])
            .trim_end_matches('\0')
            .to_owned();
        let block_size = u64::from(u32_at(&h, OFF_BLOCK_SIZE));
        if block_size != PAGE {
            return Err(DumpError::KdumpBlockSize { block_size });
        }
        let sub_hdr_blocks = u64::from(u32_at(&h, OFF_SUB_HDR_SIZE));
        let bitmap_blocks = u64::from(u32_at(&h, OFF_BITMAP_BLOCKS));
        let nr_cpus = u32_at(&h, OFF_NR_CPUS);
        let mut sub = [0u8; SUB_HEADER_SIZE];
        view.read(data, block_size, &mut sub)
            .map_err(|_| DumpError::TruncatedHeader {
                what: "kdump_sub_header",
                offset: block_size,
                needed: SUB_HEADER_SIZE as u64,
                file_len: flat_len,
            })?;
        let max_mapnr = if version >= 6 {
            u64_at(&sub, 96)
        } else {
            u64::from(u32_at(&h, OFF_MAX_MAPNR))
        };
        if max_mapnr == 0 || max_mapnr > MAX_PFNS {
            return Err(DumpError::KdumpMaxMapnr {
                max_mapnr,
                max: MAX_PFNS,
            });
        }
        // sub_hdr_blocks and bitmap_blocks are u32, block_size 4096: no overflow in u64.
        let bitmap_offset = (1 + sub_hdr_blocks) * block_size;
        let bitmap_bytes = bitmap_blocks * block_size / 2;
        if bitmap_bytes < max_mapnr.div_ceil(8) {
            return Err(DumpError::KdumpBitmapTooSmall {
                bitmap_bytes,
                max_mapnr,
            });
        }
        let descs_offset = bitmap_offset + 2 * bitmap_bytes;
        // The bitmaps vmi reads (max_mapnr bits each) are written in full by every writer,
        // flattened or not, so they must also fit in the file itself.
        if descs_offset > flat_len || 2 * max_mapnr.div_ceil(8) > file_len {
            return Err(DumpError::KdumpBitmapBeyondFile {
                end: descs_offset,
                flat_len,
                file_len,
            });
        }
        let area = |what: &'static str, at: usize, min_version: u32| {
            let (offset, size) = (u64_at(&sub, at), u64_at(&sub, at + 8));
            if version < min_version || size == 0 {
                return Ok(None);
            }
            if size > MAX_NOTE_BYTES || offset.checked_add(size).is_none_or(|e| e > flat_len) {
                return Err(DumpError::KdumpAreaOutside {
                    what,
                    offset,
                    size,
                    flat_len,
                    max: MAX_NOTE_BYTES,
                });
            }
            Ok(Some((offset, size)))
        };
        let split = if version >= 2 && u32_at(&sub, 12) != 0 {
            let (start_pfn, end_pfn) = if version >= 6 {
                (u64_at(&sub, 80), u64_at(&sub, 88))
            } else {
                (u64_at(&sub, 16), u64_at(&sub, 24))
            };
            if start_pfn >= end_pfn || end_pfn > max_mapnr {
                return Err(DumpError::KdumpSplitRange {
                    start_pfn,
                    end_pfn,
                    max_mapnr,
                });
            }
            Some((start_pfn, end_pfn))
        } else {
            None
        };
        Ok(Self {
            version,
            status: u32_at(&h, OFF_STATUS),
            block_size,
            max_mapnr,
            nr_cpus,
            release,
            phys_base: u64_at(&sub, 0),
            dump_level: u32_at(&sub, 8),
            split,
            vmcoreinfo: area("VMCOREINFO", 32, 3)?,
            notes: area("ELF notes", 48, 4)?,
            eraseinfo: area("erase info", 64, 5)?,
            bitmap_offset,
            bitmap_bytes,
            descs_offset,
        })
    }

    /// Whether makedumpfile marked the dump incomplete (it ran out of space).
    pub fn is_incomplete(&self) -> bool {
        self.status & STATUS_INCOMPLETE != 0
    }
}

/// A parsed kdump file: headers, the second bitmap with a rank index, and how to reach the
/// bytes.
#[derive(Debug)]
pub struct Kdump {
    /// The headers.
    pub header: KdumpHeader,
    view: FlatView,
    /// The second bitmap (pages written, restricted to a split part's PFNs), as words.
    written: Vec<u64>,
    /// Written pages before each word of `written`: a page's descriptor index in O(1).
    rank: Vec<u64>,
    map: Vec<MemoryRegion>,
    /// Pages in the first bitmap (RAM).
    pub ram_pages: u64,
    /// Pages written (with a descriptor in this file).
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
        let flat_len = view.flat_len(data);
        let header = KdumpHeader::parse(data, &view, flat_len)?;
        // max_mapnr <= 2^36 and both bitmaps fit in the file (checked above), so these
        // buffers are at most the file's size.
        let words = header.max_mapnr.div_ceil(64) as usize;
        let read_bitmap = |at: u64| -> Result<Vec<u64>, DumpError> {
            let mut bytes = vec![0u8; words * 8];
            let n = header.max_mapnr.div_ceil(8) as usize;
            view.read(data, at, &mut bytes[..n])?;
            Ok(bytes.chunks_exact(8).map(|c| u64_at(c, 0)).collect())
        };
        let ram = read_bitmap(header.bitmap_offset)?;
        let mut written = read_bitmap(header.bitmap_offset + header.bitmap_bytes)?;
        // Bits past max_mapnr are padding; a split part holds only its own PFNs (its bitmap
        // is the whole machine's, its descriptors start at start_pfn).
        let (lo, hi) = header.split.unwrap_or((0, header.max_mapnr));
        for (i, w) in written.iter_mut().enumerate() {
            *w &= range_mask(i as u64 * 64, lo, hi);
        }
        let mut rank = Vec::with_capacity(words);
        let mut count = 0u64;
        for w in &written {
            rank.push(count);
            count += u64::from(w.count_ones());
        }
        // count <= 2^36, so count * 24 fits.
        if header
            .descs_offset
            .checked_add(count * DESC_SIZE)
            .is_none_or(|e| e > flat_len)
        {
            return Err(DumpError::KdumpDescriptorsBeyondFile {
                pages: count,
                descs_offset: header.descs_offset,
                flat_len,
            });
        }
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

    /// Reads `len` bytes at flat offset `off` (the VMCOREINFO text, the notes; their sizes
    /// were checked against [`MAX_NOTE_BYTES`] when the header was parsed).
    pub fn flat_bytes(&self, data: &[u8], off: u64, len: u64) -> Result<Vec<u8>, DumpError> {
        let mut buf = vec![0u8; len.min(MAX_NOTE_BYTES) as usize];
        self.view.read(data, off, &mut buf)?;
        Ok(buf)
    }

    /// Whether the stream is flattened.
    pub fn is_flattened(&self) -> bool {
        matches!(self.view, FlatView::Flattened(_))
    }

    /// Records in the flattened index (0 for a flat file).
    pub fn flattened_pieces(&self) -> usize {
        match &self.view {
            FlatView::Flat => 0,
            FlatView::Flattened(m) => m.len(),
        }
    }

    /// The written pages as physical regions.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.map
    }

    /// The index of `pfn`'s descriptor, if the page was written.
    fn desc_index(&self, pfn: u64) -> Option<u64> {
        let word = usize::try_from(pfn / 64).ok()?;
        let w = *self.written.get(word)?;
        let bit = pfn % 64;
        if w >> bit & 1 == 0 {
            return None;
        }
        Some(self.rank.get(word)? + u64::from((w & ((1u64 << bit) - 1)).count_ones()))
    }

    /// Decompresses page `pfn` into `out` (at least one block).
    pub fn page(&self, data: &[u8], pfn: u64, out: &mut [u8]) -> Result<(), PageError> {
        let index = self.desc_index(pfn).ok_or(PageError::NotWritten { pfn })?;
        let block = self.header.block_size;
        let mut d = [0u8; DESC_SIZE as usize];
        // The descriptor table was checked to fit the flat file when parsing.
        let bad = |offset: u64, size: u64| PageError::BadDescriptor {
            pfn,
            index,
            offset,
            size,
            block,
            flat_len: self.flat_len,
        };
        self.view
            .read(data, self.header.descs_offset + index * DESC_SIZE, &mut d)
            .map_err(|_| bad(0, 0))?;
        let (offset, size, flags) = (u64_at(&d, 0), u64::from(u32_at(&d, 8)), u32_at(&d, 12));
        if size == 0 && self.header.is_incomplete() {
            return Err(PageError::Incomplete { pfn });
        }
        if size == 0 || size > block || offset.checked_add(size).is_none_or(|e| e > self.flat_len) {
            return Err(bad(offset, size));
        }
        let mut packed = [0u8; PAGE as usize];
        let packed = &mut packed[..size as usize];
        self.view
            .read(data, offset, packed)
            .map_err(|_| bad(offset, size))?;
        let Some(out) = out.get_mut(..block as usize) else {
            return Err(PageError::DecompressedSize {
                pfn,
                method: "none",
                got: out.len(),
                expected: block as usize,
            });
        };
        let (method, n) = match flags & FLAG_COMPRESSION {
            0 if size == block => {
                out.copy_from_slice(packed);
                return Ok(());
            }
            0 => return Err(PageError::RawSize { pfn, size, block }),
            FLAG_ZLIB => (
                "zlib",
                miniz_oxide::inflate::decompress_slice_iter_to_slice(
                    out,
                    std::iter::once(&*packed),
                    true,
                    false,
                )
                .map_err(|e| PageError::Decompress {
                    pfn,
                    method: "zlib",
                    detail: format!("{e:?}"),
                })?,
            ),
            FLAG_LZO => (
                "lzo",
                crate::lzo::decompress(packed, out).map_err(|e| PageError::Decompress {
                    pfn,
                    method: "lzo",
                    detail: e.to_string(),
                })?,
            ),
            FLAG_SNAPPY => (
                "snappy",
                snap::raw::Decoder::new()
                    .decompress(packed, out)
                    .map_err(|e| PageError::Decompress {
                        pfn,
                        method: "snappy",
                        detail: e.to_string(),
                    })?,
            ),
            _ => return Err(PageError::Unsupported { pfn, flags }),
        };
        if n != block as usize {
            return Err(PageError::DecompressedSize {
                pfn,
                method,
                got: n,
                expected: block as usize,
            });
        }
        Ok(())
    }

    /// The compression of the pages, from the first compressed descriptors (for `vmi info`):
    /// "zlib", "lzo", "snappy", "zstd", "none" or a list when they are mixed.
    pub fn compression(&self, data: &[u8]) -> String {
        let mut d = [0u8; DESC_SIZE as usize];
        let mut seen = 0u32;
        // QEMU writes its shared zero page raw, so look past the first descriptors.
        for index in 0..self.written_pages.min(4096) {
            if self
                .view
                .read(data, self.header.descs_offset + index * DESC_SIZE, &mut d)
                .is_err()
            {
                break;
            }
            seen |= u32_at(&d, 12) & FLAG_COMPRESSION;
        }
        let names: Vec<&str> = [
            (FLAG_ZLIB, "zlib"),
            (FLAG_LZO, "lzo"),
            (FLAG_SNAPPY, "snappy"),
            (FLAG_ZSTD, "zstd"),
        ]
        .iter()
        .filter(|(f, _)| seen & f != 0)
        .map(|&(_, n)| n)
        .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join("+")
        }
    }
}

/// The bits of the bitmap word for PFNs `base..base + 64` that lie in `lo..hi`.
fn range_mask(base: u64, lo: u64, hi: u64) -> u64 {
    let from = lo.saturating_sub(base).min(64);
    let to = hi.saturating_sub(base).min(64);
    if from >= to {
        return 0;
    }
    let below_to = if to == 64 { u64::MAX } else { (1u64 << to) - 1 };
    // from < to <= 64, so from < 64.
    below_to & !((1u64 << from) - 1)
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
        // A read is all or nothing: on an error, what was copied so far is not the caller's
        // to use (read_exact semantics).
        while at < end {
            let pfn = at / PAGE;
            let off = (at % PAGE) as usize;
            let n = ((PAGE as usize) - off).min((end - at) as usize);
            match self.kdump.page(self.bytes.as_ref(), pfn, &mut page) {
                Ok(()) => {}
                Err(PageError::NotWritten { .. }) => return Err(out()),
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

/// Test support: small kdump files built in memory (unit tests, the fuzz target's seeds).
#[doc(hidden)]
pub mod testing {
    /// What [`build_with`] puts in the file besides the pages.
    #[derive(Debug, Clone, Default)]
    pub struct Options<'a> {
        /// A split part holding PFNs `start..end` only.
        pub split: Option<(u64, u64)>,
        /// VMCOREINFO text.
        pub vmcoreinfo: Option<&'a [u8]>,
        /// An ELF note block (NT_PRSTATUS, QEMU CPU notes).
        pub notes: Option<&'a [u8]>,
    }

    /// Page `p`'s compression in the synthetic file: `(flags, data)` for its content.
    /// `page` must be filled with one byte (LZO pages are made by [`lzo_run`]).
    pub fn pack(p: u64, page: &[u8]) -> (u32, Vec<u8>) {
        match p % 4 {
            0 => (1, miniz_oxide::deflate::compress_to_vec_zlib(page, 6)),
            1 => (0, page.to_vec()),
            2 => (
                4,
                snap::raw::Encoder::new()
                    .compress_vec(page)
                    .unwrap_or_default(),
            ),
            _ => (2, lzo_run(page[0], page.len())),
        }
    }

    /// An LZO1X stream of `len` copies of `byte`: one literal, one match of distance 1 for
    /// the rest, the end marker (the real liblzo2 output is in the fixtures).
    pub fn lzo_run(byte: u8, len: usize) -> Vec<u8> {
        // 17 + 1: one literal; 001_00000: a match whose length - 2 - 31 follows in 255-steps;
        // distance 1 with no trailing literals (0x0000); 0x11 0 0 ends the stream.
        let mut out = vec![18, byte, 0x20];
        let mut rest = (len - 1).saturating_sub(2 + 31);
        while rest > 255 {
            out.push(0);
            rest -= 255;
        }
        out.push(rest as u8);
        out.extend_from_slice(&[0, 0, 0x11, 0, 0]);
        out
    }

    /// A flat kdump file of `pages` 4 KiB pages (page `i` filled with byte `i`), every third
    /// page left out of the dump, the others zlib, raw, snappy or LZO by `i % 4`.
    pub fn build(pages: u64) -> Vec<u8> {
        build_with(pages, &Options::default())
    }

    /// [`build`] with a split range, VMCOREINFO or notes.
    pub fn build_with(pages: u64, opt: &Options<'_>) -> Vec<u8> {
        let block = 4096usize;
        let bitmap_bytes = (pages.div_ceil(8) as usize).div_ceil(block) * block;
        let mut f = vec![0u8; block * 2 + 2 * bitmap_bytes];
        f[..8].copy_from_slice(super::KDUMP_SIGNATURE);
        f[8..12].copy_from_slice(&6u32.to_le_bytes());
        f[12 + 130..12 + 130 + 14].copy_from_slice(b"6.1.0-test-vmi");
        let put32 =
            |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put32(&mut f, 424, 1);
        put32(&mut f, 428, block as u32);
        put32(&mut f, 432, 1);
        put32(&mut f, 436, (2 * bitmap_bytes / block) as u32);
        put32(&mut f, 440, pages as u32);
        put32(&mut f, 460, 1);
        put64(&mut f, block, 0x1000_0000);
        put32(&mut f, block + 8, 31);
        put64(&mut f, block + 96, pages);
        let (lo, hi) = opt.split.unwrap_or((0, pages));
        if opt.split.is_some() {
            put32(&mut f, block + 12, 1);
            put64(&mut f, block + 80, lo);
            put64(&mut f, block + 88, hi);
        }
        let bitmaps = 2 * block;
        let written: Vec<u64> = (0..pages).filter(|p| p % 3 != 2).collect();
        for p in 0..pages {
            f[bitmaps + (p / 8) as usize] |= 1 << (p % 8);
        }
        for &p in &written {
            f[bitmaps + bitmap_bytes + (p / 8) as usize] |= 1 << (p % 8);
        }
        let here: Vec<u64> = written
            .iter()
            .copied()
            .filter(|p| (lo..hi).contains(p))
            .collect();
        let descs = f.len();
        f.resize(descs + 24 * here.len(), 0);
        for (i, &p) in here.iter().enumerate() {
            let (flags, data) = pack(p, &vec![p as u8; block]);
            let at = f.len() as u64;
            let d = descs + 24 * i;
            put64(&mut f, d, at);
            put32(&mut f, d + 8, data.len() as u32);
            put32(&mut f, d + 12, flags);
            f.extend_from_slice(&data);
        }
        for (area, bytes) in [(32, opt.vmcoreinfo), (48, opt.notes)] {
            if let Some(b) = bytes {
                let at = f.len() as u64;
                put64(&mut f, block + area, at);
                put64(&mut f, block + area + 8, b.len() as u64);
                f.extend_from_slice(b);
            }
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
        let starts: Vec<usize> = (0..flat.len()).step_by(chunk.max(1)).collect();
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

    fn io_reason(e: MemoryError) -> PageError {
        match e {
            MemoryError::Io { source, .. } => {
                let inner = source.into_inner().expect("an inner error");
                *inner.downcast::<PageError>().expect("a PageError")
            }
            e => panic!("not an I/O error: {e}"),
        }
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
                    // Page 0 is a written page of zeros: zeros, not a hole.
                    assert!(page.iter().all(|&b| b == p as u8), "page {p}");
                }
            }
            // Crossing from a written page into a left-out one fails whole.
            let mut two = [0u8; 8192];
            assert!(mem.read(Pa::new(4096), &mut two).is_err());
            // Two written neighbours (3, 4: LZO then zlib) read across the boundary.
            mem.read(Pa::new(3 * 4096 + 4000), &mut page[..200])
                .unwrap();
            assert!(page[..96].iter().all(|&b| b == 3) && page[96..200].iter().all(|&b| b == 4));
            assert_eq!(mem.memory_map().len(), 14);
            assert_eq!(mem.kdump.compression(&mem.bytes), "zlib+lzo+snappy");
            assert_eq!(mem.kdump.written_pages, 27);
            assert_eq!(mem.kdump.ram_pages, 40);
            let h = &mem.kdump.header;
            assert_eq!(
                (h.version, h.release.as_str(), h.dump_level, h.phys_base),
                (6, "6.1.0-test-vmi", 31, 0x1000_0000)
            );
        }
    }

    #[test]
    fn split_part_holds_its_own_pfns() {
        let flat = testing::build_with(
            40,
            &testing::Options {
                split: Some((10, 30)),
                ..Default::default()
            },
        );
        let mem = memory(flat).unwrap();
        assert_eq!(mem.kdump.header.split, Some((10, 30)));
        let mut page = [0u8; 4096];
        for p in 0..40u64 {
            let r = mem.read(Pa::new(p * 4096), &mut page);
            if p % 3 == 2 || !(10..30).contains(&p) {
                assert!(matches!(r, Err(MemoryError::OutOfRange { .. })), "page {p}");
            } else {
                r.unwrap();
                assert!(page.iter().all(|&b| b == p as u8), "page {p}");
            }
        }
        assert_eq!(
            range_mask(0, 10, 30),
            ((1u64 << 30) - 1) & !((1u64 << 10) - 1)
        );
        assert_eq!(range_mask(64, 10, 30), 0);
        assert_eq!(range_mask(64, 0, 200), u64::MAX);
        assert_eq!(range_mask(128, 100, 130), 0b11);
    }

    #[test]
    fn hostile_headers_are_precise_errors() {
        let good = testing::build(40);
        #[track_caller]
        fn patched(good: &[u8], patch: &dyn Fn(&mut Vec<u8>)) -> DumpError {
            let mut b = good.to_vec();
            patch(&mut b);
            Kdump::parse(&b).map(|_| ()).unwrap_err()
        }

        assert!(matches!(
            patched(&good, &|b| b.truncate(300)),
            DumpError::TruncatedHeader { needed: 464, .. }
        ));
        assert!(matches!(
            patched(&good, &|b| b[428..432]
                .copy_from_slice(&512u32.to_le_bytes())),
            DumpError::KdumpBlockSize { block_size: 512 }
        ));
        assert!(matches!(
            patched(&good, &|b| b[4096 + 96..4096 + 104].copy_from_slice(&(1u64 << 40).to_le_bytes())),
            DumpError::KdumpMaxMapnr { max_mapnr, .. } if max_mapnr == 1 << 40
        ));
        assert!(matches!(
            patched(&good, &|b| b[4096 + 96..4096 + 104]
                .copy_from_slice(&0u64.to_le_bytes())),
            DumpError::KdumpMaxMapnr { max_mapnr: 0, .. }
        ));
        // Bitmaps claiming more blocks than the file has.
        assert!(matches!(
            patched(&good, &|b| b[436..440]
                .copy_from_slice(&100_000u32.to_le_bytes())),
            DumpError::KdumpBitmapBeyondFile { .. }
        ));
        // Bitmaps too small for max_mapnr (40 000 pages in one 4 KiB block pair).
        assert!(matches!(
            patched(&good, &|b| b[4096 + 96..4096 + 104]
                .copy_from_slice(&40_000u64.to_le_bytes())),
            DumpError::KdumpBitmapTooSmall {
                max_mapnr: 40_000,
                ..
            }
        ));
        // A bitmap with every bit set: more descriptors than the file holds.
        assert!(matches!(
            patched(&good, &|b| {
                b[12288..12288 + 2048].fill(0xff);
                b[4096 + 96..4096 + 104].copy_from_slice(&16384u64.to_le_bytes());
            }),
            DumpError::KdumpDescriptorsBeyondFile { pages, .. } if pages > 8000
        ));
        // A VMCOREINFO area past the end, and one too large.
        assert!(matches!(
            patched(&good, &|b| {
                b[4096 + 32..4096 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
                b[4096 + 40..4096 + 48].copy_from_slice(&0x100u64.to_le_bytes());
            }),
            DumpError::KdumpAreaOutside {
                what: "VMCOREINFO",
                ..
            }
        ));
        assert!(matches!(
            patched(&good, &|b| b[4096 + 56..4096 + 64]
                .copy_from_slice(&u64::MAX.to_le_bytes())),
            DumpError::KdumpAreaOutside {
                what: "ELF notes",
                ..
            }
        ));
        // A split range beyond max_mapnr, and an empty one.
        for (lo, hi) in [(10u64, 41u64), (20, 20)] {
            assert!(matches!(
                patched(&good, &|b| {
                    b[4096 + 12..4096 + 16].copy_from_slice(&1u32.to_le_bytes());
                    b[4096 + 80..4096 + 88].copy_from_slice(&lo.to_le_bytes());
                    b[4096 + 88..4096 + 96].copy_from_slice(&hi.to_le_bytes());
                }),
                DumpError::KdumpSplitRange { .. }
            ));
        }
    }

    #[test]
    fn hostile_pages_are_read_errors() {
        let good = testing::build(40);
        let descs = 2 * 4096 + 2 * 4096;
        let read = |pfn: u64, patch: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            patch(&mut b);
            let mem = memory(b).unwrap();
            let mut page = [0u8; 4096];
            io_reason(mem.read(Pa::new(pfn * 4096), &mut page).unwrap_err())
        };
        // Descriptor i of page i for i < 2 (pages 0 and 1 are written).
        let d1 = descs + 24;
        assert!(matches!(
            read(0, &|b| b[descs + 8..descs + 12]
                .copy_from_slice(&5000u32.to_le_bytes())),
            PageError::BadDescriptor {
                pfn: 0,
                index: 0,
                size: 5000,
                ..
            }
        ));
        assert!(matches!(
            read(0, &|b| b[descs..descs + 8]
                .copy_from_slice(&u64::MAX.to_le_bytes())),
            PageError::BadDescriptor {
                pfn: 0,
                offset: u64::MAX,
                ..
            }
        ));
        assert!(matches!(
            read(0, &|b| b[descs + 8..descs + 12]
                .copy_from_slice(&0u32.to_le_bytes())),
            PageError::BadDescriptor { size: 0, .. }
        ));
        // An incomplete dump's empty descriptor.
        assert!(matches!(
            read(0, &|b| {
                b[424] |= 0x8;
                b[descs + 8..descs + 12].copy_from_slice(&0u32.to_le_bytes());
            }),
            PageError::Incomplete { pfn: 0 }
        ));
        let garble = |b: &mut Vec<u8>, d: usize| {
            let off = u64::from_le_bytes(b[d..d + 8].try_into().unwrap()) as usize;
            b[off..off + 8].fill(0x55);
        };
        assert!(matches!(
            read(0, &|b| garble(b, descs)),
            PageError::Decompress {
                pfn: 0,
                method: "zlib",
                ..
            }
        ));
        // Page 1 is stored raw: a short raw page is wrong.
        assert!(matches!(
            read(1, &|b| b[d1 + 8..d1 + 12]
                .copy_from_slice(&4000u32.to_le_bytes())),
            PageError::RawSize {
                pfn: 1,
                size: 4000,
                block: 4096
            }
        ));
        // Page 1 as a snappy page: its raw bytes are no snappy stream.
        assert!(matches!(
            read(1, &|b| b[d1 + 12..d1 + 16]
                .copy_from_slice(&4u32.to_le_bytes())),
            PageError::Decompress {
                pfn: 1,
                method: "snappy",
                ..
            }
        ));
        // Page 1 as an LZO page: 0x01 bytes are a literal run that never ends.
        assert!(matches!(
            read(1, &|b| b[d1 + 12..d1 + 16]
                .copy_from_slice(&2u32.to_le_bytes())),
            PageError::Decompress {
                pfn: 1,
                method: "lzo",
                ..
            }
        ));
        assert!(matches!(
            read(0, &|b| b[descs + 12..descs + 16]
                .copy_from_slice(&0x20u32.to_le_bytes())),
            PageError::Unsupported {
                pfn: 0,
                flags: 0x20
            }
        ));
        // A zlib page that inflates to less than a page.
        assert!(matches!(
            read(0, &|b| {
                let z = miniz_oxide::deflate::compress_to_vec_zlib(&[0u8; 100], 6);
                let off = u64::from_le_bytes(b[descs..descs + 8].try_into().unwrap()) as usize;
                b[off..off + z.len()].copy_from_slice(&z);
                b[descs + 8..descs + 12].copy_from_slice(&(z.len() as u32).to_le_bytes());
            }),
            PageError::DecompressedSize {
                pfn: 0,
                method: "zlib",
                got: 100,
                expected: 4096
            }
        ));
    }

    #[test]
    fn hostile_flattened_streams_are_errors() {
        let flat = testing::build(10);
        let good = testing::flatten(&flat, 4096);
        let patch = |at: usize, v: i64| {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&v.to_be_bytes());
            Kdump::parse(&b).map(|_| ()).unwrap_err()
        };
        assert!(matches!(
            patch(4096 + 8, i64::MAX),
            DumpError::KdumpRecordBeyondFile { at: 4096, .. }
        ));
        assert!(matches!(
            patch(4096 + 8, -5),
            DumpError::KdumpRecordNegative {
                at: 4096,
                size: -5,
                ..
            }
        ));
        assert!(matches!(
            patch(16, 2),
            DumpError::KdumpFlattenedHeader {
                kind: 2,
                version: 1
            }
        ));
        // A stale record far away only makes the flat file longer: nothing is sized by it.
        let mut far = good.clone();
        far[4096..4104].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
        assert!(Kdump::parse(&far).is_ok());
        // No end marker.
        let mut cut = good.clone();
        cut.truncate(good.len() - 16);
        assert!(matches!(
            Kdump::parse(&cut),
            Err(DumpError::TruncatedHeader {
                what: "flattened kdump record",
                ..
            })
        ));
        // Records that reassemble into something that is not a kdump file.
        let mut other = good.clone();
        let last = other.len() - 16 - 16 - 4096;
        assert_eq!(&other[last + 16..last + 24], KDUMP_SIGNATURE);
        other[last + 16] = b'X';
        assert!(matches!(
            Kdump::parse(&other),
            Err(DumpError::KdumpNoSignature { .. })
        ));
    }

    /// A tiny flattened stream whose headers claim 2^36 pages, with one record far away to make
    /// the reassembled length fit them, must not allocate the bitmaps.
    #[test]
    fn huge_claims_in_small_streams_allocate_nothing() {
        let flat = testing::build(10);
        let mut b = flat[..8192].to_vec();
        b[4096 + 96..4096 + 104].copy_from_slice(&MAX_PFNS.to_le_bytes());
        b[436..440].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut stream = testing::flatten(&b, 4096);
        // Replace the end marker with a one-byte record at 2^44, then end.
        let n = stream.len() - 16;
        stream.truncate(n);
        stream.extend_from_slice(&(1i64 << 44).to_be_bytes());
        stream.extend_from_slice(&1i64.to_be_bytes());
        stream.push(0);
        stream.extend_from_slice(&(-1i64).to_be_bytes());
        stream.extend_from_slice(&(-1i64).to_be_bytes());
        assert!(matches!(
            Kdump::parse(&stream),
            Err(DumpError::KdumpBitmapBeyondFile { file_len, .. }) if file_len < 100_000
        ));
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
