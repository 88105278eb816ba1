//! 64-bit Windows crash dumps (`PAGEDU64`): full, bitmap, live, `.dump /k|/ka|/f` and triage
//! (small memory) dumps, read in place from the mapped file; and a writer of full and bitmap
//! dumps ([`write()`]) for tests and fixtures.
//!
//! No Windows guest runs here, and QEMU's `dump-guest-memory format=win-dmp` needs a Windows
//! guest's KDBG, so these dumps come from the writer and from layouts documented by Volatility
//! 3 (`crash64.json`, `layers/crash.py`), kdmp-parser-rs, rizin (`dmp_specs.h`) and QEMU
//! (`win_dump_defs.h`), and were checked against two real headers.
//!
//! # The header
//!
//! `_DUMP_HEADER64` is the first 0x2000 bytes: `PAGE` + `DU64`, then (little-endian)
//! `MajorVersion` 0x08 (0xF free build, 0xC checked), `MinorVersion` 0x0C (the build),
//! `DirectoryTableBase` 0x10, `PfnDataBase` 0x18, `PsLoadedModuleList` 0x20,
//! `PsActiveProcessHead` 0x28, `MachineImageType` 0x30 (0x8664), `NumberProcessors` 0x34,
//! `BugCheckCode` 0x38, `BugCheckParameter1..4` 0x40, `KdDebuggerDataBlock` 0x80, the
//! `PhysicalMemoryBlock` 0x88 (u32 runs, u64 pages, at most 43 × {u64 BasePage, u64
//! PageCount}), the `CONTEXT` 0x348 ([`context`]), the exception record 0xF00, `DumpType`
//! 0xF98, `RequiredDumpSpace` 0xFA0, `SystemTime` 0xFA8, `Comment` 0xFB0, `SystemUpTime`
//! 0x1030, `ProductType` 0x1040, `SuiteMask` 0x1044. Bytes Windows does not use hold `PAGE`,
//! so a field reading `PAGE`/`PAGEPAGE` is absent, not a value.
//!
//! The header's facts reach the session as [`vmi_core::KernelHints`]: `dtb` (as written, PCID
//! bits included), `symbols` `PsActiveProcessHead`, `PsLoadedModuleList`,
//! `KdDebuggerDataBlock`, `MmPfnDatabase` (those that are set), `os_version` `windows
//! MAJOR.MINOR` (`windows 15.19041`); the CONTEXT is vCPU 0's registers (CR3 = the header's
//! DTB, long mode inferred: see [`context`]); the rest is in `details` for `vmi info`.
//!
//! # Where the pages are
//!
//! | DumpType | what | pages |
//! |---|---|---|
//! | 1 | full | runs of the PhysicalMemoryBlock, packed from 0x2000 in run order |
//! | 5, 6 | bitmap, live kernel | `SDMP`/`FDMP` + `DUMP` at 0x2000; FirstPage +0x20 (a file offset, not page-aligned), present pages +0x28, bits +0x30, bitmap +0x38 (bit i = PFN i); set pages packed from FirstPage |
//! | 8, 9, 0xA | `.dump /k`, `/ka`, `/f` | {u32 0x40, `RDMP`, `DUMP`, u32, u64 metadata size, u64 first page} at 0x2000 (valid when size − 0x20 = first page − 0x2040); 0xA adds {u32 ranges, 2 × u16, u64 pages}, 8 and 9 two u64; then {u64 PFN, u64 count} from 0x2030 until PFN 0 (0xA: until the page total); pages packed from the first page |
//! | 4 | triage | virtual data blocks, see below |
//!
//! Types 1, 5, 6, 8, 9 and 0xA become a [`RegionTable`] over the file: reads are copies from
//! the mapping, pages outside the runs, bitmap or ranges are absent (a read touching one is
//! [`vmi_core::MemoryError::OutOfRange`], never zeros). Every count is checked against the
//! file before anything is sized by it: more than 43 runs, runs whose pages overflow or run
//! past the end of the file, a bitmap or FirstPage past the end, an `RDMP` header whose sizes
//! disagree are errors ([`CrashDumpError`]); the table holds at most one entry per page the
//! file really contains.
//!
//! # Triage dumps (DumpType 4)
//!
//! A small memory dump holds no physical memory: after the header, a `_TRIAGE_DUMP64` (at
//! 0x2000) locates copies of the crashing thread, process and PRCB, the loaded-driver list
//! (`_DUMP_DRIVER_ENTRY64`, names in a string pool) and *data blocks*, ranges of virtual
//! memory ({u64 VA, u32 file offset, u32 size}). vmi serves those VAs through the ordinary
//! stack: each page a block touches gets a synthetic physical frame (only the bytes the blocks
//! hold are in the memory map), and synthetic 4-level page tables, computed on read from a
//! sorted index (nothing sized by the dump is allocated per table), map exactly those pages.
//! Their root is the target's DTB (`KernelHints::dtb` and vCPU 0's CR3; the header's own DTB,
//! meaningless without the physical pages, is in `details`). Besides the listed blocks, the
//! KDBG copy (`DebuggerDataOffset`, at the header's `KdDebuggerDataBlock`), the data page
//! (`DataPageAddress`) and the call stack (`CallStackOffset`, from `TopOfStack`) are mapped.
//! Blocks that overlap keep the first one's bytes (by address); the overlap is reported in
//! `details`. The driver list becomes `KernelHints::modules`. Everything else is not present.
//! Neither Volatility 3 nor kdmp-parser-rs reads triage dumps; the layout is rizin's.

