//! A zero-copy, no-panic parser of ELF core files over `&[u8]`.
//!
//! It reads the ELF header, the program header table, the PT_LOAD segments (memory) and the
//! notes of every PT_NOTE segment, and validates everything a later read relies on: every
//! segment lies inside the file, no address range wraps, `p_filesz <= p_memsz`, every note lies
//! inside its segment. Every count is capped before anything is allocated from it.
//!
//! Decoding the notes into registers is [`crate::notes`]' job; building the physical region
//! table (sorting, overlap checks) is [`crate::mapped`]'s.
//!
//! # Physical addresses
//!
//! A PT_LOAD segment's physical address is `p_paddr`. QEMU `dump-guest-memory` without paging
//! writes the guest-physical address into both `p_paddr` and `p_vaddr`; with paging (`-p`) it
//! writes the virtual address into `p_vaddr` and several segments may alias the same physical
//! memory (they then share the same file bytes, which [`crate::mapped`] accepts). Linux
//! `/proc/vmcore` also sets `p_paddr`.
//!
//! A single segment with `p_paddr` 0 is RAM at physical 0 (QEMU's first segment is
//! `0..0xa0000`). When there are two or more PT_LOADs and *every* `p_paddr` is 0, `p_paddr`
//! carries no information and two cases remain:
//! - the notes include NT_AUXV or NT_FILE, which only process core dumps have: the file is a
//!   core of a user program and is refused ([`DumpError::ProcessCore`]);
//! - otherwise the producer recorded physical addresses in `p_vaddr` only (some hypervisor dump
//!   tools do), and `p_vaddr` is used. [`ElfCore::address_source`] says so, and the dump's
//!   details report it, so a user who sees strange memory knows where addresses came from.

use crate::error::DumpError;
use crate::mapped::Segment;

/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_machine` of i386.
pub const EM_386: u16 = 3;
/// `e_type` of a core file.
pub const ET_CORE: u16 = 4;
/// Program header type of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// Program header type of a note segment.
pub const PT_NOTE: u32 = 4;
/// `e_phnum` value meaning "the real count is in section header 0's `sh_info`".
pub const PN_XNUM: u16 = 0xffff;
/// Note type of a process status (registers of one CPU).
pub const NT_PRSTATUS: u32 = 1;
/// Note type of the auxiliary vector (process cores only).
pub const NT_AUXV: u32 = 6;
/// Note type of the mapped-files table (process cores only, "FILE" in ASCII).
pub const NT_FILE: u32 = 0x4649_4c45;

/// Most program headers accepted. QEMU paging dumps of large guests have one PT_LOAD per
/// contiguous virtual-to-physical run; a million is far beyond any real dump and bounds the
/// region table to a few tens of MiB.
pub const MAX_PROGRAM_HEADERS: u64 = 1 << 20;
/// Most notes accepted (QEMU writes two per vCPU, Linux one per CPU plus a few).
pub const MAX_NOTES: usize = 1 << 17;

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];

/// The ELF class: 32- or 64-bit structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfClass {
    /// ELFCLASS32.
    Elf32,
    /// ELFCLASS64.
    Elf64,
}

impl ElfClass {
    fn header_size(self) -> u64 {
        match self {
            ElfClass::Elf32 => 52,
            ElfClass::Elf64 => 64,
        }
    }

    fn phdr_size(self) -> u16 {
        match self {
            ElfClass::Elf32 => 32,
            ElfClass::Elf64 => 56,
        }
    }

    fn shdr_size(self) -> u64 {
        match self {
            ElfClass::Elf32 => 40,
            ElfClass::Elf64 => 64,
        }
    }
}

/// Where physical addresses of PT_LOAD segments come from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// `p_paddr`, the normal case.
    PhysicalAddress,
    /// `p_vaddr`, because every `p_paddr` was 0.
    VirtualAddressFallback,
}

/// One program header, widened to 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgramHeader {
    /// Index in the program header table.
    pub index: usize,
    /// `p_type`.
    pub p_type: u32,
    /// `p_offset`.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_paddr`.
    pub paddr: u64,
    /// `p_filesz`.
    pub filesz: u64,
    /// `p_memsz`.
    pub memsz: u64,
}

