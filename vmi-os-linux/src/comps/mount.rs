//! `struct mount`, `struct mnt_namespace` and the `super_block` behind a mount: the lines of
//! `/proc/PID/mountinfo`, as `show_mountinfo` (fs/proc_namespace.c) prints them.
//!
//! The mounts of a namespace are, up to 6.7, the list `mnt_namespace.list` through
//! `mount.mnt_list` (mountinfo's order, with `/proc/mounts` readers' cursors, `MNT_CURSOR`,
//! skipped), and from 6.8 the rb-tree `mnt_namespace.mounts` through `mount.mnt_node`,
//! ordered by `mnt_id_unique` (mountinfo walks it in order). Which one a kernel has is read
//! from its BTF, not from its version.
//!
//! Each mount renders as `show_mountinfo` does, but for what only a filesystem's callbacks
//! know:
//!
//! - the super options (after ` - TYPE SOURCE`: `sb_rdonly`, `show_sb_opts` and
//!   `s_op->show_options`) are left out entirely;
//! - the source is `mnt_devname` (`none` when NULL); a filesystem with `s_op->show_devname`
//!   (NFS, overlayfs' lower layers...) prints something else, flagged
//!   [`MountRecord::source_by_callback`];
//! - the root is the dentry's path inside its filesystem (`seq_dentry`); a filesystem with
//!   `s_op->show_path` (kernfs: cgroups shown relative to a cgroup namespace) may differ,
//!   flagged [`MountRecord::root_by_callback`];
//! - `propagate_from:N` (a slave's dominating peer group, `get_dominating_id`, a walk of
//!   peer groups under the reader's root) is not rendered.
//!
//! `,idmapped` is: a mount whose `mnt_idmap` (6.3+; `mnt_userns` before) is not the
//! kernel's no-op mapping (`nop_mnt_idmap`; `init_user_ns` before), with
//! [`MountLayout::resolve_for`].
//!
//! The mount point is the path relative to the task's root (`task->fs->root`), as
//! `seq_path_root` builds it; a mount the root cannot reach (outside a chroot) is skipped, as
//! the kernel skips it. Strings are escaped as the kernel escapes them (space, tab, newline
//! and backslash as `\ooo`). Every walk is bounded: the namespace's list or tree by the
//! shared walkers, a path by `PATH_MAX` bytes and a mount crossing count.

use vmi_core::profile::TypeRef;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::file::{dentry_parent_and_name, FileOffsets, MAX_MOUNT_CROSSINGS, PATH_MAX};
use crate::comps::layout::{unexpected_layout, Scalar, StructBuf, MAX_STRUCT_SIZE};
use crate::error::LinuxError;
use crate::iter::list::{container_of, is_kernel_pointer, ListOffsets, ListWalker};
use crate::iter::rbtree::{RbOffsets, RbWalker};
use crate::partial::Partial;

/// `MNT_NOSUID` (include/linux/mount.h; these values have not changed since 2.6).
pub const MNT_NOSUID: u64 = 0x01;
/// `MNT_NODEV`.
pub const MNT_NODEV: u64 = 0x02;
/// `MNT_NOEXEC`.
pub const MNT_NOEXEC: u64 = 0x04;
/// `MNT_NOATIME`.
pub const MNT_NOATIME: u64 = 0x08;
/// `MNT_NODIRATIME`.
pub const MNT_NODIRATIME: u64 = 0x10;
/// `MNT_RELATIME`.
pub const MNT_RELATIME: u64 = 0x20;
/// `MNT_READONLY`.
pub const MNT_READONLY: u64 = 0x40;
/// `MNT_NOSYMFOLLOW` (5.10+).
pub const MNT_NOSYMFOLLOW: u64 = 0x80;
/// `MNT_SHARED`: the mount is in a peer group (`shared:N`).
pub const MNT_SHARED: u64 = 0x1000;
/// `MNT_UNBINDABLE`.
pub const MNT_UNBINDABLE: u64 = 0x2000;
/// `MNT_CURSOR`: a `/proc/mounts` reader's place holder in the namespace list (5.8 to 6.7).
pub const MNT_CURSOR: u64 = 0x1000_0000;

