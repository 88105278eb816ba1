//! `struct file`, `struct dentry` and `struct mount`: the path of an open file, as the
//! kernel's `d_path` (fs/d_path.c) builds it.
//!
//! From `file->f_path {mnt, dentry}` the walk prepends `/name` for each dentry up its
//! `d_parent` chain; at the root dentry of a mount (`vfsmount.mnt_root`) it continues from
//! the mount point (`mount.mnt_mountpoint`) in the parent mount (`mount.mnt_parent`), until
//! the mount that is its own parent (the namespace root). `struct mount` embeds the
//! `vfsmount` a path points to as its field `mnt`. Like `d_path`:
//!
//! - an unlinked file (unhashed, not a root) gets ` (deleted)` appended;
//! - pseudo files whose `dentry->d_op->d_dname` is `simple_dname` (memfd, shared anonymous
//!   memory) are `/NAME (deleted)`; other `d_dname` callbacks (pipes, sockets, anon inodes)
//!   are printed as their dentry name, which may differ from the kernel's rendering;
//! - a walk that escapes (a dentry its own parent before a mount root) gives `/`.
//!
//! The path is relative to the namespace root, not to a chroot of the reading process. The
//! walk is bounded by `PATH_MAX` bytes of output, `NAME_MAX` per name and a mount-crossing
//! cap.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{Scalar, StructBuf};
use crate::error::LinuxError;
use crate::kernel::Kernel;

/// `PATH_MAX`: the longest path `d_path` produces.
pub const PATH_MAX: usize = 4096;
/// `NAME_MAX`: the longest name of one dentry.
pub const NAME_MAX: u64 = 255;
/// Most mount crossings in one path (real nesting is a handful deep).
pub const MAX_MOUNT_CROSSINGS: usize = 256;

/// Where the fields of `file`, `dentry`, `vfsmount`, `mount` and `inode` are.
#[derive(Debug, Clone)]
pub struct FileOffsets {
    file_span: usize,
    f_mnt: Scalar,
    f_dentry: Scalar,
    f_inode: Scalar,
    i_ino: Scalar,
    dentry_span: usize,
    d_parent: Scalar,
    d_name_len: Scalar,
    d_name_ptr: Scalar,
    d_hash_pprev: Scalar,
    d_op: Scalar,
    d_dname: Scalar,
    mount_mnt: u64,
    mount_span: usize,
    mnt_parent: Scalar,
    mnt_mountpoint: Scalar,
    mnt_root: Scalar,
    simple_dname: Option<Va>,
}

/// The bytes from a struct's start that cover all of `fields`.
fn span(fields: &[Scalar]) -> Result<usize, ProfileError> {
    let end = fields.iter().map(Scalar::end).max().unwrap_or(0);
    usize::try_from(end)
        .ok()
        .filter(|&e| e as u64 <= crate::comps::layout::MAX_STRUCT_SIZE)
        .ok_or_else(|| crate::comps::layout::unexpected_layout("file", "<span>", "too large"))
}

