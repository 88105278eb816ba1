//! Expanding `kallsyms_names` through the token table into names, types and addresses.
//!
//! Each entry of `kallsyms_names` is a ULEB128 length (one byte, or two when the first has its
//! top bit set: the "big symbol" encoding of Linux 6.1+) followed by that many token numbers.
//! Each token number selects a string of the token table; the concatenation is the type letter
//! followed by the name.
//!
//! Decoding is in two steps, so that a lookup does not pay for 200,000 names:
//! 1. `Tables::check` walks every entry once without expanding it: markers, lengths, the
//!    expanded length of each name (the sum of its tokens' lengths), every address. What it
//!    accepts can be expanded without further failure, and it keeps a copy of the tables.
//! 2. Names are expanded on demand: one at a time for a lookup (a binary search through
//!    `kallsyms_seqs_of_names`, the way the kernel's own `kallsyms_lookup_name()` does), or
//!    all at once into one arena (`Decoded`) for iteration and for kernels without that
//!    table.

use std::ops::Range;
use std::sync::OnceLock;

use super::bytes::{i32_at, u16_at, u32_at};
use super::error::KallsymsError;
use super::scan::{entry_len, sym_address, TableLayout, MAX_SYMBOLS};
use super::symbols::{Entry, NameIndex};

/// Longest expansion (type letter + name) accepted. The kernel refuses names of
/// `KSYM_NAME_LEN` (512) bytes or more; twice that leaves room for future kernels.
pub const MAX_NAME_LEN: usize = 1024;
/// Cap on all names together: a 6.12 kernel needs about 5 MiB.
const MAX_ARENA_BYTES: usize = 64 << 20;
/// Tokens up to this length are copied as one fixed-size block.
const SHORT: usize = 16;
/// A buffer one name is expanded into: a full name plus the fixed-size block of the last
/// token, which may overshoot it.
const NAME_BUF: usize = MAX_NAME_LEN + SHORT;
/// Symbols per marker.
const BLOCK: usize = 256;

/// The kallsyms tables of one kernel, checked once and copied out of the bytes they were
/// found in.
pub(crate) struct Tables {
    /// The span of the searched bytes that holds every table read (see [`Tables::check`]).
    bytes: Box<[u8]>,
    /// Where the tables are in the bytes searched (what `Kallsyms::layout` reports).
    pub(crate) layout: TableLayout,
    /// `kallsyms_names`, in `bytes`.
    names: Range<usize>,
    /// `kallsyms_markers`, in `bytes`.
    markers: usize,
    /// `kallsyms_offsets`, in `bytes`.
    offsets: usize,
    /// `kallsyms_seqs_of_names` in `bytes` and its entry width, when the kernel has it and
    /// it lies inside the bytes.
    seqs: Option<(usize, usize)>,
    /// Each token's start in `bytes` and length.
    tokens: [(u32, u16); 256],
    /// Each token, zero-padded to [`SHORT`] bytes (longer ones are copied from `bytes`).
    short: Box<[[u8; SHORT]; 256]>,
    /// All names, expanded when first needed.
    full: OnceLock<Decoded>,
}

/// Every name expanded into one arena, and the index from names to symbols.
pub(crate) struct Decoded {
    /// The names, back to back (type letters left out).
    pub(crate) names: String,
    /// One entry per symbol, in table order.
    pub(crate) entries: Vec<Entry>,
    /// Name -> first symbol of that name.
    pub(crate) index: NameIndex,
    /// Number of distinct names.
    pub(crate) distinct: usize,
}

