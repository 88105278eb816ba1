//! The kernel image and its kallsyms tables found in real guests' memory, checked against the
//! guests' own view: `truth/version` (`/proc/version`), `truth/kallsyms` (`/proc/kallsyms`
//! lines) and `truth/iomem` (the physical "Kernel code" range).
//!
//! Guests: `$VMI_FIXTURE_GUESTS` (colon-separated guest directories) if set, else every
//! complete guest under `$VMI_FIXTURES_DIR/guests` (default
//! `${XDG_CACHE_HOME:-$HOME/.cache}/vmi-fixtures`). Without guests the tests are reported
//! ignored, or fail if `$VMI_REQUIRE_FIXTURES` is set. Timings are printed; run with `--release
//! -- --nocapture` to see meaningful ones.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vmi_arch_x86 as _;
use vmi_backend_file as _;
use vmi_core::{Session, Va};
use vmi_os_linux::kallsyms::{Kallsyms, KernelImage, TableOrder};

/// The guest directories to test (see `vmi-fixtures`), or `None` when there are none.
fn guests(_test: &str) -> Option<Vec<PathBuf>> {
    let dirs: Vec<PathBuf> = vmi_fixtures::guests().into_iter().map(|g| g.dir).collect();
    (!dirs.is_empty()).then_some(dirs)
}

fn name(guest: &Path) -> String {
    guest.file_name().unwrap().to_string_lossy().into_owned()
}

/// `truth/kallsyms`: (address, type, name) per line.
fn truth_symbols(guest: &Path) -> Vec<(u64, char, String)> {
    let text = std::fs::read_to_string(guest.join("truth/kallsyms")).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let kind = it.next()?.chars().next()?;
            Some((addr, kind, it.next()?.to_owned()))
        })
        .collect()
}

/// The start of the "Kernel code" range of `truth/iomem`.
fn truth_kernel_code(guest: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(guest.join("truth/iomem")).ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_end().ends_with(": Kernel code"))?;
    u64::from_str_radix(line.trim().split('-').next()?, 16).ok()
}