impl FileOffsets {
    /// Resolves the layout from the profile (without the `simple_dname` address: see
    /// [`FileOffsets::resolve_for`]).
    pub fn resolve(profile: &Profile) -> Result<FileOffsets, ProfileError> {
        let f_mnt = Scalar::resolve_nested(profile, "file", "f_path", "mnt")?;
        let f_dentry = Scalar::resolve_nested(profile, "file", "f_path", "dentry")?;
        let f_inode = Scalar::resolve(profile, "file", "f_inode")?;
        let d_parent = Scalar::resolve(profile, "dentry", "d_parent")?;
        let d_name_len = Scalar::resolve_nested(profile, "dentry", "d_name", "len")?;
        let d_name_ptr = Scalar::resolve_nested(profile, "dentry", "d_name", "name")?;
        let d_hash_pprev = Scalar::resolve_nested(profile, "dentry", "d_hash", "pprev")?;
        let d_op = Scalar::resolve(profile, "dentry", "d_op")?;
        let mount_mnt = profile.field_offset("mount", "mnt")?;
        let mnt_root_in_vfsmount = Scalar::resolve(profile, "vfsmount", "mnt_root")?;
        let mnt_root = Scalar {
            offset: mount_mnt
                .checked_add(mnt_root_in_vfsmount.offset)
                .ok_or_else(|| {
                    crate::comps::layout::unexpected_layout("mount", "mnt", "overflow")
                })?,
            ..mnt_root_in_vfsmount
        };
        let mnt_parent = Scalar::resolve(profile, "mount", "mnt_parent")?;
        let mnt_mountpoint = Scalar::resolve(profile, "mount", "mnt_mountpoint")?;
        Ok(FileOffsets {
            file_span: span(&[f_mnt, f_dentry, f_inode])?,
            f_mnt,
            f_dentry,
            f_inode,
            i_ino: Scalar::resolve(profile, "inode", "i_ino")?,
            dentry_span: span(&[d_parent, d_name_len, d_name_ptr, d_hash_pprev, d_op])?,
            d_parent,
            d_name_len,
            d_name_ptr,
            d_hash_pprev,
            d_op,
            d_dname: Scalar::resolve(profile, "dentry_operations", "d_dname")?,
            mount_mnt,
            mount_span: span(&[mnt_root, mnt_parent, mnt_mountpoint])?,
            mnt_parent,
            mnt_mountpoint,
            mnt_root,
            simple_dname: None,
        })
    }

    /// [`FileOffsets::resolve`] plus the run-time address of `simple_dname`, used to render
    /// pseudo files as the kernel does (absent from the symbols: they render as their name).
    pub fn resolve_for(kernel: &Kernel) -> Result<FileOffsets, ProfileError> {
        let mut o = Self::resolve(kernel.profile())?;
        o.simple_dname = kernel.symbol("simple_dname").ok();
        Ok(o)
    }
}

/// The path of an open `struct file` and its inode number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The path, as `d_path` renders it.
    pub path: String,
    /// `file->f_inode->i_ino`.
    pub inode: u64,
}

/// Reads the path and inode number of the `struct file` at `file`.
pub fn file_info(
    mem: &VirtualMemory<'_>,
    offsets: &FileOffsets,
    file: Va,
) -> Result<FileInfo, LinuxError> {
    let f = StructBuf::read(mem, "file", file, offsets.file_span)?;
    let inode_at = f.va(offsets.f_inode)?;
    let inode = inode_at
        .checked_add(offsets.i_ino.offset)
        .ok_or_else(|| f.corrupt(format!("f_inode {inode_at:#x} overflows")))?;
    let mut ino = [0u8; 8];
    let width = usize::from(offsets.i_ino.size);
    mem.read_exact(inode, &mut ino[..width])?;
    Ok(FileInfo {
        path: d_path(mem, offsets, f.va(offsets.f_mnt)?, f.va(offsets.f_dentry)?)?,
        inode: u64::from_le_bytes(ino),
    })
}

struct Dentry {
    buf: StructBuf,
    parent: Va,
}

fn read_dentry(
    mem: &VirtualMemory<'_>,
    offsets: &FileOffsets,
    at: Va,
) -> Result<Dentry, LinuxError> {
    let buf = StructBuf::read(mem, "dentry", at, offsets.dentry_span)?;
    let parent = buf.va(offsets.d_parent)?;
    Ok(Dentry { buf, parent })
}

/// The dentry's name (`d_name`), at most `NAME_MAX` bytes.
fn dentry_name(
    mem: &VirtualMemory<'_>,
    offsets: &FileOffsets,
    d: &Dentry,
) -> Result<Vec<u8>, LinuxError> {
    let len = d.buf.get(offsets.d_name_len)?;
    if len > NAME_MAX {
        return Err(d.buf.corrupt(format!("name length {len} exceeds NAME_MAX")));
    }
    let mut name = vec![0u8; len as usize];
    mem.read_exact(d.buf.va(offsets.d_name_ptr)?, &mut name)?;
    Ok(name)
}

