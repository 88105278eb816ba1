//! Checks against real QEMU guests built by `scripts/fixture-guest`.
//!
//! A guest directory holds `memory.elf` (QEMU `dump-guest-memory`, no paging), `memory.raw`
//! (`pmemsave` of RAM from physical 0), `vcpus.tsv` (`index cr0 cr3 cr4 efer` from QMP),
//! `registers.txt` (`info registers -a`, taken while the guest was stopped for the dumps) and
//! `guest.json`. The guests are `$VMI_FIXTURE_GUESTS` if set, else every complete guest under
//! `${XDG_CACHE_HOME:-$HOME/.cache}/vmi-fixtures/guests/`. Without any, each test is reported
//! ignored (failed under `$VMI_REQUIRE_FIXTURES`).

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use vmi_backend_file::elf::{self, EM_X86_64};
use vmi_backend_file::notes::{self, PrstatusLayout};
use vmi_backend_file::registers::{EFER_LMA, EFER_LME};
use vmi_backend_file::{lime, Dump, DumpError, DumpFormat, FILE_BACKEND};
use vmi_core::vcpu::RegisterSource;
use vmi_core::{OpenOptions, Pa, PagingMode, PhysicalMemory, PhysicalMemoryExt, VcpuRegisters};

/// The fixture guests (see `vmi-fixtures`: none is a skip, reported with the test's name).
fn guests(_test: &str) -> Vec<PathBuf> {
    vmi_fixtures::guests().into_iter().map(|g| g.dir).collect()
}

/// A temporary directory removed when dropped, also when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("vmi-backend-file-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Tsv {
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

fn read_tsv(dir: &Path) -> Vec<Tsv> {
    let text = fs::read_to_string(dir.join("vcpus.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[0].parse::<usize>().unwrap(), i, "vcpus.tsv line {i}");
            Tsv {
                cr0: hex(f[1]),
                cr3: hex(f[2]),
                cr4: hex(f[3]),
                efer: hex(f[4]),
            }
        })
        .collect()
}

/// One vCPU of `info registers -a`: plain registers, and segments as
/// (selector, base, limit, flags).
#[derive(Default)]
struct InfoRegisters {
    regs: HashMap<String, u64>,
    segs: HashMap<String, (u64, u64, u64, u64)>,
}

fn read_info_registers(dir: &Path) -> Vec<InfoRegisters> {
    let text = fs::read_to_string(dir.join("registers.txt")).unwrap();
    let mut cpus: Vec<InfoRegisters> = Vec::new();
    for line in text.lines() {
        if line.starts_with("CPU#") {
            cpus.push(InfoRegisters::default());
            continue;
        }
        let Some(cpu) = cpus.last_mut() else { continue };
        let line = line.replace(" =", "=").replace(" =", "=");
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some((name, value)) = tokens.first().and_then(|t| t.split_once('=')) else {
            continue;
        };
        match name {
            "CS" | "DS" | "ES" | "FS" | "GS" | "SS" | "LDT" | "TR" => {
                cpu.segs.insert(
                    name.into(),
                    (hex(value), hex(tokens[1]), hex(tokens[2]), hex(tokens[3])),
                );
            }
            "GDT" | "IDT" => {
                cpu.segs
                    .insert(name.into(), (0, hex(tokens[1]), hex(tokens[2]), 0));
            }
            _ => {
                for t in &tokens {
                    if let Some((k, v)) = t.split_once('=') {
                        if let Ok(v) = u64::from_str_radix(v, 16) {
                            cpu.regs.insert(k.into(), v);
                        }
                    }
                }
            }
        }
    }
    cpus
}

