//! The structs and unions of a parsed blob as a [`TypeSource`]: each converted into a
//! [`UserType`] when first looked up, then kept.
//!
//! A 6.12 kernel's BTF has about 10,000 structs and unions with 100,000 fields; an analysis
//! reads a few dozen of them. Converting all of them up front cost more than the rest of a
//! `vmi ps` together (a `String` per field, a hash map per struct). Lookups answer exactly
//! what the full conversion ([`Btf::to_profile_with_report`]) would hold, under the same
//! names: the struct the index prefers for a name, `unnamed_btf_<id>` for anonymous ones,
//! and typedef names of structs that no struct already has.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use rustc_hash::FxBuildHasher;
use vmi_core::profile::{TypeSource, UserType};

use super::index::{Btf, Index, NameTable, Slot};
use super::profile::ConversionReport;
use super::types::{Kind, TypeId};

/// A parsed blob (its sections and index) whose structs are converted on demand.
pub(crate) struct LazyTypes {
    /// Bytes holding the type and string sections.
    bytes: Box<[u8]>,
    types: Range<usize>,
    strings: Range<usize>,
    index: Arc<Index>,
    /// One slot per struct or union, in the order of [`Btf::aggregates`].
    slots: Box<[OnceLock<Option<Converted>>]>,
    /// Typedef name -> the first typedef of that name that names a struct or union.
    aliases: OnceLock<NameTable>,
    /// Member visits left for all conversions together: a hostile blob nesting anonymous
    /// types over and over runs out, as in the full conversion.
    budget: AtomicU64,
}

/// A converted struct or union.
struct Converted {
    /// The name when it is not in the blob (`unnamed_btf_<id>`).
    own_name: Option<Box<str>>,
    ty: UserType,
}

impl LazyTypes {
    /// Keeps `blob` (the bytes `index` was parsed from).
    pub(crate) fn new(blob: Box<[u8]>, index: Arc<Index>) -> Self {
        let (types, strings) = (index.types_range.clone(), index.strings_range.clone());
        Self::with_sections(blob, types, strings, index)
    }

    /// Copies the sections of a parsed blob (the rest of the blob is a header).
    pub(crate) fn copy_of(btf: &Btf<'_>) -> Self {
        let (types, strings) = btf.sections();
        let mut bytes = Vec::with_capacity(types.len() + strings.len());
        bytes.extend_from_slice(types);
        bytes.extend_from_slice(strings);
        let split = types.len();
        let total = bytes.len();
        Self::with_sections(
            bytes.into_boxed_slice(),
            0..split,
            split..total,
            Arc::clone(btf.index()),
        )
    }

    fn with_sections(
        bytes: Box<[u8]>,
        types: Range<usize>,
        strings: Range<usize>,
        index: Arc<Index>,
    ) -> Self {
        let mut this = Self {
            bytes,
            types,
            strings,
            index,
            slots: Box::new([]),
            aliases: OnceLock::new(),
            budget: AtomicU64::new(0),
        };
        let btf = this.btf();
        let count = btf.aggregates().len();
        let budget = btf.profile_budget();
        this.slots = (0..count).map(|_| OnceLock::new()).collect();
        this.budget = AtomicU64::new(budget);
        this
    }

