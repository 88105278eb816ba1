//! Kernel integrity checks on real guests: no suspicious finding on any clean guest, and each
//! kind of tampering, done to a copy of a real dump in memory (an overlay; no file is
//! written), is caught and named: a hooked system call table slot (into a module, or to a
//! random address), a hooked IDT gate, a module unlinked from the `modules` list, an inline
//! `jmp` at `__x64_sys_kill`, and hostile `prog_idr` trees (a cycle, an absurd fan-out) that
//! must end quickly with warnings. A fake eBPF program in made-up memory checks the decoding
//! and the tampering heuristic.

mod common;
mod hostile;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::Guest;
use hostile::Patches;
use vmi_core::os::{Finding, Severity};
use vmi_core::{PhysicalMemory, Session, Va, VcpuRegisters};
use vmi_fixtures::GuestInit;
use vmi_os_linux::analysis::integrity::{check_integrity, ebpf, module_spans, Check, ModuleSpan};
use vmi_os_linux::comps::idt::{Gate, GATE_SIZE};
use vmi_os_linux::Kernel;

/// A real guest, discovered once, and its modules.
struct Base {
    guest: Guest,
    memory: Arc<dyn PhysicalMemory>,
    registers: Option<Arc<dyn VcpuRegisters>>,
    session: Session,
    kernel: Kernel,
    modules: Vec<ModuleSpan>,
}

impl hostile::KernelView for Base {
    fn session(&self) -> &Session {
        &self.session
    }
    fn space(&self) -> vmi_core::AddressSpace {
        self.kernel.space()
    }
}

impl Base {
    fn patched(&self, patches: &Patches) -> Session {
        hostile::patched_session(&self.memory, &self.registers, &patches.0)
    }

    fn sym(&self, name: &str) -> Va {
        self.kernel.symbol(name).unwrap()
    }

    fn off(&self, ty: &str, field: &str) -> u64 {
        self.kernel.profile().field_offset(ty, field).unwrap()
    }

    /// An address inside the text of the first module of the list, and its name.
    fn module_text(&self, at: u64) -> (u64, &str) {
        let m = &self.modules[0];
        let (start, end) = m.regions[0];
        assert!(
            start + at < end,
            "{}: module {} too small",
            self.guest.name,
            m.name
        );
        (start + at, &m.name)
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
                let mods = module_spans(&kernel.memory(&session), &kernel).unwrap();
                assert!(
                    mods.warnings.is_empty(),
                    "{}: {:?}",
                    guest.name,
                    mods.warnings
                );
                Base {
                    guest,
                    memory,
                    registers,
                    session,
                    kernel,
                    modules: mods.items,
                }
            })
            .collect()
    })
}

fn suspicious(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Suspicious)
        .collect()
}

/// Runs `check` on `session`, expecting no warnings; returns the findings.
fn run(b: &Base, session: &Session, check: Check) -> Vec<Finding> {
    let found = check_integrity(session, &b.kernel, &[check]);
    assert!(
        found.warnings.is_empty(),
        "{}: {}: {:?}",
        b.guest.name,
        check.name(),
        found.warnings
    );
    found.items
}

fn clean_guests_have_no_suspicious_finding() {
    for b in bases() {
        let started = Instant::now();
        let found = check_integrity(&b.session, &b.kernel, &[]);
        let elapsed = started.elapsed();
        assert!(
            found.warnings.is_empty(),
            "{}: {:?}",
            b.guest.name,
            found.warnings
        );
        let bad = suspicious(&found.items);
        assert!(bad.is_empty(), "{}: {bad:#?}", b.guest.name);
        // Every check ran and said what it covered.
        for check in Check::ALL {
            assert!(
                found.items.iter().any(|f| f.check == check.name()),
                "{}: no finding of {}",
                b.guest.name,
                check.name()
            );
        }
        let info = |check: Check, subject: &str| {
            found
                .items
                .iter()
                .find(|f| f.check == check.name() && f.subject == subject)
                .unwrap_or_else(|| panic!("{}: no {subject} summary", b.guest.name))
                .detail
                .clone()
        };
        // x86-64 has 451 (6.1) and 463 (6.12) system calls.
        let sys = info(Check::SyscallTable, "sys_call_table");
        let entries: u64 = sys.split(' ').next().unwrap().parse().unwrap();
        assert!((400..=1024).contains(&entries), "{}: {sys}", b.guest.name);
        let idt = info(Check::Idt, "idt_table");
        assert!(
            idt.starts_with("256 present gates"),
            "{}: {idt}",
            b.guest.name
        );
        // The three views of the modules agree with the guest's /proc/modules.
        let n = b.guest.truth("modules").lines().count();
        assert_eq!(b.modules.len(), n, "{}", b.guest.name);
        let views = info(Check::HiddenModules, "modules");
        assert!(
            views.starts_with(&format!("{n} in the modules list, {n} in module_kset"))
                && views.contains(&format!("{n} carved; {n} in all three views")),
            "{}: {views}",
            b.guest.name
        );
        // Each vCPU's IDTR was seen: the read-only alias, as the dump's registers say.
        let vcpus = b.session.vcpu_count();
        let aliases = found
            .items
            .iter()
            .filter(|f| f.check == "idt" && f.subject.ends_with("IDTR"))
            .count();
        assert_eq!(aliases, vcpus, "{}", b.guest.name);
        eprintln!("  {}: all checks in {elapsed:.1?}", b.guest.name);
    }
}