/// The path of `dentry` on the mount whose `vfsmount` is at `vfsmount`, as `d_path` renders
/// it relative to the namespace root.
pub fn d_path(
    mem: &VirtualMemory<'_>,
    offsets: &FileOffsets,
    vfsmount: Va,
    dentry: Va,
) -> Result<String, LinuxError> {
    let first = read_dentry(mem, offsets, dentry)?;
    let is_root = first.parent == dentry;

    // Pseudo files render through their d_dname callback.
    let d_op = first.buf.va(offsets.d_op)?;
    if d_op.raw() != 0 {
        let d_dname = d_op
            .checked_add(offsets.d_dname.offset)
            .map(|at| mem.read_u64(at))
            .transpose()?
            .unwrap_or(0);
        let at_mount_root = || -> Result<bool, LinuxError> {
            let mount = real_mount(offsets, vfsmount)?;
            let m = StructBuf::read(mem, "mount", mount, offsets.mount_span)?;
            Ok(m.va(offsets.mnt_root)? == dentry)
        };
        if d_dname != 0 && (!is_root || !at_mount_root()?) {
            let name = String::from_utf8_lossy(&dentry_name(mem, offsets, &first)?).into_owned();
            if Some(Va::new(d_dname)) == offsets.simple_dname {
                return Ok(format!("/{name} (deleted)"));
            }
            return Ok(name);
        }
    }

    // d_unlinked: unhashed (d_hash.pprev == NULL) and not a root.
    let deleted = first.buf.get(offsets.d_hash_pprev)? == 0 && !is_root;
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    let mut mount = real_mount(offsets, vfsmount)?;
    let mut crossings = 0usize;
    let mut cur = first;
    let mut cur_at = dentry;
    let mut m = StructBuf::read(mem, "mount", mount, offsets.mount_span)?;
    loop {
        if cur_at == m.va(offsets.mnt_root)? {
            let parent = m.va(offsets.mnt_parent)?;
            if parent == mount {
                break; // the namespace root
            }
            crossings += 1;
            if crossings > MAX_MOUNT_CROSSINGS {
                return Err(LinuxError::Unbounded {
                    what: "mount chain of a path",
                    head: vfsmount,
                    limit: MAX_MOUNT_CROSSINGS,
                });
            }
            cur_at = m.va(offsets.mnt_mountpoint)?;
            mount = parent;
            m = StructBuf::read(mem, "mount", mount, offsets.mount_span)?;
            cur = read_dentry(mem, offsets, cur_at)?;
            continue;
        }
        if cur.parent == cur_at {
            // Escaped the mount without reaching its root: d_path gives "/".
            parts.clear();
            break;
        }
        let name = dentry_name(mem, offsets, &cur)?;
        total = total.saturating_add(name.len() + 1);
        if total > PATH_MAX {
            return Err(LinuxError::Unbounded {
                what: "path of a dentry (bytes)",
                head: dentry,
                limit: PATH_MAX,
            });
        }
        parts.push(name);
        cur_at = cur.parent;
        cur = read_dentry(mem, offsets, cur_at)?;
    }
    let mut path = Vec::with_capacity(total + 11);
    for p in parts.iter().rev() {
        path.push(b'/');
        path.extend_from_slice(p);
    }
    if path.is_empty() {
        path.push(b'/');
    }
    if deleted {
        path.extend_from_slice(b" (deleted)");
    }
    Ok(String::from_utf8_lossy(&path).into_owned())
}

/// `real_mount`: the `struct mount` around a `vfsmount`.
fn real_mount(offsets: &FileOffsets, vfsmount: Va) -> Result<Va, LinuxError> {
    vfsmount
        .checked_sub(offsets.mount_mnt)
        .ok_or_else(|| LinuxError::Corrupt {
            what: "vfsmount",
            at: vfsmount,
            reason: "below the offset of mount.mnt".into(),
        })
}
