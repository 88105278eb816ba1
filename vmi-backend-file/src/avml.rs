//! AVML captures (Microsoft's acquisition tool): LiME framing, with blocks that are either
//! stored (LiME version 1, magic `EMiL`) or snappy-compressed (version 2, magic `AVML`).
//!
//! A block is the 32-byte LiME header (`magic` u32, `version` u32, `s_addr` u64, `e_addr` u64
//! inclusive, 8 reserved bytes) and then:
//! - version 1: the range's `e_addr - s_addr + 1` bytes, as in [`crate::lime`];
//! - version 2: a snappy *framed* stream (stream identifier `ff 06 00 00 sNaPpY`, then chunks
//!   of at most 64 KiB of data each, compressed (type 0) or stored (type 1), each with the
//!   masked CRC-32C of its data), followed by a u64 trailer: the length of that stream in
//!   bytes. `avml --compress` cuts ranges into blocks of 16 MiB and leaves out blocks that are
//!   all zeros, so a compressed capture has holes where the guest had 16 MiB of zeros; like
//!   every hole, a read of one is an error, never zeros.
//!
//! [`parse`] walks every block and every chunk header once (a few bytes per 64 KiB) and keeps
//! an index of the pieces sorted by physical address; nothing is decompressed until read.
//! A read decompresses the one chunk it needs into a small bounded cache of decompressed
//! chunks ([`CHUNK_CACHE`] of them, 64 KiB each). The cache is here, not only in the session's
//! page cache, because a chunk holds 16 pages: without it a sequential scan would decompress
//! each chunk sixteen times. Every chunk's CRC-32C is checked when it is decompressed.

use std::sync::Mutex;

use vmi_core::{MemoryError, MemoryRegion, Pa, PhysicalMemory};

use crate::elf::Reader;
use crate::error::{AvmlBlockError, DumpError, PageError};
use crate::lime::{BlockHeader, HEADER_SIZE, LIME_MAGIC, LIME_VERSION};

/// The magic of a compressed block ("AVML" as a little-endian u32).
pub const AVML_MAGIC: u32 = 0x4c4d_5641;
/// The version of a compressed block.
pub const AVML_VERSION: u32 = 2;
/// Largest data of one snappy chunk (the framing format's limit).
pub const MAX_CHUNK: usize = 65536;
/// Chunks indexed at most (2^24 chunks of 64 KiB are 1 TiB of memory).
pub const MAX_CHUNKS: usize = 1 << 24;
/// Decompressed chunks kept.
pub const CHUNK_CACHE: usize = 8;

const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_STORED: u8 = 0x01;
const CHUNK_STREAM_ID: u8 = 0xff;
const STREAM_ID: &[u8; 6] = b"sNaPpY";

/// Whether `bytes` start with an AVML (compressed) block header.
pub fn is_avml(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(&AVML_MAGIC.to_le_bytes()[..])
}

/// Where a piece's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceData {
    /// Stored in the file at this offset (a version 1 block).
    Stored {
        /// File offset of the piece's first byte.
        offset: u64,
    },
    /// One snappy chunk of a version 2 block.
    Chunk {
        /// File offset of the chunk's data (after its type, length and CRC).
        offset: u64,
        /// Bytes of chunk data in the file.
        len: u32,
        /// Whether the data is snappy-compressed (type 0) or stored (type 1).
        compressed: bool,
        /// The masked CRC-32C of the decompressed data.
        crc: u32,
    },
}

/// A physically contiguous piece of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// First physical address.
    pub pa: u64,
    /// Bytes of memory.
    pub len: u64,
    /// Index of the block it came from.
    pub block: usize,
    /// Where its bytes are.
    pub data: PieceData,
}

/// A parsed AVML (or mixed LiME/AVML) capture.
#[derive(Debug, Clone)]
pub struct Avml {
    /// Pieces sorted by physical address, not overlapping.
    pieces: Vec<Piece>,
    map: Vec<MemoryRegion>,
    /// Blocks in the file.
    pub blocks: usize,
    /// Of which compressed (version 2).
    pub compressed_blocks: usize,
    /// Snappy chunks indexed.
    pub chunks: usize,
}

