//! Finding the kallsyms tables in kernel bytes by their shape alone.
//!
//! `scripts/kallsyms.c` emits the tables into `.rodata`, each label aligned to 8 bytes on 64-bit
//! kernels. Linux 6.1 (and everything before 6.2) writes them in this order:
//!
//! ```text
//! kallsyms_offsets        i32[num_syms]
//! kallsyms_relative_base  u64
//! kallsyms_num_syms       u32
//! kallsyms_names          per symbol: ULEB128 length (1 or 2 bytes), then that many token bytes
//! kallsyms_markers        u32[ceil(num_syms / 256)]: offset in names of every 256th symbol
//! kallsyms_token_table    256 NUL-terminated strings
//! kallsyms_token_index    u16[256]: offset of each string in the token table
//! ```
//!
//! 6.2 and 6.3 put `kallsyms_seqs_of_names` (3-byte big-endian symbol numbers in name order)
//! between the markers and the token table, and so do 6.1 stable kernels that took its backport
//! (Debian's 6.1.0-56 / 6.1.192 does). Since 6.4 (commit "scripts/kallsyms: change the output order", so in 6.12)
//! the order is `num_syms, names, markers, token_table, token_index, offsets, relative_base,
//! seqs_of_names`.
//!
//! The search anchors on the token index (256 ascending `u16` starting at 0), confirmed by a
//! token table of printable strings whose NUL terminators fall exactly where the index says.
//! The markers end right before the token table, or before a sequence table that must be a
//! permutation of the right size; the names end right before the markers and begin after a
//! `num_syms` that agrees with the number of markers, and walking the names from there must hit
//! every marker. The offsets are then tried in both orders: the right one gives
//! a kernel-half `relative_base` and addresses sorted the way `scripts/kallsyms` sorts them.
//!
//! Everything read is bounds-checked and every loop has a cap derived from the kernel's own
//! limits, so garbage yields an error, never a panic or a long search.

use std::cell::Cell;

use super::bytes::{i32_at, u16_at, u32_at, u64_at, Aligner, TABLE_ALIGN};
use super::error::KallsymsError;

/// The most symbols a table may claim (a 6.12 distribution kernel has about 200,000).
pub const MAX_SYMBOLS: u32 = 1_000_000;
/// The most markers a table may have: one per 256 symbols.
const MAX_MARKERS: usize = (MAX_SYMBOLS as usize).div_ceil(256);
/// Longest token accepted: tokens expand to parts of names, which are under `KSYM_NAME_LEN`.
const MAX_TOKEN_LEN: usize = 512;
/// Largest entry of `kallsyms_names`: a two-byte ULEB128 length of at most 0x3fff, then data.
const MAX_ENTRY_BYTES: usize = 2 + 0x3fff;
/// Size of `kallsyms_token_index`.
const TOKEN_INDEX_BYTES: usize = 256 * 2;
/// Token-index candidates examined beyond the signature check before giving up.
const MAX_CANDIDATES: usize = 16;
/// Work allowed for a search: a fixed amount plus some per byte searched. Real kernels need
/// well under a million steps; the cap only stops crafted bytes that look like tables almost
/// everywhere from making the search quadratic.
const BUDGET_FIXED: u64 = 16 << 20;
/// See [`BUDGET_FIXED`].
const BUDGET_PER_BYTE: u64 = 4;
/// Lowest address of the kernel half of an x86-64 address space.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// The order in which a kernel's build wrote its kallsyms tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TableOrder {
    /// Up to Linux 6.1: offsets and relative base first, token index last.
    OffsetsFirst,
    /// Linux 6.4 and later: `num_syms` first, offsets and relative base after the token index.
    NamesFirst,
}

