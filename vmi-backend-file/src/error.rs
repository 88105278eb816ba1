//! The error type of the file backend. Each variant's doc comment is its message in short;
//! the `#[error]` text adds the values.
//!
//! Every malformation of a dump has its own variant naming what was wrong and where (an index
//! into the program header table or LiME range list, a file offset), so that a user can open
//! the file in a hex editor and find it.

use std::path::PathBuf;

/// Opening or parsing a memory dump failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// The file could not be opened, inspected or mapped.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file (a directory, a device, ...).
    #[error("{path} is not a regular file")]
    NotARegularFile {
        /// The path.
        path: PathBuf,
    },
    /// The content is neither an ELF core nor LiME, and is not a raw image either (a raw image
    /// is any other file whose size is a non-zero multiple of 4 KiB).
    #[error(
        "{path} ({len} bytes) is not a memory dump vmi recognises: not an ELF core, not LiME, \
         and not a raw image (raw images are a non-zero multiple of 4 KiB); it starts with \
         [{first_bytes}]"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// Its first bytes (up to 16) in hex, for the user to recognise the format.
        first_bytes: String,
    },
    /// The file ends inside a header.
    #[error(
        "{what} is truncated: {needed} bytes needed at offset {offset:#x}, file has {file_len:#x}"
    )]
    TruncatedHeader {
        /// Which header ("ELF header", "program header table", "LiME header", ...).
        what: &'static str,
        /// File offset where the header starts.
        offset: u64,
        /// Bytes the header needs.
        needed: u64,
        /// Size of the file.
        file_len: u64,
    },

    // ---- kdump ----
    /// A kdump-compressed file (flat or flattened) is malformed.
    #[error("kdump file: at offset {offset:#x}: {reason}")]
    Kdump {
        /// File (or flat) offset of what is wrong.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    // ---- ELF ----
    /// The bytes do not start with the ELF magic.
    #[error("not an ELF file: it starts with [{first_bytes}], not 7f 45 4c 46")]
    NotElf {
        /// The first bytes (up to 16) in hex.
        first_bytes: String,
    },
    /// `EI_CLASS` is neither ELFCLASS32 (1) nor ELFCLASS64 (2).
    #[error("ELF class {class} is not supported (1 = 32-bit and 2 = 64-bit are)")]
    UnsupportedElfClass {
        /// The `EI_CLASS` byte.
        class: u8,
    },
    /// `EI_DATA` is not little-endian (ELFDATA2LSB, 1).
    #[error("ELF data encoding {data} is not supported (x86 dumps are little-endian, 1)")]
    UnsupportedByteOrder {
        /// The `EI_DATA` byte.
        data: u8,
    },
    /// The ELF file is not a core file.
    #[error(
        "ELF type {e_type} is not ET_CORE (4): an executable or object file is not a memory dump"
    )]
    NotACore {
        /// `e_type`.
        e_type: u16,
    },
    /// The ELF core is for a machine vmi does not introspect.
    #[error("ELF machine {machine} is not supported (x86-64 = 62 and i386 = 3 are)")]
    UnsupportedMachine {
        /// `e_machine`.
        machine: u16,
    },
    /// `e_phentsize` is smaller than a program header of this class.
    #[error("program header entry size {phentsize} is smaller than the {expected} bytes of this ELF class")]
    BadProgramHeaderSize {
        /// `e_phentsize`.
        phentsize: u16,
        /// The size of one `Elf32_Phdr` or `Elf64_Phdr`.
        expected: u16,
    },
    /// More program headers or LiME ranges than vmi accepts.
    #[error("the dump declares {count} segments, more than the {max} vmi accepts")]
    TooManySegments {
        /// The declared or counted number.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A segment's file bytes extend past the end of the file.
    #[error("segment {index} ends at file offset {end:#x}, past the end of the file ({file_len:#x} bytes)")]
    SegmentBeyondFile {
        /// Index of the program header (ELF) or range (LiME).
        index: usize,
        /// File offset one past the segment's last byte (saturated at `u64::MAX`).
        end: u64,
        /// Size of the file.
        file_len: u64,
    },
    /// A segment's physical range wraps around the 64-bit address space.
    #[error(
        "segment {index} at physical {start:#x} with {len:#x} bytes wraps around the address space"
    )]
    SegmentAddressOverflow {
        /// Index of the program header (ELF) or range (LiME).
        index: usize,
        /// First physical address.
        start: u64,
        /// Length.
        len: u64,
    },
    /// A PT_LOAD segment has more bytes in the file than in memory.
    #[error("segment {index}: p_filesz {filesz:#x} is larger than p_memsz {memsz:#x}")]
    FileSizeExceedsMemSize {
        /// Index of the program header.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// Two segments describe the same physical memory with different file bytes.
    #[error(
        "segments {first} and {second} both describe physical memory at {at:#x} (with different \
         file bytes)"
    )]
    OverlappingSegments {
        /// Index of one segment (program header or LiME range).
        first: usize,
        /// Index of the other.
        second: usize,
        /// First physical address both claim.
        at: u64,
    },
    /// The dump describes no memory at all.
    #[error("the dump describes no physical memory (no segment with bytes in the file)")]
    NoMemory,
    /// Every PT_LOAD has `p_paddr` 0 and process-core notes are present: this is a core dump of
    /// a user process, not of a machine.
    #[error(
        "this ELF core is a process core dump (NT_AUXV/NT_FILE notes, every p_paddr is 0), not a \
         machine memory dump"
    )]
    ProcessCore,
    /// A note header or body extends past the end of its PT_NOTE segment.
    #[error(
        "note at file offset {offset:#x} in segment {segment} needs {needed:#x} bytes, the segment \
         has {available:#x} left"
    )]
    NoteBeyondSegment {
        /// Index of the PT_NOTE program header.
        segment: usize,
        /// File offset of the note header.
        offset: u64,
        /// Bytes the note needs (header, padded name and padded descriptor).
        needed: u64,
        /// Bytes left in the segment from `offset`.
        available: u64,
    },
    /// More notes than vmi accepts.
    #[error("the dump has more than {max} notes")]
    TooManyNotes {
        /// The limit.
        max: usize,
    },
    /// An NT_PRSTATUS note has a size matching no known layout.
    #[error(
        "NT_PRSTATUS note {index} has {size} bytes; vmi decodes the x86-64 (336) and i386 (144) \
         layouts"
    )]
    PrstatusSize {
        /// Index among the NT_PRSTATUS notes.
        index: usize,
        /// The descriptor size.
        size: usize,
    },
    /// A QEMU CPU note has a version vmi does not know.
    #[error("QEMU CPU note {index} has version {version}; vmi decodes version 1")]
    QemuNoteVersion {
        /// Index among the QEMU notes.
        index: usize,
        /// The `version` field.
        version: u32,
    },
    /// A QEMU CPU note is smaller than version 1's fixed part.
    #[error("QEMU CPU note {index} has {size} usable bytes, version 1 needs at least {needed}")]
    QemuNoteTooSmall {
        /// Index among the QEMU notes.
        index: usize,
        /// The smaller of the descriptor size and the note's `size` field.
        size: usize,
        /// Bytes of version 1 without optional fields.
        needed: usize,
    },
    /// The numbers of NT_PRSTATUS and QEMU notes differ, so they cannot be paired per vCPU.
    #[error("{prstatus} NT_PRSTATUS notes but {qemu} QEMU CPU notes: cannot pair them per vCPU")]
    NoteCountMismatch {
        /// NT_PRSTATUS notes.
        prstatus: usize,
        /// QEMU CPU notes.
        qemu: usize,
    },
    /// More vCPU notes than vmi accepts.
    #[error("the dump describes {count} vCPUs, more than the {max} vmi accepts")]
    TooManyVcpus {
        /// vCPU notes found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A VMCOREINFO note is implausibly large.
    #[error("the VMCOREINFO note has {size} bytes, more than the {max} vmi accepts")]
    VmcoreinfoTooLarge {
        /// Descriptor size.
        size: usize,
        /// The limit.
        max: usize,
    },

    // ---- LiME ----
    /// A LiME range header does not start with the LiME magic.
    #[error(
        "LiME range {index} at file offset {offset:#x}: magic {found:#010x} is not 0x4c694d45"
    )]
    BadLimeMagic {
        /// Index of the range.
        index: usize,
        /// File offset of its header.
        offset: u64,
        /// The magic found.
        found: u32,
    },
    /// A LiME range header has a version other than 1.
    #[error(
        "LiME range {index} at file offset {offset:#x}: version {version} is not supported (1 is)"
    )]
    UnsupportedLimeVersion {
        /// Index of the range.
        index: usize,
        /// File offset of its header.
        offset: u64,
        /// The version found.
        version: u32,
    },
    /// A LiME range ends before it starts.
    #[error("LiME range {index}: end {end:#x} is below start {start:#x}")]
    LimeRangeInverted {
        /// Index of the range.
        index: usize,
        /// `s_addr`.
        start: u64,
        /// `e_addr` (inclusive).
        end: u64,
    },
}
