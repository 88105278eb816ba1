//! The kernel's page-table root (DTB), found four ways, each on its own: a vCPU's CR3, the
//! low stub, a scan of low physical memory for a self-referencing PML4, the dump header.

use vmi_core::{AddressSpace, Pa, PagingMode, PhysicalMemory, Session};

/// Bits of CR3 (and of a header's DTB) that are not the root's address: the PCID (0–11) and
/// bit 63 (no-flush).
pub const CR3_FLAG_MASK: u64 = 0x8000_0000_0000_0FFF;

/// Where the DTB came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtbSource {
    /// CR3 of this vCPU.
    VcpuCr3(usize),
    /// The low stub's saved CR3 in this page.
    LowStub(Pa),
    /// A self-referencing PML4 found by scanning physical memory.
    Pml4Scan,
    /// The dump header.
    Header,
    /// The DTB given by the caller.
    Given,
    /// System's `DirectoryTableBase`, read once nt was found through another root.
    SystemProcess,
}

impl DtbSource {
    /// A few words for `vmi info`.
    pub fn describe(&self) -> String {
        match self {
            DtbSource::VcpuCr3(i) => format!("CR3 of vCPU {i}"),
            DtbSource::LowStub(pa) => format!("the low stub at {pa}"),
            DtbSource::Pml4Scan => "a self-referencing PML4 in low physical memory".to_owned(),
            DtbSource::Header => "the dump header".to_owned(),
            DtbSource::Given => "given".to_owned(),
            DtbSource::SystemProcess => "System's DirectoryTableBase".to_owned(),
        }
    }
}

/// The root address of a CR3 or header DTB value.
pub fn root_of(value: u64) -> Pa {
    Pa::new(value & !CR3_FLAG_MASK)
}

/// Index of the self-referencing entry of the PML4 at `pa`, if its kernel half has exactly one
/// (Windows maps its page tables through one; Linux never does). Only the entry is checked:
/// the cheap test that rules a non-Windows CR3 out.
pub fn self_reference(mem: &dyn PhysicalMemory, pa: Pa) -> Option<usize> {
    let table = read_table(mem, pa)?;
    self_reference_in(&table, pa)
}

fn self_reference_in(table: &[u64; 512], pa: Pa) -> Option<usize> {
    let mut found = None;
    for (i, &e) in table.iter().enumerate().skip(256) {
        if e & 0x0000_FFFF_FFFF_F083 == pa.raw() | 3 {
            if found.is_some() {
                return None;
            }
            found = Some(i);
        }
    }
    found
}

