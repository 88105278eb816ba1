//! Memory dumps for vmi: raw images, ELF cores (QEMU `dump-guest-memory`, with vCPU state) and
//! LiME images, memory-mapped and read through [`vmi_core::PhysicalMemory`].
//!
//! - [`Dump`]: opens a file, detects its format from its content (never from its name) and
//!   hands a [`vmi_core::Target`] to a session; [`DumpFormat`] names the formats.
//! - [`elf`]: a zero-copy, no-panic parser of ELF core files (program headers, notes);
//!   [`elf::parse`] works on any `&[u8]`.
//! - [`notes`]: NT_PRSTATUS, QEMU CPU state and VMCOREINFO notes, with their exact layouts.
//! - [`registers`]: vCPU registers of an ELF core, and how EFER is inferred.
//! - [`lime`]: the LiME parser ([`lime::parse`]) and writer ([`lime::write`]).
//! - [`avml`]: AVML captures, LiME framing with snappy-compressed blocks, decompressed chunk
//!   by chunk.
//! - [`kdump`]: makedumpfile's kdump-compressed files, flat and flattened, decompressed page by
//!   page ([`lzo`]: the LZO1X decoder they need).
//! - [`crashdump`]: 64-bit Windows crash dumps (full, bitmap, live, `RDMP` and triage), with
//!   the header's kernel facts as [`vmi_core::KernelHints`], and a writer of full and bitmap
//!   dumps.
//! - [`raw`]: when a file is taken as a raw image.
//! - [`mapped`]: the region table and the [`vmi_core::PhysicalMemory`] read path.
//! - [`error`]: [`DumpError`], one variant per malformation.
//!
//! The crate registers the `file` backend: a target spec `file:PATH`, or a bare path to an
//! existing file, opens a dump. The spec has no options (a `?` or `:` may be part of a file
//! name); [`Dump::open_as`] forces a format from code.
//!
//! # Formats and detection
//!
//! | content                         | format          | registers |
//! |---------------------------------|-----------------|-----------|
//! | `7f 45 4c 46` (ELF), `ET_CORE`  | `elf-core`      | from notes, if any |
//! | `45 4d 69 4c` (LiME magic)      | `lime` (`avml` if a later block is compressed) | none |
//! | `41 56 4d 4c` (AVML magic)      | `avml`          | none |
//! | `KDUMP   `                      | `kdump`         | from its ELF notes |
//! | `makedumpfile` + NULs           | `kdump-flattened` | from its ELF notes |
//! | `PAGEDU64` (Windows crash dump) | `windows-crashdump` | the header's CONTEXT (vCPU 0) |
//! | anything else, size a non-zero multiple of 4 KiB | `raw` (from physical 0) | none |
//! | anything else                   | [`DumpError::UnknownFormat`] | |
//!
//! A file that starts like one of these but is malformed is an error, never a raw image.
//!
//! Regular files only: a FIFO, device or directory given as a dump is refused with
//! [`DumpError::NotARegularFile`] before it is opened (opening a FIFO would block until a
//! writer came, which for a mistyped `--target` is forever).
//!
//! # Reads
//!
//! Memory is the file's bytes, found through a sorted table of physical regions. A read may
//! cross from one region into a physically adjacent one; a read touching a hole (or the part
//! of an ELF segment beyond `p_filesz`) is [`vmi_core::MemoryError::OutOfRange`], never zeros.
//!
//! ```no_run
//! use vmi_backend_file::{Dump, DumpFormat};
//! use vmi_core::{Pa, PhysicalMemoryExt};
//!
//! let dump = Dump::open("memory.elf")?;
//! assert_eq!(dump.format(), DumpFormat::ElfCore);
//! let word = dump.memory().read_u64(Pa::new(0x1000))?;
//! if let Some(regs) = dump.registers() {
//!     println!("{} vCPUs, vCPU 0 CR3 {:#x}", regs.vcpus().len(), regs.vcpus()[0].cr3);
//! }
//! let target = dump.into_target(); // for vmi_core::Session::from_target
//! # let _ = (word, target);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod avml;
pub mod crashdump;
pub mod elf;
pub mod error;
pub mod kdump;
pub mod lime;
pub mod lzo;
pub mod mapped;
pub mod notes;
pub mod raw;
pub mod registers;

#[cfg(test)]
mod test_util;

