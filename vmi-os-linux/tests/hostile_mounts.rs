//! Hostile mount namespaces, credentials and cgroups: real dumps patched in memory (an
//! overlay; no file is written). A namespace's mount list (6.1) or rb-tree (6.12) that loops,
//! an absurd `group_info->ngroups`, a kernfs parent cycle and an absurd PID namespace level
//! must each end, without a panic, with what could be read plus a warning, and size no
//! allocation by guest data.

mod common;
mod hostile;

use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use hostile::{largest_alloc, Patches};
use vmi_core::os::ProcessCredentials;
use vmi_core::{PhysicalMemory, Session, Va, VcpuRegisters, VirtualMemory};
use vmi_os_linux::analysis::creds::credentials;
use vmi_os_linux::analysis::mounts::mounts;
use vmi_os_linux::analysis::namespaces::{namespaces, ProcessNamespaces};
use vmi_os_linux::analysis::ps::{processes, Process};
use vmi_os_linux::comps::cred::NGROUPS_MAX;
use vmi_os_linux::comps::mount::MountRecord;
use vmi_os_linux::{Kernel, LinuxError, LinuxOs};

/// A real guest, discovered once, with what it answers intact.
struct Base {
    name: String,
    memory: Arc<dyn PhysicalMemory>,
    registers: Option<Arc<dyn VcpuRegisters>>,
    session: Session,
    kernel: Kernel,
    procs: Vec<Process>,
    /// init's mounts.
    mounts: Vec<MountRecord>,
    namespaces: Vec<ProcessNamespaces>,
    /// eta's pid.
    eta: u32,
    /// zeta's pid (uid 1000).
    zeta: u32,
}

impl Base {
    fn mem(&self) -> VirtualMemory<'_> {
        self.kernel.memory(&self.session)
    }

    fn off(&self, ty: &str, field: &str) -> u64 {
        self.kernel.profile().field_offset(ty, field).unwrap()
    }

    /// The pointer at `base + offset`.
    fn ptr(&self, base: Va, offset: u64) -> Va {
        self.mem()
            .read_va(base.checked_add(offset).unwrap())
            .unwrap()
    }

    fn task(&self, pid: u32) -> Va {
        self.procs.iter().find(|p| p.pid == pid).unwrap().task
    }

    fn patched(&self, patches: &Patches) -> Session {
        hostile::patched_session(&self.memory, &self.registers, &patches.0)
    }

    /// Whether this kernel keeps a namespace's mounts in a list (6.1) or an rb-tree.
    fn mount_list(&self) -> bool {
        self.kernel
            .profile()
            .field_offset("mnt_namespace", "list")
            .is_ok()
    }
}

impl hostile::KernelView for Base {
    fn session(&self) -> &Session {
        &self.session
    }

    fn space(&self) -> vmi_core::AddressSpace {
        self.kernel.space()
    }
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        common::guests()
            .into_iter()
            .map(|guest| {
                let hostile::OpenGuest {
                    memory,
                    registers,
                    session,
                    kernel,
                } = hostile::open_guest(&guest);
                let procs = processes(&session, &kernel).unwrap().items;
                let m = mounts(&session, &kernel, 1).unwrap();
                assert!(m.warnings.is_empty(), "{}", guest.name);
                let ns = namespaces(&session, &kernel).unwrap();
                assert!(ns.warnings.is_empty(), "{}", guest.name);
                let zeta = guest
                    .tasks()
                    .into_iter()
                    .find(|t| t.uid == 1000 && t.name == "vmi-target")
                    .unwrap()
                    .pid;
                Base {
                    eta: guest.truth("ns-target").trim().parse().unwrap(),
                    zeta,
                    name: guest.name,
                    memory,
                    registers,
                    session,
                    kernel,
                    procs,
                    mounts: m.items,
                    namespaces: ns.items,
                }
            })
            .collect()
    })
}

