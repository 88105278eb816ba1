//! Test support: crash dumps of the layouts the public writer does not produce (DumpTypes 6,
//! 8, 9, 0xA and 4), built from the documented layouts, for the reader's tests and the fuzz
//! target's seeds. Inputs are trusted; these functions panic on bad ones.

use vmi_core::{Pa, PhysicalMemory};

use super::write::{header_bytes, page_runs, write_bitmap, RunMemory};
use super::{HeaderSpec, DUMP_TYPE_TRIAGE, HEADER_SIZE, PAGE_SIZE};

fn runs_and_memory<'a>(runs: &[(Pa, &'a [u8])]) -> (Vec<(u64, u64)>, RunMemory<'a>) {
    let mem = RunMemory::new(runs).expect("runs");
    let runs = page_runs(mem.memory_map()).expect("page-aligned runs");
    (runs, mem)
}

fn pages_of(runs: &[(u64, u64)], mem: &RunMemory<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for &(pfn, count) in runs {
        let mut buf = vec![0u8; (count * PAGE_SIZE) as usize];
        mem.read(Pa::new(pfn * PAGE_SIZE), &mut buf).expect("run");
        out.extend_from_slice(&buf);
    }
    out
}

/// A bitmap-layout dump (DumpType 5 or 6) with `signature` (`SDMP` or `FDMP`).
pub fn bitmap(
    spec: &HeaderSpec,
    dump_type: u32,
    signature: &[u8; 4],
    runs: &[(Pa, &[u8])],
) -> Vec<u8> {
    let (runs, mem) = runs_and_memory(runs);
    let mut out = Vec::new();
    write_bitmap(&mut out, spec, dump_type, signature, &runs, &mem).expect("write");
    out
}

/// An `RDMP` dump (DumpType 8, 9 or 0xA): header, ranges ended by a zero PFN, pages from the
/// next page boundary. Returns the file and the offset of its first range.
pub fn rdmp(spec: &HeaderSpec, dump_type: u32, runs: &[(Pa, &[u8])]) -> (Vec<u8>, u64) {
    let (runs, mem) = runs_and_memory(runs);
    let ranges_at = super::RDMP_RANGES;
    let ranges_end = ranges_at + 16 * (runs.len() as u64 + 1);
    let first_page = ranges_end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let metadata_size = first_page - 0x2020;
    let pages = pages_of(&runs, &mem);
    let size = first_page + pages.len() as u64;
    let mut out = header_bytes(spec, dump_type, None, size);
    out.resize(first_page as usize, 0);
    let mut put = |off: u64, bytes: &[u8]| {
        out[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    };
    put(HEADER_SIZE, &0x40u32.to_le_bytes());
    put(HEADER_SIZE + 4, b"RDMPDUMP");
    put(HEADER_SIZE + 0x10, &metadata_size.to_le_bytes());
    put(HEADER_SIZE + 0x18, &first_page.to_le_bytes());
    let total: u64 = runs.iter().map(|(_, c)| c).sum();
    if dump_type == super::DUMP_TYPE_COMPLETE {
        put(HEADER_SIZE + 0x20, &(runs.len() as u32).to_le_bytes());
        put(HEADER_SIZE + 0x28, &total.to_le_bytes());
    }
    for (i, (pfn, count)) in runs.iter().enumerate() {
        let at = ranges_at + 16 * i as u64;
        put(at, &pfn.to_le_bytes());
        put(at + 8, &count.to_le_bytes());
    }
    out.extend_from_slice(&pages);
    (out, ranges_at)
}

/// A driver of a triage dump's list.
#[derive(Debug, Clone)]
pub struct TriageDriver<'a> {
    /// File name.
    pub name: &'a str,
    /// Image base.
    pub base: u64,
    /// Image size.
    pub size: u32,
}

/// A triage dump and where its parts are, for hostile variants.
#[derive(Debug, Clone)]
pub struct TriageFile {
    /// The file.
    pub bytes: Vec<u8>,
    /// File offset of the triage header (0x2000).
    pub triage_header: u64,
    /// File offset of the data block table.
    pub blocks_table: u64,
    /// File offset of the driver list.
    pub driver_list: u64,
    /// File offset of each data block's bytes.
    pub block_data: Vec<u64>,
}

