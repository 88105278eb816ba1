//! `struct nsproxy` and the namespaces it points to: the inode numbers `/proc/PID/ns/*` links
//! show (`ns_common.inum` of each namespace) and the UTS namespace's host name.
//!
//! `task->nsproxy` holds every namespace but two: the task's own PID namespace is the one its
//! `struct pid` was allocated in (`comps::pid`), and its user namespace is its credentials'
//! (`cred->user_ns`, `comps::cred`); `pid_for_children` and `time_for_children` are what
//! children will get. Threads share one nsproxy unless they `unshare`. An exited task has
//! none (NULL). `time_ns*` exist with `CONFIG_TIME_NS` and `cgroup_ns` with
//! `CONFIG_CGROUPS`: a kernel without them has no such field in its BTF, and no such link in
//! `/proc/PID/ns`.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{struct_size, unexpected_layout, Scalar, StructBuf};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;

/// The longest host name read (`__NEW_UTS_LEN` + 1 is 65).
const MAX_NODENAME: u64 = 65;

/// One namespace of an nsproxy: its `/proc/PID/ns` name, where the nsproxy points to it, and
/// where its `ns.inum` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsField {
    /// The name of the link in `/proc/PID/ns` (`uts`, `pid_for_children`, ...).
    pub kind: &'static str,
    /// The pointer in `struct nsproxy`.
    pub pointer: Scalar,
    /// `ns.inum` in the namespace's struct.
    pub inum: Scalar,
}

/// `/proc/PID/ns` name, `nsproxy` field, namespace struct, and whether every kernel has it.
const NSPROXY_FIELDS: [(&str, &str, &str, bool); 8] = [
    ("cgroup", "cgroup_ns", "cgroup_namespace", false),
    ("ipc", "ipc_ns", "ipc_namespace", true),
    ("mnt", "mnt_ns", "mnt_namespace", true),
    ("net", "net_ns", "net", true),
    (
        "pid_for_children",
        "pid_ns_for_children",
        "pid_namespace",
        true,
    ),
    ("time", "time_ns", "time_namespace", false),
    (
        "time_for_children",
        "time_ns_for_children",
        "time_namespace",
        false,
    ),
    ("uts", "uts_ns", "uts_namespace", true),
];

/// Where `task->nsproxy`, the nsproxy's namespaces and their inode numbers are.
#[derive(Debug, Clone)]
pub struct NsproxyLayout {
    task_nsproxy: Scalar,
    nsproxy_size: usize,
    /// The namespaces this kernel has, in `/proc/PID/ns` order.
    pub fields: Vec<NsField>,
    mnt_ns: Scalar,
    uts_ns: Scalar,
    uts_nodename: u64,
    uts_nodename_len: u64,
    /// `pid_namespace.ns.inum` (for the task's own PID namespace, `comps::pid`).
    pub pid_ns_inum: Scalar,
    /// `user_namespace.ns.inum` (for `cred->user_ns`).
    pub user_ns_inum: Scalar,
}

impl NsproxyLayout {
    /// Resolves the layout; the config-dependent namespaces only if `nsproxy` has them.
    pub fn resolve(profile: &Profile) -> Result<NsproxyLayout, ProfileError> {
        let mut fields = Vec::new();
        for (kind, field, ty, always) in NSPROXY_FIELDS {
            let pointer = match Scalar::resolve(profile, "nsproxy", field) {
                Ok(p) => p,
                Err(_) if !always => continue,
                Err(e) => return Err(e),
            };
            fields.push(NsField {
                kind,
                pointer,
                inum: Scalar::resolve_nested(profile, ty, "ns", "inum")?,
            });
        }
        let name = profile.field_offset("uts_namespace", "name")?;
        let nodename = profile.field("new_utsname", "nodename")?;
        let uts_nodename_len = match &nodename.ty {
            vmi_core::profile::TypeRef::Array { count, .. } => (*count).min(MAX_NODENAME),
            _ => return Err(unexpected_layout("new_utsname", "nodename", "not an array")),
        };
        Ok(NsproxyLayout {
            task_nsproxy: Scalar::resolve(profile, "task_struct", "nsproxy")?,
            nsproxy_size: struct_size(profile, "nsproxy")?,
            fields,
            mnt_ns: Scalar::resolve(profile, "nsproxy", "mnt_ns")?,
            uts_ns: Scalar::resolve(profile, "nsproxy", "uts_ns")?,
            uts_nodename: name
                .checked_add(nodename.offset)
                .ok_or_else(|| unexpected_layout("uts_namespace", "name", "overflow"))?,
            uts_nodename_len,
            pid_ns_inum: Scalar::resolve_nested(profile, "pid_namespace", "ns", "inum")?,
            user_ns_inum: Scalar::resolve_nested(profile, "user_namespace", "ns", "inum")?,
        })
    }
}

