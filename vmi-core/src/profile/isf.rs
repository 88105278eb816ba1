//! Volatility 3 Intermediate Symbol Format (ISF): the schema, as serde types, and conversion
//! into a [`Profile`]. The same types serialize, so OS crates can export an ISF.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BaseKind, BaseType, Field, Profile, Symbol, TypeRef, UserType, UserTypeKind};
use crate::error::ProfileError;

/// A whole ISF document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IsfDocument {
    /// Producer, format version and the files it describes.
    pub metadata: serde_json::Value,
    /// Base types by name.
    #[serde(default)]
    pub base_types: BTreeMap<String, IsfBaseType>,
    /// Structs, unions and classes by name.
    #[serde(default)]
    pub user_types: BTreeMap<String, IsfUserType>,
    /// Enums by name.
    #[serde(default)]
    pub enums: BTreeMap<String, IsfEnum>,
    /// Symbols by name.
    #[serde(default)]
    pub symbols: BTreeMap<String, IsfSymbol>,
}

/// A base type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsfBaseType {
    /// Size in bytes.
    pub size: u64,
    /// Signedness.
    pub signed: bool,
    /// "int", "char", "bool", "float", "void".
    pub kind: String,
    /// "little" or "big".
    pub endian: String,
}

/// A struct, union or class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsfUserType {
    /// "struct", "union" or "class".
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Fields by name.
    pub fields: BTreeMap<String, IsfField>,
}

/// A field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsfField {
    /// Byte offset.
    pub offset: u64,
    /// The field's type.
    #[serde(rename = "type")]
    pub ty: IsfType,
    /// Whether the field is an anonymous member (its fields are reachable directly).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

/// An enum.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsfEnum {
    /// Size in bytes.
    pub size: u64,
    /// The base type's name.
    pub base: String,
    /// Constants by name.
    pub constants: BTreeMap<String, i64>,
}

/// A symbol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsfSymbol {
    /// Link-time address.
    pub address: u64,
    /// Type, if known.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<IsfType>,
    /// Base64 bytes of constant data (Volatility uses it for e.g. the banner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constant_data: Option<String>,
}

/// A type descriptor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(missing_docs)] // the variants mirror the ISF schema one to one
pub enum IsfType {
    Base {
        name: String,
    },
    Struct {
        name: String,
    },
    Union {
        name: String,
    },
    Class {
        name: String,
    },
    Enum {
        name: String,
    },
    Pointer {
        subtype: Box<IsfType>,
    },
    Array {
        count: u64,
        subtype: Box<IsfType>,
    },
    Bitfield {
        bit_position: u32,
        bit_length: u32,
        #[serde(rename = "type")]
        ty: Box<IsfType>,
    },
    Function {},
}

impl IsfType {
    fn to_type_ref(&self) -> TypeRef {
        match self {
            IsfType::Base { name } if name == "void" => TypeRef::Void,
            IsfType::Base { name } => TypeRef::Base(name.clone()),
            IsfType::Struct { name } | IsfType::Class { name } => TypeRef::Struct(name.clone()),
            IsfType::Union { name } => TypeRef::Union(name.clone()),
            IsfType::Enum { name } => TypeRef::Enum(name.clone()),
            IsfType::Pointer { subtype } => TypeRef::Pointer(Box::new(subtype.to_type_ref())),
            IsfType::Array { count, subtype } => TypeRef::Array {
                count: *count,
                element: Box::new(subtype.to_type_ref()),
            },
            IsfType::Bitfield {
                bit_position,
                bit_length,
                ty,
            } => TypeRef::Bitfield {
                position: *bit_position,
                length: *bit_length,
                storage: Box::new(ty.to_type_ref()),
            },
            IsfType::Function {} => TypeRef::Function,
        }
    }
}

