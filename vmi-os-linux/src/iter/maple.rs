//! A bounded walk over a maple tree (`lib/maple_tree.c`), the structure that holds a
//! process's mappings since 6.1 (`mm_struct.mm_mt`).
//!
//! Encoding, after `include/linux/maple_tree.h` and `lib/maple_tree.c`:
//!
//! - `maple_tree.ma_root` is either empty (0), a single entry for index 0, or a node: the
//!   root is a node when `xa_is_node` holds (low two bits `10`, value above 4096), and the
//!   encoded node is the root with bit 1 (`MAPLE_ROOT_NODE`) cleared.
//! - An encoded node (`maple_enode`) is a 256-byte aligned `maple_node` address with the node
//!   type (`enum maple_type`) in bits 3..6: `maple_dense` and `maple_leaf_64` are leaves
//!   (`ma_is_leaf`), `maple_range_64` and `maple_arange_64` are internal.
//! - A node of range type has `pivot[]` and `slot[]`; slot `i` covers `(pivot[i-1], pivot[i]]`,
//!   the first from the node's minimum, the last up to its maximum. How many slots are in use
//!   is `ma_data_end`: the metadata `end` when the last pivot is 0 (or always, for
//!   `maple_arange_64`), else every slot. A zero pivot after the first slot means the node's
//!   maximum (`mas_logical_pivot`). Dense nodes cover one index per slot.
//!
//! The array sizes and offsets come from the profile (`maple_range_64.slot` has 16 elements
//! on 64-bit kernels, `maple_arange_64.slot` 10). The walk is bounded: a depth cap, a node
//! cap and an entry cap, a visited set (a node reached twice is skipped with a warning, so a
//! slot pointing back at its own node cannot loop), pivots checked to rise inside the node's
//! range, and dead nodes (`parent` pointing at the node itself) skipped. At most
//! [`MAX_WARNINGS`] warnings are kept per walk, plus one counting the rest.

use rustc_hash::FxHashSet;
use vmi_core::profile::TypeRef;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::error::LinuxError;
use crate::partial::Partial;

/// `MAPLE_NODE_MASK`: nodes are 256-byte aligned; the low byte of an encoded node is tags.
const NODE_MASK: u64 = 0xff;
/// `MAPLE_NODE_TYPE_SHIFT` and `MAPLE_NODE_TYPE_MASK`: where `enum maple_type` is.
const TYPE_SHIFT: u32 = 3;
const TYPE_MASK: u64 = 0x0f;
/// `MAPLE_ROOT_NODE`: bit 1 of `ma_root` marks a node.
const ROOT_NODE: u64 = 0x02;
/// `MAPLE_RESERVED_RANGE`: internal entries below this are reserved values, not data.
const RESERVED_RANGE: u64 = 4096;
/// The largest node the walker accepts from a profile (real ones are 256 bytes).
const MAX_NODE_SIZE: u64 = 4096;
/// The most slots a node type may have according to a profile (real: 31 dense, 16, 10).
const MAX_SLOTS: u64 = 64;
/// Warnings kept per walk; further problems are counted in one last warning.
pub const MAX_WARNINGS: usize = 32;

/// `enum maple_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// `maple_dense`: one index per slot (a leaf).
    Dense,
    /// `maple_leaf_64`: a leaf of ranges.
    Leaf64,
    /// `maple_range_64`: an internal node of ranges.
    Range64,
    /// `maple_arange_64`: an internal node of ranges with gap tracking (trees with
    /// `MT_FLAGS_ALLOC_RANGE`, such as `mm_mt`).
    Arange64,
}

impl NodeType {
    /// The type tagged in an encoded node (`mte_node_type`), or `None` for values no kernel
    /// writes.
    pub fn of_enode(enode: u64) -> Option<NodeType> {
        match (enode >> TYPE_SHIFT) & TYPE_MASK {
            0 => Some(NodeType::Dense),
            1 => Some(NodeType::Leaf64),
            2 => Some(NodeType::Range64),
            3 => Some(NodeType::Arange64),
            _ => None,
        }
    }

    /// `ma_is_leaf`: dense and leaf_64 nodes hold entries, the others hold nodes.
    pub fn is_leaf(self) -> bool {
        matches!(self, NodeType::Dense | NodeType::Leaf64)
    }
}