/// Parses a capture: every block header, and every chunk header of compressed blocks.
///
/// ```
/// use vmi_backend_file::avml;
///
/// let capture = avml::testing::compressed(&[(0x1000, vec![7; 0x3000])]);
/// let parsed = avml::parse(&capture)?;
/// assert_eq!((parsed.blocks, parsed.compressed_blocks), (1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse(bytes: &[u8]) -> Result<Avml, DumpError> {
    let file_len = bytes.len() as u64;
    let mut pieces = Vec::new();
    let (mut blocks, mut compressed_blocks) = (0usize, 0usize);
    let mut chunks = 0usize;
    let mut offset = 0u64;
    while offset < file_len {
        let index = blocks;
        let h = BlockHeader::read(bytes, offset, index, "AVML block header")?;
        let (magic, version) = (h.magic, h.version);
        let (start, end_inclusive) = (h.start, h.end_inclusive);
        let block_err = |reason| DumpError::AvmlBlock {
            index,
            offset,
            reason,
        };
        match (magic, version) {
            (LIME_MAGIC, LIME_VERSION) | (AVML_MAGIC, AVML_VERSION) => {}
            (AVML_MAGIC, _) | (LIME_MAGIC, AVML_VERSION) => {
                return Err(block_err(AvmlBlockError::MagicVersion { magic, version }))
            }
            (LIME_MAGIC, _) => {
                return Err(DumpError::UnsupportedLimeVersion {
                    index,
                    offset,
                    version,
                })
            }
            _ => {
                return Err(DumpError::BadLimeMagic {
                    index,
                    offset,
                    found: magic,
                })
            }
        }
        h.check_range()?;
        // The full 2^64 range saturates; no file can back it, and the checks below fail it.
        let len = (end_inclusive - start).saturating_add(1);
        // offset + 32 <= file_len here.
        let data_offset = offset + HEADER_SIZE;
        if version == LIME_VERSION {
            let data_end = data_offset.saturating_add(len);
            if data_end > file_len {
                return Err(DumpError::SegmentBeyondFile {
                    index,
                    end: data_end,
                    file_len,
                });
            }
            pieces.push(Piece {
                pa: start,
                len,
                block: index,
                data: PieceData::Stored {
                    offset: data_offset,
                },
            });
            offset = data_end;
        } else {
            compressed_blocks += 1;
            let frames_end = walk_frames(
                bytes,
                data_offset,
                (start, len, index),
                &mut chunks,
                &mut pieces,
            )
            .map_err(block_err)?;
            let trailer = crate::elf::slice(bytes, frames_end, 8)
                .ok_or(block_err(AvmlBlockError::NoTrailer { file_len }))?;
            let announced = Reader(trailer).u64(0);
            // frames_end >= data_offset: the walk only moves forward.
            if announced != frames_end - data_offset {
                return Err(block_err(AvmlBlockError::FramesMisaligned {
                    frames_end,
                    expected: data_offset.saturating_add(announced),
                }));
            }
            offset = frames_end + 8;
        }
        blocks += 1;
    }
    pieces.sort_by_key(|p| p.pa);
    let mut map: Vec<MemoryRegion> = Vec::new();
    let mut prev: Option<(u64, usize)> = None;
    for p in &pieces {
        let end =
            p.pa.checked_add(p.len)
                .ok_or(DumpError::SegmentAddressOverflow {
                    index: p.block,
                    start: p.pa,
                    len: p.len,
                })?;
        // Sorted by start: a piece overlaps only if the previous one ends after its start.
        if let Some((prev_end, prev_block)) = prev {
            if prev_end > p.pa {
                return Err(DumpError::OverlappingSegments {
                    first: prev_block,
                    second: p.block,
                    at: p.pa,
                });
            }
        }
        prev = Some((end, p.block));
        match map.last_mut() {
            Some(r) if r.end_raw() == p.pa => r.len += p.len,
            _ => map.push(MemoryRegion {
                start: Pa::new(p.pa),
                len: p.len,
            }),
        }
    }
    Ok(Avml {
        pieces,
        map,
        blocks,
        compressed_blocks,
        chunks,
    })
}