use std::fmt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmi_core::registry::{BackendFactory, SpecMatch};
use vmi_core::{BoxError, KernelHints, OpenOptions, PhysicalMemory, Target, VcpuRegisters};

pub use error::DumpError;
pub use mapped::{MappedMemory, RegionTable, Segment};
pub use registers::DumpRegisters;

/// The format of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DumpFormat {
    /// A raw image of physical memory from address 0.
    Raw,
    /// An ELF core file (QEMU `dump-guest-memory`, Linux `/proc/vmcore`, ...).
    ElfCore,
    /// A LiME image.
    Lime,
    /// makedumpfile's kdump-compressed format, flat.
    Kdump,
    /// The same, flattened (a stream of records, as QEMU 7.2 writes it).
    KdumpFlattened,
    /// An AVML capture with snappy-compressed blocks (`avml --compress`); an uncompressed AVML
    /// capture is LiME.
    Avml,
    /// A 64-bit Windows crash dump (`PAGEDU64`, any DumpType vmi reads).
    WindowsCrashDump,
}

impl DumpFormat {
    /// The format's name in `vmi info`: "raw", "elf-core", "lime", "avml", "kdump",
    /// "kdump-flattened" or "windows-crashdump".
    pub const fn name(self) -> &'static str {
        match self {
            DumpFormat::Raw => "raw",
            DumpFormat::ElfCore => "elf-core",
            DumpFormat::Lime => "lime",
            DumpFormat::Kdump => "kdump",
            DumpFormat::KdumpFlattened => "kdump-flattened",
            DumpFormat::Avml => "avml",
            DumpFormat::WindowsCrashDump => "windows-crashdump",
        }
    }

    /// The format announced by the first bytes of a file (ELF, LiME, AVML, kdump, flattened
    /// kdump). Raw images have no signature, so this never returns [`DumpFormat::Raw`].
    pub fn detect(bytes: &[u8]) -> Option<DumpFormat> {
        if elf::is_elf(bytes) {
            Some(DumpFormat::ElfCore)
        } else if lime::is_lime(bytes) {
            Some(DumpFormat::Lime)
        } else if avml::is_avml(bytes) {
            Some(DumpFormat::Avml)
        } else if kdump::is_kdump(bytes) {
            Some(DumpFormat::Kdump)
        } else if kdump::is_flattened(bytes) {
            Some(DumpFormat::KdumpFlattened)
        } else if crashdump::is_crashdump(bytes) {
            Some(DumpFormat::WindowsCrashDump)
        } else {
            None
        }
    }
}

impl fmt::Display for DumpFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An opened memory dump.
pub struct Dump {
    format: DumpFormat,
    /// Reads decompress (kdump): the session puts its page cache in front.
    slow_reads: bool,
    memory: Arc<dyn PhysicalMemory>,
    registers: Option<Arc<DumpRegisters>>,
    vmcoreinfo: Option<String>,
    details: Vec<(String, String)>,
    /// What the dump header says of the kernel (Windows crash dumps).
    kernel_hints: KernelHints,
    /// A Windows crash dump's CONTEXT, as vCPU 0.
    context_registers: Option<Arc<crashdump::ContextRegisters>>,
}

/// How a dump's bytes become physical memory.
enum Layout {
    /// Regions of the file, read in place.
    Table(RegionTable),
    /// Compressed pages.
    Kdump(Box<kdump::Kdump>),
    /// Snappy chunks and stored blocks.
    Avml(Box<avml::Avml>),
}

/// What parsing a dump yields before its bytes are moved into the memory object.
struct Parsed {
    layout: Layout,
    registers: Option<DumpRegisters>,
    vmcoreinfo: Option<String>,
    details: Vec<(String, String)>,
}

impl Dump {
    /// Opens the dump at `path`, detecting its format from its content.
    pub fn open(path: impl AsRef<Path>) -> Result<Dump, DumpError> {
        Self::open_inner(path.as_ref(), None)
    }

    /// Opens the dump at `path` as `format`, without detection: for a raw image that happens
    /// to start with an ELF or LiME magic, or whose size is not a multiple of 4 KiB.
    pub fn open_as(path: impl AsRef<Path>, format: DumpFormat) -> Result<Dump, DumpError> {
        Self::open_inner(path.as_ref(), Some(format))
    }