fn guest_json_number(dir: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(dir.join("guest.json")).ok()?;
    let at = text.find(&format!("\"{key}\""))?;
    let rest = text[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn registers_match_qemu() {
    for dir in guests("registers_match_qemu") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let dump = Dump::open(dir.join("memory.elf")).unwrap();
        assert_eq!(dump.format(), DumpFormat::ElfCore);
        println!("{name}: {:?}", dump.details());
        let regs = dump.registers().expect("QEMU ELF dumps have CPU notes");
        let tsv = read_tsv(&dir);
        let info = read_info_registers(&dir);
        assert_eq!(
            regs.vcpu_count(),
            tsv.len(),
            "{name}: vCPU count vs vcpus.tsv"
        );
        assert_eq!(
            regs.vcpu_count(),
            info.len(),
            "{name}: vCPU count vs registers.txt"
        );
        if let Some(n) = guest_json_number(&dir, "vcpus") {
            assert_eq!(regs.vcpu_count() as u64, n);
        }
        let expected_mode = match guest_json_number(&dir, "paging") {
            Some(4) => Some(PagingMode::Ia32e4),
            Some(5) => Some(PagingMode::Ia32e5),
            _ => None,
        };

        for (i, (t, txt)) in tsv.iter().zip(&info).enumerate() {
            let r = regs.registers(i).unwrap();
            assert_eq!(
                (r.cr0, r.cr3, r.cr4),
                (t.cr0, t.cr3, t.cr4),
                "{name} vCPU {i}"
            );
            assert_eq!(r.efer_source, Some(RegisterSource::Inferred));
            assert_ne!(
                r.efer & EFER_LME,
                0,
                "{name} vCPU {i}: inferred EFER lacks LME"
            );
            assert_eq!(
                r.efer & (EFER_LME | EFER_LMA),
                t.efer & (EFER_LME | EFER_LMA)
            );
            if let Some(mode) = expected_mode {
                assert_eq!(PagingMode::from_registers(&r).mode, mode, "{name} vCPU {i}");
            }

            let g = |k: &str| *txt.regs.get(k).unwrap_or_else(|| panic!("{k} missing"));
            let ours = [
                ("RAX", r.rax),
                ("RBX", r.rbx),
                ("RCX", r.rcx),
                ("RDX", r.rdx),
                ("RSI", r.rsi),
                ("RDI", r.rdi),
                ("RBP", r.rbp),
                ("RSP", r.rsp),
                ("R8", r.r8),
                ("R9", r.r9),
                ("R10", r.r10),
                ("R11", r.r11),
                ("R12", r.r12),
                ("R13", r.r13),
                ("R14", r.r14),
                ("R15", r.r15),
                ("RIP", r.rip),
                ("RFL", r.rflags),
                ("CR0", r.cr0),
                ("CR2", r.cr2),
                ("CR3", r.cr3),
                ("CR4", r.cr4),
            ];
            for (k, v) in ours {
                assert_eq!(v, g(k), "{name} vCPU {i} {k}");
            }
            let segs = [
                ("CS", r.cs),
                ("DS", r.ds),
                ("ES", r.es),
                ("FS", r.fs),
                ("GS", r.gs),
                ("SS", r.ss),
            ];
            for (k, s) in segs {
                let (sel, base, limit, flags) = txt.segs[k];
                assert_eq!(u64::from(s.selector), sel, "{name} vCPU {i} {k} selector");
                assert_eq!(s.base, base, "{name} vCPU {i} {k} base");
                assert_eq!(u64::from(s.limit), limit, "{name} vCPU {i} {k} limit");
                // `info registers` masks the flags with 0x00ffff00.
                assert_eq!(
                    u64::from(s.flags & 0x00ff_ff00),
                    flags,
                    "{name} vCPU {i} {k}"
                );
            }
            assert!(r.cs.long_mode());
            assert_eq!(r.gs_base, txt.segs["GS"].1);
            assert_eq!(r.gdtr_base, txt.segs["GDT"].1);
            assert_eq!(r.idtr_base, txt.segs["IDT"].1);
        }

        // NT_PRSTATUS, decoded independently, agrees with the QEMU notes.
        let bytes = fs::read(dir.join("memory.elf")).unwrap();
        let core = elf::parse(&bytes).unwrap();
        assert_eq!(core.machine, EM_X86_64);
        let decoded = notes::decode(&core.notes).unwrap();
        assert_eq!(decoded.prstatus.len(), decoded.qemu.len());
        for (i, (p, q)) in decoded.prstatus.iter().zip(&decoded.qemu).enumerate() {
            assert_eq!(p.layout, PrstatusLayout::X86_64);
            let (a, b) = (&p.regs, &q.regs);
            let pairs = [
                (a.rax, b.rax),
                (a.rbx, b.rbx),
                (a.rcx, b.rcx),
                (a.rdx, b.rdx),
                (a.rsi, b.rsi),
                (a.rdi, b.rdi),
                (a.rbp, b.rbp),
                (a.rsp, b.rsp),
                (a.r8, b.r8),
                (a.r9, b.r9),
                (a.r10, b.r10),
                (a.r11, b.r11),
                (a.r12, b.r12),
                (a.r13, b.r13),
                (a.r14, b.r14),
                (a.r15, b.r15),
                (a.rip, b.rip),
                (a.rflags, b.rflags),
                (a.fs_base, b.fs_base),
                (a.gs_base, b.gs_base),
            ];
            for (j, (x, y)) in pairs.iter().enumerate() {
                assert_eq!(
                    x, y,
                    "{name} vCPU {i}: NT_PRSTATUS vs QEMU note, register {j}"
                );
            }
            for (x, y) in [(a.cs, b.cs), (a.ss, b.ss), (a.ds, b.ds), (a.es, b.es)] {
                assert_eq!(x.selector, y.selector, "{name} vCPU {i}");
            }
            assert!(
                q.kernel_gs_base.is_some(),
                "QEMU 7.2 notes have kernel_gs_base"
            );
        }
        println!(
            "{name}: {} vCPUs match vcpus.tsv and registers.txt; VMCOREINFO: {}",
            regs.vcpu_count(),
            dump.vmcoreinfo()
                .map_or("absent".into(), |v| format!("{} bytes", v.len()))
        );
    }
}

/// Compares `a` and `b` over `[start, start + len)` in 1 MiB chunks.
fn compare(a: &dyn PhysicalMemory, b: &dyn PhysicalMemory, start: u64, len: u64, what: &str) {
    const CHUNK: u64 = 1 << 20;
    let (mut x, mut y) = (vec![0u8; CHUNK as usize], vec![0u8; CHUNK as usize]);
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK) as usize;
        let pa = Pa::new(start + done);
        a.read(pa, &mut x[..n]).unwrap();
        b.read(pa, &mut y[..n]).unwrap();
        if x[..n] != y[..n] {
            let k = x[..n]
                .iter()
                .zip(&y[..n])
                .position(|(p, q)| p != q)
                .unwrap();
            panic!(
                "{what}: bytes differ at physical {:#x}",
                start + done + k as u64
            );
        }
        done += n as u64;
    }
}

