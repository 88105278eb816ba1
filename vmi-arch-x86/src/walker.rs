//! Translation of one virtual address: the hot path.
//!
//! One walker serves every mode: it reads the mode's [`ModeRules`] and loops over the levels.
//! `translate` and `walk` share it; a step sink decides whether the entries read are
//! recorded (`walk`) or dropped (`translate`, which is monomorphised with `()` so the record
//! compiles to nothing and nothing allocates).

use vmi_core::{
    AddressSpace, MemoryError, Pa, PageSize, PageWalk, PagingMode, Permissions, PhysicalMemory,
    Translation, TranslationError, Va, WalkStep,
};

use crate::entry::{accumulate, decode, Decoded};
use crate::mode::{rules, ModeRules};

/// Where the walker puts each entry it reads.
pub(crate) trait StepSink {
    /// Records one step.
    fn push(&mut self, step: WalkStep);
}

impl StepSink for () {
    #[inline(always)]
    fn push(&mut self, _step: WalkStep) {}
}

impl StepSink for Vec<WalkStep> {
    #[inline]
    fn push(&mut self, step: WalkStep) {
        Vec::push(self, step);
    }
}

/// Reads one little-endian entry of `entry_bytes` (4 or 8) with a single read.
#[inline]
pub(crate) fn read_entry(
    mem: &dyn PhysicalMemory,
    pa: Pa,
    entry_bytes: u8,
) -> Result<u64, MemoryError> {
    if entry_bytes == 4 {
        let mut b = [0u8; 4];
        mem.read(pa, &mut b)?;
        Ok(u64::from(u32::from_le_bytes(b)))
    } else {
        let mut b = [0u8; 8];
        mem.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// The rules for `mode`, or the error for a mode this crate does not know. `Disabled` is
/// handled by the callers before they get here.
#[inline]
pub(crate) fn rules_for(mode: PagingMode, va: Va) -> Result<&'static ModeRules, TranslationError> {
    // A PagingMode added to vmi-core later has no rules here: refuse rather than guess.
    // vmi-core has no "unsupported mode" error, so this reports the address as not valid in
    // that mode, which is true as far as this crate can tell.
    rules(mode).ok_or(TranslationError::NonCanonical { va, mode })
}

/// Paging disabled: the linear address is the physical address.
#[inline]
fn identity(va: Va) -> Translation {
    Translation {
        pa: Pa::new(va.raw()),
        size: PageSize::Size4K,
        perms: Permissions::ALL,
    }
}

/// Translates `va` in `space`, handing every entry read to `sink`.
#[inline]
pub(crate) fn translate_with<S: StepSink>(
    mem: &dyn PhysicalMemory,
    space: AddressSpace,
    va: Va,
    sink: &mut S,
) -> Result<Translation, TranslationError> {
    if space.mode == PagingMode::Disabled {
        return Ok(identity(va));
    }
    let rules = rules_for(space.mode, va)?;
    if !rules.is_canonical(va.raw()) {
        return Err(TranslationError::NonCanonical {
            va,
            mode: space.mode,
        });
    }
    let entry_bytes = u64::from(rules.entry_bytes);
    let mut table = space.root;
    let mut perms = Permissions::ALL;
    for level in rules.levels {
        let index = level.index(va.raw());
        // Only a caller-supplied root can be near 2^64; table addresses read from entries are
        // at most 52 bits wide.
        let Some(entry_pa) = table.checked_add(index * entry_bytes) else {
            return Err(TranslationError::TableUnreadable {
                va,
                level: level.level,
                entry_pa: table,
                reason: "the entry's address overflows 64 bits".to_owned(),
            });
        };
        let entry = read_entry(mem, entry_pa, rules.entry_bytes).map_err(|e| {
            TranslationError::TableUnreadable {
                va,
                level: level.level,
                entry_pa,
                reason: e.to_string(),
            }
        })?;
        sink.push(WalkStep {
            level: level.level,
            // At most 10 bits wide: the tables say so and a unit test checks it.
            index: index as u16,
            entry_pa,
            entry,
        });
        match decode(level, entry) {
            Decoded::NotPresent => {
                return Err(TranslationError::NotPresent {
                    va,
                    level: level.level,
                    entry,
                })
            }
            Decoded::Reserved(reserved) => {
                return Err(TranslationError::ReservedBits {
                    va,
                    level: level.level,
                    entry,
                    reserved,
                })
            }
            Decoded::Table(next) => {
                perms = accumulate(rules, level, perms, entry);
                table = Pa::new(next);
            }
            Decoded::Page { base, size } => {
                perms = accumulate(rules, level, perms, entry);
                // `base` is aligned to `size` (the address masks exclude the offset bits), so
                // OR-ing in the offset cannot carry.
                return Ok(Translation {
                    pa: Pa::new(base | va.page_offset(size)),
                    size,
                    perms,
                });
            }
        }
    }
    // Every rule table ends with level 1, which `decode` never reports as a table.
    unreachable!("x86 paging rules end at level 1")
}

/// Translates `va` in `space` without recording the walk (the hot path: no allocation).
#[inline]
pub fn translate(
    mem: &dyn PhysicalMemory,
    space: AddressSpace,
    va: Va,
) -> Result<Translation, TranslationError> {
    translate_with(mem, space, va, &mut ())
}

/// Translates `va` in `space` and reports every entry read on the way.
pub fn walk(mem: &dyn PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk {
    let mut steps = Vec::with_capacity(5);
    let result = translate_with(mem, space, va, &mut steps);
    PageWalk {
        va,
        space,
        steps,
        result,
    }
}
