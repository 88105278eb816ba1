//! Raw images: guest-physical memory from address 0, byte for byte (QEMU `pmemsave`,
//! `/dev/mem` copies, ...).
//!
//! A raw image has no header, so it cannot be recognised by content; it is the fallback for a
//! file that is neither ELF nor LiME. To keep a mistyped path or an unrelated file from being
//! silently taken as guest memory, the fallback only applies to files whose size is a non-zero
//! multiple of 4 KiB (every physical memory size is); anything else is
//! [`crate::DumpError::UnknownFormat`]. [`crate::Dump::open_as`] opens any file as raw.

/// The page size a raw image's length must be a multiple of to be recognised.
pub const RAW_GRANULE: u64 = 4096;

/// Whether a file of `len` bytes that is neither ELF nor LiME is taken as a raw image.
pub fn is_raw_candidate(len: u64) -> bool {
    len > 0 && len % RAW_GRANULE == 0
}
