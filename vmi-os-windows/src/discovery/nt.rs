//! The ntoskrnl image: its base and identity (RSDS), found by scanning the kernel range, from a
//! hint address (a dump header's list heads, a vCPU's LSTAR or `IDT[0]`), or by export name.

use vmi_core::{AddressSpace, PageSize, Session, TranslationError, Va, VirtualMemory};

use crate::pe::{self, CodeView, Exports, ImageSlice, PeHeaders};
use crate::symbols::{PdbId, KERNEL_PDBS};

/// The range the x64 kernel image is loaded in (KASLR picks a 2 MiB-aligned base in it).
pub const KERNEL_RANGE: std::ops::Range<u64> = 0xFFFF_F800_0000_0000..0xFFFF_F808_0000_0000;

/// How far back from a hint the image start is looked for (nt is ~11–16 MiB).
pub const HINT_WINDOW: u64 = 32 << 20;

/// Where nt's base came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseSource {
    /// An image at a 2 MiB step of the kernel range whose RSDS names a kernel PDB.
    RsdsScan,
    /// An RSDS record naming a kernel PDB found in the kernel range's bytes, back to MZ.
    RsdsSearch,
    /// Back from a hint address to MZ.
    Hint(String),
    /// An image whose export directory is named `ntoskrnl.exe`.
    ExportName,
    /// Given by the caller.
    Given,
}

impl BaseSource {
    /// A few words for `vmi info`.
    pub fn describe(&self) -> String {
        match self {
            BaseSource::RsdsScan => "RSDS scan of the kernel range".into(),
            BaseSource::RsdsSearch => "RSDS search of the kernel range's bytes".into(),
            BaseSource::Hint(h) => format!("back from {h} to MZ"),
            BaseSource::ExportName => "export directory named ntoskrnl.exe".into(),
            BaseSource::Given => "given".into(),
        }
    }
}

/// An ntoskrnl image found in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtImage {
    /// Where it starts.
    pub base: Va,
    /// SizeOfImage.
    pub size: u32,
    /// The PDB its CodeView record names, if readable.
    pub pdb: Option<PdbId>,
    /// How it was found.
    pub source: BaseSource,
}

/// The longest export directory read (nt's is ~100 KiB).
const MAX_EXPORT_DIR: u32 = 1 << 20;

/// The PDB named by the image at `base` (from its first page), if it names one and the record
/// is readable.
pub fn codeview_at(vm: &VirtualMemory<'_>, base: Va, headers: &PeHeaders<'_>) -> Option<PdbId> {
    let debug = headers.data_directory(pe::dir::DEBUG)?;
    let len = debug.size.min(64 * 28) as usize;
    let mut dir_bytes = vec![0u8; len];
    vm.read_exact(base.checked_add(u64::from(debug.rva))?, &mut dir_bytes)
        .ok()?;
    let dir = ImageSlice {
        rva: debug.rva,
        bytes: &dir_bytes,
    };
    let entries: Vec<pe::DebugEntry> = pe::debug_entries(dir, debug)
        .filter(|e| e.kind == pe::DEBUG_TYPE_CODEVIEW && e.rva != 0)
        .collect();
    entries.into_iter().find_map(|e| {
        let mut rec = vec![0u8; (e.size as usize).clamp(25, 24 + 261)];
        let n = vm
            .read(base.checked_add(u64::from(e.rva))?, &mut rec)
            .ok()?;
        let cv = CodeView::parse(rec.get(..n)?)?;
        Some(PdbId {
            guid: cv.guid,
            age: cv.age,
            name: String::from_utf8_lossy(cv.file_name()).into_owned(),
        })
    })
}

/// The export directory's DLL name of the image at `base`.
pub fn export_name_at(vm: &VirtualMemory<'_>, base: Va, headers: &PeHeaders<'_>) -> Option<String> {
    let exp = headers.data_directory(pe::dir::EXPORT)?;
    let len = exp.size.clamp(40, MAX_EXPORT_DIR) as usize;
    let mut bytes = vec![0u8; len];
    let n = vm
        .read(base.checked_add(u64::from(exp.rva))?, &mut bytes)
        .ok()?;
    let slice = ImageSlice {
        rva: exp.rva,
        bytes: bytes.get(..n)?,
    };
    let ex = Exports::parse(slice).ok()?;
    // The name is usually inside the directory; if not, read it where it is.
    if let Some(name) = ex.dll_name() {
        return Some(String::from_utf8_lossy(name).into_owned());
    }
    let name_rva = u32::from_le_bytes(slice.at(exp.rva.checked_add(12)?, 4)?.try_into().ok()?);
    vm.read_cstr(base.checked_add(u64::from(name_rva))?, 64)
        .ok()
}