/// Where each kallsyms table lies in the bytes searched (offsets from their start), and the
/// values that decide how addresses are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableLayout {
    /// The order the tables were written in.
    pub order: TableOrder,
    /// `kallsyms_num_syms`.
    pub num_syms: u32,
    /// Offset of `kallsyms_num_syms`.
    pub num_syms_at: usize,
    /// Offset of `kallsyms_names`.
    pub names: usize,
    /// Offset one past the last byte of `kallsyms_names`.
    pub names_end: usize,
    /// Offset of `kallsyms_markers`.
    pub markers: usize,
    /// Offset of `kallsyms_token_table`.
    pub token_table: usize,
    /// Offset of `kallsyms_token_index`.
    pub token_index: usize,
    /// Offset of `kallsyms_offsets`.
    pub offsets: usize,
    /// Offset of `kallsyms_relative_base`.
    pub relative_base_at: usize,
    /// `kallsyms_relative_base`: the runtime address offsets are relative to.
    pub relative_base: u64,
    /// `kallsyms_seqs_of_names` (symbol numbers sorted by name), where the kernel has it.
    pub seqs_of_names: Option<SeqsOfNames>,
    /// Whether the kernel was built with `--absolute-percpu` (x86-64 SMP up to 6.14): non-negative
    /// offsets are then absolute values (per-CPU symbols) and negative ones count down from
    /// `relative_base - 1`. Detected from the data: such tables have negative offsets.
    pub absolute_percpu: bool,
}

impl TableLayout {
    /// Finds the kallsyms tables in `bytes`, which start at guest address `base` (only its
    /// alignment matters: the tables are 8-byte aligned in guest memory).
    ///
    /// ```
    /// use vmi_os_linux::kallsyms::{KallsymsError, TableLayout};
    ///
    /// let err = TableLayout::find(&[0u8; 4096], 0xffff_ffff_8100_0000).unwrap_err();
    /// assert!(matches!(err, KallsymsError::TokenTableNotFound { scanned_bytes: 4096 }));
    /// ```
    pub fn find(bytes: &[u8], base: u64) -> Result<TableLayout, KallsymsError> {
        let al = Aligner::new(base);
        let budget = Budget::new(
            BUDGET_FIXED.saturating_add((bytes.len() as u64).saturating_mul(BUDGET_PER_BYTE)),
        );
        let mut best: Option<(u8, KallsymsError)> = None;
        let mut candidates = 0usize;
        let mut p = al.first();
        while p
            .checked_add(TOKEN_INDEX_BYTES)
            .is_some_and(|end| end <= bytes.len())
        {
            if let Some(tokens) = token_table_at(bytes, al, p, &budget) {
                match layout_from_tokens(bytes, al, tokens, &budget) {
                    Ok(layout) => return Ok(layout),
                    Err((stage, e)) => {
                        if best.as_ref().is_none_or(|(s, _)| stage >= *s) {
                            best = Some((stage, e));
                        }
                    }
                }
                candidates += 1;
                if candidates >= MAX_CANDIDATES || budget.exhausted() {
                    break;
                }
            }
            p += TABLE_ALIGN as usize;
        }
        if budget.exhausted() {
            return Err(KallsymsError::SearchTooLong {
                steps: budget.initial,
            });
        }
        Err(best
            .map(|(_, e)| e)
            .unwrap_or(KallsymsError::TokenTableNotFound {
                scanned_bytes: bytes.len() as u64,
            }))
    }

    /// The address of symbol `index`, as `kallsyms_sym_address()` computes it, or `None` if
    /// the index or the arithmetic is out of range.
    pub fn address(&self, bytes: &[u8], index: u32) -> Option<u64> {
        if index >= self.num_syms {
            return None;
        }
        let off = i32_at(bytes, self.offsets.checked_add(index as usize * 4)?)?;
        sym_address(self.relative_base, self.absolute_percpu, off)
    }

    /// Whether symbol `index`'s value is absolute (a per-CPU offset, not moved by KASLR).
    pub fn is_absolute(&self, bytes: &[u8], index: u32) -> bool {
        self.absolute_percpu
            && index < self.num_syms
            && self
                .offsets
                .checked_add(index as usize * 4)
                .and_then(|at| i32_at(bytes, at))
                .is_some_and(|off| off >= 0)
    }
}

/// `kallsyms_sym_address()` of kernel/kallsyms.c for one offset.
#[inline]
pub(crate) fn sym_address(relative_base: u64, absolute_percpu: bool, off: i32) -> Option<u64> {
    if !absolute_percpu {
        relative_base.checked_add(u64::from(off as u32))
    } else if off >= 0 {
        Some(off as u64)
    } else {
        // relative_base - 1 - off, with off < 0.
        relative_base
            .checked_sub(1)?
            .checked_add(u64::from(off.unsigned_abs()))
    }
}

/// A cap on the steps of one search, shared by the functions it calls.
struct Budget {
    initial: u64,
    left: Cell<u64>,
}