/// One note, borrowed from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// Index of the PT_NOTE program header holding it.
    pub segment: usize,
    /// File offset of the note header.
    pub offset: u64,
    /// The name without its terminating NUL bytes ("CORE", "QEMU", "VMCOREINFO").
    pub name: &'a [u8],
    /// The note type.
    pub n_type: u32,
    /// The descriptor.
    pub desc: &'a [u8],
}

/// A parsed and validated ELF core file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ElfCore<'a> {
    /// 32- or 64-bit.
    pub class: ElfClass,
    /// `e_machine` ([`EM_X86_64`] or [`EM_386`]).
    pub machine: u16,
    /// Number of program headers (after PN_XNUM extension).
    pub phnum: u64,
    /// The PT_LOAD program headers, in table order.
    pub loads: Vec<ProgramHeader>,
    /// Every note of every PT_NOTE segment, in file order.
    pub notes: Vec<Note<'a>>,
    /// Where physical addresses come from.
    pub address_source: AddressSource,
}

impl ElfCore<'_> {
    /// The physical segments backed by file bytes: `[addr, addr + p_filesz)` of each PT_LOAD
    /// with `p_filesz > 0`. The tail `[p_filesz, p_memsz)` is not backed: reads there fail
    /// rather than returning zeros.
    pub fn segments(&self) -> Vec<Segment> {
        self.loads
            .iter()
            .filter(|p| p.filesz > 0)
            .map(|p| Segment {
                index: p.index,
                start: match self.address_source {
                    AddressSource::PhysicalAddress => p.paddr,
                    AddressSource::VirtualAddressFallback => p.vaddr,
                },
                len: p.filesz,
                file_offset: p.offset,
            })
            .collect()
    }
}

/// Whether `bytes` start with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(&ELF_MAGIC[..])
}

/// Parses and validates an ELF core file.
///
/// ```
/// let err = vmi_backend_file::elf::parse(b"\x7fELF").unwrap_err();
/// assert!(err.to_string().contains("truncated"));
/// ```
pub fn parse(bytes: &[u8]) -> Result<ElfCore<'_>, DumpError> {
    let file_len = bytes.len() as u64;
    let truncated = |what, offset, needed| DumpError::TruncatedHeader {
        what,
        offset,
        needed,
        file_len,
    };
    if !is_elf(bytes) {
        return Err(DumpError::NotElf {
            first_bytes: hex_prefix(bytes),
        });
    }
    let ident = bytes
        .get(..16)
        .ok_or(truncated("ELF identification", 0, 16))?;
    let class = match ident[4] {
        1 => ElfClass::Elf32,
        2 => ElfClass::Elf64,
        class => return Err(DumpError::UnsupportedElfClass { class }),
    };
    if ident[5] != 1 {
        return Err(DumpError::UnsupportedByteOrder { data: ident[5] });
    }
    let ehdr = slice(bytes, 0, class.header_size()).ok_or(truncated(
        "ELF header",
        0,
        class.header_size(),
    ))?;
    let r = Reader(ehdr);
    let e_type = r.u16(16);
    if e_type != ET_CORE {
        return Err(DumpError::NotACore { e_type });
    }
    let machine = r.u16(18);
    if machine != EM_X86_64 && machine != EM_386 {
        return Err(DumpError::UnsupportedMachine { machine });
    }
    // e_ehsize is deliberately not checked: QEMU 7.2 writes 8 there (the size of a pointer).
    let (phoff, shoff, phentsize, phnum) = match class {
        ElfClass::Elf64 => (r.u64(32), r.u64(40), r.u16(54), r.u16(56)),
        ElfClass::Elf32 => (
            u64::from(r.u32(28)),
            u64::from(r.u32(32)),
            r.u16(42),
            r.u16(44),
        ),
    };
    let phnum = if phnum == PN_XNUM {
        // Extended numbering: the real count is sh_info of section header 0.
        let shdr = slice(bytes, shoff, class.shdr_size()).ok_or(truncated(
            "section header 0",
            shoff,
            class.shdr_size(),
        ))?;
        let r = Reader(shdr);
        u64::from(match class {
            ElfClass::Elf64 => r.u32(44),
            ElfClass::Elf32 => r.u32(28),
        })
    } else {
        u64::from(phnum)
    };
    if phnum > MAX_PROGRAM_HEADERS {
        return Err(DumpError::TooManySegments {
            count: phnum,
            max: MAX_PROGRAM_HEADERS,
        });
    }
    if phnum > 0 && phentsize < class.phdr_size() {
        return Err(DumpError::BadProgramHeaderSize {
            phentsize,
            expected: class.phdr_size(),
        });
    }
    // Cannot overflow: phnum <= 2^20 and phentsize < 2^16.
    let table_len = phnum * u64::from(phentsize);
    let table = slice(bytes, phoff, table_len).ok_or(truncated(
        "program header table",
        phoff,
        table_len,
    ))?;

    let mut loads = Vec::new();
    let mut notes = Vec::new();
    for (index, raw) in table
        .chunks_exact(usize::from(phentsize.max(1)))
        .enumerate()
    {
        let ph = program_header(class, index, raw);
        match ph.p_type {
            PT_LOAD => {
                validate_load(&ph, file_len)?;
                loads.push(ph);
            }
            PT_NOTE => {
                let seg = segment_bytes(bytes, index, ph.offset, ph.filesz)?;
                parse_notes(seg, index, ph.offset, &mut notes)?;
            }
            _ => {}
        }
    }

    let address_source = if loads.len() >= 2 && loads.iter().all(|p| p.paddr == 0) {
        let process_note = notes
            .iter()
            .any(|n| n.name == b"CORE" && (n.n_type == NT_AUXV || n.n_type == NT_FILE));
        if process_note {
            return Err(DumpError::ProcessCore);
        }
        for p in &loads {
            if p.vaddr.checked_add(p.memsz).is_none() {
                return Err(DumpError::SegmentAddressOverflow {
                    index: p.index,
                    start: p.vaddr,
                    len: p.memsz,
                });
            }
        }
        AddressSource::VirtualAddressFallback
    } else {
        AddressSource::PhysicalAddress
    };

    Ok(ElfCore {
        class,
        machine,
        phnum,
        loads,
        notes,
        address_source,
    })
}

