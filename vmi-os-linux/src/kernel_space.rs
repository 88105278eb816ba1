//! The kernel's own address space: the page tables rooted at `init_top_pgt` (`swapper_pg_dir`),
//! found from vCPU registers when the target has them, from the guest's VMCOREINFO note, or
//! from physical memory alone (raw images, LiME and AVML captures).
//!
//! Any address space of a guest maps the kernel half, but not every CR3 a dump catches is one
//! to read the kernel through: with page-table isolation (PTI) a vCPU in user mode runs on the
//! *user* PGD, which maps only the entry trampoline. Kernel PGDs are allocated as 8 KiB-aligned
//! pairs, the user PGD being the odd page ([`pti_kernel_half`], the one place that rule is
//! written). Once the kernel is found, its symbols name `init_top_pgt`, and analyses read
//! kernel memory through that ([`own_space`]): it is the same in every boot state and outlives
//! any process.
//!
//! Without registers the kernel is found in physical memory: the image is physically
//! contiguous and mapped with 2 MiB pages, so its `linux_banner` (found by its text) and its
//! kallsyms tables (found by their shape next to it) give the physical offset of every image
//! symbol, `init_top_pgt` among them. Which of 4- or 5-level paging the root is walked with is
//! the one that translates the banner back to where it was found ([`scan_physical`]).

use std::fmt;

use serde::Serialize;
use vmi_core::{AddressSpace, Pa, PageSize, PagingMode, Session, SessionError, Va};

use crate::error::LinuxError;
use crate::kallsyms::banner::{banner_at_start, BANNER_PREFIX};
use crate::kallsyms::locate::START_KERNEL_MAP;
use crate::kallsyms::{Kallsyms, KallsymsError};

/// Where the kernel's page-table root came from, as `vmi info` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RootSource {
    /// `init_top_pgt`, translated in the address space of a vCPU.
    InitTopPgt,
    /// A vCPU's CR3 (its kernel half under PTI); the profile named no `init_top_pgt`.
    VcpuCr3,
    /// `SYMBOL(init_top_pgt)` and `NUMBER(phys_base)` of the guest's VMCOREINFO note.
    Vmcoreinfo,
    /// `init_top_pgt` located through the kernel image found in physical memory.
    PhysicalScan,
}

impl RootSource {
    /// How `vmi info` names it.
    pub fn describe(self) -> &'static str {
        match self {
            RootSource::InitTopPgt => "init_top_pgt, translated through a vCPU's CR3",
            RootSource::VcpuCr3 => "a vCPU's CR3 (kernel half of a PTI pair if odd)",
            RootSource::Vmcoreinfo => "init_top_pgt and phys_base from VMCOREINFO",
            RootSource::PhysicalScan => {
                "init_top_pgt, located through the kernel image found in physical memory"
            }
        }
    }
}

impl fmt::Display for RootSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The kernel half of a PTI pair whose user half is `space`: the even page below an odd root.
/// `None` when the root is an even page, which is either a kernel PGD already or a guest
/// without PTI (whose PGDs are single pages and may sit anywhere).
pub fn pti_kernel_half(space: AddressSpace) -> Option<AddressSpace> {
    let root = space.root.raw();
    (matches!(space.mode, PagingMode::Ia32e4 | PagingMode::Ia32e5) && root & 0x1000 != 0).then(
        || AddressSpace {
            root: Pa::new(root & !0x1000),
            mode: space.mode,
        },
    )
}

