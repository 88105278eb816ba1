//! Symbols and types: one [`Profile`] API fed by several sources.
//!
//! Sources now: Volatility 3 ISF JSON (`.json`, `.json.xz`) and System.map. OS crates add
//! in-memory sources (kallsyms, BTF, PDB) by building a `Profile` with [`Profile::insert_symbol`]
//! and [`Profile::insert_type`], or, for bulk sources, by attaching a [`SymbolSource`] or
//! [`TypeSource`] that answers lookups on demand: a kernel has 100k+ symbols and 10k+ types,
//! and an analysis asks for a few hundred of them, so copying them all into maps would cost
//! more than everything the analysis does. Analyses resolve what they need once, into typed
//! offset structs, and never look names up on hot paths.

pub mod isf;
mod system_map;

use std::path::Path;
use std::sync::Arc;

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

/// Symbols answered on demand, for bulk sources (a kernel's kallsyms) whose names should not
/// all be copied into a [`Profile`]. Attach one with [`Profile::add_symbol_source`].
///
/// A source is immutable once attached: the same name always gives the same answer.
pub trait SymbolSource: Send + Sync {
    /// The symbol called `name`, if the source has it.
    fn symbol(&self, name: &str) -> Option<&Symbol>;

    /// Every symbol, each name once (bulk: for exports, not lookups).
    fn symbols(&self) -> Box<dyn Iterator<Item = (&str, &Symbol)> + '_>;

    /// The number of distinct names [`SymbolSource::symbols`] yields.
    fn symbol_count(&self) -> usize;

    /// What the source is, for `Debug` output.
    fn describe(&self) -> String;
}

/// Structs and unions answered on demand, for bulk sources (a kernel's BTF) whose types should
/// be converted only when asked for. Attach one with [`Profile::add_type_source`].
///
/// A source is immutable once attached: the same name always gives the same answer.
pub trait TypeSource: Send + Sync {
    /// The struct or union called `name`, if the source has it.
    fn user_type(&self, name: &str) -> Option<&UserType>;

    /// Every struct and union, each name once (bulk: converts everything).
    fn user_types(&self) -> Box<dyn Iterator<Item = (&str, &UserType)> + '_>;

    /// What the source is, for `Debug` output.
    fn describe(&self) -> String;
}

/// The attached sources, newest last; a newer source shadows an older one.
#[derive(Clone, Default)]
struct Sources {
    symbols: Vec<Arc<dyn SymbolSource>>,
    types: Vec<Arc<dyn TypeSource>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field(
                "symbols",
                &self
                    .symbols
                    .iter()
                    .map(|s| s.describe())
                    .collect::<Vec<_>>(),
            )
            .field(
                "types",
                &self.types.iter().map(|s| s.describe()).collect::<Vec<_>>(),
            )
            .finish()
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
///
/// Items live in the profile's own maps or in attached [`SymbolSource`]s and
/// [`TypeSource`]s. The maps come first, then the sources from newest to oldest; inserting,
/// attaching and merging keep the rule that the item added last wins.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    symbols: FxHashMap<String, Symbol>,
    user_types: FxHashMap<String, UserType>,
    base_types: FxHashMap<String, BaseType>,
    enums: FxHashMap<String, u64>,
    /// Named values of enums, where the source has them (BTF and ISF do; System.map not).
    enum_constants: FxHashMap<String, Vec<(String, i64)>>,
    sources: Sources,
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

    /// Attaches a source of symbols. It shadows older sources, and symbols inserted before of
    /// the names it has are dropped (the source, added last, wins).
    pub fn add_symbol_source(&mut self, source: Arc<dyn SymbolSource>) {
        if !self.symbols.is_empty() {
            self.symbols.retain(|name, _| source.symbol(name).is_none());
        }
        self.sources.symbols.push(source);
    }

    /// Attaches a source of structs and unions. It shadows older sources, and types inserted
    /// before of the names it has are dropped (the source, added last, wins).
    pub fn add_type_source(&mut self, source: Arc<dyn TypeSource>) {
        if !self.user_types.is_empty() {
            self.user_types
                .retain(|name, _| source.user_type(name).is_none());
        }
        self.sources.types.push(source);
    }

    /// A symbol from the maps or the sources, without recording the access.
    fn find_symbol(&self, name: &str) -> Option<&Symbol> {
        self.symbols.get(name).or_else(|| {
            self.sources
                .symbols
                .iter()
                .rev()
                .find_map(|s| s.symbol(name))
        })
    }

    /// A user type from the maps or the sources, without recording the access.
    fn find_user_type(&self, name: &str) -> Option<&UserType> {
        self.user_types.get(name).or_else(|| {
            self.sources
                .types
                .iter()
                .rev()
                .find_map(|s| s.user_type(name))
        })
    }