pub mod context;
#[doc(hidden)]
pub mod testing;
pub mod triage;
mod write;

use std::path::Path;
use std::sync::Arc;

use vmi_core::{KernelHints, PhysicalMemory, Va, X86Registers};

use crate::elf::Reader;
use crate::error::DumpError;
use crate::mapped::{MappedMemory, RegionTable, Segment};
use crate::{Dump, DumpFormat};

pub use context::ContextRegisters;
pub use triage::TriageMemory;
pub use write::{write, write_ranges, write_runs, HeaderSpec, WriteLayout};

/// Size of the dump header; the pages of a full dump start here.
pub const HEADER_SIZE: u64 = 0x2000;
/// Page size.
pub const PAGE_SIZE: u64 = 4096;
/// Most runs a full dump's PhysicalMemoryBlock holds (0x2C0 bytes between 0x88 and 0x348).
pub const MAX_RUNS: u32 = 43;
/// The header's unused bytes, as a `u32`.
pub const UNUSED_U32: u32 = u32::from_le_bytes(*b"PAGE");
/// The header's unused bytes, as a `u64`.
pub const UNUSED_U64: u64 = u64::from_le_bytes(*b"PAGEPAGE");

pub(crate) const DUMP_TYPE_FULL: u32 = 1;
pub(crate) const DUMP_TYPE_TRIAGE: u32 = 4;
pub(crate) const DUMP_TYPE_BITMAP: u32 = 5;
pub(crate) const DUMP_TYPE_LIVE: u32 = 6;
pub(crate) const DUMP_TYPE_KERNEL: u32 = 8;
pub(crate) const DUMP_TYPE_KERNEL_USER: u32 = 9;
pub(crate) const DUMP_TYPE_COMPLETE: u32 = 0xA;

/// Header field offsets.
pub(crate) mod field {
    pub const VALID_DUMP: usize = 0x4;
    pub const MAJOR: usize = 0x8;
    pub const MINOR: usize = 0xC;
    pub const DTB: usize = 0x10;
    pub const PFN_DATABASE: usize = 0x18;
    pub const LOADED_MODULES: usize = 0x20;
    pub const ACTIVE_PROCESSES: usize = 0x28;
    pub const MACHINE: usize = 0x30;
    pub const PROCESSORS: usize = 0x34;
    pub const BUGCHECK: usize = 0x38;
    pub const BUGCHECK_PARAMS: usize = 0x40;
    pub const KDBG: usize = 0x80;
    pub const RUNS: usize = 0x88;
    pub const EXCEPTION: usize = 0xF00;
    pub const EXCEPTION_SIZE: usize = 0x98;
    pub const DUMP_TYPE: usize = 0xF98;
    pub const REQUIRED_SPACE: usize = 0xFA0;
    pub const SYSTEM_TIME: usize = 0xFA8;
    pub const COMMENT: usize = 0xFB0;
    pub const COMMENT_SIZE: usize = 128;
    pub const SYSTEM_UP_TIME: usize = 0x1030;
    pub const PRODUCT_TYPE: usize = 0x1040;
    pub const SUITE_MASK: usize = 0x1044;
}