    /// A dump over bytes already in memory (fuzzing, tests, dumps received over a network),
    /// detected like [`Dump::open`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Dump, DumpError> {
        Self::build(bytes, Path::new("<bytes>"), None)
    }

    fn open_inner(path: &Path, format: Option<DumpFormat>) -> Result<Dump, DumpError> {
        let io = |source| DumpError::Io {
            path: path.to_owned(),
            source,
        };
        // Look before opening: opening a FIFO blocks until a writer appears (forever, for a
        // mistyped --target), and a device may have side effects. The open itself does not
        // block either, should the path be swapped for a FIFO in between.
        let kind = file_kind(&std::fs::metadata(path).map_err(io)?);
        if let Some(kind) = kind {
            return Err(DumpError::NotARegularFile {
                path: path.to_owned(),
                kind,
            });
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if let Some(kind) = file_kind(&meta) {
            return Err(DumpError::NotARegularFile {
                path: path.to_owned(),
                kind,
            });
        }
        if meta.len() == 0 {
            // An empty file cannot be mapped, and is no dump.
            return Err(DumpError::UnknownFormat {
                path: path.to_owned(),
                len: 0,
                first_bytes: String::new(),
            });
        }
        // SAFETY: the map is read-only and is only ever read as plain bytes (`u8` has no
        // invalid values, and nothing of it is reinterpreted as a typed Rust value: every
        // field is decoded by value). The remaining hazard is another process changing the
        // file while it is mapped. Dumps are files at rest, written once by QEMU, LiME or a
        // copy; vmi documents that an open dump must not be modified. Should it happen anyway,
        // a rewrite yields different bytes, which every parser and reader already treats as
        // hostile data (bounds were checked against the mapping's fixed length, not against
        // the content), and truncation makes the process fault with SIGBUS, not read out of
        // bounds. Copying instead would cost the size of the dump in RAM (hundreds of MiB to
        // many GiB); callers who prefer that use `Dump::from_bytes`.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::build(map, path, format)
    }

    fn build<B>(bytes: B, path: &Path, format: Option<DumpFormat>) -> Result<Dump, DumpError>
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let data = bytes.as_ref();
        let len = data.len() as u64;
        let mut format = match format {
            Some(f) => f,
            None => DumpFormat::detect(data)
                .or_else(|| raw::is_raw_candidate(len).then_some(DumpFormat::Raw))
                .ok_or_else(|| DumpError::UnknownFormat {
                    path: path.to_owned(),
                    len,
                    first_bytes: elf::hex_prefix(data),
                })?,
        };
        let mut parsed = match format {
            DumpFormat::Raw => parse_raw(data, path)?,
            DumpFormat::ElfCore => parse_elf(data)?,
            // A LiME file whose later blocks are AVML's compressed ones (avml writes both
            // kinds): read it as AVML.
            DumpFormat::Lime => match parse_lime(data) {
                Err(DumpError::BadLimeMagic {
                    found: avml::AVML_MAGIC,
                    ..
                }) => {
                    format = DumpFormat::Avml;
                    parse_avml(data)?
                }
                other => other?,
            },
            DumpFormat::Avml => parse_avml(data)?,
            DumpFormat::Kdump | DumpFormat::KdumpFlattened => parse_kdump(data)?,
            DumpFormat::WindowsCrashDump => return crashdump::open(bytes, path),
        };
        parsed
            .details
            .insert(0, ("path".into(), path.display().to_string()));
        let slow_reads = matches!(parsed.layout, Layout::Kdump(_) | Layout::Avml(_));
        let memory: Arc<dyn PhysicalMemory> = match parsed.layout {
            Layout::Table(table) => Arc::new(MappedMemory::new(bytes, table)?),
            Layout::Kdump(k) => Arc::new(kdump::KdumpMemory::new(bytes, *k)),
            Layout::Avml(a) => Arc::new(avml::AvmlMemory::new(bytes, *a)),
        };
        Ok(Dump {
            format,
            slow_reads,
            memory,
            registers: parsed.registers.map(Arc::new),
            vmcoreinfo: parsed.vmcoreinfo,
            details: parsed.details,
            kernel_hints: KernelHints::default(),
            context_registers: None,
        })
    }

    /// The dump's format.
    pub fn format(&self) -> DumpFormat {
        self.format
    }

    /// The text of the dump's VMCOREINFO note (Linux `KEY=VALUE` lines), if it has one.
    pub fn vmcoreinfo(&self) -> Option<&str> {
        self.vmcoreinfo.as_deref()
    }

    /// Guest-physical memory.
    pub fn memory(&self) -> &dyn PhysicalMemory {
        &*self.memory
    }

    /// vCPU registers (ELF cores with CPU notes only).
    pub fn registers(&self) -> Option<&DumpRegisters> {
        self.registers.as_deref()
    }

    /// Facts for `vmi info`, as (key, value) pairs.
    pub fn details(&self) -> &[(String, String)] {
        &self.details
    }

    /// What the dump's header says of the kernel (Windows crash dumps; empty otherwise).
    pub fn kernel_hints(&self) -> &KernelHints {
        &self.kernel_hints
    }

    /// A Windows crash dump's registers (its CONTEXT as vCPU 0); the target's registers.
    pub fn context_registers(&self) -> Option<&crashdump::ContextRegisters> {
        self.context_registers.as_deref()
    }

    /// The dump as a session target of the `file` backend.
    pub fn into_target(self) -> Target {
        Target::builder(FILE_BACKEND.name, self.format.name(), self.memory)
            .maybe_registers(
                self.registers
                    .map(|r| r as Arc<dyn VcpuRegisters>)
                    .or(self.context_registers.map(|r| r as Arc<dyn VcpuRegisters>)),
            )
            .kernel_hints(self.kernel_hints)
            .slow_reads(self.slow_reads)
            .vmcoreinfo(self.vmcoreinfo)
            .details(self.details)
            .build()
    }
}

