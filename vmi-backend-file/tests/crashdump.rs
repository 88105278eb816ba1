//! Windows crash dumps: every DumpType vmi reads, written from known memory (the public writer
//! for types 1 and 5, `crashdump::testing` for 6, 8, 9, 0xA and 4) and read back page for page;
//! holes are absent; the header's facts reach the target; hostile variants are precise errors
//! or bounded partial reads, never panics.

use std::collections::BTreeMap;

use vmi_backend_file::crashdump::testing::{self, TriageDriver};
use vmi_backend_file::crashdump::{self, CrashDumpError, DumpKind, HeaderSpec, Pages, WriteLayout};
use vmi_backend_file::{Dump, DumpError, DumpFormat};
use vmi_core::vcpu::RegisterSource;
use vmi_core::{
    HintedModule, MemoryError, Pa, PhysicalMemory, PhysicalMemoryExt, SegmentRegister, Va,
    VcpuRegisters, X86Registers,
};

const PAGE: u64 = 4096;

/// Page `pfn`'s content: distinct per page and per byte.
fn page(pfn: u64) -> Vec<u8> {
    (0..PAGE)
        .map(|i| (pfn.wrapping_mul(0x9E37).wrapping_add(i * 7) >> 1) as u8)
        .collect()
}

/// Runs of pages with known content: (first PFN, count).
fn runs_data(runs: &[(u64, u64)]) -> Vec<(Pa, Vec<u8>)> {
    runs.iter()
        .map(|&(pfn, count)| {
            let bytes = (pfn..pfn + count).flat_map(page).collect();
            (Pa::new(pfn * PAGE), bytes)
        })
        .collect()
}

fn borrowed(runs: &[(Pa, Vec<u8>)]) -> Vec<(Pa, &[u8])> {
    runs.iter().map(|(pa, b)| (*pa, &b[..])).collect()
}

fn spec() -> HeaderSpec {
    HeaderSpec {
        major_version: 0xF,
        minor_version: 19041,
        directory_table_base: 0x1AD002,
        pfn_database: 0xFFFF_FA80_0000_0000,
        ps_loaded_module_list: 0xFFFF_F802_1E42_A2B0,
        ps_active_process_head: 0xFFFF_F802_1E41_E060,
        kd_debugger_data_block: 0xFFFF_F802_1E20_0B20,
        number_processors: 4,
        bugcheck_code: 0xE2,
        bugcheck_parameters: [1, 2, 3, 0xFFFF_FFFF_FFFF_FFFF],
        system_time: (1_709_210_096 + 11_644_473_600) * 10_000_000,
        system_up_time: 1234 * 10_000_000,
        product_type: 1,
        suite_mask: 0x110,
        registers: X86Registers {
            rax: 0x1111,
            rbx: 0x2222,
            rcx: 0x3333,
            rdx: 0x4444,
            rsi: 0x5555,
            rdi: 0x6666,
            rbp: 0x7777,
            rsp: 0xFFFF_8000_1234_5F00,
            r8: 8,
            r9: 9,
            r10: 10,
            r11: 11,
            r12: 12,
            r13: 13,
            r14: 14,
            r15: 15,
            rip: 0xFFFF_F802_1E01_2345,
            rflags: 0x10246,
            cs: SegmentRegister {
                selector: 0x10,
                ..Default::default()
            },
            ss: SegmentRegister {
                selector: 0x18,
                ..Default::default()
            },
            ds: SegmentRegister {
                selector: 0x2B,
                ..Default::default()
            },
            es: SegmentRegister {
                selector: 0x2B,
                ..Default::default()
            },
            fs: SegmentRegister {
                selector: 0x53,
                ..Default::default()
            },
            gs: SegmentRegister {
                selector: 0x2B,
                ..Default::default()
            },
            ..Default::default()
        },
    }
}

