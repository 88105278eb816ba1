//! What the OS-neutral analyses return: the fields every OS has, plus an `os` map of what only
//! one OS has (in JSON, an `os` object), so a script written for one OS reads the common
//! fields of another.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::addr::{Pa, Va};

/// An OS-specific fact about an item, kept under its `os` map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// A yes/no fact (`wow64`).
    Bool(bool),
    /// A count or id (`session`, `inode`).
    Int(u64),
    /// A guest virtual address (`task`, `eprocess`), as `"0x..."` in JSON.
    Address(Va),
    /// Text (`image_path`, `create_time`).
    Text(String),
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Detail::Bool(b) => write!(f, "{b}"),
            Detail::Int(n) => write!(f, "{n}"),
            Detail::Address(va) => write!(f, "{va}"),
            Detail::Text(s) => f.write_str(s),
        }
    }
}

/// OS-specific facts of an item, by name (sorted, so JSON output is stable).
pub type Details = BTreeMap<&'static str, Detail>;

/// A process, as `vmi ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Parent's process id (0 when it has none).
    pub ppid: u32,
    /// Short name: Linux `comm` (15 bytes), Windows `ImageFileName` (14).
    pub name: String,
    /// Real user id, where the OS has numeric ids (not on Windows, which has SIDs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Real group id, where the OS has numeric ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Root of the process's page tables (the kernel root of a PTI or KVA-shadow pair, which
    /// maps user memory too); `None` when it has no address space of its own.
    pub dtb: Option<Pa>,
    /// Threads in the process.
    pub threads: u32,
    /// Whether it is the kernel's own (a Linux kernel thread, Windows' System): no user space.
    pub kernel_thread: bool,
    /// When it started, in nanoseconds: since boot on Linux, since the Unix epoch on Windows
    /// (`os.create_time` has the OS's own form).
    pub start_time: u64,
    /// The kernel object that describes it (Linux `task_struct`, Windows `_EPROCESS`).
    pub object: Va,
    /// What only this OS has (Linux `mm`; Windows `image_path`, `wow64`, ...).
    pub os: Details,
}

/// A thread of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thread {
    /// Thread id.
    pub tid: u32,
    /// Id of the process it belongs to.
    pub pid: u32,
    /// The thread's own name, where the OS keeps one (Linux `comm`).
    pub name: String,
    /// When it started, in nanoseconds, on the clock of [`Process::start_time`].
    pub start_time: u64,
    /// The kernel object that describes it (Linux `task_struct`, Windows `_ETHREAD`).
    pub object: Va,
    /// What only this OS has (Linux `start_boottime`; Windows `teb`).
    pub os: Details,
}

/// A kernel module (`vmi modules`) or a module loaded in a process (`vmi modules --pid N`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Module {
    /// File name (`ext4`, `ntoskrnl.exe`, `kernel32.dll`).
    pub name: String,
    /// Where its image starts.
    pub base: Va,
    /// Its size in bytes.
    pub size: u64,
    /// Its full path, where the OS records one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What only this OS has.
    #[serde(skip_serializing_if = "Details::is_empty")]
    pub os: Details,
}

/// A range of a process's virtual memory (`vmi maps PID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    /// First address.
    pub start: Va,
    /// One past the last address.
    pub end: Va,
    /// `r`/`-`, `w`/`-`, `x`/`-`, then `s` (shared) or `p` (private), as `/proc/PID/maps`.
    pub perms: String,
    /// Offset into the mapped file in bytes (0 when anonymous).
    pub offset: u64,
    /// The mapped file's path, a pseudo-name (`[heap]`, `[stack]`), or `""` when anonymous.
    pub path: String,
    /// What only this OS has (Linux `inode`; Windows `vad`, `protection`).
    pub os: Details,
}

/// A record of the kernel's log (`vmi dmesg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRecord {
    /// Sequence number (0 for the first record since boot).
    pub seq: u64,
    /// Time since boot in nanoseconds.
    pub timestamp_ns: u64,
    /// Severity, 0 (emergency) to 7 (debug), syslog's scale.
    pub level: u8,
    /// The message.
    pub text: String,
    /// What only this OS has (Linux `facility`).
    #[serde(skip_serializing_if = "Details::is_empty")]
    pub os: Details,
}

/// The most levels of a [`process_tree`]: deeper processes start a new root, so that hostile
/// parent links cannot make the tree (and the recursion that builds, prints or drops it)
/// arbitrarily deep. Real trees are a few levels deep.
pub const MAX_TREE_DEPTH: usize = 512;

/// A process and its children (`vmi pstree`). In JSON the process's fields come first, then
/// `children`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeNode {
    /// The process.
    #[serde(flatten)]
    pub process: Process,
    /// Its children, sorted by pid.
    pub children: Vec<TreeNode>,
}

