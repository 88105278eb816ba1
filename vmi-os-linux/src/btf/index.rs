//! The parsed blob: an index of type records, validated once, and the queries on it.

use std::hash::Hasher;
use std::ops::Range;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHasher};

use super::error::BtfError;
use super::header::{self, Header};
use super::types::{u32_at, IntEncoding, Kind, Member, Members, Type, TypeId, TYPE_RECORD_LEN};

/// How deep a chain of references (typedef -> const -> array -> typedef ...) or of nested
/// anonymous members may go. Real kernels stay below 10; a cycle hits the limit.
pub const MAX_DEPTH: u32 = 32;

/// Size of a pointer in the guest. BTF does not record it; vmi reads 64-bit kernels.
pub const POINTER_SIZE: u64 = 8;

/// A parsed BTF blob. Borrows the bytes; records are decoded on access. The index parsing
/// builds owns nothing of the bytes, so a parsed blob can be kept with them (see
/// [`Btf::to_profile`]) and viewed again without parsing.
///
/// Parsing checks everything a query relies on: header and section bounds, every record's
/// length, every kind, every type reference (in range) and every name offset (inside the
/// NUL-terminated string section). Queries still never index without a bound check and cap
/// every chain they follow at [`MAX_DEPTH`].
///
/// ```
/// use vmi_os_linux::btf::{Btf, BtfBuilder};
///
/// let mut b = BtfBuilder::new();
/// let int = b.int("int", 4, true);
/// let task = b.struct_("task", 8, &[("pid", int, 0, 0), ("tgid", int, 32, 0)]);
/// let blob = b.build();
///
/// let btf = Btf::parse(&blob)?;
/// assert_eq!(btf.find_struct("task").map(|t| t.id()), Some(task));
/// assert_eq!(btf.size_of(task)?, 8);
/// assert_eq!(btf.field(task, "tgid")?.map(|f| f.byte_offset()), Some(4));
/// # Ok::<(), vmi_os_linux::btf::BtfError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    index: Arc<Index>,
}

/// What parsing learned about a blob, as offsets into it.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    header: Header,
    /// The type section in the blob.
    pub(crate) types_range: Range<usize>,
    /// The string section in the blob.
    pub(crate) strings_range: Range<usize>,
    /// Offset in the types section of the record of type `i + 1`.
    offsets: Vec<u32>,
    /// Total number of struct/union members, the yardstick for flattening budgets.
    member_records: u64,
    /// Struct or union for each name (its own, or the typedef naming an anonymous one).
    structs: NameTable,
    /// Anonymous struct, union or enum -> string offset of the first typedef that names it.
    typedef_names: FxHashMap<TypeId, u32>,
    /// Every struct and union, in id order.
    aggregates: Vec<TypeId>,
}

/// A named field of a struct or union, with anonymous members flattened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field's name.
    pub name: &'a str,
    /// The field's type (for a bitfield: its integer or enum type).
    pub type_id: TypeId,
    /// Offset from the start of the outermost struct, in bits.
    pub bit_offset: u64,
    /// Width in bits for a bitfield, 0 otherwise.
    pub bitfield_size: u8,
}

impl Field<'_> {
    /// Offset of the byte holding the field's first bit.
    pub fn byte_offset(&self) -> u64 {
        self.bit_offset / 8
    }

    /// Whether the field is a bitfield.
    pub fn is_bitfield(&self) -> bool {
        self.bitfield_size != 0
    }
}

/// A member resolved against its struct: legacy bitfield encodings decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    pub bit_offset: u64,
    pub bitfield_size: u8,
}

