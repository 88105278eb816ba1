//! [`Kallsyms`]: the decoded symbol table, with name lookup and export into a [`Profile`].

use std::hash::Hasher;

use rustc_hash::FxHasher;
use vmi_core::profile::Symbol;
use vmi_core::{Profile, Va};

use super::decode;
use super::error::KallsymsError;
use super::scan::TableLayout;

/// One decoded symbol, as a `/proc/kallsyms` line shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSymbol<'a> {
    /// The name.
    pub name: &'a str,
    /// The type letter (`T` text, `D` data, `R` read-only data, lowercase when local, `A` for
    /// per-CPU symbols of `--absolute-percpu` kernels, ...).
    pub kind: char,
    /// The runtime address (KASLR applied), or the per-CPU offset when [`Self::absolute`].
    pub address: u64,
    /// Whether the value is absolute (a per-CPU offset) rather than a kernel address; absolute
    /// values do not move with KASLR.
    pub absolute: bool,
}

/// One symbol as stored: its name is a range of the arena.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) name_start: u32,
    pub(crate) name_len: u16,
    pub(crate) kind: u8,
    pub(crate) absolute: bool,
    pub(crate) address: u64,
}

/// The kernel's own symbol table (what `/proc/kallsyms` lists for vmlinux), decoded from its
/// compressed in-memory form.
///
/// Symbols keep the kernel's order (by address). Names may repeat (static functions of the
/// same name in different files); [`Kallsyms::lookup`] returns the first, as the kernel's
/// `kallsyms_lookup_name()` does.
#[derive(Clone)]
pub struct Kallsyms {
    names: String,
    entries: Vec<Entry>,
    index: NameIndex,
    layout: TableLayout,
}

impl std::fmt::Debug for Kallsyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kallsyms")
            .field("symbols", &self.entries.len())
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl Kallsyms {
    /// Finds and decodes the kallsyms tables in `bytes`, a copy of kernel memory (typically
    /// `.rodata`, see [`super::KernelImage::region`]) starting at guest address `base`.
    ///
    /// Only the bytes are read; nothing about them is trusted. Malformed or absent tables
    /// yield an error, never a panic, and the work is bounded by the length of `bytes`.
    ///
    /// ```
    /// use vmi_core::Va;
    /// use vmi_os_linux::kallsyms::{Kallsyms, KallsymsError};
    ///
    /// let garbage = vec![0x5a_u8; 64 * 1024];
    /// let err = Kallsyms::find(&garbage, Va::new(0xffff_ffff_8200_0000)).unwrap_err();
    /// assert!(matches!(err, KallsymsError::TokenTableNotFound { .. }));
    /// ```
    pub fn find(bytes: &[u8], base: Va) -> Result<Kallsyms, KallsymsError> {
        let layout = TableLayout::find(bytes, base.raw())?;
        Self::decode(bytes, &layout)
    }

    /// Decodes the tables at a layout found earlier in the same `bytes`.
    pub fn decode(bytes: &[u8], layout: &TableLayout) -> Result<Kallsyms, KallsymsError> {
        decode::decode(bytes, layout)
    }

    pub(crate) fn from_parts(names: String, entries: Vec<Entry>, layout: TableLayout) -> Self {
        let mut index = NameIndex::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let name = slice(&names, e);
            index.insert_first(name.as_bytes(), i as u32, |j| {
                slice(&names, &entries[j as usize]).as_bytes()
            });
        }
        Self {
            names,
            entries,
            index,
            layout,
        }
    }

    /// Where the tables were found and how addresses are computed.
    pub fn layout(&self) -> &TableLayout {
        &self.layout
    }

    /// Number of symbols (`kallsyms_num_syms`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty (a decoded kernel table never is).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The address of the first symbol called `name`.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.get(name).map(|s| s.address)
    }

    /// The first symbol called `name`.
    pub fn get(&self, name: &str) -> Option<KernelSymbol<'_>> {
        let i = self
            .index
            .find(name.as_bytes(), |j| self.name(j as usize).as_bytes())?;
        Some(self.symbol(i as usize))
    }

    /// Every symbol, in the kernel's order (ascending address).
    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = KernelSymbol<'_>> + ExactSizeIterator + '_ {
        (0..self.entries.len()).map(|i| self.symbol(i))
    }

    /// Adds every symbol to `profile` at its link-time address: the runtime address minus
    /// `virtual_slide` (see [`super::KernelImage::virtual_slide`]), as System.map and ISF files
    /// give addresses. Absolute (per-CPU) values are added unchanged. Where names repeat, the
    /// first symbol wins, matching [`Kallsyms::lookup`]; existing symbols of the same name are
    /// replaced.
    ///
    /// This copies every name into the profile (about 30 ms for a 160,000-symbol kernel, most
    /// of it allocation): for a handful of symbols, [`Kallsyms::lookup`] is cheaper.
    pub fn to_profile_symbols(&self, profile: &mut Profile, virtual_slide: i64) {
        profile.reserve(self.len(), 0);
        for (i, s) in self.iter().enumerate() {
            // Only the first of repeated names: a later one would replace it.
            if self
                .index
                .find(s.name.as_bytes(), |j| self.name(j as usize).as_bytes())
                != Some(i as u32)
            {
                continue;
            }
            let address = if s.absolute {
                s.address
            } else {
                s.address.wrapping_sub(virtual_slide as u64)
            };
            profile.insert_symbol(s.name, Symbol { address, ty: None });
        }
    }

    /// A new profile holding only these symbols (see [`Kallsyms::to_profile_symbols`]).
    pub fn to_profile(&self, virtual_slide: i64) -> Profile {
        let mut p = Profile::new("kallsyms (guest memory)");
        self.to_profile_symbols(&mut p, virtual_slide);
        p
    }

    fn name(&self, i: usize) -> &str {
        slice(&self.names, &self.entries[i])
    }

    fn symbol(&self, i: usize) -> KernelSymbol<'_> {
        let e = &self.entries[i];
        KernelSymbol {
            name: slice(&self.names, e),
            kind: char::from(e.kind),
            address: e.address,
            absolute: e.absolute,
        }
    }
}

