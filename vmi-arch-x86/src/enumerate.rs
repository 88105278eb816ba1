//! Enumeration of every present mapping of an address space.
//!
//! A depth-first walk over the paging structures in index order, so mappings come out in
//! ascending virtual order (IA-32e addresses are sign-extended, and the upper half follows the
//! lower half in unsigned order too). Guest page tables are hostile, so the work is bounded:
//!
//! - recursion depth is the number of levels (at most 5);
//! - a table that already appears on the current path (a PML4 entry pointing at the PML4, as
//!   Windows' self-map does) is not entered again: the path skips it silently, because
//!   the mappings it would yield are the paging structures themselves, reachable elsewhere;
//! - the total number of tables read is capped ([`DEFAULT_TABLE_LIMIT`] by default); when the
//!   cap is hit the visitor gets one error and enumeration stops.

use std::ops::ControlFlow;

use vmi_core::{
    AddressSpace, Mapping, Pa, PageSize, PagingMode, Permissions, PhysicalMemory, TranslationError,
    Va,
};

use crate::entry::{accumulate, decode, Decoded};
use crate::mode::ModeRules;
use crate::walker::{read_entry, rules_for};

/// The default cap on the number of paging structures one enumeration reads (2^20 tables,
/// 4 GiB of page tables: far beyond any real guest, a few seconds of work at worst).
pub const DEFAULT_TABLE_LIMIT: usize = 1 << 20;

/// The largest table in bytes (512 8-byte or 1024 4-byte entries).
const TABLE_BYTES: usize = 4096;

/// The visitor of [`vmi_core::Architecture::for_each_mapping`].
pub type Visitor<'a> = dyn FnMut(Result<Mapping, TranslationError>) -> ControlFlow<()> + 'a;

/// Calls `visit` for every present mapping of `space` in ascending virtual order, reading at
/// most `table_limit` paging structures (see the module docs for the bounds).
///
/// With paging disabled, the identity mapping of the memory map is reported in the largest
/// aligned pages that fit.
pub fn for_each_mapping(
    mem: &dyn PhysicalMemory,
    space: AddressSpace,
    table_limit: usize,
    visit: &mut Visitor<'_>,
) {
    if space.mode == PagingMode::Disabled {
        let _ = identity_mappings(mem, visit);
        return;
    }
    let rules = match rules_for(space.mode, Va::new(0)) {
        Ok(r) => r,
        Err(e) => {
            let _ = visit(Err(e));
            return;
        }
    };
    let mut walker = Enumerator {
        rules,
        mem,
        visit,
        tables_left: table_limit,
        table_limit,
        path: [Pa::new(0); 5],
    };
    let _ = walker.enter(0, space.root, 0, Permissions::ALL);
}

/// The identity map of `mem`'s memory map, in 1 GiB, 2 MiB and 4 KiB pages (each region's
/// ends rounded out to 4 KiB, never repeating a page a previous region already reported).
fn identity_mappings(mem: &dyn PhysicalMemory, visit: &mut Visitor<'_>) -> ControlFlow<()> {
    const PAGE: u64 = 4096;
    let mut next = 0u64;
    for region in mem.memory_map() {
        let mut cur = region.start.raw().max(next) & !(PAGE - 1);
        let end = region.end_raw();
        while cur < end {
            let size = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
                .into_iter()
                .find(|s| {
                    cur & s.offset_mask() == 0
                        && cur.checked_add(s.bytes()).is_some_and(|e| e <= end)
                })
                .unwrap_or(PageSize::Size4K);
            visit(Ok(Mapping {
                va: Va::new(cur),
                pa: Pa::new(cur),
                size,
                perms: Permissions::ALL,
            }))?;
            match cur.checked_add(size.bytes()) {
                Some(n) => cur = n,
                None => return ControlFlow::Break(()),
            }
        }
        next = cur;
    }
    ControlFlow::Continue(())
}

