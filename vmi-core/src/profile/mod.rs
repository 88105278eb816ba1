//! Symbols and types: one [`Profile`] API fed by several sources.
//!
//! Sources now: Volatility 3 ISF JSON (`.json`, `.json.xz`) and System.map. OS crates add
//! in-memory sources (kallsyms, BTF, PDB) by building a `Profile` with [`Profile::insert_symbol`]
//! and [`Profile::insert_type`]. Analyses resolve what they need once, into typed offset
//! structs, and never look names up on hot paths.

pub mod isf;
mod system_map;

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::error::ProfileError;

/// A reference to a type, as a field or symbol has it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypeRef {
    /// A base type (`int`, `unsigned long`, `char`, ...).
    Base(String),
    /// A struct, by name.
    Struct(String),
    /// A union, by name.
    Union(String),
    /// An enum, by name.
    Enum(String),
    /// A pointer to something.
    Pointer(Box<TypeRef>),
    /// A fixed-size array.
    Array {
        /// Element count.
        count: u64,
        /// Element type.
        element: Box<TypeRef>,
    },
    /// A bitfield inside an integer.
    Bitfield {
        /// First bit.
        position: u32,
        /// Width in bits.
        length: u32,
        /// The integer holding it.
        storage: Box<TypeRef>,
    },
    /// A function (pointers to functions point here).
    Function,
    /// `void` or a type the source does not describe.
    Void,
}

/// A field of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Byte offset from the start of the containing type.
    pub offset: u64,
    /// The field's type.
    pub ty: TypeRef,
}

/// Whether a user type is a struct or a union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserTypeKind {
    /// A struct.
    Struct,
    /// A union.
    Union,
}

/// A struct or union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserType {
    /// Struct or union.
    pub kind: UserTypeKind,
    /// Size in bytes.
    pub size: u64,
    /// Fields by name.
    pub fields: FxHashMap<String, Field>,
}

/// A symbol: a link-time address and, where the source knows it, a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// The address as the source gives it (link-time; callers add the KASLR slide).
    pub address: u64,
    /// The symbol's type, if known.
    pub ty: Option<TypeRef>,
}

/// A base type: size, signedness and kind, as the ISF describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseType {
    /// Size in bytes.
    pub size: u64,
    /// Signedness.
    pub signed: bool,
    /// What it holds.
    pub kind: BaseKind,
}

/// What a base type holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseKind {
    /// An integer.
    Int,
    /// A character.
    Char,
    /// A boolean.
    Bool,
    /// A floating-point number.
    Float,
    /// `void`.
    Void,
}

impl BaseKind {
    /// The ISF spelling.
    pub const fn isf_name(self) -> &'static str {
        match self {
            BaseKind::Int => "int",
            BaseKind::Char => "char",
            BaseKind::Bool => "bool",
            BaseKind::Float => "float",
            BaseKind::Void => "void",
        }
    }
}

impl BaseType {
    /// A base type described by its C name and size alone (System.map-like sources): `char`
    /// in the name makes a char, `_Bool`/`bool` a boolean, `float`/`double` a float, and
    /// `unsigned` (or a leading `u`) makes it unsigned.
    pub fn from_c_name(name: &str, size: u64) -> Self {
        let kind = if name.contains("char") {
            BaseKind::Char
        } else if name.contains("_Bool") || name == "bool" {
            BaseKind::Bool
        } else if name.contains("float") || name.contains("double") {
            BaseKind::Float
        } else if name == "void" {
            BaseKind::Void
        } else {
            BaseKind::Int
        };
        let signed =
            !(name.contains("unsigned") || name.starts_with('u') || kind == BaseKind::Bool)
                && kind != BaseKind::Void;
        Self { size, signed, kind }
    }
}

/// Which symbols and types were looked up, when recording is on (see
/// [`Profile::record_accesses`]).
#[derive(Default)]
struct AccessLog(Option<std::sync::Mutex<Accessed>>);

