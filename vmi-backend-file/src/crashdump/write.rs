//! The crash dump writer: 64-bit Windows crash dumps of DumpType 1 (full: physical runs packed
//! from 0x2000) and 5 (bitmap: an `FDMP`/`DUMP` header with one bit per page frame at 0x2000,
//! pages packed after it), from any [`PhysicalMemory`] and a [`HeaderSpec`].
//!
//! For tests and fixtures: the synthetic Windows guest generator writes its guests with it,
//! and every format test reads back what it wrote. Unused header bytes are `PAGE`, as in
//! the dumps Windows writes.

use std::io::{self, Write};

use vmi_core::{MemoryRegion, Pa, PhysicalMemory, X86Registers};

use super::{context, field, DUMP_TYPE_BITMAP, DUMP_TYPE_FULL, HEADER_SIZE, MAX_RUNS, PAGE_SIZE};

/// What the writer puts in the dump header. Build it with `..Default::default()`:
///
/// ```
/// use vmi_backend_file::crashdump::HeaderSpec;
///
/// let spec = HeaderSpec {
///     directory_table_base: 0x1AD000,
///     ps_active_process_head: 0xFFFF_F802_1A21_E060,
///     ..Default::default()
/// };
/// assert_eq!((spec.major_version, spec.minor_version), (0xF, 19041));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSpec {
    /// `MajorVersion`: 0xF for a free (retail) build, 0xC for a checked one.
    pub major_version: u32,
    /// `MinorVersion`: the build number (19041, 22000, ...).
    pub minor_version: u32,
    /// `DirectoryTableBase`: the kernel's CR3, PCID bits included as the kernel wrote them.
    pub directory_table_base: u64,
    /// `PfnDataBase`: the VA of `MmPfnDatabase`'s array.
    pub pfn_database: u64,
    /// `PsLoadedModuleList`: the VA of the list head.
    pub ps_loaded_module_list: u64,
    /// `PsActiveProcessHead`: the VA of the list head.
    pub ps_active_process_head: u64,
    /// `KdDebuggerDataBlock`: the VA of the decoded `KDDEBUGGER_DATA64`.
    pub kd_debugger_data_block: u64,
    /// `NumberProcessors`.
    pub number_processors: u32,
    /// `BugCheckCode`: 0x161 (`LIVE_SYSTEM_DUMP`) by default, as QEMU's elf2dmp writes.
    pub bugcheck_code: u32,
    /// `BugCheckParameter1..4`.
    pub bugcheck_parameters: [u64; 4],
    /// `SystemTime`: a FILETIME (100 ns units since 1601-01-01 UTC).
    pub system_time: u64,
    /// `SystemUpTime`, in 100 ns units.
    pub system_up_time: u64,
    /// `ProductType` (1: workstation, 3: server), as in `KUSER_SHARED_DATA`.
    pub product_type: u32,
    /// `SuiteMask`, as in `KUSER_SHARED_DATA`.
    pub suite_mask: u32,
    /// The crashing processor's registers, written as the header's CONTEXT record (general
    /// registers, RIP, RFLAGS, selectors; a CONTEXT has no control registers or bases).
    pub registers: X86Registers,
}

impl Default for HeaderSpec {
    fn default() -> Self {
        Self {
            major_version: 0xF,
            minor_version: 19041,
            directory_table_base: 0,
            pfn_database: 0,
            ps_loaded_module_list: 0,
            ps_active_process_head: 0,
            kd_debugger_data_block: 0,
            number_processors: 1,
            bugcheck_code: 0x161,
            bugcheck_parameters: [0; 4],
            system_time: 0,
            system_up_time: 0,
            product_type: 1,
            suite_mask: 0x110,
            registers: X86Registers::default(),
        }
    }
}

/// Where the writer puts the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteLayout {
    /// DumpType 1: the header lists the physical runs (at most 43); pages follow at 0x2000.
    Full,
    /// DumpType 5: an `FDMP` bitmap header at 0x2000; pages follow the bitmap, so the first
    /// page's file offset is not page-aligned (as in real bitmap dumps).
    Bitmap,
}