/// Every page of `runs` reads back exactly; every page around them is absent.
fn check_pages(mem: &dyn PhysicalMemory, runs: &[(u64, u64)]) {
    let present: BTreeMap<u64, ()> = runs
        .iter()
        .flat_map(|&(p, c)| (p..p + c).map(|x| (x, ())))
        .collect();
    let mut buf = vec![0u8; PAGE as usize];
    for &pfn in present.keys() {
        mem.read(Pa::new(pfn * PAGE), &mut buf)
            .unwrap_or_else(|e| panic!("page {pfn:#x}: {e}"));
        assert!(buf == page(pfn), "page {pfn:#x} differs");
    }
    let last = present.keys().next_back().copied().unwrap_or(0);
    for pfn in 0..last + 4 {
        if present.contains_key(&pfn) {
            continue;
        }
        assert!(
            matches!(
                mem.read(Pa::new(pfn * PAGE), &mut buf),
                Err(MemoryError::OutOfRange { .. })
            ),
            "page {pfn:#x} should be absent"
        );
        // A read running from a present page into the hole fails as a whole.
        if pfn > 0 && present.contains_key(&(pfn - 1)) {
            let mut b = [0u8; 8];
            assert!(mem.read(Pa::new(pfn * PAGE - 4), &mut b).is_err());
        }
    }
    let total: u64 = runs.iter().map(|(_, c)| c * PAGE).sum();
    assert_eq!(mem.total_bytes(), total);
}

fn detail<'a>(dump: &'a Dump, key: &str) -> Option<&'a str> {
    dump.details()
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn check_header_facts(dump: &Dump, dtb: u64) {
    let s = spec();
    let hints = dump.kernel_hints();
    assert_eq!(hints.dtb, Some(dtb));
    assert_eq!(hints.os_version.as_deref(), Some("windows 15.19041"));
    let sym = |n: &str| hints.symbols.get(n).copied();
    assert_eq!(
        sym("PsActiveProcessHead"),
        Some(Va::new(s.ps_active_process_head))
    );
    assert_eq!(
        sym("PsLoadedModuleList"),
        Some(Va::new(s.ps_loaded_module_list))
    );
    assert_eq!(
        sym("KdDebuggerDataBlock"),
        Some(Va::new(s.kd_debugger_data_block))
    );
    assert_eq!(sym("MmPfnDatabase"), Some(Va::new(s.pfn_database)));
    assert_eq!(hints.symbols.len(), 4);

    let regs = dump.context_registers().unwrap();
    assert_eq!(regs.vcpu_count(), 1);
    let r = regs.registers(0).unwrap();
    let w = &s.registers;
    assert_eq!(
        [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp],
        [w.rax, w.rbx, w.rcx, w.rdx, w.rsi, w.rdi, w.rbp, w.rsp]
    );
    assert_eq!(
        [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags],
        [w.r8, w.r9, w.r10, w.r11, w.r12, w.r13, w.r14, w.r15, w.rip, w.rflags]
    );
    assert_eq!(
        [
            r.cs.selector,
            r.ss.selector,
            r.ds.selector,
            r.es.selector,
            r.fs.selector,
            r.gs.selector
        ],
        [0x10, 0x18, 0x2B, 0x2B, 0x53, 0x2B]
    );
    assert_eq!(r.cr3, dtb);
    assert_eq!(r.efer, 0x500);
    assert_eq!(r.efer_source, Some(RegisterSource::Inferred));
    assert!(r.cs.long_mode());
    assert_eq!(
        vmi_core::PagingMode::from_registers(&r).mode,
        vmi_core::PagingMode::Ia32e4
    );

    assert_eq!(detail(dump, "processors"), Some("4"));
    assert_eq!(
        detail(dump, "bugcheck"),
        Some("0xe2 (0x1, 0x2, 0x3, 0xffffffffffffffff)")
    );
    assert_eq!(detail(dump, "version"), Some("15.19041 (free build)"));
    assert!(detail(dump, "system_time")
        .unwrap()
        .starts_with("2024-02-29 12:34:56 UTC"));
    assert_eq!(detail(dump, "system_up_time"), Some("1234.000 s"));
    assert_eq!(detail(dump, "warnings"), None, "{:?}", dump.details());
}

fn into_target_keeps_everything(dump: Dump, dtb: u64) {
    let t = dump.into_target();
    assert_eq!(
        (t.backend, t.format.as_str()),
        ("file", "windows-crashdump")
    );
    assert_eq!(t.kernel_hints.dtb, Some(dtb));
    let regs = t.registers.expect("registers");
    assert_eq!(regs.registers(0).unwrap().cr3, dtb);
    assert!(!t.slow_reads && t.writer.is_none());
}

const RUNS: &[(u64, u64)] = &[(1, 0x9E), (0x100, 0x40), (0x180, 3), (0x1000, 1)];

