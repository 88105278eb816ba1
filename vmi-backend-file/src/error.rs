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
    /// The path names something other than a regular file (a FIFO, a device, a directory...),
    /// refused before it is opened.
    #[error("{path} is not a regular file but {kind}: vmi reads dumps from regular files only")]
    NotARegularFile {
        /// The path.
        path: PathBuf,
        /// What it is ("a FIFO", "a character device", ...).
        kind: &'static str,
    },
    /// The content is no format vmi reads (ELF core, LiME, AVML, kdump), and is not a raw image either (a raw image
    /// is any other file whose size is a non-zero multiple of 4 KiB).
    #[error(
        "{path} ({len} bytes) is not a memory dump vmi recognises: not an ELF core, kdump, \
         LiME, AVML or Windows crash dump, and not a raw image (raw images are a non-zero \
         multiple of 4 KiB); it starts with [{first_bytes}]"
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
    /// The reassembled bytes of a flattened kdump stream do not start with `KDUMP   `.
    #[error("the flattened kdump stream does not reassemble into a kdump file: its flat offset 0 holds [{first_bytes}], not \"KDUMP   \"")]
    KdumpNoSignature {
        /// The first bytes (up to 16) of the reassembled file in hex.
        first_bytes: String,
    },
    /// The flattened header's type or version is not 1 (the only flattened format there is).
    #[error("flattened kdump header: type {kind} version {version}, expected type 1 version 1")]
    KdumpFlattenedHeader {
        /// `type` (big-endian i64 at offset 16).
        kind: i64,
        /// `version` (big-endian i64 at offset 24).
        version: i64,
    },
    /// A flattened record has a negative offset or size (only the end marker, -1/-1, may).
    #[error(
        "flattened kdump record at file offset {at:#x}: offset {offset} or size {size} is negative"
    )]
    KdumpRecordNegative {
        /// File offset of the record header.
        at: u64,
        /// The record's flat offset.
        offset: i64,
        /// The record's size.
        size: i64,
    },
    /// A flattened record's data runs past the end of the file.
    #[error("flattened kdump record at file offset {at:#x}: {size:#x} bytes of data run past the end of the file ({file_len:#x})")]
    KdumpRecordBeyondFile {
        /// File offset of the record header.
        at: u64,
        /// The record's size.
        size: u64,
        /// Size of the file.
        file_len: u64,
    },
    /// A flattened stream has more records than vmi indexes.
    #[error("the flattened kdump stream has more than {max} records")]
    KdumpTooManyRecords {
        /// The limit.
        max: usize,
    },
    /// `block_size` is not the 4 KiB page size of x86.
    #[error("kdump block_size {block_size} is not supported (x86 dumps have 4096-byte blocks)")]
    KdumpBlockSize {
        /// `block_size`.
        block_size: u64,
    },
    /// `max_mapnr` (the number of page frames) is zero or larger than any machine.
    #[error("kdump max_mapnr {max_mapnr} is not a machine (1..={max} page frames are accepted)")]
    KdumpMaxMapnr {
        /// `max_mapnr` (`max_mapnr_64` from header version 6 on).
        max_mapnr: u64,
        /// The limit.
        max: u64,
    },
    /// The bitmaps (`bitmap_blocks`) are too small for `max_mapnr` pages.
    #[error("kdump bitmaps of {bitmap_bytes:#x} bytes each cannot describe {max_mapnr} pages")]
    KdumpBitmapTooSmall {
        /// Bytes of each bitmap (half of `bitmap_blocks * block_size`).
        bitmap_bytes: u64,
        /// Pages they must describe.
        max_mapnr: u64,
    },
    /// The bitmaps extend past the end of the dump, or are larger than the whole file.
    #[error("kdump bitmaps end at offset {end:#x}, beyond the dump ({flat_len:#x} bytes, file {file_len:#x} bytes)")]
    KdumpBitmapBeyondFile {
        /// Flat offset one past the second bitmap (saturated at `u64::MAX`).
        end: u64,
        /// Length of the (reassembled) kdump file.
        flat_len: u64,
        /// Size of the file on disk.
        file_len: u64,
    },
    /// The second bitmap marks more pages than the file holds page descriptors for.
    #[error("the kdump bitmap marks {pages} pages written, whose descriptors from offset {descs_offset:#x} run past the end of the dump ({flat_len:#x})")]
    KdumpDescriptorsBeyondFile {
        /// Pages marked written (in this file's PFN range).
        pages: u64,
        /// Flat offset of the first descriptor.
        descs_offset: u64,
        /// Length of the (reassembled) kdump file.
        flat_len: u64,
    },
    /// The VMCOREINFO, ELF note or erase-info area of the sub header lies outside the dump
    /// or is larger than vmi accepts.
    #[error("kdump {what} at offset {offset:#x} with {size:#x} bytes is outside the dump ({flat_len:#x}) or larger than {max:#x}")]
    KdumpAreaOutside {
        /// Which area ("VMCOREINFO", "ELF notes", "erase info").
        what: &'static str,
        /// Its flat offset.
        offset: u64,
        /// Its size.
        size: u64,
        /// Length of the (reassembled) kdump file.
        flat_len: u64,
        /// The largest accepted size.
        max: u64,
    },
    /// A split dump's PFN range is empty or beyond `max_mapnr`.
    #[error("kdump split dump: PFN range {start_pfn:#x}..{end_pfn:#x} is empty or beyond max_mapnr {max_mapnr:#x}")]
    KdumpSplitRange {
        /// `start_pfn_64` (or `start_pfn` before header version 6).
        start_pfn: u64,
        /// `end_pfn_64` (exclusive).
        end_pfn: u64,
        /// `max_mapnr`.
        max_mapnr: u64,
    },

    // ---- Windows crash dumps ----
    /// A Windows crash dump is malformed: the reason names the field and offset.
    #[error("Windows crash dump: {0}")]
    CrashDump(#[from] crate::crashdump::CrashDumpError),

    // ---- AVML ----
    /// An AVML block (version 2) has a size trailer that disagrees with its snappy frames.
    #[error("AVML block {index} at file offset {offset:#x}: {reason}")]
    AvmlBlock {
        /// Index of the block (range) in the file.
        index: usize,
        /// File offset of the block header.
        offset: u64,
        /// What is wrong.
        reason: AvmlBlockError,
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
        "LiME range {index} at file offset {offset:#x}: magic {found:#010x} is neither LiME's \
         0x4c694d45 nor AVML's 0x4c4d5641"
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
        "LiME range {index} at file offset {offset:#x}: version {version} is not supported (LiME \
         1, and AVML 2 with the AVML magic)"
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

/// What is wrong with an AVML (version 2, snappy-compressed) block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AvmlBlockError {
    /// The header has the AVML magic but not version 2, or version 2 without the AVML magic.
    #[error(
        "magic {magic:#010x} with version {version}: AVML blocks are magic 0x4c4d5641 version 2"
    )]
    MagicVersion {
        /// The magic.
        magic: u32,
        /// The version.
        version: u32,
    },
    /// The file ends before the block's 8-byte size trailer.
    #[error("no room for the size trailer: the file ends at {file_len:#x}")]
    NoTrailer {
        /// Size of the file.
        file_len: u64,
    },
    /// The snappy frames do not end exactly at the size trailer.
    #[error("its snappy frames end at {frames_end:#x}, not at the size trailer's {expected:#x}")]
    FramesMisaligned {
        /// File offset where the frame walk ended.
        frames_end: u64,
        /// File offset the trailer announces.
        expected: u64,
    },
    /// A snappy frame header names a reserved unskippable chunk type, or is truncated.
    #[error(
        "snappy chunk at {at:#x} has type {kind:#04x} and {len:#x} bytes, which vmi cannot read"
    )]
    BadChunk {
        /// File offset of the chunk header.
        at: u64,
        /// Chunk type byte.
        kind: u8,
        /// Chunk length.
        len: u64,
    },
    /// The block's chunks hold a different number of bytes than its header's range.
    #[error("its chunks hold {found:#x} bytes, its range {expected:#x}")]
    SizeMismatch {
        /// Bytes the chunks decompress to.
        found: u64,
        /// Bytes of the range (`e_addr - s_addr + 1`).
        expected: u64,
    },
    /// More snappy chunks than vmi indexes.
    #[error("more than {max} snappy chunks in the file")]
    TooManyChunks {
        /// The limit.
        max: usize,
    },
}