/// Writes every region of `mem`'s memory map (regions must be 4 KiB-aligned). Returns the
/// bytes written.
///
/// ```
/// use vmi_backend_file::crashdump::{self, HeaderSpec, WriteLayout};
/// use vmi_backend_file::{Dump, DumpFormat};
/// use vmi_core::{memory::BufferMemory, Pa, PhysicalMemoryExt};
///
/// let mem = BufferMemory::new(Pa::new(0x10_0000), vec![0x5a; 0x2000]);
/// let spec = HeaderSpec { directory_table_base: 0x10_0000, ..Default::default() };
/// let mut file = Vec::new();
/// crashdump::write(&mut file, &spec, WriteLayout::Bitmap, &mem)?;
/// let dump = Dump::from_bytes(file)?;
/// assert_eq!(dump.format(), DumpFormat::WindowsCrashDump);
/// assert_eq!(dump.memory().read_u32(Pa::new(0x10_1ffc))?, 0x5a5a_5a5a);
/// assert!(dump.memory().read_u32(Pa::new(0x10_2000)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write<W: Write + ?Sized>(
    out: &mut W,
    header: &HeaderSpec,
    layout: WriteLayout,
    mem: &dyn PhysicalMemory,
) -> io::Result<u64> {
    write_ranges(out, header, layout, mem, mem.memory_map())
}

/// Writes the physical `ranges` of `mem` (4 KiB-aligned, non-overlapping, any order; adjacent
/// ones are merged into one run). Returns the bytes written. A full dump of more than 43 runs
/// is refused (`InvalidInput`): its header has no room for them; write a bitmap dump.
pub fn write_ranges<W: Write + ?Sized>(
    out: &mut W,
    header: &HeaderSpec,
    layout: WriteLayout,
    mem: &dyn PhysicalMemory,
    ranges: &[MemoryRegion],
) -> io::Result<u64> {
    let runs = page_runs(ranges)?;
    match layout {
        WriteLayout::Full => write_full(out, header, DUMP_TYPE_FULL, &runs, mem),
        WriteLayout::Bitmap => write_bitmap(out, header, DUMP_TYPE_BITMAP, b"FDMP", &runs, mem),
    }
}

/// Writes physical runs given as (first address, bytes) pairs (4 KiB-aligned, lengths a
/// multiple of 4 KiB, non-overlapping). Returns the bytes written.
///
/// ```
/// use vmi_backend_file::crashdump::{self, HeaderSpec, WriteLayout};
/// use vmi_core::Pa;
///
/// let low = vec![1u8; 0x1000];
/// let high = vec![2u8; 0x3000];
/// let mut file = Vec::new();
/// let n = crashdump::write_runs(
///     &mut file,
///     &HeaderSpec::default(),
///     WriteLayout::Full,
///     &[(Pa::new(0x1000), &low[..]), (Pa::new(0x10_0000), &high[..])],
/// )?;
/// assert_eq!(n, 0x2000 + 4 * 0x1000);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_runs<W: Write + ?Sized>(
    out: &mut W,
    header: &HeaderSpec,
    layout: WriteLayout,
    runs: &[(Pa, &[u8])],
) -> io::Result<u64> {
    let mem = RunMemory::new(runs)?;
    write(out, header, layout, &mem)
}

/// Physical memory over borrowed runs, for [`write_runs`].
pub(crate) struct RunMemory<'a> {
    runs: Vec<(u64, &'a [u8])>,
    map: Vec<MemoryRegion>,
}