impl<'a> Btf<'a> {
    /// Parses and validates a BTF blob (the bytes from `__start_BTF` to `__stop_BTF`).
    pub fn parse(blob: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let sections = header::parse(blob)?;
        let types = sections.types;
        let strings = sections.strings;
        if let Some(&last) = strings.last() {
            if last != 0 {
                return Err(BtfError::UnterminatedStrings {
                    offset: sections.strings_at + strings.len() as u64 - 1,
                });
            }
        }

        // Pass 1: where each record starts. Every record takes at least 12 bytes, so the
        // count is bounded by the section length and the Vec by a third of the blob.
        let mut offsets = Vec::with_capacity(types.len() / TYPE_RECORD_LEN);
        let mut member_records = 0u64;
        let mut at = 0usize;
        while at < types.len() {
            let id = offsets.len() as u64 + 1;
            // The section is at most 4 GiB, so `at` fits in u32 and ids in u32.
            let id = TypeId::try_from(id).unwrap_or(TypeId::MAX);
            let record = types.get(at..at.saturating_add(TYPE_RECORD_LEN));
            let Some(record) = record else {
                return Err(BtfError::Truncated {
                    section: "type record",
                    offset: sections.types_at + at as u64,
                    needed: TYPE_RECORD_LEN as u64,
                });
            };
            let info = u32_at(record, 4);
            let raw_kind = ((info >> 24) & 0x1f) as u8;
            let Some(kind) = Kind::from_raw(raw_kind) else {
                return Err(BtfError::UnknownKind {
                    id,
                    offset: sections.types_at + at as u64,
                    kind: raw_kind,
                });
            };
            let vlen = (info & 0xffff) as u16;
            let len = TYPE_RECORD_LEN + kind.data_len(vlen);
            if types.len() - at < len {
                return Err(BtfError::Truncated {
                    section: "type record",
                    offset: sections.types_at + at as u64,
                    needed: len as u64,
                });
            }
            if matches!(kind, Kind::Struct | Kind::Union) {
                member_records += u64::from(vlen);
            }
            offsets.push(at as u32);
            at += len;
        }

        let types_start = sections.types_at as usize;
        let strings_start = sections.strings_at as usize;
        let btf = Btf {
            types,
            strings,
            index: Arc::new(Index {
                header: sections.header,
                types_range: types_start..types_start + types.len(),
                strings_range: strings_start..strings_start + strings.len(),
                offsets,
                member_records,
                structs: NameTable::default(),
                typedef_names: FxHashMap::default(),
                aggregates: Vec::new(),
            }),
        };
        btf.validate()?;
        let (structs, typedef_names, aggregates) = btf.index_names();
        // The only reference: unwrapping does not copy.
        let mut index = Arc::try_unwrap(btf.index).unwrap_or_else(|shared| (*shared).clone());
        index.structs = structs;
        index.typedef_names = typedef_names;
        index.aggregates = aggregates;
        Ok(Btf {
            types,
            strings,
            index: Arc::new(index),
        })
    }

