//! kallsyms tables built in code the way `scripts/kallsyms.c` writes them (both table orders,
//! with and without `kallsyms_seqs_of_names`, with and without `--absolute-percpu`), decoded
//! back; hostile variants must fail with a precise error and never panic; and a synthetic guest
//! (real x86-64 page tables) in which the kernel image is located.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use vmi_arch_x86::testing::PageTableBuilder;
use vmi_arch_x86::X86;
use vmi_core::{
    Pa, PageSize, PagingMode, Permissions, Session, Target, Va, VcpuError, VcpuRegisters,
    VirtualMemory, X86Registers,
};
use vmi_os_linux::kallsyms::{
    Kallsyms, KallsymsError, KernelImage, TableLayout, TableOrder, MAX_SYMBOLS,
};

/// Where the synthetic tables start in guest memory (8-aligned, as .rodata is).
const BASE: u64 = 0xffff_ffff_8a00_0000 + (2 << 20);
const TEXT: u64 = 0xffff_ffff_8a00_0000;

#[derive(Debug, Clone)]
struct Sym {
    name: String,
    kind: char,
    addr: u64,
    absolute: bool,
}

fn sym(name: &str, kind: char, addr: u64) -> Sym {
    Sym {
        name: name.to_owned(),
        kind,
        addr,
        absolute: false,
    }
}

fn percpu(name: &str, addr: u64) -> Sym {
    Sym {
        name: name.to_owned(),
        kind: 'A',
        addr,
        absolute: true,
    }
}

#[derive(Debug, Clone, Copy)]
struct Options {
    order: TableOrder,
    /// `kallsyms_seqs_of_names` width (0: none). In the offsets-first order it sits between
    /// the markers and the token table; in the names-first order after the relative base.
    seqs: usize,
    absolute_percpu: bool,
}

/// Multi-character tokens given to the codes no symbol uses, as the compressor would.
const WORDS: &[&str] = &[
    "sys_", "__x64_", "_init", "tcp_", "init_", "task", "_", "kallsyms", "text", "ops",
];

/// The token table: every character that occurs stands for itself; unused codes take the
/// words above, and the rest stay empty strings.
fn token_table(syms: &[Sym]) -> Vec<Vec<u8>> {
    let mut tokens: Vec<Vec<u8>> = vec![Vec::new(); 256];
    for s in syms {
        tokens[s.kind as usize] = vec![s.kind as u8];
        for c in s.name.bytes() {
            tokens[c as usize] = vec![c];
        }
    }
    let mut words = WORDS.iter().filter(|w| w.len() > 1);
    for t in tokens.iter_mut() {
        if t.is_empty() {
            match words.next() {
                Some(w) => *t = w.as_bytes().to_vec(),
                None => break,
            }
        }
    }
    tokens
}

/// Greedy compression: the longest token that matches, else the character itself.
fn compress(text: &[u8], tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let best = (0..256)
            .filter(|&c| !tokens[c].is_empty() && text[i..].starts_with(&tokens[c]))
            .max_by_key(|&c| tokens[c].len())
            .expect("every character has a token");
        out.push(best as u8);
        i += tokens[best].len();
    }
    out
}

struct Built {
    bytes: Vec<u8>,
    /// Label offsets, by kallsyms_* name.
    labels: HashMap<&'static str, usize>,
}