impl fmt::Debug for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dump")
            .field("format", &self.format)
            .field("memory_map", &self.memory.memory_map())
            .field("vcpus", &self.registers.as_ref().map(|r| r.vcpus().len()))
            .field("vmcoreinfo", &self.vmcoreinfo.is_some())
            .finish_non_exhaustive()
    }
}

/// None for a regular file, else what it is, for the error message.
fn file_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a file"
    })
}

fn parse_raw(data: &[u8], path: &Path) -> Result<Parsed, DumpError> {
    let len = data.len() as u64;
    if len == 0 {
        return Err(DumpError::UnknownFormat {
            path: PathBuf::from(path),
            len,
            first_bytes: String::new(),
        });
    }
    Ok(Parsed {
        layout: Layout::Table(RegionTable::identity(len)?),
        registers: None,
        vmcoreinfo: None,
        details: vec![("size".into(), len.to_string())],
    })
}

fn parse_lime(data: &[u8]) -> Result<Parsed, DumpError> {
    let ranges = lime::parse(data)?;
    let count = ranges.len();
    let table = RegionTable::new(
        ranges.iter().map(lime::LimeRange::segment).collect(),
        data.len() as u64,
    )?;
    Ok(Parsed {
        details: vec![
            ("ranges".into(), count.to_string()),
            ("regions".into(), table.memory_map().len().to_string()),
        ],
        layout: Layout::Table(table),
        registers: None,
        vmcoreinfo: None,
    })
}

fn parse_avml(data: &[u8]) -> Result<Parsed, DumpError> {
    let a = avml::parse(data)?;
    if a.memory_map().is_empty() {
        return Err(DumpError::NoMemory);
    }
    Ok(Parsed {
        details: vec![
            (
                "blocks".into(),
                format!(
                    "{} ({} snappy-compressed, {} stored)",
                    a.blocks,
                    a.compressed_blocks,
                    a.blocks - a.compressed_blocks
                ),
            ),
            (
                "compression".into(),
                "snappy (framed, CRC-32C checked)".into(),
            ),
            ("chunks".into(), a.chunks.to_string()),
            ("regions".into(), a.memory_map().len().to_string()),
        ],
        layout: Layout::Avml(Box::new(a)),
        registers: None,
        vmcoreinfo: None,
    })
}