fn open(guest: &Path) -> Session {
    let path = guest.join("memory.elf");
    Session::open(path.to_str().unwrap(), &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn kernel_and_kallsyms_match_the_guest_view() {
    let Some(guests) = guests("kernel_and_kallsyms_match_the_guest_view") else {
        return;
    };
    for guest in &guests {
        let g = name(guest);
        let session = open(guest);

        let t0 = Instant::now();
        let image = KernelImage::locate(&session).unwrap_or_else(|e| panic!("{g}: {e}"));
        let t1 = Instant::now();
        let syms = image.kallsyms().unwrap_or_else(|e| panic!("{g}: {e}"));
        let t2 = Instant::now();
        println!(
            "{g}: locate {:.1} ms ({} KiB region at {}), kallsyms {:.1} ms ({} symbols, {:?}, \
             absolute percpu: {}), total {:.1} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            image.region().bytes().len() / 1024,
            image.region().base(),
            (t2 - t1).as_secs_f64() * 1e3,
            syms.len(),
            syms.layout().order,
            syms.layout().absolute_percpu,
            (t2 - t0).as_secs_f64() * 1e3,
        );

        // The banner is the guest's /proc/version.
        let version = std::fs::read_to_string(guest.join("truth/version")).unwrap();
        assert_eq!(
            image.banner(),
            version.trim_end_matches('\n'),
            "{g}: banner"
        );
        assert!(
            version.contains(image.release()),
            "{g}: release {}",
            image.release()
        );

        // Every /proc/kallsyms line of the guest.
        let truth = truth_symbols(guest);
        assert!(
            truth.len() >= 10,
            "{g}: truth/kallsyms has {} lines",
            truth.len()
        );
        for (addr, kind, sym) in &truth {
            let got = syms
                .get(sym)
                .unwrap_or_else(|| panic!("{g}: {sym} is not in the decoded table"));
            assert_eq!(
                got.address, *addr,
                "{g}: {sym}: {:#x} != {addr:#x}",
                got.address
            );
            assert_eq!(got.kind, *kind, "{g}: type of {sym}");
        }

        // The slides agree with each other, with the symbols and with the guest's iomem.
        let text = syms.lookup("_text").unwrap();
        assert_eq!(image.text(), Va::new(text), "{g}: _text");
        assert_eq!(
            syms.lookup("linux_banner"),
            Some(image.banner_va().raw()),
            "{g}"
        );
        assert_eq!(
            image.virtual_slide(),
            text.wrapping_sub(0xffff_ffff_8100_0000) as i64,
            "{g}: virtual slide"
        );
        assert_eq!(
            image.virtual_slide() % (2 << 20),
            0,
            "{g}: slide is 2 MiB aligned"
        );
        if let Some(code) = truth_kernel_code(guest) {
            assert_eq!(image.text_pa().raw(), code, "{g}: physical _text");
            assert_eq!(image.physical_slide(), code as i64 - 0x100_0000, "{g}");
        }
        let translated = session.translate(image.space(), image.text()).unwrap();
        assert_eq!(translated.pa, image.text_pa(), "{g}");

        // Table order by kernel version, and the tables where 6.12 itself says they are.
        let expected = if image.release().starts_with("6.1.") {
            TableOrder::OffsetsFirst
        } else {
            TableOrder::NamesFirst
        };
        assert_eq!(syms.layout().order, expected, "{g}: table order");
        let base = image.region().base().raw();
        let l = syms.layout();
        for (sym, off) in [
            ("kallsyms_num_syms", l.num_syms_at),
            ("kallsyms_names", l.names),
            ("kallsyms_markers", l.markers),
            ("kallsyms_token_table", l.token_table),
            ("kallsyms_token_index", l.token_index),
            ("kallsyms_offsets", l.offsets),
            ("kallsyms_relative_base", l.relative_base_at),
        ] {
            if let Some((addr, _, _)) = truth.iter().find(|(_, _, n)| n == sym) {
                assert_eq!(base + off as u64, *addr, "{g}: {sym}");
            }
        }

        // Sorted by address, as the kernel sorts them; names are what /proc/kallsyms shows.
        let mut prev = 0;
        for s in syms.iter() {
            assert!(s.address >= prev, "{g}: {} out of order", s.name);
            assert!(
                !s.name.is_empty() && s.kind.is_ascii_alphabetic(),
                "{g}: {s:?}"
            );
            prev = s.address;
        }
        assert!(syms.len() > 50_000, "{g}: only {} symbols", syms.len());

        // The profile holds link-time addresses: System.map values.
        let profile = syms.to_profile(image.virtual_slide());
        assert_eq!(
            profile.symbol_address("_text").unwrap(),
            0xffff_ffff_8100_0000
        );
        let init_task = syms.lookup("init_task").unwrap();
        assert_eq!(
            profile.symbol_address("init_task").unwrap(),
            init_task - image.virtual_slide() as u64
        );
        // Per-CPU symbols keep their absolute values.
        if let Some(s) = syms.get("current_task").filter(|s| s.absolute) {
            assert_eq!(profile.symbol_address("current_task").unwrap(), s.address);
        }
    }
}

/// The hostile half: the real image bytes with their tables damaged fail cleanly.
fn damaged_real_tables_fail_cleanly() {
    let Some(guests) = guests("damaged_real_tables_fail_cleanly") else {
        return;
    };
    for guest in &guests {
        damage(guest);
    }
}

fn damage(guest: &Path) {
    use vmi_os_linux::kallsyms::KallsymsError as E;
    let g = name(guest);
    let session = open(guest);
    let image = KernelImage::locate(&session).unwrap();
    let region = image.region();
    let base = region.base();
    let layout = *Kallsyms::find(region.bytes(), base).unwrap().layout();
    let damaged = |at: usize, with: &[u8]| {
        let mut bytes = region.bytes().to_vec();
        bytes[at..at + with.len()].copy_from_slice(with);
        let r = Kallsyms::find(&bytes, base);
        println!(
            "{g}: {with:02x?} at {at:#x}: {:?}",
            r.as_ref().map(|k| k.len()).map_err(|e| e.to_string())
        );
        r
    };

    // A token made non-printable: no token table is left.
    let e = damaged(layout.token_table + 1, &[0x01]).unwrap_err();
    assert!(matches!(e, E::TokenTableNotFound { .. }), "{g}: {e}");
    // The token index no longer ascending.
    let e = damaged(layout.token_index + 20, &[0xff, 0xff]).unwrap_err();
    assert!(matches!(e, E::TokenTableNotFound { .. }), "{g}: {e}");

    // num_syms absurd: the markers no longer agree with it.
    let e = damaged(layout.num_syms_at, &0x7fff_ffff_u32.to_le_bytes()).unwrap_err();
    assert!(matches!(e, E::NamesNotFound { .. }), "{g}: {e}");
    // num_syms off by one.
    let e = damaged(layout.num_syms_at, &(layout.num_syms + 1).to_le_bytes()).unwrap_err();
    assert!(matches!(e, E::NamesNotFound { .. }), "{g}: {e}");

    // A marker moved: the names walk misses it.
    let e = damaged(layout.markers + 8, &[0x01, 0x00, 0x00, 0x00]).unwrap_err();
    assert!(
        matches!(e, E::MarkersNotFound { .. } | E::NamesNotFound { .. }),
        "{g}: {e}"
    );

    // One name's length changed: the walk misses the next marker.
    let first = region.bytes()[layout.names];
    let e = damaged(layout.names, &[first ^ 0x3]).unwrap_err();
    assert!(matches!(e, E::NamesNotFound { .. }), "{g}: {e}");

    // Offsets unsorted: neither order is accepted.
    let e = damaged(layout.offsets + 4 * 1000, &(-0x7000_0000_i32).to_le_bytes()).unwrap_err();
    assert!(matches!(e, E::OffsetsNotFound { .. }), "{g}: {e}");
    // Relative base not a kernel address.
    let e = damaged(layout.relative_base_at + 7, &[0x00]).unwrap_err();
    assert!(matches!(e, E::OffsetsNotFound { .. }), "{g}: {e}");

    // Truncated anywhere: an error, never a panic.
    let required_end = (layout.token_index + 512).max(layout.relative_base_at + 8);
    for cut in [
        layout.token_index + 511,
        layout.names_end - 1,
        layout.offsets + 4,
        required_end - 1,
    ] {
        let r = Kallsyms::find(&region.bytes()[..cut], base);
        println!(
            "{g}: cut at {cut:#x}: {:?}",
            r.as_ref().map(|k| k.len()).map_err(|e| e.to_string())
        );
        assert!(r.is_err(), "{g}: cut at {cut:#x}");
    }

    // The same bytes at a base that is not 8-aligned: the tables are not aligned there.
    let r = Kallsyms::find(region.bytes(), Va::new(base.raw() + 4));
    assert!(r.is_err(), "{g}: misaligned base");
}

vmi_fixtures::real_guest_tests!(
    kernel_and_kallsyms_match_the_guest_view,
    damaged_real_tables_fail_cleanly,
);
