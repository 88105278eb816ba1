//! `struct vm_area_struct`: one mapping of a process's address space.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{struct_size, Scalar, StructBuf};
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
        assert_eq!(vma(0, true).file_offset(), 0x1000_0000_0000_1000);
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