fn ebpf_programs_match_the_guest_kind() {
    for b in bases() {
        let progs = ebpf::programs(&b.session, &b.kernel).unwrap();
        assert!(
            progs.warnings.is_empty(),
            "{}: {:?}",
            b.guest.name,
            progs.warnings
        );
        match b.guest.init {
            // The busybox guests load none: an empty list, cleanly.
            GuestInit::Busybox => assert!(progs.items.is_empty(), "{}", b.guest.name),
            // systemd loads its cgroup device and firewall programs.
            GuestInit::Systemd => {
                assert!(!progs.items.is_empty(), "{}", b.guest.name);
                for p in &progs.items {
                    assert!(p.name.starts_with("sd_"), "{}: {p:?}", b.guest.name);
                    assert!(p.id > 0 && p.len > 0 && p.tag.len() == 16, "{p:?}");
                }
                let findings = run(b, &b.session, Check::Ebpf);
                assert_eq!(findings.len(), progs.items.len());
                // Each is attached to a cgroup that holds (or is above) a process of the
                // guest's own /proc/PID/cgroup.
                let truth: Vec<String> = b
                    .guest
                    .truth("cgroup")
                    .lines()
                    .filter_map(|l| l.split_once(" 0::").map(|(_, p)| p.to_owned()))
                    .collect();
                for f in &findings {
                    assert!(f.detail.starts_with("cgroup_"), "{}: {f:?}", b.guest.name);
                    let Some(vmi_core::os::Detail::Text(at)) = f.os.get("attached_to") else {
                        panic!("{}: no attachment: {f:?}", b.guest.name);
                    };
                    for one in at.split(", ") {
                        let path = one
                            .strip_prefix("cgroup ")
                            .and_then(|r| r.split(" as ").next())
                            .unwrap_or_else(|| panic!("{}: {one}", b.guest.name));
                        assert!(
                            truth
                                .iter()
                                .any(|t| t == path || t.starts_with(&format!("{path}/"))),
                            "{}: {path} holds no process of truth/cgroup",
                            b.guest.name
                        );
                    }
                }
            }
        }
    }
}

fn a_hooked_syscall_slot_is_caught() {
    for b in bases() {
        let table = b.sym("sys_call_table");
        let (into_module, module) = b.module_text(0x40);
        for (slot, target, expect) in [
            (62u64, into_module, format!("in module {module}")),
            (
                217,
                0xffff_8888_1234_5678,
                "outside kernel text and every module".to_owned(),
            ),
        ] {
            let p = Patches::default().u64_at(b, table.checked_add(slot * 8).unwrap(), target);
            let s = b.patched(&p);
            let found = run(b, &s, Check::SyscallTable);
            let bad = suspicious(&found);
            assert_eq!(bad.len(), 1, "{}: {bad:#?}", b.guest.name);
            assert_eq!(bad[0].subject, format!("sys_call_table[{slot}]"));
            assert_eq!(bad[0].address, Some(Va::new(target)));
            assert!(
                bad[0].detail.contains(&expect),
                "{}: {:?}",
                b.guest.name,
                bad[0]
            );
        }
    }
}

