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
//! - pseudo files render through their `dentry->d_op->d_dname` callback, recognised by its
//!   run-time address ([`PseudoNames`]): `simple_dname` (memfd, shared anonymous memory)
//!   gives `/NAME (deleted)`, `pipefs_dname` `pipe:[INO]`, `sockfs_dname` `socket:[INO]`,
//!   `anon_inodefs_dname` `anon_inode:NAME` (`anon_inode:[eventfd]`), `pidfs_dname` (6.9+)
//!   `anon_inode:[pidfd]`, `ns_dname` `NAME:[INO]` (`net:[4026531840]`); any other callback
//!   (`dmabuf_dname`, ...) is printed as the dentry's name, which may differ from the
//!   kernel's rendering;
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
    d_inode: Scalar,
    d_dname: Scalar,
    mount_mnt: u64,
    mount_span: usize,
    mnt_parent: Scalar,
    mnt_mountpoint: Scalar,
    mnt_root: Scalar,
    pseudo: PseudoNames,
}

/// The run-time addresses of the `d_dname` callbacks [`d_path`] renders as the kernel does;
/// a pseudo file whose callback is absent here is printed as its dentry name.
#[derive(Debug, Clone, Default)]
pub struct PseudoNames {
    /// `simple_dname`: `/NAME (deleted)`.
    pub simple: Option<Va>,
    /// `pipefs_dname`: `pipe:[INO]`.
    pub pipefs: Option<Va>,
    /// `sockfs_dname`: `socket:[INO]`.
    pub sockfs: Option<Va>,
    /// `anon_inodefs_dname`: `anon_inode:NAME`.
    pub anon_inodefs: Option<Va>,
    /// `pidfs_dname` (6.9+): `anon_inode:[pidfd]`.
    pub pidfs: Option<Va>,
    /// `ns_dname` and where the namespace's name is: `NAME:[INO]`.
    pub nsfs: Option<(Va, NsfsOffsets)>,
}

/// How `ns_dname` finds a namespace's name: `inode->i_private` is the `ns_common`, whose
/// `ops->name` is the name (`net`, `mnt`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsfsOffsets {
    /// `inode.i_private`.
    pub i_private: Scalar,
    /// `ns_common.ops`.
    pub ops: Scalar,
    /// `proc_ns_operations.name`.
    pub name: Scalar,
}

impl NsfsOffsets {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<NsfsOffsets, ProfileError> {
        Ok(NsfsOffsets {
            i_private: Scalar::resolve(profile, "inode", "i_private")?,
            ops: Scalar::resolve(profile, "ns_common", "ops")?,
            name: Scalar::resolve(profile, "proc_ns_operations", "name")?,
        })
    }
}

