//! Field-layout helpers the structure readers share ([`Scalar`], [`ArrayField`],
//! [`StructBuf`]): a field's offset *and width* come from the profile, so a field that changed
//! type between kernels (`unsigned int` to `unsigned long`) is still read right, and a
//! structure is read from the guest in one piece, then decoded from the copy.

use vmi_core::profile::TypeRef;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::error::LinuxError;

/// The largest structure read in one piece: real ones are below 16 KiB (`task_struct` is
/// the biggest); the bound keeps a hostile profile from sizing an allocation.
pub const MAX_STRUCT_SIZE: u64 = 64 << 10;

/// A profile whose layout cannot be what the code expects (a field that should be an array
/// is not, a width that no integer has). Real BTF never gives one; `ProfileError` has no
/// variant for it yet, so the message goes in the field name.
pub(crate) fn unexpected_layout(ty: &str, field: &str, why: &str) -> ProfileError {
    ProfileError::MissingField {
        ty: ty.to_owned(),
        field: format!("{field} ({why})"),
    }
}

/// The size of a struct, checked against [`MAX_STRUCT_SIZE`].
pub(crate) fn struct_size(profile: &Profile, ty: &str) -> Result<usize, ProfileError> {
    let size = profile.struct_size(ty)?;
    if size == 0 || size > MAX_STRUCT_SIZE {
        return Err(unexpected_layout(ty, "<size>", "size is 0 or above 64 KiB"));
    }
    usize::try_from(size).map_err(|_| unexpected_layout(ty, "<size>", "size does not fit"))
}

/// An unsigned integer (or pointer, or bitfield) field: where it is and how wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scalar {
    /// Byte offset in the containing struct.
    pub offset: u64,
    /// Width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// For a bitfield: first bit and width inside the storage unit at `offset`.
    pub bits: Option<(u8, u8)>,
}

impl Scalar {
    /// Resolves `ty.field` from the profile.
    pub fn resolve(profile: &Profile, ty: &str, field: &str) -> Result<Scalar, ProfileError> {
        let f = profile.field(ty, field)?;
        Self::of_type(profile, ty, field, f.offset, &f.ty)
    }

    /// Resolves `ty.outer` and, inside its type (a struct), `inner`: `file.f_path` then
    /// `path.dentry`, summed.
    pub fn resolve_nested(
        profile: &Profile,
        ty: &str,
        outer: &str,
        inner: &str,
    ) -> Result<Scalar, ProfileError> {
        let f = profile.field(ty, outer)?;
        let inner_ty = match &f.ty {
            TypeRef::Struct(n) | TypeRef::Union(n) => n.clone(),
            _ => return Err(unexpected_layout(ty, outer, "not a struct")),
        };
        let mut s = Self::resolve(profile, &inner_ty, inner)?;
        s.offset = f
            .offset
            .checked_add(s.offset)
            .ok_or_else(|| unexpected_layout(ty, outer, "offset overflows"))?;
        Ok(s)
    }

    fn of_type(
        profile: &Profile,
        ty: &str,
        field: &str,
        offset: u64,
        t: &TypeRef,
    ) -> Result<Scalar, ProfileError> {
        let (storage, bits) = match t {
            TypeRef::Bitfield {
                position,
                length,
                storage,
            } => {
                let pos = u8::try_from(*position).ok();
                let len = u8::try_from(*length).ok();
                match (pos, len) {
                    (Some(p), Some(l)) if l > 0 && u32::from(p) + u32::from(l) <= 64 => {
                        (&**storage, Some((p, l)))
                    }
                    _ => return Err(unexpected_layout(ty, field, "bitfield out of range")),
                }
            }
            other => (other, None),
        };
        let size = profile
            .type_size(storage)
            .and_then(|s| u8::try_from(s).ok())
            .filter(|s| matches!(s, 1 | 2 | 4 | 8))
            .ok_or_else(|| unexpected_layout(ty, field, "not an integer of 1, 2, 4 or 8 bytes"))?;
        if let Some((p, l)) = bits {
            if u32::from(p) + u32::from(l) > u32::from(size) * 8 {
                return Err(unexpected_layout(ty, field, "bitfield outside its storage"));
            }
        }
        Ok(Scalar { offset, size, bits })
    }