    /// Starts recording which symbols and types are looked up, so that
    /// [`Profile::accessed_subset`] can later keep just those (a small profile cache).
    pub fn record_accesses(&mut self) {
        self.access_log = AccessLog(Some(Default::default()));
    }

    /// A profile with only the symbols and user types looked up since
    /// [`Profile::record_accesses`] (all base types and enum sizes, which are small; no enum
    /// constants, which only exports use), or `None` when not recording.
    pub fn accessed_subset(&self) -> Option<Profile> {
        let log = self.access_log.0.as_ref()?;
        let accessed = log.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Profile::new(self.source.clone());
        for name in &accessed.symbols {
            if let Some(s) = self.find_symbol(name) {
                out.symbols.insert(name.clone(), s.clone());
            }
        }
        for name in &accessed.types {
            if let Some(t) = self.find_user_type(name) {
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

    /// Adds or replaces an enum's named values.
    pub fn insert_enum_constants(
        &mut self,
        name: impl Into<String>,
        constants: Vec<(String, i64)>,
    ) {
        self.enum_constants.insert(name.into(), constants);
    }

    /// The named values of enum `name`, in the source's order, if the profile has them.
    pub fn enum_constants(&self, name: &str) -> Option<&[(String, i64)]> {
        self.enum_constants.get(name).map(Vec::as_slice)
    }

    /// Adds everything `other` has; where both have an item, `other`'s wins. Used to combine
    /// sources, e.g. kallsyms symbols with BTF types.
    pub fn merge(&mut self, other: Profile) {
        // Our own items that `other`'s sources have must give way to them.
        for source in other.sources.symbols {
            self.add_symbol_source(source);
        }
        for source in other.sources.types {
            self.add_type_source(source);
        }
        self.symbols.extend(other.symbols);
        self.user_types.extend(other.user_types);
        self.base_types.extend(other.base_types);
        self.enums.extend(other.enums);
        self.enum_constants.extend(other.enum_constants);
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
        self.find_symbol(name)
    }

    /// A symbol's address, or an error naming it.
    pub fn symbol_address(&self, name: &str) -> Result<u64, ProfileError> {
        self.symbol(name)
            .map(|s| s.address)
            .ok_or_else(|| ProfileError::MissingSymbol(name.to_owned()))
    }

    /// All symbols, each name once (the one a lookup finds). With a source attached this
    /// visits all of it: for exports, not lookups.
    pub fn symbols(&self) -> impl Iterator<Item = (&str, &Symbol)> {
        let own = self.symbols.iter().map(|(k, v)| (k.as_str(), v));
        let sources = &self.sources.symbols;
        let from_sources = sources.iter().enumerate().rev().flat_map(move |(i, s)| {
            s.symbols().filter(move |(name, _)| {
                !self.symbols.contains_key(*name)
                    && sources[i + 1..]
                        .iter()
                        .all(|newer| newer.symbol(name).is_none())
            })
        });
        own.chain(from_sources)
    }

    /// Number of symbols (distinct names).
    pub fn symbol_count(&self) -> usize {
        match self.sources.symbols.as_slice() {
            [] => self.symbols.len(),
            [only] => {
                let shadowed = self
                    .symbols
                    .keys()
                    .filter(|k| only.symbol(k).is_some())
                    .count();
                self.symbols.len() + only.symbol_count() - shadowed
            }
            _ => self.symbols().count(),
        }
    }

    /// A struct or union by name.
    pub fn user_type(&self, name: &str) -> Option<&UserType> {
        self.access_log.note(|a| {
            a.types.insert(name.to_owned());
        });
        self.find_user_type(name)
    }

    /// All structs and unions, each name once (the one a lookup finds). With a source
    /// attached this converts all of it: for exports, not lookups.
    pub fn user_types(&self) -> impl Iterator<Item = (&str, &UserType)> {
        let own = self.user_types.iter().map(|(k, v)| (k.as_str(), v));
        let sources = &self.sources.types;
        let from_sources = sources.iter().enumerate().rev().flat_map(move |(i, s)| {
            s.user_types().filter(move |(name, _)| {
                !self.user_types.contains_key(*name)
                    && sources[i + 1..]
                        .iter()
                        .all(|newer| newer.user_type(name).is_none())
            })
        });
        own.chain(from_sources)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed set of symbols and types, as a bulk source would give them.
    struct Fixed {
        symbols: Vec<(String, Symbol)>,
        types: Vec<(String, UserType)>,
    }

    impl Fixed {
        fn new(symbols: &[(&str, u64)], types: &[(&str, u64)]) -> Arc<Self> {
            Arc::new(Self {
                symbols: symbols
                    .iter()
                    .map(|&(n, a)| {
                        let s = Symbol {
                            address: a,
                            ty: None,
                        };
                        (n.to_owned(), s)
                    })
                    .collect(),
                types: types.iter().map(|&(n, s)| (n.to_owned(), ut(s))).collect(),
            })
        }
    }

    fn ut(size: u64) -> UserType {
        UserType {
            kind: UserTypeKind::Struct,
            size,
            fields: FxHashMap::default(),
        }
    }

    impl SymbolSource for Fixed {
        fn symbol(&self, name: &str) -> Option<&Symbol> {
            self.symbols.iter().find(|(n, _)| n == name).map(|(_, s)| s)
        }
        fn symbols(&self) -> Box<dyn Iterator<Item = (&str, &Symbol)> + '_> {
            Box::new(self.symbols.iter().map(|(n, s)| (n.as_str(), s)))
        }
        fn symbol_count(&self) -> usize {
            self.symbols.len()
        }
        fn describe(&self) -> String {
            "fixed".into()
        }
    }

    impl TypeSource for Fixed {
        fn user_type(&self, name: &str) -> Option<&UserType> {
            self.types.iter().find(|(n, _)| n == name).map(|(_, t)| t)
        }
        fn user_types(&self) -> Box<dyn Iterator<Item = (&str, &UserType)> + '_> {
            Box::new(self.types.iter().map(|(n, t)| (n.as_str(), t)))
        }
        fn describe(&self) -> String {
            "fixed".into()
        }
    }

    fn sym(address: u64) -> Symbol {
        Symbol { address, ty: None }
    }

    #[test]
    fn the_item_added_last_wins() {
        let mut p = Profile::new("test");
        p.insert_symbol("a", sym(1));
        p.insert_symbol("b", sym(2));
        p.insert_type("t", ut(1));
        let older = Fixed::new(&[("b", 20), ("c", 30), ("d", 40)], &[("t", 10), ("u", 20)]);
        p.add_symbol_source(older.clone());
        p.add_type_source(older);
        // The source replaced the inserted b and t, but not a.
        assert_eq!(p.symbol_address("a").unwrap(), 1);
        assert_eq!(p.symbol_address("b").unwrap(), 20);
        assert_eq!(p.struct_size("t").unwrap(), 10);
        // Inserted after the source: wins over it.
        p.insert_symbol("c", sym(3));
        assert_eq!(p.symbol_address("c").unwrap(), 3);
        // A newer source shadows an older one.
        let newer = Fixed::new(&[("d", 400), ("e", 500)], &[("u", 200)]);
        p.add_symbol_source(newer.clone());
        p.add_type_source(newer);
        assert_eq!(p.symbol_address("d").unwrap(), 400);
        assert_eq!(p.struct_size("u").unwrap(), 200);
        assert_eq!(p.symbol_address("e").unwrap(), 500);
        assert!(p.symbol("nope").is_none());

        // Each name once, with the address a lookup gives.
        let mut all: Vec<(&str, u64)> = p.symbols().map(|(n, s)| (n, s.address)).collect();
        all.sort();
        assert_eq!(all, [("a", 1), ("b", 20), ("c", 3), ("d", 400), ("e", 500)]);
        assert_eq!(p.symbol_count(), 5);
        let mut types: Vec<(&str, u64)> = p.user_types().map(|(n, t)| (n, t.size)).collect();
        types.sort();
        assert_eq!(types, [("t", 10), ("u", 200)]);
    }

    #[test]
    fn merging_keeps_the_rule_and_the_access_log_sees_sources() {
        let mut base = Profile::new("kallsyms");
        base.add_symbol_source(Fixed::new(&[("init_task", 0x10), ("prb", 0x20)], &[]));
        base.insert_type("task_struct", ut(1));
        let mut types = Profile::new("btf");
        types.add_type_source(Fixed::new(
            &[],
            &[("task_struct", 9000), ("mm_struct", 900)],
        ));
        types.insert_symbol("prb", sym(0x30));
        base.merge(types);
        // The merged profile's source and symbol win where both have an item.
        assert_eq!(base.struct_size("task_struct").unwrap(), 9000);
        assert_eq!(base.symbol_address("prb").unwrap(), 0x30);
        assert_eq!(base.symbol_address("init_task").unwrap(), 0x10);
        assert_eq!(base.symbol_count(), 2);

        base.record_accesses();
        let _ = base.symbol("init_task");
        let _ = base.user_type("mm_struct");
        let _ = base.user_type("absent");
        let used = base.accessed_subset().unwrap();
        assert_eq!(used.symbol_address("init_task").unwrap(), 0x10);
        assert_eq!(used.struct_size("mm_struct").unwrap(), 900);
        assert_eq!(used.symbol_count(), 1);
        assert_eq!(used.user_types().count(), 1);
        // A clone shares the sources.
        let copy = base.clone();
        assert_eq!(copy.struct_size("task_struct").unwrap(), 9000);
    }
}
