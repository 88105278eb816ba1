//! The BTF header and the sections it delimits.

use super::error::BtfError;
use super::types::u32_at;

/// `BTF_MAGIC`, read little-endian.
pub const MAGIC: u16 = 0xeb9f;
/// The only BTF version.
pub const VERSION: u8 = 1;
/// Length of the fixed header (`struct btf_header`); later versions may append fields.
pub const HEADER_LEN: u32 = 24;

/// `struct btf_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `BTF_MAGIC`.
    pub magic: u16,
    /// Format version (1).
    pub version: u8,
    /// Flags (none defined).
    pub flags: u8,
    /// Header length; the sections' offsets count from its end.
    pub hdr_len: u32,
    /// Type section offset after the header.
    pub type_off: u32,
    /// Type section length.
    pub type_len: u32,
    /// String section offset after the header.
    pub str_off: u32,
    /// String section length.
    pub str_len: u32,
}

/// The header and the two sections, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sections<'a> {
    pub header: Header,
    pub types: &'a [u8],
    /// Offset of the type section from the start of the blob.
    pub types_at: u64,
    pub strings: &'a [u8],
    /// Offset of the string section from the start of the blob.
    pub strings_at: u64,
}

/// Reads the header and cuts out the sections, checking every bound. Bytes after the string
/// section (padding up to `__stop_BTF`) are ignored.
pub(crate) fn parse(blob: &[u8]) -> Result<Sections<'_>, BtfError> {
    let fixed = HEADER_LEN as usize;
    let Some(head) = blob.get(..fixed) else {
        if let Some(m) = blob.get(..2) {
            // Report the magic first: a short blob that is not BTF at all is "not BTF".
            let found = u16::from_le_bytes([m[0], m[1]]);
            if found != MAGIC {
                return Err(BtfError::BadMagic { found });
            }
        }
        return Err(BtfError::Truncated {
            section: "header",
            offset: 0,
            needed: u64::from(HEADER_LEN),
        });
    };
    let magic = u16::from_le_bytes([head[0], head[1]]);
    if magic != MAGIC {
        return Err(BtfError::BadMagic { found: magic });
    }
    let header = Header {
        magic,
        version: head[2],
        flags: head[3],
        hdr_len: u32_at(head, 4),
        type_off: u32_at(head, 8),
        type_len: u32_at(head, 12),
        str_off: u32_at(head, 16),
        str_len: u32_at(head, 20),
    };
    if header.version != VERSION {
        return Err(BtfError::UnsupportedVersion {
            found: header.version,
        });
    }
    if header.hdr_len < HEADER_LEN {
        return Err(BtfError::BadHeaderLength {
            hdr_len: header.hdr_len,
            minimum: HEADER_LEN,
        });
    }
    let hdr_len = u64::from(header.hdr_len);
    if hdr_len > blob.len() as u64 {
        return Err(BtfError::Truncated {
            section: "header",
            offset: 0,
            needed: hdr_len,
        });
    }
    let (types, types_at) = section(
        blob,
        "type section",
        hdr_len,
        header.type_off,
        header.type_len,
    )?;
    let (strings, strings_at) = section(
        blob,
        "string section",
        hdr_len,
        header.str_off,
        header.str_len,
    )?;
    Ok(Sections {
        header,
        types,
        types_at,
        strings,
        strings_at,
    })
}

/// The bytes `[hdr_len + off, hdr_len + off + len)` of the blob, and where they start.
fn section<'a>(
    blob: &'a [u8],
    name: &'static str,
    hdr_len: u64,
    off: u32,
    len: u32,
) -> Result<(&'a [u8], u64), BtfError> {
    // hdr_len and off are at most 2^32 each, so the u64 sums cannot overflow.
    let start = hdr_len + u64::from(off);
    let end = start + u64::from(len);
    let truncated = BtfError::Truncated {
        section: name,
        offset: start,
        needed: u64::from(len),
    };
    let (Ok(s), Ok(e)) = (usize::try_from(start), usize::try_from(end)) else {
        return Err(truncated);
    };
    blob.get(s..e).map(|b| (b, start)).ok_or(truncated)
}
