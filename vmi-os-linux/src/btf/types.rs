//! BTF kinds and zero-copy views of type records.
//!
//! A type record is `struct btf_type { u32 name_off; u32 info; u32 size_or_type; }` followed
//! by kind-specific data (Linux `include/uapi/linux/btf.h`). [`Type`] borrows a record and its
//! data from the blob; the iterators decode the data on the fly. The index in
//! [`super::Btf`] guarantees that a record's data has exactly the length its kind and `vlen`
//! call for, so decoding never fails; it still never indexes out of bounds.

/// A type id: 1..=count for types in the blob, 0 for `void`.
pub type TypeId = u32;

/// Length of `struct btf_type`.
pub const TYPE_RECORD_LEN: usize = 12;

/// The kind of a BTF type (bits 24-28 of `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// An integer (`int`, `unsigned long`, `_Bool`, `char` ...), followed by a `u32` encoding.
    Int,
    /// A pointer.
    Ptr,
    /// An array, followed by `struct btf_array`.
    Array,
    /// A struct, followed by `vlen` members.
    Struct,
    /// A union, followed by `vlen` members.
    Union,
    /// A 32-bit (or smaller) enum, followed by `vlen` `struct btf_enum`.
    Enum,
    /// A forward declaration (`kind_flag` set: a union).
    Fwd,
    /// A typedef.
    Typedef,
    /// `volatile`.
    Volatile,
    /// `const`.
    Const,
    /// `restrict`.
    Restrict,
    /// A function (name and prototype).
    Func,
    /// A function prototype, followed by `vlen` parameters.
    FuncProto,
    /// A variable, followed by its linkage.
    Var,
    /// A data section, followed by `vlen` variables.
    Datasec,
    /// A floating-point type.
    Float,
    /// A declaration tag, followed by the tagged component's index.
    DeclTag,
    /// A type tag (`__user`, `__rcu` ... with clang).
    TypeTag,
    /// A 64-bit enum, followed by `vlen` `struct btf_enum64`.
    Enum64,
}

impl Kind {
    /// The kind for a raw kind number, if it is one this parser knows (0 is "unknown" in the
    /// format itself and is rejected too).
    pub fn from_raw(raw: u8) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// The raw kind number.
    pub fn raw(self) -> u8 {
        match self {
            Kind::Int => 1,
            Kind::Ptr => 2,
            Kind::Array => 3,
            Kind::Struct => 4,
            Kind::Union => 5,
            Kind::Enum => 6,
            Kind::Fwd => 7,
            Kind::Typedef => 8,
            Kind::Volatile => 9,
            Kind::Const => 10,
            Kind::Restrict => 11,
            Kind::Func => 12,
            Kind::FuncProto => 13,
            Kind::Var => 14,
            Kind::Datasec => 15,
            Kind::Float => 16,
            Kind::DeclTag => 17,
            Kind::TypeTag => 18,
            Kind::Enum64 => 19,
        }
    }

    /// The name the kernel uses (`BTF_KIND_<name>`), for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Int => "INT",
            Kind::Ptr => "PTR",
            Kind::Array => "ARRAY",
            Kind::Struct => "STRUCT",
            Kind::Union => "UNION",
            Kind::Enum => "ENUM",
            Kind::Fwd => "FWD",
            Kind::Typedef => "TYPEDEF",
            Kind::Volatile => "VOLATILE",
            Kind::Const => "CONST",
            Kind::Restrict => "RESTRICT",
            Kind::Func => "FUNC",
            Kind::FuncProto => "FUNC_PROTO",
            Kind::Var => "VAR",
            Kind::Datasec => "DATASEC",
            Kind::Float => "FLOAT",
            Kind::DeclTag => "DECL_TAG",
            Kind::TypeTag => "TYPE_TAG",
            Kind::Enum64 => "ENUM64",
        }
    }

    /// Bytes of kind-specific data after the record, for `vlen` entries. At most
    /// 65535 × 12, so it cannot overflow.
    pub fn data_len(self, vlen: u16) -> usize {
        let vlen = usize::from(vlen);
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            Kind::Array => 12,
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => vlen * 12,
            Kind::Enum | Kind::FuncProto => vlen * 8,
            Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag => 0,
        }
    }

    /// Whether `size_or_type` is a type id (rather than a size) for this kind.
    pub fn refers_to_type(self) -> bool {
        matches!(
            self,
            Kind::Ptr
                | Kind::Typedef
                | Kind::Volatile
                | Kind::Const
                | Kind::Restrict
                | Kind::Func
                | Kind::FuncProto
                | Kind::Var
                | Kind::DeclTag
                | Kind::TypeTag
        )
    }

    /// Whether `size_or_type` is a size in bytes for this kind.
    pub fn has_size(self) -> bool {
        matches!(
            self,
            Kind::Int
                | Kind::Struct
                | Kind::Union
                | Kind::Enum
                | Kind::Enum64
                | Kind::Datasec
                | Kind::Float
        )
    }

    /// Whether this kind only qualifies or renames another type (typedef, const, volatile,
    /// restrict, type tag): resolving it means following `size_or_type`.
    pub fn is_alias(self) -> bool {
        matches!(
            self,
            Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag
        )
    }
}

