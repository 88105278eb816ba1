//! `struct files_struct` and `struct fdtable`: a task's file descriptors, as `/proc/PID/fd`
//! lists them.
//!
//! `task->files` points to the `files_struct` the task's threads share (`CLONE_FILES`); its
//! `fdt` points to the current `fdtable` (the embedded `fdtab` until the table first grows).
//! The table holds `max_fds` slots: `fd[i]` is the `struct file *` of descriptor `i` (NULL when
//! closed), bit `i` of `close_on_exec` is the descriptor's `FD_CLOEXEC`, bit `i` of `open_fds`
//! says the number is taken. `/proc/PID/fd` (fs/proc/fd.c `proc_readfd_common`) lists every
//! slot below `max_fds` whose `fd[i]` is not NULL, whatever `open_fds` says; so does this walk.
//! A slot holding a file while its `open_fds` bit is clear (a descriptor hidden from the
//! allocator, or a number being closed) is listed, and the table gets one warning naming them.
//!
//! Kernel threads have `files` NULL or share `init_files`, which holds no descriptors; an
//! exited task has NULL `files`. Both give an empty table.
//!
//! Guest data is hostile: `max_fds` is capped at [`FdLimits::max_fds`] (default
//! [`MAX_FDS`], with a warning), the slots are read in chunks of [`CHUNK_FDS`] so no allocation
//! is sized by `max_fds`, a slot that is not a kernel pointer is skipped with a warning, and
//! after [`FdLimits::max_bad_slots`] bad slots the walk stops (a table pointing into garbage).
//! The descriptor numbers are produced in increasing order.

use std::ops::ControlFlow;

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{unexpected_layout, Scalar};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;
use crate::partial::Partial;

/// The default cap on the descriptors of one table: `fs.nr_open` is at most 1 Mi
/// (`NR_OPEN_MAX` is `~0U & -BITS_PER_LONG`, but `sysctl_nr_open_max` is 1 Gi and real tables are
/// far below 1 Mi); a table claiming more is cut here with a warning.
pub const MAX_FDS: u32 = 1 << 20;

/// Slots read per chunk: 512 pointers (4 KiB), with their 8 words of bitmap.
pub const CHUNK_FDS: u32 = 512;

/// Bounds of one descriptor-table walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimits {
    /// The most slots examined (`max_fds` above it is cut, with a warning).
    pub max_fds: u32,
    /// Bad slots (not a kernel pointer) tolerated before the walk stops.
    pub max_bad_slots: usize,
}

impl Default for FdLimits {
    fn default() -> Self {
        Self {
            max_fds: MAX_FDS,
            max_bad_slots: 16,
        }
    }
}

/// Where the fields of `task_struct.files`, `files_struct` and `fdtable` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdTableOffsets {
    /// `task_struct.files`.
    pub task_files: Scalar,
    /// `files_struct.fdt`.
    pub fdt: Scalar,
    /// `fdtable.max_fds`.
    pub max_fds: Scalar,
    /// `fdtable.fd`.
    pub fd: Scalar,
    /// `fdtable.close_on_exec`.
    pub close_on_exec: Scalar,
    /// `fdtable.open_fds`.
    pub open_fds: Scalar,
    /// Bytes of `fdtable` covering those fields.
    span: usize,
}

impl FdTableOffsets {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<FdTableOffsets, ProfileError> {
        let max_fds = Scalar::resolve(profile, "fdtable", "max_fds")?;
        let fd = Scalar::resolve(profile, "fdtable", "fd")?;
        let close_on_exec = Scalar::resolve(profile, "fdtable", "close_on_exec")?;
        let open_fds = Scalar::resolve(profile, "fdtable", "open_fds")?;
        for (name, s) in [
            ("fd", fd),
            ("close_on_exec", close_on_exec),
            ("open_fds", open_fds),
        ] {
            if s.size != 8 || s.bits.is_some() {
                return Err(unexpected_layout("fdtable", name, "not a 64-bit pointer"));
            }
        }
        let span = [max_fds, fd, close_on_exec, open_fds]
            .iter()
            .map(Scalar::end)
            .max()
            .unwrap_or(0);
        Ok(FdTableOffsets {
            task_files: Scalar::resolve(profile, "task_struct", "files")?,
            fdt: Scalar::resolve(profile, "files_struct", "fdt")?,
            max_fds,
            fd,
            close_on_exec,
            open_fds,
            span: usize::try_from(span)
                .ok()
                .filter(|&s| s as u64 <= crate::comps::layout::MAX_STRUCT_SIZE)
                .ok_or_else(|| unexpected_layout("fdtable", "<span>", "too large"))?,
        })
    }
}

