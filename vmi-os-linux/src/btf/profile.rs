//! Conversion of a parsed blob into a [`Profile`]: structs and unions with their fields (byte
//! offsets, anonymous members flattened), base types and enums with their sizes.
//!
//! Naming follows dwarf2json where it can, so a profile from BTF and an ISF from DWARF answer
//! the same lookups: an anonymous struct, union or enum named by a typedef takes the
//! typedef's name (`kuid_t`, `atomic_t`); the anonymous members of a struct are listed as
//! `unnamed_field_0`, ... `unnamed_field_a` (a hex count) *and* their fields appear directly in the parent
//! at the summed offset (`mm_struct.mm_mt`). Other anonymous types are named
//! `unnamed_btf_<id>`. A typedef of a named struct or union adds the struct under the
//! typedef's name too (`spinlock_t`, `refcount_t`), as dwarf2json does; fields keep the
//! struct's own name in their type.
//!
//! Bitfields are placed in their storage unit: the offset is that of the naturally aligned
//! integer (or enum) holding the bits, and the position counts from it, so reading the storage
//! type at the offset never crosses the end of the struct. (dwarf2json instead uses the byte
//! holding the first bit; both give the same absolute bit.)

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use vmi_core::profile::{Field as ProfileField, TypeRef, UserType, UserTypeKind};
use vmi_core::Profile;

use super::error::BtfError;
use super::index::{Btf, Field, MAX_DEPTH};
use super::lazy::LazyTypes;
use super::types::{Kind, Type, TypeId};

/// How many conversion errors a [`ConversionReport`] keeps.
const REPORTED_ERRORS: usize = 32;

/// What [`Btf::to_profile_with_report`] converted and what it had to skip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversionReport {
    /// Structs and unions added (anonymous ones included).
    pub user_types: usize,
    /// Fields added over all of them.
    pub fields: usize,
    /// Base types (integers, floats) added.
    pub base_types: usize,
    /// Enums added.
    pub enums: usize,
    /// Typedef names added for structs and unions (`spinlock_t` for `struct spinlock`), as
    /// dwarf2json lists them.
    pub aliases: usize,
    /// Structs and unions passed over because another of the same name was preferred.
    pub duplicates: usize,
    /// Structs, unions, fields or anonymous members skipped because of an error.
    pub skipped: usize,
    /// The first errors met (at most 32).
    pub errors: Vec<BtfError>,
}

impl ConversionReport {
    fn skip(&mut self, error: BtfError) {
        self.skipped += 1;
        if self.errors.len() < REPORTED_ERRORS {
            self.errors.push(error);
        }
    }
}

impl<'a> Btf<'a> {
    /// A [`Profile`] with the blob's structs, unions, base types and enums. Base types and
    /// enums are added at once; structs and unions are converted when first looked up (a
    /// [`vmi_core::profile::TypeSource`] holding a copy of the blob's sections), each once.
    /// What cannot be converted (only in malformed blobs: reference cycles, non-UTF-8 names)
    /// is left out, field by field; [`Btf::to_profile_with_report`] converts everything at
    /// once and says what.
    pub fn to_profile(&self) -> Profile {
        let mut profile = Profile::new("BTF");
        self.add_scalars(&mut profile, &mut ConversionReport::default());
        profile.add_type_source(Arc::new(LazyTypes::copy_of(self)));
        profile
    }

    /// [`Btf::to_profile`] of a blob it takes, so the lazy types keep the blob without
    /// copying it.
    pub fn profile_from_blob(blob: Vec<u8>) -> Result<Profile, BtfError> {
        let btf = Btf::parse(&blob)?;
        let mut profile = Profile::new("BTF");
        btf.add_scalars(&mut profile, &mut ConversionReport::default());
        let index = Arc::clone(btf.index());
        profile.add_type_source(Arc::new(LazyTypes::new(blob.into_boxed_slice(), index)));
        Ok(profile)
    }

    /// [`Btf::to_profile`], converting everything at once, with counts and the errors of what
    /// was skipped.
    pub fn to_profile_with_report(&self) -> (Profile, ConversionReport) {
        let mut profile = Profile::new("BTF");
        let mut report = ConversionReport::default();
        self.add_scalars(&mut profile, &mut report);
        let mut budget = self.profile_budget();

        for t in self.types() {
            if !matches!(t.kind(), Kind::Struct | Kind::Union) {
                continue;
            }
            let name = match self.user_type_name(&t) {
                Ok(name) => name,
                Err(e) => {
                    report.skip(e);
                    continue;
                }
            };
            let preferred = match &name {
                // Named (by itself or a typedef): only the one the index chose.
                Cow::Borrowed(n) => self.find_struct(n).map(|p| p.id()) == Some(t.id()),
                Cow::Owned(_) => true,
            };
            if !preferred {
                report.duplicates += 1;
                continue;
            }
            match self.user_type(&t, &mut budget, &mut report) {
                Ok(ut) => {
                    report.user_types += 1;
                    report.fields += ut.fields.len();
                    profile.insert_type(name.into_owned(), ut);
                }
                Err(e) => report.skip(e),
            }
        }
        self.add_typedef_aliases(&mut profile, &mut report);
        (profile, report)
    }

