//! `struct mm_struct`: a process's address space: its page-table root and where exec put the
//! argument and environment strings.
//!
//! Offsets come from the profile, resolved once ([`MmOffsets::resolve`]). The lengths of the
//! argument and environment areas are guest data: [`UserRange::checked_len`] refuses what no
//! exec can produce before anything is allocated.

use vmi_core::{AddressSpace, Pa, Profile, ProfileError, Session, Va, VirtualMemory};

use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;

/// The largest argument or environment area read: exec copies at most 3/4 of `_STK_LIM`
/// (6 MiB) of argument and environment strings together (`bprm_stack_limits`), so a larger
/// area is corrupt (or was set by `prctl(PR_SET_MM_ARG_*)`, which vmi does not follow that far).
pub const MAX_USER_AREA_BYTES: u64 = 6 << 20;

/// Offsets of the `mm_struct` fields the analyses read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmOffsets {
    /// `pgd`: kernel virtual address of the top-level page table.
    pub pgd: u64,
    /// `arg_start`.
    pub arg_start: u64,
    /// `arg_end`.
    pub arg_end: u64,
    /// `env_start`.
    pub env_start: u64,
    /// `env_end`.
    pub env_end: u64,
}

impl MmOffsets {
    /// Resolves the offsets from `profile`.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        let f = |name: &str| profile.field_offset("mm_struct", name);
        Ok(Self {
            pgd: f("pgd")?,
            arg_start: f("arg_start")?,
            arg_end: f("arg_end")?,
            env_start: f("env_start")?,
            env_end: f("env_end")?,
        })
    }
}

/// A range `[start, end)` of user virtual memory named by an `mm_struct`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRange {
    /// The `mm_struct` it came from.
    pub mm: Va,
    /// First byte.
    pub start: Va,
    /// One past the last byte.
    pub end: Va,
}

impl UserRange {
    /// The length, or [`LinuxError::Corrupt`] if the range is reversed or longer than `cap`.
    pub fn checked_len(&self, cap: u64) -> Result<usize, LinuxError> {
        let corrupt = |reason: String| LinuxError::Corrupt {
            what: "mm_struct",
            at: self.mm,
            reason,
        };
        let len = self.end.offset_from(self.start).ok_or_else(|| {
            corrupt(format!(
                "area end {} precedes its start {}",
                self.end, self.start
            ))
        })?;
        if len > cap {
            return Err(corrupt(format!(
                "area {}..{} is {len:#x} bytes, more than the {cap:#x} an exec can set up",
                self.start, self.end
            )));
        }
        usize::try_from(len).map_err(|_| corrupt(format!("area length {len:#x} overflows")))
    }
}

/// Reads `mm_struct`s through a kernel address space.
#[derive(Clone, Copy)]
pub struct MmReader<'a> {
    mem: VirtualMemory<'a>,
    offsets: &'a MmOffsets,
}

impl<'a> MmReader<'a> {
    /// A reader over `mem` (kernel virtual memory).
    pub fn new(mem: VirtualMemory<'a>, offsets: &'a MmOffsets) -> Self {
        Self { mem, offsets }
    }

    fn word(&self, mm: Va, offset: u64) -> Result<u64, LinuxError> {
        let at = mm.checked_add(offset).ok_or_else(|| LinuxError::Corrupt {
            what: "mm_struct",
            at: mm,
            reason: format!("field offset {offset:#x} runs past the end of the address space"),
        })?;
        Ok(self.mem.read_u64(at)?)
    }

    /// `mm->pgd`: the kernel virtual address (in the direct map) of the top-level page table.
    pub fn pgd(&self, mm: Va) -> Result<Va, LinuxError> {
        let pgd = Va::new(self.word(mm, self.offsets.pgd)?);
        if !is_kernel_pointer(self.mem.space().mode, pgd) {
            return Err(LinuxError::Corrupt {
                what: "mm_struct",
                at: mm,
                reason: format!("pgd {pgd} is not a kernel address"),
            });
        }
        Ok(pgd)
    }

    /// The physical address of `mm`'s top-level page table: `mm->pgd` translated through the
    /// kernel address space.
    ///
    /// With page-table isolation (PTI) `mm->pgd` is the *kernel* half of an 8 KiB pair: it maps
    /// user and kernel space, while the page after it (the user PGD) maps user space and the
    /// entry trampoline only. This returns the kernel PGD, which reads all of user memory; the
    /// CR3 of a vCPU running the process in user mode shows the user PGD (this address +
    /// `0x1000`, plus PCID bits).
    pub fn dtb(&self, mm: Va) -> Result<Pa, LinuxError> {
        let pgd = self.pgd(mm)?;
        let t = self
            .mem
            .architecture()
            .translate(self.mem.physical(), self.mem.space(), pgd)
            .map_err(vmi_core::MemoryError::from)?;
        if !t.pa.is_aligned(vmi_core::PageSize::Size4K) {
            return Err(LinuxError::Corrupt {
                what: "mm_struct",
                at: mm,
                reason: format!("pgd {pgd} translates to {}, not a page boundary", t.pa),
            });
        }
        Ok(t.pa)
    }

    /// The address space of `mm`: its [`MmReader::dtb`], walked in the kernel's paging mode.
    pub fn address_space(&self, mm: Va) -> Result<AddressSpace, LinuxError> {
        Ok(AddressSpace {
            root: self.dtb(mm)?,
            mode: self.mem.space().mode,
        })
    }

    fn range(&self, mm: Va, start: u64, end: u64) -> Result<UserRange, LinuxError> {
        Ok(UserRange {
            mm,
            start: Va::new(self.word(mm, start)?),
            end: Va::new(self.word(mm, end)?),
        })
    }

    /// `[mm->arg_start, mm->arg_end)`: the NUL-separated arguments exec copied.
    pub fn args(&self, mm: Va) -> Result<UserRange, LinuxError> {
        self.range(mm, self.offsets.arg_start, self.offsets.arg_end)
    }

    /// `[mm->env_start, mm->env_end)`: the NUL-separated environment exec copied.
    pub fn env(&self, mm: Va) -> Result<UserRange, LinuxError> {
        self.range(mm, self.offsets.env_start, self.offsets.env_end)
    }
}

/// Reads `range` through the process address space `space`: at most
/// [`MAX_USER_AREA_BYTES`], checked before the buffer is allocated. Stops early at the first
/// unmapped page (the bytes before it are returned), like `/proc/PID/cmdline`.
pub fn read_user_range(
    session: &Session,
    space: AddressSpace,
    range: UserRange,
) -> Result<Vec<u8>, LinuxError> {
    let len = range.checked_len(MAX_USER_AREA_BYTES)?;
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    let n = session.virtual_memory(space).read(range.start, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, end: u64) -> UserRange {
        UserRange {
            mm: Va::new(0xffff_8880_0000_0000),
            start: Va::new(start),
            end: Va::new(end),
        }
    }

    #[test]
    fn lengths_are_checked() {
        assert_eq!(range(0x1000, 0x1010).checked_len(0x100).unwrap(), 0x10);
        assert_eq!(range(0x1000, 0x1000).checked_len(0).unwrap(), 0);
        let e = range(0x1010, 0x1000).checked_len(0x100).unwrap_err();
        assert!(e.to_string().contains("precedes"), "{e}");
        let e = range(0, 1 << 30)
            .checked_len(MAX_USER_AREA_BYTES)
            .unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        assert!(range(0, u64::MAX).checked_len(u64::MAX).is_ok());
    }
}
