//! `UNICODE_STRING` (64-bit: u16 Length in bytes, u16 MaximumLength, u64 Buffer; 32-bit: the
//! same with a u32 Buffer at 4) and UTF-16 text from guest memory.

use vmi_core::Va;

use crate::mem::GuestMemory;
use crate::WindowsError;

/// The longest string read (UNICODE_STRING lengths are u16, so 64 KiB at most anyway).
pub const MAX_BYTES: usize = 0xFFFF;

/// Reads the 64-bit `UNICODE_STRING` at `at`. An empty or NULL string is `""`; an odd length
/// loses its last byte, as Windows itself would.
pub fn read(mem: &dyn GuestMemory, at: Va) -> Result<String, WindowsError> {
    let mut head = [0u8; 16];
    mem.read_exact(at, &mut head)?;
    let len = u16::from_le_bytes([head[0], head[1]]);
    let buffer = u64::from_le_bytes(head[8..16].try_into().unwrap_or([0; 8]));
    read_utf16(mem, Va::new(buffer), usize::from(len))
}

/// Reads the 32-bit `UNICODE_STRING32` at `at` (WoW64 structures).
pub fn read32(mem: &dyn GuestMemory, at: Va) -> Result<String, WindowsError> {
    let mut head = [0u8; 8];
    mem.read_exact(at, &mut head)?;
    let len = u16::from_le_bytes([head[0], head[1]]);
    let buffer = u32::from_le_bytes(head[4..8].try_into().unwrap_or([0; 4]));
    read_utf16(mem, Va::new(u64::from(buffer)), usize::from(len))
}

/// `len` bytes of UTF-16LE text at `buffer` (lossy).
pub fn read_utf16(mem: &dyn GuestMemory, buffer: Va, len: usize) -> Result<String, WindowsError> {
    let len = len.min(MAX_BYTES) & !1;
    if len == 0 || buffer.raw() == 0 {
        return Ok(String::new());
    }
    let mut bytes = vec![0u8; len];
    mem.read_exact(buffer, &mut bytes)?;
    Ok(utf16_lossy(&bytes))
}

/// UTF-16LE bytes as text, unpaired surrogates replaced.
pub fn utf16_lossy(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}
