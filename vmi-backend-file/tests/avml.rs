//! AVML captures written by Microsoft's real `avml` (crates.io `avml`, its `convert`
//! subcommand runs the same block writer as `avml --compress` acquisition) from the files of
//! each fixture guest's stop: its `memory.raw` (one range from physical 0, as from
//! `/dev/crash`) and a LiME file of its ELF dump's regions (several ranges that do not start
//! on 16 MiB boundaries, as from `/proc/kcore`). Every page of each capture must equal the ELF
//! dump's, and a page the capture lacks must be zeros in the ELF dump (avml leaves out 16 MiB
//! blocks that are all zeros).
//!
//! Captures that the fixture builder took inside a running guest (`capture.lime` by LiME,
//! `capture.avml` and `capture.avml-compressed` by `avml acquire` from `/proc/kcore`, a minute
//! before the host's dumps; `scripts/README.md`, "Captures") cannot equal the ELF dump page
//! for page, so they are checked against what does not change: every page reads (each AVML
//! chunk decompresses and passes its CRC), the capture holds only `System RAM` of the guest's
//! own `/proc/iomem` (LiME: exactly that), and every byte of the kernel's `Kernel code`
//! equals `memory.raw`'s.
//!
//! `avml` with its `convert` subcommand is found as `$VMI_AVML`, on `$PATH`, or in the
//! fixture cache (`cargo install avml --no-default-features --features convert`); without one,
//! only the in-guest captures are checked (and the test is skipped by name if there are none).

use std::path::PathBuf;

use vmi_backend_file::{lime, Dump, DumpFormat};
use vmi_core::{MemoryError, Pa, PhysicalMemory};
use vmi_fixtures::guests;

mod common;
use common::avml::{avml_binary, convert};

/// A physical range, (first, last) inclusive, as `/proc/iomem` writes it.
type Range = (u64, u64);

/// The top-level `System RAM` ranges and the `Kernel code` range of a guest's `/proc/iomem`.
fn iomem(text: &str) -> (Vec<Range>, Option<Range>) {
    let range = |l: &str| {
        let (r, _) = l.trim().split_once(" : ")?;
        let (a, b) = r.split_once('-')?;
        Some((
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        ))
    };
    let ram = text
        .lines()
        .filter(|l| !l.starts_with(' ') && l.ends_with(": System RAM"))
        .filter_map(range)
        .collect();
    let code = text
        .lines()
        .find(|l| l.trim_end().ends_with(": Kernel code"))
        .and_then(range);
    (ram, code)
}

/// A temporary directory removed when dropped, also when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vmi-avml-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every page of `capture` equals `elf`'s; every ELF page below `limit` the capture lacks is
/// zeros. With `inside`, the capture has nothing outside the ELF dump's RAM. A capture of the
/// raw image is compared below the raw image's size only: the raw image also holds the legacy
/// VGA/ROM window, which QEMU's ELF dump leaves out, and lacks the VGA memory above 4 GiB's
/// hole, which the ELF dump has. Returns (pages compared, pages absent).
fn same_memory(
    what: &str,
    capture: &dyn PhysicalMemory,
    elf: &dyn PhysicalMemory,
    inside: bool,
    limit: u64,
) -> (u64, u64) {
    for r in capture.memory_map().iter().filter(|_| inside) {
        assert!(
            elf.memory_map()
                .iter()
                .any(|e| e.start <= r.start && r.end_raw() <= e.end_raw()),
            "{what}: region {}+{:#x} is not RAM of the ELF dump",
            r.start,
            r.len
        );
    }
    let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
    let (mut present, mut absent) = (0u64, 0u64);
    for r in elf.memory_map() {
        let mut pa = r.start.raw();
        while pa < r.end_raw().min(limit) {
            let n = (r.end_raw().min(limit) - pa).min(4096) as usize;
            elf.read(Pa::new(pa), &mut b[..n]).unwrap();
            match capture.read(Pa::new(pa), &mut a[..n]) {
                Ok(()) => {
                    assert!(a[..n] == b[..n], "{what}: page {pa:#x} differs");
                    present += 1;
                }
                Err(MemoryError::OutOfRange { .. }) => {
                    assert!(
                        b[..n].iter().all(|&x| x == 0),
                        "{what}: page {pa:#x} is absent but not zeros in the ELF dump"
                    );
                    absent += 1;
                }
                Err(e) => panic!("{what}: page {pa:#x}: {e}"),
            }
            pa += n as u64;
        }
    }
    (present, absent)
}