/// Reads a little-endian `u32` at `at`, or 0 if the slice is too short (callers only pass
/// offsets the index has checked, so the fallback never happens on a parsed blob).
#[inline]
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

/// A type record and its kind-specific data, borrowed from the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type<'a> {
    id: TypeId,
    kind: Kind,
    name_off: u32,
    info: u32,
    size_or_type: u32,
    data: &'a [u8],
}

impl<'a> Type<'a> {
    /// A view of a record; `data` must be the kind-specific bytes after it.
    pub(crate) fn new(id: TypeId, kind: Kind, record: &[u8], data: &'a [u8]) -> Self {
        Type {
            id,
            kind,
            name_off: u32_at(record, 0),
            info: u32_at(record, 4),
            size_or_type: u32_at(record, 8),
            data,
        }
    }

    /// The type's id.
    pub fn id(&self) -> TypeId {
        self.id
    }

    /// The type's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Offset of the name in the string section (0: anonymous).
    pub fn name_offset(&self) -> u32 {
        self.name_off
    }

    /// Number of members, enumerators, parameters or section variables.
    pub fn vlen(&self) -> u16 {
        // Bits 0-15 of `info`; the truncation is the format's.
        (self.info & 0xffff) as u16
    }

    /// The `kind_flag` bit: bitfield-encoded member offsets (struct/union), union
    /// (forward declaration), unsigned values (enum), attribute tag (tags).
    pub fn kind_flag(&self) -> bool {
        self.info & (1 << 31) != 0
    }

    /// The raw `size_or_type` word.
    pub fn size_or_type(&self) -> u32 {
        self.size_or_type
    }

    /// The size in bytes, for kinds that have one in the record.
    pub fn size(&self) -> Option<u32> {
        self.kind.has_size().then_some(self.size_or_type)
    }

    /// The referenced type, for kinds whose `size_or_type` is a type id (the pointee, the
    /// aliased type, a function's prototype, a prototype's return type, a variable's type).
    pub fn referenced(&self) -> Option<TypeId> {
        self.kind.refers_to_type().then_some(self.size_or_type)
    }

    /// The encoding of an [`Kind::Int`].
    pub fn int(&self) -> Option<IntEncoding> {
        (self.kind == Kind::Int).then(|| {
            let raw = u32_at(self.data, 0);
            IntEncoding {
                encoding: ((raw >> 24) & 0x0f) as u8,
                offset: ((raw >> 16) & 0xff) as u8,
                bits: (raw & 0xff) as u8,
            }
        })
    }

    /// The element type, index type and element count of an [`Kind::Array`].
    pub fn array(&self) -> Option<ArrayInfo> {
        (self.kind == Kind::Array).then(|| ArrayInfo {
            element: u32_at(self.data, 0),
            index: u32_at(self.data, 4),
            nelems: u32_at(self.data, 8),
        })
    }

    /// The members of a struct or union.
    pub fn members(&self) -> Option<Members<'a>> {
        matches!(self.kind, Kind::Struct | Kind::Union).then(|| Members {
            chunks: self.data.chunks_exact(12),
            bitfield_encoded: self.kind_flag(),
        })
    }

    /// The enumerators of an enum or 64-bit enum.
    pub fn enumerators(&self) -> Option<Enumerators<'a>> {
        let width = match self.kind {
            Kind::Enum => 8,
            Kind::Enum64 => 12,
            _ => return None,
        };
        Some(Enumerators {
            chunks: self.data.chunks_exact(width),
            unsigned: self.kind_flag(),
        })
    }

    /// The parameters of a function prototype.
    pub fn params(&self) -> Option<Params<'a>> {
        (self.kind == Kind::FuncProto).then(|| Params {
            chunks: self.data.chunks_exact(8),
        })
    }

    /// The variables of a data section.
    pub fn section_vars(&self) -> Option<SectionVars<'a>> {
        (self.kind == Kind::Datasec).then(|| SectionVars {
            chunks: self.data.chunks_exact(12),
        })
    }

    /// The linkage of a variable (0 static, 1 global, 2 extern).
    pub fn var_linkage(&self) -> Option<u32> {
        (self.kind == Kind::Var).then(|| u32_at(self.data, 0))
    }

    /// The component a declaration tag applies to (-1: the whole declaration).
    pub fn decl_tag_component(&self) -> Option<i32> {
        (self.kind == Kind::DeclTag).then(|| u32_at(self.data, 0) as i32)
    }
}

