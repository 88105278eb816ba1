//! `LIST_ENTRY` lists: from a head, follow `Flink` until back at the head; each entry's
//! object is `entry - link_offset`. Bounded by count and time, a revisited entry or an
//! unreadable link ends the walk with a warning.

use std::time::Instant;

use rustc_hash::FxHashSet;
use vmi_core::Va;

use super::Bounds;
use crate::mem::GuestMemory;
use crate::{Partial, WindowsError};

/// The objects of the list at `head`, whose entries sit `link_offset` bytes into each object.
/// `what` names the walk in warnings. A NULL `Flink` ends it silently (an empty or
/// uninitialised list).
pub fn walk(
    mem: &dyn GuestMemory,
    head: Va,
    link_offset: u64,
    bounds: Bounds,
    what: &'static str,
) -> Partial<Va> {
    walk_links(head, link_offset, bounds, what, |at| mem.read_va(at))
}

/// The objects of a 32-bit `LIST_ENTRY32` list (WoW64 loader lists): as [`walk`] with 4-byte
/// links.
pub fn walk32(
    mem: &dyn GuestMemory,
    head: Va,
    link_offset: u64,
    bounds: Bounds,
    what: &'static str,
) -> Partial<Va> {
    walk_links(head, link_offset, bounds, what, |at| {
        mem.read_u32(at).map(|v| Va::new(u64::from(v)))
    })
}

/// A read failure as a walk's warning.
pub fn wrap(what: &'static str, at: Va, e: WindowsError) -> WindowsError {
    match e {
        WindowsError::Memory(source) => WindowsError::Unreadable { what, at, source },
        other => other,
    }
}

/// [`walk`] and [`walk32`]: the same bounded walk, links read by `read_link` (`Flink` at the
/// entry's start, whatever its width).
fn walk_links(
    head: Va,
    link_offset: u64,
    bounds: Bounds,
    what: &'static str,
    read_link: impl Fn(Va) -> Result<Va, WindowsError>,
) -> Partial<Va> {
    let mut out = Partial::default();
    let started = Instant::now();
    let mut seen = FxHashSet::default();
    let mut at = match read_link(head) {
        Ok(v) => v,
        Err(e) => {
            out.warnings.push(wrap(what, head, e));
            return out;
        }
    };
    while at != head && at.raw() != 0 {
        if out.items.len() >= bounds.max_entries {
            out.warnings.push(WindowsError::Bound {
                what,
                limit: bounds.max_entries as u64,
                unit: "entries",
            });
            break;
        }
        if started.elapsed() > bounds.max_time {
            out.warnings.push(WindowsError::Bound {
                what,
                limit: bounds.max_time.as_millis() as u64,
                unit: "ms",
            });
            break;
        }
        if !seen.insert(at) {
            out.warnings.push(WindowsError::Cycle {
                what,
                at,
                count: out.items.len(),
            });
            break;
        }
        let Some(object) = at.checked_sub(link_offset) else {
            out.warnings.push(WindowsError::Corrupt {
                what,
                at,
                reason: "link below its offset".into(),
            });
            break;
        };
        let next = match read_link(at) {
            Ok(n) => n,
            Err(e) => {
                out.warnings.push(wrap(what, at, e));
                break;
            }
        };
        out.items.push(object);
        at = next;
    }
    out
}