fn avml_and_lime_captures_of_each_guest() {
    let avml = avml_binary();
    let mut converted = 0usize;
    let mut acquired = 0usize;
    for g in guests() {
        let elf = Dump::open(g.elf()).unwrap();
        // Captures made inside the guest by the fixture builder, if any.
        let raw = Dump::open(g.raw()).unwrap();
        for name in ["capture.avml", "capture.avml-compressed", "capture.lime"] {
            let path = g.dir.join(name);
            if !path.is_file() {
                continue;
            }
            let what = format!("{} {name}", g.name);
            let (ram, code) = iomem(&g.truth("iomem"));
            let (code_first, code_last) = code.unwrap_or_else(|| panic!("{what}: no Kernel code"));
            assert!(!ram.is_empty(), "{what}: no System RAM in truth/iomem");
            let dump = Dump::open(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
            let expected = if name.ends_with("compressed") {
                DumpFormat::Avml
            } else {
                DumpFormat::Lime
            };
            assert_eq!(dump.format(), expected, "{what}");
            let mem = dump.memory();
            let map: Vec<(u64, u64)> = mem
                .memory_map()
                .iter()
                .map(|r| (r.start.raw(), r.end_raw() - 1))
                .collect();
            for &(a, b) in &map {
                assert!(
                    ram.iter().any(|&(s, e)| s <= a && b <= e),
                    "{what}: {a:#x}..={b:#x} is not System RAM of the guest ({ram:x?})"
                );
            }
            if name == "capture.lime" {
                assert_eq!(
                    map, ram,
                    "{what}: LiME captures every System RAM range whole"
                );
            }
            let mut page = vec![0u8; 4096];
            let mut pages = 0u64;
            for r in mem.memory_map() {
                let mut pa = r.start.raw();
                while pa < r.end_raw() {
                    let n = (r.end_raw() - pa).min(4096) as usize;
                    mem.read(Pa::new(pa), &mut page[..n])
                        .unwrap_or_else(|e| panic!("{what}: {pa:#x}: {e}"));
                    pa += n as u64;
                    pages += 1;
                }
            }
            // The kernel's code did not change between the capture and the host's dumps.
            let len = (code_last - code_first + 1) as usize;
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            mem.read(Pa::new(code_first), &mut a)
                .unwrap_or_else(|e| panic!("{what}: Kernel code: {e}"));
            raw.memory().read(Pa::new(code_first), &mut b).unwrap();
            assert!(a == b, "{what}: Kernel code differs from memory.raw's");
            println!(
                "{what}: {pages} pages read, {} regions inside System RAM, Kernel code \
                 ({len} bytes) equal to memory.raw",
                map.len()
            );
            acquired += 1;
        }
        let Some(avml) = avml.as_deref() else {
            continue;
        };
        let tmp = TempDir::new(&g.name);
        // From the raw image: one range from 0, cut by avml into 16 MiB blocks.
        let from_raw = tmp.0.join("raw.avml");
        convert(avml, "raw", "lime_compressed", &g.raw(), &from_raw);
        // From a LiME file of the ELF regions: ranges at their real starts.
        let lime_path = tmp.0.join("regions.lime");
        {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&lime_path).unwrap());
            lime::write(&mut out, elf.memory()).unwrap();
        }
        let from_lime = tmp.0.join("regions.avml");
        convert(avml, "lime", "lime_compressed", &lime_path, &from_lime);
        // And back: avml's own uncompressed output is LiME.
        let back = tmp.0.join("back.lime");
        convert(avml, "lime_compressed", "lime", &from_lime, &back);
        for (path, format) in [
            (&from_raw, DumpFormat::Avml),
            (&from_lime, DumpFormat::Avml),
            (&back, DumpFormat::Lime),
        ] {
            let what = format!("{} {}", g.name, path.file_name().unwrap().to_string_lossy());
            let dump = Dump::open(path).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(dump.format(), format, "{what}");
            assert!(dump.registers().is_none(), "{what}");
            let (inside, limit) = if path == &from_raw {
                (false, std::fs::metadata(g.raw()).unwrap().len())
            } else {
                (true, u64::MAX)
            };
            let (present, absent) = same_memory(&what, dump.memory(), elf.memory(), inside, limit);
            assert!(
                present * 4096 >= g.mem_bytes / 8,
                "{what}: only {present} pages present"
            );
            println!("{what}: {present} pages equal the ELF dump's, {absent} absent (zeros)");
            if format == DumpFormat::Avml {
                let get = |k: &str| {
                    dump.details()
                        .iter()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                assert!(get("blocks").contains("snappy-compressed"), "{what}");
                assert!(get("compression").starts_with("snappy"), "{what}");
            }
            converted += 1;
        }
    }
    if converted == 0 && acquired == 0 {
        vmi_fixtures::skip(
            "no avml with its convert subcommand ($VMI_AVML, $PATH or the fixture cache; cargo \
             install avml --no-default-features --features convert) and no in-guest captures \
             (capture.avml, capture.avml-compressed, capture.lime)",
        );
    }
    if avml.is_none() {
        println!("no avml with convert: only the in-guest captures were checked");
    }
    println!("{converted} avml-written and {acquired} in-guest captures checked");
}

vmi_fixtures::real_guest_tests!(avml_and_lime_captures_of_each_guest,);