impl Tables {
    /// Checks the tables at `layout` in `bytes` and copies them. Every entry is walked and
    /// every name's expanded length computed, so what is accepted decodes without error;
    /// nothing is expanded yet.
    pub(crate) fn check(bytes: &[u8], layout: &TableLayout) -> Result<Tables, KallsymsError> {
        let inconsistent = |reason: String| KallsymsError::InconsistentTables { reason };
        if layout.num_syms > MAX_SYMBOLS {
            return Err(KallsymsError::TooManySymbols {
                count: u64::from(layout.num_syms),
                max: MAX_SYMBOLS,
            });
        }
        let num = layout.num_syms as usize;
        let names = bytes
            .get(layout.names..layout.names_end)
            .ok_or_else(|| truncated("kallsyms_names", layout.names, layout.names_end, bytes))?;
        // Every entry takes at least two bytes: this bounds the work below by the input.
        if num > names.len() / 2 {
            return Err(inconsistent(format!(
                "{num} symbols cannot fit in {} bytes of names",
                names.len()
            )));
        }
        let tokens = tokens(bytes, layout)?;
        let offsets_end = layout.offsets.saturating_add(num * 4);
        if bytes.get(layout.offsets..offsets_end).is_none() {
            return Err(truncated(
                "kallsyms_offsets",
                layout.offsets,
                offsets_end,
                bytes,
            ));
        }
        let markers_end = layout
            .markers
            .saturating_add(4 * num.div_ceil(BLOCK))
            .min(bytes.len());
        let mut lens = [0usize; 256];
        for (len, &(_, n)) in lens.iter_mut().zip(&tokens) {
            *len = usize::from(n);
        }

        let mut pos = 0usize;
        let mut total = 0usize;
        for i in 0..num {
            if i % BLOCK == 0 {
                let marker = u32_at(bytes, layout.markers.saturating_add(4 * (i / BLOCK)));
                if marker.map(|m| m as usize) != Some(pos) {
                    return Err(inconsistent(format!(
                        "marker {} is {marker:?} but symbol {i} starts at names offset {pos:#x}",
                        i / BLOCK
                    )));
                }
            }
            let (len, hdr) = entry_len(names, pos).ok_or_else(|| {
                inconsistent(format!(
                    "symbol {i}: length at names offset {pos:#x} is cut off"
                ))
            })?;
            let data = names.get(pos + hdr..pos + hdr + len).ok_or_else(|| {
                inconsistent(format!(
                    "symbol {i}: {len} bytes at names offset {pos:#x} run past the names"
                ))
            })?;
            pos += hdr + len;
            // At most 0x3fff tokens of at most MAX_NAME_LEN bytes: no overflow.
            let expanded: usize = data.iter().map(|&t| lens[usize::from(t)]).sum();
            if expanded > MAX_NAME_LEN {
                return Err(KallsymsError::NameTooLong {
                    index: i as u32,
                    max: MAX_NAME_LEN,
                });
            }
            if expanded == 0 {
                return Err(inconsistent(format!("symbol {i} expands to nothing")));
            }
            total += expanded;
            if total > MAX_ARENA_BYTES {
                return Err(inconsistent(format!(
                    "names expand to more than {MAX_ARENA_BYTES} bytes"
                )));
            }
            let off = i32_at(bytes, layout.offsets.saturating_add(4 * i))
                .ok_or_else(|| inconsistent(format!("symbol {i}: offset is cut off")))?;
            sym_address(layout.relative_base, layout.absolute_percpu, off)
                .ok_or_else(|| inconsistent(format!("symbol {i}: offset {off} overflows")))?;
        }
        if layout.names.checked_add(pos) != Some(layout.names_end) {
            return Err(inconsistent(format!(
                "names end at offset {:#x}, not at {:#x}",
                layout.names.saturating_add(pos),
                layout.names_end
            )));
        }
        // A sequence table out of the bytes (a hand-made layout) is not used: lookups then
        // go through the full index.
        let seqs = layout.seqs_of_names.and_then(|s| {
            let width = usize::from(s.width);
            let end = s.offset.checked_add(width.checked_mul(num)?)?;
            (matches!(width, 3 | 4) && end <= bytes.len()).then_some((s.offset, width, end))
        });

        // Copy the span holding everything read above, and nothing else of the image.
        let mut span = layout.names..layout.names_end;
        let mut cover = |r: Range<usize>| {
            span.start = span.start.min(r.start);
            span.end = span.end.max(r.end);
        };
        cover(layout.offsets..offsets_end);
        cover(layout.markers.min(markers_end)..markers_end);
        for &(start, len) in &tokens {
            cover(start as usize..start as usize + usize::from(len));
        }
        if let Some((at, _, end)) = seqs {
            cover(at..end);
        }
        let copy: Box<[u8]> = bytes
            .get(span.clone())
            .ok_or_else(|| truncated("kallsyms tables", span.start, span.end, bytes))?
            .into();
        let base = span.start;
        let mut short = Box::new([[0u8; SHORT]; 256]);
        let mut rebased = [(0u32, 0u16); 256];
        for ((slot, out), &(start, len)) in short.iter_mut().zip(&mut rebased).zip(&tokens) {
            let start = start as usize - base;
            *out = (start as u32, len);
            let len = usize::from(len);
            if len <= SHORT {
                slot[..len].copy_from_slice(&copy[start..start + len]);
            }
        }
        Ok(Tables {
            bytes: copy,
            layout: *layout,
            names: layout.names - base..layout.names_end - base,
            markers: layout.markers.saturating_sub(base),
            offsets: layout.offsets - base,
            seqs: seqs.map(|(at, width, _)| (at - base, width)),
            tokens: rebased,
            short,
            full: OnceLock::new(),
        })
    }

