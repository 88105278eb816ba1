//! LiME images: a sequence of ranges, each a 32-byte header followed by its bytes.
//!
//! Header (little-endian): `magic` u32 = 0x4C694D45 (the bytes "EMiL"), `version` u32 = 1,
//! `s_addr` u64 (first physical address), `e_addr` u64 (last physical address, inclusive),
//! 8 reserved bytes. The range's `e_addr - s_addr + 1` bytes follow; the next header starts
//! right after them, and the file ends exactly after the last range. LiME itself and AVML
//! write this format.
//!
//! [`write()`] and [`write_range`] produce it (tests convert real ELF dumps into LiME this way).

use std::io::{self, Write};

use vmi_core::{Pa, PhysicalMemory};

use crate::elf::{Reader, MAX_PROGRAM_HEADERS};
use crate::error::DumpError;
use crate::mapped::Segment;

/// The LiME magic, as a little-endian u32.
pub const LIME_MAGIC: u32 = 0x4C69_4D45;
/// The only LiME version.
pub const LIME_VERSION: u32 = 1;
/// Size of a range header.
pub const HEADER_SIZE: u64 = 32;
/// Most ranges accepted (the same bound as ELF program headers).
pub const MAX_RANGES: u64 = MAX_PROGRAM_HEADERS;

/// One range of a LiME image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimeRange {
    /// Index in the file.
    pub index: usize,
    /// File offset of the header.
    pub header_offset: u64,
    /// First physical address (`s_addr`).
    pub start: u64,
    /// Last physical address (`e_addr`, inclusive).
    pub end_inclusive: u64,
    /// File offset of the first byte.
    pub data_offset: u64,
}

impl LimeRange {
    /// Length in bytes (never 0). Saturates for the impossible full 2^64 range, which no file
    /// can back anyway.
    pub fn len(&self) -> u64 {
        (self.end_inclusive - self.start).saturating_add(1)
    }

    /// Always false: a LiME range holds at least one byte. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The range as a physical segment.
    pub fn segment(&self) -> Segment {
        Segment {
            index: self.index,
            start: self.start,
            len: self.len(),
            file_offset: self.data_offset,
        }
    }
}

/// Whether `bytes` start with a LiME header magic.
pub fn is_lime(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(&LIME_MAGIC.to_le_bytes()[..])
}

/// Parses and validates the range list of a LiME image.
///
/// ```
/// use vmi_backend_file::lime;
/// use vmi_core::Pa;
///
/// let mut image = Vec::new();
/// lime::write_range(&mut image, Pa::new(0x1000), &[7; 16])?;
/// let ranges = lime::parse(&image)?;
/// assert_eq!((ranges[0].start, ranges[0].len()), (0x1000, 16));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse(bytes: &[u8]) -> Result<Vec<LimeRange>, DumpError> {
    let file_len = bytes.len() as u64;
    let mut ranges = Vec::new();
    let mut offset = 0u64;
    while offset < file_len {
        let index = ranges.len();
        let h = BlockHeader::read(bytes, offset, index, "LiME header")?;
        if h.magic != LIME_MAGIC {
            return Err(DumpError::BadLimeMagic {
                index,
                offset,
                found: h.magic,
            });
        }
        if h.version != LIME_VERSION {
            return Err(DumpError::UnsupportedLimeVersion {
                index,
                offset,
                version: h.version,
            });
        }
        h.check_range()?;
        let (start, end_inclusive) = (h.start, h.end_inclusive);
        // offset + 32 <= file_len here, so no overflow.
        let data_offset = offset + HEADER_SIZE;
        let range = LimeRange {
            index,
            header_offset: offset,
            start,
            end_inclusive,
            data_offset,
        };
        let data_end = data_offset.saturating_add(range.len());
        if data_end > file_len {
            return Err(DumpError::SegmentBeyondFile {
                index,
                end: data_end,
                file_len,
            });
        }
        ranges.push(range);
        offset = data_end;
    }
    Ok(ranges)
}

/// The 32-byte header of a LiME block (and of an AVML block, which shares its layout), read
/// but not yet judged: the caller checks magic and version, which differ between the two.
pub(crate) struct BlockHeader {
    pub(crate) magic: u32,
    pub(crate) version: u32,
    pub(crate) start: u64,
    pub(crate) end_inclusive: u64,
    index: usize,
}

impl BlockHeader {
    /// The header of block `index` at `offset`: refused past [`MAX_RANGES`] blocks or when the
    /// file ends inside it (`what` names it in the error).
    pub(crate) fn read(
        bytes: &[u8],
        offset: u64,
        index: usize,
        what: &'static str,
    ) -> Result<Self, DumpError> {
        if index as u64 >= MAX_RANGES {
            return Err(DumpError::TooManySegments {
                count: index as u64 + 1,
                max: MAX_RANGES,
            });
        }
        let header =
            crate::elf::slice(bytes, offset, HEADER_SIZE).ok_or(DumpError::TruncatedHeader {
                what,
                offset,
                needed: HEADER_SIZE,
                file_len: bytes.len() as u64,
            })?;
        let r = Reader(header);
        Ok(Self {
            magic: r.u32(0),
            version: r.u32(4),
            start: r.u64(8),
            end_inclusive: r.u64(16),
            index,
        })
    }

