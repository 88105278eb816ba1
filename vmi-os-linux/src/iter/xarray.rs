//! A bounded walk over a kernel `struct xarray` (include/linux/xarray.h, lib/xarray.c): the
//! page cache of every inode (`address_space.i_pages`) and the kernel's id allocators (`idr`s,
//! such as eBPF's `prog_idr`) are xarrays.
//!
//! An xarray is a radix tree of 64-slot `xa_node`s under `xa_head`. Entries are tagged by their
//! low bits:
//!
//! - `..10` internal: a node pointer (`xa_node + 2`) when above 4096, a sibling (the slot is
//!   covered by a multi-index entry earlier in the node) when below 63 << 2 | 2, or the retry
//!   and zero markers;
//! - `...1` a value entry (the page cache's shadow entries of evicted pages);
//! - `..00` a pointer (a `struct folio`, a `struct bpf_prog`).
//!
//! A head that is not a node is the single entry at index 0. A node's `shift` says how many
//! index bits each of its slots covers (0 for leaves), so slot `i` of a node at `base` starts at
//! `base + (i << shift)`.
//!
//! The guest controls every pointer, so the walk checks that each child's shift is its
//! parent's minus 6 (which bounds the depth at 11 levels and makes cycles impossible) and
//! bounds the nodes it reads and the entries it produces. Entries come in index order.

use std::time::{Duration, Instant};

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::Scalar;
use crate::error::LinuxError;
use crate::Partial;

/// Slots per node (`XA_CHUNK_SIZE`, with the default `XA_CHUNK_SHIFT` of 6).
pub const XA_CHUNK_SIZE: usize = 64;
/// Index bits one level covers.
pub const XA_CHUNK_SHIFT: u8 = 6;
/// Most nodes one walk reads: 2^20 nodes hold 2^26 entries, a 256 GiB file of 4 KiB pages.
pub const MAX_XA_NODES: usize = 1 << 20;
/// Most time one walk takes.
pub const MAX_XA_TIME: Duration = Duration::from_secs(5);

/// Where the fields of `xarray` and `xa_node` are.
#[derive(Debug, Clone, Copy)]
pub struct XarrayOffsets {
    xa_head: u64,
    shift: Scalar,
    slots: u64,
}

impl XarrayOffsets {
    /// Resolves the layout from the profile.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        Ok(Self {
            xa_head: profile.field_offset("xarray", "xa_head")?,
            shift: Scalar::resolve(profile, "xa_node", "shift")?,
            slots: profile.field_offset("xa_node", "slots")?,
        })
    }
}

/// What an xarray slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XaValue {
    /// A pointer to an object.
    Pointer(Va),
    /// A value entry (the integer it encodes, `entry >> 1`).
    Value(u64),
}

/// One entry of an xarray.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XaEntry {
    /// Its first index.
    pub index: u64,
    /// How many indices it covers (1, or more for a multi-index entry such as a large folio).
    pub span: u64,
    /// What it holds.
    pub value: XaValue,
}

fn is_internal(entry: u64) -> bool {
    entry & 3 == 2
}

fn is_node(entry: u64) -> bool {
    is_internal(entry) && entry > 4096
}

fn is_sibling(entry: u64) -> bool {
    is_internal(entry) && (entry >> 2) < (XA_CHUNK_SIZE as u64 - 1)
}

