//! Reading guest virtual memory the way Windows means it: through the hardware walk first,
//! then, for a last-level entry whose present bit is clear, through Windows' software PTE
//! states (a transition page is resident; a prototype PTE points to the real one; a pagefile
//! page is reported as paged out, never read as zeros).

use vmi_core::{
    AddressSpace, MemoryError, Pa, PageSize, PhysicalMemoryExt, Session, TranslationError, Va,
    VirtualMemory,
};

use crate::comps::mmpte::{clamp_pfn, PteFormats, PteState};
use crate::WindowsError;

/// Guest memory an analysis reads: a kernel view or a process view.
pub trait GuestMemory {
    /// Fills `buf` from `va`, or fails naming why.
    fn read_exact(&self, va: Va, buf: &mut [u8]) -> Result<(), WindowsError>;

    /// Reads as much of `buf` as is readable from `va`; fails only if not even one byte is.
    fn read(&self, va: Va, buf: &mut [u8]) -> Result<usize, WindowsError> {
        // Page by page, so a hole after the first page stops the read without failing it.
        let mut done = 0usize;
        while done < buf.len() {
            let at = va.checked_add(done as u64).ok_or(WindowsError::Memory(
                MemoryError::Translation(TranslationError::NonCanonical {
                    va,
                    mode: vmi_core::PagingMode::Ia32e4,
                }),
            ))?;
            let room = (4096 - at.page_offset(PageSize::Size4K)) as usize;
            let n = room.min(buf.len() - done);
            match self.read_exact(at, &mut buf[done..done + n]) {
                Ok(()) => done += n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(done)
    }

    /// A little-endian u64.
    fn read_u64(&self, va: Va) -> Result<u64, WindowsError> {
        let mut b = [0u8; 8];
        self.read_exact(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A little-endian u32.
    fn read_u32(&self, va: Va) -> Result<u32, WindowsError> {
        let mut b = [0u8; 4];
        self.read_exact(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A pointer.
    fn read_va(&self, va: Va) -> Result<Va, WindowsError> {
        self.read_u64(va).map(Va::new)
    }
}

impl GuestMemory for VirtualMemory<'_> {
    fn read_exact(&self, va: Va, buf: &mut [u8]) -> Result<(), WindowsError> {
        VirtualMemory::read_exact(self, va, buf).map_err(WindowsError::Memory)
    }
}

/// A process's (or the kernel's) address space read with Windows' PTE states.
pub struct WindowsMemory<'s> {
    session: &'s Session,
    space: AddressSpace,
    kernel: AddressSpace,
    formats: PteFormats,
}

/// Bits 12–51 of a hardware entry.
const FRAME: u64 = 0x000F_FFFF_FFFF_F000;

impl<'s> WindowsMemory<'s> {
    /// A view of `space`; prototype PTEs are read through `kernel`.
    pub fn new(
        session: &'s Session,
        space: AddressSpace,
        kernel: AddressSpace,
        formats: PteFormats,
    ) -> Self {
        Self {
            session,
            space,
            kernel,
            formats,
        }
    }

    fn memory_end(&self) -> u64 {
        self.session
            .memory()
            .memory_map()
            .iter()
            .map(|r| r.end_raw())
            .max()
            .unwrap_or(0)
    }

    /// The address space read.
    pub fn space(&self) -> AddressSpace {
        self.space
    }

    /// Where `va` is in physical memory, by the hardware walk, else by the software state of
    /// the entry that stopped it.
    pub fn translate(&self, va: Va) -> Result<Pa, WindowsError> {
        match self.session.translate(self.space, va) {
            Ok(t) => Ok(t.pa),
            Err(TranslationError::NotPresent { level, entry, .. }) if level.0 == 1 => {
                self.software(va, entry, 0)
            }
            Err(e) => Err(WindowsError::Memory(MemoryError::Translation(e))),
        }
    }

    fn software(&self, va: Va, pte: u64, depth: u8) -> Result<Pa, WindowsError> {
        let off = va.page_offset(PageSize::Size4K);
        let frame = |pfn: u64| Pa::new((pfn << 12) & FRAME | off);
        match self.formats.state(pte) {
            PteState::Valid(pfn) => Ok(frame(pfn)),
            PteState::Transition(pfn) => Ok(frame(clamp_pfn(pfn, self.memory_end()))),
            PteState::Prototype(proto) if depth == 0 => {
                let kernel = self.session.virtual_memory(self.kernel);
                let real = kernel
                    .read_u64(Va::new(proto))
                    .map_err(WindowsError::Memory)?;
                self.software(va, real, 1)
            }
            state => Err(WindowsError::PagedOut {
                va,
                state: state.name(),
                pte,
            }),
        }
    }
}

impl GuestMemory for WindowsMemory<'_> {
    fn read_exact(&self, va: Va, buf: &mut [u8]) -> Result<(), WindowsError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = va.checked_add(done as u64).ok_or(WindowsError::Memory(
                MemoryError::Translation(TranslationError::NonCanonical {
                    va,
                    mode: self.space.mode,
                }),
            ))?;
            let room = (4096 - at.page_offset(PageSize::Size4K)) as usize;
            let n = room.min(buf.len() - done);
            let pa = self.translate(at)?;
            self.session
                .memory()
                .read(pa, &mut buf[done..done + n])
                .map_err(WindowsError::Memory)?;
            done += n;
        }
        Ok(())
    }
}

/// Reads one physical u64 (for callers holding a frame).
pub fn read_phys_u64(session: &Session, pa: Pa) -> Result<u64, WindowsError> {
    session.memory().read_u64(pa).map_err(WindowsError::Memory)
}