fn a_hooked_idt_gate_is_caught() {
    for b in bases() {
        let table = b.sym("idt_table");
        let at = table.checked_add(14 * GATE_SIZE as u64).unwrap();
        let mut raw = [0u8; GATE_SIZE];
        b.kernel
            .memory(&b.session)
            .read_exact(at, &mut raw)
            .unwrap();
        let mut gate = Gate::decode(14, &raw);
        assert!(gate.present);
        let (target, module) = b.module_text(0x80);
        gate.handler = Va::new(target);
        let s = b.patched(&Patches::default().at(b, at, &gate.encode()));
        let found = run(b, &s, Check::Idt);
        let bad = suspicious(&found);
        assert_eq!(bad.len(), 1, "{}: {bad:#?}", b.guest.name);
        assert_eq!(bad[0].subject, "IDT[14]");
        assert!(
            bad[0].detail.contains(&format!("in module {module}")),
            "{:?}",
            bad[0]
        );
    }
}

fn a_module_unlinked_from_the_list_is_caught_by_kset_and_carve() {
    for b in bases() {
        assert!(b.modules.len() >= 3, "{}", b.guest.name);
        let list = b.off("module", "list");
        let (prev, victim, next) = (&b.modules[0], &b.modules[1], &b.modules[2]);
        let link = |m: &ModuleSpan| m.addr.checked_add(list).unwrap();
        // prev->next = next; next->prev = prev (list_head: next, then prev).
        let p = Patches::default()
            .u64_at(b, link(prev), link(next).raw())
            .u64_at(b, link(next).checked_add(8).unwrap(), link(prev).raw());
        let s = b.patched(&p);
        let listed = vmi_os_linux::modules(&s, &b.kernel).unwrap();
        assert!(!listed.items.iter().any(|m| m.name == victim.name));
        let found = run(b, &s, Check::HiddenModules);
        let bad = suspicious(&found);
        assert_eq!(bad.len(), 1, "{}: {bad:#?}", b.guest.name);
        assert_eq!(bad[0].subject, victim.name);
        assert_eq!(bad[0].address, Some(victim.addr));
        assert!(
            bad[0].detail.contains("hidden from the modules list")
                && bad[0].detail.contains("module_kset")
                && bad[0].detail.contains("carve"),
            "{}: {:?}",
            b.guest.name,
            bad[0]
        );
    }
}

fn a_module_unlinked_from_the_list_and_sysfs_is_caught_by_the_carve() {
    for b in bases() {
        let list = b.off("module", "list");
        let (prev, victim, next) = (&b.modules[0], &b.modules[1], &b.modules[2]);
        let link = |m: &ModuleSpan| m.addr.checked_add(list).unwrap();
        let mut p = Patches::default()
            .u64_at(b, link(prev), link(next).raw())
            .u64_at(b, link(next).checked_add(8).unwrap(), link(prev).raw());
        // And from module_kset (kobject_del): its kobject's neighbours skip it.
        let entry = victim
            .addr
            .checked_add(
                b.off("module", "mkobj")
                    + b.off("module_kobject", "kobj")
                    + b.off("kobject", "entry"),
            )
            .unwrap();
        let mem = b.kernel.memory(&b.session);
        let (k_next, k_prev) = (
            mem.read_u64(entry).unwrap(),
            mem.read_u64(entry.checked_add(8).unwrap()).unwrap(),
        );
        p = p
            .u64_at(b, Va::new(k_prev), k_next)
            .u64_at(b, Va::new(k_next + 8), k_prev);
        let s = b.patched(&p);
        let found = run(b, &s, Check::HiddenModules);
        let bad = suspicious(&found);
        assert_eq!(bad.len(), 1, "{}: {bad:#?}", b.guest.name);
        assert_eq!(bad[0].subject, victim.name);
        assert!(
            bad[0]
                .detail
                .ends_with("hidden from the modules list (lsmod, /proc/modules): seen by the module-area carve"),
            "{}: {:?}",
            b.guest.name,
            bad[0]
        );
    }
}

