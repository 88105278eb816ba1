//! A zero-copy, no-panic reader of PE images as the loader maps them (RVA = offset into the
//! image): DOS and NT headers, sections, data directories, the export directory (DLL name and
//! named exports) and the debug directory's CodeView (RSDS) record, which names the PDB that
//! identifies a build.
//!
//! A guest's kernel image is tens of MiB, so callers read the header page and then the few
//! ranges they need; each parser takes the bytes of one range and the RVA they start at
//! ([`ImageSlice`]). Every offset and length comes from the guest and is checked.

use thiserror::Error;

/// What was wrong with a PE image.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeError {
    /// No `MZ` at the start.
    #[error("no MZ signature")]
    NoDosSignature,
    /// `e_lfanew` points outside the bytes given or beyond the sane bound.
    #[error("e_lfanew {0:#x} is out of range")]
    BadLfanew(u32),
    /// No `PE\0\0` at `e_lfanew`.
    #[error("no PE signature at {0:#x}")]
    NoPeSignature(u32),
    /// The optional header is neither PE32 nor PE32+.
    #[error("optional header magic {0:#x} is neither PE32 (0x10b) nor PE32+ (0x20b)")]
    BadOptionalMagic(u16),
    /// A header or table runs past the bytes given.
    #[error("{what} at {offset:#x} (+{len:#x}) runs past the data")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts (an offset or RVA).
        offset: u64,
        /// How many bytes it needs.
        len: u64,
    },
    /// The image has no such directory.
    #[error("the image has no {0} directory")]
    NoDirectory(&'static str),
}

/// Data directory indices used here.
pub mod dir {
    /// The export directory.
    pub const EXPORT: usize = 0;
    /// The debug directory.
    pub const DEBUG: usize = 6;
}

/// The furthest `e_lfanew` accepted (memflow and MemProcFS use the same bound).
pub const MAX_LFANEW: u32 = 0x800;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

/// An RVA range and the directory entry naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDirectory {
    /// Where the directory starts.
    pub rva: u32,
    /// Its size in bytes.
    pub size: u32,
}

/// A section header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    /// The name, up to 8 bytes, NULs trimmed.
    pub name: &'a [u8],
    /// Size in memory.
    pub virtual_size: u32,
    /// RVA in memory.
    pub rva: u32,
    /// Characteristics (`IMAGE_SCN_*`).
    pub characteristics: u32,
}

/// The headers of a PE image: what the first page of a mapped image holds.
#[derive(Debug, Clone, Copy)]
pub struct PeHeaders<'a> {
    data: &'a [u8],
    nt: usize,
    pe32_plus: bool,
}

/// Size of the COFF file header after `PE\0\0`.
const COFF_LEN: usize = 20;

impl<'a> PeHeaders<'a> {
    /// Parses the headers at the start of `data` (the image's first bytes, a page is enough).
    pub fn parse(data: &'a [u8]) -> Result<Self, PeError> {
        if data.get(..2) != Some(b"MZ") {
            return Err(PeError::NoDosSignature);
        }
        let lfanew = u32_at(data, 0x3C).ok_or(PeError::Truncated {
            what: "DOS header",
            offset: 0,
            len: 0x40,
        })?;
        if !(0x40..=MAX_LFANEW).contains(&lfanew) {
            return Err(PeError::BadLfanew(lfanew));
        }
        let nt = lfanew as usize;
        if data.get(nt..nt + 4) != Some(b"PE\0\0") {
            return Err(PeError::NoPeSignature(lfanew));
        }
        let opt = nt + 4 + COFF_LEN;
        let magic = u16_at(data, opt).ok_or(PeError::Truncated {
            what: "optional header",
            offset: opt as u64,
            len: 2,
        })?;
        let pe32_plus = match magic {
            0x20B => true,
            0x10B => false,
            m => return Err(PeError::BadOptionalMagic(m)),
        };
        let headers = Self {
            data,
            nt,
            pe32_plus,
        };
        // The fixed part of the optional header must be there; directories are checked when read.
        let fixed = if pe32_plus { 112 } else { 96 };
        if data.len() < opt + fixed {
            return Err(PeError::Truncated {
                what: "optional header",
                offset: opt as u64,
                len: fixed as u64,
            });
        }
        Ok(headers)
    }