impl<'a> RunMemory<'a> {
    pub(crate) fn new(runs: &[(Pa, &'a [u8])]) -> io::Result<Self> {
        let mut sorted: Vec<(u64, &'a [u8])> = runs
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(pa, b)| (pa.raw(), *b))
            .collect();
        sorted.sort_by_key(|(pa, _)| *pa);
        let map = sorted
            .iter()
            .map(|(pa, b)| MemoryRegion {
                start: Pa::new(*pa),
                len: b.len() as u64,
            })
            .collect();
        Ok(Self { runs: sorted, map })
    }
}

impl PhysicalMemory for RunMemory<'_> {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), vmi_core::MemoryError> {
        let out = || vmi_core::MemoryError::OutOfRange {
            pa,
            len: buf.len() as u64,
        };
        let i = self
            .runs
            .partition_point(|(start, _)| *start <= pa.raw())
            .checked_sub(1)
            .ok_or_else(out)?;
        let (start, bytes) = self.runs.get(i).ok_or_else(out)?;
        let off = usize::try_from(pa.raw() - start).map_err(|_| out())?;
        let src = off
            .checked_add(buf.len())
            .and_then(|end| bytes.get(off..end))
            .ok_or_else(out)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        &self.map
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Sorted, merged (first PFN, page count) runs of page-aligned `ranges`.
pub(crate) fn page_runs(ranges: &[MemoryRegion]) -> io::Result<Vec<(u64, u64)>> {
    let mut runs: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for r in ranges.iter().filter(|r| r.len > 0) {
        if r.start.raw() % PAGE_SIZE != 0 || r.len % PAGE_SIZE != 0 {
            return Err(invalid(format!(
                "range {}+{:#x} is not 4 KiB-aligned: crash dumps hold whole pages",
                r.start, r.len
            )));
        }
        if r.start.raw().checked_add(r.len).is_none() {
            return Err(invalid(format!(
                "range {}+{:#x} wraps around",
                r.start, r.len
            )));
        }
        runs.push((r.start.raw() / PAGE_SIZE, r.len / PAGE_SIZE));
    }
    runs.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (pfn, count) in runs {
        match merged.last_mut() {
            Some((p, c)) if pfn < *p + *c => {
                return Err(invalid(format!(
                    "ranges overlap at physical {:#x}",
                    pfn * PAGE_SIZE
                )))
            }
            Some((p, c)) if pfn == *p + *c => *c += count,
            _ => merged.push((pfn, count)),
        }
    }
    Ok(merged)
}

/// The 0x2000-byte header: `PAGE` everywhere, then the fields of `spec`, the dump type and
/// the size of the whole file. `runs` (a full dump's) go into the PhysicalMemoryBlock.
pub(crate) fn header_bytes(
    spec: &HeaderSpec,
    dump_type: u32,
    runs: Option<&[(u64, u64)]>,
    file_size: u64,
) -> Vec<u8> {
    let mut h: Vec<u8> = b"PAGE".repeat((HEADER_SIZE / 4) as usize);
    let mut put = |off: usize, bytes: &[u8]| {
        if let Some(dst) = h.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(field::VALID_DUMP, b"DU64");
    put(field::MAJOR, &spec.major_version.to_le_bytes());
    put(field::MINOR, &spec.minor_version.to_le_bytes());
    put(field::DTB, &spec.directory_table_base.to_le_bytes());
    put(field::PFN_DATABASE, &spec.pfn_database.to_le_bytes());
    put(
        field::LOADED_MODULES,
        &spec.ps_loaded_module_list.to_le_bytes(),
    );
    put(
        field::ACTIVE_PROCESSES,
        &spec.ps_active_process_head.to_le_bytes(),
    );
    put(field::MACHINE, &0x8664u32.to_le_bytes());
    put(field::PROCESSORS, &spec.number_processors.to_le_bytes());
    put(field::BUGCHECK, &spec.bugcheck_code.to_le_bytes());
    put(field::BUGCHECK + 4, &0u32.to_le_bytes());
    for (i, p) in spec.bugcheck_parameters.iter().enumerate() {
        put(field::BUGCHECK_PARAMS + 8 * i, &p.to_le_bytes());
    }
    put(field::KDBG, &spec.kd_debugger_data_block.to_le_bytes());
    if let Some(runs) = runs {
        let pages: u64 = runs.iter().map(|(_, c)| c).sum();
        put(field::RUNS, &(runs.len() as u32).to_le_bytes());
        put(field::RUNS + 4, &0u32.to_le_bytes());
        put(field::RUNS + 8, &pages.to_le_bytes());
        for (i, (pfn, count)) in runs.iter().enumerate() {
            put(field::RUNS + 16 + 16 * i, &pfn.to_le_bytes());
            put(field::RUNS + 24 + 16 * i, &count.to_le_bytes());
        }
    }
    put(context::CONTEXT_OFFSET, &context::encode(&spec.registers));
    put(field::EXCEPTION, &[0u8; field::EXCEPTION_SIZE]);
    put(field::DUMP_TYPE, &dump_type.to_le_bytes());
    put(field::DUMP_TYPE + 4, &0u32.to_le_bytes());
    put(field::REQUIRED_SPACE, &file_size.to_le_bytes());
    put(field::SYSTEM_TIME, &spec.system_time.to_le_bytes());
    put(field::SYSTEM_UP_TIME, &spec.system_up_time.to_le_bytes());
    put(field::PRODUCT_TYPE, &spec.product_type.to_le_bytes());
    put(field::SUITE_MASK, &spec.suite_mask.to_le_bytes());
    h
}

/// Copies the pages of `runs` from `mem`, 1 MiB at a time.
fn write_pages<W: Write + ?Sized>(
    out: &mut W,
    runs: &[(u64, u64)],
    mem: &dyn PhysicalMemory,
) -> io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = Vec::new();
    let mut written = 0u64;
    for &(pfn, count) in runs {
        let (start, len) = (pfn * PAGE_SIZE, count * PAGE_SIZE);
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK);
            buf.resize(n as usize, 0);
            let pa = start + done;
            mem.read(Pa::new(pa), &mut buf)
                .map_err(|e| io::Error::other(format!("reading physical {pa:#x}: {e}")))?;
            out.write_all(&buf)?;
            done += n;
        }
        written += len;
    }
    Ok(written)
}

fn total_pages(runs: &[(u64, u64)]) -> u64 {
    runs.iter().map(|(_, c)| c).sum()
}

