//! `isf-export`: a Volatility 3 symbol table (ISF) built from the guest itself: types from its
//! BTF, symbols from its kallsyms at link-time (unshifted) addresses, and `linux_banner` with
//! its bytes as `constant_data`, which is how Volatility matches a table to a memory image.

use vmi_core::profile::isf::{self, IsfDocument, IsfType};
use vmi_core::{Session, Va};

use crate::error::LinuxError;
use crate::kernel::Kernel;

/// The ISF document of `kernel` (which should carry the full profile of discovery, not a
/// cached subset).
pub fn export(session: &Session, kernel: &Kernel) -> Result<IsfDocument, LinuxError> {
    let release = kernel
        .banner()
        .strip_prefix("Linux version ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("unknown");
    let metadata = serde_json::json!({
        "format": isf::WRITTEN_FORMAT,
        "producer": {"name": "vmi", "version": env!("CARGO_PKG_VERSION")},
        "linux": {"symbols": [{"kind": "symtab", "name": format!("kallsyms of {release}")}]},
    });
    let mut doc = isf::from_profile(kernel.profile(), metadata);

    // The banner exactly as it is in memory, NUL included: Volatility scans for these bytes.
    let banner_va: Va = kernel.symbol("linux_banner")?;
    let text = kernel.memory(session).read_cstr(banner_va, 1024)?;
    let mut bytes = text.into_bytes();
    bytes.push(0);
    if let Some(sym) = doc.symbols.get_mut("linux_banner") {
        sym.ty = Some(IsfType::Array {
            count: bytes.len() as u64,
            subtype: Box::new(IsfType::Base {
                name: "char".to_owned(),
            }),
        });
        sym.constant_data = Some(base64(&bytes));
    }
    Ok(doc)
}

/// Standard base64 with padding (RFC 4648), for `constant_data`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }
}