    /// Number of symbols.
    pub(crate) fn len(&self) -> usize {
        self.layout.num_syms as usize
    }

    /// Whether the kernel's name-sorted table (`kallsyms_seqs_of_names`) is used for lookups.
    pub(crate) fn has_seqs(&self) -> bool {
        self.seqs.is_some()
    }

    /// Symbol `i`'s address, and whether it is absolute (a per-CPU offset).
    pub(crate) fn address(&self, i: usize) -> Option<(u64, bool)> {
        let off = i32_at(&self.bytes, self.offsets.checked_add(4 * i)?)?;
        let l = &self.layout;
        let address = sym_address(l.relative_base, l.absolute_percpu, off)?;
        Some((address, l.absolute_percpu && off >= 0))
    }

    /// Expands the entry at names offset `pos` (type letter + name) into `out`; returns its
    /// length and where the next entry starts.
    #[inline]
    fn expand(&self, pos: usize, out: &mut [u8; NAME_BUF]) -> Option<(usize, usize)> {
        let names = self.bytes.get(self.names.clone())?;
        let (len, hdr) = entry_len(names, pos)?;
        let data = names.get(pos + hdr..pos + hdr + len)?;
        let mut n = 0usize;
        for &t in data {
            let (start, tl) = self.tokens[usize::from(t)];
            let tl = usize::from(tl);
            if n + tl > MAX_NAME_LEN {
                return None;
            }
            if tl <= SHORT {
                // Fixed-size block: an inline move, not a memcpy call per token.
                out[n..n + SHORT].copy_from_slice(&self.short[usize::from(t)]);
            } else {
                let start = start as usize;
                out[n..n + tl].copy_from_slice(self.bytes.get(start..start + tl)?);
            }
            n += tl;
        }
        Some((n, pos + hdr + len))
    }

    /// Where symbol `i`'s entry starts in the names: its block's marker, then at most 255
    /// entries walked, as the kernel's `get_symbol_offset()` does.
    fn entry_pos(&self, i: usize) -> Option<usize> {
        let names = self.bytes.get(self.names.clone())?;
        let mut pos = u32_at(&self.bytes, self.markers.checked_add(4 * (i / BLOCK))?)? as usize;
        for _ in 0..i % BLOCK {
            let (len, hdr) = entry_len(names, pos)?;
            pos += hdr + len;
        }
        Some(pos)
    }

    /// The number of the symbol at position `k` in name order.
    fn seq(&self, k: usize) -> Option<usize> {
        let (at, width) = self.seqs?;
        let start = at.checked_add(k.checked_mul(width)?)?;
        let e = self.bytes.get(start..start.checked_add(width)?)?;
        let v = e.iter().fold(0usize, |acc, &c| (acc << 8) | usize::from(c));
        (v < self.len()).then_some(v)
    }