/// Most mounts of one namespace walked (real systems have hundreds; container hosts
/// thousands).
pub const MAX_MOUNTS: usize = 1 << 16;

/// The longest file-system type name or device name read.
const MAX_NAME: usize = 4096;

/// How a namespace links its mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceMounts {
    /// `mnt_namespace.list` through `mount.mnt_list` (before 6.8).
    List {
        /// Offset of `mnt_namespace.list`.
        head: u64,
        /// Offset of `mount.mnt_list`.
        member: u64,
        /// `list_head`.
        list: ListOffsets,
    },
    /// The rb-tree `mnt_namespace.mounts` through `mount.mnt_node` (6.8 and later).
    Tree {
        /// Offset of `mnt_namespace.mounts`.
        root: u64,
        /// Offset of `mount.mnt_node`.
        member: u64,
        /// `rb_node` / `rb_root`.
        rb: RbOffsets,
    },
}

/// Where the fields of `mount`, `vfsmount`, `super_block` and the task's root are.
#[derive(Debug, Clone)]
pub struct MountLayout {
    files: FileOffsets,
    mount_span: usize,
    mnt_parent: Scalar,
    mnt_mountpoint: Scalar,
    mnt_root: Scalar,
    mnt_sb: Scalar,
    mnt_flags: Scalar,
    mnt_devname: Scalar,
    mnt_master: Scalar,
    mnt_id: Scalar,
    mnt_group_id: Scalar,
    /// Offset of `mount.mnt` (the embedded `vfsmount`).
    mount_mnt: u64,
    sb_span: usize,
    s_dev: Scalar,
    s_type: Scalar,
    s_op: Scalar,
    s_subtype: Option<Scalar>,
    fs_type_name: Scalar,
    show_devname: Option<Scalar>,
    show_path: Option<Scalar>,
    /// How the namespace links its mounts.
    pub ns_mounts: NamespaceMounts,
    task_fs: Scalar,
    fs_root_mnt: Scalar,
    fs_root_dentry: Scalar,
    /// `vfsmount.mnt_idmap` (or `mnt_userns`) and the value of an unmapped mount.
    idmap: Option<(Scalar, Va)>,
}

fn span(ty: &str, fields: &[Scalar]) -> Result<usize, ProfileError> {
    let end = fields.iter().map(Scalar::end).max().unwrap_or(0);
    if end > MAX_STRUCT_SIZE {
        return Err(unexpected_layout(ty, "<span>", "too large"));
    }
    usize::try_from(end).map_err(|_| unexpected_layout(ty, "<span>", "too large"))
}