impl IsfType {
    /// The ISF descriptor of a [`TypeRef`].
    pub fn from_type_ref(t: &TypeRef) -> IsfType {
        match t {
            TypeRef::Base(name) => IsfType::Base { name: name.clone() },
            TypeRef::Struct(name) => IsfType::Struct { name: name.clone() },
            TypeRef::Union(name) => IsfType::Union { name: name.clone() },
            TypeRef::Enum(name) => IsfType::Enum { name: name.clone() },
            TypeRef::Pointer(to) => IsfType::Pointer {
                subtype: Box::new(IsfType::from_type_ref(to)),
            },
            TypeRef::Array { count, element } => IsfType::Array {
                count: *count,
                subtype: Box::new(IsfType::from_type_ref(element)),
            },
            TypeRef::Bitfield {
                position,
                length,
                storage,
            } => IsfType::Bitfield {
                bit_position: *position,
                bit_length: *length,
                ty: Box::new(IsfType::from_type_ref(storage)),
            },
            TypeRef::Function => IsfType::Function {},
            TypeRef::Void => IsfType::Base {
                name: "void".to_owned(),
            },
        }
    }
}

/// The ISF format version vmi writes.
pub const WRITTEN_FORMAT: &str = "6.2.0";

/// Writes `profile` as an ISF document: symbols at the profile's (link-time) addresses, user
/// types, base types (plus the `pointer` and `void` base types Volatility expects) and enums
/// (with their constants where the profile has them). `metadata` is the
/// caller's (producer, OS-specific identification).
pub fn from_profile(profile: &Profile, metadata: serde_json::Value) -> IsfDocument {
    let mut doc = IsfDocument {
        metadata,
        ..Default::default()
    };
    for (name, b) in profile.base_types() {
        doc.base_types.insert(
            name.to_owned(),
            IsfBaseType {
                size: b.size,
                signed: b.signed,
                kind: b.kind.isf_name().to_owned(),
                endian: "little".to_owned(),
            },
        );
    }
    for (name, size, signed, kind) in [("pointer", 8, false, "int"), ("void", 0, false, "void")] {
        doc.base_types
            .entry(name.to_owned())
            .or_insert_with(|| IsfBaseType {
                size,
                signed,
                kind: kind.to_owned(),
                endian: "little".to_owned(),
            });
    }
    for (name, size) in profile.enums() {
        let base = match size {
            1 => "unsigned char",
            2 => "unsigned short",
            8 => "long unsigned int",
            _ => "unsigned int",
        };
        doc.enums.insert(
            name.to_owned(),
            IsfEnum {
                size,
                base: base.to_owned(),
                constants: profile
                    .enum_constants(name)
                    .map(|c| c.iter().cloned().collect())
                    .unwrap_or_default(),
            },
        );
    }
    for (name, t) in profile.user_types() {
        doc.user_types.insert(
            name.to_owned(),
            IsfUserType {
                kind: match t.kind {
                    UserTypeKind::Struct => "struct",
                    UserTypeKind::Union => "union",
                }
                .to_owned(),
                size: t.size,
                fields: t
                    .fields
                    .iter()
                    .map(|(f, field)| {
                        (
                            f.clone(),
                            IsfField {
                                offset: field.offset,
                                ty: IsfType::from_type_ref(&field.ty),
                                anonymous: false,
                            },
                        )
                    })
                    .collect(),
            },
        );
    }
    for (name, s) in profile.symbols() {
        doc.symbols.insert(
            name.to_owned(),
            IsfSymbol {
                address: s.address,
                ty: s.ty.as_ref().map(IsfType::from_type_ref),
                constant_data: None,
            },
        );
    }
    doc
}

/// How deep anonymous members nest at most (the kernel nests three or four levels); the bound
/// keeps a hostile document whose anonymous members contain each other finite.
const MAX_ANONYMOUS_DEPTH: usize = 8;

