//! kallsyms discovery and decoding: arbitrary bytes through `Kallsyms::find` and
//! `find_banner`, and arbitrary edits of valid tables (both table orders, with the sequence
//! table) so the fuzzer spends its time past the token-table signature. Must never panic or
//! hang; the asserts check the invariants the decoder promises.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmi_core::Va;
use vmi_os_linux::kallsyms::{find_banner, Kallsyms, MAX_SYMBOLS};

const BASE: u64 = 0xffff_ffff_8200_0000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // Raw bytes at an arbitrary base (its alignment matters).
        0 => {
            let base = rest
                .get(..8)
                .map_or(BASE, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
            exercise(rest, base);
            let _ = find_banner(rest);
        }
        // Valid tables edited: (u16 offset, byte) pairs, then an optional cut.
        m => {
            let mut bytes = valid_tables()[usize::from(m - 1)].clone();
            let mut pairs = rest.chunks_exact(3);
            for p in &mut pairs {
                let at = usize::from(u16::from_le_bytes([p[0], p[1]]));
                let at = at * bytes.len() / 65536;
                bytes[at] = p[2];
            }
            if let [cut0, cut1] = pairs.remainder() {
                let cut = usize::from(u16::from_le_bytes([*cut0, *cut1])) * bytes.len() / 65536;
                bytes.truncate(cut);
            }
            exercise(&bytes, BASE);
        }
    }
});

fn exercise(bytes: &[u8], base: u64) {
    let Ok(k) = Kallsyms::find(bytes, Va::new(base)) else {
        return;
    };
    assert!(k.len() <= MAX_SYMBOLS as usize);
    let l = k.layout();
    assert_eq!(k.len(), l.num_syms as usize);
    assert!(l.names < l.names_end && l.names_end <= bytes.len());
    assert!(l.token_index + 512 <= bytes.len());
    assert!(l.relative_base_at + 8 <= bytes.len());
    let mut prev = 0u64;
    for (i, s) in k.iter().enumerate() {
        assert!(s.name.len() < 1024 && s.name.is_ascii());
        assert!(s.address >= prev, "symbol {i} unsorted");
        assert_eq!(l.address(bytes, i as u32), Some(s.address));
        prev = s.address;
        if i < 64 {
            let first = k.get(s.name).expect("every name is found");
            assert!(first.address <= s.address);
        }
    }
    if k.len() < 4096 {
        let p = k.to_profile(0);
        assert!(p.symbol_count() <= k.len());
    }
}

/// Three valid table images: 6.1-like (offsets first, sequence table before the tokens),
/// 6.12-like (names first) and 6.1-like without the sequence table.
fn valid_tables() -> &'static [Vec<u8>; 3] {
    static TABLES: OnceLock<[Vec<u8>; 3]> = OnceLock::new();
    TABLES.get_or_init(|| {
        let tables = [build(true, true), build(false, true), build(true, false)];
        for t in &tables {
            let k = Kallsyms::find(t, Va::new(BASE)).expect("the seed tables decode");
            assert_eq!(k.len(), 300);
        }
        tables
    })
}

/// Emits tables the way scripts/kallsyms.c does, for 300 symbols (two markers).
fn build(offsets_first: bool, seqs: bool) -> Vec<u8> {
    let text = BASE - (1 << 24);
    let mut syms: Vec<(String, u8, u64, bool)> = vec![
        ("__per_cpu_start".into(), b'A', 0, true),
        ("current_task".into(), b'A', 0x1ad40, true),
        ("_text".into(), b'T', text, false),
    ];
    for i in 3..300u64 {
        let name = match i % 4 {
            0 => format!("sys_call_{i}"),
            1 => format!("init_task_{i}"),
            2 => "__func__.1".to_owned(),
            _ => format!("_RNv{}", "x".repeat((i % 150) as usize)),
        };
        syms.push((
            name,
            if i % 2 == 0 { b'T' } else { b't' },
            text + i * 32,
            false,
        ));
    }
    let mut tokens: Vec<Vec<u8>> = vec![Vec::new(); 256];
    for (n, k, _, _) in &syms {
        tokens[usize::from(*k)] = vec![*k];
        for c in n.bytes() {
            tokens[usize::from(c)] = vec![c];
        }
    }
    let mut words = ["sys_", "init_", "task", "_RNv", "xxxx", "call"].iter();
    for t in tokens.iter_mut().filter(|t| t.is_empty()) {
        match words.next() {
            Some(w) => *t = w.as_bytes().to_vec(),
            None => break,
        }
    }
    let compress = |text: &[u8]| {
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            let c = (0..256)
                .filter(|&c| !tokens[c].is_empty() && text[i..].starts_with(&tokens[c]))
                .max_by_key(|&c| tokens[c].len())
                .unwrap_or(0);
            out.push(c as u8);
            i += tokens[c].len().max(1);
        }
        out
    };
    let (mut names, mut markers, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (n, k, addr, abs)) in syms.iter().enumerate() {
        if i % 256 == 0 {
            markers.extend_from_slice(&(names.len() as u32).to_le_bytes());
        }
        let mut t = vec![*k];
        t.extend_from_slice(n.as_bytes());
        let data = compress(&t);
        if data.len() < 0x80 {
            names.push(data.len() as u8);
        } else {
            names.extend_from_slice(&[(data.len() as u8 & 0x7f) | 0x80, (data.len() >> 7) as u8]);
        }
        names.extend_from_slice(&data);
        let off = if *abs {
            *addr as i32
        } else {
            (text as i64 - *addr as i64 - 1) as i32
        };
        offsets.extend_from_slice(&off.to_le_bytes());
    }
    let mut order: Vec<usize> = (0..syms.len()).collect();
    order.sort_by(|&a, &b| syms[a].0.cmp(&syms[b].0).then(a.cmp(&b)));
    let seq_bytes: Vec<u8> = order
        .iter()
        .flat_map(|&i| (i as u32).to_be_bytes()[1..].to_vec())
        .collect();
    let (mut table, mut index) = (Vec::new(), Vec::new());
    for t in &tokens {
        index.extend_from_slice(&(table.len() as u16).to_le_bytes());
        table.extend_from_slice(t);
        table.push(0);
    }
    let mut b = b"Linux version 6.1.0-fuzz (f@z) (cc) #1 SMP\n\0".to_vec();
    let put = |b: &mut Vec<u8>, part: &[u8]| {
        while b.len() % 8 != 0 {
            b.push(0);
        }
        b.extend_from_slice(part);
    };
    let num = (syms.len() as u32).to_le_bytes();
    let rb = text.to_le_bytes();
    if offsets_first {
        for part in [&offsets[..], &rb, &num, &names, &markers] {
            put(&mut b, part);
        }
        if seqs {
            put(&mut b, &seq_bytes);
        }
        put(&mut b, &table);
        put(&mut b, &index);
    } else {
        for part in [
            &num[..],
            &names,
            &markers,
            &table,
            &index,
            &offsets,
            &rb,
            &seq_bytes,
        ] {
            put(&mut b, part);
        }
    }
    b.extend_from_slice(&[0x5a; 32]);
    b
}