    /// A view of a blob's sections through the index of an earlier parse of the same
    /// bytes: no parsing, no checks to repeat.
    pub(crate) fn view(types: &'a [u8], strings: &'a [u8], index: &Arc<Index>) -> Btf<'a> {
        Btf {
            types,
            strings,
            index: Arc::clone(index),
        }
    }

    /// The type and string sections.
    pub(crate) fn sections(&self) -> (&'a [u8], &'a [u8]) {
        (self.types, self.strings)
    }

    /// The index, to keep with the blob for [`Btf::view`].
    pub(crate) fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Every struct and union, in id order.
    pub(crate) fn aggregates(&self) -> &[TypeId] {
        &self.index.aggregates
    }

    /// Pass 2: every reference in range, every name offset inside the string section.
    fn validate(&self) -> Result<(), BtfError> {
        let count = self.count();
        for t in self.types() {
            let from = t.id();
            let refs = |to: TypeId| {
                if to > count {
                    Err(BtfError::DanglingReference { from, to, count })
                } else {
                    Ok(())
                }
            };
            let name = |offset: u32| {
                if offset == 0 || (offset as usize) < self.strings.len() {
                    Ok(())
                } else {
                    Err(BtfError::StringOutOfRange {
                        id: from,
                        offset,
                        len: self.strings.len() as u32,
                    })
                }
            };
            name(t.name_offset())?;
            if let Some(to) = t.referenced() {
                refs(to)?;
            }
            if let Some(a) = t.array() {
                refs(a.element)?;
                refs(a.index)?;
            }
            if let Some(members) = t.members() {
                for m in members {
                    name(m.name_offset)?;
                    refs(m.type_id)?;
                }
            }
            if let Some(values) = t.enumerators() {
                for e in values {
                    name(e.name_offset)?;
                }
            }
            if let Some(params) = t.params() {
                for p in params {
                    name(p.name_offset)?;
                    refs(p.type_id)?;
                }
            }
            if let Some(vars) = t.section_vars() {
                for v in vars {
                    refs(v.type_id)?;
                }
            }
        }
        Ok(())
    }

    /// Builds the name lookups: struct/union by name, anonymous type -> typedef name; and
    /// lists the structs and unions.
    fn index_names(&self) -> (NameTable, FxHashMap<TypeId, u32>, Vec<TypeId>) {
        let mut typedef_names: FxHashMap<TypeId, u32> = FxHashMap::default();
        let mut aggregates = Vec::new();
        for t in self.types() {
            match t.kind() {
                Kind::Struct | Kind::Union => aggregates.push(t.id()),
                Kind::Typedef => {}
                _ => continue,
            }
            if t.kind() != Kind::Typedef {
                continue;
            }
            let Some(target) = t.referenced().and_then(|id| self.type_by_id(id).ok()) else {
                continue;
            };
            let anonymous_aggregate = matches!(
                target.kind(),
                Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64
            ) && target.name_offset() == 0;
            // A name that is not UTF-8 names nothing; queries on it report the error.
            if anonymous_aggregate && self.name(&t).is_ok_and(|n| !n.is_empty()) {
                typedef_names.entry(target.id()).or_insert(t.name_offset());
            }
        }

        // Several structs can share a name: keep the first complete one (a size and
        // members), else the first one.
        let mut structs = NameTable::with_capacity(aggregates.len());
        for &id in &aggregates {
            let Ok(t) = self.type_by_id(id) else { continue };
            let name_offset = match t.name_offset() {
                0 => match typedef_names.get(&id) {
                    Some(&n) => n,
                    None => continue,
                },
                n => n,
            };
            let Ok(name) = self.string(name_offset) else {
                continue;
            };
            let complete = t.size_or_type() > 0 && t.vlen() > 0;
            let slot = structs.entry(self.strings, name, name_offset);
            if slot.id == 0 || (!slot.complete && complete) {
                *slot = Slot {
                    name: name_offset,
                    id,
                    complete,
                };
            }
        }
        (structs, typedef_names, aggregates)
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.index.header
    }

    /// Number of types; valid ids are `1..=count()` (0 is `void`).
    pub fn count(&self) -> u32 {
        // At most type_len / 12 records.
        self.index.offsets.len() as u32
    }

    /// Number of struct and union members in the blob.
    pub fn member_record_count(&self) -> u64 {
        self.index.member_records
    }

    /// The type with id `id`. Id 0 (`void`) has no record and is out of range here.
    pub fn type_by_id(&self, id: TypeId) -> Result<Type<'a>, BtfError> {
        let out_of_range = || BtfError::TypeIdOutOfRange {
            id,
            count: self.count(),
        };
        let index = (id as usize).checked_sub(1).ok_or_else(out_of_range)?;
        let at = *self.index.offsets.get(index).ok_or_else(out_of_range)? as usize;
        self.record_at(id, at).ok_or_else(|| BtfError::Truncated {
            section: "type record",
            offset: self.index.types_range.start as u64 + at as u64,
            needed: TYPE_RECORD_LEN as u64,
        })
    }

    /// Decodes the record at `at` (an offset from the index, so in bounds).
    fn record_at(&self, id: TypeId, at: usize) -> Option<Type<'a>> {
        let types: &'a [u8] = self.types;
        let record_end = at.checked_add(TYPE_RECORD_LEN)?;
        let record = types.get(at..record_end)?;
        let info = u32_at(record, 4);
        let kind = Kind::from_raw(((info >> 24) & 0x1f) as u8)?;
        let data_end = record_end.checked_add(kind.data_len((info & 0xffff) as u16))?;
        let data = types.get(record_end..data_end)?;
        Some(Type::new(id, kind, record, data))
    }

    /// All types, in id order.
    pub fn types(&self) -> impl Iterator<Item = Type<'a>> + '_ {
        self.index
            .offsets
            .iter()
            .zip(1..)
            .filter_map(|(&at, id)| self.record_at(id, at as usize))
    }

    /// The string at `offset` in the string section (offset 0 is the empty name).
    pub fn string(&self, offset: u32) -> Result<&'a str, BtfError> {
        if offset == 0 {
            return Ok("");
        }
        let strings: &'a [u8] = self.strings;
        let tail = strings
            .get(offset as usize..)
            .ok_or(BtfError::StringOutOfRange {
                id: 0,
                offset,
                len: strings.len() as u32,
            })?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).map_err(|_| BtfError::BadString { offset })
    }

    /// The name of a type ("" if anonymous).
    pub fn name(&self, ty: &Type<'_>) -> Result<&'a str, BtfError> {
        self.string(ty.name_offset())
    }

    /// The name of the type with id `id` ("" if anonymous, "void" for 0).
    pub fn type_name(&self, id: TypeId) -> Result<&'a str, BtfError> {
        if id == 0 {
            return Ok("void");
        }
        let t = self.type_by_id(id)?;
        self.name(&t)
    }

    /// The typedef name of an anonymous struct, union or enum (`typedef struct {..} kuid_t`).
    pub fn typedef_name(&self, id: TypeId) -> Option<&'a str> {
        let offset = *self.index.typedef_names.get(&id)?;
        self.string(offset).ok()
    }

    /// A struct or union by name. An anonymous one named by a typedef (`kuid_t`, `atomic_t`)
    /// is found under the typedef's name. Where several share a name, the first with a
    /// non-zero size and members wins, else the first.
    pub fn find_struct(&self, name: &str) -> Option<Type<'a>> {
        let id = self.index.structs.get(self.strings, name)?.id;
        self.type_by_id(id).ok()
    }

    /// The first type of `kind` named `name` (a linear scan: use [`Btf::find_struct`] for
    /// structs and unions).
    pub fn find_type(&self, kind: Kind, name: &str) -> Option<Type<'a>> {
        self.types()
            .find(|t| t.kind() == kind && self.name(t).is_ok_and(|n| n == name))
    }

    /// Follows typedef, const, volatile, restrict and type tags to the underlying type
    /// (0 if they end at `void`).
    pub fn resolve(&self, id: TypeId) -> Result<TypeId, BtfError> {
        let mut cur = id;
        for _ in 0..MAX_DEPTH {
            if cur == 0 {
                return Ok(0);
            }
            let t = self.type_by_id(cur)?;
            if !t.kind().is_alias() {
                return Ok(cur);
            }
            cur = t.size_or_type();
        }
        Err(BtfError::Cycle {
            id,
            limit: MAX_DEPTH,
        })
    }

    /// Size in bytes of a type: aliases followed, pointers [`POINTER_SIZE`], arrays
    /// `nelems × element size` (checked), variables their type's size.
    pub fn size_of(&self, id: TypeId) -> Result<u64, BtfError> {
        let mut cur = id;
        let mut factor: u64 = 1;
        for _ in 0..MAX_DEPTH {
            if cur == 0 {
                return Err(BtfError::NoSize { id, kind: "void" });
            }
            let t = self.type_by_id(cur)?;
            let kind = t.kind();
            if let Some(size) = t.size() {
                return factor
                    .checked_mul(u64::from(size))
                    .ok_or(BtfError::SizeOverflow { id });
            }
            match kind {
                Kind::Ptr => {
                    return factor
                        .checked_mul(POINTER_SIZE)
                        .ok_or(BtfError::SizeOverflow { id })
                }
                Kind::Array => {
                    let a = t.array().ok_or(BtfError::NoSize {
                        id,
                        kind: kind.name(),
                    })?;
                    factor = factor
                        .checked_mul(u64::from(a.nelems))
                        .ok_or(BtfError::SizeOverflow { id })?;
                    cur = a.element;
                }
                Kind::Var => cur = t.size_or_type(),
                k if k.is_alias() => cur = t.size_or_type(),
                _ => {
                    return Err(BtfError::NoSize {
                        id: cur,
                        kind: kind.name(),
                    })
                }
            }
        }
        Err(BtfError::Cycle {
            id,
            limit: MAX_DEPTH,
        })
    }

    /// The members of a struct or union, as recorded (anonymous members not flattened).
    pub fn members(&self, id: TypeId) -> Result<Members<'a>, BtfError> {
        let t = self.type_by_id(id)?;
        t.members().ok_or(BtfError::NotComposite {
            id,
            kind: t.kind().name(),
        })
    }

    /// The integer encoding behind a type, through aliases.
    fn int_behind(&self, id: TypeId) -> Option<(IntEncoding, u32)> {
        let t = self.type_by_id(self.resolve(id).ok()?).ok()?;
        Some((t.int()?, t.size()?))
    }

    /// A member with its bitfield decoded: either from the struct's `kind_flag` encoding,
    /// or (older BTF) from an integer type whose bits or offset differ from its storage.
    pub(crate) fn place(&self, member: Member, base: u64, bitfield_encoded: bool) -> Placed {
        let mut bit_offset = base + u64::from(member.bit_offset);
        let mut bitfield_size = member.bitfield_size;
        if !bitfield_encoded {
            if let Some((int, size)) = self.int_behind(member.type_id) {
                if int.offset != 0 || u64::from(int.bits) != u64::from(size) * 8 {
                    bit_offset += u64::from(int.offset);
                    bitfield_size = int.bits;
                }
            }
        }
        Placed {
            bit_offset,
            bitfield_size,
        }
    }

    /// The struct or union an anonymous member opens, if it is one.
    pub(crate) fn anonymous_aggregate(&self, member: &Member) -> Option<Type<'a>> {
        if member.name_offset != 0 {
            return None;
        }
        let t = self.type_by_id(self.resolve(member.type_id).ok()?).ok()?;
        matches!(t.kind(), Kind::Struct | Kind::Union).then_some(t)
    }

    /// A budget for flattening one struct: more member visits than twice the blob's member
    /// records (plus slack) means the same anonymous type is nested over and over.
    pub(crate) fn flatten_budget(&self) -> u64 {
        self.index
            .member_records
            .saturating_mul(2)
            .saturating_add(1024)
    }

    /// The named fields of a struct or union, anonymous members flattened: the fields of an
    /// anonymous struct or union member appear at their offset plus the member's.
    pub fn fields(&self, id: TypeId) -> Result<Vec<Field<'a>>, BtfError> {
        let t = self.type_by_id(id)?;
        if t.members().is_none() {
            return Err(BtfError::NotComposite {
                id,
                kind: t.kind().name(),
            });
        }
        let mut out = Vec::new();
        let mut budget = self.flatten_budget();
        self.flatten_into(id, t, 0, 0, &mut budget, &mut out)?;
        Ok(out)
    }

    /// Appends the named fields of `t` (at `base` bits) to `out`, descending into anonymous
    /// members. Each visited member costs one unit of `budget`.
    pub(crate) fn flatten_into(
        &self,
        root: TypeId,
        t: Type<'a>,
        base: u64,
        depth: u32,
        budget: &mut u64,
        out: &mut Vec<Field<'a>>,
    ) -> Result<(), BtfError> {
        if depth >= MAX_DEPTH {
            return Err(BtfError::Cycle {
                id: root,
                limit: MAX_DEPTH,
            });
        }
        let Some(members) = t.members() else {
            return Ok(());
        };
        let encoded = t.kind_flag();
        for m in members {
            *budget = budget.checked_sub(1).ok_or(BtfError::TooManyMembers {
                id: root,
                limit: self.flatten_budget(),
            })?;
            let placed = self.place(m, base, encoded);
            if m.name_offset == 0 {
                if let Some(inner) = self.anonymous_aggregate(&m) {
                    self.flatten_into(root, inner, placed.bit_offset, depth + 1, budget, out)?;
                }
                continue;
            }
            out.push(Field {
                name: self.string(m.name_offset)?,
                type_id: m.type_id,
                bit_offset: placed.bit_offset,
                bitfield_size: placed.bitfield_size,
            });
        }
        Ok(())
    }

    /// A named field of a struct or union, looking through anonymous members.
    pub fn field(&self, id: TypeId, name: &str) -> Result<Option<Field<'a>>, BtfError> {
        Ok(self.fields(id)?.into_iter().find(|f| f.name == name))
    }

    /// Byte offset of `field` in the struct or union `ty`, both by name (anonymous members
    /// looked through), or `None` if either is missing.
    pub fn field_offset(&self, ty: &str, field: &str) -> Option<u64> {
        let t = self.find_struct(ty)?;
        self.field(t.id(), field).ok()?.map(|f| f.byte_offset())
    }
}