/// Emits the tables like scripts/kallsyms.c: each label 8-aligned in guest memory.
fn build(syms: &[Sym], opt: Options, prefix: &[u8]) -> Built {
    let mut syms = syms.to_vec();
    syms.sort_by_key(|s| s.addr);
    let tokens = token_table(&syms);
    let relative_base = syms
        .iter()
        .find(|s| !s.absolute)
        .map(|s| s.addr)
        .expect("a relative symbol");

    let mut b = prefix.to_vec();
    let mut labels = HashMap::new();
    let mut label = |b: &mut Vec<u8>, name: &'static str| {
        while (BASE + b.len() as u64) % 8 != 0 {
            b.push(0);
        }
        labels.insert(name, b.len());
    };

    let offsets: Vec<u8> = syms
        .iter()
        .flat_map(|s| {
            let v: i32 = if !opt.absolute_percpu {
                (s.addr - relative_base) as u32 as i32
            } else if s.absolute {
                s.addr as i32
            } else {
                (relative_base as i64 - s.addr as i64 - 1) as i32
            };
            v.to_le_bytes()
        })
        .collect();
    let mut names = Vec::new();
    let mut markers = Vec::new();
    for (i, s) in syms.iter().enumerate() {
        if i % 256 == 0 {
            markers.extend_from_slice(&(names.len() as u32).to_le_bytes());
        }
        let mut text = vec![s.kind as u8];
        text.extend_from_slice(s.name.as_bytes());
        let data = compress(&text, &tokens);
        if data.len() <= 0x7f {
            names.push(data.len() as u8);
        } else {
            names.push((data.len() as u8 & 0x7f) | 0x80);
            names.push((data.len() >> 7) as u8);
        }
        names.extend_from_slice(&data);
    }
    let mut sorted: Vec<usize> = (0..syms.len()).collect();
    sorted.sort_by(|&a, &c| syms[a].name.cmp(&syms[c].name).then(a.cmp(&c)));
    let seqs: Vec<u8> = sorted
        .iter()
        .flat_map(|&i| (i as u32).to_be_bytes()[4 - opt.seqs..].to_vec())
        .collect();
    let mut table = Vec::new();
    let mut index = Vec::new();
    for t in &tokens {
        index.extend_from_slice(&(table.len() as u16).to_le_bytes());
        table.extend_from_slice(t);
        table.push(0);
    }

    let head = |b: &mut Vec<u8>, label: &mut dyn FnMut(&mut Vec<u8>, &'static str)| {
        label(b, "kallsyms_num_syms");
        b.extend_from_slice(&(syms.len() as u32).to_le_bytes());
        label(b, "kallsyms_names");
        b.extend_from_slice(&names);
        label(b, "kallsyms_markers");
        b.extend_from_slice(&markers);
    };
    let tail = |b: &mut Vec<u8>, label: &mut dyn FnMut(&mut Vec<u8>, &'static str)| {
        label(b, "kallsyms_token_table");
        b.extend_from_slice(&table);
        label(b, "kallsyms_token_index");
        b.extend_from_slice(&index);
    };
    match opt.order {
        TableOrder::OffsetsFirst => {
            label(&mut b, "kallsyms_offsets");
            b.extend_from_slice(&offsets);
            label(&mut b, "kallsyms_relative_base");
            b.extend_from_slice(&relative_base.to_le_bytes());
            head(&mut b, &mut label);
            if opt.seqs > 0 {
                label(&mut b, "kallsyms_seqs_of_names");
                b.extend_from_slice(&seqs);
            }
            tail(&mut b, &mut label);
        }
        _ => {
            head(&mut b, &mut label);
            tail(&mut b, &mut label);
            label(&mut b, "kallsyms_offsets");
            b.extend_from_slice(&offsets);
            label(&mut b, "kallsyms_relative_base");
            b.extend_from_slice(&relative_base.to_le_bytes());
            if opt.seqs > 0 {
                label(&mut b, "kallsyms_seqs_of_names");
                b.extend_from_slice(&seqs);
            }
        }
    }
    // Whatever follows in .rodata.
    b.extend_from_slice(&[0x41; 64]);
    Built { bytes: b, labels }
}

/// A plausible symbol list of `n` symbols (per-CPU ones first when `absolute_percpu`), with
/// some repeated names and one long name.
fn symbols(n: usize, absolute_percpu: bool) -> Vec<Sym> {
    let mut v = Vec::new();
    if absolute_percpu {
        v.push(percpu("__per_cpu_start", 0));
        v.push(percpu("fixed_percpu_data", 0));
        v.push(percpu("current_task", 0x1ad40));
    }
    v.push(sym("_text", 'T', TEXT));
    v.push(sym("startup_64", 'T', TEXT));
    let mut addr = TEXT + 0x40;
    while v.len() < n {
        let i = v.len();
        let name = match i % 7 {
            0 => format!("__x64_sys_call_{i}"),
            1 => format!("tcp_v4_rcv_{i}"),
            2 => "__func__.1".to_owned(),
            3 => format!("init_task_{i}"),
            4 => format!("kallsyms_text_ops_{}", "x".repeat(i % 40)),
            5 => format!("_RNvNtCs{i}kernel"),
            _ => format!("a.b$c_{i}"),
        };
        v.push(sym(&name, if i % 3 == 0 { 't' } else { 'T' }, addr));
        addr += (i as u64 % 5) * 16;
    }
    v
}