    /// Adds the base types (integers, floats) and enums, each name once.
    fn add_scalars(&self, profile: &mut Profile, report: &mut ConversionReport) {
        let mut base_seen: FxHashSet<&'a str> = FxHashSet::default();
        let mut enum_seen: FxHashSet<Cow<'a, str>> = FxHashSet::default();
        for t in self.types() {
            match t.kind() {
                Kind::Int | Kind::Float => match self.name(&t) {
                    Ok("") => {}
                    Ok(name) => {
                        if base_seen.insert(name) {
                            profile.insert_base_type(name, u64::from(t.size_or_type()));
                            report.base_types += 1;
                        }
                    }
                    Err(e) => report.skip(e),
                },
                Kind::Enum | Kind::Enum64 => match self.user_type_name(&t) {
                    Ok(name) => {
                        if !enum_seen.contains(&name) {
                            profile.insert_enum(name.as_ref(), u64::from(t.size_or_type()));
                            // Volatility describes enum values by these names (a program's
                            // `bpf_prog_type`, a socket's state).
                            let constants: Vec<(String, i64)> = t
                                .enumerators()
                                .into_iter()
                                .flatten()
                                .filter_map(|e| {
                                    Some((self.string(e.name_offset).ok()?.to_owned(), e.value))
                                })
                                .collect();
                            if !constants.is_empty() {
                                profile.insert_enum_constants(name.as_ref(), constants);
                            }
                            enum_seen.insert(name);
                            report.enums += 1;
                        }
                    }
                    Err(e) => report.skip(e),
                },
                _ => {}
            }
        }
    }

    /// Lists each struct or union also under the names of typedefs of it, unless a type of
    /// that name exists.
    fn add_typedef_aliases(&self, profile: &mut Profile, report: &mut ConversionReport) {
        for t in self.types() {
            if t.kind() != Kind::Typedef {
                continue;
            }
            let Ok(alias) = self.name(&t) else { continue };
            if alias.is_empty() || profile.user_type(alias).is_some() {
                continue;
            }
            let target = self
                .resolve(t.size_or_type())
                .and_then(|id| self.type_by_id(id));
            let Ok(target) = target else { continue };
            if !matches!(target.kind(), Kind::Struct | Kind::Union) {
                continue;
            }
            let Ok(name) = self.user_type_name(&target) else {
                continue;
            };
            if let Some(ut) = profile.user_type(&name).cloned() {
                profile.insert_type(alias, ut);
                report.aliases += 1;
            }
        }
    }