/// What is wrong with a Windows crash dump (inside [`DumpError::CrashDump`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrashDumpError {
    /// A DumpType vmi does not read (2 summary, 3 header only, 7 automatic, or unknown).
    #[error("DumpType {dump_type:#x} is not supported (1, 4, 5, 6, 8, 9 and 0xA are)")]
    UnsupportedDumpType {
        /// `DumpType` at 0xF98.
        dump_type: u32,
    },
    /// The PhysicalMemoryBlock declares more runs than its 0x2C0 bytes hold.
    #[error("the physical memory block declares {runs} runs; the header holds at most {max}")]
    TooManyRuns {
        /// `NumberOfRuns`.
        runs: u32,
        /// The limit (43).
        max: u32,
    },
    /// A run or range whose pages overflow the 64-bit address space or file offsets.
    #[error("{what} {index}: {page_count:#x} pages from PFN {base_page:#x} overflow 64 bits")]
    RunOverflow {
        /// "run" (full dump), "range" (`RDMP` dumps) or "bitmap run".
        what: &'static str,
        /// Its index (a bitmap run: its first PFN).
        index: u64,
        /// First page frame.
        base_page: u64,
        /// Number of pages.
        page_count: u64,
    },
    /// The pages a run, range or bitmap announces run past the end of the file.
    #[error("{what} {index}: its pages end at file offset {end:#x}, past the end of the file ({file_len:#x})")]
    PagesBeyondFile {
        /// "run", "range" or "bitmap run".
        what: &'static str,
        /// Its index (a bitmap run: its first PFN).
        index: u64,
        /// File offset one past its last page (saturated).
        end: u64,
        /// Size of the file.
        file_len: u64,
    },
    /// The bitmap header at 0x2000 is not `SDMP`/`FDMP` + `DUMP`.
    #[error("bitmap dump header at 0x2000 reads {signature:?}, not \"SDMP\"/\"FDMP\" + \"DUMP\"")]
    BitmapSignature {
        /// The 8 bytes found, lossily as text.
        signature: String,
    },
    /// The bitmap's bits do not fit in the file.
    #[error("the bitmap of {bits:#x} bits ends at file offset {end:#x}, past the end of the file ({file_len:#x})")]
    BitmapBeyondFile {
        /// `Pages` (number of bits).
        bits: u64,
        /// File offset one past the bitmap (saturated).
        end: u64,
        /// Size of the file.
        file_len: u64,
    },
    /// The first page's file offset lies inside the headers or past the end of the file.
    #[error("the first page is at file offset {first_page:#x}: before the end of the headers ({min:#x}) or past the end of the file ({file_len:#x})")]
    FirstPageOutside {
        /// FirstPage / first page offset.
        first_page: u64,
        /// Where the headers end.
        min: u64,
        /// Size of the file.
        file_len: u64,
    },
    /// The `RDMP` header at 0x2000 has the wrong marker or signatures.
    #[error(
        "RDMP header at 0x2000: marker {marker:#x} and {signature:?}, not 0x40 and \"RDMPDUMP\""
    )]
    RdmpHeader {
        /// The first u32 (0x40 expected).
        marker: u32,
        /// The next 8 bytes, lossily as text.
        signature: String,
    },
    /// The `RDMP` metadata size and first page offset disagree.
    #[error("RDMP metadata size {metadata_size:#x} and first page offset {first_page:#x} disagree (size - 0x20 must equal offset - 0x2040, and size be a multiple of 16)")]
    RdmpMetadataMismatch {
        /// Metadata size.
        metadata_size: u64,
        /// First page offset.
        first_page: u64,
    },
    /// A complete (`.dump /f`) dump's ranges hold more pages than its header says.
    #[error("RDMP ranges hold {counted:#x} pages, more than the header's total {total:#x}")]
    RdmpPageTotal {
        /// Pages counted so far.
        counted: u64,
        /// `TotalNumberOfPages`.
        total: u64,
    },
    /// A triage dump's table (data blocks, drivers) lies outside the file or is too long.
    #[error("triage {what}: {count} entries of {entry_size:#x} bytes at file offset {offset:#x} do not fit the file ({file_len:#x}) or exceed {max} entries")]
    TriageTableOutside {
        /// "data blocks" or "driver list".
        what: &'static str,
        /// File offset of the table.
        offset: u64,
        /// Number of entries.
        count: u64,
        /// Size of one entry.
        entry_size: u64,
        /// Size of the file.
        file_len: u64,
        /// Most entries accepted.
        max: u64,
    },
    /// A triage data block's bytes lie outside the file.
    #[error("triage {what} {index}: {size:#x} bytes at file offset {offset:#x} are outside the file ({file_len:#x})")]
    TriageBlockOutside {
        /// "data block", "debugger data", "data page" or "call stack".
        what: &'static str,
        /// Index among the data blocks (0 for the others).
        index: u64,
        /// File offset.
        offset: u64,
        /// Size.
        size: u64,
        /// Size of the file.
        file_len: u64,
    },
    /// A triage data block's virtual range wraps or is not canonical (4-level paging).
    #[error("triage {what} {index}: {size:#x} bytes at {va:#x} are not a canonical virtual range")]
    TriageBlockAddress {
        /// "data block", "debugger data", "data page" or "call stack".
        what: &'static str,
        /// Index among the data blocks (0 for the others).
        index: u64,
        /// Virtual address.
        va: u64,
        /// Size.
        size: u64,
    },
    /// A triage dump's blocks touch more pages than vmi maps.
    #[error("triage data blocks touch {pages} pages, more than the {max} vmi maps")]
    TriageTooLarge {
        /// Pages touched (saturated).
        pages: u64,
        /// The limit.
        max: u64,
    },
}