impl Budget {
    fn new(steps: u64) -> Self {
        Self {
            initial: steps,
            left: Cell::new(steps),
        }
    }

    /// Takes `n` steps; false (and nothing left) if fewer remain.
    #[inline]
    fn spend(&self, n: usize) -> bool {
        let left = self.left.get();
        match left.checked_sub(n as u64) {
            Some(rest) => {
                self.left.set(rest);
                true
            }
            None => {
                self.left.set(0);
                false
            }
        }
    }

    fn exhausted(&self) -> bool {
        self.left.get() == 0
    }
}

/// Where `kallsyms_seqs_of_names` lies: `num_syms` big-endian symbol numbers in name order
/// (Linux 6.2+, and 6.1 stable kernels that took the backport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqsOfNames {
    /// Offset of the table.
    pub offset: usize,
    /// Bytes per entry: 3 in released kernels, 4 in the first 6.2 development builds.
    pub width: u8,
}

/// A token table and index that passed the signature check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenTables {
    /// Offset of `kallsyms_token_table`.
    pub(crate) table: usize,
    /// Offset of `kallsyms_token_index`.
    pub(crate) index: usize,
}

/// Whether `p` starts a token index whose token table ends right before it.
fn token_table_at(b: &[u8], al: Aligner, p: usize, budget: &Budget) -> Option<TokenTables> {
    // Cheap rejection first: index[0] is 0 and the index strictly ascends. Two candidates
    // cannot share an ascending run, so this costs O(len) over the whole scan.
    if u16_at(b, p)? != 0 || u16_at(b, p + 2)? == 0 {
        // Runs of zeros are common in .rodata: refuse them before setting up the index.
        return None;
    }
    let mut idx = [0u16; 256];
    for i in 1..256 {
        let v = u16_at(b, p + 2 * i)?;
        if v <= idx[i - 1] {
            return None;
        }
        idx[i] = v;
    }
    let last = usize::from(idx[255]);
    // The table ends with the last token's NUL at q, then fewer than 8 zero bytes pad up to the
    // (aligned) index at p: q is in [p - 8, p) with only zeros after it.
    let lowest = p.checked_sub(TABLE_ALIGN as usize)?;
    for q in (lowest..p).rev() {
        if b.get(q) != Some(&0) {
            break;
        }
        if al.align_up(q + 1) != Some(p) {
            continue;
        }
        // The last token is the run of non-zero bytes before q (possibly empty).
        let floor = q.saturating_sub(MAX_TOKEN_LEN);
        let len = b[floor..q].iter().rev().take_while(|&&c| c != 0).count();
        let Some(t) = (q - len).checked_sub(last) else {
            continue;
        };
        if !al.is_aligned(t) || !budget.spend(q + 1 - t) {
            continue;
        }
        if tokens_valid(b, t, &idx, q) {
            return Some(TokenTables { table: t, index: p });
        }
    }
    None
}

/// Whether every token is printable ASCII and NUL-terminated exactly where the index says.
fn tokens_valid(b: &[u8], t: usize, idx: &[u16; 256], last_nul: usize) -> bool {
    (0..256).all(|i| {
        let start = t + usize::from(idx[i]);
        let nul = if i < 255 {
            t + usize::from(idx[i + 1]) - 1
        } else {
            last_nul
        };
        match (b.get(start..nul), b.get(nul)) {
            (Some(s), Some(0)) => s.iter().all(|c| (0x21..=0x7e).contains(c)),
            _ => false,
        }
    })
}