/// The address spaces the vCPUs give, in vCPU order, each followed by its PTI kernel half when
/// it has one: where to look for the kernel when the target has registers. Fails only when no
/// vCPU's registers can be read.
pub fn vcpu_spaces(session: &Session) -> Result<Vec<AddressSpace>, SessionError> {
    let mut spaces = Vec::new();
    let mut first_error = None;
    for i in 0..session.vcpu_count().max(1) {
        match session.vcpu_address_space(i) {
            Ok(space) => {
                for s in std::iter::once(space).chain(pti_kernel_half(space)) {
                    if !spaces.contains(&s) {
                        spaces.push(s);
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if spaces.is_empty() => Err(e),
        _ => Ok(spaces),
    }
}

/// Where to look for the kernel, and how those spaces came about: VMCOREINFO's
/// `init_top_pgt` when the target carries the note and it walks; else every vCPU's space (with
/// PTI kernel halves); else, for a target without registers, the space found in physical
/// memory.
pub fn search_spaces(session: &Session) -> Result<(Vec<AddressSpace>, RootSource), LinuxError> {
    if let Some(space) = session
        .vmcoreinfo()
        .and_then(|v| from_vmcoreinfo(session, &Vmcoreinfo(v)))
    {
        return Ok((vec![space], RootSource::Vmcoreinfo));
    }
    if session.vcpu_count() == 0 {
        return Ok((vec![scan_physical(session)?], RootSource::PhysicalScan));
    }
    match vcpu_spaces(session) {
        Ok(spaces) => Ok((spaces, RootSource::VcpuCr3)),
        Err(source) => Err(KallsymsError::NoAddressSpace { source }.into()),
    }
}

/// The space rooted at `init_top_pgt` (run-time address `init_top_pgt`), if it maps the kernel
/// as `found_in` does: the banner at `banner` translates to the same physical address in both.
pub fn own_space(
    session: &Session,
    found_in: AddressSpace,
    init_top_pgt: Va,
    banner: Va,
) -> Option<AddressSpace> {
    let root = session.translate(found_in, init_top_pgt).ok()?.pa;
    if !root.is_aligned(PageSize::Size4K) {
        return None;
    }
    let own = AddressSpace {
        root,
        mode: found_in.mode,
    };
    let expected = session.translate(found_in, banner).ok()?.pa;
    (session.translate(own, banner).ok()?.pa == expected).then_some(own)
}

/// The space rooted at `init_top_pgt` as VMCOREINFO describes it: `SYMBOL(init_top_pgt)` is its
/// run-time address, `NUMBER(phys_base)` the physical address the image's link address 0 maps
/// to, `NUMBER(pgtable_l5_enabled)` the paging depth (4-level when absent). Checked by
/// translating `SYMBOL(init_top_pgt)` itself: the root must map its own page.
pub fn from_vmcoreinfo(session: &Session, vmcoreinfo: &Vmcoreinfo<'_>) -> Option<AddressSpace> {
    let va = vmcoreinfo.symbol("init_top_pgt")?;
    let phys_base = vmcoreinfo.number("phys_base")?;
    // phys_base is printed signed: with KASLR the image may sit physically below its
    // slid virtual offset. The translation check below catches a wrong sum.
    let root = va
        .checked_sub(START_KERNEL_MAP)?
        .wrapping_add(phys_base as u64);
    let mode = match vmcoreinfo.number("pgtable_l5_enabled") {
        Some(1) => PagingMode::Ia32e5,
        _ => PagingMode::Ia32e4,
    };
    let space = AddressSpace {
        root: Pa::new(root),
        mode,
    };
    (session.translate(space, Va::new(va)).ok()?.pa == space.root).then_some(space)
}

/// The `KEY=VALUE` lines of a VMCOREINFO note (`SYMBOL(name)=hex`, `NUMBER(name)=decimal`,
/// `OSRELEASE=...`, `KERNELOFFSET=hex`).
#[derive(Debug, Clone, Copy)]
pub struct Vmcoreinfo<'a>(pub &'a str);

impl<'a> Vmcoreinfo<'a> {
    /// The value of `key`, if a line sets it.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k == key).then_some(v.trim())
        })
    }

    /// `SYMBOL(name)`: a run-time address, in hex.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        u64::from_str_radix(self.get(&format!("SYMBOL({name})"))?, 16).ok()
    }

    /// `NUMBER(name)`: a signed decimal.
    pub fn number(&self, name: &str) -> Option<i64> {
        self.get(&format!("NUMBER({name})"))?.parse().ok()
    }

    /// `KERNELOFFSET`: the KASLR virtual slide, in hex.
    pub fn kernel_offset(&self) -> Option<u64> {
        u64::from_str_radix(self.get("KERNELOFFSET")?, 16).ok()
    }

    /// `OSRELEASE`: `uname -r`.
    pub fn os_release(&self) -> Option<&'a str> {
        self.get("OSRELEASE")
    }

    /// Compares the note with what discovery found of `kernel`: the release, the KASLR slide
    /// and the symbols the note names that the profile has. Says what agreed, or what did not.
    pub fn check(&self, kernel: &crate::Kernel, session: &Session) -> String {
        let mut agreed = Vec::new();
        let mut differ = Vec::new();
        let release = crate::kallsyms::banner::release(kernel.banner());
        match (self.os_release(), release) {
            (Some(a), Some(b)) if a == b => agreed.push("OSRELEASE".to_owned()),
            (Some(a), b) => differ.push(format!("OSRELEASE {a} vs banner {}", b.unwrap_or("?"))),
            (None, _) => {}
        }
        match self.kernel_offset() {
            Some(o) if o == kernel.virtual_slide() => agreed.push("KERNELOFFSET".to_owned()),
            Some(o) => differ.push(format!(
                "KERNELOFFSET {o:#x} vs slide {:#x}",
                kernel.virtual_slide()
            )),
            None => {}
        }
        for line in self.0.lines() {
            let Some(name) = line
                .strip_prefix("SYMBOL(")
                .and_then(|l| l.split_once(")="))
                .map(|(n, _)| n)
            else {
                continue;
            };
            let (Some(note), Ok(found)) = (self.symbol(name), kernel.symbol(name)) else {
                continue;
            };
            // Arrays behind a pointer (mem_section) are noted by the pointer's value.
            let pointee = kernel.memory(session).read_u64(found).ok();
            if note == found.raw() || Some(note) == pointee {
                agreed.push(format!("SYMBOL({name})"));
            } else {
                differ.push(format!("SYMBOL({name}) {note:#x} vs {found}"));
            }
        }
        if differ.is_empty() {
            format!("agrees: {}", agreed.join(", "))
        } else {
            format!("DISAGREES: {}", differ.join("; "))
        }
    }
}