    /// The offset one past the field.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.size))
    }

    /// The field's value in a copy of the struct, or `None` if the copy is too short.
    pub fn get(&self, buf: &[u8]) -> Option<u64> {
        let start = usize::try_from(self.offset).ok()?;
        let bytes = buf.get(start..start.checked_add(usize::from(self.size))?)?;
        let mut le = [0u8; 8];
        le[..bytes.len()].copy_from_slice(bytes);
        let raw = u64::from_le_bytes(le);
        Some(match self.bits {
            None => raw,
            Some((pos, 64)) => raw >> pos,
            Some((pos, len)) => (raw >> pos) & ((1u64 << len) - 1),
        })
    }
}

/// A fixed-size array field: offset, element count and element stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayField {
    /// Byte offset in the containing struct.
    pub offset: u64,
    /// Number of elements.
    pub count: u64,
    /// Size of one element.
    pub stride: u64,
}

impl ArrayField {
    /// Resolves `ty.field`, which must be an array of elements of known size.
    pub fn resolve(profile: &Profile, ty: &str, field: &str) -> Result<ArrayField, ProfileError> {
        let f = profile.field(ty, field)?;
        let TypeRef::Array { count, element } = &f.ty else {
            return Err(unexpected_layout(ty, field, "not an array"));
        };
        let stride = profile
            .type_size(element)
            .filter(|s| *s > 0)
            .ok_or_else(|| unexpected_layout(ty, field, "element size unknown"))?;
        stride
            .checked_mul(*count)
            .and_then(|b| f.offset.checked_add(b))
            .filter(|&end| end <= MAX_STRUCT_SIZE)
            .ok_or_else(|| unexpected_layout(ty, field, "array too large"))?;
        Ok(ArrayField {
            offset: f.offset,
            count: *count,
            stride,
        })
    }

    /// The offset one past the array.
    pub fn end(&self) -> u64 {
        self.offset
            .saturating_add(self.count.saturating_mul(self.stride))
    }

    /// Element `index` of the array as a scalar of `size` bytes at `inner` inside the
    /// element, or `None` past the end.
    pub fn element(&self, index: u64, inner: u64, size: u8) -> Option<Scalar> {
        if index >= self.count || inner.checked_add(u64::from(size))? > self.stride {
            return None;
        }
        Some(Scalar {
            offset: self
                .offset
                .checked_add(index.checked_mul(self.stride)?)?
                .checked_add(inner)?,
            size,
            bits: None,
        })
    }
}

/// A copy of one guest structure, decoded field by field; a field outside the copy (only
/// with an inconsistent profile) is a [`LinuxError::Corrupt`] naming the structure.
pub struct StructBuf {
    what: &'static str,
    at: Va,
    bytes: Vec<u8>,
}

impl StructBuf {
    /// Reads `size` bytes of `what` at `at`.
    pub fn read(
        mem: &VirtualMemory<'_>,
        what: &'static str,
        at: Va,
        size: usize,
    ) -> Result<StructBuf, LinuxError> {
        let mut bytes = vec![0u8; size];
        mem.read_exact(at, &mut bytes)?;
        Ok(StructBuf { what, at, bytes })
    }

    /// Where the structure was read from.
    pub fn at(&self) -> Va {
        self.at
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A field's value.
    pub fn get(&self, field: Scalar) -> Result<u64, LinuxError> {
        field.get(&self.bytes).ok_or_else(|| LinuxError::Corrupt {
            what: self.what,
            at: self.at,
            reason: format!(
                "field at offset {} lies outside the {}-byte structure",
                field.offset,
                self.bytes.len()
            ),
        })
    }

    /// A pointer field's value as an address.
    pub fn va(&self, field: Scalar) -> Result<Va, LinuxError> {
        self.get(field).map(Va::new)
    }

    /// The bytes of an array field.
    pub fn array(&self, field: ArrayField) -> Result<&[u8], LinuxError> {
        let range = usize::try_from(field.offset)
            .ok()
            .zip(usize::try_from(field.end()).ok());
        range
            .and_then(|(s, e)| self.bytes.get(s..e))
            .ok_or_else(|| LinuxError::Corrupt {
                what: self.what,
                at: self.at,
                reason: format!(
                    "array at offset {} lies outside the {}-byte structure",
                    field.offset,
                    self.bytes.len()
                ),
            })
    }

    /// A corruption error about this structure.
    pub fn corrupt(&self, reason: String) -> LinuxError {
        LinuxError::Corrupt {
            what: self.what,
            at: self.at,
            reason,
        }
    }
}