/// The kind of crash dump, by `DumpType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DumpKind {
    /// 1: full dump, physical runs.
    Full,
    /// 4: triage (small memory) dump, virtual data blocks.
    Triage,
    /// 5: bitmap dump.
    Bitmap,
    /// 6: live kernel dump (bitmap layout).
    LiveKernel,
    /// 8: kernel memory dump (`.dump /k`, `RDMP`).
    Kernel,
    /// 9: kernel and user memory dump (`.dump /ka`, `RDMP`).
    KernelAndUser,
    /// 0xA: complete memory dump (`.dump /f`, `RDMP`).
    Complete,
}

impl DumpKind {
    /// The kind of a `DumpType` value, if vmi reads it.
    pub fn from_dump_type(dump_type: u32) -> Option<Self> {
        Some(match dump_type {
            DUMP_TYPE_FULL => DumpKind::Full,
            DUMP_TYPE_TRIAGE => DumpKind::Triage,
            DUMP_TYPE_BITMAP => DumpKind::Bitmap,
            DUMP_TYPE_LIVE => DumpKind::LiveKernel,
            DUMP_TYPE_KERNEL => DumpKind::Kernel,
            DUMP_TYPE_KERNEL_USER => DumpKind::KernelAndUser,
            DUMP_TYPE_COMPLETE => DumpKind::Complete,
            _ => return None,
        })
    }

    /// The `DumpType` value.
    pub fn dump_type(self) -> u32 {
        match self {
            DumpKind::Full => DUMP_TYPE_FULL,
            DumpKind::Triage => DUMP_TYPE_TRIAGE,
            DumpKind::Bitmap => DUMP_TYPE_BITMAP,
            DumpKind::LiveKernel => DUMP_TYPE_LIVE,
            DumpKind::Kernel => DUMP_TYPE_KERNEL,
            DumpKind::KernelAndUser => DUMP_TYPE_KERNEL_USER,
            DumpKind::Complete => DUMP_TYPE_COMPLETE,
        }
    }

    /// A name for `vmi info`.
    pub fn name(self) -> &'static str {
        match self {
            DumpKind::Full => "full",
            DumpKind::Triage => "triage (small memory dump)",
            DumpKind::Bitmap => "bitmap",
            DumpKind::LiveKernel => "live kernel (bitmap)",
            DumpKind::Kernel => "kernel memory (.dump /k)",
            DumpKind::KernelAndUser => "kernel and user memory (.dump /ka)",
            DumpKind::Complete => "complete memory (.dump /f)",
        }
    }
}

/// The fields of `_DUMP_HEADER64` vmi reads. Fields holding `PAGE` (unused) read as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// `MajorVersion` (0xF free build, 0xC checked).
    pub major_version: u32,
    /// `MinorVersion` (the build number).
    pub minor_version: u32,
    /// `DirectoryTableBase`, as written.
    pub directory_table_base: u64,
    /// `PfnDataBase`.
    pub pfn_database: Option<u64>,
    /// `PsLoadedModuleList`.
    pub ps_loaded_module_list: Option<u64>,
    /// `PsActiveProcessHead`.
    pub ps_active_process_head: Option<u64>,
    /// `MachineImageType` (0x8664).
    pub machine_image_type: u32,
    /// `NumberProcessors`.
    pub number_processors: u32,
    /// `BugCheckCode`.
    pub bugcheck_code: u32,
    /// `BugCheckParameter1..4`.
    pub bugcheck_parameters: [u64; 4],
    /// `KdDebuggerDataBlock`.
    pub kd_debugger_data_block: Option<u64>,
    /// `DumpType`.
    pub dump_type: u32,
    /// `RequiredDumpSpace`.
    pub required_dump_space: Option<u64>,
    /// `SystemTime` (FILETIME).
    pub system_time: Option<u64>,
    /// `SystemUpTime` (100 ns units).
    pub system_up_time: Option<u64>,
    /// `ProductType`.
    pub product_type: Option<u32>,
    /// `SuiteMask`.
    pub suite_mask: Option<u32>,
    /// `Comment`, if it holds text.
    pub comment: Option<String>,
}

fn set_u64(v: u64) -> Option<u64> {
    (v != 0 && v != UNUSED_U64).then_some(v)
}

fn set_u32(v: u32) -> Option<u32> {
    (v != UNUSED_U32).then_some(v)
}