/// Whether `va` is in the kernel half of an address space of `mode`: the upper canonical half
/// in IA-32e paging (from `0xffff_8000_0000_0000` with 4 levels, `0xff00_0000_0000_0000` with 5).
pub fn is_kernel_half(mode: PagingMode, va: Va) -> bool {
    match mode {
        PagingMode::Ia32e4 => va.raw() >= 0xffff_8000_0000_0000,
        PagingMode::Ia32e5 => va.raw() >= 0xff00_0000_0000_0000,
        _ => false,
    }
}

/// How far past the 2 MiB boundary below a banner the kallsyms tables are looked for: the
/// kallsyms object is linked last into `.rodata`, after `init/version.o`'s banner, and the
/// whole of `.rodata` is 9 to 14 MiB in the kernels seen (Debian 6.1, 6.12).
const SCAN_WINDOW: u64 = 32 << 20;
/// Banners tried before giving up: copies of the text in page cache or log buffers come and go,
/// the kernel's own is one of the first few.
const MAX_CANDIDATES: usize = 64;
/// Physical memory is searched this much at a time.
const CHUNK: usize = 4 << 20;

/// Finds the kernel's address space from physical memory alone (see the module docs). Memory
/// is searched in address order for the banner text, and the first banner next to kallsyms
/// tables that name it is the kernel's: most dumps are read only up to the kernel image.
pub fn scan_physical(session: &Session) -> Result<AddressSpace, LinuxError> {
    let mem = session.memory();
    let finder = memchr::memmem::Finder::new(BANNER_PREFIX);
    let overlap = BANNER_PREFIX.len() - 1;
    let mut buf = vec![0u8; CHUNK + overlap];
    let mut scanned = 0u64;
    let mut banners = 0usize;
    let mut tried_windows: Vec<u64> = Vec::new();
    let mut last_error = None;
    for region in mem.memory_map() {
        let mut at = region.start.raw();
        let end = region.end_raw();
        while at < end {
            let n = (end - at).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            read_or_zeros(mem, at, chunk);
            scanned += n as u64;
            for off in finder.find_iter(chunk) {
                banners += 1;
                let window = (at + off as u64) & !(PageSize::Size2M.bytes() - 1);
                if tried_windows.contains(&window) {
                    continue;
                }
                if banners > MAX_CANDIDATES {
                    break;
                }
                tried_windows.push(window);
                match kernel_in_window(session, window) {
                    Ok(space) => return Ok(space),
                    Err(e) => last_error = Some(e),
                }
            }
            if at + n as u64 >= end {
                break;
            }
            at += (n - overlap) as u64;
        }
    }
    Err(LinuxError::KernelNotInPhysicalMemory {
        scanned_bytes: scanned,
        banners,
        reason: last_error.unwrap_or_else(|| "no \"Linux version \" text at all".to_owned()),
    })
}