/// Makes the members of anonymous structs and unions reachable from their parent at the
/// summed offset, as C code names them (`mm->pgd` where `pgd` sits in an anonymous struct of
/// `mm_struct`). A member the parent already names is kept.
fn flatten_anonymous_members(profile: &mut Profile, anonymous: &[(String, String)]) {
    let mut additions: Vec<(String, String, Field)> = Vec::new();
    for (parent, field) in anonymous {
        let Ok(f) = profile.field(parent, field) else {
            continue;
        };
        // (type name, offset of that type inside `parent`, depth)
        let mut stack = match &f.ty {
            TypeRef::Struct(t) | TypeRef::Union(t) => vec![(t.clone(), f.offset, 1usize)],
            _ => continue,
        };
        while let Some((inner, base, depth)) = stack.pop() {
            let Some(inner_ty) = profile.user_type(&inner) else {
                continue;
            };
            for (name, member) in &inner_ty.fields {
                let Some(offset) = base.checked_add(member.offset) else {
                    continue;
                };
                let nested = name.starts_with("unnamed_field");
                match (&member.ty, nested) {
                    (TypeRef::Struct(t) | TypeRef::Union(t), true)
                        if depth < MAX_ANONYMOUS_DEPTH =>
                    {
                        stack.push((t.clone(), offset, depth + 1));
                    }
                    _ => additions.push((
                        parent.clone(),
                        name.clone(),
                        Field {
                            offset,
                            ty: member.ty.clone(),
                        },
                    )),
                }
            }
        }
    }
    for (parent, name, field) in additions {
        if let Some(t) = profile.user_types.get_mut(&parent) {
            t.fields.entry(name).or_insert(field);
        }
    }
}

/// The `metadata.format` major versions vmi reads.
const SUPPORTED_MAJOR: std::ops::RangeInclusive<u64> = 4..=6;