/// Builds the layout around a token table, or says how far it got (a stage number, higher is
/// further) and why it stopped.
fn layout_from_tokens(
    b: &[u8],
    al: Aligner,
    tokens: TokenTables,
    budget: &Budget,
) -> Result<TableLayout, (u8, KallsymsError)> {
    // Markers right before the token table (6.1 and before, 6.4 and later), else with
    // kallsyms_seqs_of_names between them (6.2, 6.3 and 6.1 stable backports).
    let direct = find_markers(b, al, tokens.table)
        .map_err(|e| (1, e))
        .and_then(|(m, count)| {
            find_names(b, al, m, count, None, budget).ok_or((
                2,
                KallsymsError::NamesNotFound {
                    markers: count,
                    markers_offset: m,
                },
            ))
        });
    let (names, seqs) = match direct {
        Ok(names) => (names, None),
        Err(direct_err) => match find_names_behind_seqs(b, al, tokens.table, budget) {
            Ok((names, seqs)) => (names, Some(seqs)),
            // Markers and a sequence table matched, but no num_syms: that is further than
            // markers not found right before the token table.
            Err(Some((markers_offset, markers))) if direct_err.0 < 2 => {
                return Err((
                    2,
                    KallsymsError::NamesNotFound {
                        markers,
                        markers_offset,
                    },
                ))
            }
            Err(_) => return Err(direct_err),
        },
    };
    let mut reasons = Vec::new();
    let mut found: Option<(TableLayout, bool)> = None;
    for order in [TableOrder::NamesFirst, TableOrder::OffsetsFirst] {
        if !budget.spend(2 * names.num_syms as usize) {
            break;
        }
        match offsets_for(b, al, order, tokens, &names) {
            Ok((mut layout, exact)) => {
                layout.seqs_of_names = match order {
                    TableOrder::OffsetsFirst => seqs,
                    // Since 6.4 the sequence table follows the relative base.
                    TableOrder::NamesFirst => {
                        let at = layout.relative_base_at + TABLE_ALIGN as usize;
                        seqs_valid(b, at, 3, names.num_syms as usize, budget).then_some(
                            SeqsOfNames {
                                offset: at,
                                width: 3,
                            },
                        )
                    }
                };
                // Prefer the candidate whose first relative symbol sits exactly at the base, as
                // scripts/kallsyms chooses the base.
                if found.as_ref().is_none_or(|(_, e)| exact && !*e) {
                    found = Some((layout, exact));
                }
            }
            Err(reason) => reasons.push(format!("{order:?}: {reason}")),
        }
    }
    found.map(|(l, _)| l).ok_or((
        3,
        KallsymsError::OffsetsNotFound {
            reason: reasons.join("; "),
        },
    ))
}

/// Whether the distance between two markers can be 256 names (2 to 2 + 0x3fff bytes each).
#[inline]
fn plausible_delta(delta: usize) -> bool {
    (2 * 256..=256 * MAX_ENTRY_BYTES).contains(&delta)
}

/// Whether the `count` markers at `at` ascend by plausible steps from 0.
fn markers_ascending(b: &[u8], at: usize, count: usize, budget: &Budget) -> bool {
    let mut prev = 0usize;
    for k in 0..count {
        let v = u32_at(b, at + 4 * k).map(|v| v as usize);
        let ok = match v {
            Some(0) => k == 0,
            Some(v) => k > 0 && v > prev && plausible_delta(v - prev),
            None => false,
        };
        if !ok {
            budget.spend(k + 1);
            return false;
        }
        prev = v.unwrap_or(0);
    }
    budget.spend(count)
}

/// Whether the `num` `width`-byte big-endian values at `at` are a permutation of `0..num`.
fn seqs_valid(b: &[u8], at: usize, width: usize, num: usize, budget: &Budget) -> bool {
    let Some(table) = at.checked_add(width * num).and_then(|end| b.get(at..end)) else {
        return false;
    };
    let value = |e: &[u8]| e.iter().fold(0usize, |acc, &c| (acc << 8) | usize::from(c));
    // Most candidates fail on their first entries: look before allocating.
    if !table.chunks_exact(width).take(4).all(|e| value(e) < num) {
        budget.spend(4);
        return false;
    }
    let mut seen = vec![0u64; num.div_ceil(64)];
    for (i, e) in table.chunks_exact(width).enumerate() {
        let v = value(e);
        let (word, bit) = (v / 64, 1u64 << (v % 64));
        if v >= num || seen[word] & bit != 0 {
            budget.spend(i + 1);
            return false;
        }
        seen[word] |= bit;
    }
    budget.spend(num)
}