/// Fills `buf` from physical `pa`, [`CHUNK`] by chunk; a chunk that does not read (a hole in
/// the memory map) is left as zeros, which no banner or kallsyms table matches.
fn read_or_zeros(mem: &dyn vmi_core::PhysicalMemory, pa: u64, buf: &mut [u8]) {
    for (i, piece) in buf.chunks_mut(CHUNK).enumerate() {
        if mem.read(Pa::new(pa + (i * CHUNK) as u64), piece).is_err() {
            piece.fill(0);
        }
    }
}

/// The kernel's space if the kallsyms tables are in `[window, window + SCAN_WINDOW)` and name
/// a `linux_banner` that is there too.
fn kernel_in_window(session: &Session, window: u64) -> Result<AddressSpace, String> {
    let mem = session.memory();
    let mut bytes = vec![0u8; SCAN_WINDOW as usize];
    read_or_zeros(mem, window, &mut bytes);
    // Only the alignment of the base matters to the table search, and physical and virtual
    // addresses of the image agree modulo 2 MiB.
    let symbols = Kallsyms::find(&bytes, Va::new(window)).map_err(|e| e.to_string())?;
    let banner_va = symbols
        .lookup("linux_banner")
        .ok_or("the kallsyms tables name no linux_banner")?;
    let init_top_pgt = symbols
        .lookup("init_top_pgt")
        .ok_or("the kallsyms tables name no init_top_pgt")?;
    // The banner sits at its virtual offset within a 2 MiB frame of the window.
    let large = PageSize::Size2M.bytes();
    let banner_pa = (0..SCAN_WINDOW / large)
        .map(|frame| window + frame * large + banner_va % large)
        .find(|&pa| {
            let off = (pa - window) as usize;
            bytes.get(off..).and_then(banner_at_start).is_some()
        })
        .ok_or("no banner where kallsyms' linux_banner implies, in this window")?;
    let image_pa = |va: u64| {
        va.checked_sub(banner_va)
            .and_then(|d| banner_pa.checked_add(d))
            .or_else(|| {
                banner_va
                    .checked_sub(va)
                    .and_then(|d| banner_pa.checked_sub(d))
            })
    };
    let root = image_pa(init_top_pgt).ok_or("init_top_pgt is outside physical memory")?;
    let l5 = symbols
        .lookup("__pgtable_l5_enabled")
        .and_then(image_pa)
        .and_then(|pa| {
            let mut v = [0u8; 4];
            mem.read(Pa::new(pa), &mut v).ok()?;
            Some(u32::from_le_bytes(v) != 0)
        });
    let modes = match l5 {
        Some(true) => [PagingMode::Ia32e5, PagingMode::Ia32e4],
        _ => [PagingMode::Ia32e4, PagingMode::Ia32e5],
    };
    modes
        .into_iter()
        .map(|mode| AddressSpace {
            root: Pa::new(root),
            mode,
        })
        .find(|&space| {
            session
                .translate(space, Va::new(banner_va))
                .is_ok_and(|t| t.pa == Pa::new(banner_pa))
        })
        .ok_or_else(|| {
            format!(
                "init_top_pgt at {root:#x} does not map linux_banner {banner_va:#x} to \
                 {banner_pa:#x}"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pti_rule() {
        let space = |root, mode| AddressSpace {
            root: Pa::new(root),
            mode,
        };
        assert_eq!(
            pti_kernel_half(space(0x1a49000, PagingMode::Ia32e5)),
            Some(space(0x1a48000, PagingMode::Ia32e5))
        );
        assert_eq!(pti_kernel_half(space(0x1a48000, PagingMode::Ia32e4)), None);
        assert_eq!(pti_kernel_half(space(0x1a49000, PagingMode::Pae)), None);
    }

    #[test]
    fn vmcoreinfo_lines() {
        let v = Vmcoreinfo(
            "OSRELEASE=6.1.0-57-amd64\nSYMBOL(init_top_pgt)=ffffffffaf410000\n\
             NUMBER(phys_base)=-1694498816\nNUMBER(pgtable_l5_enabled)=0\nKERNELOFFSET=2ca00000\n",
        );
        assert_eq!(v.os_release(), Some("6.1.0-57-amd64"));
        assert_eq!(v.symbol("init_top_pgt"), Some(0xffff_ffff_af41_0000));
        assert_eq!(v.number("phys_base"), Some(-1_694_498_816));
        assert_eq!(v.number("pgtable_l5_enabled"), Some(0));
        assert_eq!(v.kernel_offset(), Some(0x2ca0_0000));
        assert_eq!(v.symbol("missing"), None);
    }
}