/// Parses an ISF document into a [`Profile`].
pub fn parse(json: &[u8]) -> Result<Profile, ProfileError> {
    let doc: IsfDocument = serde_json::from_slice(json)?;
    let format = doc
        .metadata
        .get("format")
        .and_then(|f| f.as_str())
        .unwrap_or("");
    let major = format.split('.').next().and_then(|m| m.parse::<u64>().ok());
    if !major.is_some_and(|m| SUPPORTED_MAJOR.contains(&m)) {
        return Err(ProfileError::IsfVersion {
            found: format.to_owned(),
        });
    }
    let mut profile = Profile::new("ISF");
    for (name, b) in &doc.base_types {
        let kind = match b.kind.as_str() {
            "char" => BaseKind::Char,
            "bool" => BaseKind::Bool,
            "float" => BaseKind::Float,
            "void" => BaseKind::Void,
            _ => BaseKind::Int,
        };
        profile.insert_base_type_info(
            name.clone(),
            BaseType {
                size: b.size,
                signed: b.signed,
                kind,
            },
        );
    }
    for (name, e) in &doc.enums {
        profile.insert_enum(name.clone(), e.size);
        if !e.constants.is_empty() {
            let mut constants: Vec<(String, i64)> =
                e.constants.iter().map(|(k, v)| (k.clone(), *v)).collect();
            constants.sort_by_key(|&(_, v)| v);
            profile.insert_enum_constants(name.clone(), constants);
        }
    }
    // (type, field) of anonymous members: marked `anonymous`, or named `unnamed_field_*` as
    // dwarf2json names them.
    let mut anonymous: Vec<(String, String)> = Vec::new();
    for (name, t) in doc.user_types {
        for (f, field) in &t.fields {
            if field.anonymous || f.starts_with("unnamed_field") {
                anonymous.push((name.clone(), f.clone()));
            }
        }
        let kind = match t.kind.as_str() {
            "struct" | "class" => UserTypeKind::Struct,
            "union" => UserTypeKind::Union,
            _ => {
                return Err(ProfileError::IsfSchema {
                    what: "user type",
                    name,
                    reason: "kind is not struct, union or class",
                })
            }
        };
        let fields = t
            .fields
            .iter()
            .map(|(f, field)| {
                (
                    f.clone(),
                    Field {
                        offset: field.offset,
                        ty: field.ty.to_type_ref(),
                    },
                )
            })
            .collect();
        profile.insert_type(
            name,
            UserType {
                kind,
                size: t.size,
                fields,
            },
        );
    }
    flatten_anonymous_members(&mut profile, &anonymous);
    for (name, s) in doc.symbols {
        profile.insert_symbol(
            name,
            Symbol {
                address: s.address,
                ty: s.ty.as_ref().map(IsfType::to_type_ref),
            },
        );
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{
      "metadata": {"format": "6.2.0", "producer": {"name": "test"}},
      "base_types": {"int": {"size": 4, "signed": true, "kind": "int", "endian": "little"}},
      "user_types": {
        "list_head": {"kind": "struct", "size": 16, "fields": {
          "next": {"offset": 0, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "list_head"}}},
          "prev": {"offset": 8, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "list_head"}}}}},
        "task_struct": {"kind": "struct", "size": 9000, "fields": {
          "pid": {"offset": 1234, "type": {"kind": "base", "name": "int"}},
          "comm": {"offset": 2000, "type": {"kind": "array", "count": 16, "subtype": {"kind": "base", "name": "char"}}},
          "flags": {"offset": 44, "type": {"kind": "bitfield", "bit_position": 3, "bit_length": 1, "type": {"kind": "base", "name": "int"}}}}}
      },
      "enums": {},
      "symbols": {"init_task": {"address": 18446744071600000000, "type": {"kind": "struct", "name": "task_struct"}}}
    }"#;

    #[test]
    fn parses_small_document() {
        let p = parse(SMALL.as_bytes()).unwrap();
        assert_eq!(p.struct_size("task_struct").unwrap(), 9000);
        assert_eq!(p.field_offset("task_struct", "pid").unwrap(), 1234);
        assert_eq!(p.field_offset("list_head", "prev").unwrap(), 8);
        assert_eq!(p.symbol_address("init_task").unwrap(), 18446744071600000000);
        assert_eq!(
            p.type_size(&p.field("task_struct", "pid").unwrap().ty),
            Some(4)
        );
        assert!(matches!(
            p.field_offset("task_struct", "nope"),
            Err(ProfileError::MissingField { .. })
        ));
    }

    #[test]
    fn round_trips_through_from_profile() {
        let p = parse(SMALL.as_bytes()).unwrap();
        let doc = from_profile(&p, serde_json::json!({"format": WRITTEN_FORMAT}));
        let again = parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(
            again.field("task_struct", "comm").unwrap(),
            p.field("task_struct", "comm").unwrap()
        );
        assert_eq!(
            again.field("task_struct", "flags").unwrap(),
            p.field("task_struct", "flags").unwrap()
        );
        assert_eq!(again.symbol("init_task"), p.symbol("init_task"));
        assert_eq!(again.struct_size("list_head").unwrap(), 16);
        assert!(doc.base_types.contains_key("pointer"));
    }

    #[test]
    fn access_recording_keeps_what_was_used() {
        let mut p = parse(SMALL.as_bytes()).unwrap();
        assert!(p.accessed_subset().is_none());
        p.record_accesses();
        p.field_offset("task_struct", "pid").unwrap();
        p.symbol_address("init_task").unwrap();
        let sub = p.accessed_subset().unwrap();
        assert_eq!(sub.field_offset("task_struct", "pid").unwrap(), 1234);
        assert!(sub.user_type("list_head").is_none());
        assert_eq!(sub.symbol_count(), 1);
    }

    #[test]
    fn rejects_bad_version_and_bad_kind() {
        let doc = SMALL.replace("6.2.0", "9.0.0");
        assert!(matches!(
            parse(doc.as_bytes()),
            Err(ProfileError::IsfVersion { .. })
        ));
        let doc = SMALL.replace(
            "\"kind\": \"struct\", \"size\": 16",
            "\"kind\": \"blob\", \"size\": 16",
        );
        assert!(matches!(
            parse(doc.as_bytes()),
            Err(ProfileError::IsfSchema { .. })
        ));
        assert!(matches!(
            parse(b"{\"metadata\": "),
            Err(ProfileError::IsfJson(_))
        ));
    }
}
