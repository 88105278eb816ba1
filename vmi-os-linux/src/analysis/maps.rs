//! `vmi maps PID`: a process's memory mappings, as `/proc/PID/maps` shows them.
//!
//! The mappings are the `vm_area_struct`s of the process's `mm_struct.mm_mt` maple tree (6.1+)
//! in address order. Names follow `show_map_vma`/`get_vma_name` (fs/proc/task_mmu.c):
//!
//! 1. a file mapping: the file's path (see [`crate::comps::file`]);
//! 2. a special mapping (`vm_ops` is `special_mapping_vmops`, or its `name` callback is
//!    `special_mapping_name`): the `name` of the `vm_special_mapping` in `vm_private_data`
//!    (`[vdso]`, `[vvar]`, `[uprobes]`, ...);
//! 3. `[heap]` when the mapping overlaps `mm->start_brk..mm->brk` (`vma_is_initial_heap`);
//! 4. `[stack]` when it contains `mm->start_stack` (`vma_is_initial_stack`);
//! 5. otherwise anonymous: `""`.
//!
//! Not reproduced: the device column, `[anon:NAME]` names (`CONFIG_ANON_VMA_NAME`), and the
//! `[vsyscall]` gate area, which is not in the tree (and absent with
//! `CONFIG_LEGACY_VSYSCALL_NONE`). Before 6.6 the kernel tested the heap with `<=`/`>=`
//! rather than `<`/`>`; the two differ only for a mapping that merely touches the heap's
//! bounds.

use serde::Serialize;
use vmi_core::{Profile, ProfileError, Session, Va, VirtualMemory};

use crate::comps::file::{file_info, FileOffsets};
use crate::comps::layout::{Scalar, StructBuf};
use crate::comps::vma::{Vma, VmaOffsets};
use crate::error::LinuxError;
use crate::iter::maple::{self, MapleLimits, MapleOffsets};
use crate::kernel::Kernel;
use crate::partial::Partial;

/// The longest special mapping name read (real ones are `[vdso]`-sized).
const MAX_SPECIAL_NAME: usize = 64;

/// One mapping, as a line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Map {
    /// First address.
    pub start: Va,
    /// One past the last address.
    pub end: Va,
    /// `r`/`-`, `w`/`-`, `x`/`-`, then `s` (shared) or `p` (private): `"r-xp"`.
    pub perms: String,
    /// Offset into the mapped file in bytes (0 for anonymous mappings).
    pub offset: u64,
    /// Inode number of the mapped file (0 for anonymous mappings).
    pub inode: u64,
    /// The file's path, `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, ..., or `""`.
    pub path: String,
}

/// Where the `mm_struct` fields the maps need are.
#[derive(Debug, Clone)]
struct MmFields {
    mm_mt: u64,
    span: usize,
    start_brk: Scalar,
    brk: Scalar,
    start_stack: Scalar,
}

impl MmFields {
    fn resolve(profile: &Profile) -> Result<MmFields, ProfileError> {
        let start_brk = Scalar::resolve(profile, "mm_struct", "start_brk")?;
        let brk = Scalar::resolve(profile, "mm_struct", "brk")?;
        let start_stack = Scalar::resolve(profile, "mm_struct", "start_stack")?;
        let end = [start_brk, brk, start_stack]
            .iter()
            .map(Scalar::end)
            .max()
            .unwrap_or(0);
        Ok(MmFields {
            mm_mt: profile.field_offset("mm_struct", "mm_mt")?,
            span: usize::try_from(end)
                .ok()
                .filter(|&e| e as u64 <= crate::comps::layout::MAX_STRUCT_SIZE)
                .ok_or_else(|| {
                    crate::comps::layout::unexpected_layout("mm_struct", "brk", "too far")
                })?,
            start_brk,
            brk,
            start_stack,
        })
    }
}

/// Everything [`maps`] needs from the profile, resolved once.
#[derive(Debug, Clone)]
pub struct MapsLayout {
    mm: MmFields,
    maple: MapleOffsets,
    vma: VmaOffsets,
    file: FileOffsets,
    ops_name: Scalar,
    special_name: Scalar,
    special_vmops: Option<Va>,
    special_name_fn: Option<Va>,
}

impl MapsLayout {
    /// Resolves the layout for `kernel`: its profile, plus the run-time addresses of
    /// `special_mapping_vmops` and `special_mapping_name` (either suffices to recognise
    /// special mappings; without both they are left unnamed).
    pub fn resolve(kernel: &Kernel) -> Result<MapsLayout, ProfileError> {
        let profile = kernel.profile();
        Ok(MapsLayout {
            mm: MmFields::resolve(profile)?,
            maple: MapleOffsets::resolve(profile)?,
            vma: VmaOffsets::resolve(profile)?,
            file: FileOffsets::resolve_for(kernel)?,
            ops_name: Scalar::resolve(profile, "vm_operations_struct", "name")?,
            special_name: Scalar::resolve(profile, "vm_special_mapping", "name")?,
            special_vmops: kernel.symbol("special_mapping_vmops").ok(),
            special_name_fn: kernel.symbol("special_mapping_name").ok(),
        })
    }
}