impl Header {
    /// Parses the header (`bytes` is the whole file).
    pub fn parse(bytes: &[u8]) -> Result<Header, DumpError> {
        let h = crate::elf::slice(bytes, 0, HEADER_SIZE).ok_or(DumpError::TruncatedHeader {
            what: "crash dump header",
            offset: 0,
            needed: HEADER_SIZE,
            file_len: bytes.len() as u64,
        })?;
        let r = Reader(h);
        let comment = h
            .get(field::COMMENT..field::COMMENT + field::COMMENT_SIZE)
            .and_then(|c| {
                let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                let text = c.get(..end)?;
                (!text.is_empty() && !text.starts_with(b"PAGE"))
                    .then(|| String::from_utf8_lossy(text).into_owned())
            });
        Ok(Header {
            major_version: r.u32(field::MAJOR),
            minor_version: r.u32(field::MINOR),
            directory_table_base: r.u64(field::DTB),
            pfn_database: set_u64(r.u64(field::PFN_DATABASE)),
            ps_loaded_module_list: set_u64(r.u64(field::LOADED_MODULES)),
            ps_active_process_head: set_u64(r.u64(field::ACTIVE_PROCESSES)),
            machine_image_type: r.u32(field::MACHINE),
            number_processors: r.u32(field::PROCESSORS),
            bugcheck_code: r.u32(field::BUGCHECK),
            bugcheck_parameters: [0, 1, 2, 3].map(|i| r.u64(field::BUGCHECK_PARAMS + 8 * i)),
            kd_debugger_data_block: set_u64(r.u64(field::KDBG)),
            dump_type: r.u32(field::DUMP_TYPE),
            required_dump_space: set_u64(r.u64(field::REQUIRED_SPACE)),
            system_time: set_u64(r.u64(field::SYSTEM_TIME)),
            system_up_time: set_u64(r.u64(field::SYSTEM_UP_TIME)),
            product_type: set_u32(r.u32(field::PRODUCT_TYPE)),
            suite_mask: set_u32(r.u32(field::SUITE_MASK)),
            comment,
        })
    }
}

/// Whether `bytes` start like a 64-bit Windows crash dump (`PAGEDU64`).
pub fn is_crashdump(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PAGEDU64")
}

/// How the pages of a parsed dump are found.
#[derive(Debug, Clone)]
pub enum Pages {
    /// Physical pages in the file (types 1, 5, 6, 8, 9, 0xA).
    Physical(RegionTable),
    /// Virtual data blocks behind synthetic page tables (type 4).
    Triage(Box<triage::TriageLayout>),
}

/// A parsed crash dump: the header, where its pages are, and what it says of the kernel.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CrashDump {
    /// The header.
    pub header: Header,
    /// The dump's kind.
    pub kind: DumpKind,
    /// The crashing processor's registers (CR3: the header's DTB, or a triage dump's
    /// synthetic root).
    pub registers: X86Registers,
    /// Where the pages are.
    pub pages: Pages,
    /// What the header says of the kernel.
    pub kernel_hints: KernelHints,
    /// Facts for `vmi info`.
    pub details: Vec<(String, String)>,
}

