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
//! range, and dead nodes (`parent` pointing at the node itself) skipped.

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
    crate::comps::vma::unexpected_layout(ty, field, why)
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
            walker.out.warnings.push(LinuxError::Unbounded {
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
}

impl Walker<'_, '_> {
    fn warn(&mut self, at: u64, reason: String) {
        self.out.warnings.push(LinuxError::Corrupt {
            what: "maple node",
            at: Va::new(at),
            reason,
        });
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
            self.out.warnings.push(e.into());
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
                        self.out.warnings.push(LinuxError::Unbounded {
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
                self.out.warnings.push(LinuxError::Unbounded {
                    what: "maple tree depth",
                    head: self.tree,
                    limit: self.limits.max_depth,
                });
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
}
