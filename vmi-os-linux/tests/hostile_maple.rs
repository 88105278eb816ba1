//! Hostile guests for the maple tree, the module list and the printk ring buffer: real dumps
//! patched in memory (an overlay over the dump's physical memory; no file is written). Each
//! analysis must end, without a panic or a hang, with what could be read plus warnings, or
//! with a clear error, and must not size an allocation by guest data.

mod common;
mod hostile;

use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use common::Guest;
use hostile::{largest_alloc, Patches};
use vmi_core::{PageSize, PhysicalMemory, Session, Va};
use vmi_core::{VcpuRegisters, VirtualMemory};
use vmi_os_linux::analysis::dmesg::{dmesg, LogRecord};
use vmi_os_linux::analysis::maps::{maps, Map};
use vmi_os_linux::analysis::modules::{modules, Module};
use vmi_os_linux::analysis::ps::find_process;
use vmi_os_linux::{Kernel, LinuxError, Partial};

/// A real guest, discovered once, and what it shows when intact.
struct Base {
    guest: Guest,
    memory: Arc<dyn PhysicalMemory>,
    registers: Option<Arc<dyn VcpuRegisters>>,
    session: Session,
    kernel: Kernel,
    /// The target with threads (the most mappings): pid, mm, its maps.
    pid: u32,
    mm: Va,
    maps: Vec<Map>,
    modules: Vec<Module>,
    log: Vec<LogRecord>,
}

impl Base {
    fn mem(&self) -> VirtualMemory<'_> {
        self.kernel.memory(&self.session)
    }

    fn off(&self, ty: &str, field: &str) -> u64 {
        self.kernel.profile().field_offset(ty, field).unwrap()
    }

    fn read_u64(&self, va: Va) -> u64 {
        self.mem().read_u64(va).unwrap()
    }

    /// The session of this guest with `patches` applied.
    fn patched(&self, patches: &Patches) -> Session {
        hostile::patched_session(&self.memory, &self.registers, &patches.0)
    }

    /// `mm->mm_mt.ma_root` of the target.
    fn ma_root(&self) -> Va {
        let mt = self.off("mm_struct", "mm_mt") + self.off("maple_tree", "ma_root");
        self.mm.checked_add(mt).unwrap()
    }

    /// The node the root points at: (encoded node, node address).
    fn root_node(&self) -> (u64, Va) {
        let root = self.read_u64(self.ma_root());
        assert_eq!(root & 3, 2, "{}: the root is a node", self.guest.name);
        let enode = root & !2;
        (enode, Va::new(enode & !0xff))
    }

    /// The address of `slot[i]` or `pivot[i]` of a node of `ty` (`maple_arange_64`, ...).
    fn node_field(&self, node: Va, ty: &str, field: &str, i: u64) -> Va {
        node.checked_add(self.off(ty, field) + 8 * i).unwrap()
    }

    /// A kernel virtual address of guest-physical `pa` (the direct map).
    fn direct_map(&self, pa: u64) -> Va {
        let base = self.read_u64(self.kernel.symbol("page_offset_base").unwrap());
        Va::new(base + pa)
    }

    /// A plausible kernel address that is not mapped.
    fn unmapped_kernel_address(&self) -> Va {
        let from = self.mm.align_down(PageSize::Size1G);
        (1..4096u64)
            .map(|i| from.checked_add(i << 30).unwrap())
            .find(|&va| self.session.translate(self.kernel.space(), va).is_err())
            .expect("an unmapped kernel address")
    }

    /// The `struct module` of the `i`th listed module and its `list` entry.
    fn module(&self, i: usize) -> (Va, Va) {
        let list = self.off("module", "list");
        let mut entry = self.kernel.symbol("modules").unwrap();
        for _ in 0..=i {
            entry = Va::new(self.read_u64(entry));
        }
        (entry.checked_sub(list).unwrap(), entry)
    }

    /// The ring buffer `prb` points at.
    fn prb(&self) -> Va {
        Va::new(self.read_u64(self.kernel.symbol("prb").unwrap()))
    }

    /// The address of `printk_ringbuffer.<outer>.<inner>`.
    fn prb_field(&self, outer: &str, inner: &str) -> Va {
        let p = self.kernel.profile();
        let o = p.field("printk_ringbuffer", outer).unwrap();
        let vmi_core::profile::TypeRef::Struct(ty) = &o.ty else {
            panic!("{outer} is a struct");
        };
        let i = p.field_offset(ty, inner).unwrap();
        self.prb().checked_add(o.offset + i).unwrap()
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
                let target = guest
                    .targets()
                    .into_iter()
                    .find(|t| t.threads == 3)
                    .unwrap();
                let mm = find_process(&session, &kernel, target.pid)
                    .unwrap()
                    .mm
                    .unwrap();
                let clean = |what: &str, w: &[LinuxError]| {
                    assert!(w.is_empty(), "{}: {what}: {w:?}", guest.name);
                };
                let m = maps(&session, &kernel, target.pid).unwrap();
                clean("maps", &m.warnings);
                let md = modules(&session, &kernel).unwrap();
                clean("modules", &md.warnings);
                let log = dmesg(&session, &kernel).unwrap();
                clean("dmesg", &log.warnings);
                Base {
                    guest,
                    memory,
                    registers,
                    session,
                    kernel,
                    pid: target.pid,
                    mm,
                    maps: m.items,
                    modules: md.items,
                    log: log.items,
                }
            })
            .collect()
    })
}

