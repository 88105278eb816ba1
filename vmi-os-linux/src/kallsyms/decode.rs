//! Expanding `kallsyms_names` through the token table into names, types and addresses.
//!
//! Each entry of `kallsyms_names` is a ULEB128 length (one byte, or two when the first has its
//! top bit set: the "big symbol" encoding of Linux 6.1+) followed by that many token numbers.
//! Each token number selects a string of the token table; the concatenation is the type letter
//! followed by the name. The decoder reads the bytes in place and writes names into one arena.

use super::bytes::{i32_at, u16_at, u32_at};
use super::error::KallsymsError;
use super::scan::{entry_len, sym_address, TableLayout, MAX_SYMBOLS};
use super::symbols::{Entry, Kallsyms};

/// Longest expansion (type letter + name) accepted. The kernel refuses names of
/// `KSYM_NAME_LEN` (512) bytes or more; twice that leaves room for future kernels.
pub const MAX_NAME_LEN: usize = 1024;
/// Cap on all names together: a 6.12 kernel needs about 5 MiB.
const MAX_ARENA_BYTES: usize = 64 << 20;

/// Decodes every symbol of the tables at `layout` in `bytes`.
pub(crate) fn decode(bytes: &[u8], layout: &TableLayout) -> Result<Kallsyms, KallsymsError> {
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
    // Every entry takes at least two bytes: this bounds the allocation below by the input.
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

    let mut entries = Vec::with_capacity(num);
    let mut arena: Vec<u8> = Vec::with_capacity(names.len().saturating_mul(2).min(MAX_ARENA_BYTES));
    // Room for a full name plus the longest token that may overshoot it before the check.
    let mut scratch = vec![0u8; MAX_NAME_LEN + MAX_NAME_LEN + SHORT];
    let mut pos = 0usize;
    for i in 0..num {
        if i % 256 == 0 {
            let marker = u32_at(bytes, layout.markers.saturating_add(4 * (i / 256)));
            if marker.map(|m| m as usize) != Some(pos) {
                return Err(inconsistent(format!(
                    "marker {} is {marker:?} but symbol {i} starts at names offset {pos:#x}",
                    i / 256
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

        // Expand into a scratch buffer: short tokens are copied as fixed 16-byte blocks
        // (inline moves, not a memcpy call per token), then the name joins the arena at once.
        let mut len_out = 0usize;
        for &t in data {
            let tok = &tokens[usize::from(t)];
            let n = usize::from(tok.len);
            if n <= SHORT {
                scratch[len_out..len_out + SHORT].copy_from_slice(&tok.short);
            } else {
                scratch[len_out..len_out + n].copy_from_slice(tok.long);
            }
            len_out += n;
            if len_out > MAX_NAME_LEN {
                return Err(KallsymsError::NameTooLong {
                    index: i as u32,
                    max: MAX_NAME_LEN,
                });
            }
        }
        let start = arena.len();
        arena.extend_from_slice(&scratch[..len_out]);
        if arena.len() > MAX_ARENA_BYTES {
            return Err(inconsistent(format!(
                "names expand to more than {MAX_ARENA_BYTES} bytes"
            )));
        }
        let Some(&kind) = arena.get(start) else {
            return Err(inconsistent(format!("symbol {i} expands to nothing")));
        };
        let off = i32_at(bytes, layout.offsets.saturating_add(4 * i))
            .ok_or_else(|| inconsistent(format!("symbol {i}: offset is cut off")))?;
        let address = sym_address(layout.relative_base, layout.absolute_percpu, off)
            .ok_or_else(|| inconsistent(format!("symbol {i}: offset {off} overflows")))?;
        entries.push(Entry {
            name_start: (start + 1) as u32,
            name_len: (arena.len() - start - 1) as u16,
            kind,
            absolute: layout.absolute_percpu && off >= 0,
            address,
        });
    }
    if layout.names.checked_add(pos) != Some(layout.names_end) {
        return Err(inconsistent(format!(
            "names end at offset {:#x}, not at {:#x}",
            layout.names.saturating_add(pos),
            layout.names_end
        )));
    }
    // Tokens were checked to be printable ASCII, so this never fails; a failure is reported
    // rather than unwrapped all the same.
    let arena =
        String::from_utf8(arena).map_err(|_| inconsistent("names are not ASCII".to_owned()))?;
    Ok(Kallsyms::from_parts(arena, entries, *layout))
}

/// Tokens up to this length are copied as one fixed-size block.
const SHORT: usize = 16;

/// One token: its bytes, and a zero-padded copy when it is short.
#[derive(Clone, Copy)]
struct Token<'a> {
    long: &'a [u8],
    short: [u8; SHORT],
    len: u16,
}

/// The 256 token strings, each checked to be printable ASCII and at most `MAX_NAME_LEN` long.
fn tokens<'a>(bytes: &'a [u8], layout: &TableLayout) -> Result<[Token<'a>; 256], KallsymsError> {
    let empty = Token {
        long: &[],
        short: [0; SHORT],
        len: 0,
    };
    let mut out = [empty; 256];
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
        let token = &rest[..len];
        if !token.iter().all(|c| (0x21..=0x7e).contains(c)) {
            return Err(bad("not printable ASCII"));
        }
        let mut short = [0u8; SHORT];
        if len <= SHORT {
            short[..len].copy_from_slice(token);
        }
        *slot = Token {
            long: token,
            short,
            len: len as u16,
        };
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
