//! System.map: `ADDRESS TYPE NAME` per line, as `nm` prints it.

use super::{Profile, Symbol};
use crate::error::ProfileError;

/// Whether the first non-empty line has the System.map shape.
pub(super) fn looks_like(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| parse_line(l).is_ok())
}

fn parse_line(line: &str) -> Result<(u64, char, &str), &'static str> {
    let mut parts = line.split_ascii_whitespace();
    let addr = parts.next().ok_or("empty line")?;
    let kind = parts.next().ok_or("missing symbol type")?;
    let name = parts.next().ok_or("missing symbol name")?;
    if parts.next().is_some_and(|extra| !extra.starts_with('[')) {
        return Err("more than three fields");
    }
    if addr.is_empty() || addr.len() > 16 {
        return Err("address is not 1 to 16 hex digits");
    }
    let addr = u64::from_str_radix(addr, 16).map_err(|_| "address is not hexadecimal")?;
    let mut kind_chars = kind.chars();
    let kind_char = kind_chars.next().ok_or("missing symbol type")?;
    if kind_chars.next().is_some() || !kind_char.is_ascii_alphabetic() {
        return Err("symbol type is not one letter");
    }
    Ok((addr, kind_char, name))
}

pub(super) fn parse(bytes: &[u8]) -> Result<Profile, ProfileError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ProfileError::SystemMap {
        line: bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
        reason: "not UTF-8",
    })?;
    let mut profile = Profile::new("System.map");
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (address, _kind, name) =
            parse_line(line).map_err(|reason| ProfileError::SystemMap {
                line: i + 1,
                reason,
            })?;
        // Keep the first definition: System.map lists duplicates of local symbols, and the
        // first is the one tools (and the kernel's own kallsyms lookups) resolve.
        profile
            .symbols
            .entry(name.to_owned())
            .or_insert(Symbol { address, ty: None });
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nm_output() {
        let p = parse(
            b"ffffffff81000000 T _text\nffffffff82000100 D linux_banner\n\nffffffff81000000 T _stext\n",
        )
        .unwrap();
        assert_eq!(
            p.symbol_address("linux_banner").unwrap(),
            0xffff_ffff_8200_0100
        );
        assert_eq!(p.symbol_count(), 3);
        assert!(matches!(
            p.symbol_address("nope"),
            Err(ProfileError::MissingSymbol(_))
        ));
    }

    #[test]
    fn rejects_garbage_with_line_number() {
        let e = parse(b"ffffffff81000000 T _text\nzz T x\n").unwrap_err();
        assert!(matches!(e, ProfileError::SystemMap { line: 2, .. }), "{e}");
        assert!(!looks_like(b"{\"metadata\": 1}"));
        assert!(looks_like(b"0000000000000000 A fixed_percpu_data\n"));
    }
}