fn full_dump_round_trip() {
    let data = runs_data(RUNS);
    let mut file = Vec::new();
    let n = crashdump::write_runs(&mut file, &spec(), WriteLayout::Full, &borrowed(&data)).unwrap();
    let pages: u64 = RUNS.iter().map(|(_, c)| c).sum();
    assert_eq!(n, 0x2000 + pages * PAGE);
    assert_eq!(file.len() as u64, n);
    // RequiredDumpSpace is the size of the file.
    assert_eq!(file[0xFA0..0xFA8], n.to_le_bytes());
    let dump = Dump::from_bytes(file).unwrap();
    assert_eq!(dump.format(), DumpFormat::WindowsCrashDump);
    assert!(dump.registers().is_none()); // no ELF notes: the CONTEXT is context_registers()
    check_pages(dump.memory(), RUNS);
    assert_eq!(dump.memory().memory_map().len(), 4);
    check_header_facts(&dump, 0x1AD002);
    assert_eq!(detail(&dump, "dump_type"), Some("1 (full)"));
    assert_eq!(
        detail(&dump, "pages"),
        Some(&*format!("{pages} present in 4 runs (4 regions)"))
    );
    into_target_keeps_everything(dump, 0x1AD002);
}

fn bitmap_dump_round_trip() {
    // More runs than a full dump can hold, and a bitmap whose last byte is partly used.
    let mut runs: Vec<(u64, u64)> = (0..60).map(|i| (3 + i * 5, 1 + i % 3)).collect();
    runs.push((0x3F1, 8));
    let data = runs_data(&runs);
    let mut file = Vec::new();
    crashdump::write_runs(&mut file, &spec(), WriteLayout::Bitmap, &borrowed(&data)).unwrap();
    assert_eq!(&file[0x2000..0x2008], b"FDMPDUMP");
    let first_page = u64::from_le_bytes(file[0x2020..0x2028].try_into().unwrap());
    assert_eq!(first_page, 0x2038 + 0x3F9u64.div_ceil(8));
    assert_ne!(first_page % PAGE, 0);
    let dump = Dump::from_bytes(file.clone()).unwrap();
    check_pages(dump.memory(), &runs);
    check_header_facts(&dump, 0x1AD002);
    assert_eq!(detail(&dump, "dump_type"), Some("5 (bitmap)"));
    // The same through the memory-mapped file.
    let path = std::env::temp_dir().join(format!("vmi-crashdump-{}.dmp", std::process::id()));
    std::fs::write(&path, &file).unwrap();
    let mapped = Dump::open(&path).unwrap();
    check_pages(mapped.memory(), &runs);
    std::fs::remove_file(&path).unwrap();

    // From a PhysicalMemory and its map (the fixture generator's path): same bytes.
    let mem = Dump::from_bytes(file.clone()).unwrap();
    let mut again = Vec::new();
    crashdump::write(&mut again, &spec(), WriteLayout::Bitmap, mem.memory()).unwrap();
    assert!(again == file);
}

fn live_and_rdmp_dumps_round_trip() {
    let data = runs_data(RUNS);
    let runs = borrowed(&data);
    let live = testing::bitmap(&spec(), 6, b"SDMP", &runs);
    let dump = Dump::from_bytes(live).unwrap();
    check_pages(dump.memory(), RUNS);
    check_header_facts(&dump, 0x1AD002);
    assert_eq!(detail(&dump, "dump_type"), Some("6 (live kernel (bitmap))"));
    for (ty, name) in [
        (8, "8 (kernel memory (.dump /k))"),
        (9, "9 (kernel and user memory (.dump /ka))"),
        (0xA, "10 (complete memory (.dump /f))"),
    ] {
        let (file, _) = testing::rdmp(&spec(), ty, &runs);
        let dump = Dump::from_bytes(file).unwrap();
        check_pages(dump.memory(), RUNS);
        check_header_facts(&dump, 0x1AD002);
        assert_eq!(detail(&dump, "dump_type"), Some(name));
        assert_eq!(
            detail(&dump, "rdmp"),
            Some("4 ranges, first page at file offset 0x3000")
        );
    }
}

fn random_bitmaps_read_back_exactly() {
    let mut seed = 0x1234_5678_9ABC_DEF1u64;
    for round in 0..20 {
        let mut runs = Vec::new();
        let mut pfn = 0u64;
        while pfn < 700 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let (gap, len) = (seed % 9, 1 + (seed >> 8) % 20);
            pfn += gap;
            runs.push((pfn, len));
            pfn += len + 1;
        }
        let data = runs_data(&runs);
        let mut file = Vec::new();
        crashdump::write_runs(&mut file, &spec(), WriteLayout::Bitmap, &borrowed(&data)).unwrap();
        let dump = Dump::from_bytes(file).unwrap_or_else(|e| panic!("round {round}: {e}"));
        check_pages(dump.memory(), &runs);
    }
}