fn elf_and_raw_agree() {
    for dir in guests("elf_and_raw_agree") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let elf = Dump::open(dir.join("memory.elf")).unwrap();
        let raw = Dump::open(dir.join("memory.raw")).unwrap();
        assert_eq!(raw.format(), DumpFormat::Raw);
        assert!(raw.registers().is_none());
        let raw_len = raw.memory().total_bytes();
        let (mut compared, mut skipped) = (0u64, Vec::new());
        for region in elf.memory().memory_map() {
            let start = region.start.raw();
            let end = region.end_raw().min(raw_len);
            if start >= end {
                skipped.push(*region);
                continue;
            }
            compare(elf.memory(), raw.memory(), start, end - start, &name);
            compared += end - start;
            if end < region.end_raw() {
                skipped.push(vmi_core::MemoryRegion {
                    start: Pa::new(end),
                    len: region.end_raw() - end,
                });
            }
        }
        // All of RAM below the raw image's end is compared: the 512 MiB guests have RAM
        // minus the 0xa0000..0xc0000 VGA window in their ELF map.
        assert!(
            compared + 0x20000 >= raw_len,
            "{name}: compared only {compared:#x}"
        );
        println!(
            "{name}: ELF and raw agree over {compared:#x} bytes; ELF regions beyond the \
             {raw_len:#x}-byte raw image (device memory, firmware): {skipped:?}"
        );
        // Reads of 8 bytes on both sides of every region boundary behave alike.
        for region in elf.memory().memory_map() {
            let below = region.start.checked_sub(4);
            if let Some(pa) = below {
                assert!(
                    elf.memory().read_u64(pa).is_err(),
                    "{name}: hole below {pa}"
                );
            }
            assert!(elf.memory().read_u64(region.start).is_ok());
            let last = Pa::new(region.end_raw() - 8);
            assert!(elf.memory().read_u64(last).is_ok());
            assert!(elf
                .memory()
                .read_u64(Pa::new(region.end_raw() - 4))
                .is_err());
        }
    }
}

