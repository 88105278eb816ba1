//! `hidden-tasks` (Linux): a cross-view of the process list. A process is on two structures:
//! the task list (`init_task.tasks`, what `ps`-style walks see) and the PID namespace's IDR
//! (`init_pid_ns.idr`, an xarray of `struct pid` whose `tasks[PIDTYPE_PID]` leads to the task).
//! Unlinking a task from the list hides it from list walkers but not from the IDR: every
//! thread-group leader in the IDR that is not on the list is flagged, and so is every listed
//! task the IDR does not know.
//!
//! All layout comes from the host (symbol and field lookups); nothing is hard-coded but the
//! xarray's node encoding (`XA_CHUNK_SIZE` 64, internal entries tagged `0b10`), which is part
//! of the kernel's ABI for radix trees since 4.20.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use vmi_plugin_api::{Analysis, Cell, Host, HostError, PluginError, Space, Table};

/// Most tasks or tree nodes visited (real guests have thousands at most).
const MAX_VISITS: usize = 1 << 20;
/// Slots per xarray node (`XA_CHUNK_SIZE` without `CONFIG_BASE_SMALL`).
const XA_CHUNK: u64 = 64;

/// The plugin.
#[derive(Debug, Default)]
pub struct HiddenTasks;

/// Offsets the analysis uses, all from the host.
#[derive(Debug, Clone)]
pub struct Layout {
    tasks: u64,
    pid: u64,
    tgid: u64,
    comm: u64,
    pid_links: u64,
    pid_tasks: u64,
    ns_idr: u64,
    xa_head: u64,
    node_shift: u64,
    node_slots: u64,
}

impl Layout {
    /// Looks every offset up.
    pub fn resolve(host: &Host<'_>) -> Result<Layout, HostError> {
        let f = |t: &str, n: &str| host.field_offset(t, n);
        Ok(Layout {
            tasks: f("task_struct", "tasks")?,
            pid: f("task_struct", "pid")?,
            tgid: f("task_struct", "tgid")?,
            comm: f("task_struct", "comm")?,
            pid_links: f("task_struct", "pid_links")?,
            pid_tasks: f("pid", "tasks")?,
            ns_idr: f("pid_namespace", "idr")?.saturating_add(f("idr", "idr_rt")?),
            xa_head: f("xarray", "xa_head")?,
            node_shift: f("xa_node", "shift")?,
            node_slots: f("xa_node", "slots")?,
        })
    }

    fn rows(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("task_struct.tasks", self.tasks),
            ("task_struct.pid", self.pid),
            ("task_struct.tgid", self.tgid),
            ("task_struct.comm", self.comm),
            ("task_struct.pid_links", self.pid_links),
            ("pid.tasks", self.pid_tasks),
            ("pid_namespace.idr.idr_rt", self.ns_idr),
            ("xarray.xa_head", self.xa_head),
            ("xa_node.shift", self.node_shift),
            ("xa_node.slots", self.node_slots),
        ]
    }
}

/// A task as one view saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// `task->pid`.
    pub pid: u32,
    /// `task->tgid`.
    pub tgid: u32,
    /// `task->comm`.
    pub name: String,
    /// The `task_struct`.
    pub task: u64,
}

fn read_task(host: &Host<'_>, l: &Layout, task: u64) -> Result<Task, HostError> {
    Ok(Task {
        pid: host.read_u32(Space::Kernel, task.wrapping_add(l.pid))?,
        tgid: host.read_u32(Space::Kernel, task.wrapping_add(l.tgid))?,
        name: host.read_cstr(Space::Kernel, task.wrapping_add(l.comm), 16)?,
        task,
    })
}

/// The task list from `init_task`, by `task_struct` address.
pub fn task_list(host: &Host<'_>, l: &Layout) -> Result<BTreeMap<u64, Task>, PluginError> {
    let init = host.symbol("init_task")?;
    let head = init.wrapping_add(l.tasks);
    let mut out = BTreeMap::new();
    out.insert(init, read_task(host, l, init)?);
    let mut seen = HashSet::new();
    let mut cur = host.read_u64(Space::Kernel, head)?;
    while cur != head {
        if !seen.insert(cur) || seen.len() > MAX_VISITS {
            return Err(PluginError::target(format!(
                "task list is cyclic or unbounded at {cur:#x}"
            )));
        }
        let task = cur.wrapping_sub(l.tasks);
        out.insert(task, read_task(host, l, task)?);
        cur = host.read_u64(Space::Kernel, cur)?;
    }
    Ok(out)
}

