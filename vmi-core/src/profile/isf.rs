//! Volatility 3 Intermediate Symbol Format (ISF): the schema, as serde types, and conversion
//! into a [`Profile`]. The same types serialize, so OS crates can export an ISF.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Field, Profile, Symbol, TypeRef, UserType, UserTypeKind};
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
        profile.insert_base_type(name.clone(), b.size);
    }
    for (name, e) in &doc.enums {
        profile.insert_enum(name.clone(), e.size);
    }
    for (name, t) in doc.user_types {
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