impl MountLayout {
    /// Resolves the layout from the profile; the namespace's mount links by what its BTF has
    /// (`mnt_namespace.list`, else `mnt_namespace.mounts` as an `rb_root`).
    pub fn resolve(profile: &Profile) -> Result<MountLayout, ProfileError> {
        let m = |f: &str| Scalar::resolve(profile, "mount", f);
        let v = |f: &str| Scalar::resolve_nested(profile, "mount", "mnt", f);
        let (mnt_parent, mnt_mountpoint, mnt_devname, mnt_master, mnt_id, mnt_group_id) = (
            m("mnt_parent")?,
            m("mnt_mountpoint")?,
            m("mnt_devname")?,
            m("mnt_master")?,
            m("mnt_id")?,
            m("mnt_group_id")?,
        );
        let (mnt_root, mnt_sb, mnt_flags) = (v("mnt_root")?, v("mnt_sb")?, v("mnt_flags")?);
        let s = |f: &str| Scalar::resolve(profile, "super_block", f);
        let (s_dev, s_type, s_op) = (s("s_dev")?, s("s_type")?, s("s_op")?);
        let s_subtype = s("s_subtype").ok();
        let mut sb_fields = vec![s_dev, s_type, s_op];
        sb_fields.extend(s_subtype);
        let ns_mounts = Self::namespace_links(profile)?;
        let op = |f: &str| Scalar::resolve(profile, "super_operations", f).ok();
        Ok(MountLayout {
            files: FileOffsets::resolve(profile)?,
            mount_span: span(
                "mount",
                &[
                    mnt_parent,
                    mnt_mountpoint,
                    mnt_devname,
                    mnt_master,
                    mnt_id,
                    mnt_group_id,
                    mnt_root,
                    mnt_sb,
                    mnt_flags,
                ],
            )?,
            mnt_parent,
            mnt_mountpoint,
            mnt_root,
            mnt_sb,
            mnt_flags,
            mnt_devname,
            mnt_master,
            mnt_id,
            mnt_group_id,
            mount_mnt: profile.field_offset("mount", "mnt")?,
            sb_span: span("super_block", &sb_fields)?,
            s_dev,
            s_type,
            s_op,
            s_subtype,
            fs_type_name: Scalar::resolve(profile, "file_system_type", "name")?,
            show_devname: op("show_devname"),
            show_path: op("show_path"),
            ns_mounts,
            task_fs: Scalar::resolve(profile, "task_struct", "fs")?,
            fs_root_mnt: Scalar::resolve_nested(profile, "fs_struct", "root", "mnt")?,
            fs_root_dentry: Scalar::resolve_nested(profile, "fs_struct", "root", "dentry")?,
            idmap: None,
        })
    }

    /// [`MountLayout::resolve`] plus what tells an idmapped mount: `vfsmount.mnt_idmap` and
    /// `nop_mnt_idmap` (6.3+), or `vfsmount.mnt_userns` and `init_user_ns` (5.12 to 6.2).
    /// A kernel with neither field has no idmapped mounts.
    pub fn resolve_for(kernel: &crate::kernel::Kernel) -> Result<MountLayout, LinuxError> {
        let profile = kernel.profile();
        let mut layout = Self::resolve(profile)?;
        let nested = |f: &str| Scalar::resolve_nested(profile, "mount", "mnt", f);
        layout.idmap = if let Ok(field) = nested("mnt_idmap") {
            Some((field, kernel.symbol("nop_mnt_idmap")?))
        } else if let Ok(field) = nested("mnt_userns") {
            Some((field, kernel.symbol("init_user_ns")?))
        } else {
            None
        };
        if let Some((field, _)) = layout.idmap {
            layout.mount_span = layout.mount_span.max(
                usize::try_from(field.end())
                    .map_err(|_| unexpected_layout("mount", "mnt_idmap", "too large"))?,
            );
        }
        Ok(layout)
    }

    fn namespace_links(profile: &Profile) -> Result<NamespaceMounts, ProfileError> {
        if let Ok(head) = profile.field_offset("mnt_namespace", "list") {
            return Ok(NamespaceMounts::List {
                head,
                member: profile.field_offset("mount", "mnt_list")?,
                list: ListOffsets::resolve(profile)?,
            });
        }
        let mounts = profile.field("mnt_namespace", "mounts")?;
        if !matches!(&mounts.ty, TypeRef::Struct(n) if n == "rb_root") {
            return Err(unexpected_layout(
                "mnt_namespace",
                "mounts",
                "neither a list (`list`) nor an rb_root (`mounts`)",
            ));
        }
        Ok(NamespaceMounts::Tree {
            root: mounts.offset,
            member: profile.field_offset("mount", "mnt_node")?,
            rb: RbOffsets::resolve(profile)?,
        })
    }
}