/// The tasks the PID IDR leads to (`pid->tasks[PIDTYPE_PID]`), by `task_struct` address.
pub fn idr_tasks(host: &Host<'_>, l: &Layout) -> Result<BTreeMap<u64, Task>, PluginError> {
    let ns = host.symbol("init_pid_ns")?;
    let root = host.read_u64(
        Space::Kernel,
        ns.wrapping_add(l.ns_idr).wrapping_add(l.xa_head),
    )?;
    let mut pids = Vec::new();
    let mut stack = vec![root];
    let mut visits = 0usize;
    let mut seen = HashSet::new();
    while let Some(entry) = stack.pop() {
        visits += 1;
        if visits > MAX_VISITS {
            return Err(PluginError::target("PID IDR too large or cyclic"));
        }
        if entry == 0 || entry & 1 == 1 {
            continue; // empty slot or a value entry
        }
        if entry & 3 == 2 {
            if entry <= 4096 {
                continue; // retry/sibling entries
            }
            let node = entry - 2;
            if !seen.insert(node) {
                return Err(PluginError::target(format!(
                    "PID IDR node {node:#x} seen twice"
                )));
            }
            let mut slots = vec![0u8; usize::try_from(XA_CHUNK * 8).unwrap_or(512)];
            host.read(Space::Kernel, node.wrapping_add(l.node_slots), &mut slots)?;
            for c in slots.chunks_exact(8) {
                stack.push(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
            }
            continue;
        }
        pids.push(entry);
    }
    let mut out = BTreeMap::new();
    for pid in pids {
        let first = host.read_u64(Space::Kernel, pid.wrapping_add(l.pid_tasks))?;
        if first == 0 {
            continue; // a pid no task uses as its PID (a pgid or sid only)
        }
        let task = first.wrapping_sub(l.pid_links);
        if let Ok(t) = read_task(host, l, task) {
            out.insert(task, t);
        }
    }
    Ok(out)
}

impl Analysis for HiddenTasks {
    fn name(&self) -> &str {
        "hidden-tasks"
    }
    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }
    fn description(&self) -> &str {
        "Linux: processes in the PID IDR but not on the task list (and the reverse)"
    }
    fn usage(&self) -> &str {
        "hidden-tasks [--all | --offsets]   (--all: every process with both views; --offsets: the layout used)"
    }
    fn run(&self, host: &Host<'_>, args: &[String]) -> Result<Table, PluginError> {
        let (mut all, mut offsets) = (false, false);
        for a in args {
            match a.as_str() {
                "--all" => all = true,
                "--offsets" => offsets = true,
                _ => return Err(PluginError::usage(self.usage())),
            }
        }
        let l = Layout::resolve(host)?;
        if offsets {
            let mut t = Table::new(&["field", "offset"]);
            for (name, off) in l.rows() {
                t.push(vec![
                    Cell::text(name),
                    Cell::int(i64::try_from(off).unwrap_or(-1)),
                ]);
            }
            return Ok(t);
        }
        let listed = task_list(host, &l)?;
        let indexed = idr_tasks(host, &l)?;
        let mut t = Table::new(&["pid", "name", "task", "task_list", "pid_idr", "status"]);
        let leaders: BTreeSet<u64> = listed
            .keys()
            .chain(
                indexed
                    .iter()
                    .filter(|(_, t)| t.pid == t.tgid)
                    .map(|(a, _)| a),
            )
            .copied()
            .collect();
        let mut rows: Vec<(u32, Vec<Cell>)> = Vec::new();
        for addr in leaders {
            let task = listed.get(&addr).or_else(|| indexed.get(&addr));
            let Some(task) = task else { continue };
            let (on_list, in_idr) = (listed.contains_key(&addr), indexed.contains_key(&addr));
            let status = match (on_list, in_idr) {
                (true, true) => "ok",
                (false, true) => "HIDDEN: in the PID IDR, not on the task list",
                // pid 0 (init_task) has no struct pid of its own.
                (true, false) if task.pid == 0 => "ok",
                (true, false) => "SUSPICIOUS: on the task list, not in the PID IDR",
                (false, false) => continue,
            };
            if !all && status == "ok" {
                continue;
            }
            rows.push((
                task.pid,
                vec![
                    Cell::from(task.pid),
                    Cell::text(task.name.clone()),
                    Cell::address(addr),
                    Cell::text(if on_list { "yes" } else { "no" }),
                    Cell::text(if in_idr { "yes" } else { "no" }),
                    Cell::text(status),
                ],
            ));
        }
        rows.sort_by_key(|(pid, _)| *pid);
        for (_, row) in rows {
            t.push(row);
        }
        Ok(t)
    }
}

vmi_plugin_api::export_plugin!(HiddenTasks::default);