/// The kernel's version as (major, minor), from its banner (`Linux version 6.12.118+...`).
fn kernel_version(kernel: &Kernel) -> Option<(u32, u32)> {
    let rest = kernel.banner().strip_prefix("Linux version ")?;
    let mut it = rest.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl PseudoNames {
    /// Whatever callbacks the symbols have (for `maps`, where pseudo files are rare).
    pub fn best_effort(kernel: &Kernel) -> PseudoNames {
        PseudoNames {
            simple: kernel.symbol("simple_dname").ok(),
            pipefs: kernel.symbol("pipefs_dname").ok(),
            sockfs: kernel.symbol("sockfs_dname").ok(),
            anon_inodefs: kernel.symbol("anon_inodefs_dname").ok(),
            pidfs: kernel.symbol("pidfs_dname").ok(),
            nsfs: kernel
                .symbol("ns_dname")
                .ok()
                .zip(NsfsOffsets::resolve(kernel.profile()).ok()),
        }
    }

    /// Every callback the kernel has, as an error when one is missing: a profile from the
    /// cache holds only the symbols earlier runs used, and an absent callback must send the
    /// caller to full discovery rather than print a pipe as its dentry name. `pidfs_dname` is
    /// required from 6.9, where pidfs appeared.
    pub fn required(kernel: &Kernel) -> Result<PseudoNames, LinuxError> {
        let pidfs = match kernel.symbol("pidfs_dname") {
            Ok(va) => Some(va),
            Err(e) if kernel_version(kernel).is_some_and(|v| v >= (6, 9)) => return Err(e),
            Err(_) => None,
        };
        Ok(PseudoNames {
            simple: Some(kernel.symbol("simple_dname")?),
            pipefs: Some(kernel.symbol("pipefs_dname")?),
            sockfs: Some(kernel.symbol("sockfs_dname")?),
            anon_inodefs: Some(kernel.symbol("anon_inodefs_dname")?),
            pidfs,
            nsfs: Some((
                kernel.symbol("ns_dname")?,
                NsfsOffsets::resolve(kernel.profile())?,
            )),
        })
    }
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
        let d_inode = Scalar::resolve(profile, "dentry", "d_inode")?;
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
            dentry_span: span(&[
                d_parent,
                d_name_len,
                d_name_ptr,
                d_hash_pprev,
                d_op,
                d_inode,
            ])?,
            d_parent,
            d_name_len,
            d_name_ptr,
            d_hash_pprev,
            d_op,
            d_inode,
            d_dname: Scalar::resolve(profile, "dentry_operations", "d_dname")?,
            mount_mnt,
            mount_span: span(&[mnt_root, mnt_parent, mnt_mountpoint])?,
            mnt_parent,
            mnt_mountpoint,
            mnt_root,
            pseudo: PseudoNames::default(),
        })
    }

    /// [`FileOffsets::resolve`] plus the run-time addresses of the `d_dname` callbacks the
    /// symbols have ([`PseudoNames::best_effort`]), used to render pseudo files as the kernel
    /// does (absent from the symbols: they render as their name).
    pub fn resolve_for(kernel: &Kernel) -> Result<FileOffsets, ProfileError> {
        let mut o = Self::resolve(kernel.profile())?;
        o.pseudo = PseudoNames::best_effort(kernel);
        Ok(o)
    }

    /// [`FileOffsets::resolve`] with every `d_dname` callback required
    /// ([`PseudoNames::required`]): what `lsof` uses, where pseudo files are common.
    pub fn resolve_required(kernel: &Kernel) -> Result<FileOffsets, LinuxError> {
        let mut o = Self::resolve(kernel.profile())?;
        o.pseudo = PseudoNames::required(kernel)?;
        Ok(o)
    }

    /// `inode.i_ino`.
    pub fn i_ino(&self) -> Scalar {
        self.i_ino
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

/// Where the fields `/proc/PID/fdinfo` shows are, beside those of [`FileOffsets`].
#[derive(Debug, Clone)]
pub struct OpenFileOffsets {
    /// The path's fields.
    pub file: FileOffsets,
    span: usize,
    f_pos: Scalar,
    f_flags: Scalar,
    i_mode: Scalar,
    mnt_id: Scalar,
}

impl OpenFileOffsets {
    /// Resolves the layout for `kernel`, with every `d_dname` callback required (see
    /// [`FileOffsets::resolve_required`]).
    pub fn resolve(kernel: &Kernel) -> Result<OpenFileOffsets, LinuxError> {
        let profile = kernel.profile();
        let file = FileOffsets::resolve_required(kernel)?;
        let f_pos = Scalar::resolve(profile, "file", "f_pos")?;
        let f_flags = Scalar::resolve(profile, "file", "f_flags")?;
        Ok(OpenFileOffsets {
            span: span(&[file.f_mnt, file.f_dentry, file.f_inode, f_pos, f_flags])?,
            i_mode: Scalar::resolve(profile, "inode", "i_mode")?,
            mnt_id: Scalar::resolve(profile, "mount", "mnt_id")?,
            file,
            f_pos,
            f_flags,
        })
    }
}

/// An open `struct file` as `/proc/PID/fd/FD` and `/proc/PID/fdinfo/FD` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFileState {
    /// The link's target: the path as `d_path` renders it.
    pub path: String,
    /// `f_inode->i_ino`.
    pub inode: u64,
    /// `f_inode->i_mode`: type and permission bits.
    pub mode: u32,
    /// `f_pos`.
    pub pos: u64,
    /// `f_flags` (without `O_CLOEXEC`, which is the descriptor's, not the file's).
    pub flags: u32,
    /// `real_mount(f_path.mnt)->mnt_id`.
    pub mnt_id: u32,
}