/// One open descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFd {
    /// The descriptor number.
    pub fd: u32,
    /// Its `struct file`.
    pub file: Va,
    /// Whether its `close_on_exec` bit is set (`FD_CLOEXEC`; fdinfo adds `O_CLOEXEC` to the
    /// flags it prints).
    pub close_on_exec: bool,
}

/// `task->files`: the `files_struct` of `task`, `None` when NULL (kernel threads, exited
/// tasks). Threads of a group share it.
pub fn task_files(
    mem: &VirtualMemory<'_>,
    offsets: &FdTableOffsets,
    task: Va,
) -> Result<Option<Va>, LinuxError> {
    let at = task
        .checked_add(offsets.task_files.offset)
        .ok_or_else(|| LinuxError::Corrupt {
            what: "task_struct",
            at: task,
            reason: "files field address overflows".into(),
        })?;
    let files = mem.read_va(at)?;
    if files.raw() == 0 {
        return Ok(None);
    }
    if !is_kernel_pointer(mem.space().mode, files) {
        return Err(LinuxError::Corrupt {
            what: "task_struct",
            at: task,
            reason: format!("files {files} is not an aligned kernel address"),
        });
    }
    Ok(Some(files))
}

/// The open descriptors of `task` (through `task->files`; none when it is NULL), with the
/// default [`FdLimits`].
///
/// ```no_run
/// # fn demo(session: &vmi_core::Session, kernel: &vmi_os_linux::Kernel, task: vmi_core::Va)
/// #     -> Result<(), vmi_os_linux::LinuxError> {
/// use vmi_os_linux::comps::fdtable::{task_fds, FdTableOffsets};
///
/// let offsets = FdTableOffsets::resolve(kernel.profile())?;
/// let fds = task_fds(&kernel.memory(session), &offsets, task)?;
/// for fd in &fds.items {
///     println!("{} -> struct file at {}", fd.fd, fd.file);
/// }
/// # Ok(()) }
/// ```
pub fn task_fds(
    mem: &VirtualMemory<'_>,
    offsets: &FdTableOffsets,
    task: Va,
) -> Result<Partial<OpenFd>, LinuxError> {
    match task_files(mem, offsets, task)? {
        Some(files) => files_fds(mem, offsets, files, &FdLimits::default()),
        None => Ok(Partial::default()),
    }
}

/// The open descriptors of the `files_struct` at `files`, in increasing order.
///
/// Fails if `files->fdt` or the `fdtable` cannot be read; a cut `max_fds`, an unreadable
/// chunk of slots (the walk stops there) or bad slots are warnings beside what was read.
pub fn files_fds(
    mem: &VirtualMemory<'_>,
    offsets: &FdTableOffsets,
    files: Va,
    limits: &FdLimits,
) -> Result<Partial<OpenFd>, LinuxError> {
    let mut items = Vec::new();
    let warnings = for_each_fd(mem, offsets, files, limits, |fd| {
        items.push(fd);
        ControlFlow::Continue(())
    })?;
    Ok(Partial { items, warnings })
}