fn program_header(class: ElfClass, index: usize, raw: &[u8]) -> ProgramHeader {
    let r = Reader(raw);
    match class {
        ElfClass::Elf64 => ProgramHeader {
            index,
            p_type: r.u32(0),
            offset: r.u64(8),
            vaddr: r.u64(16),
            paddr: r.u64(24),
            filesz: r.u64(32),
            memsz: r.u64(40),
        },
        ElfClass::Elf32 => ProgramHeader {
            index,
            p_type: r.u32(0),
            offset: u64::from(r.u32(4)),
            vaddr: u64::from(r.u32(8)),
            paddr: u64::from(r.u32(12)),
            filesz: u64::from(r.u32(16)),
            memsz: u64::from(r.u32(20)),
        },
    }
}

fn validate_load(ph: &ProgramHeader, file_len: u64) -> Result<(), DumpError> {
    if ph.filesz > ph.memsz {
        return Err(DumpError::FileSizeExceedsMemSize {
            index: ph.index,
            filesz: ph.filesz,
            memsz: ph.memsz,
        });
    }
    let end = ph.offset.saturating_add(ph.filesz);
    if end > file_len || ph.offset.checked_add(ph.filesz).is_none() {
        return Err(DumpError::SegmentBeyondFile {
            index: ph.index,
            end,
            file_len,
        });
    }
    // p_paddr is checked even when p_vaddr will be used instead: a wrapping p_paddr is malformed.
    // The check is skipped in the all-zero case, where it cannot fail.
    if ph.paddr.checked_add(ph.memsz).is_none() {
        return Err(DumpError::SegmentAddressOverflow {
            index: ph.index,
            start: ph.paddr,
            len: ph.memsz,
        });
    }
    Ok(())
}

fn segment_bytes(bytes: &[u8], index: usize, offset: u64, len: u64) -> Result<&[u8], DumpError> {
    slice(bytes, offset, len).ok_or(DumpError::SegmentBeyondFile {
        index,
        end: offset.saturating_add(len),
        file_len: bytes.len() as u64,
    })
}