// ---- triage ----

const KVA: u64 = 0xFFFF_F802_1E00_0000;

/// A user VA that is not page-aligned, a kernel block crossing three pages, a one-byte block,
/// two overlapping blocks, a KDBG copy and a call stack.
fn triage_file() -> (testing::TriageFile, Vec<(u64, Vec<u8>)>) {
    let bytes = |n: usize, k: u8| -> Vec<u8> { (0..n).map(|i| (i as u8) ^ k).collect() };
    let blocks: Vec<(u64, Vec<u8>)> = vec![
        (0x7FFE_0000_0100, bytes(0x200, 1)),
        (KVA + 0xF00, bytes(0x2200, 2)),
        (0xFFFF_8000_0000_0FFF, bytes(1, 3)),
        (KVA + 0x10_0000, bytes(0x100, 4)),
        (KVA + 0x10_0080, bytes(0x100, 5)), // overlaps the previous one by 0x80
    ];
    let refs: Vec<(u64, &[u8])> = blocks.iter().map(|(v, b)| (*v, &b[..])).collect();
    let drivers = [
        TriageDriver {
            name: "ntoskrnl.exe",
            base: KVA,
            size: 0x104_6000,
        },
        TriageDriver {
            name: "hal.dll",
            base: 0xFFFF_F802_1D80_0000,
            size: 0x6000,
        },
    ];
    let kdbg = bytes(0x368, 6);
    let stack = bytes(0x1800, 7);
    let s = spec();
    let file = testing::triage(
        &s,
        &refs,
        &drivers,
        Some(&kdbg),
        Some((0xFFFF_8000_1234_5800, &stack)),
    );
    let mut expected = blocks;
    expected.push((s.kd_debugger_data_block, kdbg));
    expected.push((0xFFFF_8000_1234_5800, stack));
    (file, expected)
}

/// An independent 4-level walk over the dump's physical memory; `large` allows 2 MiB and
/// 1 GiB pages (the synthetic triage tables have none).
fn walk_with(mem: &dyn PhysicalMemory, root: u64, va: u64, large: bool) -> Option<u64> {
    let mut table = root & 0x000F_FFFF_FFFF_F000;
    for shift in [39, 30, 21, 12] {
        let index = (va >> shift) & 0x1FF;
        let entry = mem.read_u64(Pa::new(table + index * 8)).ok()?;
        if entry & 1 == 0 {
            return None;
        }
        let frame = entry & 0x000F_FFFF_FFFF_F000;
        if shift != 12 && shift != 39 && entry & 0x80 != 0 {
            assert!(large, "no large pages expected at {va:#x}");
            let mask = (1u64 << shift) - 1;
            return Some((frame & !mask) | (va & mask));
        }
        table = frame;
    }
    Some(table | (va & 0xFFF))
}

fn walk(mem: &dyn PhysicalMemory, root: u64, va: u64) -> Option<u64> {
    walk_with(mem, root, va, false)
}

fn read_va(mem: &dyn PhysicalMemory, root: u64, va: u64) -> Option<u8> {
    let pa = walk(mem, root, va)?;
    let mut b = [0u8; 1];
    mem.read(Pa::new(pa), &mut b).ok()?;
    Some(b[0])
}