fn lime_written_from_elf_reads_the_same() {
    for dir in guests("lime_written_from_elf_reads_the_same") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = TempDir::new("lime");
        let elf = Dump::open(dir.join("memory.elf")).unwrap();
        let path = tmp.0.join("memory.lime");
        let mut out = BufWriter::new(fs::File::create(&path).unwrap());
        let written = lime::write(&mut out, elf.memory()).unwrap();
        out.flush().unwrap();
        drop(out);
        assert_eq!(fs::metadata(&path).unwrap().len(), written);

        let lime_dump = Dump::open(&path).unwrap();
        assert_eq!(lime_dump.format(), DumpFormat::Lime);
        assert!(lime_dump.registers().is_none());
        assert_eq!(lime_dump.memory().memory_map(), elf.memory().memory_map());
        for region in elf.memory().memory_map() {
            compare(
                elf.memory(),
                lime_dump.memory(),
                region.start.raw(),
                region.len,
                &name,
            );
        }
        let target = lime_dump.into_target();
        assert_eq!(target.format, "lime");

        // The same file cut short by one byte: its last range is beyond the end.
        let ranges = elf.memory().memory_map().len();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(written - 1).unwrap();
        drop(f);
        match Dump::open(&path).unwrap_err() {
            DumpError::SegmentBeyondFile {
                index,
                end,
                file_len,
            } => {
                assert_eq!((index, end, file_len), (ranges - 1, written, written - 1));
            }
            e => panic!("{name}: {e}"),
        }
        println!("{name}: LiME image of {written:#x} bytes ({ranges} ranges) reads the same");
    }
}

/// Writes a copy of `src` of `len` bytes to `dst`: the first MiB (all headers and notes of a
/// QEMU dump) for real, the rest as a hole, so that copies of 500 MiB cost nothing. Parsing
/// reads only headers and notes; the bytes of memory are never compared here.
fn sparse_copy(src: &[u8], dst: &Path, len: u64, patch: impl FnOnce(&mut Vec<u8>)) {
    let mut head = src[..src.len().min(1 << 20).min(len as usize)].to_vec();
    patch(&mut head);
    let f = fs::File::create(dst).unwrap();
    (&f).write_all(&head).unwrap();
    f.set_len(len).unwrap();
}