fn an_inline_jmp_at_sys_kill_is_caught() {
    for b in bases() {
        let at = b.sym("__x64_sys_kill");
        let (target, module) = b.module_text(0x100);
        let rel = i32::try_from(target as i64 - (at.raw() as i64 + 5)).unwrap();
        let mut jmp = vec![0xe9];
        jmp.extend_from_slice(&rel.to_le_bytes());
        let s = b.patched(&Patches::default().at(b, at, &jmp));
        let found = run(b, &s, Check::InlineHooks);
        let bad = suspicious(&found);
        assert_eq!(bad.len(), 1, "{}: {bad:#?}", b.guest.name);
        assert_eq!(bad[0].subject, "__x64_sys_kill");
        assert_eq!(bad[0].address, Some(Va::new(target)));
        assert!(
            bad[0].detail.contains("jmp rel32") && bad[0].detail.contains(module),
            "{:?}",
            bad[0]
        );
        // A jump that stays in kernel text is no hook of this kind.
        let mut near = vec![0xe9];
        near.extend_from_slice(&0x40i32.to_le_bytes());
        let s = b.patched(&Patches::default().at(b, at, &near));
        assert!(suspicious(&run(b, &s, Check::InlineHooks)).is_empty());
    }
}

fn a_cgroup_tree_that_loops_is_walked_once() {
    use vmi_os_linux::comps::bpf::{cgroup_attachments, CGROUP_DFL_ROOT_SYMBOL};
    for b in bases() {
        let mem = b.kernel.memory(&b.session);
        let p = b.kernel.profile();
        let root = b.sym(CGROUP_DFL_ROOT_SYMBOL);
        let clean = cgroup_attachments(&mem, p, root).unwrap();
        assert!(
            clean.warnings.is_empty(),
            "{}: {:?}",
            b.guest.name,
            clean.warnings
        );
        // The first child's children list leads back into the root's.
        let top = root.checked_add(b.off("cgroup_root", "cgrp")).unwrap();
        let children = b.off("cgroup", "self") + b.off("cgroup_subsys_state", "children");
        let root_head = top.checked_add(children).unwrap();
        let first = mem.read_u64(root_head).unwrap();
        assert_ne!(
            first,
            root_head.raw(),
            "{}: the root cgroup has no children",
            b.guest.name
        );
        let child = first - b.off("cgroup_subsys_state", "sibling") - b.off("cgroup", "self");
        let s =
            b.patched(&Patches::default().u64_at(b, Va::new(child + children), root_head.raw()));
        let started = Instant::now();
        let looped = cgroup_attachments(&b.kernel.memory(&s), p, root).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{}",
            b.guest.name
        );
        // The child's own subtree is cut off by the patch: what is found is a subset.
        assert!(
            looped.items.iter().all(|a| clean.items.contains(a)),
            "{}",
            b.guest.name
        );
        assert!(
            looped
                .warnings
                .iter()
                .any(|w| w.to_string().contains("reached twice")),
            "{}: {:?}",
            b.guest.name,
            looped.warnings
        );
    }
}

/// The dump's registers with every vCPU's IDTR base replaced.
struct IdtrAt {
    inner: Arc<dyn VcpuRegisters>,
    base: u64,
}

impl VcpuRegisters for IdtrAt {
    fn vcpu_count(&self) -> usize {
        self.inner.vcpu_count()
    }
    fn registers(&self, index: usize) -> Result<vmi_core::X86Registers, vmi_core::VcpuError> {
        let mut r = self.inner.registers(index)?;
        r.idtr_base = self.base;
        Ok(r)
    }
}

fn an_idtr_elsewhere_is_caught_and_the_direct_map_alias_is_not() {
    for b in bases() {
        let regs = b.registers.clone().expect("the ELF dumps carry registers");
        let vcpus = regs.vcpu_count();
        let mem = b.kernel.memory(&b.session);
        let table = b.sym("idt_table");
        let pa = b.session.translate(b.kernel.space(), table).unwrap().pa;
        let direct = mem.read_u64(b.sym("page_offset_base")).unwrap() + pa.raw();
        let zero = b.sym("empty_zero_page").raw();
        for (base, bad) in [(direct, 0), (table.raw(), 0), (zero, vcpus)] {
            let fake: Arc<dyn VcpuRegisters> = Arc::new(IdtrAt {
                inner: regs.clone(),
                base,
            });
            let s = hostile::patched_session(&b.memory, &Some(fake), &Default::default());
            let found = run(b, &s, Check::Idt);
            let sus = suspicious(&found);
            assert_eq!(sus.len(), bad, "{}: IDTR {base:#x}: {sus:#?}", b.guest.name);
            for f in sus {
                assert!(f.subject.ends_with("IDTR"), "{f:?}");
                assert_eq!(f.address, Some(Va::new(base)));
                assert!(f.detail.contains("not idt_table"), "{f:?}");
            }
        }
    }
}