fn parse_kdump(data: &[u8]) -> Result<Parsed, DumpError> {
    let k = kdump::Kdump::parse(data)?;
    let h = &k.header;
    let vmcoreinfo = match h.vmcoreinfo {
        Some((off, size)) => {
            let text = k.flat_bytes(data, off, size)?;
            let end = text.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            Some(String::from_utf8_lossy(&text[..end]).into_owned())
        }
        None => None,
    };
    let (registers, note_summary) = match h.notes {
        Some((off, size)) => {
            let bytes = k.flat_bytes(data, off, size)?;
            let notes = notes::decode(&elf::parse_note_block(&bytes, off)?)?;
            let summary = format!(
                "{} QEMU CPU notes, {} NT_PRSTATUS",
                notes.qemu.len(),
                notes.prstatus.len()
            );
            (DumpRegisters::from_notes(&notes, true)?, summary)
        }
        None => (None, "none".to_owned()),
    };
    let mut details = vec![
        (
            "kdump".into(),
            if k.is_flattened() {
                format!(
                    "header version {}, flattened ({} pieces indexed)",
                    h.version,
                    k.flattened_pieces()
                )
            } else {
                format!("header version {}, flat", h.version)
            },
        ),
        ("compression".into(), k.compression(data)),
        ("dump_level".into(), h.dump_level.to_string()),
        (
            "pages".into(),
            format!(
                "{} present of {} RAM pages (max_mapnr {})",
                k.written_pages, k.ram_pages, h.max_mapnr
            ),
        ),
        // As the header says. Debian's QEMU 7.2 wrote values here that match neither the
        // guest's NUMBER(phys_base) nor each other (seen on the fixture guests), so the OS
        // layer takes phys_base from VMCOREINFO, not from here.
        (
            "phys_base".into(),
            format!("{:#x} (sub header)", h.phys_base),
        ),
        ("nr_cpus".into(), h.nr_cpus.to_string()),
        ("notes".into(), note_summary),
        (
            "vmcoreinfo".into(),
            if vmcoreinfo.is_some() { "yes" } else { "no" }.into(),
        ),
    ];
    // QEMU leaves the header's utsname empty; makedumpfile copies the kernel's.
    if !h.release.is_empty() {
        details.push(("release".into(), h.release.clone()));
    }
    if let Some((lo, hi)) = h.split {
        details.push((
            "split".into(),
            format!("part holding PFNs {lo:#x}..{hi:#x}; the other parts' pages are absent"),
        ));
    }
    if let Some((off, size)) = h.eraseinfo {
        details.push((
            "eraseinfo".into(),
            format!("{size} bytes at {off:#x}: makedumpfile erased data from some pages"),
        ));
    }
    if h.is_incomplete() {
        details.push((
            "status".into(),
            "incomplete: makedumpfile ran out of space; pages without data are errors".into(),
        ));
    }
    Ok(Parsed {
        layout: Layout::Kdump(Box::new(k)),
        registers,
        vmcoreinfo,
        details,
    })
}

fn parse_elf(data: &[u8]) -> Result<Parsed, DumpError> {
    let core = elf::parse(data)?;
    let notes = notes::decode(&core.notes)?;
    let registers = DumpRegisters::from_notes(&notes, core.machine == elf::EM_X86_64)?;
    let table = RegionTable::new(core.segments(), data.len() as u64)?;

    let class = match core.class {
        elf::ElfClass::Elf32 => "ELF32",
        elf::ElfClass::Elf64 => "ELF64",
    };
    let machine = if core.machine == elf::EM_X86_64 {
        "x86-64"
    } else {
        "i386"
    };
    let mut note_summary = format!(
        "{} QEMU CPU notes, {} NT_PRSTATUS",
        notes.qemu.len(),
        notes.prstatus.len()
    );
    if notes.vmcoreinfo.is_some() {
        note_summary.push_str(", VMCOREINFO");
    }
    if notes.other > 0 {
        note_summary.push_str(&format!(", {} other", notes.other));
    }
    let mut details = vec![
        ("elf".into(), format!("{class} {machine}")),
        ("segments".into(), core.loads.len().to_string()),
        ("regions".into(), table.memory_map().len().to_string()),
        ("notes".into(), note_summary),
        (
            "addresses".into(),
            match core.address_source {
                elf::AddressSource::PhysicalAddress => "p_paddr".into(),
                elf::AddressSource::VirtualAddressFallback => "p_vaddr (every p_paddr is 0)".into(),
            },
        ),
    ];
    if !notes.qemu.is_empty() {
        details.push((
            "efer".into(),
            "inferred: LME|LMA if CR0.PG, CR4.PAE and (CS.L or EM_X86_64)".into(),
        ));
    } else if !notes.prstatus.is_empty() {
        details.push((
            "control-registers".into(),
            "absent (no QEMU CPU notes): CR0/CR3/CR4/EFER read as 0".into(),
        ));
    }
    Ok(Parsed {
        layout: Layout::Table(table),
        registers,
        vmcoreinfo: notes.vmcoreinfo,
        details,
    })
}