/// Walks the snappy frames of block `block` whose data starts at `at` and must decompress to
/// `len` bytes of physical memory from `pa`, pushing one piece per data chunk and counting
/// chunks in `count`. Returns the file offset after the last chunk.
fn walk_frames(
    bytes: &[u8],
    mut at: u64,
    (pa, len, block): (u64, u64, usize),
    count: &mut usize,
    pieces: &mut Vec<Piece>,
) -> Result<u64, AvmlBlockError> {
    let mut done = 0u64;
    let mut seen_id = false;
    // Each pass consumes at least the 4-byte chunk header, so the walk ends by the file's end.
    while done < len {
        let header = crate::elf::slice(bytes, at, 4).ok_or(AvmlBlockError::BadChunk {
            at,
            kind: 0,
            len: 0,
        })?;
        let kind = header[0];
        let clen = u64::from(header[1]) | u64::from(header[2]) << 8 | u64::from(header[3]) << 16;
        let bad = AvmlBlockError::BadChunk {
            at,
            kind,
            len: clen,
        };
        let body_at = at + 4;
        let body = crate::elf::slice(bytes, body_at, clen).ok_or(bad)?;
        match kind {
            CHUNK_STREAM_ID => {
                if body != STREAM_ID {
                    return Err(bad);
                }
                seen_id = true;
            }
            CHUNK_COMPRESSED | CHUNK_STORED => {
                if !seen_id || clen < 4 {
                    return Err(bad);
                }
                let data = &body[4..];
                let n = if kind == CHUNK_COMPRESSED {
                    snap::raw::decompress_len(data).map_err(|_| bad)?
                } else {
                    data.len()
                };
                if n > MAX_CHUNK {
                    return Err(bad);
                }
                let n = n as u64;
                if done + n > len {
                    return Err(AvmlBlockError::SizeMismatch {
                        found: done + n,
                        expected: len,
                    });
                }
                *count += 1;
                if *count > MAX_CHUNKS {
                    return Err(AvmlBlockError::TooManyChunks { max: MAX_CHUNKS });
                }
                if n > 0 {
                    pieces.push(Piece {
                        // done + n <= len, and pa + len was not yet checked: saturate here,
                        // the overlap pass reports the overflow.
                        pa: pa.saturating_add(done),
                        len: n,
                        block,
                        data: PieceData::Chunk {
                            offset: body_at + 4,
                            len: (clen - 4) as u32,
                            compressed: kind == CHUNK_COMPRESSED,
                            crc: Reader(body).u32(0),
                        },
                    });
                }
                done += n;
            }
            // Padding and reserved skippable chunks.
            0x80..=0xfe => {}
            // Reserved unskippable chunks.
            _ => return Err(bad),
        }
        at = body_at + clen;
    }
    Ok(at)
}

impl Avml {
    /// Physical regions the capture holds.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.map
    }

    /// The pieces, sorted by physical address.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The index of the piece holding `pa`, if any.
    fn piece_at(&self, pa: u64) -> Option<usize> {
        let i = self.pieces.partition_point(|p| p.pa <= pa).checked_sub(1)?;
        let p = self.pieces.get(i)?;
        (pa - p.pa < p.len).then_some(i)
    }
}