/// Writes `call target` over the ftrace site of `function` (after its `endbr64`).
fn call_at_ftrace_site(b: &Base, function: &str, target: u64) -> (Va, Vec<u8>) {
    let at = b.sym(function);
    let mut head = [0u8; 9];
    b.kernel
        .memory(&b.session)
        .read_exact(at, &mut head)
        .unwrap();
    let site = if head.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa])
        || head.starts_with(&[0x66, 0x0f, 0x1f, 0])
    {
        4
    } else {
        0
    };
    assert_eq!(
        head[site..site + 5],
        [0x0f, 0x1f, 0x44, 0, 0],
        "{}: {function} has no ftrace NOP",
        b.guest.name
    );
    let site = at.checked_add(site as u64).unwrap();
    let rel = i32::try_from(target as i64 - (site.raw() as i64 + 5)).unwrap();
    let mut call = vec![0xe8];
    call.extend_from_slice(&rel.to_le_bytes());
    (site, call)
}

fn ftrace_trampolines_are_told_apart_from_hooks() {
    for b in bases() {
        let p = b.kernel.profile();
        let off = |f: &str| p.field_offset("ftrace_ops", f).unwrap() as usize;
        // A trampoline in the module area, outside every module, as ftrace allocates them.
        let trampoline = 0xffff_ffff_fe00_0000u64;
        let (site, call) = call_at_ftrace_site(b, "vfs_read", trampoline);
        let (module_text, module) = b.module_text(0x20);
        let end = b.sym("ftrace_list_end").raw();
        for (func, severity) in [
            (b.sym("ftrace_stub").raw(), Severity::Info),
            (module_text, Severity::Suspicious),
        ] {
            let va =
                hostile::made_up_kernel_memory(b, 1, Arc::new(|_, buf: &mut [u8]| buf.fill(0)))
                    .va
                    .raw();
            let mut ops = vec![0u8; 0x1000];
            let mut put = |f: &str, v: u64| {
                let o = off(f);
                ops[o..o + 8].copy_from_slice(&v.to_le_bytes())
            };
            put("func", func);
            put("next", end);
            put("trampoline", trampoline);
            put("trampoline_size", 0x100);
            let ops: Arc<[u8]> = ops.into();
            let made = hostile::made_up_kernel_memory(
                b,
                1,
                Arc::new(move |o, buf: &mut [u8]| {
                    buf.fill(0);
                    let o = o as usize;
                    if o < ops.len() {
                        let n = buf.len().min(ops.len() - o);
                        buf[..n].copy_from_slice(&ops[o..o + n]);
                    }
                }),
            );
            let patches = Patches::default()
                .u64_at(b, b.sym("ftrace_ops_list"), va)
                .at(b, site, &call)
                .at_pa(made.root_patch.0, &made.root_patch.1);
            let s =
                hostile::synthetic_session(&b.memory, &b.registers, &patches.0, vec![made.region]);
            let found = run(b, &s, Check::InlineHooks);
            let traced: Vec<&Finding> = found.iter().filter(|f| f.subject == "vfs_read").collect();
            assert_eq!(traced.len(), 1, "{}: {found:#?}", b.guest.name);
            assert_eq!(
                traced[0].severity, severity,
                "{}: {:?}",
                b.guest.name, traced[0]
            );
            assert_eq!(traced[0].address, Some(Va::new(trampoline)));
            assert!(
                traced[0].detail.contains("traced by ftrace"),
                "{:?}",
                traced[0]
            );
            if severity == Severity::Suspicious {
                assert!(traced[0].detail.contains(module), "{:?}", traced[0]);
            }
            assert_eq!(
                suspicious(&found).len(),
                usize::from(severity == Severity::Suspicious)
            );
        }
        // Without the ops registered, the same call is a hook.
        let s = b.patched(&Patches::default().at(b, site, &call));
        let found = run(b, &s, Check::InlineHooks);
        let bad = suspicious(&found);
        assert_eq!(bad.len(), 1, "{}: {found:#?}", b.guest.name);
        assert!(bad[0].detail.contains("call rel32"), "{:?}", bad[0]);
    }
}

