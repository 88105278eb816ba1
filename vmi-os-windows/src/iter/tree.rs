//! The VAD tree: an AVL tree of `_RTL_BALANCED_NODE`s, walked in order (by address) with an
//! explicit stack, bounded by count, depth and time; a node met twice ends the walk.

use std::time::Instant;

use rustc_hash::FxHashSet;
use vmi_core::Va;

use super::Bounds;
use crate::iter::list::wrap;
use crate::mem::GuestMemory;
use crate::{Partial, WindowsError};

/// The deepest tree accepted: an AVL tree of 2^32 nodes is 46 deep.
pub const MAX_DEPTH: usize = 64;

/// The nodes of the tree at `root`, in order (left, node, right); `left`/`right` are the child
/// pointers' offsets in a node.
pub fn in_order(
    mem: &dyn GuestMemory,
    root: Va,
    left: u64,
    right: u64,
    bounds: Bounds,
    what: &'static str,
) -> Partial<Va> {
    let mut out = Partial::default();
    let started = Instant::now();
    let mut seen = FxHashSet::default();
    let mut stack: Vec<Va> = Vec::new();
    let mut cur = root;
    let child = |node: Va, off: u64| -> Result<Va, WindowsError> {
        let at = node.checked_add(off).ok_or(WindowsError::Corrupt {
            what,
            at: node,
            reason: "child pointer overflows".into(),
        })?;
        mem.read_va(at).map_err(|e| wrap(what, at, e))
    };
    loop {
        while cur.raw() != 0 {
            if !seen.insert(cur) {
                out.warnings.push(WindowsError::Cycle {
                    what,
                    at: cur,
                    count: out.items.len(),
                });
                return out;
            }
            if stack.len() >= MAX_DEPTH {
                out.warnings.push(WindowsError::Bound {
                    what,
                    limit: MAX_DEPTH as u64,
                    unit: "levels",
                });
                return out;
            }
            stack.push(cur);
            cur = match child(cur, left) {
                Ok(c) => c,
                Err(e) => {
                    out.warnings.push(e);
                    Va::new(0)
                }
            };
        }
        let Some(node) = stack.pop() else {
            return out;
        };
        if out.items.len() >= bounds.max_entries || started.elapsed() > bounds.max_time {
            out.warnings.push(WindowsError::Bound {
                what,
                limit: bounds.max_entries as u64,
                unit: "entries",
            });
            return out;
        }
        out.items.push(node);
        cur = match child(node, right) {
            Ok(c) => c,
            Err(e) => {
                out.warnings.push(e);
                Va::new(0)
            }
        };
    }
}