/// `xa_is_internal`: low two bits `10`.
fn is_internal(entry: u64) -> bool {
    entry & 3 == 2
}

/// `xa_is_node`: an internal entry above the reserved range.
fn is_node(entry: u64) -> bool {
    is_internal(entry) && entry > RESERVED_RANGE
}

/// `mt_is_reserved`: an internal entry below 4096 (`XA_ZERO_ENTRY`, retry markers).
fn is_reserved(entry: u64) -> bool {
    entry < RESERVED_RANGE && is_internal(entry)
}

/// Slots and pivots of one node type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeLayout {
    pivot: u64,
    pivots: usize,
    slot: u64,
    slots: usize,
    /// Offset of `meta.end` (a byte), where the type has metadata.
    meta_end: Option<u64>,
}

impl NodeLayout {
    fn resolve(profile: &Profile, ty: &str, node_size: u64) -> Result<NodeLayout, ProfileError> {
        let (slot, slots) = array(profile, ty, "slot", node_size)?;
        let (pivot, pivots) = array(profile, ty, "pivot", node_size)?;
        if pivots >= slots {
            return Err(bad(ty, "pivot", "not fewer pivots than slots"));
        }
        let meta_end = match profile.field(ty, "meta") {
            Ok(meta) => {
                let TypeRef::Struct(name) = &meta.ty else {
                    return Err(bad(ty, "meta", "not a struct"));
                };
                let end = meta
                    .offset
                    .checked_add(profile.field_offset(name, "end")?)
                    .filter(|&end| end < node_size)
                    .ok_or_else(|| bad(ty, "meta", "outside the node"))?;
                Some(end)
            }
            Err(_) => None,
        };
        Ok(NodeLayout {
            pivot,
            pivots,
            slot,
            slots,
            meta_end,
        })
    }
}

fn bad(ty: &str, field: &str, why: &str) -> ProfileError {
    crate::comps::layout::unexpected_layout(ty, field, why)
}

/// An array of 8-byte words inside a node: (offset, count).
fn array(
    profile: &Profile,
    ty: &str,
    field: &str,
    node_size: u64,
) -> Result<(u64, usize), ProfileError> {
    let f = profile.field(ty, field)?;
    let TypeRef::Array { count, element } = &f.ty else {
        return Err(bad(ty, field, "not an array"));
    };
    if profile.type_size(element) != Some(8) {
        return Err(bad(ty, field, "elements are not 8 bytes"));
    }
    let fits = count
        .checked_mul(8)
        .and_then(|b| b.checked_add(f.offset))
        .is_some_and(|end| end <= node_size);
    if *count == 0 || *count > MAX_SLOTS || !fits {
        return Err(bad(ty, field, "count out of range or outside the node"));
    }
    let count = usize::try_from(*count).map_err(|_| bad(ty, field, "count does not fit"))?;
    Ok((f.offset, count))
}

/// Where the fields of the maple tree structures are, resolved once from the profile.
#[derive(Debug, Clone)]
pub struct MapleOffsets {
    root: u64,
    node_size: usize,
    parent: u64,
    dense: NodeLayout,
    range: NodeLayout,
    arange: NodeLayout,
}

impl MapleOffsets {
    /// Resolves `maple_tree`, `maple_node`, `maple_range_64` and `maple_arange_64`. A kernel
    /// without maple trees (before 6.1) has none of them: the error names what is missing.
    pub fn resolve(profile: &Profile) -> Result<MapleOffsets, ProfileError> {
        let root = profile.field_offset("maple_tree", "ma_root")?;
        let node_size = profile.struct_size("maple_node")?;
        if node_size == 0 || node_size > MAX_NODE_SIZE {
            return Err(bad("maple_node", "<size>", "size is 0 or above 4 KiB"));
        }
        let parent = profile.field_offset("maple_node", "parent")?;
        if parent.saturating_add(8) > node_size {
            return Err(bad("maple_node", "parent", "outside the node"));
        }
        let (slot, slots) = array(profile, "maple_node", "slot", node_size)?;
        let dense = NodeLayout {
            pivot: 0,
            pivots: 0,
            slot,
            slots,
            meta_end: None,
        };
        Ok(MapleOffsets {
            root,
            node_size: usize::try_from(node_size)
                .map_err(|_| bad("maple_node", "<size>", "does not fit"))?,
            parent,
            dense,
            range: NodeLayout::resolve(profile, "maple_range_64", node_size)?,
            arange: NodeLayout::resolve(profile, "maple_arange_64", node_size)?,
        })
    }

