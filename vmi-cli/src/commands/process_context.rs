//! Where a process runs and with what rights: `vmi mounts PID`, `vmi namespaces
//! [--containers]`, `vmi creds PID`, through the OS-neutral [`vmi_core::os::Mounts`],
//! [`vmi_core::os::Namespaces`] and [`vmi_core::os::ProcessCredentials`] capabilities.
//!
//! Tables: `mounts` prints mountinfo's lines (without the super options the OS cannot
//! render); `namespaces` one row per process (pid, name, nspid, cgroup and the pid, mnt, net
//! and uts namespaces), or with `--containers` one group per distinct (pid, mnt, net, uts
//! namespace, cgroup) with its host name and processes: the container view; `creds` the
//! `status` lines. JSON: the neutral records, or the groups.

use std::collections::BTreeMap;

use serde::Serialize;
use vmi_core::os::{Credentials, Mount, ProcessNamespaces};
use vmi_core::BoxError;

use super::os::warn;
use super::Context;
use crate::output;

/// Arguments of `vmi mounts`.
#[derive(Debug, clap::Args)]
pub struct MountsArgs {
    /// The process whose mount namespace to list.
    pid: u32,
}

/// Arguments of `vmi creds`.
#[derive(Debug, clap::Args)]
pub struct CredsArgs {
    /// The process.
    pid: u32,
}

/// Arguments of `vmi namespaces`.
#[derive(Debug, clap::Args)]
pub struct NamespacesArgs {
    /// Group processes by their (pid, mnt, net, uts) namespaces and cgroup: one group per
    /// container (the host is a group too).
    #[arg(long)]
    containers: bool,
}

/// One mount as a mountinfo line, up to the fs type and source.
fn mountinfo_line(m: &Mount) -> String {
    let tags = match m.os.get("propagation") {
        Some(p) => format!(" {p}"),
        None => String::new(),
    };
    format!(
        "{} {} {} {} {} {}{} - {} {}\n",
        m.id, m.parent_id, m.device, m.root, m.mount_point, m.options, tags, m.fs_type, m.source
    )
}

/// `vmi mounts PID`.
pub fn mounts(ctx: &Context<'_>, args: &MountsArgs) -> Result<(), BoxError> {
    let mounts = ctx.session.os_capability("mounts", |os| os.mounts())?;
    let partial = mounts.mounts(ctx.session, args.pid)?;
    warn(&partial);
    output::emit(ctx.format, &partial.items, || {
        partial.items.iter().map(mountinfo_line).collect()
    })
}

/// The namespace kinds the table shows, in its column order.
const TABLE_KINDS: [&str; 4] = ["pid", "mnt", "net", "uts"];

fn inode(p: &ProcessNamespaces, kind: &str) -> String {
    p.namespaces
        .get(kind)
        .map_or("-".to_owned(), u64::to_string)
}

fn nspid(p: &ProcessNamespaces) -> String {
    let ids: Vec<String> = p.nspid.iter().map(u32::to_string).collect();
    if ids.is_empty() {
        "-".to_owned()
    } else {
        ids.join(",")
    }
}

/// A container: processes sharing their pid, mnt, net and uts namespaces and cgroup.
#[derive(Debug, Serialize)]
struct Container {
    /// The shared namespaces' inode numbers by kind (a kind the processes lack is absent).
    namespaces: BTreeMap<String, u64>,
    /// The shared cgroup path.
    cgroup: String,
    /// The host name of the group's first process (its UTS namespace's), if the OS has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    /// The processes, in process-list order.
    processes: Vec<Member>,
}

#[derive(Debug, Serialize)]
struct Member {
    pid: u32,
    name: String,
    nspid: Vec<u32>,
}

type ContainerKey = (Vec<Option<u64>>, String);

