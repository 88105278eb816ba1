//! Triage (small memory) dumps: virtual data blocks served behind synthetic page tables.
//!
//! `_TRIAGE_DUMP64` at 0x2000 (rizin's `dmp64_triage`; offsets are file offsets):
//! `ServicePackBuild` 0x00, `SizeOfDump` 0x04, `ValidOffset` 0x08, `ContextOffset` 0x0C,
//! `ExceptionOffset` 0x10, `MmOffset` 0x14, `UnloadedDriversOffset` 0x18, `PrcbOffset` 0x1C,
//! `ProcessOffset` 0x20, `ThreadOffset` 0x24, `CallStackOffset` 0x28, `SizeOfCallStack`
//! 0x2C, `DriverListOffset` 0x30, `DriverCount` 0x34, `StringPoolOffset` 0x38,
//! `StringPoolSize` 0x3C, `BrokenDriverOffset` 0x40, `TriageOptions` 0x44, `TopOfStack` 0x48,
//! (IA-64 backing store 0x50), `DataPageAddress` 0x60, `DataPageOffset` 0x68,
//! `DataPageSize` 0x6C, `DebuggerDataOffset` 0x70, `DebuggerDataSize` 0x74,
//! `DataBlocksOffset` 0x78, `DataBlocksCount` 0x7C.
//!
//! A data block is {u64 VA, u32 file offset, u32 size}. A driver entry
//! (`_DUMP_DRIVER_ENTRY64`, 0x90 bytes) is {u32 name offset, u32, `KLDR_DATA_TABLE_ENTRY64`}
//! with `DllBase` at +0x38 and `SizeOfImage` at +0x48 of the entry; a name is {u32 count,
//! UTF-16 characters} at its file offset.
//!
//! Synthetic physical layout: the page-table frames from 0x1000 (the PML4 first, then the
//! PDPTs, PDs and PTs, each in VA order), a one-page gap, then one data frame per page a
//! block touches, in VA order. Table entries are computed on read: entry `j` of the table
//! for VA prefix `p` is present if prefix `p << 9 | j` is in the next level's sorted list.

use vmi_core::{HintedModule, MemoryError, MemoryRegion, Pa, PhysicalMemory, Va};

use super::{CrashDumpError, Header, HEADER_SIZE, PAGE_SIZE};
use crate::elf::Reader;
use crate::error::DumpError;
use crate::mapped::{MappedMemory, RegionTable, Segment};

/// Size of `_TRIAGE_DUMP64`.
pub const TRIAGE_HEADER_SIZE: u64 = 0x80;
/// Size of one data block descriptor.
pub const DATA_BLOCK_SIZE: u64 = 16;
/// Size of one `_DUMP_DRIVER_ENTRY64`.
pub const DRIVER_ENTRY_SIZE: u64 = 0x90;
/// Most data blocks accepted.
pub const MAX_DATA_BLOCKS: u64 = 1 << 16;
/// Most drivers listed.
pub const MAX_DRIVERS: u64 = 1 << 14;
/// Most pages the data blocks may touch (1 GiB; triage dumps are a few hundred KiB).
pub const MAX_PAGES: u64 = 1 << 18;
/// Longest driver name accepted, in UTF-16 units.
pub const MAX_NAME_UNITS: u64 = 1024;
/// Physical address of the synthetic PML4.
pub const TABLES_BASE: u64 = 0x1000;

/// Table entry flags: present, writable, accessed, dirty (+ user below the canonical hole).
const ENTRY_FLAGS: u64 = 0x63;
const ENTRY_USER: u64 = 0x4;
const VA_MASK: u64 = (1 << 48) - 1;

/// Where a triage dump's pages are: data frames over the file, and the index behind the
/// synthetic page tables.
#[derive(Debug, Clone)]
pub struct TriageLayout {
    data: RegionTable,
    /// Sorted distinct prefixes of the 48-bit VAs: `>> 39` (one PDPT each), `>> 30` (PDs),
    /// `>> 21` (PTs), `>> 12` (data pages).
    levels: [Vec<u64>; 4],
    data_base: u64,
    tables_end: u64,
    map: Vec<MemoryRegion>,
}

impl TriageLayout {
    /// The synthetic PML4's physical address (the target's DTB).
    pub fn root(&self) -> u64 {
        TABLES_BASE
    }

    /// Number of synthetic page-table frames.
    pub fn table_frames(&self) -> u64 {
        (self.tables_end - TABLES_BASE) / PAGE_SIZE
    }