    /// The first symbol (in table order) called `name`.
    pub(crate) fn lookup(&self, name: &str) -> Option<usize> {
        if self.seqs.is_none() {
            let d = self.full();
            return d
                .index
                .find(name.as_bytes(), |j| d.name(j as usize).as_bytes())
                .map(|i| i as usize);
        }
        // Lower bound in name order. The kernel sorts by name, then address, then table
        // position, so the first match is the first symbol of that name in table order. A
        // table that is not sorted (hostile bytes) only makes names unfindable.
        let want = name.as_bytes();
        let mut buf = [0u8; NAME_BUF];
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (_, len) = self.expand_nth_by_name(mid, &mut buf)?;
            if name_of(&buf, len) < want {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == self.len() {
            return None;
        }
        let (i, len) = self.expand_nth_by_name(lo, &mut buf)?;
        (name_of(&buf, len) == want).then_some(i)
    }

    /// Expands the symbol at position `k` in name order; returns its number and length.
    fn expand_nth_by_name(&self, k: usize, buf: &mut [u8; NAME_BUF]) -> Option<(usize, usize)> {
        let i = self.seq(k)?;
        let (len, _) = self.expand(self.entry_pos(i)?, buf)?;
        Some((i, len))
    }

    /// Every name, expanded once.
    pub(crate) fn full(&self) -> &Decoded {
        self.full.get_or_init(|| self.expand_all())
    }

    fn expand_all(&self) -> Decoded {
        let num = self.len();
        let mut entries = Vec::with_capacity(num);
        let mut arena: Vec<u8> =
            Vec::with_capacity(self.names.len().saturating_mul(2).min(MAX_ARENA_BYTES));
        let mut buf = [0u8; NAME_BUF];
        let mut pos = 0usize;
        for i in 0..num {
            // Checked when the tables were accepted; a failure (impossible) ends the table.
            let Some(((len, next), (address, absolute))) =
                self.expand(pos, &mut buf).zip(self.address(i))
            else {
                break;
            };
            pos = next;
            let start = arena.len();
            let name = name_of(&buf, len);
            arena.extend_from_slice(name);
            entries.push(Entry {
                name_start: start as u32,
                name_len: name.len() as u16,
                kind: buf[0],
                absolute,
                address,
            });
        }
        // Tokens were checked to be printable ASCII, so this never fails; were it to, the
        // names would read as empty rather than panic.
        let names = String::from_utf8(arena).unwrap_or_default();
        let mut index = NameIndex::with_capacity(entries.len());
        let mut distinct = 0usize;
        for (i, e) in entries.iter().enumerate() {
            let name = slice(&names, e);
            if index.insert_first(name.as_bytes(), i as u32, |j| {
                slice(&names, &entries[j as usize]).as_bytes()
            }) {
                distinct += 1;
            }
        }
        Decoded {
            names,
            entries,
            index,
            distinct,
        }
    }
}

impl Decoded {
    /// Symbol `i`'s name.
    pub(crate) fn name(&self, i: usize) -> &str {
        self.entries.get(i).map_or("", |e| slice(&self.names, e))
    }

    /// Whether symbol `i` is the first of its name.
    pub(crate) fn is_first(&self, i: usize) -> bool {
        self.index.find(self.name(i).as_bytes(), |j| {
            self.name(j as usize).as_bytes()
        }) == Some(i as u32)
    }
}

/// The name in an expansion of `len` bytes: the type letter left out.
#[inline]
fn name_of(buf: &[u8], len: usize) -> &[u8] {
    buf.get(1..len).unwrap_or(&[])
}

/// The name of `e` in `names`; empty if the range were ever wrong (it is built in bounds).
fn slice<'a>(names: &'a str, e: &Entry) -> &'a str {
    let start = e.name_start as usize;
    names
        .get(start..start + usize::from(e.name_len))
        .unwrap_or("")
}

/// The 256 tokens (start in `bytes`, length), each checked to be printable ASCII and at most
/// `MAX_NAME_LEN` long.
fn tokens(bytes: &[u8], layout: &TableLayout) -> Result<[(u32, u16); 256], KallsymsError> {
    let mut out = [(0u32, 0u16); 256];
    for (i, slot) in out.iter_mut().enumerate() {
        let bad = |what: &str| KallsymsError::InconsistentTables {
            reason: format!("token {i}: {what}"),
        };
        let at = u16_at(bytes, layout.token_index.saturating_add(2 * i))
            .ok_or_else(|| bad("index cut off"))?;
        let start = layout.token_table.saturating_add(usize::from(at));
        let rest = bytes
            .get(start..bytes.len().min(start.saturating_add(MAX_NAME_LEN + 1)))
            .ok_or_else(|| bad("past the end"))?;
        let len = rest
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| bad("not NUL-terminated within the longest name"))?;
        if !rest[..len].iter().all(|c| (0x21..=0x7e).contains(c)) {
            return Err(bad("not printable ASCII"));
        }
        let start = u32::try_from(start).map_err(|_| bad("past 4 GiB"))?;
        *slot = (start, len as u16);
    }
    Ok(out)
}

fn truncated(what: &'static str, offset: usize, end: usize, bytes: &[u8]) -> KallsymsError {
    KallsymsError::Truncated {
        what,
        offset,
        needed: end.saturating_sub(offset) as u64,
        available: bytes.len().saturating_sub(offset),
    }
}