/// Reads the `struct file` at `file` (once) and what it points to.
pub fn open_file_state(
    mem: &VirtualMemory<'_>,
    offsets: &OpenFileOffsets,
    file: Va,
) -> Result<OpenFileState, LinuxError> {
    let o = &offsets.file;
    let f = StructBuf::read(mem, "file", file, offsets.span)?;
    let inode = f.va(o.f_inode)?;
    let vfsmount = f.va(o.f_mnt)?;
    let mount = real_mount(o, vfsmount)?;
    Ok(OpenFileState {
        inode: read_scalar(mem, inode, o.i_ino, "inode")?,
        // i_mode is a umode_t (16 bits).
        mode: read_scalar(mem, inode, offsets.i_mode, "inode")? as u32,
        pos: f.get(offsets.f_pos)?,
        // f_flags is an unsigned int.
        flags: f.get(offsets.f_flags)? as u32,
        mnt_id: read_scalar(mem, mount, offsets.mnt_id, "mount")? as u32,
        path: d_path(mem, o, vfsmount, f.va(o.f_dentry)?)?,
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
            return pseudo_name(mem, offsets, &first, Va::new(d_dname));
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

/// The name a pseudo file's `d_dname` callback gives it (see the module docs).
fn pseudo_name(
    mem: &VirtualMemory<'_>,
    offsets: &FileOffsets,
    d: &Dentry,
    d_dname: Va,
) -> Result<String, LinuxError> {
    let p = &offsets.pseudo;
    let callback = Some(d_dname);
    let name = || -> Result<String, LinuxError> {
        Ok(String::from_utf8_lossy(&dentry_name(mem, offsets, d)?).into_owned())
    };
    let inode = || -> Result<Va, LinuxError> {
        let inode = d.buf.va(offsets.d_inode)?;
        if inode.raw() == 0 {
            return Err(d.buf.corrupt("a pseudo file's dentry has no inode".into()));
        }
        Ok(inode)
    };
    let ino = || -> Result<u64, LinuxError> { read_scalar(mem, inode()?, offsets.i_ino, "inode") };
    if callback == p.simple {
        Ok(format!("/{} (deleted)", name()?))
    } else if callback == p.pipefs {
        Ok(format!("pipe:[{}]", ino()?))
    } else if callback == p.sockfs {
        Ok(format!("socket:[{}]", ino()?))
    } else if callback == p.anon_inodefs {
        Ok(format!("anon_inode:{}", name()?))
    } else if p.pidfs.is_some() && callback == p.pidfs {
        Ok("anon_inode:[pidfd]".to_owned())
    } else if let Some((_, ns)) = p.nsfs.filter(|(f, _)| *f == d_dname) {
        let inode = inode()?;
        let common = Va::new(read_scalar(mem, inode, ns.i_private, "inode")?);
        let ops = Va::new(read_scalar(mem, common, ns.ops, "ns_common")?);
        let name_at = Va::new(read_scalar(mem, ops, ns.name, "proc_ns_operations")?);
        let kind = mem.read_cstr(name_at, 32)?;
        Ok(format!("{kind}:[{}]", ino()?))
    } else {
        name()
    }
}

/// Reads one scalar field of the structure at `base`.
pub(crate) fn read_scalar(
    mem: &VirtualMemory<'_>,
    base: Va,
    field: Scalar,
    what: &'static str,
) -> Result<u64, LinuxError> {
    let at = base
        .checked_add(field.offset)
        .ok_or_else(|| LinuxError::Corrupt {
            what,
            at: base,
            reason: format!("field offset {:#x} overflows", field.offset),
        })?;
    let mut buf = [0u8; 8];
    let width = usize::from(field.size);
    mem.read_exact(at, &mut buf[..width])?;
    Scalar { offset: 0, ..field }
        .get(&buf[..width])
        .ok_or_else(|| LinuxError::Corrupt {
            what,
            at: base,
            reason: "field does not fit".into(),
        })
}

/// A dentry's parent (`d_parent`) and name (`d_name`, at most [`NAME_MAX`] bytes): one step of
/// the path walks other than `d_path` (mountinfo's root and mount point, `comps::mount`).
pub fn dentry_parent_and_name(
    mem: &VirtualMemory<'_>,
    offsets: &FileOffsets,
    dentry: Va,
) -> Result<(Va, Vec<u8>), LinuxError> {
    let d = read_dentry(mem, offsets, dentry)?;
    let name = dentry_name(mem, offsets, &d)?;
    Ok((d.parent, name))
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