    fn layout(&self, ty: NodeType) -> &NodeLayout {
        match ty {
            NodeType::Dense => &self.dense,
            NodeType::Leaf64 | NodeType::Range64 => &self.range,
            NodeType::Arange64 => &self.arange,
        }
    }
}

/// Bounds of one walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapleLimits {
    /// Deepest level descended to (the root is 1). Real trees of tens of thousands of
    /// entries are 4 levels deep; 16 levels would hold more than 4^15 entries.
    pub max_depth: usize,
    /// Most nodes read.
    pub max_nodes: usize,
    /// Most entries returned (`vm.max_map_count` defaults to 65530).
    pub max_entries: usize,
}

impl Default for MapleLimits {
    fn default() -> Self {
        MapleLimits {
            max_depth: 16,
            max_nodes: 1 << 17,
            max_entries: 1 << 20,
        }
    }
}

/// One entry of the tree: the value stored for the inclusive index range `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapleEntry {
    /// First index covered.
    pub first: u64,
    /// Last index covered (inclusive).
    pub last: u64,
    /// The stored value (for `mm_mt`, a `vm_area_struct` pointer).
    pub value: u64,
}

struct Pending {
    enode: u64,
    min: u64,
    max: u64,
    depth: usize,
}

/// Walks the maple tree at `tree` (a `struct maple_tree`) in index order and returns its
/// non-empty entries. Reserved internal values (`XA_ZERO_ENTRY`) are skipped. Problems
/// inside the tree (unreadable or corrupt nodes, cycles, exceeded bounds) become warnings
/// and the walk continues with the rest; only an unreadable `ma_root` is an error.
///
/// ```no_run
/// # fn demo(session: &vmi_core::Session, kernel: &vmi_os_linux::Kernel, mm: vmi_core::Va)
/// # -> Result<(), vmi_os_linux::LinuxError> {
/// use vmi_os_linux::iter::maple::{entries, MapleLimits, MapleOffsets};
/// let offsets = MapleOffsets::resolve(kernel.profile())?;
/// let mm_mt = kernel.profile().field_offset("mm_struct", "mm_mt")?;
/// let tree = mm.checked_add(mm_mt).unwrap();
/// let walk = entries(&kernel.memory(session), &offsets, tree, &MapleLimits::default())?;
/// for e in &walk.items {
///     println!("{:#x}-{:#x} -> {:#x}", e.first, e.last, e.value);
/// }
/// # Ok(()) }
/// ```
pub fn entries(
    mem: &VirtualMemory<'_>,
    offsets: &MapleOffsets,
    tree: Va,
    limits: &MapleLimits,
) -> Result<Partial<MapleEntry>, LinuxError> {
    let mut out = Partial::default();
    let root_at = tree.checked_add(offsets.root).ok_or(LinuxError::Corrupt {
        what: "maple tree",
        at: tree,
        reason: "ma_root address overflows".into(),
    })?;
    let root = mem.read_u64(root_at)?;
    if root == 0 {
        return Ok(out);
    }
    if !is_node(root) {
        // A single entry for index 0 lives in the root itself.
        if !is_reserved(root) {
            out.items.push(MapleEntry {
                first: 0,
                last: 0,
                value: root,
            });
        }
        return Ok(out);
    }

    let mut walker = Walker {
        mem,
        offsets,
        tree,
        limits,
        visited: FxHashSet::default(),
        buf: vec![0u8; offsets.node_size],
        out,
        dropped: 0,
    };
    let mut stack = vec![Pending {
        enode: root & !ROOT_NODE,
        min: 0,
        max: u64::MAX,
        depth: 1,
    }];
    let mut children = Vec::new();
    while let Some(p) = stack.pop() {
        if walker.visited.len() >= limits.max_nodes {
            walker.push_warning(LinuxError::Unbounded {
                what: "maple tree nodes",
                head: tree,
                limit: limits.max_nodes,
            });
            break;
        }
        children.clear();
        if !walker.node(&p, &mut children) {
            break;
        }
        // Children were collected left to right; the stack pops the leftmost first.
        stack.extend(children.drain(..).rev());
    }
    if walker.dropped > 0 {
        walker.out.warnings.push(LinuxError::Corrupt {
            what: "maple tree",
            at: tree,
            reason: format!("{} more problems in the tree", walker.dropped),
        });
    }
    Ok(walker.out)
}