/// A copy of one `struct nsproxy`.
pub struct Nsproxy {
    buf: StructBuf,
}

/// Reads one scalar field (of its width, bitfields extracted) of the structure at `base`.
pub(crate) fn read_field(
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
    let mut b = [0u8; 8];
    mem.read_exact(at, &mut b[..usize::from(field.size)])?;
    Ok(Scalar { offset: 0, ..field }.get(&b).unwrap_or(0))
}

/// Reads a pointer field and checks it is NULL or a kernel address.
pub(crate) fn read_pointer(
    mem: &VirtualMemory<'_>,
    base: Va,
    field: Scalar,
    what: &'static str,
) -> Result<Option<Va>, LinuxError> {
    let p = Va::new(read_field(mem, base, field, what)?);
    if p.raw() == 0 {
        return Ok(None);
    }
    if !is_kernel_pointer(mem.space().mode, p) {
        return Err(LinuxError::Corrupt {
            what,
            at: base,
            reason: format!(
                "pointer {p} at offset {:#x} is not an aligned kernel address",
                field.offset
            ),
        });
    }
    Ok(Some(p))
}

/// Reads nsproxies and namespaces through kernel memory.
#[derive(Clone, Copy)]
pub struct NsproxyReader<'a> {
    mem: VirtualMemory<'a>,
    layout: &'a NsproxyLayout,
}

impl<'a> NsproxyReader<'a> {
    /// A reader over kernel memory `mem`.
    pub fn new(mem: VirtualMemory<'a>, layout: &'a NsproxyLayout) -> Self {
        NsproxyReader { mem, layout }
    }

    /// The kernel memory this reader reads.
    pub fn memory(&self) -> VirtualMemory<'a> {
        self.mem
    }

    /// `task->nsproxy`, `None` for an exited task.
    pub fn task_nsproxy(&self, task: Va) -> Result<Option<Va>, LinuxError> {
        read_pointer(&self.mem, task, self.layout.task_nsproxy, "task_struct")
    }

    /// Reads the nsproxy at `at`.
    pub fn read(&self, at: Va) -> Result<Nsproxy, LinuxError> {
        Ok(Nsproxy {
            buf: StructBuf::read(&self.mem, "nsproxy", at, self.layout.nsproxy_size)?,
        })
    }

    /// The inode number of every namespace `ns` points to, by `/proc/PID/ns` name (a NULL
    /// namespace is left out).
    pub fn inums(&self, ns: &Nsproxy) -> Result<Vec<(&'static str, u64)>, LinuxError> {
        let mut out = Vec::with_capacity(self.layout.fields.len());
        for f in &self.layout.fields {
            if let Some(at) = self.pointer(ns, f.pointer)? {
                out.push((f.kind, self.inum(at, f.inum)?));
            }
        }
        Ok(out)
    }

    /// `ns.inum` of the namespace at `namespace`, whose inode number is at `inum`.
    pub fn inum(&self, namespace: Va, inum: Scalar) -> Result<u64, LinuxError> {
        read_field(&self.mem, namespace, inum, "namespace")
    }

    fn pointer(&self, ns: &Nsproxy, field: Scalar) -> Result<Option<Va>, LinuxError> {
        let p = ns.buf.va(field)?;
        if p.raw() == 0 {
            return Ok(None);
        }
        if !is_kernel_pointer(self.mem.space().mode, p) {
            return Err(ns.buf.corrupt(format!(
                "namespace pointer {p} at offset {:#x} is not an aligned kernel address",
                field.offset
            )));
        }
        Ok(Some(p))
    }

    /// The mount namespace (`nsproxy->mnt_ns`).
    pub fn mnt_ns(&self, ns: &Nsproxy) -> Result<Option<Va>, LinuxError> {
        self.pointer(ns, self.layout.mnt_ns)
    }

    /// The UTS namespace's host name (`uts_ns->name.nodename`).
    pub fn hostname(&self, ns: &Nsproxy) -> Result<Option<String>, LinuxError> {
        let Some(uts) = self.pointer(ns, self.layout.uts_ns)? else {
            return Ok(None);
        };
        let at = uts
            .checked_add(self.layout.uts_nodename)
            .ok_or_else(|| ns.buf.corrupt("uts_ns->name overflows".into()))?;
        let mut name = [0u8; MAX_NODENAME as usize];
        let name = &mut name[..self.layout.uts_nodename_len as usize];
        self.mem.read_exact(at, name)?;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        Ok(Some(String::from_utf8_lossy(&name[..end]).into_owned()))
    }
}