/// Runs `f` on another thread and fails if it does not end within `limit` (a hang) or panics.
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
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The maps of the patched target, on a watchdog thread, with the largest allocation.
fn patched_maps(i: usize, name: &str, patches: Patches) -> (Partial<Map>, usize) {
    bounded(name, move || {
        let b = &bases()[i];
        let s = b.patched(&patches);
        largest_alloc(|| maps(&s, &b.kernel, b.pid).unwrap())
    })
}

// ---------------------------------------------------------------------------------------------
// Maple tree.

fn maple_root_slot_pointing_to_its_own_node() {
    for (i, b) in bases().iter().enumerate() {
        let (enode, node) = b.root_node();
        let ty = (enode >> 3) & 0xf;
        assert_eq!(ty, 3, "{}: mm_mt's root is a maple_arange_64", b.guest.name);
        // Slot 0 (the lowest addresses, the binary's mappings) now holds the root itself.
        let slot0 = b.node_field(node, "maple_arange_64", "slot", 0);
        let child = b.read_u64(slot0);
        let patches = Patches::default().u64_at(b, slot0, enode);
        let name = format!("{}: root slot 0 -> root", b.guest.name);
        let (got, alloc) = patched_maps(i, &name, patches);
        let w = text(&got.warnings);
        eprintln!("{name}: {} of {} maps; {w}", got.items.len(), b.maps.len());
        assert_eq!(got.warnings.len(), 1, "{name}: {w}");
        assert!(
            w.contains("second time") && w.contains("cycle"),
            "{name}: {w}"
        );
        // What slot 0 covered is missing; the rest is intact and in order.
        let pivot0 = b.read_u64(b.node_field(node, "maple_arange_64", "pivot", 0));
        let rest: Vec<&Map> = b.maps.iter().filter(|m| m.start.raw() > pivot0).collect();
        assert_eq!(got.items.iter().collect::<Vec<_>>(), rest, "{name}");
        assert!(alloc < 1 << 20, "{name}: allocated {alloc} bytes");

        // The same one level down: a leaf's slot pointing at the leaf. To the walker that is
        // an entry (leaves hold values), so the "vm_area_struct" read there is rejected.
        let leaf = Va::new(child & !0xff);
        assert_eq!((child >> 3) & 0xf, 1, "{}: a maple_leaf_64", b.guest.name);
        let leaf_slot = b.node_field(leaf, "maple_range_64", "slot", 1);
        let patches = Patches::default().u64_at(b, leaf_slot, child);
        let name = format!("{}: leaf slot 1 -> leaf", b.guest.name);
        let (got, _) = patched_maps(i, &name, patches);
        let w = text(&got.warnings);
        eprintln!("{name}: {} of {} maps; {w}", got.items.len(), b.maps.len());
        assert_eq!(got.items.len(), b.maps.len() - 1, "{name}");
        assert_eq!(got.warnings.len(), 1, "{name}: {w}");
        assert!(w.contains("vm_area_struct"), "{name}: {w}");
    }
}

fn maple_chain_deeper_than_the_cap() {
    for (i, b) in bases().iter().enumerate() {
        // 40 maple_range_64 nodes in low memory (reserved, never read otherwise), each with
        // slot 0 pointing at the next: deeper than any tree and than the walker's cap.
        const NODES: u64 = 40;
        let pa0 = 0x10000u64;
        let slot = b.off("maple_range_64", "slot");
        let enode = |k: u64| b.direct_map(pa0 + k * 256).raw() | (2 << 3) | 4;
        let mut patches = Patches::default();
        for k in 0..NODES {
            let mut node = [0u8; 256];
            let next = if k + 1 < NODES { enode(k + 1) } else { 0 };
            node[slot as usize..slot as usize + 8].copy_from_slice(&next.to_le_bytes());
            patches = patches.at(b, b.direct_map(pa0 + k * 256), &node);
        }
        patches = patches.u64_at(b, b.ma_root(), enode(0) | 2);
        let name = format!("{}: chain of {NODES} nodes", b.guest.name);
        let (got, _) = patched_maps(i, &name, patches);
        let w = text(&got.warnings);
        eprintln!("{name}: {w}");
        assert!(got.items.is_empty(), "{name}");
        assert!(
            w.contains("at depth 16, the deepest allowed"),
            "{name}: {w}"
        );
    }
}