/// Parses a crash dump (`bytes` is the whole file) without copying its pages.
///
/// ```
/// use vmi_backend_file::crashdump::{self, DumpKind, HeaderSpec, WriteLayout};
/// use vmi_core::Pa;
///
/// let page = vec![7u8; 0x1000];
/// let mut file = Vec::new();
/// let spec = HeaderSpec { minor_version: 22000, ..Default::default() };
/// crashdump::write_runs(&mut file, &spec, WriteLayout::Full, &[(Pa::new(0x3000), &page[..])])?;
/// let dump = crashdump::parse(&file)?;
/// assert_eq!(dump.kind, DumpKind::Full);
/// assert_eq!(dump.kernel_hints.os_version.as_deref(), Some("windows 15.22000"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse(bytes: &[u8]) -> Result<CrashDump, DumpError> {
    let header = Header::parse(bytes)?;
    let kind =
        DumpKind::from_dump_type(header.dump_type).ok_or(CrashDumpError::UnsupportedDumpType {
            dump_type: header.dump_type,
        })?;
    let file_len = bytes.len() as u64;
    let mut details: Vec<(String, String)> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let (pages, dtb, modules) = match kind {
        DumpKind::Full => {
            let segs = full_runs(bytes, &mut warnings)?;
            (physical(segs, file_len, &mut details)?, None, Vec::new())
        }
        DumpKind::Bitmap | DumpKind::LiveKernel => {
            let segs = bitmap_runs(bytes, &mut details, &mut warnings)?;
            (physical(segs, file_len, &mut details)?, None, Vec::new())
        }
        DumpKind::Kernel | DumpKind::KernelAndUser | DumpKind::Complete => {
            let segs = rdmp_ranges(bytes, kind, &mut details, &mut warnings)?;
            (physical(segs, file_len, &mut details)?, None, Vec::new())
        }
        DumpKind::Triage => {
            let t = triage::parse(bytes, &header, &mut details, &mut warnings)?;
            let root = t.layout.root();
            (Pages::Triage(Box::new(t.layout)), Some(root), t.modules)
        }
    };
    let cr3 = dtb.unwrap_or(header.directory_table_base);
    let registers = context::decode(
        bytes
            .get(context::CONTEXT_OFFSET..context::CONTEXT_OFFSET + context::CONTEXT_SIZE)
            .unwrap_or_default(),
        cr3,
    );
    let mut kernel_hints = KernelHints::default();
    kernel_hints.dtb = Some(cr3);
    for (name, value) in [
        ("PsActiveProcessHead", header.ps_active_process_head),
        ("PsLoadedModuleList", header.ps_loaded_module_list),
        ("KdDebuggerDataBlock", header.kd_debugger_data_block),
        ("MmPfnDatabase", header.pfn_database),
    ] {
        if let Some(v) = value {
            kernel_hints.symbols.insert(name.to_owned(), Va::new(v));
        }
    }
    kernel_hints.os_version = Some(format!(
        "windows {}.{}",
        header.major_version, header.minor_version
    ));
    kernel_hints.modules = modules;

    let mut all = header_details(&header, kind);
    all.append(&mut details);
    if dtb.is_some() {
        all.push((
            "dtb".into(),
            format!(
                "{cr3:#x} (synthetic page tables of the data blocks; the header's is {:#x})",
                header.directory_table_base
            ),
        ));
    }
    all.push((
        "registers".into(),
        "the header's CONTEXT as vCPU 0; CR0/CR4/EFER inferred (64-bit kernel, 4-level paging)"
            .into(),
    ));
    if !warnings.is_empty() {
        all.push(("warnings".into(), warnings.join("; ")));
    }
    Ok(CrashDump {
        header,
        kind,
        registers,
        pages,
        kernel_hints,
        details: all,
    })
}

fn header_details(h: &Header, kind: DumpKind) -> Vec<(String, String)> {
    let mut d: Vec<(String, String)> = vec![
        (
            "dump_type".into(),
            format!("{} ({})", h.dump_type, kind.name()),
        ),
        (
            "version".into(),
            format!(
                "{}.{} ({} build)",
                h.major_version,
                h.minor_version,
                match h.major_version {
                    0xF => "free",
                    0xC => "checked",
                    _ => "unknown",
                }
            ),
        ),
        (
            "bugcheck".into(),
            format!(
                "{:#x} ({:#x}, {:#x}, {:#x}, {:#x})",
                h.bugcheck_code,
                h.bugcheck_parameters[0],
                h.bugcheck_parameters[1],
                h.bugcheck_parameters[2],
                h.bugcheck_parameters[3]
            ),
        ),
        ("processors".into(), h.number_processors.to_string()),
        ("machine".into(), format!("{:#x}", h.machine_image_type)),
        (
            "header_dtb".into(),
            format!("{:#x}", h.directory_table_base),
        ),
    ];
    if let Some(t) = h.system_time {
        d.push(("system_time".into(), filetime(t)));
    }
    if let Some(t) = h.system_up_time {
        d.push((
            "system_up_time".into(),
            format!("{}.{:03} s", t / 10_000_000, (t / 10_000) % 1000),
        ));
    }
    if let Some(p) = h.product_type {
        d.push(("product_type".into(), p.to_string()));
    }
    if let Some(s) = h.suite_mask {
        d.push(("suite_mask".into(), format!("{s:#x}")));
    }
    if let Some(c) = &h.comment {
        d.push(("comment".into(), c.clone()));
    }
    d
}