/// A task's root directory (`task->fs->root`): the `vfsmount` and dentry mountinfo's mount
/// points are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPath {
    /// `path.mnt`.
    pub vfsmount: Va,
    /// `path.dentry`.
    pub dentry: Va,
}

/// One mount as mountinfo shows it (without the super options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRecord {
    /// `mnt_id`.
    pub id: u32,
    /// `mnt_parent->mnt_id`.
    pub parent_id: u32,
    /// `sb->s_dev` as `major:minor`.
    pub device: String,
    /// The path of `mnt_root` inside its filesystem, escaped.
    pub root: String,
    /// The mount point relative to the task's root, escaped.
    pub mount_point: String,
    /// `rw`/`ro` and the per-mount flags (`rw,nosuid,relatime`).
    pub options: String,
    /// The tagged fields: `shared:N`, `master:N`, `unbindable` (space-separated).
    pub propagation: Vec<String>,
    /// `s_type->name` (and `.subtype`), escaped.
    pub fs_type: String,
    /// `mnt_devname` (`none` when NULL), escaped.
    pub source: String,
    /// The `struct mount`.
    pub mount: Va,
    /// `mnt_flags` as read.
    pub flags: u64,
    /// The filesystem has `s_op->show_devname`: the kernel prints its answer, not `source`.
    pub source_by_callback: bool,
    /// The filesystem has `s_op->show_path`: the kernel prints its answer, not `root`.
    pub root_by_callback: bool,
}

/// Escapes as the kernel's `mangle`/`seq_path` do: space, tab, newline and backslash as
/// three octal digits.
pub fn mangle(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one scalar field of the structure at `base`.
fn read_scalar(
    mem: &VirtualMemory<'_>,
    base: Va,
    field: Scalar,
    what: &'static str,
) -> Result<u64, LinuxError> {
    crate::comps::nsproxy::read_field(mem, base, field, what)
}

/// A pointer that must be NULL or a kernel address.
fn pointer(mem: &VirtualMemory<'_>, buf: &StructBuf, field: Scalar) -> Result<Va, LinuxError> {
    let p = buf.va(field)?;
    if p.raw() != 0 && !is_kernel_pointer(mem.space().mode, p) {
        return Err(buf.corrupt(format!(
            "pointer {p} at offset {:#x} is not an aligned kernel address",
            field.offset
        )));
    }
    Ok(p)
}

fn non_null(mem: &VirtualMemory<'_>, buf: &StructBuf, field: Scalar) -> Result<Va, LinuxError> {
    let p = pointer(mem, buf, field)?;
    if p.raw() == 0 {
        return Err(buf.corrupt(format!("NULL pointer at offset {:#x}", field.offset)));
    }
    Ok(p)
}

/// Reads `struct mount`s: a namespace's list or tree, and each mount's mountinfo line.
#[derive(Clone, Copy)]
pub struct MountReader<'a> {
    mem: VirtualMemory<'a>,
    layout: &'a MountLayout,
}

impl<'a> MountReader<'a> {
    /// A reader over kernel memory `mem` with `layout`.
    pub fn new(mem: VirtualMemory<'a>, layout: &'a MountLayout) -> Self {
        MountReader { mem, layout }
    }

    /// `task->fs->root`, or `None` for a task without `fs` (exited).
    pub fn task_root(&self, task: Va) -> Result<Option<RootPath>, LinuxError> {
        let fs = Va::new(read_scalar(
            &self.mem,
            task,
            self.layout.task_fs,
            "task_struct",
        )?);
        if fs.raw() == 0 {
            return Ok(None);
        }
        if !is_kernel_pointer(self.mem.space().mode, fs) {
            return Err(LinuxError::Corrupt {
                what: "task_struct",
                at: task,
                reason: format!("fs pointer {fs} is not an aligned kernel address"),
            });
        }
        let l = self.layout;
        let span = usize::try_from(l.fs_root_mnt.end().max(l.fs_root_dentry.end()))
            .unwrap_or(usize::MAX)
            .min(MAX_STRUCT_SIZE as usize);
        let buf = StructBuf::read(&self.mem, "fs_struct", fs, span)?;
        Ok(Some(RootPath {
            vfsmount: non_null(&self.mem, &buf, l.fs_root_mnt)?,
            dentry: non_null(&self.mem, &buf, l.fs_root_dentry)?,
        }))
    }

