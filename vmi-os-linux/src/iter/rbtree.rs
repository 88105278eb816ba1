//! A bounded in-order walk over a kernel red-black tree (`struct rb_root` / `struct rb_node`).
//!
//! Since 6.8 a mount namespace keeps its mounts in an rb-tree (`mnt_namespace.mounts`, entries
//! `mount.mnt_node`, ordered by `mnt_id_unique`), where 6.1 had a list. The kernel walks it
//! with `rb_first`/`rb_next`, which follow parent pointers; this walk keeps its own stack of
//! left spines instead, so it needs only `rb_left`/`rb_right` and cannot be led astray by a
//! forged parent pointer. A guest controls every pointer of the tree, so the walk ends, with a
//! warning, at
//!
//! - a child that is not a kernel address (`NULL` is the normal "no child"),
//! - a node that cannot be read,
//! - a node reached twice (a cycle: a real tree is acyclic),
//! - a path deeper than [`MAX_RB_DEPTH`] (a real tree of `n` nodes is at most `2 log2(n + 1)`
//!   deep: 42 for a million nodes),
//! - the entry bound ([`MAX_RB_ENTRIES`] unless [`RbWalker::with_limit`] says otherwise),
//! - the time bound of list walks ([`MAX_LIST_TIME`], checked per node).
//!
//! After a broken link the nodes already on the walk's stack (ancestors whose left subtree
//! was done) are still produced, in order; nothing below the broken link is. Cost: one 24-byte read per node plus a
//! hash-set insertion for cycle detection; memory bounded by the entry and depth bounds.

use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::error::LinuxError;
use crate::iter::list::{is_kernel_pointer, MAX_LIST_TIME};

/// The default bound on the nodes of one tree (as [`crate::iter::list::MAX_LIST_ENTRIES`]).
pub const MAX_RB_ENTRIES: usize = 1 << 20;

/// The deepest path followed: a valid red-black tree of 2^32 nodes is at most 64 deep.
pub const MAX_RB_DEPTH: usize = 96;

/// Where the child pointers of `struct rb_node` are, and the root pointer of `struct rb_root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RbOffsets {
    /// `rb_node.rb_left`.
    pub left: u64,
    /// `rb_node.rb_right`.
    pub right: u64,
    /// `rb_root.rb_node`.
    pub root: u64,
}

impl RbOffsets {
    /// Resolves the layout from the profile.
    pub fn resolve(profile: &Profile) -> Result<RbOffsets, ProfileError> {
        Ok(RbOffsets {
            left: profile.field_offset("rb_node", "rb_left")?,
            right: profile.field_offset("rb_node", "rb_right")?,
            root: profile.field_offset("rb_root", "rb_node")?,
        })
    }
}

/// An iterator over the nodes of an rb-tree in order (smallest key first): the address of
/// each `rb_node`, which the caller turns into its container.
pub struct RbWalker<'a> {
    mem: VirtualMemory<'a>,
    offsets: RbOffsets,
    what: &'static str,
    head: Va,
    /// The left spine still to visit: nodes whose left subtree is done or being done.
    stack: Vec<Va>,
    seen: FxHashSet<Va>,
    limit: usize,
    count: usize,
    done: bool,
    /// A link was broken: no more descents, only the stack is drained.
    broken: bool,
    warning: Option<LinuxError>,
    started: Instant,
    time_limit: Duration,
}

impl<'a> RbWalker<'a> {
    /// A walk of the tree whose `rb_root` is at `root`; `what` names it in warnings.
    pub fn new(mem: VirtualMemory<'a>, offsets: RbOffsets, root: Va, what: &'static str) -> Self {
        let mut walk = RbWalker {
            mem,
            offsets,
            what,
            head: root,
            stack: Vec::new(),
            seen: FxHashSet::default(),
            limit: MAX_RB_ENTRIES,
            count: 0,
            done: false,
            broken: false,
            warning: None,
            started: Instant::now(),
            time_limit: MAX_LIST_TIME,
        };
        match root
            .checked_add(offsets.root)
            .ok_or_else(|| "the root pointer lies beyond the address space".to_owned())
            .and_then(|at| {
                mem.read_va(at)
                    .map_err(|e| format!("the root pointer cannot be read: {e}"))
            }) {
            Ok(first) => walk.push_left_spine(first, root),
            Err(reason) => walk.stop(root, reason),
        }
        walk
    }

    /// The same walk, producing at most `limit` nodes (more is [`LinuxError::Unbounded`]).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Why the walk ended early, once it has ended.
    pub fn into_warning(self) -> Option<LinuxError> {
        self.warning
    }

    fn stop(&mut self, at: Va, reason: String) {
        self.broken = true;
        if self.warning.is_none() {
            self.warning = Some(LinuxError::Corrupt {
                what: self.what,
                at,
                reason,
            });
        }
    }