fn open_spec(rest: &str, _options: &OpenOptions) -> Result<Target, BoxError> {
    // A dump is never writable: `writer` stays None and a write reports the target read-only.
    Ok(Dump::open(rest)?.into_target())
}

/// The `file` backend: `file:PATH` or a bare path to an existing file.
pub static FILE_BACKEND: BackendFactory = BackendFactory {
    name: "file",
    description: "memory dumps: ELF cores (QEMU dump-guest-memory), kdump, LiME, AVML, Windows crash dumps, raw images",
    spec: SpecMatch::PrefixOrPath("file"),
    open: open_spec,
};

vmi_core::register_backend!(FILE_BACKEND);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{note_bytes, prstatus_x86_64, qemu_note, ElfBuilder, QemuFields};
    use vmi_core::vcpu::RegisterSource;
    use vmi_core::{MemoryError, Pa, PagingMode, PhysicalMemoryExt};

    fn qemu_elf() -> Vec<u8> {
        let q = qemu_note(&QemuFields {
            cr: [0x8005_0033, 0, 0, 0x1000, 0x20],
            cs_flags: 0x00af_9b00,
            kernel_gs_base: Some(0),
        });
        ElfBuilder::new64()
            .note(b"CORE", 1, &prstatus_x86_64(1, |i| i as u64))
            .note(b"CORE", 1, &prstatus_x86_64(2, |i| i as u64))
            .note(b"QEMU", 0, &q)
            .note(b"QEMU", 0, &q)
            .note(
                b"VMCOREINFO",
                0,
                b"OSRELEASE=6.1.0-56-amd64\nPAGESIZE=4096\n",
            )
            .load(0, vec![0x11; 0x2000])
            .load_memsz(0x10_0000, vec![0x22; 0x1000], 0x3000)
            .build()
    }

    #[test]
    fn elf_dump_end_to_end() {
        let dump = Dump::from_bytes(qemu_elf()).unwrap();
        assert_eq!(dump.format(), DumpFormat::ElfCore);
        assert_eq!(
            dump.vmcoreinfo(),
            Some("OSRELEASE=6.1.0-56-amd64\nPAGESIZE=4096\n")
        );
        let mem = dump.memory();
        assert_eq!(
            mem.read_u64(Pa::new(0x1ff8)).unwrap(),
            0x1111_1111_1111_1111
        );
        assert_eq!(mem.read_u32(Pa::new(0x10_0ffc)).unwrap(), 0x2222_2222);
        // [p_filesz, p_memsz) is not backed.
        assert!(matches!(
            mem.read_u32(Pa::new(0x10_1000)),
            Err(MemoryError::OutOfRange { .. })
        ));
        assert!(mem.read_u32(Pa::new(0x10_0ffe)).is_err());
        assert_eq!(mem.total_bytes(), 0x3000);

        let regs = dump.registers().unwrap();
        assert_eq!(regs.vcpu_count(), 2);
        let r = regs.registers(0).unwrap();
        assert_eq!(r.cr3, 0x1000);
        assert_eq!(r.efer_source, Some(RegisterSource::Inferred));
        assert_eq!(PagingMode::from_registers(&r).mode, PagingMode::Ia32e4);

        let details = dump.details().to_vec();
        let get = |k: &str| {
            details
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("notes"),
            Some("2 QEMU CPU notes, 2 NT_PRSTATUS, VMCOREINFO")
        );
        assert_eq!(get("segments"), Some("2"));
        assert_eq!(get("path"), Some("<bytes>"));

        let t = dump.into_target();
        assert_eq!((t.backend, t.format.as_str()), ("file", "elf-core"));
        assert_eq!(t.registers.unwrap().vcpu_count(), 2);
        assert!(t.writer.is_none() && t.control.is_none() && !t.slow_reads);
    }

    #[test]
    fn kdump_dump_end_to_end() {
        let q = qemu_note(&QemuFields {
            cr: [0x8005_0033, 0, 0, 0x5000, 0x20],
            cs_flags: 0x00af_9b00,
            kernel_gs_base: Some(0),
        });
        let mut notes = note_bytes(b"CORE", 1, &prstatus_x86_64(1, |i| i as u64));
        notes.extend(note_bytes(b"QEMU", 0, &q));
        let info = b"OSRELEASE=6.1.0-test-vmi\nPAGESIZE=4096\n\0\0";
        let flat = kdump::testing::build_with(
            20,
            &kdump::testing::Options {
                vmcoreinfo: Some(info),
                notes: Some(&notes),
                ..Default::default()
            },
        );
        for (bytes, format) in [
            (flat.clone(), DumpFormat::Kdump),
            (
                kdump::testing::flatten(&flat, 700),
                DumpFormat::KdumpFlattened,
            ),
        ] {
            let dump = Dump::from_bytes(bytes).unwrap();
            assert_eq!(dump.format(), format);
            // Trailing NULs of the note are not part of the text.
            assert_eq!(
                dump.vmcoreinfo(),
                Some("OSRELEASE=6.1.0-test-vmi\nPAGESIZE=4096\n")
            );
            let regs = dump.registers().unwrap();
            assert_eq!(regs.vcpu_count(), 1);
            assert_eq!(regs.registers(0).unwrap().cr3, 0x5000);
            assert_eq!(
                dump.memory().read_u32(Pa::new(4 * 4096)).unwrap(),
                0x0404_0404
            );
            assert!(matches!(
                dump.memory().read_u32(Pa::new(5 * 4096)),
                Err(MemoryError::OutOfRange { .. })
            ));
            let get = |k: &str| {
                dump.details()
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(get("compression").as_deref(), Some("zlib+lzo+snappy"));
            assert_eq!(get("dump_level").as_deref(), Some("31"));
            assert_eq!(get("vmcoreinfo").as_deref(), Some("yes"));
            assert_eq!(
                get("pages").as_deref(),
                Some("14 present of 20 RAM pages (max_mapnr 20)")
            );
            assert_eq!(
                get("notes").as_deref(),
                Some("1 QEMU CPU notes, 1 NT_PRSTATUS")
            );
            let t = dump.into_target();
            assert!(t.slow_reads && t.vmcoreinfo.is_some());
            assert_eq!(t.format, format.name());
        }
    }

    #[test]
    fn avml_captures_are_detected_by_content() {
        let data: Vec<u8> = (0..0x3000u32).map(|i| (i / 7) as u8).collect();
        let compressed = avml::testing::compressed(&[(0x10_0000, data.clone())]);
        let dump = Dump::from_bytes(compressed.clone()).unwrap();
        assert_eq!(dump.format(), DumpFormat::Avml);
        let mut got = vec![0u8; 0x3000];
        dump.memory().read(Pa::new(0x10_0000), &mut got).unwrap();
        assert_eq!(got, data);
        let t = dump.into_target();
        assert!(t.slow_reads && t.registers.is_none());
        assert_eq!(t.format, "avml");
        // A stored (LiME) block first, compressed ones after it: AVML, not a broken LiME.
        let mut mixed = Vec::new();
        avml::testing::stored(&mut mixed, 0, &[9; 0x1000]);
        mixed.extend_from_slice(&compressed);
        let dump = Dump::from_bytes(mixed).unwrap();
        assert_eq!(dump.format(), DumpFormat::Avml);
        assert_eq!(dump.memory().read_u32(Pa::new(0xffc)).unwrap(), 0x0909_0909);
        assert_eq!(
            dump.details()
                .iter()
                .find(|(k, _)| k == "blocks")
                .map(|(_, v)| v.as_str()),
            Some("2 (1 snappy-compressed, 1 stored)")
        );
        // AVML's magic with a broken block is an AVML error, not a raw image.
        let mut bad = compressed;
        bad.truncate(bad.len() - 8);
        bad.resize(0x3000, 0);
        assert!(matches!(
            Dump::from_bytes(bad),
            Err(DumpError::AvmlBlock { .. })
        ));
    }

    #[test]
    fn detection() {
        // Raw: neither ELF nor LiME, size a multiple of 4 KiB.
        let dump = Dump::from_bytes(vec![0x90; 0x2000]).unwrap();
        assert_eq!(dump.format(), DumpFormat::Raw);
        assert_eq!(
            dump.memory().read_u64(Pa::new(0x1ff8)).unwrap(),
            0x9090_9090_9090_9090
        );
        assert!(dump.memory().read_u64(Pa::new(0x1ffc)).is_err());
        assert!(dump.registers().is_none());
        // Odd-sized garbage.
        match Dump::from_bytes(b"hello world\n".to_vec()).unwrap_err() {
            DumpError::UnknownFormat {
                len, first_bytes, ..
            } => {
                assert_eq!(len, 12);
                assert!(first_bytes.starts_with("68 65 6c 6c 6f"));
            }
            e => panic!("{e}"),
        }
        assert!(matches!(
            Dump::from_bytes(vec![]),
            Err(DumpError::UnknownFormat { .. })
        ));
        // A 4 KiB file starting with the ELF magic is a (broken) ELF, never raw.
        let mut fake = vec![0u8; 0x1000];
        fake[..4].copy_from_slice(b"\x7fELF");
        assert!(matches!(
            Dump::from_bytes(fake),
            Err(DumpError::UnsupportedElfClass { .. })
        ));
        let mut lime = Vec::new();
        lime::write_range(&mut lime, Pa::new(0x1000), &[1; 0x1000]).unwrap();
        let dump = Dump::from_bytes(lime).unwrap();
        assert_eq!(dump.format(), DumpFormat::Lime);
        assert_eq!(
            dump.memory().read_u32(Pa::new(0x1000)).unwrap(),
            0x0101_0101
        );
    }

    #[test]
    fn open_files_and_spec() {
        let dir =
            std::env::temp_dir().join(format!("vmi-backend-file-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let elf = dir.join("guest.bin");
        std::fs::write(&elf, qemu_elf()).unwrap();
        let dump = Dump::open(&elf).unwrap();
        assert_eq!(dump.format(), DumpFormat::ElfCore);
        let t = open_spec(elf.to_str().unwrap(), &OpenOptions::default()).unwrap();
        assert_eq!(t.format, "elf-core");

        let odd = dir.join("odd.raw");
        std::fs::write(&odd, [0u8; 100]).unwrap();
        assert!(matches!(
            Dump::open(&odd),
            Err(DumpError::UnknownFormat { len: 100, .. })
        ));
        let raw = Dump::open_as(&odd, DumpFormat::Raw).unwrap();
        assert_eq!(raw.memory().memory_map()[0].len, 100);

        let empty = dir.join("empty");
        std::fs::write(&empty, []).unwrap();
        assert!(matches!(
            Dump::open(&empty),
            Err(DumpError::UnknownFormat { len: 0, .. })
        ));
        assert!(matches!(
            Dump::open(&dir),
            Err(DumpError::NotARegularFile { .. })
        ));
        assert!(matches!(
            Dump::open(dir.join("missing")),
            Err(DumpError::Io { .. })
        ));
        let err = open_spec(
            dir.join("missing").to_str().unwrap(),
            &OpenOptions::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A FIFO must be refused without opening it: opening one for reading blocks until a
    /// writer comes. The open runs on a thread, so a regression fails in 10 s, not never.
    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir =
            std::env::temp_dir().join(format!("vmi-backend-file-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("dump.fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for path in [fifo.clone(), PathBuf::from("/dev/null")] {
            let (tx, rx) = std::sync::mpsc::channel();
            let p = path.clone();
            std::thread::spawn(move || {
                let _ = tx.send(Dump::open(&p).map(|_| ()));
            });
            let got = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("opening {} blocked", path.display()));
            let kind = if path == fifo {
                "a FIFO"
            } else {
                "a character device"
            };
            match got {
                Err(e @ DumpError::NotARegularFile { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("not a regular file") && msg.contains(kind),
                        "{msg}"
                    );
                    assert!(msg.contains(&path.display().to_string()), "{msg}");
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        // A symbolic link to a regular dump is a dump.
        let elf = dir.join("guest.elf");
        std::fs::write(&elf, qemu_elf()).unwrap();
        let link = dir.join("link.elf");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&elf, &link).unwrap();
        assert_eq!(Dump::open(&link).unwrap().format(), DumpFormat::ElfCore);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backend_is_registered() {
        let names: Vec<&str> = vmi_core::registry::BACKENDS
            .items()
            .iter()
            .map(|b| b.name)
            .collect();
        assert!(names.contains(&"file"), "{names:?}");
    }
}
