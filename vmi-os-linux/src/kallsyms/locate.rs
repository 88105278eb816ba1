//! Finding the kernel image of an x86-64 Linux guest, its KASLR slides and its banner.
//!
//! The kernel half of every address space maps the kernel image at `__START_KERNEL_map`
//! (0xffffffff80000000) plus a 2 MiB-aligned KASLR offset, within 1 GiB. At boot
//! `cleanup_highmap()` clears the mappings below `_text`, so the first mapped 2 MiB page of that
//! range is `_text`. Translating one address per 2 MiB step (512 walks) finds it, along with
//! the permissions of each step: after `mark_rodata_ro()` the read-only, non-executable run
//! after the text is `.rodata`, which holds `linux_banner`, the kallsyms tables and BTF. That
//! run is read once into a buffer ([`ImageRegion`]) for the banner search and the decoders.

use std::ops::Range;

use vmi_core::{AddressSpace, Pa, Session, Translation, Va, VirtualMemory};

use super::banner::{self, find_banner};
use super::error::KallsymsError;
use super::symbols::Kallsyms;

/// `__START_KERNEL_map`: where the kernel image mapping starts on x86-64.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// The size of the kernel image mapping with KASLR (`KERNEL_IMAGE_SIZE`).
pub const KERNEL_IMAGE_SIZE: u64 = 1 << 30;
/// Link-time address of `_text` (`__START_KERNEL` with `CONFIG_PHYSICAL_START=0x1000000`).
pub const DEFAULT_TEXT: u64 = 0xffff_ffff_8100_0000;
/// Default physical load address of `_text` (`CONFIG_PHYSICAL_START`).
pub const DEFAULT_PHYSICAL_START: u64 = 0x100_0000;
/// Granularity of the image's placement (`CONFIG_PHYSICAL_ALIGN`, one large page).
const STEP: u64 = 2 << 20;
/// Cap on the bytes read into a region, far above any kernel's `.rodata` (tens of MiB).
const MAX_REGION_BYTES: u64 = 256 << 20;
/// The 4 KiB page size.
const PAGE: u64 = 4096;

/// A copy of part of the kernel image, read once from guest memory. Unmapped pages read as
/// zeros.
#[derive(Debug, Clone)]
pub struct ImageRegion {
    base: Va,
    bytes: Vec<u8>,
}

impl ImageRegion {
    /// Wraps bytes copied from guest address `base`.
    pub fn new(base: Va, bytes: Vec<u8>) -> Self {
        Self { base, bytes }
    }