fn check(syms: &[Sym], opt: Options, prefix: &[u8]) -> Kallsyms {
    let built = build(syms, opt, prefix);
    let k = Kallsyms::find(&built.bytes, Va::new(BASE))
        .unwrap_or_else(|e| panic!("{opt:?}, {} symbols: {e}", syms.len()));
    let mut sorted = syms.to_vec();
    sorted.sort_by_key(|s| s.addr);
    assert_eq!(k.len(), sorted.len());
    for (got, want) in k.iter().zip(&sorted) {
        assert_eq!(got.name, want.name);
        assert_eq!(got.kind, want.kind);
        assert_eq!(got.address, want.addr, "{}", want.name);
        assert_eq!(
            got.absolute,
            opt.absolute_percpu && want.absolute,
            "{}",
            want.name
        );
    }
    let l = k.layout();
    assert_eq!(l.order, opt.order);
    assert_eq!(l.absolute_percpu, opt.absolute_percpu);
    let at = |n: &str| built.labels[n];
    assert_eq!(l.num_syms_at, at("kallsyms_num_syms"));
    assert_eq!(l.names, at("kallsyms_names"));
    assert_eq!(l.markers, at("kallsyms_markers"));
    assert_eq!(l.token_table, at("kallsyms_token_table"));
    assert_eq!(l.token_index, at("kallsyms_token_index"));
    assert_eq!(l.offsets, at("kallsyms_offsets"));
    assert_eq!(l.relative_base_at, at("kallsyms_relative_base"));
    match (opt.seqs, l.seqs_of_names) {
        (0, None) => {}
        (w, Some(s)) => {
            assert_eq!(
                (usize::from(s.width), s.offset),
                (w, at("kallsyms_seqs_of_names"))
            )
        }
        (w, got) => panic!("seqs of width {w}, found {got:?}"),
    }
    // Repeated names: the first wins, as in the kernel.
    let first = sorted.iter().find(|s| s.name == "__func__.1");
    assert_eq!(k.lookup("__func__.1"), first.map(|s| s.addr));
    assert_eq!(k.lookup("no_such_symbol"), None);
    k
}

const ORDERS: [(TableOrder, usize); 5] = [
    (TableOrder::OffsetsFirst, 0),
    (TableOrder::OffsetsFirst, 3),
    (TableOrder::OffsetsFirst, 4),
    (TableOrder::NamesFirst, 3),
    (TableOrder::NamesFirst, 0),
];

#[test]
fn every_order_and_size_decodes_back() {
    // 1, 255, 256, 257 symbols: one marker or two; odd and even marker counts.
    for n in [2, 5, 255, 256, 257, 511, 513, 1300] {
        for (order, seqs) in ORDERS {
            for absolute_percpu in [false, true] {
                let opt = Options {
                    order,
                    seqs,
                    absolute_percpu,
                };
                check(&symbols(n.max(4), absolute_percpu), opt, b"");
            }
        }
    }
}

#[test]
fn prefix_alignment_and_misleading_bytes_do_not_matter() {
    let syms = symbols(700, true);
    for pad in 0..16usize {
        // Ascending u16 runs and zeros before the real tables.
        let mut prefix: Vec<u8> = (0..300u16).flat_map(|v| v.to_le_bytes()).collect();
        prefix.extend(std::iter::repeat_n(0u8, pad));
        for (order, seqs) in ORDERS {
            check(
                &syms,
                Options {
                    order,
                    seqs,
                    absolute_percpu: true,
                },
                &prefix,
            );
        }
    }
}