/// The named exports of the image at `base` (name, RVA), as far as its export directory reads.
pub fn exports_at(vm: &VirtualMemory<'_>, base: Va) -> Vec<(String, u32)> {
    let mut page = [0u8; 4096];
    if vm.read_exact(base, &mut page).is_err() {
        return Vec::new();
    }
    let Ok(headers) = PeHeaders::parse(&page) else {
        return Vec::new();
    };
    let Some(exp) = headers.data_directory(pe::dir::EXPORT) else {
        return Vec::new();
    };
    let len = exp.size.clamp(40, MAX_EXPORT_DIR) as usize;
    let mut bytes = vec![0u8; len];
    let Some(at) = base.checked_add(u64::from(exp.rva)) else {
        return Vec::new();
    };
    let n = vm.read(at, &mut bytes).unwrap_or(0);
    let Some(b) = bytes.get(..n) else {
        return Vec::new();
    };
    match Exports::parse(ImageSlice {
        rva: exp.rva,
        bytes: b,
    }) {
        Ok(ex) => ex
            .named()
            .map(|(n, rva)| (String::from_utf8_lossy(n).into_owned(), rva))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn is_kernel_pdb(id: &PdbId) -> bool {
    let n = id.pdb_name();
    KERNEL_PDBS.contains(&n.as_str())
}

/// The image at `base` when it is a 64-bit PE (MZ, e_lfanew ≤ 0x800, PE, x86-64, SizeOfImage > 0).
fn image_at(vm: &VirtualMemory<'_>, base: Va, page: &mut [u8; 4096]) -> Option<u32> {
    vm.read_exact(base, page).ok()?;
    let h = PeHeaders::parse(page).ok()?;
    (h.machine() == 0x8664 && h.size_of_image() > 0).then(|| h.size_of_image())
}

/// Visits each 2 MiB-aligned address of the kernel range that translates, skipping whole
/// non-present subtrees (at most 16384 steps).
fn for_each_mapped_2m(session: &Session, space: AddressSpace, mut visit: impl FnMut(Va) -> bool) {
    let step = PageSize::Size2M.bytes();
    let mut va = KERNEL_RANGE.start;
    while va < KERNEL_RANGE.end {
        match session.translate(space, Va::new(va)) {
            Ok(_) => {
                if visit(Va::new(va)) {
                    return;
                }
                va += step;
            }
            Err(TranslationError::NotPresent { level, .. }) => {
                let span = match level.0 {
                    4 => 1u64 << 39,
                    3 => 1 << 30,
                    _ => step,
                };
                va = (va & !(span - 1)).saturating_add(span);
            }
            Err(_) => va += step,
        }
    }
}

/// nt at a 2 MiB step of the kernel range: the first image there whose CodeView record names
/// a kernel PDB (`ntkrnlmp.pdb`, `ntoskrnl.pdb`, `ntkrnlpa.pdb`, `ntkrpamp.pdb`).
pub fn from_rsds_scan(session: &Session, space: AddressSpace) -> Option<NtImage> {
    let vm = session.virtual_memory(space);
    let mut page = [0u8; 4096];
    let mut found = None;
    for_each_mapped_2m(session, space, |va| {
        let Some(size) = image_at(&vm, va, &mut page) else {
            return false;
        };
        let Ok(h) = PeHeaders::parse(&page) else {
            return false;
        };
        match codeview_at(&vm, va, &h) {
            Some(id) if is_kernel_pdb(&id) => {
                found = Some(NtImage {
                    base: va,
                    size,
                    pdb: Some(id),
                    source: BaseSource::RsdsScan,
                });
                true
            }
            _ => false,
        }
    });
    found
}

/// The most bytes [`from_rsds_search`] reads.
pub const SEARCH_BUDGET: u64 = 96 << 20;

/// nt anywhere in the kernel range (not only at 2 MiB steps): the bytes of each mapped 2 MiB
/// chunk are searched for `RSDS` + GUID + age immediately followed by a kernel PDB name, then
/// the image start is found going back page by page to an `MZ` whose debug directory names the
/// same record (at most 4 MiB back, as Volatility does). Reads at most [`SEARCH_BUDGET`] bytes.
pub fn from_rsds_search(session: &Session, space: AddressSpace) -> Option<NtImage> {
    let vm = session.virtual_memory(space);
    let chunk = PageSize::Size2M.bytes() as usize;
    let mut buf = vec![0u8; chunk + 512];
    let mut budget = SEARCH_BUDGET;
    let mut found = None;
    for_each_mapped_2m(session, space, |va| {
        if budget < chunk as u64 {
            return true;
        }
        budget -= chunk as u64;
        let n = vm.read(va, &mut buf).unwrap_or(0);
        let hay = buf.get(..n).unwrap_or(&[]);
        for at in memchr::memmem::find_iter(hay, b"RSDS") {
            let Some(cv) = hay.get(at..).and_then(CodeView::parse) else {
                continue;
            };
            let name = String::from_utf8_lossy(cv.pdb_name).to_ascii_lowercase();
            if !KERNEL_PDBS.contains(&name.as_str()) {
                continue;
            }
            let Some(rec_va) = va.checked_add(at as u64) else {
                continue;
            };
            let mut page = [0u8; 4096];
            let mut cand = rec_va.align_down(PageSize::Size4K);
            for _ in 0..1024 {
                if let Some(size) = image_at(&vm, cand, &mut page) {
                    if let Ok(h) = PeHeaders::parse(&page) {
                        if let Some(id) = codeview_at(&vm, cand, &h) {
                            if id.guid == cv.guid && id.age == cv.age {
                                found = Some(NtImage {
                                    base: cand,
                                    size,
                                    pdb: Some(id),
                                    source: BaseSource::RsdsSearch,
                                });
                                return true;
                            }
                        }
                    }
                }
                match cand.checked_sub(4096) {
                    Some(c) if c.raw() >= KERNEL_RANGE.start => cand = c,
                    _ => break,
                }
            }
        }
        false
    });
    found
}

/// nt going back from `hint` (an address inside it) page by page to an `MZ` whose image
/// contains the hint and names a kernel PDB or exports as `ntoskrnl.exe`, at most
/// [`HINT_WINDOW`] back.
pub fn from_hint(session: &Session, space: AddressSpace, hint: Va, what: &str) -> Option<NtImage> {
    let vm = session.virtual_memory(space);
    let mut page = [0u8; 4096];
    let mut cand = hint.align_down(PageSize::Size4K);
    let mut magic = [0u8; 2];
    for _ in 0..HINT_WINDOW / 4096 {
        if vm.read_exact(cand, &mut magic).is_ok() && &magic == b"MZ" {
            if let Some(size) = image_at(&vm, cand, &mut page) {
                let inside = hint
                    .offset_from(cand)
                    .is_some_and(|off| off < u64::from(size));
                if let (true, Ok(h)) = (inside, PeHeaders::parse(&page)) {
                    let pdb = codeview_at(&vm, cand, &h);
                    let named = pdb.as_ref().is_some_and(is_kernel_pdb)
                        || export_name_at(&vm, cand, &h)
                            .is_some_and(|n| n.eq_ignore_ascii_case("ntoskrnl.exe"));
                    if named {
                        return Some(NtImage {
                            base: cand,
                            size,
                            pdb: pdb.filter(is_kernel_pdb),
                            source: BaseSource::Hint(what.to_owned()),
                        });
                    }
                }
            }
        }
        cand = cand.checked_sub(4096)?;
    }
    None
}

/// Hint addresses inside nt that the target offers: the dump header's list heads and
/// KdDebuggerDataBlock, then each vCPU's LSTAR... (vmi's registers carry no MSRs but
/// IDTR: the handler of IDT vector 0, the divide-error fault, is in nt).
pub fn hints(session: &Session, space: AddressSpace) -> Vec<(Va, String)> {
    let mut out: Vec<(Va, String)> = [
        "PsActiveProcessHead",
        "PsLoadedModuleList",
        "KdDebuggerDataBlock",
    ]
    .iter()
    .filter_map(|name| {
        let va = *session.kernel_hints().symbols.get(*name)?;
        Some((va, format!("the header's {name}")))
    })
    .collect();
    let vm = session.virtual_memory(space);
    for i in 0..session.vcpu_count() {
        let Ok(regs) = session.registers(i) else {
            continue;
        };
        if let Some(handler) = idt_handler(&vm, Va::new(regs.idtr_base), 0) {
            if KERNEL_RANGE.contains(&handler.raw()) {
                out.push((handler, format!("IDT[0] of vCPU {i}")));
            }
        }
    }
    out
}

/// The handler of interrupt `vector` in the 64-bit IDT at `idt`.
pub fn idt_handler(vm: &VirtualMemory<'_>, idt: Va, vector: u64) -> Option<Va> {
    let mut gate = [0u8; 16];
    vm.read_exact(idt.checked_add(vector * 16)?, &mut gate)
        .ok()?;
    let lo = u64::from(u16::from_le_bytes([gate[0], gate[1]]));
    let mid = u64::from(u16::from_le_bytes([gate[6], gate[7]]));
    let hi = u64::from(u32::from_le_bytes([gate[8], gate[9], gate[10], gate[11]]));
    // A present interrupt or trap gate.
    let present = gate[5] & 0x80 != 0 && matches!(gate[5] & 0x0F, 0xE | 0xF);
    present.then(|| Va::new(lo | (mid << 16) | (hi << 32)))
}

/// nt at a 2 MiB step of the kernel range by the name its export directory gives
/// (`ntoskrnl.exe`), for kernels whose debug directory is not readable (triage dumps).
pub fn from_export_name(session: &Session, space: AddressSpace) -> Option<NtImage> {
    let vm = session.virtual_memory(space);
    let mut page = [0u8; 4096];
    let mut found = None;
    for_each_mapped_2m(session, space, |va| {
        let Some(size) = image_at(&vm, va, &mut page) else {
            return false;
        };
        let Ok(h) = PeHeaders::parse(&page) else {
            return false;
        };
        if export_name_at(&vm, va, &h).is_some_and(|n| n.eq_ignore_ascii_case("ntoskrnl.exe")) {
            found = Some(NtImage {
                base: va,
                size,
                pdb: codeview_at(&vm, va, &h).filter(is_kernel_pdb),
                source: BaseSource::ExportName,
            });
            true
        } else {
            false
        }
    });
    found
}