    /// Pushes `node` and its chain of left children; `from` is who pointed to it.
    fn push_left_spine(&mut self, mut node: Va, mut from: Va) {
        while node.raw() != 0 && !self.broken {
            if !is_kernel_pointer(self.mem.space().mode, node) {
                return self.stop(
                    from,
                    format!("child pointer {node} is not an aligned kernel address"),
                );
            }
            if self.stack.len() >= MAX_RB_DEPTH {
                return self.stop(
                    from,
                    format!("a path deeper than {MAX_RB_DEPTH} nodes (no real tree is)"),
                );
            }
            if self.seen.len() >= self.limit {
                self.done = true;
                self.stack.clear();
                self.warning = Some(LinuxError::Unbounded {
                    what: self.what,
                    head: self.head,
                    limit: self.limit,
                });
                return;
            }
            if !self.seen.insert(node) {
                return self.stop(
                    from,
                    format!("node {node} is reached twice (a cycle; a real tree has none)"),
                );
            }
            self.stack.push(node);
            let left = match node
                .checked_add(self.offsets.left)
                .map(|at| self.mem.read_va(at))
            {
                Some(Ok(left)) => left,
                Some(Err(e)) => {
                    self.stack.pop();
                    return self.stop(node, format!("the node cannot be read: {e}"));
                }
                None => {
                    self.stack.pop();
                    return self.stop(node, "the node lies beyond the address space".into());
                }
            };
            from = node;
            node = left;
        }
    }
}

impl Iterator for RbWalker<'_> {
    type Item = Va;

    fn next(&mut self) -> Option<Va> {
        if self.done {
            return None;
        }
        if self.started.elapsed() >= self.time_limit {
            self.done = true;
            self.warning = Some(LinuxError::TimedOut {
                what: self.what,
                head: self.head,
                entries: self.count,
                elapsed: self.started.elapsed(),
                limit: self.time_limit,
                inherited: false,
            });
            return None;
        }
        let Some(node) = self.stack.pop() else {
            self.done = true;
            return None;
        };
        match node
            .checked_add(self.offsets.right)
            .map(|at| self.mem.read_va(at))
        {
            Some(Ok(right)) => self.push_left_spine(right, node),
            Some(Err(e)) => self.stop(node, format!("its right child cannot be read: {e}")),
            None => self.stop(node, "the node lies beyond the address space".into()),
        }
        self.count += 1;
        Some(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iter::test_support::{DirectMap, BASE};
    use vmi_core::memory::BufferMemory;
    use vmi_core::VirtualMemory;
    use vmi_core::{AddressSpace, Pa, PagingMode};

    fn node(i: u64) -> u64 {
        BASE + 0x100 * i
    }

    /// Node `i` at `0x100 * i` (1-based; slot 0 holds the root pointer) with `(left, right)`
    /// children given as node numbers (0 = none, or a raw pointer above 0x1000).
    fn walk(root: u64, children: &[(u64, u64)]) -> (Vec<u64>, Option<String>) {
        let mut bytes = vec![0u8; 0x100 * (children.len() + 1)];
        let ptr = |n: u64| {
            if n == 0 {
                0
            } else if n < 0x1000 {
                node(n)
            } else {
                n
            }
        };
        bytes[..8].copy_from_slice(&ptr(root).to_le_bytes());
        for (i, (l, r)) in children.iter().enumerate() {
            let at = 0x100 * (i + 1);
            bytes[at + 8..at + 16].copy_from_slice(&ptr(*r).to_le_bytes());
            bytes[at + 16..at + 24].copy_from_slice(&ptr(*l).to_le_bytes());
        }
        let mem = BufferMemory::new(Pa::new(0), bytes);
        let space = AddressSpace {
            root: Pa::new(0),
            mode: PagingMode::Ia32e4,
        };
        let vm = VirtualMemory::new(&mem, &DirectMap, space);
        let offsets = RbOffsets {
            left: 16,
            right: 8,
            root: 0,
        };
        let mut w = RbWalker::new(vm, offsets, Va::new(BASE), "test tree");
        let got = w.by_ref().map(|v| (v.raw() - BASE) / 0x100).collect();
        (got, w.into_warning().map(|e| e.to_string()))
    }

    #[test]
    fn in_order() {
        // 2 is the root with children 1 and 4; 4 has children 3 and 5.
        let (got, warn) = walk(2, &[(0, 0), (1, 4), (0, 0), (3, 5), (0, 0)]);
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert_eq!(warn, None);
        let (got, warn) = walk(0, &[]);
        assert!(got.is_empty() && warn.is_none());
    }

    #[test]
    fn cycles_and_bad_pointers_end_with_a_warning() {
        // 5's right child is the root again.
        let (got, warn) = walk(2, &[(0, 0), (1, 4), (0, 0), (3, 5), (0, 2)]);
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert!(warn.unwrap().contains("cycle"));
        // A node that is its own left child.
        let (got, warn) = walk(1, &[(1, 0)]);
        assert_eq!(got, [1]);
        assert!(warn.unwrap().contains("cycle"));
        let (got, warn) = walk(1, &[(0, 0xdead_0000)]);
        assert_eq!(got, [1]);
        assert!(warn.unwrap().contains("not an aligned kernel address"));
        // Mapped but beyond the buffer: unreadable.
        let (got, warn) = walk(1, &[(0, BASE + 0x10_0000)]);
        assert_eq!(got, [1]);
        assert!(warn.unwrap().contains("cannot be read"));
    }

    #[test]
    fn a_deep_chain_is_cut() {
        // A chain of left children 200 deep.
        let n = 200u64;
        let children: Vec<(u64, u64)> = (1..=n)
            .map(|i| (if i < n { i + 1 } else { 0 }, 0))
            .collect();
        let (got, warn) = walk(1, &children);
        // The spine walked so far, bottom up (each node's left subtree is cut).
        assert_eq!(got, (1..=MAX_RB_DEPTH as u64).rev().collect::<Vec<_>>());
        assert!(warn.unwrap().contains("deeper"));
    }
}