    /// The parsed blob.
    fn btf(&self) -> Btf<'_> {
        let types = self.bytes.get(self.types.clone()).unwrap_or(&[]);
        let strings = self.bytes.get(self.strings.clone()).unwrap_or(&[]);
        Btf::view(types, strings, &self.index)
    }

    /// The struct or union `id`, converted on first use; `None` if it cannot be.
    fn converted(&self, btf: &Btf<'_>, id: TypeId) -> Option<&Converted> {
        let slot = btf.aggregates().binary_search(&id).ok()?;
        self.slots
            .get(slot)?
            .get_or_init(|| self.convert(btf, id))
            .as_ref()
    }

    fn convert(&self, btf: &Btf<'_>, id: TypeId) -> Option<Converted> {
        let t = btf.type_by_id(id).ok()?;
        let name = btf.user_type_name(&t).ok()?;
        let before = self.budget.load(Ordering::Relaxed);
        let mut left = before;
        let ty = btf.user_type(&t, &mut left, &mut ConversionReport::default());
        // Concurrent conversions may both start from the same budget; each is still bounded.
        let used = before - left;
        let _ = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(used))
            });
        Some(Converted {
            own_name: match name {
                Cow::Owned(n) => Some(n.into_boxed_str()),
                Cow::Borrowed(_) => None,
            },
            ty: ty.ok()?,
        })
    }

    /// A struct or union under its own name (or its typedef's, for an anonymous one), or
    /// `unnamed_btf_<id>`: what the full conversion inserts before the aliases.
    fn named(&self, btf: &Btf<'_>, name: &str) -> Option<&UserType> {
        if let Some(t) = btf.find_struct(name) {
            if let Some(c) = self.converted(btf, t.id()) {
                return Some(&c.ty);
            }
        }
        let id: TypeId = name.strip_prefix("unnamed_btf_")?.parse().ok()?;
        let t = btf.type_by_id(id).ok()?;
        if !matches!(t.kind(), Kind::Struct | Kind::Union) {
            return None;
        }
        match btf.user_type_name(&t).ok()? {
            Cow::Owned(n) if n == name => self.converted(btf, id).map(|c| &c.ty),
            _ => None,
        }
    }

    /// The struct or union a typedef `t` names, under its own profile name.
    fn typedef_target(&self, btf: &Btf<'_>, t: TypeId) -> Option<&UserType> {
        let t = btf.type_by_id(t).ok()?;
        let target = btf
            .resolve(t.size_or_type())
            .and_then(|id| btf.type_by_id(id))
            .ok()?;
        if !matches!(target.kind(), Kind::Struct | Kind::Union) {
            return None;
        }
        let name = btf.user_type_name(&target).ok()?;
        self.named(btf, &name)
    }

    /// Typedef names of structs and unions, built on the first lookup that needs one.
    fn aliases(&self, btf: &Btf<'_>) -> &NameTable {
        self.aliases.get_or_init(|| {
            let count = btf.types().filter(|t| t.kind() == Kind::Typedef).count();
            let mut table = NameTable::with_capacity(count);
            for t in btf.types().filter(|t| t.kind() == Kind::Typedef) {
                let Ok(name) = btf.name(&t) else { continue };
                if name.is_empty() {
                    continue;
                }
                let names_aggregate = btf
                    .resolve(t.size_or_type())
                    .and_then(|id| btf.type_by_id(id))
                    .is_ok_and(|target| matches!(target.kind(), Kind::Struct | Kind::Union));
                if !names_aggregate {
                    continue;
                }
                let (_, strings) = btf.sections();
                let slot = table.entry(strings, name, t.name_offset());
                if slot.id == 0 {
                    *slot = Slot {
                        name: t.name_offset(),
                        id: t.id(),
                        complete: true,
                    };
                }
            }
            table
        })
    }
}

impl TypeSource for LazyTypes {
    fn user_type(&self, name: &str) -> Option<&UserType> {
        let btf = self.btf();
        if let Some(t) = self.named(&btf, name) {
            return Some(t);
        }
        let (_, strings) = btf.sections();
        let typedef = self.aliases(&btf).get(strings, name)?.id;
        self.typedef_target(&btf, typedef)
    }

    fn user_types(&self) -> Box<dyn Iterator<Item = (&str, &UserType)> + '_> {
        let btf = self.btf();
        let structs = {
            let btf = btf.clone();
            btf.aggregates().to_vec().into_iter().filter_map(move |id| {
                let t = btf.type_by_id(id).ok()?;
                let name = btf.user_type_name(&t).ok()?;
                if let Cow::Borrowed(n) = name {
                    // Only the struct the index prefers for its name.
                    if btf.find_struct(n).map(|p| p.id()) != Some(id) {
                        return None;
                    }
                }
                let c = self.converted(&btf, id)?;
                let name = match (name, &c.own_name) {
                    (Cow::Borrowed(n), _) => n,
                    (Cow::Owned(_), Some(own)) => own,
                    (Cow::Owned(_), None) => return None,
                };
                Some((name, &c.ty))
            })
        };
        let mut seen: HashSet<&str, FxBuildHasher> = HashSet::default();
        let aliases = btf
            .types()
            .filter(|t| t.kind() == Kind::Typedef)
            .map(|t| t.id())
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(move |id| {
                let t = btf.type_by_id(id).ok()?;
                let alias = btf.name(&t).ok().filter(|n| !n.is_empty())?;
                if seen.contains(alias) || self.named(&btf, alias).is_some() {
                    return None;
                }
                let ty = self.typedef_target(&btf, id)?;
                seen.insert(alias);
                Some((alias, ty))
            });
        Box::new(structs.chain(aliases))
    }

    fn describe(&self) -> String {
        format!(
            "BTF: {} structs and unions, converted on demand",
            self.slots.len()
        )
    }
}
