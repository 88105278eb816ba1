//! `struct cred`, `struct group_info` and a task's seccomp and `no_new_privs` state: what
//! `/proc/PID/status` shows as `Uid:`, `Gid:`, `Groups:`, `Cap*:`, `NoNewPrivs:` and
//! `Seccomp:`.
//!
//! `status` reads `task->real_cred` (the objective credentials; `task->cred` differs only
//! while the task overrides them for an access check). Capability sets are `kernel_cap_t`:
//! `{u32 cap[2]}` up to 6.2, `{u64 val}` from 6.3; the layout is read from BTF, not assumed.
//! Supplementary groups are `group_info->gid[ngroups]`, capped at [`NGROUPS_MAX`] (more is
//! corruption: the kernel refuses it in `setgroups`). `no_new_privs` is bit
//! [`PFA_NO_NEW_PRIVS`] of `task->atomic_flags`; the seccomp mode is `task->seccomp.mode`.
//! The ids are those of the initial user namespace (a reader there sees them unmapped).

use vmi_core::profile::TypeRef;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{struct_size, unexpected_layout, Scalar, StructBuf};
use crate::comps::nsproxy::{read_field, read_pointer};
use crate::error::LinuxError;

/// `NGROUPS_MAX` (include/uapi/linux/limits.h): the most supplementary groups a task has.
pub const NGROUPS_MAX: u64 = 65536;

/// `PFA_NO_NEW_PRIVS` (include/linux/sched.h): its bit in `task->atomic_flags`.
pub const PFA_NO_NEW_PRIVS: u32 = 0;

/// Where one `kernel_cap_t` is and how it is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapField {
    /// `{u64 val}` (6.3 and later): the set is one integer.
    U64(Scalar),
    /// `{u32 cap[2]}` (before 6.3): low word first.
    U32Pair {
        /// Offset of `cap[0]` in `struct cred`.
        offset: u64,
    },
}

impl CapField {
    fn resolve(profile: &Profile, field: &str) -> Result<CapField, ProfileError> {
        let f = profile.field("cred", field)?;
        let ty = match &f.ty {
            TypeRef::Struct(n) => n.clone(),
            _ => {
                return Err(unexpected_layout(
                    "cred",
                    field,
                    "not a kernel_cap_t struct",
                ))
            }
        };
        if let Ok(val) = Scalar::resolve(profile, &ty, "val") {
            return Ok(CapField::U64(Scalar {
                offset: f
                    .offset
                    .checked_add(val.offset)
                    .ok_or_else(|| unexpected_layout("cred", field, "overflow"))?,
                ..val
            }));
        }
        let cap = profile.field(&ty, "cap")?;
        match &cap.ty {
            TypeRef::Array { count: 2, element } if profile.type_size(element) == Some(4) => {
                Ok(CapField::U32Pair {
                    offset: f
                        .offset
                        .checked_add(cap.offset)
                        .ok_or_else(|| unexpected_layout("cred", field, "overflow"))?,
                })
            }
            _ => Err(unexpected_layout(
                &ty,
                "cap",
                "neither u64 val nor u32 cap[2]",
            )),
        }
    }

    fn get(&self, buf: &StructBuf) -> Result<u64, LinuxError> {
        match *self {
            CapField::U64(s) => buf.get(s),
            CapField::U32Pair { offset } => {
                let word = |i: u64| Scalar {
                    offset: offset + 4 * i,
                    size: 4,
                    bits: None,
                };
                Ok(buf.get(word(0))? | buf.get(word(1))? << 32)
            }
        }
    }
}

/// Where the fields of `cred`, `group_info` and the task's security state are.
#[derive(Debug, Clone)]
pub struct CredLayout {
    task_real_cred: Scalar,
    task_seccomp_mode: Scalar,
    task_atomic_flags: Scalar,
    cred_size: usize,
    /// uid, euid, suid, fsuid (the order of `status`).
    uids: [Scalar; 4],
    /// gid, egid, sgid, fsgid.
    gids: [Scalar; 4],
    securebits: Scalar,
    /// inheritable, permitted, effective, bounding, ambient.
    caps: [CapField; 5],
    user_ns: Scalar,
    group_info: Scalar,
    ngroups: Scalar,
    groups: u64,
}

impl CredLayout {
    /// Resolves the layout from the profile.
    pub fn resolve(profile: &Profile) -> Result<CredLayout, ProfileError> {
        let id = |f: &str| {
            let wrapper = if f.ends_with("uid") {
                "kuid_t"
            } else {
                "kgid_t"
            };
            let outer = profile.field_offset("cred", f)?;
            let val = Scalar::resolve(profile, wrapper, "val")?;
            Ok::<_, ProfileError>(Scalar {
                offset: outer
                    .checked_add(val.offset)
                    .ok_or_else(|| unexpected_layout("cred", f, "overflow"))?,
                ..val
            })
        };
        let cap = |f: &str| CapField::resolve(profile, f);
        Ok(CredLayout {
            task_real_cred: Scalar::resolve(profile, "task_struct", "real_cred")?,
            task_seccomp_mode: Scalar::resolve_nested(profile, "task_struct", "seccomp", "mode")?,
            task_atomic_flags: Scalar::resolve(profile, "task_struct", "atomic_flags")?,
            cred_size: struct_size(profile, "cred")?,
            uids: [id("uid")?, id("euid")?, id("suid")?, id("fsuid")?],
            gids: [id("gid")?, id("egid")?, id("sgid")?, id("fsgid")?],
            securebits: Scalar::resolve(profile, "cred", "securebits")?,
            caps: [
                cap("cap_inheritable")?,
                cap("cap_permitted")?,
                cap("cap_effective")?,
                cap("cap_bset")?,
                cap("cap_ambient")?,
            ],
            user_ns: Scalar::resolve(profile, "cred", "user_ns")?,
            group_info: Scalar::resolve(profile, "cred", "group_info")?,
            ngroups: Scalar::resolve(profile, "group_info", "ngroups")?,
            groups: profile.field_offset("group_info", "gid")?,
        })
    }
}