/// Finds markers and names when `kallsyms_seqs_of_names` sits between the markers and the
/// token table at `t`. Its size depends on `num_syms`, and `num_syms` fixes where the markers
/// start, so each count is tried: the markers must start with 0 and ascend, the sequence table
/// must be a permutation, and `kallsyms_num_syms` must hold the count. On failure, returns the
/// last markers (offset, count) that had a valid sequence table after them.
fn find_names_behind_seqs(
    b: &[u8],
    al: Aligner,
    t: usize,
    budget: &Budget,
) -> Result<(Names, SeqsOfNames), Option<(usize, usize)>> {
    let mut partial = None;
    for width in [3usize, 4] {
        for num in 1..=MAX_SYMBOLS as usize {
            let Some(room) = t.checked_sub(width * num) else {
                break;
            };
            if !budget.spend(1) {
                return Err(partial);
            }
            let s = al.align_down(room);
            let count = num.div_ceil(256);
            let Some(ms) = s.checked_sub((4 * count).next_multiple_of(TABLE_ALIGN as usize)) else {
                break;
            };
            if !al.is_aligned(s) || u32_at(b, ms) != Some(0) {
                continue;
            }
            if count >= 2 && !u32_at(b, ms + 4).is_some_and(|v| plausible_delta(v as usize)) {
                continue;
            }
            // An odd number of markers leaves a 4-byte zero pad before the sequence table.
            if count % 2 == 1 && u32_at(b, ms + 4 * count) != Some(0) {
                continue;
            }
            if !markers_ascending(b, ms, count, budget) || !seqs_valid(b, s, width, num, budget) {
                if budget.exhausted() {
                    return Err(partial);
                }
                continue;
            }
            if let Some(names) = find_names(b, al, ms, count, Some(num as u32), budget) {
                return Ok((
                    names,
                    SeqsOfNames {
                        offset: s,
                        width: width as u8,
                    },
                ));
            }
            partial = Some((ms, count));
        }
    }
    Err(partial)
}

/// Finds `kallsyms_markers` ending right before the token table at `t`: returns its offset and
/// its number of entries.
fn find_markers(b: &[u8], al: Aligner, t: usize) -> Result<(usize, usize), KallsymsError> {
    let not_found = KallsymsError::MarkersNotFound { token_table: t };
    // With an odd number of markers a 4-byte zero pad sits between them and the token table.
    for end in [Some(t), t.checked_sub(4)].into_iter().flatten() {
        if end != t && u32_at(b, end) != Some(0) {
            continue;
        }
        let mut pos = end;
        let mut next: Option<u32> = None;
        let mut count = 0usize;
        let start = loop {
            let Some(p) = pos.checked_sub(4) else {
                break None;
            };
            pos = p;
            let Some(v) = u32_at(b, pos) else {
                break None;
            };
            if let Some(n) = next {
                // Each block of 256 names takes at least 2 bytes per name.
                let ok = v < n
                    && ((n - v) as usize) >= 2 * 256
                    && ((n - v) as usize) <= 256 * MAX_ENTRY_BYTES;
                if !ok {
                    break None;
                }
            }
            count += 1;
            if count > MAX_MARKERS {
                return Err(KallsymsError::TooManySymbols {
                    count: (count as u64) * 256,
                    max: MAX_SYMBOLS,
                });
            }
            if v == 0 {
                break Some(pos);
            }
            next = Some(v);
        };
        if let Some(start) = start {
            if al.is_aligned(start) && al.align_up(end) == Some(t) {
                return Ok((start, count));
            }
        }
    }
    Err(not_found)
}

/// `kallsyms_num_syms` and the extent of `kallsyms_names`.
#[derive(Debug, Clone, Copy)]
struct Names {
    num_syms: u32,
    num_syms_at: usize,
    start: usize,
    end: usize,
    markers: usize,
}

/// Reads the ULEB128 length of the names entry at `pos`: (data length, header length).
#[inline]
pub(crate) fn entry_len(names: &[u8], pos: usize) -> Option<(usize, usize)> {
    let first = *names.get(pos)?;
    if first & 0x80 == 0 {
        Some((usize::from(first), 1))
    } else {
        let second = *names.get(pos + 1)?;
        Some((usize::from(first & 0x7f) | (usize::from(second) << 7), 2))
    }
}

/// Walks `n` names entries from `pos`, never past `limit`; returns where the walk ended.
fn walk(b: &[u8], mut pos: usize, n: usize, limit: usize) -> Option<usize> {
    for _ in 0..n {
        let (len, hdr) = entry_len(b, pos)?;
        if len == 0 {
            return None;
        }
        pos = pos.checked_add(hdr + len)?;
        if pos > limit {
            return None;
        }
    }
    Some(pos)
}