    /// Physical address of the first data frame.
    pub fn data_base(&self) -> u64 {
        self.data_base
    }

    /// Frame of table `index` of `level` (0: PDPTs, 1: PDs, 2: PTs), or of data page `index`
    /// (level 3).
    fn frame(&self, level: usize, index: usize) -> u64 {
        if level == 3 {
            return self.data_base + index as u64 * PAGE_SIZE;
        }
        let before: usize = self.levels.iter().take(level).map(Vec::len).sum();
        TABLES_BASE + (1 + before + index) as u64 * PAGE_SIZE
    }

    /// Entry `j` of synthetic table frame `t` (0: the PML4).
    fn entry(&self, t: u64, j: u64) -> u64 {
        let t = t as usize;
        // Which level the table is at and the VA prefix it covers.
        let (child_level, prefix) = if t == 0 {
            (0, 0u64)
        } else {
            let mut i = t - 1;
            let mut found = None;
            for level in 0..3 {
                let n = self.levels[level].len();
                if i < n {
                    found = Some((level + 1, self.levels[level][i]));
                    break;
                }
                i -= n;
            }
            match found {
                Some(f) => f,
                None => return 0,
            }
        };
        let child = (prefix << 9) | j;
        match self.levels[child_level].binary_search(&child) {
            Ok(index) => {
                // Bit 47 of the child's VA says which half of the address space it is in.
                let shift = [39, 30, 21, 12][child_level];
                let user = (child << shift) & (1 << 47) == 0;
                self.frame(child_level, index) | ENTRY_FLAGS | if user { ENTRY_USER } else { 0 }
            }
            Err(_) => 0,
        }
    }
}

/// What [`parse`] found besides the layout.
pub(super) struct Triage {
    pub(super) layout: TriageLayout,
    pub(super) modules: Vec<HintedModule>,
}

/// A block of virtual memory held in the file.
#[derive(Debug, Clone, Copy)]
struct Block {
    va: u64,
    len: u64,
    file_offset: u64,
}

fn canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == (1 << 17) - 1
}

fn check_block(
    what: &'static str,
    index: u64,
    va: u64,
    offset: u64,
    size: u64,
    file_len: u64,
) -> Result<Block, CrashDumpError> {
    if offset.checked_add(size).is_none_or(|end| end > file_len) {
        return Err(CrashDumpError::TriageBlockOutside {
            what,
            index,
            offset,
            size,
            file_len,
        });
    }
    // The end (exclusive) must be representable too: a block touching the very last byte
    // of the address space is refused, so later arithmetic on `va + size` cannot overflow.
    let last = va.checked_add(size).and_then(|end| end.checked_sub(1));
    if !canonical(va) || last.is_none_or(|l| !canonical(l) || (l >> 47) != (va >> 47)) {
        return Err(CrashDumpError::TriageBlockAddress {
            what,
            index,
            va,
            size,
        });
    }
    Ok(Block {
        va,
        len: size,
        file_offset: offset,
    })
}

