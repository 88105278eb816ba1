//! [`Kallsyms`]: the decoded symbol table, with name lookup and export into a [`Profile`].

use std::hash::Hasher;
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHasher;
use vmi_core::profile::{Symbol, SymbolSource};
use vmi_core::{Profile, Va};

use super::decode::{Decoded, Tables};
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
///
/// The tables are checked when found, but names are expanded only when needed: a lookup
/// expands about 20 of them on kernels with `kallsyms_seqs_of_names` (6.2+, and 6.1 stable
/// backports); [`Kallsyms::iter`], [`Kallsyms::get`] and lookups on older kernels expand all
/// of them once. Clones share the tables.
#[derive(Clone)]
pub struct Kallsyms {
    tables: Arc<Tables>,
}

impl std::fmt::Debug for Kallsyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kallsyms")
            .field("symbols", &self.len())
            .field("layout", &self.tables.layout)
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

    /// Decodes the tables at a layout found earlier in the same `bytes`: checks every entry
    /// and copies the tables (a few MiB), so the result does not borrow `bytes`.
    pub fn decode(bytes: &[u8], layout: &TableLayout) -> Result<Kallsyms, KallsymsError> {
        Ok(Self {
            tables: Arc::new(Tables::check(bytes, layout)?),
        })
    }

    /// Where the tables were found and how addresses are computed.
    pub fn layout(&self) -> &TableLayout {
        &self.tables.layout
    }

    /// Number of symbols (`kallsyms_num_syms`).
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether lookups binary-search the kernel's name-sorted `kallsyms_seqs_of_names`
    /// (expanding about 20 names each) rather than an index of all names built on the first
    /// lookup.
    pub fn has_name_order(&self) -> bool {
        self.tables.has_seqs()
    }

    /// Whether the table is empty (a decoded kernel table never is).
    pub fn is_empty(&self) -> bool {
        self.tables.len() == 0
    }

    /// The address of the first symbol called `name`. On kernels with
    /// `kallsyms_seqs_of_names` this expands only the names a binary search visits.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        let i = self.tables.lookup(name)?;
        self.tables.address(i).map(|(address, _)| address)
    }

    /// The first symbol called `name` (expands every name, once).
    pub fn get(&self, name: &str) -> Option<KernelSymbol<'_>> {
        let d = self.tables.full();
        let i = d
            .index
            .find(name.as_bytes(), |j| d.name(j as usize).as_bytes())?;
        Some(symbol(d, i as usize))
    }

    /// Every symbol, in the kernel's order (ascending address); expands every name, once.
    pub fn iter(
        &self,
    ) -> impl DoubleEndedIterator<Item = KernelSymbol<'_>> + ExactSizeIterator + '_ {
        let d = self.tables.full();
        (0..d.entries.len()).map(move |i| symbol(d, i))
    }

    /// Adds every symbol to `profile` at its link-time address: the runtime address minus
    /// `virtual_slide` (see [`super::KernelImage::virtual_slide`]), as System.map and ISF files
    /// give addresses. Absolute (per-CPU) values are added unchanged. Where names repeat, the
    /// first symbol wins, matching [`Kallsyms::lookup`]; existing symbols of the same name are
    /// replaced.
    ///
    /// Nothing is copied: the profile gets a [`vmi_core::profile::SymbolSource`] sharing these
    /// tables, which answers each lookup when it is made.
    pub fn to_profile_symbols(&self, profile: &mut Profile, virtual_slide: i64) {
        profile.add_symbol_source(Arc::new(ProfileSymbols::new(
            Arc::clone(&self.tables),
            virtual_slide,
        )));
    }

    /// A new profile holding only these symbols (see [`Kallsyms::to_profile_symbols`]).
    pub fn to_profile(&self, virtual_slide: i64) -> Profile {
        let mut p = Profile::new("kallsyms (guest memory)");
        self.to_profile_symbols(&mut p, virtual_slide);
        p
    }
}

fn symbol(d: &Decoded, i: usize) -> KernelSymbol<'_> {
    let e = &d.entries[i];
    KernelSymbol {
        name: d.name(i),
        kind: char::from(e.kind),
        address: e.address,
        absolute: e.absolute,
    }
}

/// Symbols per block of [`ProfileSymbols`]' cache.
const BLOCK: usize = 256;

/// The kallsyms tables as a profile's symbol source: link-time addresses, computed a block of
/// 256 symbols at a time when one of them is first asked for (a [`Symbol`] must be handed out
/// by reference).
struct ProfileSymbols {
    tables: Arc<Tables>,
    virtual_slide: i64,
    blocks: Box<[OnceLock<Box<[Symbol]>>]>,
}

impl ProfileSymbols {
    fn new(tables: Arc<Tables>, virtual_slide: i64) -> Self {
        let blocks = (0..tables.len().div_ceil(BLOCK))
            .map(|_| OnceLock::new())
            .collect();
        Self {
            tables,
            virtual_slide,
            blocks,
        }
    }