    /// The `struct mount`s of the namespace `mnt_ns`, in mountinfo's order (cursors
    /// skipped). A broken list or tree gives what was walked and a warning.
    pub fn namespace_mounts(&self, mnt_ns: Va) -> Partial<Va> {
        let mut out = Partial::default();
        match self.layout.ns_mounts {
            NamespaceMounts::List { head, member, list } => {
                let Some(head) = mnt_ns.checked_add(head) else {
                    out.warnings.push(LinuxError::Corrupt {
                        what: "mnt_namespace",
                        at: mnt_ns,
                        reason: "its list lies beyond the address space".into(),
                    });
                    return out;
                };
                let mut walk = ListWalker::new(self.mem, list, head, "mount list of a namespace")
                    .with_limit(MAX_MOUNTS);
                for entry in walk.by_ref() {
                    let Some(mount) = container_of(entry, member) else {
                        out.warnings.push(LinuxError::Corrupt {
                            what: "mount list of a namespace",
                            at: entry,
                            reason: format!("entry lies below its member offset {member:#x}"),
                        });
                        break;
                    };
                    match self.flags(mount) {
                        Ok(flags) if flags & MNT_CURSOR != 0 => {}
                        _ => out.items.push(mount),
                    }
                }
                out.warnings.extend(walk.into_warning());
            }
            NamespaceMounts::Tree { root, member, rb } => {
                let Some(root) = mnt_ns.checked_add(root) else {
                    out.warnings.push(LinuxError::Corrupt {
                        what: "mnt_namespace",
                        at: mnt_ns,
                        reason: "its tree lies beyond the address space".into(),
                    });
                    return out;
                };
                let mut walk = RbWalker::new(self.mem, rb, root, "mount tree of a namespace")
                    .with_limit(MAX_MOUNTS);
                for node in walk.by_ref() {
                    match container_of(node, member) {
                        Some(mount) => out.items.push(mount),
                        None => {
                            out.warnings.push(LinuxError::Corrupt {
                                what: "mount tree of a namespace",
                                at: node,
                                reason: format!("node lies below its member offset {member:#x}"),
                            });
                            break;
                        }
                    }
                }
                out.warnings.extend(walk.into_warning());
            }
        }
        out
    }

    /// `mnt.mnt_flags` of the mount at `mount`.
    pub fn flags(&self, mount: Va) -> Result<u64, LinuxError> {
        read_scalar(&self.mem, mount, self.layout.mnt_flags, "mount")
    }