    fn coff(&self, off: usize) -> Option<u16> {
        u16_at(self.data, self.nt + 4 + off)
    }

    fn optional(&self) -> usize {
        self.nt + 4 + COFF_LEN
    }

    /// `e_lfanew`: where the NT headers start.
    pub fn nt_offset(&self) -> u32 {
        self.nt as u32
    }

    /// The COFF machine (0x8664 for x86-64, 0x14c for i386).
    pub fn machine(&self) -> u16 {
        self.coff(0).unwrap_or(0)
    }

    /// Whether the optional header is PE32+ (64-bit).
    pub fn is_pe32_plus(&self) -> bool {
        self.pe32_plus
    }

    /// The COFF time stamp.
    pub fn time_date_stamp(&self) -> u32 {
        u32_at(self.data, self.nt + 8).unwrap_or(0)
    }

    /// Size of the image in memory.
    pub fn size_of_image(&self) -> u32 {
        u32_at(self.data, self.optional() + 56).unwrap_or(0)
    }

    /// The image base the linker chose.
    pub fn image_base(&self) -> u64 {
        if self.pe32_plus {
            u64_at(self.data, self.optional() + 24).unwrap_or(0)
        } else {
            u32_at(self.data, self.optional() + 28).map_or(0, u64::from)
        }
    }

    /// Major and minor OS version the image asks for.
    pub fn os_version(&self) -> (u16, u16) {
        let o = self.optional() + 40;
        (
            u16_at(self.data, o).unwrap_or(0),
            u16_at(self.data, o + 2).unwrap_or(0),
        )
    }

    fn directory_table(&self) -> (usize, u32) {
        let (count_at, table) = if self.pe32_plus {
            (self.optional() + 108, self.optional() + 112)
        } else {
            (self.optional() + 92, self.optional() + 96)
        };
        (table, u32_at(self.data, count_at).unwrap_or(0).min(16))
    }

    /// Data directory `index` (see [`dir`]), if the image has a non-empty one.
    pub fn data_directory(&self, index: usize) -> Option<DataDirectory> {
        let (table, count) = self.directory_table();
        if index >= count as usize {
            return None;
        }
        let at = table + index * 8;
        let rva = u32_at(self.data, at)?;
        let size = u32_at(self.data, at + 4)?;
        (rva != 0 && size != 0).then_some(DataDirectory { rva, size })
    }

    /// The section headers (as many as the data given holds, at most the COFF count).
    pub fn sections(&self) -> impl Iterator<Item = Section<'a>> + 'a {
        let count = self.coff(2).unwrap_or(0) as usize;
        let opt_size = self.coff(16).unwrap_or(0) as usize;
        let first = self.optional() + opt_size;
        let data = self.data;
        (0..count).map_while(move |i| {
            let at = first.checked_add(i.checked_mul(40)?)?;
            let h = data.get(at..at.checked_add(40)?)?;
            let raw_name = h.get(..8)?;
            let len = raw_name.iter().position(|&b| b == 0).unwrap_or(8);
            Some(Section {
                name: raw_name.get(..len)?,
                virtual_size: u32_at(h, 8)?,
                rva: u32_at(h, 12)?,
                characteristics: u32_at(h, 36)?,
            })
        })
    }

    /// The section called `name`, if any.
    pub fn section(&self, name: &[u8]) -> Option<Section<'a>> {
        self.sections().find(|s| s.name == name)
    }
}

/// Bytes of a mapped image starting at `rva`.
#[derive(Debug, Clone, Copy)]
pub struct ImageSlice<'a> {
    /// The RVA of `bytes[0]`.
    pub rva: u32,
    /// The bytes.
    pub bytes: &'a [u8],
}