/// Arranges `processes` by parent: each process under the first listed process whose pid is
/// its ppid; roots (and children) sorted by pid.
///
/// On a Linux process list (without the idle task, as [`crate::os::Processes`] gives it) the
/// roots are `init` (1) and `kthreadd` (2); on Windows, System (4) and the processes whose
/// parent has exited. Parent links are guest data: a process that is its own parent
/// or part of a cycle, or that would lie deeper than [`MAX_TREE_DEPTH`], becomes a root, so
/// every process appears exactly once.
pub fn process_tree(processes: &[Process]) -> Vec<TreeNode> {
    let n = processes.len();
    let mut by_pid: rustc_hash::FxHashMap<u32, usize> = Default::default();
    for (i, p) in processes.iter().enumerate() {
        by_pid.entry(p.pid).or_insert(i);
    }
    let mut parent: Vec<Option<usize>> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| by_pid.get(&p.ppid).copied().filter(|&j| j != i))
        .collect();

    // Depth of every node, iteratively; cycles and too-deep chains are cut by making the
    // node a root.
    const UNSEEN: usize = usize::MAX;
    const ON_PATH: usize = usize::MAX - 1;
    let mut depth = vec![UNSEEN; n];
    let mut path = Vec::new();
    for start in 0..n {
        let mut cur = start;
        let base = loop {
            match depth[cur] {
                UNSEEN => {
                    depth[cur] = ON_PATH;
                    path.push(cur);
                    match parent[cur] {
                        Some(p) => cur = p,
                        None => break 0,
                    }
                }
                ON_PATH => {
                    // `cur` closes a cycle: its child on the path becomes a root.
                    let Some(&child) = path.last() else { break 0 };
                    parent[child] = None;
                    break 0;
                }
                d => break d + 1,
            }
        };
        // The path runs from `start` up to its topmost new node, whose depth is `base`.
        let mut d = base;
        for &node in path.iter().rev() {
            if d >= MAX_TREE_DEPTH {
                parent[node] = None;
                d = 0;
            }
            depth[node] = d;
            d += 1;
        }
        path.clear();
    }

    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, up) in parent.iter().enumerate() {
        match *up {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    let key = |&i: &usize| (processes[i].pid, i);
    for c in &mut children {
        c.sort_by_key(key);
    }
    roots.sort_by_key(key);

    fn build(i: usize, processes: &[Process], children: &[Vec<usize>]) -> TreeNode {
        TreeNode {
            process: processes[i].clone(),
            children: children[i]
                .iter()
                .map(|&c| build(c, processes, children))
                .collect(),
        }
    }
    roots
        .into_iter()
        .map(|r| build(r, processes, &children))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32) -> Process {
        Process {
            pid,
            ppid,
            name: format!("p{pid}"),
            uid: None,
            gid: None,
            dtb: None,
            threads: 1,
            kernel_thread: false,
            start_time: 0,
            object: Va::new(0),
            os: Details::new(),
        }
    }

    fn shape(nodes: &[TreeNode]) -> String {
        nodes
            .iter()
            .map(|n| {
                if n.children.is_empty() {
                    n.process.pid.to_string()
                } else {
                    format!("{}({})", n.process.pid, shape(&n.children))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn count(nodes: &[TreeNode]) -> usize {
        nodes.iter().map(|n| 1 + count(&n.children)).sum()
    }

    #[test]
    fn ordinary_tree() {
        let ps = [
            p(0, 0),
            p(2, 0),
            p(1, 0),
            p(10, 2),
            p(5, 1),
            p(7, 1),
            p(6, 5),
        ];
        assert_eq!(shape(&process_tree(&ps)), "0(1(5(6) 7) 2(10))");
        // Without pid 0, the /proc view: two roots.
        assert_eq!(shape(&process_tree(&ps[1..])), "1(5(6) 7) 2(10)");
        // An orphan whose parent is not listed is a root.
        assert_eq!(shape(&process_tree(&[p(3, 99), p(1, 0)])), "1 3");
    }

    #[test]
    fn hostile_parent_links() {
        // A cycle 1 -> 2 -> 3 -> 1 and a self-parent: everything appears once.
        let ps = [p(1, 3), p(2, 1), p(3, 2), p(4, 4), p(5, 2)];
        let t = process_tree(&ps);
        assert_eq!(count(&t), ps.len());
        assert_eq!(shape(&t), "2(3(1) 5) 4");
        // Duplicate pids: the first is the parent; both appear.
        let ps = [p(1, 0), p(1, 0), p(2, 1)];
        assert_eq!(count(&process_tree(&ps)), 3);
        // A chain far deeper than the bound.
        let ps: Vec<Process> = (1..5000).map(|i| p(i, i - 1)).collect();
        let t = process_tree(&ps);
        assert_eq!(count(&t), ps.len());
        fn depth(nodes: &[TreeNode]) -> usize {
            nodes
                .iter()
                .map(|n| 1 + depth(&n.children))
                .max()
                .unwrap_or(0)
        }
        assert!(depth(&t) <= MAX_TREE_DEPTH);
    }

    #[test]
    fn json_field_names() {
        let mut proc = p(42, 1);
        proc.dtb = Some(Pa::new(0x1234000));
        proc.object = Va::new(0xffff_8880_0100_0000);
        proc.start_time = 5;
        let v = serde_json::to_value(&proc).unwrap();
        assert_eq!(v["dtb"], "0x1234000");
        assert_eq!(v["start_time"], 5);
        assert_eq!(v["object"], "0xffff888001000000");
        // An OS without numeric ids leaves them out rather than printing a made-up 0.
        assert!(v.get("uid").is_none());
        let tree = serde_json::to_value(process_tree(&[proc])).unwrap();
        assert_eq!(tree[0]["pid"], 42);
        assert!(tree[0]["children"].as_array().unwrap().is_empty());
    }
}