/// A triage dump (DumpType 4) with data blocks at `blocks` (VA, bytes), `drivers` and, if
/// given, a KDBG copy (at the header's KdDebuggerDataBlock) and a call stack (VA, bytes).
pub fn triage(
    spec: &HeaderSpec,
    blocks: &[(u64, &[u8])],
    drivers: &[TriageDriver<'_>],
    kdbg: Option<&[u8]>,
    stack: Option<(u64, &[u8])>,
) -> TriageFile {
    let th = HEADER_SIZE;
    let blocks_table = th + super::triage::TRIAGE_HEADER_SIZE;
    let driver_list = blocks_table + 16 * blocks.len() as u64;
    let pool = driver_list + super::triage::DRIVER_ENTRY_SIZE * drivers.len() as u64;
    let mut body: Vec<u8> = Vec::new(); // from `pool`
    let mut name_offsets = Vec::new();
    for d in drivers {
        name_offsets.push(pool + body.len() as u64);
        let units: Vec<u16> = d.name.encode_utf16().collect();
        body.extend_from_slice(&(units.len() as u32).to_le_bytes());
        for u in units.iter().chain(std::iter::once(&0u16)) {
            body.extend_from_slice(&u.to_le_bytes());
        }
        while body.len() % 8 != 0 {
            body.push(0);
        }
    }
    let mut block_data = Vec::new();
    for (_, data) in blocks {
        block_data.push(pool + body.len() as u64);
        body.extend_from_slice(data);
    }
    let kdbg_at = kdbg.map(|k| {
        let at = pool + body.len() as u64;
        body.extend_from_slice(k);
        (at, k.len())
    });
    let stack_at = stack.map(|(va, s)| {
        let at = pool + body.len() as u64;
        body.extend_from_slice(s);
        (va, at, s.len())
    });
    let size = pool + body.len() as u64;
    let mut out = header_bytes(spec, DUMP_TYPE_TRIAGE, None, size);
    out.resize(pool as usize, 0);
    out.extend_from_slice(&body);
    let mut put = |off: u64, bytes: &[u8]| {
        out[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
    };
    let u32le = |v: u64| (v as u32).to_le_bytes();
    put(th + 0x04, &u32le(size));
    put(th + 0x30, &u32le(driver_list));
    put(th + 0x34, &u32le(drivers.len() as u64));
    put(th + 0x38, &u32le(pool));
    put(th + 0x78, &u32le(blocks_table));
    put(th + 0x7C, &u32le(blocks.len() as u64));
    if let Some((at, len)) = kdbg_at {
        put(th + 0x70, &u32le(at));
        put(th + 0x74, &u32le(len as u64));
    }
    if let Some((va, at, len)) = stack_at {
        put(th + 0x48, &va.to_le_bytes());
        put(th + 0x28, &u32le(at));
        put(th + 0x2C, &u32le(len as u64));
    }
    for (i, ((va, data), off)) in blocks.iter().zip(&block_data).enumerate() {
        let at = blocks_table + 16 * i as u64;
        put(at, &va.to_le_bytes());
        put(at + 8, &u32le(*off));
        put(at + 12, &u32le(data.len() as u64));
    }
    for (i, (d, name_at)) in drivers.iter().zip(&name_offsets).enumerate() {
        let at = driver_list + super::triage::DRIVER_ENTRY_SIZE * i as u64;
        put(at, &u32le(*name_at));
        put(at + 0x38, &d.base.to_le_bytes());
        put(at + 0x48, &d.size.to_le_bytes());
    }
    TriageFile {
        bytes: out,
        triage_header: th,
        blocks_table,
        driver_list,
        block_data,
    }
}

/// How many kinds of [`seed`] there are.
pub const SEED_KINDS: u8 = 7;

/// A small valid dump of each layout vmi reads, by `kind` (taken modulo [`SEED_KINDS`]):
/// full, bitmap, live (6), RDMP complete (0xA), RDMP kernel (8 and 9), triage. The inputs of
/// the fuzz target and of the seeded mutation test.
pub fn seed(kind: u8) -> Vec<u8> {
    let pages: Vec<u8> = (0..5 * 4096u32).map(|i| (i / 4096 + i) as u8).collect();
    let runs = [
        (Pa::new(0x1000), &pages[..0x2000]),
        (Pa::new(0x10_0000), &pages[0x2000..0x3000]),
        (Pa::new(0x20_0000), &pages[0x3000..]),
    ];
    let spec = HeaderSpec {
        directory_table_base: 0x1000,
        ps_active_process_head: 0xFFFF_F802_0000_1000,
        ..Default::default()
    };
    let mut out = Vec::new();
    match kind % SEED_KINDS {
        0 => {
            super::write_runs(&mut out, &spec, super::WriteLayout::Full, &runs)
                .expect("a full dump of three runs");
        }
        1 => {
            super::write_runs(&mut out, &spec, super::WriteLayout::Bitmap, &runs)
                .expect("a bitmap dump");
        }
        2 => out = bitmap(&spec, 6, b"SDMP", &runs),
        3 => out = rdmp(&spec, 0xA, &runs).0,
        4 => out = rdmp(&spec, 8, &runs).0,
        5 => out = rdmp(&spec, 9, &runs).0,
        _ => {
            let drivers = [TriageDriver {
                name: "ntoskrnl.exe",
                base: 0xFFFF_F802_0000_0000,
                size: 0x100_0000,
            }];
            out = triage(
                &spec,
                &[
                    (0xFFFF_F802_0000_0F00, &pages[..0x300]),
                    (0x7FFE_0000_0000, &pages[..0x1000]),
                ],
                &drivers,
                Some(&pages[..0x100]),
                Some((0xFFFF_8000_0000_0800, &pages[..0x900])),
            )
            .bytes;
        }
    }
    out
}