/// Finds the start of `kallsyms_names` for the `count` markers at `markers`: `num_syms` sits
/// before it and must agree with the number of markers (and equal `expected`, if given), and
/// every marker must fall on the start of an entry.
fn find_names(
    b: &[u8],
    al: Aligner,
    markers: usize,
    count: usize,
    expected: Option<u32>,
    budget: &Budget,
) -> Option<Names> {
    let last_block = count.checked_sub(1)?;
    let last = u32_at(b, markers + 4 * last_block)? as usize;
    let min_num = last_block * 256 + 1;
    let max_num = count * 256;
    let hi = markers.checked_sub(last)?.checked_sub(2)?;
    let lo = hi.saturating_sub(256 * MAX_ENTRY_BYTES).max(8);
    let mut x = al.align_up(hi.checked_sub(TABLE_ALIGN as usize - 1)?)?;
    while x >= lo {
        if !budget.spend(1) {
            return None;
        }
        let num_at = x - 8;
        let plausible = u32_at(b, num_at).is_some_and(|n| {
            (min_num..=max_num).contains(&(n as usize)) && expected.is_none_or(|e| e == n)
        }) && u32_at(b, x - 4) == Some(0);
        if plausible {
            let num = u32_at(b, num_at)? as usize;
            let tail_len = num - last_block * 256;
            if !budget.spend(tail_len) {
                return None;
            }
            let tail = walk(b, x + last, tail_len, markers);
            if let Some(end) = tail {
                let padded = al.align_up(end) == Some(markers)
                    && b.get(end..markers)
                        .is_some_and(|pad| pad.iter().all(|&c| c == 0));
                if padded && budget.spend(num) && markers_match(b, x, num, markers, end) {
                    return Some(Names {
                        num_syms: num as u32,
                        num_syms_at: num_at,
                        start: x,
                        end,
                        markers,
                    });
                }
            }
        }
        x = x.checked_sub(TABLE_ALIGN as usize)?;
    }
    None
}

/// Whether walking all `num` names from `start` meets every marker and ends at `end`.
fn markers_match(b: &[u8], start: usize, num: usize, markers: usize, end: usize) -> bool {
    let mut pos = start;
    for i in 0..num {
        if i % 256 == 0 {
            let expected = u32_at(b, markers + 4 * (i / 256)).map(|m| m as usize);
            if expected != Some(pos - start) {
                return false;
            }
        }
        match walk(b, pos, 1, end) {
            Some(p) => pos = p,
            None => return false,
        }
    }
    pos == end
}