    /// The name a struct, union or enum has in a profile: its own, else its typedef's, else
    /// `unnamed_btf_<id>`.
    pub fn user_type_name(&self, t: &Type<'_>) -> Result<Cow<'a, str>, BtfError> {
        let name = self.name(t)?;
        if !name.is_empty() {
            return Ok(Cow::Borrowed(name));
        }
        Ok(match self.typedef_name(t.id()) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("unnamed_btf_{}", t.id())),
        })
    }

    /// A profile type reference for a type: aliases followed, structs, unions and enums by
    /// their profile name, pointers and arrays spelled out, functions as
    /// [`TypeRef::Function`].
    pub fn type_ref(&self, id: TypeId) -> Result<TypeRef, BtfError> {
        self.type_ref_at(id, id, 0)
    }

    fn type_ref_at(&self, root: TypeId, id: TypeId, depth: u32) -> Result<TypeRef, BtfError> {
        if depth >= MAX_DEPTH {
            return Err(BtfError::Cycle {
                id: root,
                limit: MAX_DEPTH,
            });
        }
        if id == 0 {
            return Ok(TypeRef::Void);
        }
        let t = self.type_by_id(id)?;
        Ok(match t.kind() {
            Kind::Int | Kind::Float => TypeRef::Base(self.name(&t)?.to_owned()),
            Kind::Ptr => TypeRef::Pointer(Box::new(self.type_ref_at(
                root,
                t.size_or_type(),
                depth + 1,
            )?)),
            Kind::Array => {
                let a = t.array().ok_or(BtfError::NotComposite {
                    id,
                    kind: t.kind().name(),
                })?;
                TypeRef::Array {
                    count: u64::from(a.nelems),
                    element: Box::new(self.type_ref_at(root, a.element, depth + 1)?),
                }
            }
            Kind::Struct => TypeRef::Struct(self.user_type_name(&t)?.into_owned()),
            Kind::Union => TypeRef::Union(self.user_type_name(&t)?.into_owned()),
            Kind::Enum | Kind::Enum64 => TypeRef::Enum(self.user_type_name(&t)?.into_owned()),
            Kind::Fwd if t.kind_flag() => TypeRef::Union(self.name(&t)?.to_owned()),
            Kind::Fwd => TypeRef::Struct(self.name(&t)?.to_owned()),
            Kind::Func | Kind::FuncProto => TypeRef::Function,
            Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::TypeTag
            | Kind::Var => self.type_ref_at(root, t.size_or_type(), depth + 1)?,
            Kind::Datasec | Kind::DeclTag => TypeRef::Void,
        })
    }

    /// A struct or union as a profile user type. A field whose type cannot be converted, or an
    /// anonymous member whose fields cannot be flattened (cycles, an exhausted budget: hostile
    /// blobs only), is left out and reported; the rest of the struct stays usable.
    pub(crate) fn user_type(
        &self,
        t: &Type<'a>,
        budget: &mut u64,
        report: &mut ConversionReport,
    ) -> Result<UserType, BtfError> {
        let id = t.id();
        let kind = if t.kind() == Kind::Union {
            UserTypeKind::Union
        } else {
            UserTypeKind::Struct
        };
        let members = self.members(id)?;
        let mut fields: FxHashMap<String, ProfileField> = FxHashMap::default();
        fields.reserve(members.len());
        let encoded = t.kind_flag();
        let mut anonymous = 0usize;
        let mut flat = Vec::new();
        for m in members {
            let Some(left) = budget.checked_sub(1) else {
                report.skip(BtfError::TooManyMembers {
                    id,
                    limit: self.profile_budget(),
                });
                break;
            };
            *budget = left;
            let placed = self.place(m, 0, encoded);
            if m.name_offset != 0 {
                let added = self.string(m.name_offset).and_then(|name| {
                    let f = Field {
                        name,
                        type_id: m.type_id,
                        bit_offset: placed.bit_offset,
                        bitfield_size: placed.bitfield_size,
                    };
                    self.add_field(&mut fields, &f)
                });
                if let Err(e) = added {
                    report.skip(e);
                }
                continue;
            }
            let Some(inner) = self.anonymous_aggregate(&m) else {
                continue;
            };
            // Keep the anonymous member itself, named as dwarf2json does (hex count), for
            // ISF export.
            let key = format!("unnamed_field_{anonymous:x}");
            anonymous += 1;
            match self.type_ref(m.type_id) {
                Ok(ty) => {
                    fields.entry(key).or_insert(ProfileField {
                        offset: placed.bit_offset / 8,
                        ty,
                    });
                }
                Err(e) => report.skip(e),
            }
            flat.clear();
            let flattened = self
                .flatten_into(id, inner, placed.bit_offset, 1, budget, &mut flat)
                .and_then(|()| flat.iter().try_for_each(|f| self.add_field(&mut fields, f)));
            if let Err(e) = flattened {
                report.skip(e);
            }
        }
        Ok(UserType {
            kind,
            size: u64::from(t.size_or_type()),
            fields,
        })
    }

    /// The member budget of one conversion: legitimate blobs flatten each anonymous type into
    /// few parents; a hostile one nesting a type over and over runs out.
    pub(crate) fn profile_budget(&self) -> u64 {
        self.member_record_count()
            .saturating_mul(4)
            .saturating_add(65536)
    }

    /// Adds a field (the first of a name wins, as C has no duplicates).
    fn add_field(
        &self,
        fields: &mut FxHashMap<String, ProfileField>,
        f: &Field<'a>,
    ) -> Result<(), BtfError> {
        if fields.contains_key(f.name) {
            return Ok(());
        }
        let ty = self.type_ref(f.type_id)?;
        let field = if f.is_bitfield() {
            let storage = self.size_of(f.type_id).ok();
            let (offset, position) = bitfield_placement(f.bit_offset, f.bitfield_size, storage);
            ProfileField {
                offset,
                ty: TypeRef::Bitfield {
                    position,
                    length: u32::from(f.bitfield_size),
                    storage: Box::new(ty),
                },
            }
        } else {
            ProfileField {
                offset: f.byte_offset(),
                ty,
            }
        };
        fields.insert(f.name.to_owned(), field);
        Ok(())
    }
}

/// Byte offset of the storage unit holding a bitfield and the field's first bit in it: the
/// naturally aligned unit of the storage type's size if the field fits in one, else the byte
/// holding the first bit (packed structs).
fn bitfield_placement(bit_offset: u64, bits: u8, storage: Option<u64>) -> (u64, u32) {
    if let Some(size) = storage.filter(|s| matches!(s, 1 | 2 | 4 | 8 | 16)) {
        let unit = size * 8;
        let start = bit_offset / unit * unit;
        if bit_offset + u64::from(bits) <= start + unit {
            return (start / 8, (bit_offset - start) as u32);
        }
    }
    (bit_offset / 8, (bit_offset % 8) as u32)
}

#[cfg(test)]
mod tests {
    use super::bitfield_placement;

    #[test]
    fn bitfields_sit_in_their_storage_unit() {
        // task_struct.in_execve: bit 2 of byte 2344, an unsigned int at 2344.
        assert_eq!(bitfield_placement(2344 * 8 + 2, 1, Some(4)), (2344, 2));
        // frozen: bit 0 of byte 2345 is bit 8 of the unsigned int at 2344.
        assert_eq!(bitfield_placement(2345 * 8, 1, Some(4)), (2344, 8));
        // Straddling two units (packed): fall back to the first byte.
        assert_eq!(bitfield_placement(28, 8, Some(4)), (3, 4));
        // Unknown storage size: the first byte.
        assert_eq!(bitfield_placement(13, 3, None), (1, 5));
    }
}