pub(crate) fn write_full<W: Write + ?Sized>(
    out: &mut W,
    spec: &HeaderSpec,
    dump_type: u32,
    runs: &[(u64, u64)],
    mem: &dyn PhysicalMemory,
) -> io::Result<u64> {
    if runs.len() > MAX_RUNS as usize {
        return Err(invalid(format!(
            "{} physical runs: a full crash dump header holds at most {MAX_RUNS}; write a \
             bitmap dump",
            runs.len()
        )));
    }
    let size = HEADER_SIZE + total_pages(runs) * PAGE_SIZE;
    out.write_all(&header_bytes(spec, dump_type, Some(runs), size))?;
    Ok(HEADER_SIZE + write_pages(out, runs, mem)?)
}

/// Size of the bitmap header before the bitmap.
pub(crate) const BITMAP_HEADER_SIZE: u64 = 0x38;

pub(crate) fn write_bitmap<W: Write + ?Sized>(
    out: &mut W,
    spec: &HeaderSpec,
    dump_type: u32,
    signature: &[u8; 4],
    runs: &[(u64, u64)],
    mem: &dyn PhysicalMemory,
) -> io::Result<u64> {
    let bits = runs.last().map_or(0, |(pfn, count)| pfn + count);
    let mut bitmap = vec![0u8; bits.div_ceil(8) as usize];
    for &(pfn, count) in runs {
        for p in pfn..pfn + count {
            if let Some(b) = bitmap.get_mut((p / 8) as usize) {
                *b |= 1 << (p % 8);
            }
        }
    }
    let pages = total_pages(runs);
    let first_page = HEADER_SIZE + BITMAP_HEADER_SIZE + bitmap.len() as u64;
    let size = first_page + pages * PAGE_SIZE;
    out.write_all(&header_bytes(spec, dump_type, None, size))?;
    let mut bmp = [0u8; BITMAP_HEADER_SIZE as usize];
    bmp[0..4].copy_from_slice(signature);
    bmp[4..8].copy_from_slice(b"DUMP");
    bmp[0x20..0x28].copy_from_slice(&first_page.to_le_bytes());
    bmp[0x28..0x30].copy_from_slice(&pages.to_le_bytes());
    bmp[0x30..0x38].copy_from_slice(&bits.to_le_bytes());
    out.write_all(&bmp)?;
    out.write_all(&bitmap)?;
    Ok(first_page + write_pages(out, runs, mem)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, len: u64) -> MemoryRegion {
        MemoryRegion {
            start: Pa::new(start),
            len,
        }
    }

    #[test]
    fn runs_are_validated_and_merged() {
        let runs = page_runs(&[
            region(0x5000, 0x1000),
            region(0x1000, 0x2000),
            region(0x3000, 0x1000),
            region(0x9000, 0),
        ])
        .unwrap();
        assert_eq!(runs, [(1, 3), (5, 1)]);
        assert!(page_runs(&[region(0x1800, 0x1000)]).is_err());
        assert!(page_runs(&[region(0x1000, 0x800)]).is_err());
        assert!(page_runs(&[region(0x1000, 0x2000), region(0x2000, 0x1000)]).is_err());
    }

    #[test]
    fn header_is_page_filled_around_the_fields() {
        let spec = HeaderSpec {
            directory_table_base: 0x1AD002,
            ..Default::default()
        };
        let h = header_bytes(&spec, 1, Some(&[(1, 2)]), 0x4000);
        assert_eq!(h.len(), 0x2000);
        assert_eq!(&h[0..8], b"PAGEDU64");
        assert_eq!(&h[0x60..0x64], b"PAGE"); // VersionUser is unused
        assert_eq!(&h[0x1FFC..], b"PAGE");
        assert_eq!(h[0x10..0x18], 0x1AD002u64.to_le_bytes());
        assert_eq!(h[0xF98..0xF9C], 1u32.to_le_bytes());
        assert_eq!(
            h[0x98..0xA8],
            [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&h[0xA8..0xAC], b"PAGE"); // after the only run
    }

    #[test]
    fn too_many_runs_for_a_full_dump() {
        let ranges: Vec<MemoryRegion> = (0..44).map(|i| region(i * 0x2000, 0x1000)).collect();
        let mem = vmi_core::memory::BufferMemory::new(Pa::new(0), vec![0; 88 * 0x1000]);
        let err = write_ranges(
            &mut Vec::new(),
            &HeaderSpec::default(),
            WriteLayout::Full,
            &mem,
            &ranges,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let mut file = Vec::new();
        write_ranges(
            &mut file,
            &HeaderSpec::default(),
            WriteLayout::Bitmap,
            &mem,
            &ranges,
        )
        .unwrap();
        assert_eq!(file.len() as u64, 0x2038 + 11 + 44 * 0x1000);
    }
}