#[test]
fn big_symbols_use_two_length_bytes() {
    let mut syms = symbols(300, false);
    // No multi-character token matches digits: 200 compressed bytes, a two-byte length.
    syms.push(sym(&"7".repeat(200), 'T', TEXT + 0x10_0000));
    syms.push(sym(
        &format!("_R{}", "9".repeat(400)),
        't',
        TEXT + 0x10_0010,
    ));
    let k = check(
        &syms,
        Options {
            order: TableOrder::NamesFirst,
            seqs: 3,
            absolute_percpu: false,
        },
        b"",
    );
    assert_eq!(k.lookup(&"7".repeat(200)), Some(TEXT + 0x10_0000));
}

#[test]
fn profile_gets_link_time_addresses_and_absolute_values() {
    let syms = symbols(600, true);
    let built = build(
        &syms,
        Options {
            order: TableOrder::NamesFirst,
            seqs: 3,
            absolute_percpu: true,
        },
        b"",
    );
    let k = Kallsyms::find(&built.bytes, Va::new(BASE)).unwrap();
    let slide = (TEXT - 0xffff_ffff_8100_0000) as i64;
    let p = k.to_profile(slide);
    assert_eq!(p.symbol_address("_text").unwrap(), 0xffff_ffff_8100_0000);
    assert_eq!(p.symbol_address("current_task").unwrap(), 0x1ad40);
    let first = syms.iter().find(|s| s.name == "__func__.1").unwrap().addr;
    assert_eq!(
        p.symbol_address("__func__.1").unwrap(),
        first - slide as u64
    );
    let unique: std::collections::HashSet<&str> = k.iter().map(|s| s.name).collect();
    assert_eq!(p.symbol_count(), unique.len());
}

fn standard() -> (Built, TableLayout) {
    let built = build(
        &symbols(900, true),
        Options {
            order: TableOrder::OffsetsFirst,
            seqs: 3,
            absolute_percpu: true,
        },
        b"",
    );
    let layout = *Kallsyms::find(&built.bytes, Va::new(BASE))
        .unwrap()
        .layout();
    (built, layout)
}

#[test]
fn hostile_tables_fail_with_precise_errors() {
    let (built, l) = standard();
    let find = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = built.bytes.clone();
        f(&mut b);
        Kallsyms::find(&b, Va::new(BASE)).map(|k| k.len())
    };

    let e = find(&|b| b[l.token_table] = 0x07).unwrap_err();
    assert!(
        matches!(e, KallsymsError::TokenTableNotFound { scanned_bytes } if scanned_bytes > 0),
        "{e}"
    );
    let e =
        find(&|b| b[l.token_index + 2..l.token_index + 4].copy_from_slice(&[0, 0])).unwrap_err();
    assert!(matches!(e, KallsymsError::TokenTableNotFound { .. }), "{e}");

    let e = find(&|b| b[l.num_syms_at..l.num_syms_at + 4].copy_from_slice(&u32::MAX.to_le_bytes()))
        .unwrap_err();
    assert!(
        matches!(e, KallsymsError::NamesNotFound { markers: 4, .. }),
        "{e}"
    );

    let e = find(&|b| b[l.relative_base_at..l.relative_base_at + 8].copy_from_slice(&[0; 8]))
        .unwrap_err();
    assert!(matches!(e, KallsymsError::OffsetsNotFound { .. }), "{e}");
    assert!(e.to_string().contains("not a kernel address"), "{e}");

    let e = find(&|b| {
        b[l.offsets + 40..l.offsets + 44].copy_from_slice(&(-0x10_0000_i32).to_le_bytes())
    })
    .unwrap_err();
    assert!(e.to_string().contains("sorts before"), "{e}");

    // A sequence table that is no permutation: the markers are not found behind it.
    let seqs = l.seqs_of_names.unwrap().offset;
    let e = find(&|b| b[seqs..seqs + 3].copy_from_slice(&[0xff, 0xff, 0xff])).unwrap_err();
    assert!(matches!(e, KallsymsError::MarkersNotFound { .. }), "{e}");
}

#[test]
fn too_many_markers_is_too_many_symbols() {
    // A valid token table preceded by 4000 ascending markers.
    let (built, l) = standard();
    let mut b = Vec::new();
    for k in 0..4000u32 {
        b.extend_from_slice(&(k * 600).to_le_bytes());
    }
    b.extend_from_slice(&built.bytes[l.token_table..l.token_index + 512]);
    let e = Kallsyms::find(&b, Va::new(BASE)).unwrap_err();
    assert!(
        matches!(e, KallsymsError::TooManySymbols { max, .. } if max == MAX_SYMBOLS),
        "{e}"
    );
}