pub(super) fn parse(
    bytes: &[u8],
    header: &Header,
    details: &mut Vec<(String, String)>,
    warnings: &mut Vec<String>,
) -> Result<Triage, DumpError> {
    let file_len = bytes.len() as u64;
    let t = Reader(
        crate::elf::slice(bytes, HEADER_SIZE, TRIAGE_HEADER_SIZE).ok_or(
            DumpError::TruncatedHeader {
                what: "triage dump header",
                offset: HEADER_SIZE,
                needed: TRIAGE_HEADER_SIZE,
                file_len,
            },
        )?,
    );
    let u32f = |off: usize| u64::from(t.u32(off));

    let (blocks_at, block_count) = (u32f(0x78), u32f(0x7C));
    let table_end = block_count
        .checked_mul(DATA_BLOCK_SIZE)
        .and_then(|n| blocks_at.checked_add(n));
    if block_count > MAX_DATA_BLOCKS || table_end.is_none_or(|e| e > file_len) {
        return Err(CrashDumpError::TriageTableOutside {
            what: "data blocks",
            offset: blocks_at,
            count: block_count,
            entry_size: DATA_BLOCK_SIZE,
            file_len,
            max: MAX_DATA_BLOCKS,
        }
        .into());
    }
    let mut blocks = Vec::with_capacity(block_count as usize + 3);
    for i in 0..block_count {
        let e = Reader(
            crate::elf::slice(bytes, blocks_at + i * DATA_BLOCK_SIZE, DATA_BLOCK_SIZE)
                .unwrap_or_default(),
        );
        let (va, off, size) = (e.u64(0), u64::from(e.u32(8)), u64::from(e.u32(12)));
        if size > 0 {
            blocks.push(check_block("data block", i, va, off, size, file_len)?);
        }
    }
    // Named copies at addresses the headers give.
    let named = [
        (
            "debugger data",
            header.kd_debugger_data_block.unwrap_or(0),
            u32f(0x70),
            u32f(0x74),
        ),
        ("data page", t.u64(0x60), u32f(0x68), u32f(0x6C)),
        ("call stack", t.u64(0x48), u32f(0x28), u32f(0x2C)),
    ];
    for (what, va, off, size) in named {
        if off != 0 && size != 0 && va != 0 {
            blocks.push(check_block(what, 0, va, off, size, file_len)?);
        }
    }

    // Overlapping blocks keep the bytes of the one starting first.
    blocks.sort_by_key(|b| b.va);
    let mut pieces: Vec<Block> = Vec::with_capacity(blocks.len());
    let mut overlap = 0u64;
    let mut covered_to: Option<u64> = None; // one past the last byte covered so far
    for mut b in blocks {
        let end = b.va + b.len; // checked in check_block (no wrap)
        if let Some(c) = covered_to {
            if end <= c {
                overlap += b.len;
                continue;
            }
            if b.va < c {
                let cut = c - b.va;
                overlap += cut;
                b.va += cut;
                b.file_offset += cut;
                b.len -= cut;
            }
        }
        covered_to = Some(end);
        pieces.push(b);
    }

    // Pages touched, bounded before anything is sized by them.
    let mut touched = 0u64;
    for b in &pieces {
        let first = b.va / PAGE_SIZE;
        let last = (b.va + b.len - 1) / PAGE_SIZE;
        touched = touched.saturating_add(last - first + 1);
    }
    if touched > MAX_PAGES {
        return Err(CrashDumpError::TriageTooLarge {
            pages: touched,
            max: MAX_PAGES,
        }
        .into());
    }
    let mut pages: Vec<u64> = Vec::with_capacity(touched as usize);
    for b in &pieces {
        let first = (b.va & VA_MASK) / PAGE_SIZE;
        let last = ((b.va + b.len - 1) & VA_MASK) / PAGE_SIZE;
        for p in first..=last {
            if pages.last() != Some(&p) {
                pages.push(p);
            }
        }
    }
    let prefixes = |shift: u32| {
        let mut v: Vec<u64> = pages.iter().map(|p| p >> shift).collect();
        v.dedup();
        v
    };
    let levels = [prefixes(27), prefixes(18), prefixes(9), pages.clone()];
    let table_frames = 1 + (levels[0].len() + levels[1].len() + levels[2].len()) as u64;
    let tables_end = TABLES_BASE + table_frames * PAGE_SIZE;
    let data_base = tables_end + PAGE_SIZE;

    // Data frames: the bytes each piece holds, page by page (pages are in VA order).
    let mut segments = Vec::with_capacity(pieces.len() + pages.len());
    for b in &pieces {
        let mut va = b.va;
        let end = b.va + b.len;
        while va < end {
            let page = (va & VA_MASK) / PAGE_SIZE;
            let index = pages.binary_search(&page).unwrap_or(0) as u64;
            let in_page = va % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(end - va);
            segments.push(Segment {
                index: segments.len(),
                start: data_base + index * PAGE_SIZE + in_page,
                len: n,
                file_offset: b.file_offset + (va - b.va),
            });
            va += n;
        }
    }
    let data = RegionTable::new(segments, file_len)?;
    let mut map = vec![MemoryRegion {
        start: Pa::new(TABLES_BASE),
        len: tables_end - TABLES_BASE,
    }];
    map.extend_from_slice(data.memory_map());

    let held: u64 = pieces.iter().map(|p| p.len).sum();
    details.push((
        "triage".into(),
        format!(
            "{} data blocks ({held:#x} bytes in {} pages at synthetic physical {data_base:#x}), \
             {table_frames} synthetic page-table frames at {TABLES_BASE:#x}",
            pieces.len(),
            pages.len()
        ),
    ));
    details.push((
        "triage_copies".into(),
        format!(
            "file offsets: context {:#x}, process {:#x}, thread {:#x}, prcb {:#x} (not mapped: \
             the dump does not say their addresses)",
            u32f(0x0C),
            u32f(0x20),
            u32f(0x24),
            u32f(0x1C)
        ),
    ));
    if overlap > 0 {
        warnings.push(format!(
            "{overlap:#x} bytes of triage data blocks overlap earlier blocks and were ignored"
        ));
    }
    let modules = drivers(bytes, u32f(0x30), u32f(0x34), warnings);
    details.push(("drivers".into(), modules.len().to_string()));
    Ok(Triage {
        layout: TriageLayout {
            data,
            levels,
            data_base,
            tables_end,
            map,
        },
        modules,
    })
}