fn triage_data_blocks_behind_synthetic_page_tables() {
    let (file, expected) = triage_file();
    let parsed = crashdump::parse(&file.bytes).unwrap();
    assert_eq!(parsed.kind, DumpKind::Triage);
    assert!(matches!(parsed.pages, Pages::Triage(_)));
    let dump = Dump::from_bytes(file.bytes.clone()).unwrap();
    let root = dump.kernel_hints().dtb.unwrap();
    assert_eq!(root, 0x1000);
    let mem = dump.memory();
    // Model: every byte of every block, the earlier-starting block winning an overlap.
    let mut model: BTreeMap<u64, u8> = BTreeMap::new();
    let mut sorted = expected.clone();
    sorted.sort_by_key(|(va, _)| *va);
    for (va, bytes) in &sorted {
        for (i, b) in bytes.iter().enumerate() {
            model.entry(va + i as u64).or_insert(*b);
        }
    }
    for (&va, &b) in &model {
        assert_eq!(read_va(mem, root, va), Some(b), "va {va:#x}");
    }
    // Bytes around each block are absent, in the same page or the next.
    for (va, bytes) in &expected {
        for probe in [va.wrapping_sub(1), va + bytes.len() as u64, va + 0x3000] {
            if !model.contains_key(&probe) {
                assert_eq!(
                    read_va(mem, root, probe),
                    None,
                    "va {probe:#x} must be absent"
                );
            }
        }
    }
    // Elsewhere nothing is mapped.
    for va in [0u64, 0x7FFD_FFFF_F000, KVA - 0x1000, 0xFFFF_FFFF_FFFF_F000] {
        assert_eq!(walk(mem, root, va), None, "{va:#x}");
    }
    // The memory map holds the table frames and exactly the block bytes.
    let tables = mem.memory_map()[0];
    assert_eq!(tables.start, Pa::new(0x1000));
    let data_bytes: u64 = mem.memory_map()[1..].iter().map(|r| r.len).sum();
    assert_eq!(data_bytes, model.len() as u64);
    // A read from the tables into the gap after them fails.
    let mut b = [0u8; 16];
    assert!(mem.read(Pa::new(tables.end_raw() - 8), &mut b).is_err());

    let hints = dump.kernel_hints();
    assert_eq!(
        hints.modules,
        [
            HintedModule {
                name: "ntoskrnl.exe".into(),
                base: Va::new(KVA),
                size: 0x104_6000
            },
            HintedModule {
                name: "hal.dll".into(),
                base: Va::new(0xFFFF_F802_1D80_0000),
                size: 0x6000
            },
        ]
    );
    assert_eq!(hints.os_version.as_deref(), Some("windows 15.19041"));
    let r = dump.context_registers().unwrap().context().clone();
    assert_eq!((r.cr3, r.rip), (0x1000, spec().registers.rip));
    assert_eq!(detail(&dump, "header_dtb"), Some("0x1ad002"));
    assert_eq!(
        detail(&dump, "warnings"),
        Some("0x80 bytes of triage data blocks overlap earlier blocks and were ignored")
    );
    assert_eq!(detail(&dump, "drivers"), Some("2"));
    into_target_keeps_everything(dump, 0x1000);
}

// ---- hostile variants ----

