//! Serde helpers for the command contract: addresses as lowercase `"0x..."` strings.

use serde::Serializer;

use crate::addr::{Pa, Va};

/// Serializes a virtual address as `"0x..."`.
pub fn va<S: Serializer>(v: &Va, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Serializes a physical address as `"0x..."`.
pub fn pa<S: Serializer>(v: &Pa, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Serializes an integer as `"0x..."`.
pub fn u64<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:#x}"))
}
