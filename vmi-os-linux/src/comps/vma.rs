//! `struct vm_area_struct`: one mapping of a process's address space.
//!
//! Also home of the small field-layout helpers the other structure readers of this crate use
//! ([`Scalar`], [`ArrayField`], [`StructBuf`]): a field's offset *and width* come from the
//! profile, so a field that changed type between kernels (`unsigned int` to `unsigned long`)
//! is still read right, and a structure is read from the guest in one piece, then decoded
//! from the copy.

use vmi_core::profile::TypeRef;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::error::LinuxError;

/// `VM_READ`: the mapping is readable (`include/linux/mm.h`; ABI-stable flag values).
pub const VM_READ: u64 = 0x1;
/// `VM_WRITE`: the mapping is writable.
pub const VM_WRITE: u64 = 0x2;
/// `VM_EXEC`: the mapping is executable.
pub const VM_EXEC: u64 = 0x4;
/// `VM_MAYSHARE`: a shared mapping (`s` rather than `p` in `/proc/PID/maps`).
pub const VM_MAYSHARE: u64 = 0x80;

/// The page size `vm_pgoff` counts in (x86: 4 KiB).
const PAGE_SHIFT: u32 = 12;

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

/// Where the fields of `struct vm_area_struct` are.
#[derive(Debug, Clone)]
pub struct VmaOffsets {
    size: usize,
    start: Scalar,
    end: Scalar,
    mm: Scalar,
    flags: Scalar,
    pgoff: Scalar,
    file: Scalar,
    ops: Scalar,
    private_data: Scalar,
}

impl VmaOffsets {
    /// Resolves the layout from the profile. `vm_flags` is found whether it is a plain field
    /// (6.1) or a member of an anonymous union with `__vm_flags` (6.3+): the profile flattens
    /// anonymous members.
    pub fn resolve(profile: &Profile) -> Result<VmaOffsets, ProfileError> {
        const T: &str = "vm_area_struct";
        Ok(VmaOffsets {
            size: struct_size(profile, T)?,
            start: Scalar::resolve(profile, T, "vm_start")?,
            end: Scalar::resolve(profile, T, "vm_end")?,
            mm: Scalar::resolve(profile, T, "vm_mm")?,
            flags: Scalar::resolve(profile, T, "vm_flags")?,
            pgoff: Scalar::resolve(profile, T, "vm_pgoff")?,
            file: Scalar::resolve(profile, T, "vm_file")?,
            ops: Scalar::resolve(profile, T, "vm_ops")?,
            private_data: Scalar::resolve(profile, T, "vm_private_data")?,
        })
    }
}

/// One `vm_area_struct`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    /// Where the structure is.
    pub addr: Va,
    /// First address of the mapping.
    pub start: Va,
    /// One past its last address.
    pub end: Va,
    /// The `mm_struct` it belongs to.
    pub mm: Va,
    /// `vm_flags` (`VM_READ`, ...).
    pub flags: u64,
    /// Offset into the file, in pages.
    pub pgoff: u64,
    /// The mapped `struct file`, if file-backed.
    pub file: Option<Va>,
    /// `vm_ops`, if any.
    pub ops: Option<Va>,
    /// `vm_private_data` (for special mappings, a `vm_special_mapping`).
    pub private_data: Va,
}

impl Vma {
    /// Reads and decodes the `vm_area_struct` at `addr`. A mapping whose end is not above its
    /// start, or whose bounds are not page-aligned, is corrupt.
    pub fn read(
        mem: &VirtualMemory<'_>,
        offsets: &VmaOffsets,
        addr: Va,
    ) -> Result<Vma, LinuxError> {
        let b = StructBuf::read(mem, "vm_area_struct", addr, offsets.size)?;
        let nonzero = |v: Va| (v.raw() != 0).then_some(v);
        let vma = Vma {
            addr,
            start: b.va(offsets.start)?,
            end: b.va(offsets.end)?,
            mm: b.va(offsets.mm)?,
            flags: b.get(offsets.flags)?,
            pgoff: b.get(offsets.pgoff)?,
            file: nonzero(b.va(offsets.file)?),
            ops: nonzero(b.va(offsets.ops)?),
            private_data: b.va(offsets.private_data)?,
        };
        let page = 1u64 << PAGE_SHIFT;
        if vma.end <= vma.start || vma.start.raw() % page != 0 || vma.end.raw() % page != 0 {
            return Err(b.corrupt(format!(
                "mapping {:#x}-{:#x} is empty or not page-aligned",
                vma.start, vma.end
            )));
        }
        Ok(vma)
    }

    /// The permissions as `/proc/PID/maps` prints them: `r`, `w`, `x` or `-`, then `s`
    /// (`VM_MAYSHARE`) or `p`.
    pub fn perms(&self) -> String {
        let bit = |flag: u64, c: char, otherwise: char| {
            if self.flags & flag != 0 {
                c
            } else {
                otherwise
            }
        };
        [
            bit(VM_READ, 'r', '-'),
            bit(VM_WRITE, 'w', '-'),
            bit(VM_EXEC, 'x', '-'),
            bit(VM_MAYSHARE, 's', 'p'),
        ]
        .iter()
        .collect()
    }

    /// The file offset in bytes, as `/proc/PID/maps` prints it: `vm_pgoff << PAGE_SHIFT` for
    /// a file mapping (bits shifted out are lost, as in the kernel's `loff_t` shift), 0
    /// otherwise (anonymous mappings keep their address in `vm_pgoff`).
    pub fn file_offset(&self) -> u64 {
        if self.file.is_some() {
            self.pgoff << PAGE_SHIFT
        } else {
            0
        }
    }

    /// Whether `addr` lies in `[start, end]` inclusively at both ends, the kernel's test for
    /// the initial stack (`vma_is_initial_stack`).
    pub fn touches(&self, addr: Va) -> bool {
        self.start <= addr && addr <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(flags: u64, file: bool) -> Vma {
        Vma {
            addr: Va::new(0),
            start: Va::new(0x1000),
            end: Va::new(0x2000),
            mm: Va::new(0),
            flags,
            pgoff: 0x1_0000_0000_0001,
            file: file.then_some(Va::new(0xffff_8880_0000_0000)),
            ops: None,
            private_data: Va::new(0),
        }
    }

    #[test]
    fn perms_follow_proc_maps() {
        assert_eq!(vma(VM_READ | VM_EXEC, false).perms(), "r-xp");
        assert_eq!(vma(VM_READ | VM_WRITE | VM_MAYSHARE, false).perms(), "rw-s");
        assert_eq!(vma(0, false).perms(), "---p");
    }

    #[test]
    fn offset_only_for_files_and_wraps_like_loff_t() {
        assert_eq!(vma(0, false).file_offset(), 0);
        assert_eq!(vma(0, true).file_offset(), 0x1000_0000_1000);
        let mut v = vma(0, true);
        v.pgoff = u64::MAX;
        assert_eq!(v.file_offset(), u64::MAX << 12);
    }

    #[test]
    fn scalars_read_widths_and_bitfields() {
        let buf = [0x11, 0x22, 0x33, 0x44, 0xe5, 0, 0, 0];
        let s = |offset, size, bits| Scalar { offset, size, bits };
        assert_eq!(s(0, 2, None).get(&buf), Some(0x2211));
        assert_eq!(s(4, 1, Some((5, 3))).get(&buf), Some(7));
        assert_eq!(s(4, 1, Some((0, 5))).get(&buf), Some(5));
        assert_eq!(s(4, 8, None).get(&buf), None);
        assert_eq!(s(u64::MAX, 8, None).get(&buf), None);
    }
}