fn crash_err(bytes: Vec<u8>) -> CrashDumpError {
    match Dump::from_bytes(bytes) {
        Err(DumpError::CrashDump(e)) => e,
        Err(e) => panic!("expected a crash dump error, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}

fn put(file: &mut [u8], at: usize, bytes: &[u8]) {
    file[at..at + bytes.len()].copy_from_slice(bytes);
}

fn full_file() -> Vec<u8> {
    let data = runs_data(RUNS);
    let mut file = Vec::new();
    crashdump::write_runs(&mut file, &spec(), WriteLayout::Full, &borrowed(&data)).unwrap();
    file
}

fn bitmap_file() -> Vec<u8> {
    let data = runs_data(RUNS);
    let mut file = Vec::new();
    crashdump::write_runs(&mut file, &spec(), WriteLayout::Bitmap, &borrowed(&data)).unwrap();
    file
}

fn hostile_headers_and_runs() {
    let good = full_file();
    // Truncated header: a crash dump error, not a raw image.
    let err = Dump::from_bytes(good[..0x1000].to_vec()).unwrap_err();
    assert!(
        matches!(
            err,
            DumpError::TruncatedHeader {
                what: "crash dump header",
                needed: 0x2000,
                ..
            }
        ),
        "{err}"
    );
    // Truncated page data.
    let cut = good.len() - 1;
    assert_eq!(
        crash_err(good[..cut].to_vec()),
        CrashDumpError::PagesBeyondFile {
            what: "run",
            index: 3,
            end: good.len() as u64,
            file_len: cut as u64
        }
    );
    // More than 43 runs, and "PAGE" as the run count.
    let mut f = good.clone();
    put(&mut f, 0x88, &44u32.to_le_bytes());
    assert_eq!(
        crash_err(f),
        CrashDumpError::TooManyRuns { runs: 44, max: 43 }
    );
    let mut f = good.clone();
    put(&mut f, 0x88, b"PAGE");
    assert!(matches!(crash_err(f), CrashDumpError::TooManyRuns { .. }));
    // Page counts that overflow, and huge but representable ones.
    let mut f = good.clone();
    put(&mut f, 0xA0, &(u64::MAX / 2).to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::RunOverflow {
            what: "run",
            index: 0,
            ..
        }
    ));
    let mut f = good.clone();
    put(&mut f, 0x98, &(u64::MAX >> 12).to_le_bytes());
    assert!(matches!(crash_err(f), CrashDumpError::RunOverflow { .. }));
    let mut f = good.clone();
    put(&mut f, 0xA0, &(1u64 << 40).to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::PagesBeyondFile { index: 0, .. }
    ));
    // Runs that overlap physically.
    let mut f = good.clone();
    put(&mut f, 0xA8, &2u64.to_le_bytes());
    assert!(matches!(
        Dump::from_bytes(f),
        Err(DumpError::OverlappingSegments { .. })
    ));
    // A page count that disagrees with the runs is a warning only.
    let mut f = good.clone();
    put(&mut f, 0x90, &7u64.to_le_bytes());
    let dump = Dump::from_bytes(f).unwrap();
    assert!(detail(&dump, "warnings")
        .unwrap()
        .contains("says 0x7 pages"));
    // Unsupported dump types.
    for ty in [0u32, 2, 3, 7, 0xB, u32::from_le_bytes(*b"PAGE")] {
        let mut f = good.clone();
        put(&mut f, 0xF98, &ty.to_le_bytes());
        assert_eq!(
            crash_err(f),
            CrashDumpError::UnsupportedDumpType { dump_type: ty }
        );
    }
}

fn hostile_bitmaps() {
    let good = bitmap_file();
    let bits_at = 0x2030;
    let first_page = u64::from_le_bytes(good[0x2020..0x2028].try_into().unwrap());
    let mut f = good.clone();
    put(&mut f, 0x2000, b"XDMP");
    assert!(matches!(
        crash_err(f),
        CrashDumpError::BitmapSignature { .. }
    ));
    // A bitmap claiming 2^63 pages: refused before anything is read or allocated.
    let mut f = good.clone();
    put(&mut f, bits_at, &(1u64 << 63).to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::BitmapBeyondFile { bits, .. } if bits == 1 << 63
    ));
    let mut f = good.clone();
    put(&mut f, bits_at, &u64::MAX.to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::BitmapBeyondFile { .. }
    ));
    // FirstPage past the end, inside the bitmap, or PAGE.
    for fp in [
        good.len() as u64 + 1,
        0x2040,
        u64::from_le_bytes(*b"PAGEPAGE"),
    ] {
        let mut f = good.clone();
        put(&mut f, 0x2020, &fp.to_le_bytes());
        assert!(
            matches!(crash_err(f), CrashDumpError::FirstPageOutside { first_page, .. } if first_page == fp),
            "{fp:#x}"
        );
    }
    // Bits set for pages the file does not hold.
    let mut f = good.clone();
    f[0x2038 + 0x200 / 8] = 0xFF; // PFNs 0x200..0x208 are not in the runs
    assert!(first_page > 0x2038 + 0x200 / 8);
    assert!(matches!(
        crash_err(f),
        CrashDumpError::PagesBeyondFile {
            what: "bitmap run",
            ..
        }
    ));
    // Truncated inside the bitmap header and inside the pages.
    let err = Dump::from_bytes(good[..0x2010].to_vec()).unwrap_err();
    assert!(matches!(
        err,
        DumpError::TruncatedHeader {
            what: "bitmap dump header",
            ..
        }
    ));
    assert!(matches!(
        crash_err(good[..good.len() - 4096].to_vec()),
        CrashDumpError::PagesBeyondFile { .. }
    ));
    // A present-page count that disagrees with the bits is a warning only.
    let mut f = good.clone();
    put(&mut f, 0x2028, &1u64.to_le_bytes());
    let dump = Dump::from_bytes(f).unwrap();
    assert!(detail(&dump, "warnings")
        .unwrap()
        .contains("says 0x1 present pages"));
}

