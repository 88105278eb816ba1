//! Rendering: tables for people, one JSON document for programs. Nothing is printed to stdout
//! until a command has its whole result, so a failing command leaves stdout empty.

use std::io::Write;

use serde::Serialize;

use crate::Format;

/// Prints `value` as pretty JSON, or `table` for people.
pub fn emit<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let text = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value)?;
            s.push('\n');
            s
        }
        Format::Table => table(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints an error and its causes to stderr.
pub fn print_error(err: &(dyn std::error::Error + 'static)) {
    let mut msg = format!("vmi: error: {err}");
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        // thiserror messages often already include their source; do not repeat it.
        if !msg.contains(&text) {
            msg.push_str(&format!("\n  caused by: {text}"));
        }
        source = s.source();
    }
    eprintln!("{msg}");
}

/// Lays out `rows` under `headers` in aligned columns.
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let mut parts = Vec::new();
        for (cell, w) in cells.zip(&widths) {
            parts.push(format!("{cell:<w$}"));
        }
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied(), &mut out);
    for row in rows {
        line(&mut row.iter().map(String::as_str), &mut out);
    }
    out
}

/// A classic hex dump: address, 16 bytes in hex, printable ASCII.
pub fn hex_dump(start: u64, bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let addr = start.wrapping_add(16 * i as u64);
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{addr:016x}  {:<47}  |{ascii}|\n", hex.join(" ")));
    }
    out
}

/// Lowercase hex of `bytes`, two digits each.
pub fn hex_string(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_layout() {
        let d = hex_dump(0x1000, b"Linux version 6.1\0");
        assert_eq!(
            d,
            "0000000000001000  4c 69 6e 75 78 20 76 65 72 73 69 6f 6e 20 36 2e  |Linux version 6.|\n\
             0000000000001010  31 00                                            |1.|\n"
        );
        assert_eq!(hex_string(&[0, 0xab]), "00ab");
    }

    #[test]
    fn columns_align() {
        let t = columns(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