    /// The mountinfo line of the mount at `mount`, with its mount point relative to `root`;
    /// `None` when `root` cannot reach it (the kernel skips such a mount).
    pub fn record(&self, mount: Va, root: RootPath) -> Result<Option<MountRecord>, LinuxError> {
        let l = self.layout;
        let mem = &self.mem;
        let m = StructBuf::read(mem, "mount", mount, l.mount_span)?;
        let Some(mount_point) = self.mount_point(mount, &m, root)? else {
            return Ok(None);
        };
        let parent = non_null(mem, &m, l.mnt_parent)?;
        let id = m.get(l.mnt_id)? as u32;
        let parent_id = if parent == mount {
            id
        } else {
            read_scalar(mem, parent, l.mnt_id, "mount")? as u32
        };
        let flags = m.get(l.mnt_flags)?;
        let sb_at = non_null(mem, &m, l.mnt_sb)?;
        let sb = StructBuf::read(mem, "super_block", sb_at, l.sb_span)?;
        let dev = sb.get(l.s_dev)?;
        let s_type = non_null(mem, &sb, l.s_type)?;
        let name_at = Va::new(read_scalar(
            mem,
            s_type,
            l.fs_type_name,
            "file_system_type",
        )?);
        let mut fs_type = mem.read_cstr(name_at, MAX_NAME)?;
        if let Some(sub) = l.s_subtype {
            let sub_at = sb.va(sub)?;
            if sub_at.raw() != 0 {
                let sub = mem.read_cstr(sub_at, MAX_NAME)?;
                if !sub.is_empty() {
                    fs_type.push('.');
                    fs_type.push_str(&sub);
                }
            }
        }
        let devname_at = m.va(l.mnt_devname)?;
        let source = if devname_at.raw() == 0 {
            "none".to_owned()
        } else {
            mem.read_cstr(devname_at, MAX_NAME)?
        };
        let s_op = pointer(mem, &sb, l.s_op)?;
        let has_op = |op: Option<Scalar>| -> Result<bool, LinuxError> {
            match op {
                Some(op) if s_op.raw() != 0 => {
                    Ok(read_scalar(mem, s_op, op, "super_operations")? != 0)
                }
                _ => Ok(false),
            }
        };
        let mnt_root = non_null(mem, &m, l.mnt_root)?;
        let mut options = mount_options(flags);
        if let Some((field, unmapped)) = l.idmap {
            if m.va(field)? != unmapped {
                options.push_str(",idmapped");
            }
        }
        Ok(Some(MountRecord {
            id,
            parent_id,
            device: format!("{}:{}", dev >> 20, dev & 0xf_ffff),
            root: mangle(&self.dentry_path(mnt_root)?),
            mount_point: mangle(&mount_point),
            options,
            propagation: self.propagation(&m, flags)?,
            fs_type: mangle(fs_type.as_bytes()),
            source: mangle(source.as_bytes()),
            mount,
            flags,
            source_by_callback: has_op(l.show_devname)?,
            root_by_callback: has_op(l.show_path)?,
        }))
    }

    /// `shared:N`, `master:N`, `unbindable`, as `show_mountinfo` tags them.
    fn propagation(&self, m: &StructBuf, flags: u64) -> Result<Vec<String>, LinuxError> {
        let l = self.layout;
        let mut tags = Vec::new();
        if flags & MNT_SHARED != 0 {
            tags.push(format!("shared:{}", m.get(l.mnt_group_id)? as i32));
        }
        let master = pointer(&self.mem, m, l.mnt_master)?;
        if master.raw() != 0 {
            let group = read_scalar(&self.mem, master, l.mnt_group_id, "mount")? as i32;
            tags.push(format!("master:{group}"));
        }
        if flags & MNT_UNBINDABLE != 0 {
            tags.push("unbindable".to_owned());
        }
        Ok(tags)
    }

    /// The path of `dentry` inside its filesystem (`dentry_path_raw`): names up to the
    /// filesystem's root, `/` for the root itself.
    fn dentry_path(&self, dentry: Va) -> Result<Vec<u8>, LinuxError> {
        let mut parts = Vec::new();
        let mut total = 0usize;
        let mut cur = dentry;
        loop {
            let (parent, name) = dentry_parent_and_name(&self.mem, &self.layout.files, cur)?;
            if parent == cur {
                break;
            }
            total = total.saturating_add(name.len() + 1);
            if total > PATH_MAX {
                return Err(LinuxError::Unbounded {
                    what: "path of a mount's root dentry (bytes)",
                    head: dentry,
                    limit: PATH_MAX,
                });
            }
            parts.push(name);
            cur = parent;
        }
        Ok(join(parts))
    }