/// Where `prog_idr`'s `xa_head` is.
fn xa_head(b: &Base) -> Va {
    b.sym("prog_idr")
        .checked_add(b.off("idr", "idr_rt") + b.off("xarray", "xa_head"))
        .unwrap()
}

/// `prog_idr` pointing at a made-up tree of nodes, 1 KiB apart: node `k` has the shift
/// `node(k).0` and every slot holds node `node(k).1` (or nothing).
fn hostile_tree(b: &Base, node: fn(u64) -> (u8, Option<u64>)) -> Session {
    let slots = b.off("xa_node", "slots");
    let shift = b.off("xa_node", "shift");
    // The made-up memory's address depends only on the free page-table slot: learn it first,
    // since the fill needs it.
    let va = hostile::made_up_kernel_memory(b, 1, Arc::new(|_, buf: &mut [u8]| buf.fill(0)))
        .va
        .raw();
    let made = hostile::made_up_kernel_memory(
        b,
        1,
        Arc::new(move |off, buf: &mut [u8]| {
            for (j, byte) in buf.iter_mut().enumerate() {
                let at = off + j as u64;
                let (k, within) = (at / 1024, at % 1024);
                let (node_shift, child) = node(k);
                *byte = if within == shift {
                    node_shift
                } else if (slots..slots + 64 * 8).contains(&within) {
                    child.map_or(0, |c| {
                        ((va + c * 1024) | 2).to_le_bytes()[(within % 8) as usize]
                    })
                } else {
                    0
                };
            }
        }),
    );
    assert_eq!(made.va.raw(), va);
    let p = Patches::default()
        .u64_at(b, xa_head(b), va | 2)
        .at_pa(made.root_patch.0, &made.root_patch.1);
    hostile::synthetic_session(&b.memory, &b.registers, &p.0, vec![made.region])
}

trait AtPa {
    fn at_pa(self, pa: vmi_core::Pa, bytes: &[u8]) -> Self;
}

impl AtPa for Patches {
    fn at_pa(mut self, pa: vmi_core::Pa, bytes: &[u8]) -> Self {
        self.0.insert(pa, bytes.to_vec());
        self
    }
}

fn hostile_prog_idr_trees_are_bounded() {
    type Tree = fn(u64) -> (u8, Option<u64>);
    let trees: [(&str, Tree, &[&str]); 2] = [
        // Its children claim its own shift instead of 6 less.
        (
            "a node whose slots all point at itself",
            |_| (6, Some(0)),
            &["shift"],
        ),
        // Eleven levels of consistent shifts, each node's 64 slots all on the next level's
        // one node: 64^10 paths to walk.
        (
            "a chain of nodes each reached 64 times over",
            |k| (60u8.saturating_sub(6 * k as u8), (k < 10).then_some(k + 1)),
            &["no end after", "stopped after"],
        ),
    ];
    for b in bases() {
        for (what, tree, expect) in trees {
            let s = hostile_tree(b, tree);
            let started = Instant::now();
            let (progs, largest) =
                hostile::largest_alloc(|| ebpf::programs(&s, &b.kernel).unwrap());
            let elapsed = started.elapsed();
            assert!(
                elapsed < Duration::from_secs(8),
                "{}: {what}: {elapsed:?}",
                b.guest.name
            );
            assert!(progs.items.is_empty(), "{}: {what}", b.guest.name);
            assert!(
                !progs.warnings.is_empty() && progs.warnings.len() <= 65,
                "{}: {what}: {:?}",
                b.guest.name,
                progs.warnings
            );
            assert!(
                progs
                    .warnings
                    .iter()
                    .any(|w| expect.iter().any(|e| w.to_string().contains(e))),
                "{}: {what}: {:?}",
                b.guest.name,
                progs.warnings
            );
            assert!(
                largest < 16 << 20,
                "{}: {what}: {largest} bytes",
                b.guest.name
            );
            let found = check_integrity(&s, &b.kernel, &[Check::Ebpf]);
            assert!(suspicious(&found.items).is_empty());
            assert!(!found.warnings.is_empty());
            eprintln!("  {}: {what}: {elapsed:.1?}", b.guest.name);
        }
    }
}