struct Enumerator<'a, 'v> {
    rules: &'static ModeRules,
    mem: &'a dyn PhysicalMemory,
    visit: &'a mut Visitor<'v>,
    /// Tables that may still be read.
    tables_left: usize,
    table_limit: usize,
    /// The tables on the current path, root first (`path[depth]` is the table being read).
    path: [Pa; 5],
}

impl Enumerator<'_, '_> {
    /// Reads the table at `depth` (0 = root) located at `table`, which maps virtual addresses
    /// from `va_base` (not yet sign-extended) with the rights `perms` accumulated above it.
    fn enter(
        &mut self,
        depth: usize,
        table: Pa,
        va_base: u64,
        perms: Permissions,
    ) -> ControlFlow<()> {
        let rules = self.rules;
        let Some(level) = rules.levels.get(depth) else {
            return ControlFlow::Continue(());
        };
        let Some(slot) = self.path.get_mut(depth) else {
            return ControlFlow::Continue(());
        };
        *slot = table;
        if self.tables_left == 0 {
            let limit = self.table_limit;
            let _ = (self.visit)(Err(TranslationError::LimitReached {
                va: Va::new(rules.canonicalize(va_base)),
                limit,
            }));
            return ControlFlow::Break(());
        }
        self.tables_left -= 1;

        let entry_bytes = usize::from(rules.entry_bytes);
        let entries = level.entries();
        // A table is 4 KiB except the 32-byte PAE PDPT; one read fetches all of it. If that
        // fails (a table straddling the end of a memory region), fall back to entry by entry
        // so exactly the entries `translate` could read are enumerated.
        let mut buf = [0u8; TABLE_BYTES];
        let len = (entries as usize * entry_bytes).min(TABLE_BYTES);
        let whole = self.mem.read(table, &mut buf[..len]).is_ok();
        let mut reported_unreadable = false;

        for index in 0..entries {
            let va = va_base | (index << level.shift);
            let offset = index * entry_bytes as u64;
            let entry = if whole {
                let at = offset as usize;
                match entry_bytes {
                    4 => buf
                        .get(at..at + 4)
                        .and_then(|b| b.try_into().ok())
                        .map(|b| u64::from(u32::from_le_bytes(b))),
                    _ => buf
                        .get(at..at + 8)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes),
                }
            } else {
                None
            };
            let entry = match entry {
                Some(e) => e,
                None => {
                    let entry_pa = table.checked_add(offset);
                    let read = match entry_pa {
                        Some(pa) => read_entry(self.mem, pa, rules.entry_bytes).map_err(Some),
                        None => Err(None),
                    };
                    match read {
                        Ok(e) => e,
                        Err(error) => {
                            // One report per table: the rest of it is most likely unreadable
                            // for the same reason (and formatting 512 messages is not free).
                            if !reported_unreadable {
                                reported_unreadable = true;
                                let reason = match error {
                                    Some(e) => e.to_string(),
                                    None => "the entry's address overflows 64 bits".to_owned(),
                                };
                                (self.visit)(Err(TranslationError::TableUnreadable {
                                    va: Va::new(rules.canonicalize(va)),
                                    level: level.level,
                                    entry_pa: entry_pa.unwrap_or(table),
                                    reason,
                                }))?;
                            }
                            continue;
                        }
                    }
                }
            };
            match decode(level, entry) {
                Decoded::NotPresent => {}
                Decoded::Reserved(reserved) => {
                    (self.visit)(Err(TranslationError::ReservedBits {
                        va: Va::new(rules.canonicalize(va)),
                        level: level.level,
                        entry,
                        reserved,
                    }))?;
                }
                Decoded::Page { base, size } => {
                    (self.visit)(Ok(Mapping {
                        va: Va::new(rules.canonicalize(va)),
                        pa: Pa::new(base),
                        size,
                        perms: accumulate(rules, level, perms, entry),
                    }))?;
                }
                Decoded::Table(next) => {
                    let next = Pa::new(next);
                    if self.path[..=depth].contains(&next) {
                        continue;
                    }
                    self.enter(depth + 1, next, va, accumulate(rules, level, perms, entry))?;
                }
            }
        }
        ControlFlow::Continue(())
    }
}