/// Reading one page (kdump) or chunk (AVML) of a compressed dump failed: the reason inside
/// [`vmi_core::MemoryError::Io`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// The dump left the page out (its dump level excluded it, or it is another split part's).
    #[error("page {pfn:#x} is not in the dump (excluded by makedumpfile's dump level)")]
    NotWritten {
        /// The page frame.
        pfn: u64,
    },
    /// An incomplete dump (makedumpfile ran out of space) has no data for the page.
    #[error("page {pfn:#x} has no data: the dump is incomplete")]
    Incomplete {
        /// The page frame.
        pfn: u64,
    },
    /// A page descriptor's size or offset is impossible.
    #[error("page {pfn:#x}: descriptor {index} says {size:#x} bytes at offset {offset:#x}, which does not fit a {block:#x}-byte page in a {flat_len:#x}-byte dump")]
    BadDescriptor {
        /// The page frame.
        pfn: u64,
        /// Index of the descriptor.
        index: u64,
        /// Its data offset.
        offset: u64,
        /// Its data size.
        size: u64,
        /// The page size.
        block: u64,
        /// Length of the (reassembled) kdump file.
        flat_len: u64,
    },
    /// An uncompressed page whose size is not the page size.
    #[error("page {pfn:#x}: stored uncompressed with {size} bytes, not {block}")]
    RawSize {
        /// The page frame.
        pfn: u64,
        /// Its data size.
        size: u64,
        /// The page size.
        block: u64,
    },
    /// The compressed data did not decompress.
    #[error("page {pfn:#x}: {method} data does not decompress ({detail})")]
    Decompress {
        /// The page frame (AVML: the first page of the chunk).
        pfn: u64,
        /// "zlib", "lzo", "snappy".
        method: &'static str,
        /// What the decompressor said.
        detail: String,
    },
    /// The data decompressed to the wrong number of bytes.
    #[error("page {pfn:#x}: {method} data decompressed to {got} bytes, not {expected}")]
    DecompressedSize {
        /// The page frame (AVML: the first page of the chunk).
        pfn: u64,
        /// "zlib", "lzo", "snappy".
        method: &'static str,
        /// Bytes produced.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A snappy chunk's CRC-32C does not match its decompressed bytes.
    #[error("page {pfn:#x}: snappy chunk checksum {found:#010x}, its data gives {computed:#010x}")]
    Checksum {
        /// The first page of the chunk.
        pfn: u64,
        /// The masked CRC-32C stored in the chunk.
        found: u32,
        /// The masked CRC-32C of the decompressed data.
        computed: u32,
    },
    /// A compression vmi does not read.
    #[error("page {pfn:#x}: compression flags {flags:#x} are not supported (zlib 0x1, lzo 0x2 and snappy 0x4 are; zstd 0x20 is not)")]
    Unsupported {
        /// The page frame.
        pfn: u64,
        /// The descriptor's flags.
        flags: u32,
    },
}