/// Runs `f` on another thread and fails if it does not end within a minute or panics.
fn bounded<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let limit = Duration::from_secs(60);
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(limit) {
        Ok(()) => handle.join().unwrap_or_else(|_| panic!("{what}: panicked")),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no end within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

fn text(ws: &[LinuxError]) -> String {
    ws.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn ids(ms: &[MountRecord]) -> Vec<u32> {
    ms.iter().map(|m| m.id).collect()
}

fn mount_list_or_tree_that_loops_is_cut() {
    let mut checked = 0;
    for (i, b) in bases().iter().enumerate() {
        let n = b.mounts.len();
        assert!(n >= 4, "{}", b.name);
        let at = |k: usize| b.mounts[k].mount;
        let cases: Vec<(String, Patches, usize)> = if b.mount_list() {
            // mnt_list.next of a mount back to an earlier one, or to itself.
            let link = b.off("mount", "mnt_list");
            let entry = |k: usize| at(k).checked_add(link).unwrap();
            vec![
                (
                    "next of the 4th mount to the 2nd".into(),
                    Patches::default().u64_at(b, entry(3), entry(1).raw()),
                    4,
                ),
                (
                    "next of the last mount to itself".into(),
                    Patches::default().u64_at(b, entry(n - 1), entry(n - 1).raw()),
                    n,
                ),
            ]
        } else {
            // The last mount in order has no right child: point it at the tree's root; the
            // first has no left child: point it at itself.
            let node = b.off("mount", "mnt_node");
            let rb = |k: usize| at(k).checked_add(node).unwrap();
            let ns_root = {
                let task = b.task(1);
                let nsproxy = b.ptr(task, b.off("task_struct", "nsproxy"));
                let mnt_ns = b.ptr(nsproxy, b.off("nsproxy", "mnt_ns"));
                b.ptr(mnt_ns, b.off("mnt_namespace", "mounts"))
            };
            let right = b.off("rb_node", "rb_right");
            let left = b.off("rb_node", "rb_left");
            vec![
                (
                    "right child of the last mount to the root".into(),
                    Patches::default().u64_at(
                        b,
                        rb(n - 1).checked_add(right).unwrap(),
                        ns_root.raw(),
                    ),
                    n,
                ),
                (
                    "left child of the first mount to itself".into(),
                    Patches::default().u64_at(b, rb(0).checked_add(left).unwrap(), rb(0).raw()),
                    usize::MAX, // a prefix of the in-order walk: the spine above it
                ),
            ]
        };
        for (what, patches, expect) in cases {
            let name = format!("{}: {what}", b.name);
            let got = bounded(&name, move || {
                let b = &bases()[i];
                mounts(&b.patched(&patches), &b.kernel, 1).unwrap()
            });
            let w = text(&got.warnings);
            eprintln!("{name}: {} mounts, {w}", got.items.len());
            assert_eq!(got.warnings.len(), 1, "{name}: {w}");
            assert!(w.contains("cycle"), "{name}: {w}");
            let got_ids = ids(&got.items);
            if expect == usize::MAX {
                // Every mount listed is one of the intact ones, in their order.
                let intact = ids(&b.mounts);
                let mut pos = intact.iter();
                assert!(
                    got_ids.iter().all(|id| pos.any(|x| x == id)),
                    "{name}: {got_ids:?} not a subsequence of {intact:?}"
                );
                assert!(!got_ids.is_empty(), "{name}");
            } else {
                assert_eq!(got_ids, ids(&b.mounts[..expect]), "{name}");
            }
            checked += 1;
        }
    }
    assert!(checked > 0 || bases().is_empty());
}

/// The `group_info` of `pid`'s `real_cred`.
fn group_info(b: &Base, pid: u32) -> Va {
    let cred = b.ptr(b.task(pid), b.off("task_struct", "real_cred"));
    b.ptr(cred, b.off("cred", "group_info"))
}

fn absurd_ngroups_is_capped_with_a_warning() {
    for (i, b) in bases().iter().enumerate() {
        let ngroups = group_info(b, b.zeta)
            .checked_add(b.off("group_info", "ngroups"))
            .unwrap();
        for (value, expect, len) in [
            (0x7fff_ffffu32, "above NGROUPS_MAX", None),
            (0xffff_ffff, "negative", Some(0)),
            (NGROUPS_MAX as u32 + 1, "above NGROUPS_MAX", None),
        ] {
            let patches = Patches::default().at(b, ngroups, &value.to_le_bytes());
            let patches2 = patches.clone();
            let name = format!("{}: ngroups {value:#x}", b.name);
            let zeta = b.zeta;
            let ((creds, warnings), largest) = bounded(&name, move || {
                let b = &bases()[i];
                let s = b.patched(&patches);
                largest_alloc(|| credentials(&s, &b.kernel, zeta).unwrap())
            });
            let w = text(&warnings);
            eprintln!("{name}: {} groups, {w}", creds.groups.len());
            assert!(w.contains(expect), "{name}: {w}");
            assert_eq!(warnings.len(), 1, "{name}: {w}");
            match len {
                Some(n) => assert_eq!(creds.groups.len(), n, "{name}"),
                None => {
                    // The real two groups first, then whatever memory follows, at most
                    // NGROUPS_MAX of them.
                    assert!(creds.groups.len() <= NGROUPS_MAX as usize, "{name}");
                    assert_eq!(creds.groups[..2], [24, 1001], "{name}");
                }
            }
            assert_eq!(creds.uid, [1000; 4], "{name}");
            assert!(largest <= 1 << 20, "{name}: allocated {largest} bytes");
            // The neutral record has no warnings list: they are under `os.warnings`.
            let os = LinuxOs::new(b.kernel.clone(), false);
            let neutral = os.credentials(&b.patched(&patches2), zeta).unwrap();
            let noted = neutral.os.get("warnings").map(ToString::to_string);
            assert!(
                noted.is_some_and(|w| w.contains(expect)),
                "{name}: {:?}",
                neutral.os
            );
        }
    }
}

/// The kernfs node of `pid`'s cgroup v2 directory.
fn cgroup_kn(b: &Base, pid: u32) -> Va {
    let cset = b.ptr(b.task(pid), b.off("task_struct", "cgroups"));
    let cgrp = b.ptr(cset, b.off("css_set", "dfl_cgrp"));
    b.ptr(cgrp, b.off("cgroup", "kn"))
}

fn kernfs_parent_cycle_is_cut() {
    for (i, b) in bases().iter().enumerate() {
        let kn = cgroup_kn(b, b.eta);
        let parent = b.off("kernfs_node", "parent");
        // /vmi-box is a child of the hierarchy's root.
        let root = b.ptr(kn, parent);
        assert_eq!(b.ptr(root, parent), Va::new(0), "{}", b.name);
        let at = |node: Va| node.checked_add(parent).unwrap();
        // /vmi-box its own parent; then /vmi-box and the root each other's parent.
        let cases = [
            (
                "a kernfs node its own parent",
                Patches::default().u64_at(b, at(kn), kn.raw()),
            ),
            (
                "two kernfs nodes each other's parent",
                Patches::default()
                    .u64_at(b, at(kn), root.raw())
                    .u64_at(b, at(root), kn.raw()),
            ),
        ];
        let in_box: Vec<u32> = b
            .namespaces
            .iter()
            .filter(|p| p.cgroup == "/vmi-box")
            .map(|p| p.pid)
            .collect();
        assert!(in_box.contains(&b.eta), "{}", b.name);
        for (k, (what, patches)) in cases.into_iter().enumerate() {
            let name = format!("{}: {what}", b.name);
            let got = bounded(&name, move || {
                let b = &bases()[i];
                namespaces(&b.patched(&patches), &b.kernel).unwrap()
            });
            let w = text(&got.warnings);
            // Everything but the cgroup paths is intact.
            assert_eq!(got.items.len(), b.namespaces.len(), "{name}");
            for (p, intact) in got.items.iter().zip(&b.namespaces) {
                assert_eq!(
                    (&p.namespaces, &p.nspid, &p.hostname),
                    (&intact.namespaces, &intact.nspid, &intact.hostname),
                    "{name}: pid {}",
                    p.pid
                );
                // The processes whose path meets the cycle have none, with a warning each:
                // /vmi-box's, or with the root in the cycle, everyone's.
                let cut = in_box.contains(&p.pid) || k == 1;
                if cut {
                    assert_eq!(p.cgroup, "", "{name}: pid {}", p.pid);
                } else {
                    assert_eq!(p.cgroup, intact.cgroup, "{name}: pid {}", p.pid);
                }
            }
            let cut = got.items.iter().filter(|p| p.cgroup.is_empty()).count();
            assert_eq!(got.warnings.len(), cut, "{name}: {w}");
            assert!(w.contains("kernfs") || w.contains("cgroup"), "{name}: {w}");
            eprintln!("{name}: {cut} cgroup paths cut");
        }
    }
}

fn absurd_pid_namespace_level_is_refused() {
    for (i, b) in bases().iter().enumerate() {
        let pid = b.ptr(b.task(b.eta), b.off("task_struct", "thread_pid"));
        let level = pid.checked_add(b.off("pid", "level")).unwrap();
        let patches = Patches::default().at(b, level, &0xffff_fff0u32.to_le_bytes());
        let name = format!("{}: pid level 0xfffffff0", b.name);
        let eta = b.eta;
        let (got, largest) = bounded(&name, move || {
            let b = &bases()[i];
            let s = b.patched(&patches);
            largest_alloc(|| namespaces(&s, &b.kernel).unwrap())
        });
        let w = text(&got.warnings);
        assert_eq!(got.warnings.len(), 1, "{name}: {w}");
        assert!(w.contains("MAX_PID_NS_LEVEL"), "{name}: {w}");
        let e = got.items.iter().find(|p| p.pid == eta).unwrap();
        assert!(
            e.nspid.is_empty() && !e.namespaces.contains_key("pid"),
            "{name}"
        );
        assert_eq!(
            e.namespaces.get("net"),
            b.namespaces
                .iter()
                .find(|p| p.pid == eta)
                .unwrap()
                .namespaces
                .get("net")
        );
        assert!(largest < 1 << 20, "{name}: allocated {largest} bytes");
    }
}

fn an_idmapped_mount_says_so() {
    for (i, b) in bases().iter().enumerate() {
        // No fixture mount is idmapped: give the last one a mapping other than the no-op one.
        let field = ["mnt_idmap", "mnt_userns"]
            .iter()
            .find_map(|f| b.kernel.profile().field_offset("vfsmount", f).ok())
            .unwrap_or_else(|| panic!("{}: no mnt_idmap or mnt_userns", b.name));
        let last = b.mounts.len() - 1;
        let target = b.mounts[last].mount;
        let at = target.checked_add(b.off("mount", "mnt") + field).unwrap();
        let patches = Patches::default().u64_at(b, at, target.raw());
        let got = bounded(&b.name, move || {
            let b = &bases()[i];
            mounts(&b.patched(&patches), &b.kernel, 1).unwrap()
        });
        assert!(
            got.warnings.is_empty(),
            "{}: {}",
            b.name,
            text(&got.warnings)
        );
        for (k, (m, intact)) in got.items.iter().zip(&b.mounts).enumerate() {
            let want = if k == last {
                format!("{},idmapped", intact.options)
            } else {
                intact.options.clone()
            };
            assert_eq!(m.options, want, "{}: mount {}", b.name, m.id);
        }
    }
}

vmi_fixtures::real_guest_tests!(
    mount_list_or_tree_that_loops_is_cut,
    absurd_ngroups_is_capped_with_a_warning,
    kernfs_parent_cycle_is_cut,
    absurd_pid_namespace_level_is_refused,
    an_idmapped_mount_says_so,
);