/// Parses a block of ELF notes outside any ELF file (the note section of a kdump file).
pub fn parse_note_block(bytes: &[u8], offset: u64) -> Result<Vec<Note<'_>>, DumpError> {
    let mut out = Vec::new();
    parse_notes(bytes, 0, offset, &mut out)?;
    Ok(out)
}

/// Parses the notes of one PT_NOTE segment. Notes are 4-byte aligned, as Linux and QEMU write
/// them for both ELF classes. A final note may omit the padding of its descriptor, and a tail
/// of fewer than 12 zero bytes (padding) is ignored.
fn parse_notes<'a>(
    seg: &'a [u8],
    segment: usize,
    seg_offset: u64,
    out: &mut Vec<Note<'a>>,
) -> Result<(), DumpError> {
    let mut pos = 0usize;
    while pos < seg.len() {
        let rest = seg.get(pos..).unwrap_or_default();
        let offset = seg_offset.saturating_add(pos as u64);
        let beyond = |needed: u64| DumpError::NoteBeyondSegment {
            segment,
            offset,
            needed,
            available: rest.len() as u64,
        };
        if rest.len() < 12 {
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            return Err(beyond(12));
        }
        let r = Reader(rest);
        let namesz = u64::from(r.u32(0));
        let descsz = u64::from(r.u32(4));
        let n_type = r.u32(8);
        // u32 sizes padded to 4 cannot overflow u64.
        let name_padded = align4(namesz);
        let needed_unpadded = 12 + name_padded + descsz;
        let needed = 12 + name_padded + align4(descsz);
        if needed_unpadded > rest.len() as u64 {
            return Err(beyond(needed));
        }
        if out.len() >= MAX_NOTES {
            return Err(DumpError::TooManyNotes { max: MAX_NOTES });
        }
        let name = slice(rest, 12, namesz).unwrap_or_default();
        let name_end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let desc = slice(rest, 12 + name_padded, descsz).unwrap_or_default();
        out.push(Note {
            segment,
            offset,
            name: name.get(..name_end).unwrap_or_default(),
            n_type,
            desc,
        });
        // needed <= rest.len() + 3, and the min keeps pos within the segment.
        pos = pos.saturating_add(
            usize::try_from(needed)
                .unwrap_or(usize::MAX)
                .min(rest.len()),
        );
    }
    Ok(())
}

const fn align4(n: u64) -> u64 {
    (n + 3) & !3
}

