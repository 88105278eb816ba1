//! What can be wrong with a BTF blob. The doc comment of each variant is its message.
//!
//! Offsets named `offset` in a header or section context are byte offsets from the start of
//! the blob, so they can be found in a hex dump of `__start_BTF`.

use super::types::TypeId;

/// A BTF blob is malformed, or a query asked for something it does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BtfError {
    /// The blob does not start with the BTF magic.
    #[error("not BTF: magic is {found:#06x}, expected 0xeb9f (little-endian)")]
    BadMagic {
        /// The first two bytes, read little-endian.
        found: u16,
    },
    /// The header announces a BTF version this parser does not know.
    #[error("unsupported BTF version {found} (only version 1 exists)")]
    UnsupportedVersion {
        /// The version byte.
        found: u8,
    },
    /// The header length is smaller than the fixed header.
    #[error("BTF header length {hdr_len} is smaller than the {minimum}-byte fixed header")]
    BadHeaderLength {
        /// The `hdr_len` field.
        hdr_len: u32,
        /// The size of the fixed header.
        minimum: u32,
    },
    /// A part of the blob ends before the data it must hold.
    #[error("BTF {section} truncated: {needed} bytes needed at offset {offset:#x}, blob part ends first")]
    Truncated {
        /// Which part: "header", "type section", "string section", "type record".
        section: &'static str,
        /// Byte offset from the start of the blob where the data should start.
        offset: u64,
        /// Bytes needed there.
        needed: u64,
    },
    /// A type record has a kind this parser does not know.
    #[error("BTF type {id} at offset {offset:#x} has unknown kind {kind}")]
    UnknownKind {
        /// The type's id.
        id: TypeId,
        /// Byte offset of the record from the start of the blob.
        offset: u64,
        /// The raw kind (bits 24-28 of `info`).
        kind: u8,
    },
    /// A type id is not in the type section.
    #[error("BTF type id {id} is out of range (types are 1..={count}, 0 is void)")]
    TypeIdOutOfRange {
        /// The id asked for.
        id: TypeId,
        /// Number of types in the blob.
        count: u32,
    },
    /// A type record refers to a type id that does not exist.
    #[error("BTF type {from} refers to type {to}, but there are only {count} types")]
    DanglingReference {
        /// The referring type.
        from: TypeId,
        /// The id it refers to.
        to: TypeId,
        /// Number of types in the blob.
        count: u32,
    },
    /// A name offset points outside the string section.
    #[error("BTF type {id}: string offset {offset:#x} is outside the {len}-byte string section")]
    StringOutOfRange {
        /// The type whose record (or member) holds the offset.
        id: TypeId,
        /// The offset into the string section.
        offset: u32,
        /// Length of the string section.
        len: u32,
    },
    /// The string section does not end with a NUL byte.
    #[error("BTF string section is not NUL-terminated (last byte at offset {offset:#x})")]
    UnterminatedStrings {
        /// Byte offset of the last byte of the string section from the start of the blob.
        offset: u64,
    },
    /// A name is not valid UTF-8.
    #[error("BTF string at offset {offset:#x} of the string section is not UTF-8")]
    BadString {
        /// The offset into the string section.
        offset: u32,
    },
    /// Resolving a chain of references (typedef, const, array element, nested anonymous
    /// member ...) went deeper than any real kernel does: a cycle or a hostile blob.
    #[error("BTF type {id}: reference chain deeper than {limit} (cycle?)")]
    Cycle {
        /// The type the resolution started from.
        id: TypeId,
        /// The depth limit.
        limit: u32,
    },
    /// A size computation overflowed (array of huge arrays).
    #[error("BTF type {id}: size overflows 64 bits")]
    SizeOverflow {
        /// The type whose size overflowed.
        id: TypeId,
    },
    /// A type that has no size (function, forward declaration, void) was asked for one.
    #[error("BTF type {id} ({kind}) has no size")]
    NoSize {
        /// The type.
        id: TypeId,
        /// Its kind's name ("FUNC", "FWD", "void" ...).
        kind: &'static str,
    },
    /// Members were asked of a type that is not a struct or union.
    #[error("BTF type {id} is a {kind}, not a struct or union")]
    NotComposite {
        /// The type.
        id: TypeId,
        /// Its kind's name.
        kind: &'static str,
    },
    /// Flattening anonymous members visited more members than the blob can legitimately
    /// produce (the same anonymous type nested many times over: a hostile blob).
    #[error("BTF type {id}: flattening anonymous members exceeded {limit} members")]
    TooManyMembers {
        /// The struct or union being flattened.
        id: TypeId,
        /// The member budget.
        limit: u64,
    },
}