/// Decompresses chunk `piece` of `bytes` into `out` (at least `piece.len` bytes), checking its
/// CRC.
fn decompress_chunk(bytes: &[u8], piece: &Piece, out: &mut [u8]) -> Result<(), PageError> {
    let PieceData::Chunk {
        offset,
        len,
        compressed,
        crc,
    } = piece.data
    else {
        return Ok(());
    };
    let pfn = piece.pa / 4096;
    let n = piece.len as usize;
    // parse() checked that the chunk lies in the file and that n <= MAX_CHUNK.
    let data = crate::elf::slice(bytes, offset, u64::from(len)).unwrap_or_default();
    let out = &mut out[..n];
    if compressed {
        let got = snap::raw::Decoder::new()
            .decompress(data, out)
            .map_err(|e| PageError::Decompress {
                pfn,
                method: "snappy",
                detail: e.to_string(),
            })?;
        if got != n {
            return Err(PageError::DecompressedSize {
                pfn,
                method: "snappy",
                got,
                expected: n,
            });
        }
    } else {
        if data.len() != n {
            return Err(PageError::DecompressedSize {
                pfn,
                method: "snappy",
                got: data.len(),
                expected: n,
            });
        }
        out.copy_from_slice(data);
    }
    let computed = masked_crc32c(out);
    if computed != crc {
        return Err(PageError::Checksum {
            pfn,
            found: crc,
            computed,
        });
    }
    Ok(())
}

/// CRC-32C (Castagnoli), masked as the snappy framing format stores it. Slicing by 8 (eight
/// 256-entry tables, built at compile time): a random 4 KiB read of a capture checks a whole
/// 64 KiB chunk, so the byte-at-a-time loop was a third of its cost.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    const TABLES: [[u32; 256]; 8] = {
        let mut t = [[0u32; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[0][i] = c;
            i += 1;
        }
        let mut j = 1;
        while j < 8 {
            let mut i = 0;
            while i < 256 {
                let prev = t[j - 1][i];
                t[j][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
                i += 1;
            }
            j += 1;
        }
        t
    };
    let mut crc = !0u32;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ crc;
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        crc = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][(hi & 0xff) as usize]
            ^ TABLES[2][((hi >> 8) & 0xff) as usize]
            ^ TABLES[1][((hi >> 16) & 0xff) as usize]
            ^ TABLES[0][(hi >> 24) as usize];
    }
    for &b in words.remainder() {
        crc = TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    let crc = !crc;
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// A few decompressed chunks, most recently used last.
struct ChunkCache {
    entries: Vec<(usize, Box<[u8]>)>,
}

/// Guest-physical memory of an AVML capture.
pub struct AvmlMemory<B> {
    bytes: B,
    avml: Avml,
    cache: Mutex<ChunkCache>,
}

impl<B: AsRef<[u8]>> AvmlMemory<B> {
    /// Memory over `bytes`, parsed as `avml`.
    pub fn new(bytes: B, avml: Avml) -> Self {
        Self {
            bytes,
            avml,
            cache: Mutex::new(ChunkCache {
                entries: Vec::with_capacity(CHUNK_CACHE),
            }),
        }
    }

    /// Copies `dst.len()` bytes of piece `i` from `skip` into `dst`.
    fn copy_piece(&self, i: usize, skip: usize, dst: &mut [u8]) -> Result<(), PageError> {
        let piece = &self.avml.pieces[i];
        let bytes = self.bytes.as_ref();
        match piece.data {
            PieceData::Stored { offset } => {
                // parse() checked offset + len <= file length.
                let from = crate::elf::slice(bytes, offset + skip as u64, dst.len() as u64)
                    .unwrap_or_default();
                dst.copy_from_slice(from);
            }
            PieceData::Chunk { .. } => {
                let lookup = |cache: &mut ChunkCache, dst: &mut [u8]| {
                    let pos = cache.entries.iter().position(|(k, _)| *k == i)?;
                    let entry = cache.entries.remove(pos);
                    dst.copy_from_slice(&entry.1[skip..skip + dst.len()]);
                    cache.entries.push(entry);
                    Some(())
                };
                {
                    // A poisoned lock only means another reader panicked mid-copy; the
                    // entries are whole buffers either way.
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    if lookup(&mut cache, dst).is_some() {
                        return Ok(());
                    }
                }
                // Decompress outside the lock, so readers of other chunks do not wait.
                let mut buf = vec![0u8; piece.len as usize].into_boxed_slice();
                decompress_chunk(bytes, piece, &mut buf)?;
                dst.copy_from_slice(&buf[skip..skip + dst.len()]);
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if !cache.entries.iter().any(|(k, _)| *k == i) {
                    if cache.entries.len() >= CHUNK_CACHE {
                        cache.entries.remove(0);
                    }
                    cache.entries.push((i, buf));
                }
            }
        }
        Ok(())
    }
}

impl<B: AsRef<[u8]> + Send + Sync> PhysicalMemory for AvmlMemory<B> {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let out = || MemoryError::OutOfRange { pa, len };
        let end = pa.raw().checked_add(len).ok_or_else(out)?;
        let mut at = pa.raw();
        while at < end {
            let i = self.avml.piece_at(at).ok_or_else(out)?;
            let p = &self.avml.pieces[i];
            let skip = at - p.pa;
            let n = (p.len - skip).min(end - at);
            let dst = (at - pa.raw()) as usize;
            self.copy_piece(i, skip as usize, &mut buf[dst..dst + n as usize])
                .map_err(|e| MemoryError::Io {
                    pa: Pa::new(at),
                    source: std::io::Error::other(e),
                })?;
            at += n;
        }
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        self.avml.memory_map()
    }
}