/// A fake kprobe program in made-up memory, reached as `prog_idr`'s only entry, that calls
/// `bpf_probe_write_user` (helper id 36, as before the verifier rewrites it).
fn a_fake_kprobe_program_writing_user_memory_is_suspicious() {
    for b in bases() {
        let kernel = &b.kernel;
        let p = kernel.profile();
        let off = |t: &str, f: &str| p.field_offset(t, f).unwrap() as usize;
        let prog_at = 0usize;
        let aux_at = 0x4000usize;
        let mut image = vec![0u8; 0x8000];
        let probe = hostile::made_up_kernel_memory(b, 1, Arc::new(|_, buf: &mut [u8]| buf.fill(0)));
        let va = probe.va.raw();
        let put = |img: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            img[at..at + bytes.len()].copy_from_slice(bytes)
        };
        put(
            &mut image,
            prog_at + off("bpf_prog", "type"),
            &2u32.to_le_bytes(),
        ); // kprobe
        put(
            &mut image,
            prog_at + off("bpf_prog", "len"),
            &2u32.to_le_bytes(),
        );
        put(&mut image, prog_at + off("bpf_prog", "tag"), &[0xab; 8]);
        put(
            &mut image,
            prog_at + off("bpf_prog", "aux"),
            &(va + aux_at as u64).to_le_bytes(),
        );
        let insns = prog_at + off("bpf_prog", "insnsi");
        put(&mut image, insns, &[0x85, 0, 0, 0, 36, 0, 0, 0]); // call probe_write_user
        put(&mut image, insns + 8, &[0x95, 0, 0, 0, 0, 0, 0, 0]); // exit
        put(
            &mut image,
            aux_at + off("bpf_prog_aux", "id"),
            &42u32.to_le_bytes(),
        );
        put(
            &mut image,
            aux_at + off("bpf_prog_aux", "name"),
            b"hostile\0",
        );
        let image: Arc<[u8]> = image.into();
        let made = hostile::made_up_kernel_memory(
            b,
            1,
            Arc::new(move |o, buf: &mut [u8]| {
                buf.fill(0);
                let o = o as usize;
                if o < image.len() {
                    let n = buf.len().min(image.len() - o);
                    buf[..n].copy_from_slice(&image[o..o + n]);
                }
            }),
        );
        assert_eq!(made.va.raw(), va);
        let patches = Patches::default()
            .u64_at(b, xa_head(b), va)
            .at_pa(made.root_patch.0, &made.root_patch.1);
        let s = hostile::synthetic_session(&b.memory, &b.registers, &patches.0, vec![made.region]);
        let progs = ebpf::programs(&s, kernel).unwrap();
        assert!(progs.warnings.is_empty(), "{:?}", progs.warnings);
        assert_eq!(progs.items.len(), 1);
        let prog = &progs.items[0];
        assert_eq!((prog.id, prog.kind, prog.len), (42, 2, 2));
        assert_eq!(prog.name, "hostile");
        assert_eq!(prog.tag, "abababababababab");
        assert_eq!(prog.helper_calls, [36]);
        let found = run(b, &s, Check::Ebpf);
        let bad = suspicious(&found);
        assert_eq!(bad.len(), 1, "{}: {found:#?}", b.guest.name);
        assert_eq!(bad[0].subject, "bpf prog 42");
        assert!(
            bad[0].detail.starts_with("kprobe program \"hostile\"")
                && bad[0].detail.contains("bpf_probe_write_user"),
            "{}: {:?}",
            b.guest.name,
            bad[0]
        );
    }
}

vmi_fixtures::real_guest_tests!(
    clean_guests_have_no_suspicious_finding,
    ebpf_programs_match_the_guest_kind,
    a_hooked_syscall_slot_is_caught,
    a_hooked_idt_gate_is_caught,
    a_module_unlinked_from_the_list_is_caught_by_kset_and_carve,
    a_module_unlinked_from_the_list_and_sysfs_is_caught_by_the_carve,
    an_inline_jmp_at_sys_kill_is_caught,
    an_idtr_elsewhere_is_caught_and_the_direct_map_alias_is_not,
    ftrace_trampolines_are_told_apart_from_hooks,
    hostile_prog_idr_trees_are_bounded,
    a_cgroup_tree_that_loops_is_walked_once,
    a_fake_kprobe_program_writing_user_memory_is_suspicious,
);