#[derive(Default)]
struct Accessed {
    symbols: rustc_hash::FxHashSet<String>,
    types: rustc_hash::FxHashSet<String>,
}

impl AccessLog {
    fn note(&self, f: impl FnOnce(&mut Accessed)) {
        if let Some(m) = &self.0 {
            f(&mut m.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

impl Clone for AccessLog {
    /// A clone records on its own, starting empty.
    fn clone(&self) -> Self {
        Self(self.0.as_ref().map(|_| Default::default()))
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "recording" } else { "off" })
    }
}

/// Symbols and types of one kernel build.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    symbols: FxHashMap<String, Symbol>,
    user_types: FxHashMap<String, UserType>,
    base_types: FxHashMap<String, BaseType>,
    enums: FxHashMap<String, u64>,
    access_log: AccessLog,
    /// Where the profile came from, for messages.
    pub source: String,
}

impl Profile {
    /// An empty profile described by `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Default::default()
        }
    }

    /// Loads an ISF (`.json` or `.json.xz`, detected from content) or a System.map.
    pub fn from_path(path: &Path) -> Result<Self, ProfileError> {
        let bytes = std::fs::read(path).map_err(|source| ProfileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bytes = if bytes.starts_with(b"\xfd7zXZ\0") {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut &bytes[..], &mut out).map_err(|e| ProfileError::Xz {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            out
        } else {
            bytes
        };
        let source = path.display().to_string();
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            let mut p = isf::parse(&bytes)?;
            p.source = source;
            Ok(p)
        } else if system_map::looks_like(&bytes) {
            let mut p = system_map::parse(&bytes)?;
            p.source = source;
            Ok(p)
        } else {
            Err(ProfileError::UnknownFormat {
                path: path.to_owned(),
            })
        }
    }

    /// Parses a System.map (`ADDRESS TYPE NAME` per line).
    pub fn from_system_map(text: &[u8]) -> Result<Self, ProfileError> {
        system_map::parse(text)
    }

    /// Parses a Volatility 3 ISF document.
    pub fn from_isf(json: &[u8]) -> Result<Self, ProfileError> {
        isf::parse(json)
    }

    /// Makes room for `symbols` more symbols and `types` more user types (bulk sources such as
    /// kallsyms insert 100k+ symbols; growing the map step by step costs more than filling it).
    pub fn reserve(&mut self, symbols: usize, types: usize) {
        self.symbols.reserve(symbols);
        self.user_types.reserve(types);
    }

    /// Adds or replaces a symbol.
    pub fn insert_symbol(&mut self, name: impl Into<String>, symbol: Symbol) {
        self.symbols.insert(name.into(), symbol);
    }

    /// Adds or replaces a struct or union.
    pub fn insert_type(&mut self, name: impl Into<String>, ty: UserType) {
        self.user_types.insert(name.into(), ty);
    }

    /// Adds or replaces a base type known by name and size (kind and sign from the name).
    pub fn insert_base_type(&mut self, name: impl Into<String>, size: u64) {
        let name = name.into();
        let ty = BaseType::from_c_name(&name, size);
        self.base_types.insert(name, ty);
    }

    /// Adds or replaces a fully described base type.
    pub fn insert_base_type_info(&mut self, name: impl Into<String>, ty: BaseType) {
        self.base_types.insert(name.into(), ty);
    }

    /// Starts recording which symbols and types are looked up, so that
    /// [`Profile::accessed_subset`] can later keep just those (a small profile cache).
    pub fn record_accesses(&mut self) {
        self.access_log = AccessLog(Some(Default::default()));
    }

    /// A profile with only the symbols and user types looked up since
    /// [`Profile::record_accesses`] (all base types and enums, which are small), or `None` when
    /// not recording.
    pub fn accessed_subset(&self) -> Option<Profile> {
        let log = self.access_log.0.as_ref()?;
        let accessed = log.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Profile::new(self.source.clone());
        for name in &accessed.symbols {
            if let Some(s) = self.symbols.get(name) {
                out.symbols.insert(name.clone(), s.clone());
            }
        }
        for name in &accessed.types {
            if let Some(t) = self.user_types.get(name) {
                out.user_types.insert(name.clone(), t.clone());
            }
        }
        out.base_types = self.base_types.clone();
        out.enums = self.enums.clone();
        Some(out)
    }

    /// Adds or replaces an enum's size.
    pub fn insert_enum(&mut self, name: impl Into<String>, size: u64) {
        self.enums.insert(name.into(), size);
    }

    /// Adds everything `other` has; where both have an item, `other`'s wins. Used to combine
    /// sources, e.g. kallsyms symbols with BTF types.
    pub fn merge(&mut self, other: Profile) {
        self.symbols.extend(other.symbols);
        self.user_types.extend(other.user_types);
        self.base_types.extend(other.base_types);
        self.enums.extend(other.enums);
    }

    /// Base types.
    pub fn base_types(&self) -> impl Iterator<Item = (&str, &BaseType)> {
        self.base_types.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Enums and their sizes.
    pub fn enums(&self) -> impl Iterator<Item = (&str, u64)> {
        self.enums.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// A symbol by name.
    pub fn symbol(&self, name: &str) -> Option<&Symbol> {
        self.access_log.note(|a| {
            a.symbols.insert(name.to_owned());
        });
        self.symbols.get(name)
    }

    /// A symbol's address, or an error naming it.
    pub fn symbol_address(&self, name: &str) -> Result<u64, ProfileError> {
        self.symbol(name)
            .map(|s| s.address)
            .ok_or_else(|| ProfileError::MissingSymbol(name.to_owned()))
    }

    /// All symbols.
    pub fn symbols(&self) -> impl Iterator<Item = (&str, &Symbol)> {
        self.symbols.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of symbols.
    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// A struct or union by name.
    pub fn user_type(&self, name: &str) -> Option<&UserType> {
        self.access_log.note(|a| {
            a.types.insert(name.to_owned());
        });
        self.user_types.get(name)
    }

    /// All structs and unions.
    pub fn user_types(&self) -> impl Iterator<Item = (&str, &UserType)> {
        self.user_types.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Size of a struct or union, or an error naming it.
    pub fn struct_size(&self, name: &str) -> Result<u64, ProfileError> {
        self.user_type(name)
            .map(|t| t.size)
            .ok_or_else(|| ProfileError::MissingType(name.to_owned()))
    }

    /// A field of a struct or union, or an error naming what is missing.
    pub fn field(&self, ty: &str, field: &str) -> Result<&Field, ProfileError> {
        let t = self
            .user_type(ty)
            .ok_or_else(|| ProfileError::MissingType(ty.to_owned()))?;
        t.fields
            .get(field)
            .ok_or_else(|| ProfileError::MissingField {
                ty: ty.to_owned(),
                field: field.to_owned(),
            })
    }

    /// Byte offset of a field, or an error naming what is missing.
    pub fn field_offset(&self, ty: &str, field: &str) -> Result<u64, ProfileError> {
        self.field(ty, field).map(|f| f.offset)
    }

    /// Size in bytes of a type reference, where the profile knows it (pointers are 8 bytes).
    pub fn type_size(&self, ty: &TypeRef) -> Option<u64> {
        match ty {
            TypeRef::Base(n) => self.base_types.get(n).map(|b| b.size),
            TypeRef::Struct(n) | TypeRef::Union(n) => self.user_type(n).map(|t| t.size),
            TypeRef::Enum(n) => self.enums.get(n).copied(),
            TypeRef::Pointer(_) => Some(8),
            TypeRef::Array { count, element } => self.type_size(element)?.checked_mul(*count),
            TypeRef::Bitfield { storage, .. } => self.type_size(storage),
            TypeRef::Function | TypeRef::Void => None,
        }
    }
}