struct Walker<'m, 'a> {
    mem: &'m VirtualMemory<'a>,
    offsets: &'m MapleOffsets,
    tree: Va,
    limits: &'m MapleLimits,
    visited: FxHashSet<u64>,
    buf: Vec<u8>,
    out: Partial<MapleEntry>,
    dropped: usize,
}

impl Walker<'_, '_> {
    fn warn(&mut self, at: u64, reason: String) {
        self.push_warning(LinuxError::Corrupt {
            what: "maple node",
            at: Va::new(at),
            reason,
        });
    }

    /// Keeps the first [`MAX_WARNINGS`] warnings and counts the rest.
    fn push_warning(&mut self, e: LinuxError) {
        if self.out.warnings.len() < MAX_WARNINGS {
            self.out.warnings.push(e);
        } else {
            self.dropped += 1;
        }
    }

    fn word(&self, offset: u64, index: usize) -> u64 {
        let at = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(index.checked_mul(8)?));
        // Offsets were checked against the node size when resolved; 0 is never reached.
        at.and_then(|a| self.buf.get(a..a.checked_add(8)?))
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }

    /// Reads one node, records its entries or queues its children. Returns false when the
    /// whole walk must stop (the entry cap).
    fn node(&mut self, p: &Pending, children: &mut Vec<Pending>) -> bool {
        let node = p.enode & !NODE_MASK;
        let Some(ty) = NodeType::of_enode(p.enode) else {
            self.warn(
                node,
                format!("encoded node {:#x} has no valid maple_type", p.enode),
            );
            return true;
        };
        if node == 0 {
            self.warn(node, format!("encoded node {:#x} is a null node", p.enode));
            return true;
        }
        if !self.visited.insert(node) {
            self.warn(
                node,
                "reached a second time (cycle in the tree); skipped".into(),
            );
            return true;
        }
        if let Err(e) = self.mem.read_exact(Va::new(node), &mut self.buf) {
            self.warn(node, format!("cannot be read: {e}"));
            return true;
        }
        if self.word(self.offsets.parent, 0) & !NODE_MASK == node {
            self.warn(node, "dead node (its parent is itself); skipped".into());
            return true;
        }
        let layout = *self.offsets.layout(ty);
        let end = self.data_end(ty, &layout, p.max);
        let mut lo = p.min;
        for i in 0..=end {
            let hi = if ty == NodeType::Dense {
                lo
            } else {
                let piv = if i < layout.pivots {
                    self.word(layout.pivot, i)
                } else {
                    p.max
                };
                // mas_logical_pivot: a zero pivot past the first slot means "up to max".
                if piv == 0 && i > 0 {
                    p.max
                } else {
                    piv
                }
            };
            if hi < lo || hi > p.max {
                self.warn(
                    node,
                    format!(
                        "pivot {i} ({hi:#x}) outside the node's remaining range {lo:#x}..={:#x}",
                        p.max
                    ),
                );
                break;
            }
            let slot = self.word(layout.slot, i);
            if ty.is_leaf() {
                if slot != 0 && !is_reserved(slot) {
                    if self.out.items.len() >= self.limits.max_entries {
                        self.push_warning(LinuxError::Unbounded {
                            what: "maple tree entries",
                            head: self.tree,
                            limit: self.limits.max_entries,
                        });
                        return false;
                    }
                    self.out.items.push(MapleEntry {
                        first: lo,
                        last: hi,
                        value: slot,
                    });
                }
            } else if slot == 0 || is_reserved(slot) {
                self.warn(node, format!("internal slot {i} holds no node ({slot:#x})"));
            } else if p.depth >= self.limits.max_depth {
                self.warn(
                    node,
                    format!(
                        "at depth {}, the deepest allowed: its children are skipped",
                        p.depth
                    ),
                );
                break;
            } else {
                children.push(Pending {
                    enode: slot,
                    min: lo,
                    max: hi,
                    depth: p.depth + 1,
                });
            }
            if hi == p.max {
                break;
            }
            lo = hi + 1;
        }
        true
    }

    /// `ma_data_end`: the offset of the last slot in use.
    fn data_end(&self, ty: NodeType, layout: &NodeLayout, max: u64) -> usize {
        let last_slot = layout.slots - 1;
        let meta = |w: &Self| match layout.meta_end {
            Some(off) => usize::try_from(off)
                .ok()
                .and_then(|o| w.buf.get(o))
                .map_or(last_slot, |&e| usize::from(e).min(last_slot)),
            // Without metadata (not in any released maple tree): the last non-zero pivot.
            None => (1..layout.pivots)
                .rev()
                .find(|&i| w.word(layout.pivot, i) != 0)
                .map_or(0, |i| i + 1)
                .min(last_slot),
        };
        match ty {
            NodeType::Dense => last_slot,
            NodeType::Arange64 => meta(self),
            NodeType::Leaf64 | NodeType::Range64 => {
                let last_pivot = layout.pivots - 1;
                let piv = self.word(layout.pivot, last_pivot);
                if piv == 0 {
                    meta(self)
                } else if piv == max {
                    last_pivot
                } else {
                    layout.pivots
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxHashMap;
    use vmi_core::memory::BufferMemory;
    use vmi_core::profile::{Field, UserType, UserTypeKind};
    use vmi_core::{AddressSpace, Pa, PagingMode};

    #[test]
    fn tags() {
        assert!(is_node(0xffff_8880_0123_4516));
        assert!(!is_node(0xffff_8880_0123_4500));
        assert!(!is_node(0x402));
        assert!(is_reserved(0x406));
        assert_eq!(
            NodeType::of_enode(0xffff_8880_0123_4500 | (3 << 3) | 4),
            Some(NodeType::Arange64)
        );
        assert_eq!(
            NodeType::of_enode(0xffff_8880_0123_4500 | (1 << 3)),
            Some(NodeType::Leaf64)
        );
        assert_eq!(NodeType::of_enode(0x7 << 3), None);
        assert!(NodeType::Leaf64.is_leaf() && NodeType::Dense.is_leaf());
        assert!(!NodeType::Range64.is_leaf() && !NodeType::Arange64.is_leaf());
    }

    /// The 64-bit layouts of include/linux/maple_tree.h, as BTF describes them.
    fn profile() -> Profile {
        let mut p = Profile::new("synthetic maple");
        p.insert_base_type("long unsigned int", 8);
        p.insert_base_type("unsigned char", 1);
        let words = |n| TypeRef::Array {
            count: n,
            element: Box::new(TypeRef::Base("long unsigned int".into())),
        };
        let ptrs = |n| TypeRef::Array {
            count: n,
            element: Box::new(TypeRef::Pointer(Box::new(TypeRef::Void))),
        };
        let ptr = TypeRef::Pointer(Box::new(TypeRef::Void));
        let mut add = |name: &str, size, fields: Vec<(&str, u64, TypeRef)>| {
            let fields: FxHashMap<String, Field> = fields
                .into_iter()
                .map(|(n, offset, ty)| (n.to_owned(), Field { offset, ty }))
                .collect();
            p.insert_type(
                name,
                UserType {
                    kind: UserTypeKind::Struct,
                    size,
                    fields,
                },
            );
        };
        let meta = TypeRef::Struct("maple_metadata".into());
        add("maple_tree", 24, vec![("ma_root", 8, ptr.clone())]);
        add(
            "maple_node",
            256,
            vec![("parent", 0, ptr.clone()), ("slot", 8, ptrs(31))],
        );
        add(
            "maple_range_64",
            256,
            vec![
                ("pivot", 8, words(15)),
                ("slot", 128, ptrs(16)),
                ("meta", 248, meta.clone()),
            ],
        );
        add(
            "maple_arange_64",
            248,
            vec![
                ("pivot", 8, words(9)),
                ("slot", 80, ptrs(10)),
                ("meta", 240, meta),
            ],
        );
        add(
            "maple_metadata",
            2,
            vec![("end", 0, TypeRef::Base("unsigned char".into()))],
        );
        p
    }

    /// Guest memory of 64 KiB, identity-mapped; the tree struct is at 0x100, node `k` at
    /// `0x1000 + 0x100 * k`.
    struct Guest {
        bytes: Vec<u8>,
    }

    const TREE: u64 = 0x100;

    fn node(k: u64) -> u64 {
        0x1000 + 0x100 * k
    }

    fn enode(k: u64, ty: u64) -> u64 {
        node(k) | (ty << TYPE_SHIFT) | 0x4
    }

    impl Guest {
        fn new() -> Self {
            Guest {
                bytes: vec![0; 0x10000],
            }
        }

        fn put(&mut self, at: u64, v: u64) -> &mut Self {
            let at = at as usize;
            self.bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
            self
        }

        fn root(&mut self, v: u64) -> &mut Self {
            self.put(TREE + 8, v)
        }

        /// A range-type node (`leaf_64`/`range_64`): pivots, slots, metadata end.
        /// The metadata shares its bytes with slot 15, as in the kernel: a full node has no
        /// metadata.
        fn range(&mut self, k: u64, pivots: &[u64], slots: &[u64], end: u8) -> &mut Self {
            self.bytes[(node(k) + 248) as usize] = end;
            for (i, &p) in pivots.iter().enumerate() {
                self.put(node(k) + 8 + 8 * i as u64, p);
            }
            for (i, &s) in slots.iter().enumerate() {
                self.put(node(k) + 128 + 8 * i as u64, s);
            }
            self
        }

        fn arange(&mut self, k: u64, pivots: &[u64], slots: &[u64], end: u8) -> &mut Self {
            for (i, &p) in pivots.iter().enumerate() {
                self.put(node(k) + 8 + 8 * i as u64, p);
            }
            for (i, &s) in slots.iter().enumerate() {
                self.put(node(k) + 80 + 8 * i as u64, s);
            }
            self.bytes[(node(k) + 240) as usize] = end;
            self
        }

        fn walk(&self, limits: &MapleLimits) -> Partial<MapleEntry> {
            let mem = BufferMemory::new(Pa::new(0), self.bytes.clone());
            let arch = vmi_arch_x86::X86::new();
            let space = AddressSpace {
                root: Pa::new(0),
                mode: PagingMode::Disabled,
            };
            let vm = VirtualMemory::new(&mem, &arch, space);
            let offsets = MapleOffsets::resolve(&profile()).unwrap();
            entries(&vm, &offsets, Va::new(TREE), limits).unwrap()
        }
    }

    fn ranges(p: &Partial<MapleEntry>) -> Vec<(u64, u64, u64)> {
        p.items.iter().map(|e| (e.first, e.last, e.value)).collect()
    }

    #[test]
    fn empty_single_and_reserved_roots() {
        let l = MapleLimits::default();
        let w = Guest::new().walk(&l);
        assert!(w.items.is_empty() && w.warnings.is_empty());
        let w = Guest::new().root(0xabc0).walk(&l);
        assert_eq!(ranges(&w), [(0, 0, 0xabc0)]);
        // XA_ZERO_ENTRY in the root is not data.
        let w = Guest::new().root(0x406).walk(&l);
        assert!(w.items.is_empty() && w.warnings.is_empty());
    }

    #[test]
    fn two_levels_with_gaps_full_leaves_and_implied_maxima() {
        let mut g = Guest::new();
        // Root: [0, 0x4fff] -> leaf 1, [0x5000, max] -> leaf 2.
        g.root(enode(0, 3) | ROOT_NODE)
            .arange(0, &[0x4fff], &[enode(1, 1), enode(2, 1)], 1);
        // Leaf 1: a gap, [0x1000, 0x1fff] = A, a gap, [0x3000, 0x4fff] = B; its last pivot
        // is 0, so the metadata end (3) says how many slots are used.
        g.range(1, &[0xfff, 0x1fff, 0x2fff, 0x4fff], &[0, 0xa0, 0, 0xb0], 3);
        // Leaf 2: all 16 slots used, the last up to the implied maximum.
        let pivots: Vec<u64> = (1..=15).map(|i| 0x5000 + i * 0x1000 - 1).collect();
        let slots: Vec<u64> = (0..16).map(|i| 0x100 + 0x10 * i).collect();
        g.range(2, &pivots, &slots, 0);
        // Garbage after the used slots of leaf 1 is ignored.
        g.put(node(1) + 128 + 8 * 5, 0xdead0);
        let w = g.walk(&MapleLimits::default());
        assert!(w.warnings.is_empty(), "{:?}", w.warnings);
        let mut want = vec![(0x1000, 0x1fff, 0xa0), (0x3000, 0x4fff, 0xb0)];
        for i in 0..16u64 {
            let last = if i == 15 {
                u64::MAX
            } else {
                0x5000 + (i + 1) * 0x1000 - 1
            };
            want.push((0x5000 + i * 0x1000, last, 0x100 + 0x10 * i));
        }
        assert_eq!(ranges(&w), want);
    }

    #[test]
    fn dense_leaves_cover_one_index_per_slot() {
        let mut g = Guest::new();
        g.root(enode(0, 2) | ROOT_NODE)
            .range(0, &[0x7, 0x0], &[enode(1, 0), 0], 0);
        // Dense node for [0, 7]: slots 8.. would be beyond the node's range.
        for i in 0..31u64 {
            g.put(
                node(1) + 8 + 8 * i,
                if i % 2 == 0 { 0x40 + 8 * i } else { 0 },
            );
        }
        let w = g.walk(&MapleLimits::default());
        assert!(w.warnings.is_empty(), "{:?}", w.warnings);
        assert_eq!(
            ranges(&w),
            [(0, 0, 0x40), (2, 2, 0x50), (4, 4, 0x60), (6, 6, 0x70)]
        );
    }

    #[test]
    fn node_and_entry_caps() {
        let mut g = Guest::new();
        g.root(enode(0, 3) | ROOT_NODE)
            .arange(0, &[0xfff], &[enode(1, 1), enode(2, 1)], 1)
            .range(1, &[0xfff], &[0xa0], 0)
            .range(2, &[0x1fff], &[0xb0], 0);
        let w = g.walk(&MapleLimits {
            max_nodes: 2,
            ..MapleLimits::default()
        });
        assert_eq!(ranges(&w), [(0, 0xfff, 0xa0)]);
        assert!(w.warnings[0].to_string().contains("no end after 2 entries"));
        let w = g.walk(&MapleLimits {
            max_entries: 1,
            ..MapleLimits::default()
        });
        assert_eq!(ranges(&w), [(0, 0xfff, 0xa0)]);
        assert_eq!(w.warnings.len(), 1);
    }

    #[test]
    fn warnings_are_capped() {
        // 10 children, each with 16 slots of an invalid node type: 160 problems.
        let mut g = Guest::new();
        let pivots: Vec<u64> = (1..10).map(|i| i * 0x10_0000 - 1).collect();
        let children: Vec<u64> = (1..=10).map(|k| enode(k, 2)).collect();
        g.root(enode(0, 3) | ROOT_NODE)
            .arange(0, &pivots, &children, 9);
        for k in 1..=10u64 {
            let lo = (k - 1) * 0x10_0000;
            let pivots: Vec<u64> = (1..16).map(|i| lo + i * 0x100 - 1).collect();
            let bad: Vec<u64> = (0..16).map(|i| enode(11 + i, 7)).collect();
            g.range(k, &pivots, &bad, 0);
        }
        let w = g.walk(&MapleLimits::default());
        assert!(w.items.is_empty());
        assert_eq!(w.warnings.len(), MAX_WARNINGS + 1);
        assert!(w.warnings[MAX_WARNINGS]
            .to_string()
            .contains("128 more problems"));
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random node bytes under a random root never panic, and whatever comes out is in
        /// index order, without overlaps, within the caps.
        #[test]
        fn random_trees_give_ordered_entries(
            root_node in 0u64..16,
            root_type in 0u64..8,
            words in proptest::collection::vec(
                prop_oneof![
                    // Mostly encoded nodes of this guest, small pivots and entries.
                    (0u64..16, 0u64..8).prop_map(|(k, t)| enode(k, t)),
                    0u64..0x1_0000,
                    any::<u64>(),
                ],
                16 * 32,
            ),
        ) {
            let mut g = Guest::new();
            g.root(enode(root_node, root_type) | ROOT_NODE);
            for (i, w) in words.iter().enumerate() {
                g.put(node(0) + 8 * i as u64, *w);
            }
            let w = g.walk(&MapleLimits { max_nodes: 64, ..MapleLimits::default() });
            prop_assert!(w.warnings.len() <= MAX_WARNINGS + 1);
            for e in &w.items {
                prop_assert!(e.first <= e.last);
            }
            for pair in w.items.windows(2) {
                prop_assert!(pair[0].last < pair[1].first, "{:?}", pair);
            }
        }
    }
}