/// A FILETIME as `YYYY-MM-DD HH:MM:SS UTC` (and its raw value).
fn filetime(ft: u64) -> String {
    const UNIX_EPOCH_SECONDS: u64 = 11_644_473_600;
    let Some(secs) = (ft / 10_000_000).checked_sub(UNIX_EPOCH_SECONDS) else {
        return format!("{ft:#x} (before 1970)");
    };
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC ({ft:#x})",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Segments of physical pages packed from `first_offset`, built run by run with every count
/// checked against the file.
struct Packer {
    segments: Vec<Segment>,
    offset: u64,
    pages: u64,
    file_len: u64,
}

impl Packer {
    fn new(first_offset: u64, file_len: u64) -> Self {
        Self {
            segments: Vec::new(),
            offset: first_offset,
            pages: 0,
            file_len,
        }
    }

    fn push(
        &mut self,
        what: &'static str,
        index: u64,
        base_page: u64,
        page_count: u64,
    ) -> Result<(), CrashDumpError> {
        if page_count == 0 {
            return Ok(());
        }
        let overflow = CrashDumpError::RunOverflow {
            what,
            index,
            base_page,
            page_count,
        };
        let len = page_count.checked_mul(PAGE_SIZE).ok_or(overflow.clone())?;
        let start = base_page
            .checked_mul(PAGE_SIZE)
            .filter(|s| s.checked_add(len).is_some())
            .ok_or(overflow)?;
        let end = self.offset.saturating_add(len);
        if end > self.file_len {
            return Err(CrashDumpError::PagesBeyondFile {
                what,
                index,
                end,
                file_len: self.file_len,
            });
        }
        self.segments.push(Segment {
            index: self.segments.len(),
            start,
            len,
            file_offset: self.offset,
        });
        self.offset = end;
        self.pages += page_count;
        Ok(())
    }
}

fn physical(
    packer: Packer,
    file_len: u64,
    details: &mut Vec<(String, String)>,
) -> Result<Pages, DumpError> {
    let runs = packer.segments.len();
    let table = RegionTable::new(packer.segments, file_len)?;
    details.push((
        "pages".into(),
        format!(
            "{} present in {} runs ({} regions)",
            packer.pages,
            runs,
            table.memory_map().len()
        ),
    ));
    Ok(Pages::Physical(table))
}

fn full_runs(bytes: &[u8], warnings: &mut Vec<String>) -> Result<Packer, DumpError> {
    let r = Reader(bytes);
    let runs = r.u32(field::RUNS);
    if runs > MAX_RUNS {
        return Err(CrashDumpError::TooManyRuns {
            runs,
            max: MAX_RUNS,
        }
        .into());
    }
    let declared = r.u64(field::RUNS + 8);
    let mut packer = Packer::new(HEADER_SIZE, bytes.len() as u64);
    for i in 0..runs as usize {
        let base = r.u64(field::RUNS + 16 + 16 * i);
        let count = r.u64(field::RUNS + 24 + 16 * i);
        packer.push("run", i as u64, base, count)?;
    }
    if declared != packer.pages {
        warnings.push(format!(
            "the physical memory block says {declared:#x} pages, its runs hold {:#x}",
            packer.pages
        ));
    }
    Ok(packer)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn bitmap_runs(
    bytes: &[u8],
    details: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> Result<Packer, DumpError> {
    let file_len = bytes.len() as u64;
    let hdr_len = write::BITMAP_HEADER_SIZE;
    let h = crate::elf::slice(bytes, HEADER_SIZE, hdr_len).ok_or(DumpError::TruncatedHeader {
        what: "bitmap dump header",
        offset: HEADER_SIZE,
        needed: hdr_len,
        file_len,
    })?;
    let sig = h.get(0..8).unwrap_or_default();
    if !(sig == b"SDMPDUMP" || sig == b"FDMPDUMP") {
        return Err(CrashDumpError::BitmapSignature {
            signature: lossy(sig),
        }
        .into());
    }
    let r = Reader(h);
    let (first_page, present, bits) = (r.u64(0x20), r.u64(0x28), r.u64(0x30));
    let bitmap_start = HEADER_SIZE + hdr_len;
    let bitmap_end = bitmap_start.saturating_add(bits.div_ceil(8));
    if bitmap_end > file_len {
        return Err(CrashDumpError::BitmapBeyondFile {
            bits,
            end: bitmap_end,
            file_len,
        }
        .into());
    }
    if first_page < bitmap_end || first_page > file_len {
        return Err(CrashDumpError::FirstPageOutside {
            first_page,
            min: bitmap_end,
            file_len,
        }
        .into());
    }
    let bitmap =
        crate::elf::slice(bytes, bitmap_start, bitmap_end - bitmap_start).unwrap_or_default();
    let mut packer = Packer::new(first_page, file_len);
    let mut run_start: Option<u64> = None;
    for (i, &raw) in bitmap.iter().enumerate() {
        let base = i as u64 * 8;
        // Bits past `bits` in the last byte are not pages.
        let valid = (bits - base).min(8);
        let byte = if valid < 8 {
            raw & ((1u16 << valid) - 1) as u8
        } else {
            raw
        };
        if byte == 0xFF && run_start.is_some() {
            continue;
        }
        if byte == 0 && run_start.is_none() {
            continue;
        }
        for bit in 0..8u64 {
            let pfn = base + bit;
            if byte & (1 << bit) != 0 {
                run_start.get_or_insert(pfn);
            } else if let Some(s) = run_start.take() {
                packer.push("bitmap run", s, s, pfn - s)?;
            }
        }
    }
    if let Some(s) = run_start {
        packer.push("bitmap run", s, s, bits - s)?;
    }
    details.push((
        "bitmap".into(),
        format!(
            "{}, {bits:#x} bits, first page at file offset {first_page:#x}",
            lossy(&sig[..4])
        ),
    ));
    if present != packer.pages {
        warnings.push(format!(
            "the bitmap header says {present:#x} present pages, its bits mark {:#x}",
            packer.pages
        ));
    }
    Ok(packer)
}

/// Offset of the ranges in an `RDMP` dump.
pub(crate) const RDMP_RANGES: u64 = 0x2030;

fn rdmp_ranges(
    bytes: &[u8],
    kind: DumpKind,
    details: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> Result<Packer, DumpError> {
    let file_len = bytes.len() as u64;
    let h = crate::elf::slice(bytes, HEADER_SIZE, RDMP_RANGES - HEADER_SIZE).ok_or(
        DumpError::TruncatedHeader {
            what: "RDMP header",
            offset: HEADER_SIZE,
            needed: RDMP_RANGES - HEADER_SIZE,
            file_len,
        },
    )?;
    let r = Reader(h);
    let marker = r.u32(0);
    let sig = h.get(4..12).unwrap_or_default();
    if marker != 0x40 || sig != b"RDMPDUMP" {
        return Err(CrashDumpError::RdmpHeader {
            marker,
            signature: lossy(sig),
        }
        .into());
    }
    let (metadata_size, first_page) = (r.u64(0x10), r.u64(0x18));
    let consistent = metadata_size
        .checked_sub(0x20)
        .is_some_and(|m| first_page.checked_sub(0x2040) == Some(m) && metadata_size % 16 == 0);
    if !consistent {
        return Err(CrashDumpError::RdmpMetadataMismatch {
            metadata_size,
            first_page,
        }
        .into());
    }
    if first_page > file_len {
        return Err(CrashDumpError::FirstPageOutside {
            first_page,
            min: RDMP_RANGES,
            file_len,
        }
        .into());
    }
    let total = (kind == DumpKind::Complete).then(|| r.u64(0x28));
    let mut packer = Packer::new(first_page, file_len);
    let mut at = RDMP_RANGES;
    let mut ranges = 0u64;
    // The ranges end at a zero PFN (or, in a complete dump, at the page total); they never
    // reach into the pages, and the loop is bounded by the metadata the file holds.
    for index in 0..metadata_size / 16 {
        if total.is_some_and(|t| packer.pages >= t) || at + 16 > first_page {
            break;
        }
        let e = Reader(crate::elf::slice(bytes, at, 16).unwrap_or_default());
        let (pfn, count) = (e.u64(0), e.u64(8));
        if pfn == 0 {
            break;
        }
        packer.push("range", index, pfn, count)?;
        if let Some(t) = total.filter(|&t| packer.pages > t) {
            return Err(CrashDumpError::RdmpPageTotal {
                counted: packer.pages,
                total: t,
            }
            .into());
        }
        ranges += 1;
        at += 16;
    }
    details.push((
        "rdmp".into(),
        format!("{ranges} ranges, first page at file offset {first_page:#x}"),
    ));
    if kind == DumpKind::Complete {
        let declared = r.u32(0x20);
        if u64::from(declared) != ranges {
            warnings.push(format!(
                "the RDMP header says {declared} ranges, {ranges} were read"
            ));
        }
    }
    Ok(packer)
}

/// Opens a parsed crash dump over `bytes` as a [`Dump`].
pub(crate) fn open<B>(bytes: B, path: &Path) -> Result<Dump, DumpError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let parsed = parse(bytes.as_ref())?;
    let mut details = vec![("path".to_owned(), path.display().to_string())];
    details.extend(parsed.details);
    let memory: Arc<dyn PhysicalMemory> = match parsed.pages {
        Pages::Physical(table) => Arc::new(MappedMemory::new(bytes, table)?),
        Pages::Triage(layout) => Arc::new(TriageMemory::new(bytes, *layout)?),
    };
    Ok(Dump {
        format: DumpFormat::WindowsCrashDump,
        slow_reads: false,
        memory,
        registers: None,
        vmcoreinfo: None,
        details,
        kernel_hints: parsed.kernel_hints,
        context_registers: Some(Arc::new(ContextRegisters::new(parsed.registers))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetime_is_utc() {
        // 2024-02-29 12:34:56 UTC.
        let ft = (1_709_210_096 + 11_644_473_600) * 10_000_000;
        assert!(filetime(ft).starts_with("2024-02-29 12:34:56 UTC"));
        assert!(filetime(5).contains("before 1970"));
    }
}