/// A task's credentials and security state as `status` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCreds {
    /// Real, effective, saved, filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved, filesystem gid.
    pub gid: [u32; 4],
    /// Supplementary groups, in the kernel's (sorted) order.
    pub groups: Vec<u32>,
    /// Inheritable, permitted, effective, bounding, ambient capability sets.
    pub caps: [u64; 5],
    /// `cred->securebits`.
    pub securebits: u32,
    /// `cred->user_ns`.
    pub user_ns: Va,
    /// `task->seccomp.mode`: 0 disabled, 1 strict, 2 filter.
    pub seccomp: u8,
    /// `no_new_privs`.
    pub no_new_privs: bool,
    /// The `struct cred` read.
    pub cred: Va,
}

/// Reads the credentials of `task`; a problem with its groups (absurd `ngroups`, unreadable
/// array) keeps what could be read and adds a warning.
pub fn task_creds(
    mem: &VirtualMemory<'_>,
    layout: &CredLayout,
    task: Va,
    warnings: &mut Vec<LinuxError>,
) -> Result<TaskCreds, LinuxError> {
    let cred = read_pointer(mem, task, layout.task_real_cred, "task_struct")?.ok_or_else(|| {
        LinuxError::Corrupt {
            what: "task_struct",
            at: task,
            reason: "NULL real_cred".into(),
        }
    })?;
    let buf = StructBuf::read(mem, "cred", cred, layout.cred_size)?;
    let mut uid = [0u32; 4];
    let mut gid = [0u32; 4];
    for i in 0..4 {
        uid[i] = buf.get(layout.uids[i])? as u32;
        gid[i] = buf.get(layout.gids[i])? as u32;
    }
    let mut caps = [0u64; 5];
    for (c, f) in caps.iter_mut().zip(&layout.caps) {
        *c = f.get(&buf)?;
    }
    let group_info = buf.va(layout.group_info)?;
    let groups = if group_info.raw() == 0 {
        Vec::new()
    } else {
        groups(mem, layout, group_info, warnings)
    };
    let seccomp = read_field(mem, task, layout.task_seccomp_mode, "task_struct")?;
    let atomic_flags = read_field(mem, task, layout.task_atomic_flags, "task_struct")?;
    Ok(TaskCreds {
        uid,
        gid,
        groups,
        caps,
        securebits: buf.get(layout.securebits)? as u32,
        user_ns: buf.va(layout.user_ns)?,
        seccomp: u8::try_from(seccomp).unwrap_or(u8::MAX),
        no_new_privs: atomic_flags >> PFA_NO_NEW_PRIVS & 1 != 0,
        cred,
    })
}

/// `group_info->gid[0..ngroups]`, at most [`NGROUPS_MAX`], read a page at a time.
fn groups(
    mem: &VirtualMemory<'_>,
    layout: &CredLayout,
    group_info: Va,
    warnings: &mut Vec<LinuxError>,
) -> Vec<u32> {
    let corrupt = |reason: String| LinuxError::Corrupt {
        what: "group_info",
        at: group_info,
        reason,
    };
    let n = match read_field(mem, group_info, layout.ngroups, "group_info") {
        Ok(n) => n as u32 as i32,
        Err(e) => {
            warnings.push(e);
            return Vec::new();
        }
    };
    if n < 0 {
        warnings.push(corrupt(format!("ngroups {n} is negative")));
        return Vec::new();
    }
    let mut n = n as u64;
    if n > NGROUPS_MAX {
        warnings.push(corrupt(format!(
            "ngroups {n} is above NGROUPS_MAX ({NGROUPS_MAX}): only the first {NGROUPS_MAX} read"
        )));
        n = NGROUPS_MAX;
    }
    let Some(start) = group_info.checked_add(layout.groups) else {
        warnings.push(corrupt("gid[] lies beyond the address space".into()));
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut done = 0u64;
    while done < n {
        let want = ((n - done) * 4).min(chunk.len() as u64) as usize;
        let at = start.checked_add(done * 4);
        match at.map(|at| mem.read_exact(at, &mut chunk[..want])) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                warnings.push(corrupt(format!(
                    "gid[] unreadable after {done} of {n} groups: {e}"
                )));
                break;
            }
            None => break,
        }
        out.extend(
            chunk[..want]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        done += want as u64 / 4;
    }
    out
}