fn hostile_rdmp() {
    let data = runs_data(RUNS);
    let runs = borrowed(&data);
    let (good, ranges_at) = testing::rdmp(&spec(), 0xA, &runs);
    let ranges_at = ranges_at as usize;
    // Metadata size and first page offset that disagree, or underflow.
    for (meta, first) in [(0xFE0u64, 0x3010u64), (0x10, 0x3000), (0xFE8, 0x3008)] {
        let mut f = good.clone();
        put(&mut f, 0x2010, &meta.to_le_bytes());
        put(&mut f, 0x2018, &first.to_le_bytes());
        assert_eq!(
            crash_err(f),
            CrashDumpError::RdmpMetadataMismatch {
                metadata_size: meta,
                first_page: first
            }
        );
    }
    let mut f = good.clone();
    put(&mut f, 0x2004, b"XDMP");
    assert!(matches!(crash_err(f), CrashDumpError::RdmpHeader { .. }));
    // A consistent header whose first page is past the end of the file.
    let mut f = good.clone();
    let huge = 1u64 << 40;
    put(&mut f, 0x2010, &(huge - 0x2020).to_le_bytes());
    put(&mut f, 0x2018, &huge.to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::FirstPageOutside { .. }
    ));
    // More pages in the ranges than the complete dump's total.
    let mut f = good.clone();
    put(&mut f, 0x2028, &5u64.to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::RdmpPageTotal { total: 5, .. }
    ));
    // A range whose pages overflow or leave the file.
    let mut f = good.clone();
    put(&mut f, ranges_at + 8, &u64::MAX.to_le_bytes());
    put(&mut f, 0x2028, &u64::MAX.to_le_bytes());
    assert!(matches!(crash_err(f), CrashDumpError::RunOverflow { .. }));
    let (kernel, _) = testing::rdmp(&spec(), 8, &runs);
    let mut f = kernel.clone();
    put(&mut f, ranges_at + 8, &(1u64 << 30).to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::PagesBeyondFile { what: "range", .. }
    ));
    // A zero PFN ends the list: only the first range is served.
    let mut f = kernel.clone();
    put(&mut f, ranges_at + 16, &0u64.to_le_bytes());
    let dump = Dump::from_bytes(f).unwrap();
    check_pages(dump.memory(), &RUNS[..1]);
}

fn hostile_triage() {
    let (good, _) = triage_file();
    let th = good.triage_header as usize;
    // A data block whose bytes are outside the file.
    let mut f = good.bytes.clone();
    put(
        &mut f,
        good.blocks_table as usize + 8,
        &(good.bytes.len() as u32 - 4).to_le_bytes(),
    );
    assert!(matches!(
        crash_err(f),
        CrashDumpError::TriageBlockOutside {
            what: "data block",
            index: 0,
            ..
        }
    ));
    // An absurd block count, and a table offset past the end.
    let mut f = good.bytes.clone();
    put(&mut f, th + 0x7C, &u32::MAX.to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::TriageTableOutside {
            what: "data blocks",
            ..
        }
    ));
    let mut f = good.bytes.clone();
    put(&mut f, th + 0x78, &u32::MAX.to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::TriageTableOutside { .. }
    ));
    // Non-canonical and wrapping virtual ranges.
    for va in [
        0x0000_8000_0000_0000u64,
        0xFFFF_FFFF_FFFF_FFF0,
        0x0000_7FFF_FFFF_FFF0,
        // The block (0x200 bytes) would end at the last byte of the address space.
        0u64.wrapping_sub(0x200),
    ] {
        let mut f = good.bytes.clone();
        put(&mut f, good.blocks_table as usize, &va.to_le_bytes());
        assert!(
            matches!(crash_err(f), CrashDumpError::TriageBlockAddress { va: v, .. } if v == va),
            "{va:#x}"
        );
    }
    // The call stack's bytes outside the file.
    let mut f = good.bytes.clone();
    put(&mut f, th + 0x2C, &u32::MAX.to_le_bytes());
    assert!(matches!(
        crash_err(f),
        CrashDumpError::TriageBlockOutside {
            what: "call stack",
            ..
        }
    ));
    // Truncated triage header.
    let err = Dump::from_bytes(good.bytes[..0x2040].to_vec()).unwrap_err();
    assert!(matches!(
        err,
        DumpError::TruncatedHeader {
            what: "triage dump header",
            ..
        }
    ));
    // A driver whose name is outside the file: the list stops there, with a warning.
    let mut f = good.bytes.clone();
    put(
        &mut f,
        good.driver_list as usize + 0x90,
        &u32::MAX.to_le_bytes(),
    );
    let dump = Dump::from_bytes(f).unwrap();
    assert_eq!(dump.kernel_hints().modules.len(), 1);
    assert!(detail(&dump, "warnings")
        .unwrap()
        .contains("triage driver 1"));
    // An absurd driver count: none listed, memory still served.
    let mut f = good.bytes.clone();
    put(&mut f, th + 0x34, &u32::MAX.to_le_bytes());
    let dump = Dump::from_bytes(f).unwrap();
    assert!(dump.kernel_hints().modules.is_empty());
    assert!(detail(&dump, "warnings")
        .unwrap()
        .contains("triage driver list"));
    // Many blocks aliasing the same file bytes at distinct VAs: bounded by the page limit.
    let data = vec![0xAB; 5 * 4096];
    let blocks: Vec<(u64, &[u8])> = (0..1u64)
        .map(|i| (KVA + i * 0x10_0000, &data[..]))
        .collect();
    let mut t = testing::triage(&spec(), &blocks, &[], None, None);
    let count = 1u64 << 16;
    let table_at = t.bytes.len();
    for i in 0..count {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&(KVA + i * 0x10_0000).to_le_bytes());
        e[8..12].copy_from_slice(&(t.block_data[0] as u32).to_le_bytes());
        e[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        t.bytes.extend_from_slice(&e);
    }
    put(&mut t.bytes, th + 0x78, &(table_at as u32).to_le_bytes());
    put(&mut t.bytes, th + 0x7C, &(count as u32).to_le_bytes());
    assert_eq!(
        crash_err(t.bytes),
        CrashDumpError::TriageTooLarge {
            pages: 5 << 16,
            max: 1 << 18
        }
    );
}