fn containers(items: &[ProcessNamespaces]) -> Vec<Container> {
    let mut order: Vec<ContainerKey> = Vec::new();
    let mut groups: BTreeMap<ContainerKey, Container> = BTreeMap::new();
    for p in items {
        let key: ContainerKey = (
            TABLE_KINDS
                .iter()
                .map(|k| p.namespaces.get(*k).copied())
                .collect(),
            p.cgroup.clone(),
        );
        let group = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Container {
                namespaces: TABLE_KINDS
                    .iter()
                    .filter_map(|k| Some((k.to_string(), *p.namespaces.get(*k)?)))
                    .collect(),
                cgroup: p.cgroup.clone(),
                hostname: p.os.get("hostname").map(ToString::to_string),
                processes: Vec::new(),
            }
        });
        group.processes.push(Member {
            pid: p.pid,
            name: p.name.clone(),
            nspid: p.nspid.clone(),
        });
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .collect()
}

fn containers_table(groups: &[Container]) -> String {
    let mut out = String::new();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let ns: Vec<String> = TABLE_KINDS
            .iter()
            .map(|k| {
                let v = g.namespaces.get(*k).map_or("-".to_owned(), u64::to_string);
                format!("{k}:{v}")
            })
            .collect();
        out.push_str(&format!(
            "hostname {}  cgroup {}  {}  ({} processes)\n",
            g.hostname.as_deref().unwrap_or("-"),
            if g.cgroup.is_empty() { "-" } else { &g.cgroup },
            ns.join(" "),
            g.processes.len()
        ));
        let rows: Vec<Vec<String>> = g
            .processes
            .iter()
            .map(|m| {
                let ids: Vec<String> = m.nspid.iter().map(u32::to_string).collect();
                vec![
                    format!("  {}", m.pid),
                    if ids.is_empty() {
                        "-".to_owned()
                    } else {
                        ids.join(",")
                    },
                    m.name.clone(),
                ]
            })
            .collect();
        out.push_str(&output::columns(&["  pid", "nspid", "name"], &rows));
    }
    out
}

/// `vmi namespaces [--containers]`.
pub fn namespaces(ctx: &Context<'_>, args: &NamespacesArgs) -> Result<(), BoxError> {
    let namespaces = ctx
        .session
        .os_capability("namespaces", |os| os.namespaces())?;
    let partial = namespaces.namespaces(ctx.session)?;
    warn(&partial);
    if args.containers {
        let groups = containers(&partial.items);
        return output::emit(ctx.format, &groups, || containers_table(&groups));
    }
    output::emit(ctx.format, &partial.items, || {
        let rows: Vec<Vec<String>> = partial
            .items
            .iter()
            .map(|p| {
                let mut row = vec![
                    p.pid.to_string(),
                    p.name.clone(),
                    nspid(p),
                    if p.cgroup.is_empty() {
                        "-".to_owned()
                    } else {
                        p.cgroup.clone()
                    },
                ];
                row.extend(TABLE_KINDS.iter().map(|k| inode(p, k)));
                row
            })
            .collect();
        output::columns(
            &[
                "pid", "name", "nspid", "cgroup", "pid_ns", "mnt_ns", "net_ns", "uts_ns",
            ],
            &rows,
        )
    })
}

fn ids(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join("\t")
}

/// The credentials as `/proc/PID/status` prints them.
fn status_lines(c: &Credentials) -> String {
    let caps = &c.capabilities;
    let groups: String = c.groups.iter().map(|g| format!("{g} ")).collect();
    let mut out = format!(
        "Pid:\t{}\nUid:\t{}\nGid:\t{}\nGroups:\t{}\nCapInh:\t{:016x}\nCapPrm:\t{:016x}\n\
         CapEff:\t{:016x}\nCapBnd:\t{:016x}\nCapAmb:\t{:016x}\nNoNewPrivs:\t{}\nSeccomp:\t{}\n",
        c.pid,
        ids(&c.uid),
        ids(&c.gid),
        groups,
        caps.inheritable,
        caps.permitted,
        caps.effective,
        caps.bounding,
        caps.ambient,
        u8::from(c.no_new_privs),
        c.seccomp
    );
    for (k, v) in &c.os {
        out.push_str(&format!("{k}:\t{v}\n"));
    }
    out
}

/// `vmi creds PID`.
pub fn creds(ctx: &Context<'_>, args: &CredsArgs) -> Result<(), BoxError> {
    let creds = ctx
        .session
        .os_capability("credentials", |os| os.credentials())?;
    let c = creds.credentials(ctx.session, args.pid)?;
    output::emit(ctx.format, &c, || status_lines(&c))
}