    /// The guest address of the first byte.
    pub fn base(&self) -> Va {
        self.base
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes of `[va, va + len)` if the region holds them all.
    pub fn get(&self, va: Va, len: usize) -> Option<&[u8]> {
        let off = usize::try_from(va.offset_from(self.base)?).ok()?;
        self.bytes.get(off..off.checked_add(len)?)
    }

    /// The guest range covered.
    pub fn range(&self) -> Range<u64> {
        self.base.raw()..self.base.raw().saturating_add(self.bytes.len() as u64)
    }

    /// Gives the bytes back.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The running kernel's image: where it is, how far KASLR moved it, its banner, and a copy of
/// its read-only data.
#[derive(Debug, Clone)]
pub struct KernelImage {
    space: AddressSpace,
    text: Va,
    text_pa: Pa,
    end: Va,
    banner: String,
    banner_va: Va,
    region: ImageRegion,
}

impl KernelImage {
    /// Finds the kernel in the address spaces [`crate::kernel_space::search_spaces`] gives:
    /// VMCOREINFO's, the vCPUs' (each with its PTI kernel half), or, for a target without
    /// registers, the one found in physical memory.
    pub fn locate(session: &Session) -> Result<KernelImage, crate::LinuxError> {
        let (spaces, _) = crate::kernel_space::search_spaces(session)?;
        Ok(Self::locate_in_spaces(session, &spaces)?)
    }

    /// Finds the kernel in the first of `spaces` that maps it.
    pub fn locate_in_spaces(
        session: &Session,
        spaces: &[AddressSpace],
    ) -> Result<KernelImage, KallsymsError> {
        let mut first_error = None;
        for &space in spaces {
            match Self::locate_in(session.virtual_memory(space)) {
                Ok(image) => return Ok(image),
                // Another address space may map the kernel (a PTI user PGD maps almost none
                // of it); anything else is final.
                Err(
                    KallsymsError::KernelNotMapped { .. } | KallsymsError::BannerNotFound { .. },
                ) if first_error.is_none() => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(KallsymsError::KernelNotMapped {
            spaces: spaces.len(),
        }))
    }

    /// Finds the kernel in the address space `vm` reads.
    pub fn locate_in(vm: VirtualMemory<'_>) -> Result<KernelImage, KallsymsError> {
        let steps = (KERNEL_IMAGE_SIZE / STEP) as usize;
        let chunks: Vec<Option<Translation>> = (0..steps)
            .map(|k| {
                let va = Va::new(START_KERNEL_MAP + k as u64 * STEP);
                vm.architecture()
                    .translate(vm.physical(), vm.space(), va)
                    .ok()
            })
            .collect();
        let first = chunks
            .iter()
            .position(Option::is_some)
            .ok_or(KallsymsError::KernelNotMapped { spaces: 1 })?;
        let last = chunks.iter().rposition(Option::is_some).unwrap_or(first);
        let va_of = |k: usize| START_KERNEL_MAP + k as u64 * STEP;
        let text = Va::new(va_of(first));
        let text_pa = chunks[first].map_or(Pa::new(0), |t| t.pa);
        let end = Va::new(va_of(last) + STEP);

        // .rodata: the first run of read-only, non-executable steps after _text.
        let read_only =
            |t: &Option<Translation>| t.is_some_and(|t| !t.perms.executable && !t.perms.writable);
        let rodata = chunks[first..]
            .iter()
            .position(read_only)
            .map(|rel| first + rel)
            .map(|start| {
                let len = chunks[start..].iter().take_while(|t| read_only(t)).count();
                (va_of(start), len as u64 * STEP)
            });

        let whole = (text.raw(), (end.raw() - text.raw()).min(MAX_REGION_BYTES));
        let mut scanned = 0u64;
        for (start, len) in rodata.into_iter().chain([whole]) {
            let region = read_region(&vm, Va::new(start), len.min(MAX_REGION_BYTES));
            scanned += region.bytes.len() as u64;
            if let Some((off, text_str)) = find_banner(&region.bytes) {
                let banner = text_str.to_owned();
                return Ok(KernelImage {
                    space: vm.space(),
                    text,
                    text_pa,
                    end,
                    banner,
                    banner_va: Va::new(start + off as u64),
                    region,
                });
            }
        }
        Err(KallsymsError::BannerNotFound {
            scanned_bytes: scanned,
        })
    }

    /// The address space the kernel was found in.
    pub fn space(&self) -> AddressSpace {
        self.space
    }

    /// The runtime address of `_text` (the first mapped 2 MiB of the image).
    pub fn text(&self) -> Va {
        self.text
    }

    /// The physical address of `_text`.
    pub fn text_pa(&self) -> Pa {
        self.text_pa
    }

    /// One past the last mapped 2 MiB step of the image (`.bss` and `.brk` included).
    pub fn end(&self) -> Va {
        self.end
    }

    /// The KASLR virtual slide: runtime `_text` minus its link-time address 0xffffffff81000000.
    /// Link-time (System.map) address = runtime address - slide.
    pub fn virtual_slide(&self) -> i64 {
        self.text.raw().wrapping_sub(DEFAULT_TEXT) as i64
    }

    /// The KASLR physical slide: the physical address of `_text` minus 0x1000000.
    pub fn physical_slide(&self) -> i64 {
        self.text_pa.raw().wrapping_sub(DEFAULT_PHYSICAL_START) as i64
    }

    /// `linux_banner` without its final newline.
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// The kernel release from the banner (`6.1.0-56-amd64`).
    pub fn release(&self) -> &str {
        banner::release(&self.banner).unwrap_or("")
    }

    /// The runtime address of `linux_banner`.
    pub fn banner_va(&self) -> Va {
        self.banner_va
    }

    /// The copy of the image the banner was found in: `.rodata` when the page permissions
    /// show it, else the whole image (capped at 256 MiB).
    pub fn region(&self) -> &ImageRegion {
        &self.region
    }

    /// Gives the region away (to keep the facts without holding the copy).
    pub fn take_region(&mut self) -> ImageRegion {
        let base = self.region.base;
        std::mem::replace(&mut self.region, ImageRegion::new(base, Vec::new()))
    }

    /// Decodes the kallsyms tables in [`KernelImage::region`].
    pub fn kallsyms(&self) -> Result<Kallsyms, KallsymsError> {
        Kallsyms::find(self.region.bytes(), self.region.base())
    }
}

/// Copies `[start, start + len)` of `vm`, large page by large page where it can; pages that do
/// not translate or read are left as zeros.
pub fn read_region(vm: &VirtualMemory<'_>, start: Va, len: u64) -> ImageRegion {
    let len = len.min(MAX_REGION_BYTES) as usize;
    let mut bytes = vec![0u8; len];
    let mut off = 0usize;
    while off < len {
        let Some(va) = start.checked_add(off as u64) else {
            break;
        };
        let to_page_end = (PAGE - va.page_offset(vmi_core::PageSize::Size4K)) as usize;
        match vm.architecture().translate(vm.physical(), vm.space(), va) {
            Ok(t) => {
                let n = (t.bytes_to_page_end() as usize).min(len - off);
                let buf = &mut bytes[off..off + n];
                if vm.physical().read(t.pa, buf).is_err() {
                    // Part of a large page may be outside the memory map: retry by 4 KiB.
                    read_small_pages(vm, va, buf);
                }
                off += n;
            }
            Err(_) => off += to_page_end.min(len - off),
        }
    }
    ImageRegion { base: start, bytes }
}

/// Reads `buf` from `va` 4 KiB page by page, leaving unreadable pages as zeros.
fn read_small_pages(vm: &VirtualMemory<'_>, va: Va, buf: &mut [u8]) {
    let mut off = 0usize;
    while off < buf.len() {
        let Some(cur) = va.checked_add(off as u64) else {
            return;
        };
        let n =
            ((PAGE - cur.page_offset(vmi_core::PageSize::Size4K)) as usize).min(buf.len() - off);
        let piece = &mut buf[off..off + n];
        if vm.read_exact(cur, piece).is_err() {
            piece.fill(0);
        }
        off += n;
    }
}