impl<'a> ImageSlice<'a> {
    /// The bytes from RVA `rva` on, if it lies in this slice.
    pub fn from_rva(&self, rva: u32) -> Option<&'a [u8]> {
        let off = rva.checked_sub(self.rva)? as usize;
        self.bytes.get(off..)
    }

    /// `len` bytes at RVA `rva`, if all of them lie in this slice.
    pub fn at(&self, rva: u32, len: usize) -> Option<&'a [u8]> {
        self.from_rva(rva)?.get(..len)
    }

    /// The NUL-terminated string at RVA `rva` (at most `max` bytes), if it ends in this slice.
    pub fn cstr(&self, rva: u32, max: usize) -> Option<&'a [u8]> {
        let rest = self.from_rva(rva)?;
        let rest = rest.get(..rest.len().min(max.saturating_add(1)))?;
        let end = memchr::memchr(0, rest)?;
        rest.get(..end)
    }
}

/// An export directory.
#[derive(Debug, Clone, Copy)]
pub struct Exports<'a> {
    slice: ImageSlice<'a>,
    name_rva: u32,
    functions: u32,
    names: u32,
    functions_rva: u32,
    names_rva: u32,
    ordinals_rva: u32,
}

/// The longest export name read.
const MAX_NAME: usize = 512;

impl<'a> Exports<'a> {
    /// Parses the export directory in `slice`, which must start at the directory's RVA and
    /// should cover the directory's size (names and tables normally lie inside it).
    pub fn parse(slice: ImageSlice<'a>) -> Result<Self, PeError> {
        let d = slice.at(slice.rva, 40).ok_or(PeError::Truncated {
            what: "export directory",
            offset: u64::from(slice.rva),
            len: 40,
        })?;
        let field = |o| u32_at(d, o).unwrap_or(0);
        Ok(Self {
            slice,
            name_rva: field(12),
            functions: field(20),
            names: field(24),
            functions_rva: field(28),
            names_rva: field(32),
            ordinals_rva: field(36),
        })
    }

    /// The image's own name as the linker recorded it (`ntoskrnl.exe`).
    pub fn dll_name(&self) -> Option<&'a [u8]> {
        self.slice.cstr(self.name_rva, MAX_NAME)
    }

    /// Number of named exports.
    pub fn name_count(&self) -> u32 {
        self.names
    }

    /// Named exports as (name, RVA) pairs, as far as the tables lie in the slice; forwarders
    /// (RVAs inside the directory) are included as given.
    pub fn named(&self) -> impl Iterator<Item = (&'a [u8], u32)> + 'a {
        let this = *self;
        (0..this.names).map_while(move |i| {
            let name_rva = u32_at(this.slice.at(this.names_rva.checked_add(i * 4)?, 4)?, 0)?;
            let ordinal = u16_at(this.slice.at(this.ordinals_rva.checked_add(i * 2)?, 2)?, 0)?;
            if u32::from(ordinal) >= this.functions {
                return None;
            }
            let f_at = this.functions_rva.checked_add(u32::from(ordinal) * 4)?;
            let rva = u32_at(this.slice.at(f_at, 4)?, 0)?;
            Some((this.slice.cstr(name_rva, MAX_NAME)?, rva))
        })
    }

    /// The RVA of export `name`.
    pub fn find(&self, name: &[u8]) -> Option<u32> {
        self.named().find(|(n, _)| *n == name).map(|(_, rva)| rva)
    }
}

/// A debug directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugEntry {
    /// `IMAGE_DEBUG_TYPE_*` (2 = CodeView, 13 = POGO, 16 = REPRO).
    pub kind: u32,
    /// Size of the data.
    pub size: u32,
    /// RVA of the data (0 when it is not mapped).
    pub rva: u32,
}

/// `IMAGE_DEBUG_TYPE_CODEVIEW`.
pub const DEBUG_TYPE_CODEVIEW: u32 = 2;

/// Entries of the debug directory `debug`, read from `slice` (which must hold it; 28 bytes per
/// entry, at most 64 entries).
pub fn debug_entries<'a>(
    slice: ImageSlice<'a>,
    debug: DataDirectory,
) -> impl Iterator<Item = DebugEntry> + 'a {
    let count = (debug.size / 28).min(64);
    (0..count).map_while(move |i| {
        let e = slice.at(debug.rva.checked_add(i * 28)?, 28)?;
        Some(DebugEntry {
            kind: u32_at(e, 12)?,
            size: u32_at(e, 16)?,
            rva: u32_at(e, 20)?,
        })
    })
}