#[test]
fn decode_checks_a_tampered_layout() {
    let (built, l) = standard();
    let b = &built.bytes;
    let mut t = l;
    t.num_syms = u32::MAX;
    assert!(matches!(
        Kallsyms::decode(b, &t),
        Err(KallsymsError::TooManySymbols { .. })
    ));
    let mut t = l;
    t.num_syms = 900_000;
    assert!(matches!(
        Kallsyms::decode(b, &t),
        Err(KallsymsError::InconsistentTables { .. })
    ));
    let mut t = l;
    t.names_end = usize::MAX;
    assert!(matches!(
        Kallsyms::decode(b, &t),
        Err(KallsymsError::Truncated { .. })
    ));
    let mut t = l;
    t.token_index = b.len() - 3;
    assert!(matches!(
        Kallsyms::decode(b, &t),
        Err(KallsymsError::InconsistentTables { .. })
    ));
    let mut t = l;
    t.offsets = b.len() - 4;
    assert!(matches!(
        Kallsyms::decode(b, &t),
        Err(KallsymsError::Truncated { .. })
    ));
    let mut t = l;
    t.markers += 4;
    assert!(matches!(
        Kallsyms::decode(b, &t),
        Err(KallsymsError::InconsistentTables { .. })
    ));
    for f in [
        |t: &mut TableLayout| t.markers = usize::MAX,
        |t: &mut TableLayout| t.offsets = usize::MAX - 3,
        |t: &mut TableLayout| t.token_table = usize::MAX - 5,
        |t: &mut TableLayout| t.token_index = usize::MAX,
        |t: &mut TableLayout| t.names = usize::MAX,
    ] {
        let mut t = l;
        f(&mut t);
        assert!(Kallsyms::decode(b, &t).is_err(), "{t:?}");
    }
    let mut t = l;
    t.relative_base = 0;
    assert!(Kallsyms::decode(b, &t).is_err());
    assert!(l.address(b, l.num_syms).is_none());
}

#[test]
fn overlong_names_are_refused() {
    let mut syms = symbols(10, false);
    syms.push(sym(&"8".repeat(3000), 'T', TEXT + 0x1000));
    let built = build(
        &syms,
        Options {
            order: TableOrder::NamesFirst,
            seqs: 3,
            absolute_percpu: false,
        },
        b"",
    );
    let e = Kallsyms::find(&built.bytes, Va::new(BASE)).unwrap_err();
    assert!(
        matches!(e, KallsymsError::NameTooLong { max: 1024, .. }),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096), base in any::<u64>()) {
        let _ = Kallsyms::find(&bytes, Va::new(base));
    }

    #[test]
    fn damaged_tables_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        names_first in any::<bool>(),
    ) {
        let built = build(&symbols(300, true), Options {
            order: if names_first { TableOrder::NamesFirst } else { TableOrder::OffsetsFirst },
            seqs: 3,
            absolute_percpu: true,
        }, b"");
        let mut b = built.bytes;
        for (at, v) in edits {
            let i = at.index(b.len());
            b[i] = v;
        }
        if let Ok(k) = Kallsyms::find(&b, Va::new(BASE)) {
            prop_assert!(k.len() <= MAX_SYMBOLS as usize);
            for s in k.iter() {
                prop_assert!(s.name.len() <= 1024);
            }
        }
        let end = cut.index(b.len() + 1);
        let _ = Kallsyms::find(&b[..end], Va::new(BASE));
    }
}

const TEXT_PA: u64 = 0x140_0000;
const REAL_BANNER: &[u8] =
    b"Linux version 6.12.0-test (me@host) (gcc 12) #1 SMP PREEMPT_DYNAMIC\n\0";

fn perms(writable: bool, executable: bool) -> Permissions {
    Permissions {
        writable,
        user: false,
        executable,
    }
}