/// Every entry of the xarray at `xarray` (the address of the `struct xarray`), in index order,
/// with at most `limit` entries; what is cut (a bad shift, an unreadable node, a bound) is the
/// warning.
pub fn entries(
    mem: &VirtualMemory<'_>,
    offsets: &XarrayOffsets,
    xarray: Va,
    limit: usize,
    what: &'static str,
) -> Result<Partial<XaEntry>, LinuxError> {
    let head_at = xarray
        .checked_add(offsets.xa_head)
        .ok_or_else(|| corrupt(xarray, "xarray address overflows".into()))?;
    let head = mem.read_u64(head_at)?;
    let mut out = Partial::default();
    if head == 0 {
        return Ok(out);
    }
    if !is_node(head) {
        if let Some(value) = leaf_value(head) {
            out.items.push(XaEntry {
                index: 0,
                span: 1,
                value,
            });
        }
        return Ok(out);
    }

    let started = Instant::now();
    let mut nodes = 0usize;
    // (node, first index, shift its parent expects or None for the root)
    let mut stack: Vec<(Va, u64, Option<u8>)> = vec![(Va::new(head - 2), 0, None)];
    while let Some((node, base, expected)) = stack.pop() {
        nodes += 1;
        if nodes > MAX_XA_NODES {
            out.warnings.push(LinuxError::Unbounded {
                what,
                head: xarray,
                limit: MAX_XA_NODES,
            });
            break;
        }
        if started.elapsed() > MAX_XA_TIME {
            out.warnings.push(LinuxError::TimedOut {
                what,
                head: xarray,
                entries: out.items.len(),
                elapsed: started.elapsed(),
                limit: MAX_XA_TIME,
                inherited: false,
            });
            break;
        }
        let (shift, slots) = match read_node(mem, offsets, node) {
            Ok(n) => n,
            Err(e) => {
                out.warnings.push(e);
                continue;
            }
        };
        let bad_shift = match expected {
            Some(want) => shift != want,
            None => shift % XA_CHUNK_SHIFT != 0 || shift > 60,
        };
        if bad_shift {
            out.warnings.push(corrupt(
                node,
                format!("xa_node shift {shift} where {expected:?} was expected"),
            ));
            continue;
        }
        // Children are pushed in reverse so that they pop in index order.
        let mut children = Vec::new();
        let mut i = 0;
        while i < XA_CHUNK_SIZE {
            let entry = slots[i];
            let index = base.saturating_add((i as u64) << shift);
            if is_node(entry) {
                if shift == 0 {
                    out.warnings
                        .push(corrupt(node, format!("a leaf slot {i} points to a node")));
                } else {
                    children.push((Va::new(entry - 2), index, Some(shift - XA_CHUNK_SHIFT)));
                }
                i += 1;
                continue;
            }
            // A multi-index entry covers its slot and the sibling slots after it.
            let mut covered = 1u64;
            while i + (covered as usize) < XA_CHUNK_SIZE && is_sibling(slots[i + covered as usize])
            {
                covered += 1;
            }
            if let Some(value) = leaf_value(entry) {
                if out.items.len() >= limit {
                    out.warnings.push(LinuxError::Unbounded {
                        what,
                        head: xarray,
                        limit,
                    });
                    return Ok(out);
                }
                out.items.push(XaEntry {
                    index,
                    span: covered << shift,
                    value,
                });
            }
            i += covered as usize;
        }
        // Entries of this node and of its children interleave by index: a node holds either
        // kind in any slot, so emit in order by sorting at the end instead (cheap: entries
        // of one walk are mostly in order already).
        stack.extend(children.into_iter().rev());
    }
    out.items.sort_by_key(|e| e.index);
    Ok(out)
}

fn leaf_value(entry: u64) -> Option<XaValue> {
    if entry == 0 || is_internal(entry) {
        None
    } else if entry & 1 == 1 {
        Some(XaValue::Value(entry >> 1))
    } else {
        Some(XaValue::Pointer(Va::new(entry)))
    }
}

fn read_node(
    mem: &VirtualMemory<'_>,
    offsets: &XarrayOffsets,
    node: Va,
) -> Result<(u8, [u64; XA_CHUNK_SIZE]), LinuxError> {
    let shift_at = node
        .checked_add(offsets.shift.offset)
        .ok_or_else(|| corrupt(node, "node address overflows".into()))?;
    let mut b = [0u8; 8];
    mem.read_exact(shift_at, &mut b[..usize::from(offsets.shift.size)])?;
    let shift = u8::try_from(u64::from_le_bytes(b))
        .map_err(|_| corrupt(node, "xa_node shift out of range".into()))?;
    let slots_at = node
        .checked_add(offsets.slots)
        .ok_or_else(|| corrupt(node, "node address overflows".into()))?;
    let mut raw = [0u8; XA_CHUNK_SIZE * 8];
    mem.read_exact(slots_at, &mut raw)?;
    let mut slots = [0u64; XA_CHUNK_SIZE];
    for (slot, bytes) in slots.iter_mut().zip(raw.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        *slot = u64::from_le_bytes(le);
    }
    Ok((shift, slots))
}

fn corrupt(at: Va, reason: String) -> LinuxError {
    LinuxError::Corrupt {
        what: "xarray",
        at,
        reason,
    }
}