/// The encoding word of an integer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntEncoding {
    /// Bit 0: signed, bit 1: char, bit 2: bool.
    pub encoding: u8,
    /// Bit offset of the value inside the storage (legacy bitfield encoding).
    pub offset: u8,
    /// Number of value bits.
    pub bits: u8,
}

impl IntEncoding {
    /// Whether the integer is signed.
    pub fn is_signed(&self) -> bool {
        self.encoding & 1 != 0
    }
}

/// The data of an array type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayInfo {
    /// Element type.
    pub element: TypeId,
    /// Index type.
    pub index: TypeId,
    /// Number of elements (0 for flexible arrays).
    pub nelems: u32,
}

/// A member of a struct or union, as recorded (not flattened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Offset of the name in the string section (0: anonymous member).
    pub name_offset: u32,
    /// The member's type.
    pub type_id: TypeId,
    /// Offset from the start of the struct, in bits.
    pub bit_offset: u32,
    /// Width of a bitfield in bits, if the struct encodes it in the offset (0: not a bitfield,
    /// or a legacy encoding where the member's integer type carries the width).
    pub bitfield_size: u8,
}

/// Iterator over the members of a struct or union.
#[derive(Debug, Clone)]
pub struct Members<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
    bitfield_encoded: bool,
}

impl Iterator for Members<'_> {
    type Item = Member;

    fn next(&mut self) -> Option<Member> {
        let c = self.chunks.next()?;
        let raw = u32_at(c, 8);
        let (bit_offset, bitfield_size) = if self.bitfield_encoded {
            (raw & 0x00ff_ffff, (raw >> 24) as u8)
        } else {
            (raw, 0)
        };
        Some(Member {
            name_offset: u32_at(c, 0),
            type_id: u32_at(c, 4),
            bit_offset,
            bitfield_size,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Members<'_> {}

/// An enumerator of an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enumerator {
    /// Offset of the name in the string section.
    pub name_offset: u32,
    /// The value. Unsigned 64-bit values above `i64::MAX` keep their bit pattern.
    pub value: i64,
}

/// Iterator over the enumerators of an enum.
#[derive(Debug, Clone)]
pub struct Enumerators<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
    unsigned: bool,
}

impl Iterator for Enumerators<'_> {
    type Item = Enumerator;

    fn next(&mut self) -> Option<Enumerator> {
        let c = self.chunks.next()?;
        let lo = u32_at(c, 4);
        let value = if c.len() == 12 {
            let v = u64::from(lo) | (u64::from(u32_at(c, 8)) << 32);
            v as i64
        } else if self.unsigned {
            i64::from(lo)
        } else {
            i64::from(lo as i32)
        };
        Some(Enumerator {
            name_offset: u32_at(c, 0),
            value,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Enumerators<'_> {}

/// A parameter of a function prototype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Offset of the name in the string section.
    pub name_offset: u32,
    /// The parameter's type (0 with no name: a variadic `...`).
    pub type_id: TypeId,
}

/// Iterator over the parameters of a function prototype.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl Iterator for Params<'_> {
    type Item = Param;

    fn next(&mut self) -> Option<Param> {
        let c = self.chunks.next()?;
        Some(Param {
            name_offset: u32_at(c, 0),
            type_id: u32_at(c, 4),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for Params<'_> {}

/// A variable of a data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionVar {
    /// The variable's [`Kind::Var`] type.
    pub type_id: TypeId,
    /// Offset in the section.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// Iterator over the variables of a data section.
#[derive(Debug, Clone)]
pub struct SectionVars<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl Iterator for SectionVars<'_> {
    type Item = SectionVar;

    fn next(&mut self) -> Option<SectionVar> {
        let c = self.chunks.next()?;
        Some(SectionVar {
            type_id: u32_at(c, 0),
            offset: u32_at(c, 4),
            size: u32_at(c, 8),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for SectionVars<'_> {}