fn maple_garbage_pivots_roots_and_types() {
    for (i, b) in bases().iter().enumerate() {
        let (enode, node) = b.root_node();
        let pivot = |k| b.node_field(node, "maple_arange_64", "pivot", k);
        let unmapped = b.unmapped_kernel_address().raw();
        let cases: Vec<(&str, Patches, &str)> = vec![
            // Pivot 1 below pivot 0: the walk stops in that node after slot 0.
            (
                "pivots out of order",
                Patches::default().u64_at(b, pivot(1), 0x1000),
                "outside the node's remaining range",
            ),
            // The root node's type bits say "type 7", which no kernel writes.
            (
                "bad node type",
                Patches::default().u64_at(b, b.ma_root(), (enode & !0x78) | (7 << 3) | 2),
                "no valid maple_type",
            ),
            // The root points at unmapped memory.
            (
                "unmapped root node",
                Patches::default().u64_at(b, b.ma_root(), unmapped | (3 << 3) | 4 | 2),
                "cannot be read",
            ),
            // The root is not a node: a single entry (index 0) that is no vm_area_struct.
            (
                "garbage single entry",
                Patches::default().u64_at(b, b.ma_root(), 0x4141_4141_4141_4140),
                "vm_area_struct at 0x4141414141414140: cannot be read",
            ),
            // A dead node (parent pointing at itself).
            (
                "dead root",
                Patches::default().u64_at(
                    b,
                    node.checked_add(b.off("maple_node", "parent")).unwrap(),
                    node.raw(),
                ),
                "dead node",
            ),
        ];
        for (what, patches, expect) in cases {
            let name = format!("{}: {what}", b.guest.name);
            let (got, alloc) = patched_maps(i, &name, patches);
            let w = text(&got.warnings);
            eprintln!("{name}: {} maps; {w}", got.items.len());
            assert!(
                !got.warnings.is_empty() && w.contains(expect),
                "{name}: {w}"
            );
            assert!(got.items.len() < b.maps.len(), "{name}");
            assert!(alloc < 1 << 20, "{name}: allocated {alloc} bytes");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Module list.

fn patched_modules(i: usize, name: &str, patches: Patches) -> (Partial<Module>, usize) {
    bounded(name, move || {
        let b = &bases()[i];
        let s = b.patched(&patches);
        largest_alloc(|| modules(&s, &b.kernel).unwrap())
    })
}

fn module_list_cycles_are_cut() {
    for (i, b) in bases().iter().enumerate() {
        // Indices up to 3 are patched below: the guests load at least four modules.
        assert!(b.modules.len() >= 4, "{}", b.guest.name);
        for (from, to) in [(2, 1), (1, 1), (3, 0)] {
            let (_, from_entry) = b.module(from);
            let (_, to_entry) = b.module(to);
            let next = b.off("list_head", "next");
            let patches =
                Patches::default().u64_at(b, from_entry.checked_add(next).unwrap(), to_entry.raw());
            let name = format!("{}: module {from} -> {to}", b.guest.name);
            let (got, _) = patched_modules(i, &name, patches);
            let w = text(&got.warnings);
            eprintln!("{name}: {w}");
            assert_eq!(got.items, b.modules[..=from], "{name}");
            assert_eq!(got.warnings.len(), 1, "{name}: {w}");
            assert!(
                w.contains("module list") && w.contains("cycle"),
                "{name}: {w}"
            );
        }
    }
}

fn absurd_module_names_are_listed_escaped_with_a_warning() {
    for (i, b) in bases().iter().enumerate() {
        let name_off = b.off("module", "name");
        let (m0, _) = b.module(0);
        let (m2, _) = b.module(2);
        let patches = Patches::default()
            // No NUL in the whole char[56], and printable bytes beyond it.
            .at(b, m0.checked_add(name_off).unwrap(), &[b'A'; 64])
            .at(b, m2.checked_add(name_off).unwrap(), b"\xffevil\n\0");
        let name = format!("{}: module names", b.guest.name);
        let (got, alloc) = patched_modules(i, &name, patches);
        let w = text(&got.warnings);
        eprintln!("{name}: {w}");
        assert_eq!(got.items.len(), b.modules.len(), "{name}");
        assert_eq!(got.items[0].name, "A".repeat(56), "{name}");
        assert_eq!(got.items[2].name, "\\xffevil\\x0a", "{name}");
        assert_eq!(got.items[1], b.modules[1], "{name}");
        assert_eq!(got.items[0].base, b.modules[0].base, "{name}");
        assert_eq!(got.warnings.len(), 2, "{name}: {w}");
        assert!(
            w.contains("not NUL-terminated within 56 bytes"),
            "{name}: {w}"
        );
        assert!(w.contains("not printable ASCII"), "{name}: {w}");
        assert!(alloc < 1 << 16, "{name}: allocated {alloc} bytes");
    }
}

// ---------------------------------------------------------------------------------------------
// printk ring buffer.

fn patched_dmesg(
    i: usize,
    name: &str,
    patches: Patches,
) -> (Result<Partial<LogRecord>, LinuxError>, usize) {
    bounded(name, move || {
        let b = &bases()[i];
        let s = b.patched(&patches);
        largest_alloc(|| dmesg(&s, &b.kernel))
    })
}

fn absurd_ring_sizes_are_clear_errors() {
    for (i, b) in bases().iter().enumerate() {
        let count_bits = b.prb_field("desc_ring", "count_bits");
        let size_bits = b.prb_field("text_data_ring", "size_bits");
        for (what, at, value, expect) in [
            (
                "count_bits",
                count_bits,
                0xffff_ffffu32,
                "count_bits is 4294967295",
            ),
            ("count_bits", count_bits, 27, "count_bits is 27"),
            ("size_bits", size_bits, 64, "size_bits is 64"),
            ("size_bits", size_bits, 2, "size_bits is 2"),
        ] {
            let patches = Patches::default().at(b, at, &value.to_le_bytes());
            let name = format!("{}: {what} = {value}", b.guest.name);
            let (got, alloc) = patched_dmesg(i, &name, patches);
            let e = got.expect_err(&name).to_string();
            eprintln!("{name}: {e}");
            assert!(
                e.contains("printk_ringbuffer") && e.contains(expect),
                "{name}: {e}"
            );
            assert!(alloc < 1 << 16, "{name}: allocated {alloc} bytes");
        }
    }
}

fn damaged_rings_give_what_is_readable() {
    for (i, b) in bases().iter().enumerate() {
        let head = b.read_u64(b.prb_field("desc_ring", "head_id"));
        let descs = b.prb_field("desc_ring", "descs");
        let infos = Va::new(b.read_u64(b.prb_field("desc_ring", "infos")));
        let info_size = b.kernel.profile().struct_size("printk_info").unwrap();
        let text_len = b.off("printk_info", "text_len");
        let n = b.log.len();

        // The tail 2^40 ids behind the head: clamped to the ring's size, with a warning.
        let tail = b.prb_field("desc_ring", "tail_id");
        let patches = Patches::default().u64_at(b, tail, head.wrapping_sub(1 << 40));
        let name = format!("{}: tail far behind", b.guest.name);
        let (got, alloc) = patched_dmesg(i, &name, patches);
        let got = got.unwrap();
        let w = text(&got.warnings);
        eprintln!("{name}: {} records; {w}", got.items.len());
        assert_eq!(got.items, b.log, "{name}");
        assert!(w.contains("descriptors behind head"), "{name}: {w}");
        assert!(alloc < 1 << 20, "{name}: allocated {alloc} bytes");

        // The descriptor array unmapped: no records; the warnings are capped.
        let patches = Patches::default().u64_at(b, descs, b.unmapped_kernel_address().raw());
        let name = format!("{}: descs unmapped", b.guest.name);
        let (got, _) = patched_dmesg(i, &name, patches);
        let got = got.unwrap();
        eprintln!("{name}: {} warnings", got.warnings.len());
        assert!(got.items.is_empty(), "{name}");
        assert!(
            !got.warnings.is_empty() && got.warnings.len() <= 33,
            "{name}"
        );

        // Record 5's text_len beyond its data block: that record is dropped with a warning.
        let at = infos.checked_add(5 * info_size + text_len).unwrap();
        let patches = Patches::default().at(b, at, &0xffffu16.to_le_bytes());
        let name = format!("{}: text_len 65535", b.guest.name);
        let (got, _) = patched_dmesg(i, &name, patches);
        let got = got.unwrap();
        let w = text(&got.warnings);
        eprintln!("{name}: {w}");
        assert_eq!(got.items.len(), n - 1, "{name}");
        assert!(got.items.iter().all(|r| r.seq != 5), "{name}");
        assert!(w.contains("text_len 65535 exceeds"), "{name}: {w}");
    }
}

vmi_fixtures::real_guest_tests!(
    maple_root_slot_pointing_to_its_own_node,
    maple_chain_deeper_than_the_cap,
    maple_garbage_pivots_roots_and_types,
    module_list_cycles_are_cut,
    absurd_module_names_are_listed_escaped_with_a_warning,
    absurd_ring_sizes_are_clear_errors,
    damaged_rings_give_what_is_readable,
);