fn damaged_copies_give_precise_errors() {
    for dir in guests("damaged_copies_give_precise_errors") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = TempDir::new("damaged");
        let original = fs::read(dir.join("memory.elf")).unwrap();
        let full = original.len() as u64;
        let core = elf::parse(&original).unwrap();
        let loads = core.loads.clone();
        let note_ph = 0usize; // QEMU writes the PT_NOTE first.
        let path = tmp.0.join("copy.elf");
        let open = |path: &Path| Dump::open(path).unwrap_err();

        // Truncations.
        sparse_copy(&original, &path, 10, |_| {});
        assert!(
            matches!(
                open(&path),
                DumpError::TruncatedHeader {
                    what: "ELF identification" | "ELF header",
                    offset: 0,
                    ..
                }
            ),
            "{name}"
        );
        sparse_copy(&original, &path, 40, |_| {});
        assert!(matches!(
            open(&path),
            DumpError::TruncatedHeader {
                what: "ELF header",
                ..
            }
        ));
        let phoff = u64::from_le_bytes(original[32..40].try_into().unwrap());
        sparse_copy(&original, &path, phoff + 60, |_| {});
        match open(&path) {
            DumpError::TruncatedHeader { what, offset, .. } => {
                assert_eq!((what, offset), ("program header table", phoff));
            }
            e => panic!("{name}: {e}"),
        }
        let first_load = loads[0];
        sparse_copy(&original, &path, first_load.offset - 16, |_| {});
        assert!(
            matches!(open(&path), DumpError::SegmentBeyondFile { index, .. } if index == note_ph),
            "{name}: cut inside the notes"
        );
        for (k, cut) in [
            loads[1].offset + loads[1].filesz / 2,
            loads[loads.len() - 1].offset + 1,
            // One byte short of the last segment's end (QEMU 7.2 puts a section name table
            // after it, so cutting the file's last byte alone is harmless).
            loads.iter().map(|p| p.offset + p.filesz).max().unwrap() - 1,
        ]
        .into_iter()
        .enumerate()
        {
            sparse_copy(&original, &path, cut, |_| {});
            match open(&path) {
                DumpError::SegmentBeyondFile {
                    index,
                    end,
                    file_len,
                } => {
                    let ph = loads.iter().find(|p| p.index == index).unwrap();
                    assert_eq!(end, ph.offset + ph.filesz, "{name} cut {k}");
                    assert_eq!(file_len, cut);
                }
                e => panic!("{name} cut {k} at {cut:#x}: {e}"),
            }
        }

        // Corrupted program headers.
        let ph_at = |index: usize| (phoff + 56 * index as u64) as usize;
        let big = loads[1];
        sparse_copy(&original, &path, full, |h| {
            // p_offset of the big RAM segment pushed past the end of the file.
            let at = ph_at(big.index) + 8;
            h[at..at + 8].copy_from_slice(&(full - 0x1000).to_le_bytes());
        });
        assert!(matches!(
            open(&path),
            DumpError::SegmentBeyondFile { index, .. } if index == big.index
        ));
        sparse_copy(&original, &path, full, |h| {
            // The big RAM segment's p_paddr moved onto the first segment's range.
            let at = ph_at(big.index) + 24;
            h[at..at + 8].copy_from_slice(&0x1000u64.to_le_bytes());
        });
        match open(&path) {
            DumpError::OverlappingSegments { first, second, at } => {
                assert_eq!((first, second, at), (loads[0].index, big.index, 0x1000));
            }
            e => panic!("{name}: {e}"),
        }
        sparse_copy(&original, &path, full, |h| {
            let at = ph_at(big.index) + 40; // p_memsz
            h[at..at + 8].copy_from_slice(&0x1000u64.to_le_bytes());
        });
        assert!(matches!(
            open(&path),
            DumpError::FileSizeExceedsMemSize { index, memsz: 0x1000, .. } if index == big.index
        ));
        // A QEMU note with an unknown version.
        let qemu_note = core.notes.iter().find(|n| n.name == b"QEMU").unwrap();
        let desc_at = qemu_note.desc.as_ptr() as usize - original.as_ptr() as usize;
        sparse_copy(&original, &path, full, |h| h[desc_at] = 9);
        assert!(matches!(
            open(&path),
            DumpError::QemuNoteVersion {
                index: 0,
                version: 9
            }
        ));

        // An unknown file, and the same through the registered backend.
        let unknown = tmp.0.join("notes.txt");
        fs::write(&unknown, b"not a memory dump\n").unwrap();
        assert!(matches!(
            open(&unknown),
            DumpError::UnknownFormat { len: 18, .. }
        ));
        let err = (FILE_BACKEND.open)(unknown.to_str().unwrap(), &OpenOptions::default())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("not a memory dump vmi recognises"),
            "{err}"
        );
        println!("{name}: truncated and corrupted copies give precise errors");
    }
}

fn backend_opens_real_dumps() {
    for dir in guests("backend_opens_real_dumps") {
        let spec = format!("{}", dir.join("memory.elf").display());
        let t = (FILE_BACKEND.open)(&spec, &OpenOptions::default()).unwrap();
        assert_eq!((t.backend, t.format.as_str()), ("file", "elf-core"));
        assert!(t.registers.as_ref().unwrap().vcpu_count() > 0);
        let details: HashMap<_, _> = t.details.iter().cloned().collect();
        let has_vmcoreinfo = vmi_fixtures::load(&dir).unwrap().elf_has_vmcoreinfo;
        assert_eq!(t.vmcoreinfo.is_some(), has_vmcoreinfo, "{}", dir.display());
        assert_eq!(
            details["notes"],
            format!(
                "{n} QEMU CPU notes, {n} NT_PRSTATUS{}",
                if has_vmcoreinfo { ", VMCOREINFO" } else { "" },
                n = t.registers.as_ref().unwrap().vcpu_count()
            )
        );
        assert_eq!(details["addresses"], "p_paddr");
        let raw = (FILE_BACKEND.open)(
            &format!("{}", dir.join("memory.raw").display()),
            &OpenOptions::default(),
        )
        .unwrap();
        assert_eq!(raw.format, "raw");
        assert!(raw.registers.is_none());
    }
}

vmi_fixtures::real_guest_tests!(
    registers_match_qemu,
    elf_and_raw_agree,
    lime_written_from_elf_reads_the_same,
    damaged_copies_give_precise_errors,
    backend_opens_real_dumps,
);