/// Test support: AVML captures built in memory, the way `avml --compress` writes them
/// (unit tests, the fuzz target's seeds). Real captures written by avml itself are in the
/// real-guest tests.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A compressed capture of `ranges` (physical start, bytes): one version 2 block per
    /// range, its data in snappy chunks of 64 KiB (the last chunk of each block stored
    /// uncompressed, to cover both chunk types).
    pub fn compressed(ranges: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (start, data) in ranges {
            block_header(
                &mut out,
                AVML_MAGIC,
                AVML_VERSION,
                *start,
                data.len() as u64,
            );
            let frames_at = out.len();
            out.extend_from_slice(&[CHUNK_STREAM_ID, 6, 0, 0]);
            out.extend_from_slice(STREAM_ID);
            let pieces: Vec<&[u8]> = data.chunks(MAX_CHUNK).collect();
            for (i, piece) in pieces.iter().enumerate() {
                let (kind, body) = if i + 1 == pieces.len() && pieces.len() > 1 {
                    (CHUNK_STORED, piece.to_vec())
                } else {
                    (
                        CHUNK_COMPRESSED,
                        snap::raw::Encoder::new()
                            .compress_vec(piece)
                            .unwrap_or_default(),
                    )
                };
                let clen = (body.len() + 4) as u32;
                out.push(kind);
                out.extend_from_slice(&clen.to_le_bytes()[..3]);
                out.extend_from_slice(&masked_crc32c(piece).to_le_bytes());
                out.extend_from_slice(&body);
            }
            let size = (out.len() - frames_at) as u64;
            out.extend_from_slice(&size.to_le_bytes());
        }
        out
    }

    /// A version 1 (stored) block.
    pub fn stored(out: &mut Vec<u8>, start: u64, data: &[u8]) {
        block_header(out, LIME_MAGIC, LIME_VERSION, start, data.len() as u64);
        out.extend_from_slice(data);
    }

    fn block_header(out: &mut Vec<u8>, magic: u32, version: u32, start: u64, len: u64) {
        out.extend_from_slice(&magic.to_le_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&start.wrapping_add(len - 1).to_le_bytes());
        out.extend_from_slice(&[0; 8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        // Compressible but not constant: runs of a byte derived from the offset.
        (0..len)
            .map(|i| ((i as u64 / 64) ^ seed).wrapping_mul(0x9e37) as u8)
            .collect()
    }

    fn memory(bytes: Vec<u8>) -> Result<AvmlMemory<Vec<u8>>, DumpError> {
        let a = parse(&bytes)?;
        Ok(AvmlMemory::new(bytes, a))
    }

    fn io_reason(e: MemoryError) -> PageError {
        match e {
            MemoryError::Io { source, .. } => *source
                .into_inner()
                .unwrap()
                .downcast::<PageError>()
                .unwrap(),
            e => panic!("not an I/O error: {e}"),
        }
    }

    /// The bit-at-a-time definition, to check the sliced tables against.
    fn crc32c_reference(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        let crc = !crc;
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    }

    #[test]
    fn crc32c_sliced_equals_reference() {
        let data = pattern(9, 1000);
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 999, 1000] {
            assert_eq!(
                masked_crc32c(&data[..len]),
                crc32c_reference(&data[..len]),
                "{len}"
            );
        }
    }

    #[test]
    fn crc32c_known_values() {
        // CRC-32C of "123456789" is 0xe3069283 (RFC 3720); masked as snappy stores it.
        let crc = 0xe306_9283u32;
        assert_eq!(
            masked_crc32c(b"123456789"),
            crc.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn compressed_and_stored_blocks_read_back() {
        let a = pattern(1, 200_000);
        let b = pattern(2, 0x3000);
        let mut file = compressed_file(&a, &b);
        // A stored (LiME) block after the compressed ones, physically right after `b`.
        let c = pattern(3, 0x2000);
        testing::stored(&mut file, 0x10_0000 + 0x3000, &c);
        let mem = memory(file).unwrap();
        assert_eq!((mem.avml.blocks, mem.avml.compressed_blocks), (3, 2));
        // 200 000 bytes are 4 chunks; 0x3000 one.
        assert_eq!(mem.avml.chunks, 5);
        let map: Vec<(u64, u64)> = mem
            .memory_map()
            .iter()
            .map(|r| (r.start.raw(), r.len))
            .collect();
        assert_eq!(map, [(0x1000, 200_000), (0x10_0000, 0x5000)]);
        let mut got = vec![0u8; 200_000];
        mem.read(Pa::new(0x1000), &mut got).unwrap();
        assert!(got == a);
        // Across a chunk boundary, and across a compressed and a stored block.
        let mut x = vec![0u8; 0x100];
        mem.read(Pa::new(0x1000 + 65536 - 0x80), &mut x).unwrap();
        assert_eq!(x, a[65536 - 0x80..65536 + 0x80]);
        mem.read(Pa::new(0x10_0000 + 0x3000 - 0x80), &mut x)
            .unwrap();
        assert_eq!(x[..0x80], b[0x3000 - 0x80..]);
        assert_eq!(x[0x80..], c[..0x80]);
        // Holes: between the blocks, and past the end.
        assert!(matches!(
            mem.read(Pa::new(0x1000 + 200_000 - 4), &mut x[..8]),
            Err(MemoryError::OutOfRange { .. })
        ));
        assert!(mem.read(Pa::new(0x10_5000), &mut x[..1]).is_err());
        assert!(mem.read(Pa::new(0), &mut x[..1]).is_err());
        // The cache stays bounded.
        for i in 0..4 {
            mem.read(Pa::new(0x1000 + i * 65536), &mut x).unwrap();
        }
        assert!(mem.cache.lock().unwrap().entries.len() <= CHUNK_CACHE);
    }

    fn compressed_file(a: &[u8], b: &[u8]) -> Vec<u8> {
        testing::compressed(&[(0x1000, a.to_vec()), (0x10_0000, b.to_vec())])
    }

    #[test]
    fn hostile_blocks_are_precise_errors() {
        let good = testing::compressed(&[(0x1000, pattern(1, 70_000)), (0x20_0000, vec![1; 4096])]);
        let first_trailer = {
            let p = parse(&good).unwrap();
            let PieceData::Chunk { offset, len, .. } = p.pieces[1].data else {
                panic!()
            };
            (offset + u64::from(len)) as usize
        };
        let err = |patch: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            patch(&mut b);
            parse(&b).unwrap_err()
        };
        // The trailer disagrees with the frames.
        assert!(matches!(
            err(&|b| b[first_trailer] ^= 1),
            DumpError::AvmlBlock {
                index: 0,
                offset: 0,
                reason: AvmlBlockError::FramesMisaligned { .. }
            }
        ));
        // AVML magic with version 1.
        assert!(matches!(
            err(&|b| b[4] = 1),
            DumpError::AvmlBlock {
                reason: AvmlBlockError::MagicVersion { version: 1, .. },
                ..
            }
        ));
        // A range claiming more than its chunks hold, and less.
        assert!(matches!(
            err(&|b| b[16..24].copy_from_slice(&(0x1000u64 + 80_000).to_le_bytes())),
            DumpError::AvmlBlock {
                reason: AvmlBlockError::BadChunk { .. } | AvmlBlockError::FramesMisaligned { .. },
                ..
            }
        ));
        assert!(matches!(
            err(&|b| b[16..24].copy_from_slice(&(0x1000u64 + 60_000).to_le_bytes())),
            DumpError::AvmlBlock {
                reason: AvmlBlockError::SizeMismatch {
                    expected: 60_001,
                    ..
                },
                ..
            }
        ));
        // A chunk length running past the file.
        assert!(matches!(
            err(&|b| b[32 + 10 + 1..32 + 10 + 4].copy_from_slice(&[0xff, 0xff, 0xff])),
            DumpError::AvmlBlock {
                reason: AvmlBlockError::BadChunk { .. },
                ..
            }
        ));
        // A reserved unskippable chunk type, and a missing stream identifier.
        assert!(matches!(
            err(&|b| b[32 + 10] = 0x05),
            DumpError::AvmlBlock {
                reason: AvmlBlockError::BadChunk { kind: 0x05, .. },
                ..
            }
        ));
        assert!(matches!(
            err(&|b| b[32 + 4..32 + 10].copy_from_slice(b"SnApPy")),
            DumpError::AvmlBlock {
                reason: AvmlBlockError::BadChunk { kind: 0xff, .. },
                ..
            }
        ));
        // Truncated inside the second block, and inside its trailer.
        assert!(parse(&good[..first_trailer + 8 + 20]).is_err());
        assert!(matches!(
            parse(&good[..good.len() - 3]),
            Err(DumpError::AvmlBlock {
                index: 1,
                reason: AvmlBlockError::NoTrailer { .. },
                ..
            })
        ));
        // Two blocks over the same memory.
        let twice = testing::compressed(&[(0x1000, vec![1; 8192]), (0x2000, vec![2; 4096])]);
        assert!(matches!(
            parse(&twice),
            Err(DumpError::OverlappingSegments {
                first: 0,
                second: 1,
                at: 0x2000
            })
        ));
        // Memory up to the last page below 2^64 is fine; a block whose end is 2^64 cannot be
        // a region (its end does not fit).
        let high = testing::compressed(&[(u64::MAX - 0x1fff, vec![1; 4096])]);
        assert!(parse(&high).is_ok());
        let top = testing::compressed(&[(u64::MAX - 0xfff, vec![1; 4096])]);
        assert!(matches!(
            parse(&top),
            Err(DumpError::SegmentAddressOverflow { index: 0, .. })
        ));
        // Other magics.
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(
            parse(&b),
            Err(DumpError::BadLimeMagic { index: 0, .. })
        ));
    }

    #[test]
    fn corrupt_chunks_are_read_errors() {
        let good = testing::compressed(&[(0, pattern(4, 70_000))]);
        let p = parse(&good).unwrap();
        let PieceData::Chunk { offset, .. } = p.pieces[0].data else {
            panic!()
        };
        let offset = offset as usize;
        // A flipped CRC byte: the data decompresses, the checksum says no.
        let mut b = good.clone();
        b[offset - 4] ^= 0xff;
        let mem = memory(b).unwrap();
        let mut x = [0u8; 16];
        assert!(matches!(
            io_reason(mem.read(Pa::new(0x100), &mut x).unwrap_err()),
            PageError::Checksum { pfn: 0, .. }
        ));
        // The stored last chunk still reads.
        mem.read(Pa::new(69_000), &mut x).unwrap();
        // Garbage after the varint length: snappy fails, or the CRC does.
        let mut b = good.clone();
        for x in &mut b[offset + 3..offset + 40] {
            *x = 0xfe;
        }
        let mem = memory(b).unwrap();
        assert!(matches!(
            io_reason(mem.read(Pa::new(0), &mut x).unwrap_err()),
            PageError::Decompress {
                method: "snappy",
                ..
            } | PageError::Checksum { .. }
        ));
    }
}