/// A CodeView RSDS record: the identity of the PDB an image was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeView<'a> {
    /// The GUID as stored (Data1–3 little-endian).
    pub guid: [u8; 16],
    /// The age.
    pub age: u32,
    /// The PDB path as recorded (often just `ntkrnlmp.pdb`).
    pub pdb_name: &'a [u8],
}

/// The longest PDB path read.
const MAX_PDB_NAME: usize = 260;

impl<'a> CodeView<'a> {
    /// Parses an RSDS record at the start of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.get(..4)? != b"RSDS" {
            return None;
        }
        let guid: [u8; 16] = bytes.get(4..20)?.try_into().ok()?;
        let age = u32_at(bytes, 20)?;
        let rest = bytes.get(24..)?;
        let rest = rest.get(..rest.len().min(MAX_PDB_NAME + 1))?;
        let end = memchr::memchr(0, rest)?;
        Some(Self {
            guid,
            age,
            pdb_name: rest.get(..end)?,
        })
    }

    /// The file name of the PDB (the path's last component).
    pub fn file_name(&self) -> &'a [u8] {
        let start = self
            .pdb_name
            .iter()
            .rposition(|&b| b == b'\\' || b == b'/')
            .map_or(0, |p| p + 1);
        self.pdb_name.get(start..).unwrap_or(self.pdb_name)
    }
}