/// An open-addressing table from names (string offsets into the blob's string section) to
/// types: it owns no borrowed `&str`, so the index can live beside the blob.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameTable {
    /// A power of two, at most half full; `id == 0` marks an empty slot.
    slots: Vec<Slot>,
}

/// One entry of a [`NameTable`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Slot {
    /// Offset of the name in the string section.
    pub(crate) name: u32,
    /// The type (0: empty slot).
    pub(crate) id: TypeId,
    /// Whether the struct has a size and members.
    pub(crate) complete: bool,
}

impl NameTable {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            slots: vec![Slot::default(); (n.max(4) * 2).next_power_of_two()],
        }
    }

    fn hash(name: &[u8]) -> usize {
        let mut h = FxHasher::default();
        h.write(name);
        h.finish() as usize
    }

    /// The NUL-terminated string at `offset` of `strings`, without its NUL.
    fn at(strings: &[u8], offset: u32) -> &[u8] {
        let tail = strings.get(offset as usize..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }

    /// The slot of `name` (whose string is at `offset`), empty if it is new.
    pub(crate) fn entry(&mut self, strings: &[u8], name: &str, offset: u32) -> &mut Slot {
        let mask = self.slots.len() - 1;
        let mut at = Self::hash(name.as_bytes()) & mask;
        loop {
            let s = self.slots[at];
            if s.id == 0 {
                self.slots[at].name = offset;
                return &mut self.slots[at];
            }
            if Self::at(strings, s.name) == name.as_bytes() {
                return &mut self.slots[at];
            }
            at = (at + 1) & mask;
        }
    }

    /// The slot of `name`, if present.
    pub(crate) fn get(&self, strings: &[u8], name: &str) -> Option<&Slot> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut at = Self::hash(name.as_bytes()) & mask;
        // At most half full: an empty slot ends every probe.
        loop {
            let s = &self.slots[at];
            if s.id == 0 {
                return None;
            }
            if Self::at(strings, s.name) == name.as_bytes() {
                return Some(s);
            }
            at = (at + 1) & mask;
        }
    }
}