/// A guest with real 4-level page tables: text (RX), .rodata (R, holding an early banner, the
/// real one and the kallsyms tables) and .data (RW), 2 MiB pages at a KASLR address. With
/// `user_pgd`, the page after the root is reserved (zeroed) first, as the user half of a PTI
/// pair: it maps nothing of the kernel. Returns the memory, the kernel address space and the
/// offset of the real banner in .rodata.
fn synthetic_guest(
    user_pgd: bool,
) -> (
    vmi_core::memory::BufferMemory,
    vmi_core::AddressSpace,
    usize,
) {
    let mut b = PageTableBuilder::new(PagingMode::Ia32e4, 24 << 20);
    if user_pgd {
        assert_eq!(b.alloc_page().unwrap(), Pa::new(b.root().raw() + 0x1000));
    }
    let steps = [perms(false, true), perms(false, false), perms(true, false)];
    for (k, p) in steps.into_iter().enumerate() {
        let off = k as u64 * (2 << 20);
        b.map(
            Va::new(TEXT + off),
            Pa::new(TEXT_PA + off),
            PageSize::Size2M,
            p,
        )
        .unwrap();
    }
    let space = b.space();

    let early = b"Linux version 6.12.0-test (me@host) (gcc 12) # SMP PREEMPT_DYNAMIC\n\0";
    let mut prefix = early.to_vec();
    prefix.resize(0x100, 0);
    let banner_off = prefix.len();
    prefix.extend_from_slice(REAL_BANNER);
    let built = build(
        &symbols(2000, true),
        Options {
            order: TableOrder::NamesFirst,
            seqs: 3,
            absolute_percpu: true,
        },
        &prefix,
    );
    let rodata_pa = (TEXT_PA + (2 << 20)) as usize;
    b.memory_mut().bytes_mut()[rodata_pa..rodata_pa + built.bytes.len()]
        .copy_from_slice(&built.bytes);
    (b.into_memory(), space, banner_off)
}

fn check_image(image: &KernelImage, banner_off: usize) {
    assert_eq!(image.text(), Va::new(TEXT));
    assert_eq!(image.text_pa(), Pa::new(TEXT_PA));
    assert_eq!(image.virtual_slide(), 0x900_0000);
    assert_eq!(image.physical_slide(), 0x40_0000);
    assert_eq!(image.end(), Va::new(TEXT + (6 << 20)));
    let real = std::str::from_utf8(&REAL_BANNER[..REAL_BANNER.len() - 2]).unwrap();
    assert_eq!(image.banner(), real);
    assert_eq!(image.release(), "6.12.0-test");
    assert_eq!(image.banner_va(), Va::new(BASE + banner_off as u64));
    assert_eq!(image.region().base(), Va::new(BASE));
    assert_eq!(image.region().bytes().len(), 2 << 20);
    let k = image.kallsyms().unwrap();
    assert_eq!(k.lookup("_text"), Some(TEXT));
    assert_eq!(k.len(), 2000);
}

#[test]
fn kernel_located_in_a_synthetic_guest() {
    let (mem, space, banner_off) = synthetic_guest(false);
    let arch = X86::new();
    let image = KernelImage::locate_in(VirtualMemory::new(&mem, &arch, space)).unwrap();
    check_image(&image, banner_off);

    // Nothing of the image mapped.
    let empty = PageTableBuilder::new(PagingMode::Ia32e4, 1 << 20);
    let e = KernelImage::locate_in(VirtualMemory::new(empty.memory(), &arch, empty.space()))
        .unwrap_err();
    assert!(matches!(e, KallsymsError::KernelNotMapped { .. }), "{e}");

    // Mapped, but no banner anywhere: both .rodata and the whole image are scanned.
    let mut nb = PageTableBuilder::new(PagingMode::Ia32e4, 8 << 20);
    nb.map(
        Va::new(TEXT),
        Pa::new(0x20_0000),
        PageSize::Size2M,
        perms(false, true),
    )
    .unwrap();
    nb.map(
        Va::new(TEXT + (2 << 20)),
        Pa::new(0x40_0000),
        PageSize::Size2M,
        perms(false, false),
    )
    .unwrap();
    let e = KernelImage::locate_in(VirtualMemory::new(nb.memory(), &arch, nb.space())).unwrap_err();
    assert!(
        matches!(e, KallsymsError::BannerNotFound { scanned_bytes } if scanned_bytes == 6 << 20),
        "{e}"
    );
}