/// The mappings of process `pid`. A kernel thread (no `mm`) has none.
///
/// ```no_run
/// # fn demo(session: &vmi_core::Session) -> Result<(), vmi_os_linux::LinuxError> {
/// let kernel = vmi_os_linux::discover(session)?;
/// let maps = vmi_os_linux::analysis::maps::maps(session, &kernel, 1)?;
/// for m in &maps.items {
///     println!("{:x}-{:x} {} {:08x} {}", m.start, m.end, m.perms, m.offset, m.path);
/// }
/// for w in &maps.warnings {
///     eprintln!("warning: {w}");
/// }
/// # Ok(()) }
/// ```
pub fn maps(session: &Session, kernel: &Kernel, pid: u32) -> Result<Partial<Map>, LinuxError> {
    let process = crate::analysis::ps::find_process(session, kernel, pid)?;
    match process.mm {
        Some(mm) => maps_of_mm(session, kernel, mm),
        None => Ok(Partial::default()),
    }
}

/// The mappings of the `mm_struct` at `mm`.
pub fn maps_of_mm(session: &Session, kernel: &Kernel, mm: Va) -> Result<Partial<Map>, LinuxError> {
    let layout = MapsLayout::resolve(kernel)?;
    maps_with(
        &kernel.memory(session),
        &layout,
        mm,
        &MapleLimits::default(),
    )
}

/// [`maps_of_mm`] with a resolved layout and explicit tree bounds.
pub fn maps_with(
    mem: &VirtualMemory<'_>,
    layout: &MapsLayout,
    mm: Va,
    limits: &MapleLimits,
) -> Result<Partial<Map>, LinuxError> {
    let mm_buf = StructBuf::read(mem, "mm_struct", mm, layout.mm.span)?;
    let start_brk = mm_buf.get(layout.mm.start_brk)?;
    let brk = mm_buf.get(layout.mm.brk)?;
    let start_stack = Va::new(mm_buf.get(layout.mm.start_stack)?);
    let tree = mm
        .checked_add(layout.mm.mm_mt)
        .ok_or_else(|| mm_buf.corrupt("mm_mt address overflows".into()))?;
    let walk = maple::entries(mem, &layout.maple, tree, limits)?;
    let mut out = Partial {
        items: Vec::with_capacity(walk.items.len()),
        warnings: walk.warnings,
    };
    for e in walk.items {
        let vma = match Vma::read(mem, &layout.vma, Va::new(e.value)) {
            Ok(v) => v,
            Err(err) => {
                out.warnings
                    .push(in_context("vm_area_struct", Va::new(e.value), err));
                continue;
            }
        };
        if vma.start.raw() != e.first || vma.end.raw().wrapping_sub(1) != e.last || vma.mm != mm {
            out.warnings.push(LinuxError::Corrupt {
                what: "vm_area_struct",
                at: vma.addr,
                reason: format!(
                    "{:#x}-{:#x} of mm {:#x} is filed under {:#x}..={:#x} of mm {mm:#x}",
                    vma.start, vma.end, vma.mm, e.first, e.last
                ),
            });
            continue;
        }
        let (inode, path) = match name(mem, layout, &vma, start_brk, brk, start_stack) {
            Ok(n) => n,
            Err(err) => {
                out.warnings
                    .push(in_context("name of vm_area_struct", vma.addr, err));
                (0, String::new())
            }
        };
        out.items.push(Map {
            start: vma.start,
            end: vma.end,
            perms: vma.perms(),
            offset: vma.file_offset(),
            inode,
            path,
        });
    }
    Ok(out)
}

/// A warning that says which structure a failed read was for.
fn in_context(what: &'static str, at: Va, e: LinuxError) -> LinuxError {
    match e {
        LinuxError::Memory(m) => LinuxError::Corrupt {
            what,
            at,
            reason: format!("cannot be read: {m}"),
        },
        other => other,
    }
}

/// The inode and name column of a mapping.
fn name(
    mem: &VirtualMemory<'_>,
    layout: &MapsLayout,
    vma: &Vma,
    start_brk: u64,
    brk: u64,
    start_stack: Va,
) -> Result<(u64, String), LinuxError> {
    if let Some(file) = vma.file {
        let info = file_info(mem, &layout.file, file)?;
        return Ok((info.inode, info.path));
    }
    if let Some(ops) = vma.ops {
        if let Some(name) = special_name(mem, layout, vma, ops)? {
            return Ok((0, name));
        }
    }
    if vma.start.raw() < brk && vma.end.raw() > start_brk {
        return Ok((0, "[heap]".into()));
    }
    if vma.touches(start_stack) {
        return Ok((0, "[stack]".into()));
    }
    Ok((0, String::new()))
}

/// The name of a special mapping, or `None` if `ops` is not the special mapping operations.
fn special_name(
    mem: &VirtualMemory<'_>,
    layout: &MapsLayout,
    vma: &Vma,
    ops: Va,
) -> Result<Option<String>, LinuxError> {
    let special = if layout.special_vmops.is_some() {
        layout.special_vmops == Some(ops)
    } else if let Some(name_fn) = layout.special_name_fn {
        let at = ops
            .checked_add(layout.ops_name.offset)
            .ok_or_else(|| LinuxError::Corrupt {
                what: "vm_operations_struct",
                at: ops,
                reason: "address overflows".into(),
            })?;
        mem.read_u64(at)? == name_fn.raw()
    } else {
        false
    };
    if !special {
        return Ok(None);
    }
    let at = vma
        .private_data
        .checked_add(layout.special_name.offset)
        .ok_or_else(|| LinuxError::Corrupt {
            what: "vm_special_mapping",
            at: vma.private_data,
            reason: "address overflows".into(),
        })?;
    let name = mem.read_va(at)?;
    Ok(Some(mem.read_cstr(name, MAX_SPECIAL_NAME)?))
}