/// The CodeView record named by the debug directory in `slice`, if it lies there.
pub fn codeview_of<'a>(slice: ImageSlice<'a>, debug: DataDirectory) -> Option<CodeView<'a>> {
    debug_entries(slice, debug)
        .filter(|e| e.kind == DEBUG_TYPE_CODEVIEW && e.rva != 0)
        .find_map(|e| CodeView::parse(slice.at(e.rva, e.size as usize)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small PE32+ image: headers, one section, an export directory and a debug directory.
    pub(crate) fn image() -> Vec<u8> {
        let mut b = vec![0u8; 0x3000];
        b[..2].copy_from_slice(b"MZ");
        b[0x3C..0x40].copy_from_slice(&0x110u32.to_le_bytes());
        b[0x110..0x114].copy_from_slice(b"PE\0\0");
        let coff = 0x114;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes());
        b[coff + 16..coff + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&0x20Bu16.to_le_bytes());
        b[opt + 40..opt + 42].copy_from_slice(&10u16.to_le_bytes());
        b[opt + 56..opt + 60].copy_from_slice(&0x3000u32.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let dd = opt + 112;
        b[dd..dd + 4].copy_from_slice(&0x1000u32.to_le_bytes());
        b[dd + 4..dd + 8].copy_from_slice(&0x100u32.to_le_bytes());
        b[dd + 48..dd + 52].copy_from_slice(&0x2000u32.to_le_bytes());
        b[dd + 52..dd + 56].copy_from_slice(&28u32.to_le_bytes());
        let sec = opt + 240;
        b[sec..sec + 8].copy_from_slice(b"POOLCODE");
        b[sec + 8..sec + 12].copy_from_slice(&0x1000u32.to_le_bytes());
        b[sec + 12..sec + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        // Export directory at 0x1000: name at 0x1080, 2 functions, 2 names.
        let e = 0x1000;
        let put =
            |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(&mut b, e + 12, 0x1080);
        put(&mut b, e + 20, 2);
        put(&mut b, e + 24, 2);
        put(&mut b, e + 28, 0x1040);
        put(&mut b, e + 32, 0x1050);
        put(&mut b, e + 36, 0x1060);
        put(&mut b, 0x1040, 0x1234);
        put(&mut b, 0x1044, 0x5678);
        put(&mut b, 0x1050, 0x1090);
        put(&mut b, 0x1054, 0x10A0);
        b[0x1060..0x1062].copy_from_slice(&1u16.to_le_bytes());
        b[0x1062..0x1064].copy_from_slice(&0u16.to_le_bytes());
        b[0x1080..0x108D].copy_from_slice(b"ntoskrnl.exe\0");
        b[0x1090..0x109E].copy_from_slice(b"NtBuildNumber\0");
        b[0x10A0..0x10B3].copy_from_slice(b"PsLoadedModuleList\0");
        // Debug directory at 0x2000: one CodeView entry at 0x2100.
        put(&mut b, 0x2000 + 12, 2);
        put(&mut b, 0x2000 + 16, 0x25);
        put(&mut b, 0x2000 + 20, 0x2100);
        b[0x2100..0x2104].copy_from_slice(b"RSDS");
        b[0x2104..0x2114].copy_from_slice(&[
            0x29, 0x7c, 0xed, 0xbb, 0xfb, 0x55, 0x52, 0xe4, 0x2a, 0xaa, 0x23, 0xf4, 0xb8, 0x67,
            0x7a, 0xd9,
        ]);
        put(&mut b, 0x2114, 1);
        b[0x2118..0x2125].copy_from_slice(b"ntkrnlmp.pdb\0");
        b
    }

    #[test]
    fn parses_headers_exports_and_codeview() {
        let img = image();
        let h = PeHeaders::parse(&img).unwrap();
        assert_eq!(h.machine(), 0x8664);
        assert!(h.is_pe32_plus());
        assert_eq!(h.size_of_image(), 0x3000);
        assert_eq!(h.os_version(), (10, 0));
        assert_eq!(h.section(b"POOLCODE").unwrap().rva, 0x1000);
        let exp = h.data_directory(dir::EXPORT).unwrap();
        let ex = Exports::parse(ImageSlice {
            rva: exp.rva,
            bytes: &img[exp.rva as usize..],
        })
        .unwrap();
        assert_eq!(ex.dll_name(), Some(&b"ntoskrnl.exe"[..]));
        assert_eq!(ex.find(b"NtBuildNumber"), Some(0x5678));
        assert_eq!(ex.find(b"PsLoadedModuleList"), Some(0x1234));
        assert_eq!(ex.find(b"Nope"), None);
        let dbg = h.data_directory(dir::DEBUG).unwrap();
        let cv = codeview_of(
            ImageSlice {
                rva: 0,
                bytes: &img,
            },
            dbg,
        )
        .unwrap();
        assert_eq!(cv.age, 1);
        assert_eq!(cv.file_name(), b"ntkrnlmp.pdb");
        assert_eq!(cv.guid[0], 0x29);
    }

    #[test]
    fn rejects_malformed_headers() {
        let img = image();
        assert_eq!(
            PeHeaders::parse(b"ZM").unwrap_err(),
            PeError::NoDosSignature
        );
        let mut bad = img.clone();
        bad[0x3C..0x40].copy_from_slice(&0x9000u32.to_le_bytes());
        assert_eq!(
            PeHeaders::parse(&bad).unwrap_err(),
            PeError::BadLfanew(0x9000)
        );
        let mut bad = img.clone();
        bad[0x110] = b'X';
        assert_eq!(
            PeHeaders::parse(&bad).unwrap_err(),
            PeError::NoPeSignature(0x110)
        );
        assert!(matches!(
            PeHeaders::parse(&img[..0x130]).unwrap_err(),
            PeError::Truncated { .. }
        ));
        assert_eq!(CodeView::parse(b"RSDS\0\0"), None);
        assert_eq!(
            CodeView::parse(b"RSDSabcdefghijklmnop\x01\0\0\0a\\b\\nt.pdb\0")
                .unwrap()
                .file_name(),
            b"nt.pdb"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..0x600), flip in 0usize..0x3000, val in proptest::num::u8::ANY) {
            let _ = PeHeaders::parse(&bytes).map(|h| (h.sections().count(), h.data_directory(6), h.size_of_image()));
            let mut img = image();
            img[flip] = val;
            if let Ok(h) = PeHeaders::parse(&img) {
                let slice = ImageSlice { rva: 0, bytes: &img };
                if let Some(d) = h.data_directory(dir::DEBUG) { let _ = codeview_of(slice, d); }
                if let Some(e) = h.data_directory(dir::EXPORT) {
                    if let Some(s) = slice.from_rva(e.rva) {
                        if let Ok(x) = Exports::parse(ImageSlice { rva: e.rva, bytes: s }) {
                            let _ = x.named().count();
                            let _ = x.dll_name();
                        }
                    }
                }
            }
        }
    }
}