/// vCPU registers of a synthetic guest.
struct Regs(Vec<X86Registers>);

impl VcpuRegisters for Regs {
    fn vcpu_count(&self) -> usize {
        self.0.len()
    }

    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError> {
        self.0.get(index).cloned().ok_or(VcpuError::NoSuchVcpu {
            index,
            count: self.0.len(),
        })
    }
}

fn session(mem: vmi_core::memory::BufferMemory, cr3s: &[u64]) -> Session {
    let regs = cr3s
        .iter()
        .map(|&cr3| X86Registers {
            cr0: 0x8005_0033,
            cr3,
            cr4: 0x20,
            efer: 0x500,
            ..Default::default()
        })
        .collect();
    let target = Target::builder("test", "synthetic", Arc::new(mem))
        .registers(Arc::new(Regs(regs)))
        .build();
    Session::from_target("synthetic", target, Box::new(X86::new()))
}

#[test]
fn session_locate_tries_vcpus_and_the_kernel_half_of_pti_pairs() {
    // vCPU 0 runs a process: its CR3 is the user PGD of a PTI pair (with PCID bits).
    let (mem, space, banner_off) = synthetic_guest(true);
    let user = space.root.raw() | 0x1000 | 0x5;
    let s = session(mem, &[user]);
    let image = KernelImage::locate(&s).unwrap();
    assert_eq!(image.space().root, space.root);
    check_image(&image, banner_off);

    // vCPU 0 in an address space without the kernel; vCPU 1 has it.
    let (mem, space, banner_off) = synthetic_guest(false);
    let s = session(mem, &[0x2_0000, space.root.raw()]);
    check_image(&KernelImage::locate(&s).unwrap(), banner_off);

    // No registers at all: physical memory is searched, and this synthetic kernel (tables
    // before the banner, no init_top_pgt) is not found there, which the error says.
    let (mem, _, _) = synthetic_guest(false);
    let e = KernelImage::locate(&session(mem, &[])).unwrap_err();
    assert!(
        matches!(
            e,
            vmi_os_linux::LinuxError::KernelNotInPhysicalMemory { .. }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("2 \"Linux version \" texts tried"),
        "{e}"
    );
}

/// Bytes shaped to make the search work hard end quickly, with an error.
#[test]
fn pathological_inputs_end_quickly() {
    let (built, l) = standard();
    let tables = &built.bytes[l.token_table..l.token_index + 512];
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Zeros, then a lone token table: one marker [0] fits everywhere, no num_syms does.
    let mut zeros = vec![0u8; 4 << 20];
    zeros.extend_from_slice(tables);
    cases.push(("zeros", zeros));
    // Ascending u16 runs from 0 everywhere: every 512 bytes an index candidate.
    let mut runs: Vec<u8> = (0..(4 << 20) / 512)
        .flat_map(|_| (0..256u16).flat_map(|v| v.to_le_bytes()))
        .collect();
    runs.extend_from_slice(tables);
    cases.push(("ascending runs", runs));
    // Markers-like ramps (0, 600, 1200, ...) everywhere before the token table.
    let mut ramps: Vec<u8> = (0..(4 << 20) / 4u32)
        .flat_map(|k| ((k % 64) * 600).to_le_bytes())
        .collect();
    ramps.extend_from_slice(tables);
    cases.push(("marker ramps", ramps));
    // A valid-looking sequence table (0, 1, 2, ... big-endian) before the token table.
    let mut seqs: Vec<u8> = (0..(1u32 << 20))
        .flat_map(|v| v.to_be_bytes()[1..].to_vec())
        .collect();
    seqs.extend_from_slice(tables);
    cases.push(("sequence ramp", seqs));
    for (what, bytes) in cases {
        let t = std::time::Instant::now();
        let r = Kallsyms::find(&bytes, Va::new(BASE));
        let took = t.elapsed();
        println!(
            "{what}: {took:?}: {:?}",
            r.as_ref().map(|k| k.len()).map_err(|e| e.to_string())
        );
        assert!(r.is_err(), "{what}");
        assert!(took.as_secs() < 20, "{what} took {took:?}");
    }
}