/// Real memory: each fixture guest's ELF dump rewritten as a full and a bitmap crash dump reads
/// back page for page, and vCPU 0's CR3 walks the same kernel page tables through it.
fn real_guest_memory_as_crash_dumps() {
    for g in vmi_fixtures::guests() {
        let elf = Dump::open(g.elf()).unwrap();
        let regs = elf.registers().unwrap().registers(0).unwrap();
        let s = HeaderSpec {
            directory_table_base: regs.cr3,
            registers: regs.clone(),
            ..Default::default()
        };
        for layout in [WriteLayout::Full, WriteLayout::Bitmap] {
            let what = format!("{} {layout:?}", g.name);
            let mut file = Vec::new();
            match crashdump::write(&mut file, &s, layout, elf.memory()) {
                Ok(_) => {}
                // QEMU's map of a guest can have more runs than a full dump holds.
                Err(e) if layout == WriteLayout::Full => {
                    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{what}");
                    continue;
                }
                Err(e) => panic!("{what}: {e}"),
            }
            let dump = Dump::from_bytes(file).unwrap();
            assert_eq!(
                dump.memory().memory_map(),
                elf.memory().memory_map(),
                "{what}"
            );
            let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
            for r in elf.memory().memory_map() {
                let mut pa = r.start.raw();
                while pa < r.end_raw() {
                    let n = (r.end_raw() - pa).min(1 << 20) as usize;
                    dump.memory().read(Pa::new(pa), &mut a[..n]).unwrap();
                    elf.memory().read(Pa::new(pa), &mut b[..n]).unwrap();
                    assert!(a[..n] == b[..n], "{what}: {pa:#x}");
                    pa += n as u64;
                }
            }
            let r = dump.context_registers().unwrap().context().clone();
            assert_eq!(
                (r.cr3, r.rip, r.rsp),
                (regs.cr3, regs.rip, regs.rsp),
                "{what}"
            );
            // The kernel's text, found through the guest's own tables in both dumps.
            if regs.cr4 & (1 << 12) == 0 {
                let rip = regs.rip;
                let x = walk_with(dump.memory(), r.cr3, rip, true);
                let y = walk_with(elf.memory(), regs.cr3, rip, true);
                assert!(x.is_some(), "{what}: rip {rip:#x} does not translate");
                assert_eq!(x, y, "{what}: rip {rip:#x}");
            }
        }
    }
}

vmi_fixtures::real_guest_tests!(
    full_dump_round_trip,
    bitmap_dump_round_trip,
    live_and_rdmp_dumps_round_trip,
    random_bitmaps_read_back_exactly,
    triage_data_blocks_behind_synthetic_page_tables,
    hostile_headers_and_runs,
    hostile_bitmaps,
    hostile_rdmp,
    hostile_triage,
    real_guest_memory_as_crash_dumps,
);