fn read_table(mem: &dyn PhysicalMemory, pa: Pa) -> Option<[u64; 512]> {
    let mut bytes = [0u8; 4096];
    mem.read(pa, &mut bytes).ok()?;
    let mut table = [0u64; 512];
    for (e, chunk) in table.iter_mut().zip(bytes.chunks_exact(8)) {
        *e = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    Some(table)
}

/// Whether the page at `pa` is a Windows x64 kernel PML4 (the rules of MemProcFS, memflow and
/// Volatility 3 together, see notes §2): exactly one self-reference in the kernel half; at least
/// 6 present, writable, supervisor, executable kernel entries; no present entry with bit 7;
/// more than 64 empty entries in each half; every entry pointing inside memory (`limit`);
/// entry 0 absent or inside memory.
pub fn is_kernel_pml4(mem: &dyn PhysicalMemory, pa: Pa, limit: u64) -> bool {
    read_table(mem, pa).is_some_and(|t| table_is_kernel_pml4(&t, pa, limit))
}

fn table_is_kernel_pml4(t: &[u64; 512], pa: Pa, limit: u64) -> bool {
    const PFN: u64 = 0x0000_FFFF_FFFF_F000;
    let (low, high) = t.split_at(256);
    if low.iter().filter(|&&e| e == 0).count() <= 0x40
        || high.iter().filter(|&&e| e == 0).count() <= 0x40
    {
        return false;
    }
    if t.iter()
        .any(|&e| e & 1 == 1 && (e & 0x80 != 0 || e & PFN >= limit))
    {
        return false;
    }
    let kernel_entries = high
        .iter()
        .filter(|&&e| e & 0x8000_0000_0000_0087 == 3)
        .count();
    kernel_entries >= 6 && self_reference_in(t, pa).is_some()
}

/// The kernel DTB from the vCPUs' CR3s: the first whose PML4 self-references (a vCPU stopped
/// in user mode under KVA shadow holds the user root, which does not).
pub fn from_vcpus(session: &Session) -> Option<(AddressSpace, DtbSource)> {
    (0..session.vcpu_count()).find_map(|i| {
        let regs = session.registers(i).ok()?;
        let space = PagingMode::from_registers(&regs);
        if space.mode != PagingMode::Ia32e4 {
            return None;
        }
        let root = root_of(regs.cr3);
        self_reference(session.memory(), root)?;
        Some((
            AddressSpace {
                root,
                mode: PagingMode::Ia32e4,
            },
            DtbSource::VcpuCr3(i),
        ))
    })
}

/// Whether any vCPU has a long-mode CR3 whose PML4 has no self-reference: such a guest is not
/// Windows (or is running a user process under KVA shadow, so every vCPU must agree).
pub fn vcpus_rule_out_windows(session: &Session) -> bool {
    let n = session.vcpu_count();
    n > 0
        && (0..n).all(|i| {
            session.registers(i).is_ok_and(|regs| {
                let space = PagingMode::from_registers(&regs);
                space.mode == PagingMode::Ia32e5
                    || (space.mode == PagingMode::Ia32e4
                        && self_reference(session.memory(), root_of(regs.cr3)).is_none())
            })
        })
}

/// The DTB saved in the low stub (the real-mode trampoline in PA 0x1000–0x9F000 that holds
/// the processor state handed to application processors).
pub fn from_low_stub(mem: &dyn PhysicalMemory) -> Option<(AddressSpace, DtbSource)> {
    let mut page = [0u8; 4096];
    (1u64..0xA0).find_map(|n| {
        let at = Pa::new(n << 12);
        mem.read(at, &mut page).ok()?;
        let q = |off: usize| {
            page.get(off..off + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let head = q(0)?;
        let lm_target = q(0x70)?;
        let cr3 = q(0xA0)?;
        let ok = head & 0xFFFF_FFFF_FFFF_00FF == 0x0000_0001_0006_00E9
            && lm_target & 0xFFFF_F800_0000_0003 == 0xFFFF_F800_0000_0000
            && cr3 & 0xFFFF_FF00_0000_0FFF == 0
            && cr3 != 0;
        ok.then(|| {
            (
                AddressSpace {
                    root: Pa::new(cr3),
                    mode: PagingMode::Ia32e4,
                },
                DtbSource::LowStub(at),
            )
        })
    })
}

/// Where the PML4 scan looks: physical memory below 16 MiB.
pub const SCAN_LIMIT: u64 = 16 << 20;

/// The first page below 16 MiB that is a Windows kernel PML4 (see [`is_kernel_pml4`]).
pub fn from_pml4_scan(mem: &dyn PhysicalMemory) -> Option<(AddressSpace, DtbSource)> {
    let limit = mem
        .memory_map()
        .iter()
        .map(|r| r.end_raw())
        .max()
        .unwrap_or(0);
    let mut page = [0u8; 4096];
    for region in mem.memory_map() {
        let start = region.start.raw().next_multiple_of(4096);
        let end = region.end_raw().min(SCAN_LIMIT);
        let mut pa = start;
        while pa.checked_add(4096).is_some_and(|e| e <= end) {
            let at = Pa::new(pa);
            if mem.read(at, &mut page).is_ok() {
                let mut t = [0u64; 512];
                for (e, c) in t.iter_mut().zip(page.chunks_exact(8)) {
                    *e = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                }
                if table_is_kernel_pml4(&t, at, limit) {
                    return Some((
                        AddressSpace {
                            root: at,
                            mode: PagingMode::Ia32e4,
                        },
                        DtbSource::Pml4Scan,
                    ));
                }
            }
            pa += 4096;
        }
    }
    None
}

/// The DTB a crash dump's header states, masked.
pub fn from_hints(session: &Session) -> Option<(AddressSpace, DtbSource)> {
    let dtb = session.kernel_hints().dtb?;
    let root = root_of(dtb);
    (root.raw() != 0).then_some((
        AddressSpace {
            root,
            mode: PagingMode::Ia32e4,
        },
        DtbSource::Header,
    ))
}