/// [`files_fds`] without collecting: `each` gets every open descriptor in increasing order
/// and may stop the walk ([`ControlFlow::Break`]); returns the warnings.
pub fn for_each_fd(
    mem: &VirtualMemory<'_>,
    offsets: &FdTableOffsets,
    files: Va,
    limits: &FdLimits,
    mut each: impl FnMut(OpenFd) -> ControlFlow<()>,
) -> Result<Vec<LinuxError>, LinuxError> {
    let corrupt =
        |what: &'static str, at: Va, reason: String| LinuxError::Corrupt { what, at, reason };
    let fdt_at = files
        .checked_add(offsets.fdt.offset)
        .ok_or_else(|| corrupt("files_struct", files, "fdt address overflows".into()))?;
    let fdt = mem.read_va(fdt_at)?;
    if !is_kernel_pointer(mem.space().mode, fdt) {
        return Err(corrupt(
            "files_struct",
            files,
            format!("fdt {fdt} is not an aligned kernel address"),
        ));
    }
    let table = crate::comps::layout::StructBuf::read(mem, "fdtable", fdt, offsets.span)?;
    let claimed = table.get(offsets.max_fds)?;
    let fd_array = table.va(offsets.fd)?;
    let cloexec_map = table.va(offsets.close_on_exec)?;
    let open_map = table.va(offsets.open_fds)?;

    let mut warnings = Vec::new();
    let max_fds = if claimed > u64::from(limits.max_fds) {
        warnings.push(corrupt(
            "fdtable",
            fdt,
            format!(
                "max_fds {claimed} is above the bound {}: only the first {} slots are read",
                limits.max_fds, limits.max_fds
            ),
        ));
        limits.max_fds
    } else {
        // Fits: below a u32 bound.
        claimed as u32
    };
    if max_fds == 0 {
        return Ok(warnings);
    }
    for (name, p) in [
        ("fd", fd_array),
        ("close_on_exec", cloexec_map),
        ("open_fds", open_map),
    ] {
        if !is_kernel_pointer(mem.space().mode, p) {
            return Err(corrupt(
                "fdtable",
                fdt,
                format!("{name} {p} is not an aligned kernel address"),
            ));
        }
    }

    let mut slots = [0u8; CHUNK_FDS as usize * 8];
    let mut bad_slots = 0usize;
    // Descriptors holding a file without their open_fds bit: one warning for the table.
    const MAX_NAMED: usize = 8;
    let mut not_open: Vec<u32> = Vec::new();
    let mut not_open_count = 0usize;
    let mut start = 0u32;
    'chunks: while start < max_fds {
        let count = (max_fds - start).min(CHUNK_FDS);
        let words = count.div_ceil(64) as usize;
        let slot_bytes = &mut slots[..count as usize * 8];
        let mut cloexec = [0u64; CHUNK_FDS as usize / 64];
        let mut open = [0u64; CHUNK_FDS as usize / 64];
        let read = (|| -> Result<(), LinuxError> {
            let at = |base: Va, bytes_in: u64| {
                base.checked_add(bytes_in).ok_or_else(|| {
                    corrupt("fdtable", fdt, format!("{base} + {bytes_in} overflows"))
                })
            };
            mem.read_exact(at(fd_array, u64::from(start) * 8)?, slot_bytes)?;
            let bitmap_offset = u64::from(start / 64) * 8;
            read_words(mem, at(cloexec_map, bitmap_offset)?, &mut cloexec[..words])?;
            read_words(mem, at(open_map, bitmap_offset)?, &mut open[..words])?;
            Ok(())
        })();
        if let Err(e) = read {
            warnings.push(corrupt(
                "fdtable",
                fdt,
                format!(
                    "descriptors {start}..{} of {max_fds} cannot be read, the walk stops: {e}",
                    start + count
                ),
            ));
            break;
        }
        for (i, raw) in slot_bytes.chunks_exact(8).enumerate() {
            let mut le = [0u8; 8];
            le.copy_from_slice(raw);
            let file = Va::new(u64::from_le_bytes(le));
            if file.raw() == 0 {
                continue;
            }
            // i < CHUNK_FDS: fits.
            let fd = start + i as u32;
            if !is_kernel_pointer(mem.space().mode, file) {
                bad_slots += 1;
                warnings.push(corrupt(
                    "fdtable",
                    fdt,
                    format!("descriptor {fd} holds {file}, not an aligned kernel address"),
                ));
                if bad_slots >= limits.max_bad_slots {
                    warnings.push(corrupt(
                        "fdtable",
                        fdt,
                        format!("{bad_slots} bad descriptors: the walk stops at {fd}"),
                    ));
                    break 'chunks;
                }
                continue;
            }
            let bit = |map: &[u64]| map[i / 64] >> (i % 64) & 1 == 1;
            if !bit(&open) {
                if not_open.len() < MAX_NAMED {
                    not_open.push(fd);
                }
                not_open_count += 1;
            }
            let entry = OpenFd {
                fd,
                file,
                close_on_exec: bit(&cloexec),
            };
            if each(entry).is_break() {
                break 'chunks;
            }
        }
        start += count;
    }
    if not_open_count > 0 {
        let named: Vec<String> = not_open.iter().map(u32::to_string).collect();
        warnings.push(corrupt(
            "fdtable",
            fdt,
            format!(
                "descriptors holding a file but not marked open in open_fds (hidden from the \
                 allocator?): {}{} ({not_open_count} in all)",
                named.join(", "),
                if not_open_count > named.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(warnings)
}

/// Reads `out.len()` little-endian words at `at`.
fn read_words(mem: &VirtualMemory<'_>, at: Va, out: &mut [u64]) -> Result<(), LinuxError> {
    let mut bytes = [0u8; CHUNK_FDS as usize / 8];
    let bytes = &mut bytes[..out.len() * 8];
    mem.read_exact(at, bytes)?;
    for (w, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(b);
        *w = u64::from_le_bytes(le);
    }
    Ok(())
}