    /// Symbol `i` at its link-time address.
    fn at(&self, i: usize) -> Option<&Symbol> {
        let block = self.blocks.get(i / BLOCK)?.get_or_init(|| {
            let first = i / BLOCK * BLOCK;
            (first..(first + BLOCK).min(self.tables.len()))
                .map(|j| {
                    let (address, absolute) = self.tables.address(j).unwrap_or((0, true));
                    Symbol {
                        address: if absolute {
                            address
                        } else {
                            address.wrapping_sub(self.virtual_slide as u64)
                        },
                        ty: None,
                    }
                })
                .collect()
        });
        block.get(i % BLOCK)
    }
}

impl SymbolSource for ProfileSymbols {
    fn symbol(&self, name: &str) -> Option<&Symbol> {
        self.at(self.tables.lookup(name)?)
    }

    fn symbols(&self) -> Box<dyn Iterator<Item = (&str, &Symbol)> + '_> {
        let d = self.tables.full();
        Box::new(
            (0..d.entries.len())
                .filter(|&i| d.is_first(i))
                .filter_map(move |i| Some((d.name(i), self.at(i)?))),
        )
    }

    fn symbol_count(&self) -> usize {
        self.tables.full().distinct
    }

    fn describe(&self) -> String {
        format!(
            "kallsyms: {} symbols, slide {:#x}",
            self.tables.len(),
            self.virtual_slide
        )
    }
}

/// An open-addressing hash index from names to the first symbol index with that name. It
/// stores only `u32`s: the names stay in the arena.
#[derive(Debug, Clone)]
pub(crate) struct NameIndex {
    /// Symbol index + 1; 0 is empty.
    slots: Vec<u32>,
}

impl NameIndex {
    pub(crate) fn with_capacity(n: usize) -> Self {
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

    /// Inserts `i` under `name` unless the name is already present; says whether it was
    /// inserted.
    pub(crate) fn insert_first<'n>(
        &mut self,
        name: &[u8],
        i: u32,
        name_of: impl Fn(u32) -> &'n [u8],
    ) -> bool {
        let mask = self.slots.len() - 1;
        let mut at = Self::hash(name) & mask;
        loop {
            match self.slots[at] {
                0 => {
                    self.slots[at] = i + 1;
                    return true;
                }
                s if name_of(s - 1) == name => return false,
                _ => at = (at + 1) & mask,
            }
        }
    }

    pub(crate) fn find<'n>(&self, name: &[u8], name_of: impl Fn(u32) -> &'n [u8]) -> Option<u32> {
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

#[cfg(test)]
mod tests {
    use vmi_arch_x86 as _;
    use vmi_backend_file as _;
    use vmi_core::Session;

    use crate::kallsyms::KernelImage;

    /// The binary search through `kallsyms_seqs_of_names` finds what the full index finds,
    /// for every name of real kernels, and the guest's own `/proc/kallsyms` addresses, also
    /// through the profile it feeds.
    #[test]
    fn lookups_agree_with_the_full_index_and_the_guests() {
        let guests = vmi_fixtures::guests();
        if guests.is_empty() {
            vmi_fixtures::skip("no real guests under the fixtures directory");
            return;
        }
        let mut searched = 0;
        for g in &guests {
            let session = Session::open(g.elf().to_str().unwrap(), &Default::default())
                .unwrap_or_else(|e| panic!("{}: {e}", g.name));
            let image = KernelImage::locate(&session).unwrap_or_else(|e| panic!("{}: {e}", g.name));
            let k = image
                .kallsyms()
                .unwrap_or_else(|e| panic!("{}: {e}", g.name));
            assert_eq!(k.has_name_order(), k.layout().seqs_of_names.is_some());
            searched += usize::from(k.has_name_order());
            let mut names = 0;
            for s in k.iter() {
                let first = k.get(s.name).map(|f| f.address);
                assert_eq!(k.lookup(s.name), first, "{}: {}", g.name, s.name);
                names += 1;
            }
            assert_eq!(names, k.len());
            for missing in ["", "!", "~~~~", "init_task_", "no_such_symbol_anywhere"] {
                assert_eq!(k.lookup(missing), None, "{}: {missing:?}", g.name);
            }
            let slide = image.virtual_slide();
            let profile = k.to_profile(slide);
            let truth = g.kallsyms();
            assert!(
                truth.len() >= 10,
                "{}: {} truth symbols",
                g.name,
                truth.len()
            );
            for (name, &addr) in &truth {
                assert_eq!(k.lookup(name), Some(addr), "{}: {name}", g.name);
                let absolute = k.get(name).is_some_and(|s| s.absolute);
                let link = if absolute {
                    addr
                } else {
                    addr.wrapping_sub(slide as u64)
                };
                assert_eq!(
                    profile.symbol_address(name).ok(),
                    Some(link),
                    "{}: {name}",
                    g.name
                );
            }
            assert!(profile.symbol_count() <= k.len());
            assert_eq!(profile.symbols().count(), profile.symbol_count());
        }
        assert!(searched > 0, "no guest kernel has kallsyms_seqs_of_names");
    }
}
