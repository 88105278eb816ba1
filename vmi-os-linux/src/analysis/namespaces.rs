//! Each process's namespaces, cgroup and pid inside its own PID namespace (`vmi namespaces`):
//! what tells a container's processes from the host's.
//!
//! For every process of the task list (the idle task excluded, as `/proc` excludes it; kernel
//! threads included, since `/proc/2/ns` exists too), read from its group leader:
//!
//! - `/proc/PID/ns/*` inode numbers: the namespaces of `task->nsproxy`
//!   ([`crate::comps::nsproxy`]), `pid` from `task->thread_pid` ([`crate::comps::pid`]),
//!   `user` from `real_cred->user_ns`;
//! - `NSpid:` of `status`: the leader's number in each PID namespace, outermost first;
//! - the cgroup v2 path ([`crate::comps::cgroup`]);
//! - the UTS namespace's host name (`os.hostname`).
//!
//! A part that cannot be read is left out of that process (an empty map, list or path) with a
//! warning; the other parts and processes are still listed.

use std::collections::BTreeMap;

use vmi_core::os::{self, Detail, Details, Namespaces};
use vmi_core::{OsError, Partial, Session, Va};

use crate::comps::cgroup::{task_cgroup_path, CgroupLayout};
use crate::comps::layout::Scalar;
use crate::comps::nsproxy::{read_field, read_pointer, NsproxyLayout, NsproxyReader};
use crate::comps::pid::{task_pid_numbers, PidLayout};
use crate::error::LinuxError;
use crate::kernel::Kernel;
use crate::LinuxOs;

/// The namespaces of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessNamespaces {
    /// Process id (in the initial PID namespace).
    pub pid: u32,
    /// `task->comm`.
    pub name: String,
    /// Whether it is a kernel thread.
    pub kernel_thread: bool,
    /// `/proc/PID/ns` link name to inode number.
    pub namespaces: BTreeMap<String, u64>,
    /// `NSpid:`, the initial namespace's number first.
    pub nspid: Vec<u32>,
    /// The cgroup v2 path (`""` when it could not be read).
    pub cgroup: String,
    /// The UTS namespace's host name, if it has one.
    pub hostname: Option<String>,
    /// The group leader's `task_struct`.
    pub task: Va,
}

struct Readers<'a> {
    nsproxy: NsproxyReader<'a>,
    ns_layout: &'a NsproxyLayout,
    pid: &'a PidLayout,
    cgroup: &'a CgroupLayout,
    real_cred: Scalar,
    cred_user_ns: Scalar,
}

impl Readers<'_> {
    fn process(&self, p: &crate::Process, warnings: &mut Vec<LinuxError>) -> ProcessNamespaces {
        let mem = self.nsproxy.memory();
        let mut out = ProcessNamespaces {
            pid: p.pid,
            name: p.name.clone(),
            kernel_thread: p.kernel_thread,
            namespaces: BTreeMap::new(),
            nspid: Vec::new(),
            cgroup: String::new(),
            hostname: None,
            task: p.task,
        };
        let mut note = |what: &'static str, e: LinuxError| {
            warnings.push(LinuxError::Corrupt {
                what: "task_struct",
                at: p.task,
                reason: format!("pid {}: {what} unreadable: {e}", p.pid),
            })
        };
        match self.nsproxy_part(p.task) {
            Ok(Some((inums, hostname))) => {
                out.namespaces
                    .extend(inums.into_iter().map(|(k, v)| (k.to_owned(), v)));
                out.hostname = hostname;
            }
            Ok(None) => {}
            Err(e) => note("nsproxy", e),
        }
        match task_pid_numbers(&mem, self.pid, p.task) {
            Ok(numbers) => {
                out.nspid = numbers.iter().map(|n| n.nr).collect();
                if let Some(own) = numbers.last() {
                    match self.nsproxy.inum(own.ns, self.ns_layout.pid_ns_inum) {
                        Ok(inum) => {
                            out.namespaces.insert("pid".to_owned(), inum);
                        }
                        Err(e) => note("pid namespace", e),
                    }
                }
            }
            Err(e) => note("thread_pid", e),
        }
        match self.user_ns(p.task) {
            Ok(Some(inum)) => {
                out.namespaces.insert("user".to_owned(), inum);
            }
            Ok(None) => {}
            Err(e) => note("user namespace", e),
        }
        match task_cgroup_path(&mem, self.cgroup, p.task) {
            Ok(Some(path)) => out.cgroup = path,
            Ok(None) => {}
            Err(e) => note("cgroup", e),
        }
        out
    }

    #[allow(clippy::type_complexity)]
    fn nsproxy_part(
        &self,
        task: Va,
    ) -> Result<Option<(Vec<(&'static str, u64)>, Option<String>)>, LinuxError> {
        let Some(at) = self.nsproxy.task_nsproxy(task)? else {
            return Ok(None);
        };
        let ns = self.nsproxy.read(at)?;
        Ok(Some((
            self.nsproxy.inums(&ns)?,
            self.nsproxy.hostname(&ns)?,
        )))
    }

    fn user_ns(&self, task: Va) -> Result<Option<u64>, LinuxError> {
        let mem = self.nsproxy.memory();
        let Some(cred) = read_pointer(&mem, task, self.real_cred, "task_struct")? else {
            return Ok(None);
        };
        let Some(user_ns) = read_pointer(&mem, cred, self.cred_user_ns, "cred")? else {
            return Ok(None);
        };
        read_field(&mem, user_ns, self.ns_layout.user_ns_inum, "user_namespace").map(Some)
    }
}

/// The namespaces, nspid, cgroup and host name of every process, in process-list order
/// (without the idle task).
pub fn namespaces(
    session: &Session,
    kernel: &Kernel,
) -> Result<crate::Partial<ProcessNamespaces>, LinuxError> {
    let profile = kernel.profile();
    let ns_layout = NsproxyLayout::resolve(profile)?;
    let pid = PidLayout::resolve(profile)?;
    let cgroup = CgroupLayout::resolve(profile)?;
    let readers = Readers {
        nsproxy: NsproxyReader::new(kernel.memory(session), &ns_layout),
        ns_layout: &ns_layout,
        pid: &pid,
        cgroup: &cgroup,
        real_cred: Scalar::resolve(profile, "task_struct", "real_cred")?,
        cred_user_ns: Scalar::resolve(profile, "cred", "user_ns")?,
    };
    let ps = crate::processes(session, kernel)?;
    let mut out = crate::Partial {
        items: Vec::with_capacity(ps.items.len()),
        warnings: ps.warnings,
    };
    for p in ps.items.iter().filter(|p| !p.is_idle()) {
        let item = readers.process(p, &mut out.warnings);
        out.items.push(item);
    }
    Ok(out)
}

impl Namespaces for LinuxOs {
    fn namespaces(&self, session: &Session) -> Result<Partial<os::ProcessNamespaces>, OsError> {
        self.neutral_partial(namespaces(session, self.kernel()), |p| {
            let mut details = Details::new();
            if let Some(h) = p.hostname {
                details.insert("hostname", Detail::Text(h));
            }
            details.insert("kernel_thread", Detail::Bool(p.kernel_thread));
            details.insert("task", Detail::Address(p.task));
            os::ProcessNamespaces {
                pid: p.pid,
                name: p.name,
                namespaces: p.namespaces,
                nspid: p.nspid,
                cgroup: p.cgroup,
                os: details,
            }
        })
    }
}