/// The driver list: a bounded partial read (a bad entry ends the list, with a warning).
fn drivers(bytes: &[u8], at: u64, count: u64, warnings: &mut Vec<String>) -> Vec<HintedModule> {
    let file_len = bytes.len() as u64;
    let mut modules = Vec::new();
    if count == 0 {
        return modules;
    }
    let end = count
        .checked_mul(DRIVER_ENTRY_SIZE)
        .and_then(|n| at.checked_add(n));
    if count > MAX_DRIVERS || end.is_none_or(|e| e > file_len) {
        warnings.push(format!(
            "triage driver list: {count} entries at file offset {at:#x} do not fit the file \
             ({file_len:#x}) or exceed {MAX_DRIVERS}; not listed"
        ));
        return modules;
    }
    for i in 0..count {
        let e = Reader(
            crate::elf::slice(bytes, at + i * DRIVER_ENTRY_SIZE, DRIVER_ENTRY_SIZE)
                .unwrap_or_default(),
        );
        let name_at = u64::from(e.u32(0));
        let units = crate::elf::slice(bytes, name_at, 4).map(|c| u64::from(Reader(c).u32(0)));
        let name = units
            .filter(|&n| n <= MAX_NAME_UNITS)
            .and_then(|n| crate::elf::slice(bytes, name_at + 4, n * 2));
        let Some(raw) = name else {
            warnings.push(format!(
                "triage driver {i}: its name at file offset {name_at:#x} is outside the file or \
                 longer than {MAX_NAME_UNITS} characters; {i} drivers listed"
            ));
            break;
        };
        let utf16: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        modules.push(HintedModule {
            name: String::from_utf16_lossy(&utf16),
            base: Va::new(e.u64(0x38)),
            size: u64::from(e.u32(0x48)),
        });
    }
    modules
}

/// Memory of a triage dump: computed page tables, and data frames over the file's bytes.
pub struct TriageMemory<B> {
    data: MappedMemory<B>,
    levels: TriageLayout,
}

impl<B: AsRef<[u8]>> TriageMemory<B> {
    /// Memory over `bytes` as `layout` describes it.
    pub fn new(bytes: B, layout: TriageLayout) -> Result<Self, DumpError> {
        let data = MappedMemory::new(bytes, layout.data.clone())?;
        Ok(Self {
            data,
            levels: layout,
        })
    }
}

impl<B: AsRef<[u8]> + Send + Sync> PhysicalMemory for TriageMemory<B> {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let l = &self.levels;
        let addr = pa.raw();
        if !(TABLES_BASE..=l.tables_end).contains(&addr)
            || (addr == l.tables_end && !buf.is_empty())
        {
            return self.data.read(pa, buf);
        }
        let len = buf.len() as u64;
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= l.tables_end)
            .ok_or(MemoryError::OutOfRange { pa, len })?;
        let mut at = addr;
        while at < end {
            let rel = at - TABLES_BASE;
            let entry = l
                .entry(rel / PAGE_SIZE, (rel % PAGE_SIZE) / 8)
                .to_le_bytes();
            let in_entry = (at % 8) as usize;
            let n = (8 - in_entry).min((end - at) as usize);
            let dst = (at - addr) as usize;
            if let (Some(d), Some(s)) =
                (buf.get_mut(dst..dst + n), entry.get(in_entry..in_entry + n))
            {
                d.copy_from_slice(s);
            }
            at += n as u64;
        }
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        &self.levels.map
    }
}

impl<B> std::fmt::Debug for TriageMemory<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriageMemory")
            .field("table_frames", &self.levels.table_frames())
            .field("data_base", &self.levels.data_base)
            .finish_non_exhaustive()
    }
}