/// Places `kallsyms_offsets` and `kallsyms_relative_base` for `order` and checks them. Returns
/// the layout and whether the first relative symbol sits exactly at the base.
fn offsets_for(
    b: &[u8],
    al: Aligner,
    order: TableOrder,
    tokens: TokenTables,
    names: &Names,
) -> Result<(TableLayout, bool), String> {
    let num = names.num_syms as usize;
    let len = num * 4;
    let (offsets, rb_at) = match order {
        TableOrder::NamesFirst => {
            let offsets = al
                .align_up(tokens.index + TOKEN_INDEX_BYTES)
                .ok_or("offsets out of range")?;
            let rb_at = offsets
                .checked_add(len)
                .and_then(|e| al.align_up(e))
                .ok_or("relative base out of range")?;
            (offsets, rb_at)
        }
        TableOrder::OffsetsFirst => {
            let rb_at = names
                .num_syms_at
                .checked_sub(TABLE_ALIGN as usize)
                .ok_or("no room for the relative base before num_syms")?;
            let padded = len.next_multiple_of(TABLE_ALIGN as usize);
            let offsets = rb_at
                .checked_sub(padded)
                .ok_or("no room for the offsets before the relative base")?;
            (offsets, rb_at)
        }
    };
    let relative_base = u64_at(b, rb_at).ok_or_else(|| {
        format!(
            "relative base at {rb_at:#x} is past the end of the {} bytes",
            b.len()
        )
    })?;
    if relative_base < KERNEL_HALF {
        return Err(format!(
            "relative base {relative_base:#x} at {rb_at:#x} is not a kernel address"
        ));
    }
    let table = b
        .get(offsets..offsets + len)
        .ok_or_else(|| format!("offsets at {offsets:#x} run past the end"))?;
    let absolute_percpu = table
        .chunks_exact(4)
        .any(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) < 0);
    let mut prev = 0u64;
    let mut exact = false;
    let mut seen_relative = false;
    for (i, c) in table.chunks_exact(4).enumerate() {
        let off = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let relative = !absolute_percpu || off < 0;
        let addr = sym_address(relative_base, absolute_percpu, off)
            .ok_or_else(|| format!("symbol {i}: offset {off} overflows"))?;
        if addr < prev {
            return Err(format!(
                "symbol {i} at {addr:#x} sorts before symbol {} at {prev:#x}",
                i - 1
            ));
        }
        if relative && !seen_relative {
            seen_relative = true;
            exact = addr == relative_base;
        }
        prev = addr;
    }
    if !seen_relative {
        return Err("no symbol is relative to the base".into());
    }
    Ok((
        TableLayout {
            order,
            num_syms: names.num_syms,
            num_syms_at: names.num_syms_at,
            names: names.start,
            names_end: names.end,
            markers: names.markers,
            token_table: tokens.table,
            token_index: tokens.index,
            offsets,
            relative_base_at: rb_at,
            relative_base,
            seqs_of_names: None,
            absolute_percpu,
        },
        exact,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_kallsyms_sym_address() {
        let base = 0xffff_ffff_8100_0000;
        // --absolute-percpu: -1 is the base itself, non-negative values are absolute.
        assert_eq!(sym_address(base, true, -1), Some(base));
        assert_eq!(sym_address(base, true, -0x101), Some(base + 0x100));
        assert_eq!(sym_address(base, true, 0x1ad40), Some(0x1ad40));
        let low = 0xffff_8000_0000_0000;
        assert_eq!(sym_address(low, true, i32::MIN), Some(low - 1 + (1 << 31)));
        // Past the top of the address space: refused, not wrapped.
        assert_eq!(sym_address(base, true, i32::MIN), None);
        assert_eq!(sym_address(0, true, -1), None);
        // Plain base-relative: unsigned offsets.
        assert_eq!(sym_address(base, false, 0x40), Some(base + 0x40));
        assert_eq!(sym_address(low, false, -1), Some(low + 0xffff_ffff));
        assert_eq!(sym_address(base, false, -1), None);
        assert_eq!(sym_address(u64::MAX, false, 1), None);
    }

    #[test]
    fn budget_runs_out_once() {
        let b = Budget::new(10);
        assert!(b.spend(4));
        assert!(b.spend(6));
        assert!(b.exhausted());
        assert!(!b.spend(1));
        let b = Budget::new(3);
        assert!(!b.spend(4));
        assert!(b.exhausted());
    }

    #[test]
    fn entry_lengths_are_uleb128() {
        assert_eq!(entry_len(&[0x05], 0), Some((5, 1)));
        assert_eq!(entry_len(&[0x85, 0x02], 0), Some((0x105, 2)));
        assert_eq!(entry_len(&[0x85], 0), None);
        assert_eq!(entry_len(&[], 0), None);
    }

    #[test]
    fn markers_need_zero_first_and_plausible_steps() {
        let words = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let budget = Budget::new(1000);
        assert!(markers_ascending(&words(&[0, 600, 1300]), 0, 3, &budget));
        assert!(!markers_ascending(&words(&[1, 600]), 0, 2, &budget));
        assert!(!markers_ascending(&words(&[0, 100]), 0, 2, &budget));
        assert!(!markers_ascending(&words(&[0, 600, 600]), 0, 3, &budget));
        assert!(!markers_ascending(&words(&[0, 600]), 0, 3, &budget));
    }

    #[test]
    fn sequence_tables_must_be_permutations() {
        let budget = Budget::new(1000);
        let seqs = |v: &[u32]| {
            v.iter()
                .flat_map(|x| x.to_be_bytes()[1..].to_vec())
                .collect::<Vec<u8>>()
        };
        assert!(seqs_valid(&seqs(&[2, 0, 1]), 0, 3, 3, &budget));
        assert!(!seqs_valid(&seqs(&[2, 0, 0]), 0, 3, 3, &budget));
        assert!(!seqs_valid(&seqs(&[3, 0, 1]), 0, 3, 3, &budget));
        assert!(!seqs_valid(&seqs(&[0, 1]), 0, 3, 3, &budget));
    }
}