/// The name of `e` in `names`; empty if the range were ever wrong (it is built in bounds).
fn slice<'a>(names: &'a str, e: &Entry) -> &'a str {
    let start = e.name_start as usize;
    names
        .get(start..start + usize::from(e.name_len))
        .unwrap_or("")
}

/// An open-addressing hash index from names to the first symbol index with that name. It
/// stores only `u32`s: the names stay in the arena.
#[derive(Debug, Clone)]
struct NameIndex {
    /// Symbol index + 1; 0 is empty.
    slots: Vec<u32>,
}

impl NameIndex {
    fn with_capacity(n: usize) -> Self {
        let size = (n.max(8) * 2).next_power_of_two();
        Self {
            slots: vec![0; size],
        }
    }

    fn hash(name: &[u8]) -> usize {
        let mut h = FxHasher::default();
        h.write(name);
        h.finish() as usize
    }

    /// Inserts `i` under `name` unless the name is already present.
    fn insert_first<'n>(&mut self, name: &[u8], i: u32, name_of: impl Fn(u32) -> &'n [u8]) {
        let mask = self.slots.len() - 1;
        let mut at = Self::hash(name) & mask;
        loop {
            match self.slots[at] {
                0 => {
                    self.slots[at] = i + 1;
                    return;
                }
                s if name_of(s - 1) == name => return,
                _ => at = (at + 1) & mask,
            }
        }
    }

    fn find<'n>(&self, name: &[u8], name_of: impl Fn(u32) -> &'n [u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut at = Self::hash(name) & mask;
        // The table is at most half full, so an empty slot ends every probe.
        loop {
            match self.slots[at] {
                0 => return None,
                s if name_of(s - 1) == name => return Some(s - 1),
                _ => at = (at + 1) & mask,
            }
        }
    }
}