    /// Refuses a range that ends before it starts.
    pub(crate) fn check_range(&self) -> Result<(), DumpError> {
        if self.end_inclusive < self.start {
            return Err(DumpError::LimeRangeInverted {
                index: self.index,
                start: self.start,
                end: self.end_inclusive,
            });
        }
        Ok(())
    }
}

/// Writes one range: a header, then `data`. Writes nothing for empty `data` (LiME cannot
/// express an empty range). Returns the bytes written.
pub fn write_range<W: Write + ?Sized>(out: &mut W, start: Pa, data: &[u8]) -> io::Result<u64> {
    if data.is_empty() {
        return Ok(0);
    }
    let last = start
        .raw()
        .checked_add(data.len() as u64 - 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range wraps around"))?;
    out.write_all(&header(start.raw(), last))?;
    out.write_all(data)?;
    Ok(HEADER_SIZE + data.len() as u64)
}

fn header(start: u64, last: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..4].copy_from_slice(&LIME_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&LIME_VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&start.to_le_bytes());
    h[16..24].copy_from_slice(&last.to_le_bytes());
    h
}

/// Writes every region of `mem`'s memory map as one LiME range, reading it in chunks of 1 MiB.
/// Returns the bytes written. This converts any dump (or live target) into a LiME image.
///
/// ```
/// use vmi_backend_file::{lime, Dump, DumpFormat};
/// use vmi_core::{memory::BufferMemory, Pa, PhysicalMemory};
///
/// let mem = BufferMemory::new(Pa::new(0x10_0000), vec![0x5a; 8192]);
/// let mut image = Vec::new();
/// lime::write(&mut image, &mem)?;
/// let dump = Dump::from_bytes(image)?;
/// assert_eq!(dump.format(), DumpFormat::Lime);
/// let mut b = [0u8; 4];
/// dump.memory().read(Pa::new(0x10_1ffc), &mut b)?;
/// assert_eq!(b, [0x5a; 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write<W: Write + ?Sized>(out: &mut W, mem: &dyn PhysicalMemory) -> io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let mut written = 0u64;
    let mut buf = Vec::new();
    for region in mem.memory_map() {
        if region.len == 0 {
            continue;
        }
        let last = region
            .start
            .raw()
            .checked_add(region.len - 1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region wraps around"))?;
        out.write_all(&header(region.start.raw(), last))?;
        written += HEADER_SIZE;
        let mut done = 0u64;
        while done < region.len {
            let n = (region.len - done).min(CHUNK);
            buf.resize(n as usize, 0);
            let pa = region.start.raw() + done;
            mem.read(Pa::new(pa), &mut buf)
                .map_err(|e| io::Error::other(format!("reading physical {pa:#x}: {e}")))?;
            out.write_all(&buf)?;
            done += n;
        }
        written += region.len;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(ranges: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (start, data) in ranges {
            write_range(&mut v, Pa::new(*start), data).unwrap();
        }
        v
    }

    #[test]
    fn round_trip() {
        let img = image(&[(0, vec![1; 0x1000]), (0x10_0000, vec![2; 0x20])]);
        let r = parse(&img).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].start, r[0].end_inclusive, r[0].data_offset),
            (0, 0xfff, 32)
        );
        assert_eq!(
            (r[1].start, r[1].len(), r[1].header_offset),
            (0x10_0000, 0x20, 0x1020)
        );
        assert!(parse(&[]).unwrap().is_empty());
        assert_eq!(write_range(&mut Vec::new(), Pa::new(0), &[]).unwrap(), 0);
        assert!(write_range(&mut Vec::new(), Pa::new(u64::MAX), &[0; 2]).is_err());
    }

    #[test]
    fn malformations() {
        let good = image(&[(0, vec![1; 0x100]), (0x1000, vec![2; 0x100])]);
        // Truncated inside the second header and inside the second range's data.
        match parse(&good[..0x120 + 10]).unwrap_err() {
            DumpError::TruncatedHeader {
                what,
                offset,
                needed,
                ..
            } => assert_eq!((what, offset, needed), ("LiME header", 0x120, 32)),
            e => panic!("{e}"),
        }
        assert!(matches!(
            parse(&good[..good.len() - 1]),
            Err(DumpError::SegmentBeyondFile { index: 1, .. })
        ));
        let mut b = good.clone();
        b[0x120] = b'X';
        assert!(matches!(
            parse(&b),
            Err(DumpError::BadLimeMagic {
                index: 1,
                offset: 0x120,
                ..
            })
        ));
        let mut b = good.clone();
        b[4] = 2;
        assert!(matches!(
            parse(&b),
            Err(DumpError::UnsupportedLimeVersion {
                index: 0,
                offset: 0,
                version: 2
            })
        ));
        let mut b = good.clone();
        b[8..16].copy_from_slice(&0x200u64.to_le_bytes());
        assert!(matches!(
            parse(&b),
            Err(DumpError::LimeRangeInverted {
                index: 0,
                start: 0x200,
                end: 0xff
            })
        ));
        // A range covering the whole address space cannot be backed.
        let mut b = good.clone();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&b),
            Err(DumpError::SegmentBeyondFile {
                index: 0,
                end: u64::MAX,
                ..
            })
        ));
    }
}