    /// The mount point of `mount` relative to `root` (`prepend_path` from the mount's own
    /// root dentry): `None` when the walk reaches the namespace root without passing `root`.
    fn mount_point(
        &self,
        mount: Va,
        m: &StructBuf,
        root: RootPath,
    ) -> Result<Option<Vec<u8>>, LinuxError> {
        let l = self.layout;
        let mem = &self.mem;
        let mut parts = Vec::new();
        let mut total = 0usize;
        let mut crossings = 0usize;
        let mut cur_mount = mount;
        let mut cur_buf = None::<StructBuf>;
        let mut dentry = non_null(mem, m, l.mnt_root)?;
        loop {
            let buf = cur_buf.as_ref().unwrap_or(m);
            let vfsmount = cur_mount
                .checked_add(l.mount_mnt)
                .ok_or_else(|| buf.corrupt("its vfsmount lies beyond the address space".into()))?;
            if dentry == root.dentry && vfsmount == root.vfsmount {
                break;
            }
            if dentry == non_null(mem, buf, l.mnt_root)? {
                let parent = non_null(mem, buf, l.mnt_parent)?;
                if parent == cur_mount {
                    // The namespace root without meeting the task's root: not visible.
                    return Ok(None);
                }
                crossings += 1;
                if crossings > MAX_MOUNT_CROSSINGS {
                    return Err(LinuxError::Unbounded {
                        what: "mount chain of a mount point",
                        head: mount,
                        limit: MAX_MOUNT_CROSSINGS,
                    });
                }
                dentry = non_null(mem, buf, l.mnt_mountpoint)?;
                cur_mount = parent;
                cur_buf = Some(StructBuf::read(mem, "mount", parent, l.mount_span)?);
                continue;
            }
            let (parent, name) = dentry_parent_and_name(mem, &l.files, dentry)?;
            if parent == dentry {
                // Escaped its mount: the kernel gives up on such a path too.
                return Ok(None);
            }
            total = total.saturating_add(name.len() + 1);
            if total > PATH_MAX {
                return Err(LinuxError::Unbounded {
                    what: "path of a mount point (bytes)",
                    head: mount,
                    limit: PATH_MAX,
                });
            }
            parts.push(name);
            dentry = parent;
        }
        Ok(Some(join(parts)))
    }
}

/// `/a/b` from the names `b`, `a`; `/` from none.
fn join(parts: Vec<Vec<u8>>) -> Vec<u8> {
    if parts.is_empty() {
        return b"/".to_vec();
    }
    let mut path = Vec::new();
    for p in parts.iter().rev() {
        path.push(b'/');
        path.extend_from_slice(p);
    }
    path
}

/// `rw`/`ro` and `show_mnt_opts`'s flags, in its order.
pub fn mount_options(flags: u64) -> String {
    let mut out = String::from(if flags & MNT_READONLY != 0 {
        "ro"
    } else {
        "rw"
    });
    for (bit, name) in [
        (MNT_NOSUID, ",nosuid"),
        (MNT_NODEV, ",nodev"),
        (MNT_NOEXEC, ",noexec"),
        (MNT_NOATIME, ",noatime"),
        (MNT_NODIRATIME, ",nodiratime"),
        (MNT_RELATIME, ",relatime"),
        (MNT_NOSYMFOLLOW, ",nosymfollow"),
    ] {
        if flags & bit != 0 {
            out.push_str(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_escapes() {
        assert_eq!(mount_options(0), "rw");
        assert_eq!(mount_options(MNT_RELATIME), "rw,relatime");
        assert_eq!(
            mount_options(MNT_READONLY | MNT_NOSUID | MNT_NODEV | MNT_NOEXEC | MNT_RELATIME),
            "ro,nosuid,nodev,noexec,relatime"
        );
        assert_eq!(mangle(b"/a b\\c\td\ne"), "/a\\040b\\134c\\011d\\012e");
        assert_eq!(join(vec![]), b"/");
        assert_eq!(join(vec![b"b".to_vec(), b"a".to_vec()]), b"/a/b");
    }
}