/// `bytes[offset..offset + len]`, or `None` if any of it is outside `bytes`.
pub(crate) fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// Up to 16 leading bytes as hex, for error messages.
pub(crate) fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Little-endian field reads from a slice whose length the caller has checked; an out-of-range
/// read yields 0 instead of panicking.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn u16(self, off: usize) -> u16 {
        u16::from_le_bytes(self.array(off))
    }

    pub(crate) fn u32(self, off: usize) -> u32 {
        u32::from_le_bytes(self.array(off))
    }

    pub(crate) fn u64(self, off: usize) -> u64 {
        u64::from_le_bytes(self.array(off))
    }

    fn array<const N: usize>(self, off: usize) -> [u8; N] {
        off.checked_add(N)
            .and_then(|end| self.0.get(off..end))
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; N])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::ElfBuilder;

    #[test]
    fn parses_a_minimal_core() {
        let elf = ElfBuilder::new64()
            .load(0x1000, vec![1; 0x1000])
            .note(b"CORE", 1, &[0; 336])
            .build();
        let core = parse(&elf).unwrap();
        assert_eq!(core.class, ElfClass::Elf64);
        assert_eq!(core.loads.len(), 1);
        assert_eq!(core.notes.len(), 1);
        assert_eq!(core.notes[0].name, b"CORE");
        assert_eq!(core.notes[0].desc.len(), 336);
        assert_eq!(core.address_source, AddressSource::PhysicalAddress);
    }

    #[test]
    fn parses_elf32() {
        let elf = ElfBuilder::new32()
            .load(0x2000, vec![2; 0x1000])
            .note(b"QEMU", 0, &[0; 8])
            .build();
        let core = parse(&elf).unwrap();
        assert_eq!(core.class, ElfClass::Elf32);
        assert_eq!(core.machine, EM_386);
        let segs = core.segments();
        assert_eq!((segs[0].start, segs[0].len), (0x2000, 0x1000));
        assert_eq!(core.notes[0].name, b"QEMU");
    }

    #[test]
    fn rejects_wrong_identification() {
        let good = ElfBuilder::new64().load(0, vec![0; 16]).build();
        let mut b = good.clone();
        b[4] = 3;
        assert!(matches!(
            parse(&b),
            Err(DumpError::UnsupportedElfClass { class: 3 })
        ));
        let mut b = good.clone();
        b[5] = 2;
        assert!(matches!(
            parse(&b),
            Err(DumpError::UnsupportedByteOrder { data: 2 })
        ));
        let mut b = good.clone();
        b[16] = 2; // ET_EXEC
        assert!(matches!(parse(&b), Err(DumpError::NotACore { e_type: 2 })));
        let mut b = good.clone();
        b[18] = 183; // aarch64
        assert!(matches!(
            parse(&b),
            Err(DumpError::UnsupportedMachine { machine: 183 })
        ));
        assert!(matches!(parse(b"MZ\x90\0"), Err(DumpError::NotElf { .. })));
    }

    #[test]
    fn truncated_headers() {
        let good = ElfBuilder::new64().load(0, vec![0; 16]).build();
        for cut in [4, 15, 16, 63, 64, 64 + 55] {
            let err = parse(&good[..cut]).unwrap_err();
            assert!(
                matches!(err, DumpError::TruncatedHeader { .. }),
                "cut {cut}: {err}"
            );
        }
        match parse(&good[..100]).unwrap_err() {
            DumpError::TruncatedHeader {
                what,
                offset,
                needed,
                file_len,
            } => {
                assert_eq!(what, "program header table");
                assert_eq!((offset, needed, file_len), (64, 56, 100));
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn segment_beyond_file() {
        let mut elf = ElfBuilder::new64().load(0, vec![0; 0x100]).build();
        let len = elf.len() as u64;
        // p_filesz of program header 0 (at 64 + 32).
        elf[96..104].copy_from_slice(&0x200u64.to_le_bytes());
        elf[104..112].copy_from_slice(&0x200u64.to_le_bytes());
        match parse(&elf).unwrap_err() {
            DumpError::SegmentBeyondFile {
                index,
                end,
                file_len,
            } => {
                assert_eq!(index, 0);
                assert_eq!(file_len, len);
                assert_eq!(end, len - 0x100 + 0x200);
            }
            e => panic!("{e}"),
        }
        // An offset so large that offset + size wraps.
        elf[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            parse(&elf),
            Err(DumpError::SegmentBeyondFile { end: u64::MAX, .. })
        ));
    }

    #[test]
    fn filesz_larger_than_memsz() {
        let mut elf = ElfBuilder::new64().load(0, vec![0; 0x100]).build();
        elf[104..112].copy_from_slice(&0x80u64.to_le_bytes());
        assert!(matches!(
            parse(&elf),
            Err(DumpError::FileSizeExceedsMemSize {
                index: 0,
                filesz: 0x100,
                memsz: 0x80
            })
        ));
    }

    #[test]
    fn address_overflow() {
        let elf = ElfBuilder::new64()
            .load(u64::MAX - 0x10, vec![0; 0x100])
            .build();
        assert!(matches!(
            parse(&elf),
            Err(DumpError::SegmentAddressOverflow { index: 0, .. })
        ));
    }

    #[test]
    fn bad_phentsize_and_absurd_phnum() {
        let mut elf = ElfBuilder::new64().load(0, vec![0; 16]).build();
        elf[54..56].copy_from_slice(&8u16.to_le_bytes());
        assert!(matches!(
            parse(&elf),
            Err(DumpError::BadProgramHeaderSize {
                phentsize: 8,
                expected: 56
            })
        ));
        // 65534 headers of 56 bytes do not fit in a small file.
        let mut elf = ElfBuilder::new64().load(0, vec![0; 16]).build();
        elf[56..58].copy_from_slice(&0xfffeu16.to_le_bytes());
        assert!(matches!(
            parse(&elf),
            Err(DumpError::TruncatedHeader {
                what: "program header table",
                ..
            })
        ));
    }

    #[test]
    fn extended_phnum_from_section_header() {
        let mut elf = ElfBuilder::new64().load(0x1000, vec![5; 16]).build();
        let shoff = elf.len() as u64;
        let mut shdr = [0u8; 64];
        shdr[44..48].copy_from_slice(&1u32.to_le_bytes());
        elf.extend_from_slice(&shdr);
        elf[40..48].copy_from_slice(&shoff.to_le_bytes());
        elf[56..58].copy_from_slice(&PN_XNUM.to_le_bytes());
        let core = parse(&elf).unwrap();
        assert_eq!(core.phnum, 1);
        assert_eq!(core.loads.len(), 1);
        // A huge extended count is refused before anything is allocated.
        let n = elf.len();
        elf[n - 20..n - 16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&elf),
            Err(DumpError::TooManySegments {
                count: 0xffff_ffff,
                ..
            })
        ));
        // Section header 0 past the end of the file.
        elf[40..48].copy_from_slice(&(shoff + 1).to_le_bytes());
        assert!(matches!(
            parse(&elf),
            Err(DumpError::TruncatedHeader {
                what: "section header 0",
                ..
            })
        ));
    }

    #[test]
    fn notes_beyond_segment() {
        // descsz claims more than the segment holds.
        let elf = ElfBuilder::new64()
            .load(0, vec![0; 16])
            .raw_notes(&{
                let mut n = Vec::new();
                n.extend_from_slice(&5u32.to_le_bytes());
                n.extend_from_slice(&0x1000u32.to_le_bytes());
                n.extend_from_slice(&1u32.to_le_bytes());
                n.extend_from_slice(b"CORE\0\0\0\0");
                n.extend_from_slice(&[0; 16]);
                n
            })
            .build();
        match parse(&elf).unwrap_err() {
            DumpError::NoteBeyondSegment {
                segment,
                needed,
                available,
                ..
            } => {
                assert_eq!(segment, 1);
                assert_eq!(needed, 12 + 8 + 0x1000);
                assert_eq!(available, 12 + 8 + 16);
            }
            e => panic!("{e}"),
        }
        // A truncated note header (non-zero tail shorter than 12 bytes).
        let elf = ElfBuilder::new64()
            .load(0, vec![0; 16])
            .raw_notes(&[1, 0, 0, 0, 0, 0, 0, 0])
            .build();
        assert!(matches!(
            parse(&elf),
            Err(DumpError::NoteBeyondSegment {
                needed: 12,
                available: 8,
                ..
            })
        ));
        // Zero padding after the last note is fine.
        let elf = ElfBuilder::new64()
            .load(0, vec![0; 16])
            .raw_notes(&[0; 8])
            .build();
        assert!(parse(&elf).unwrap().notes.is_empty());
    }

    #[test]
    fn note_segment_beyond_file() {
        let mut elf = ElfBuilder::new64()
            .note(b"CORE", 1, &[0; 8])
            .load(0, vec![0; 16])
            .build();
        // p_filesz of the PT_NOTE (program header 0).
        elf[96..104].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert!(matches!(
            parse(&elf),
            Err(DumpError::SegmentBeyondFile { index: 0, .. })
        ));
    }

    #[test]
    fn vaddr_fallback_and_process_cores() {
        let elf = ElfBuilder::new64()
            .load_with(0, 0x10_0000, vec![1; 0x1000])
            .load_with(0, 0x20_0000, vec![2; 0x1000])
            .build();
        let core = parse(&elf).unwrap();
        assert_eq!(core.address_source, AddressSource::VirtualAddressFallback);
        let starts: Vec<u64> = core.segments().iter().map(|s| s.start).collect();
        assert_eq!(starts, [0x10_0000, 0x20_0000]);

        let elf = ElfBuilder::new64()
            .note(b"CORE", NT_AUXV, &[0; 16])
            .load_with(0, 0x40_0000, vec![1; 0x1000])
            .load_with(0, 0x7fff_0000, vec![2; 0x1000])
            .build();
        assert!(matches!(parse(&elf), Err(DumpError::ProcessCore)));
    }
}
