//! A writer of small BTF blobs, for synthetic fixtures and tests (a real kernel's blob comes
//! from its memory). It writes what it is told: references are not checked, so it can also
//! build malformed blobs (cycles, dangling ids) on purpose.

use super::header::{HEADER_LEN, MAGIC, VERSION};
use super::types::{Kind, TypeId};

/// Builds a BTF blob type by type; ids are handed out from 1 in call order.
///
/// ```
/// use vmi_os_linux::btf::{Btf, BtfBuilder};
///
/// let mut b = BtfBuilder::new();
/// let uint = b.int("unsigned int", 4, false);
/// // A struct with two bitfields: `unsigned int a:3, b:5;`
/// let flags = b.struct_("flags", 4, &[("a", uint, 0, 3), ("b", uint, 3, 5)]);
/// let blob = b.build();
/// let btf = Btf::parse(&blob)?;
/// let f = btf.field(flags, "b")?.unwrap();
/// assert_eq!((f.bit_offset, f.bitfield_size), (3, 5));
/// # Ok::<(), vmi_os_linux::btf::BtfError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BtfBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
    count: u32,
}

impl Default for BtfBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BtfBuilder {
    /// An empty blob (the string section starts with the empty name).
    pub fn new() -> Self {
        BtfBuilder {
            types: Vec::new(),
            strings: vec![0],
            count: 0,
        }
    }

    /// The id the next type will get (for forward references and cycles).
    pub fn next_id(&self) -> TypeId {
        self.count + 1
    }

    /// Adds a string and returns its offset ("" is offset 0).
    pub fn string(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let at = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        at
    }

    /// Adds a raw record: `kind` is the raw kind number (any value, for malformed blobs),
    /// `data` the kind-specific bytes.
    pub fn raw(
        &mut self,
        kind: u8,
        name: &str,
        vlen: u16,
        kind_flag: bool,
        size_or_type: u32,
        data: &[u8],
    ) -> TypeId {
        let name_off = self.string(name);
        let info = u32::from(vlen) | (u32::from(kind & 0x1f) << 24) | (u32::from(kind_flag) << 31);
        for word in [name_off, info, size_or_type] {
            self.types.extend_from_slice(&word.to_le_bytes());
        }
        self.types.extend_from_slice(data);
        self.count += 1;
        self.count
    }

    fn simple(&mut self, kind: Kind, name: &str, size_or_type: u32) -> TypeId {
        self.raw(kind.raw(), name, 0, false, size_or_type, &[])
    }

    /// An integer of `size` bytes using all its bits.
    pub fn int(&mut self, name: &str, size: u32, signed: bool) -> TypeId {
        self.int_bits(name, size, signed, 0, size.saturating_mul(8).min(128) as u8)
    }

    /// An integer with an explicit bit offset and width (the legacy bitfield encoding).
    pub fn int_bits(
        &mut self,
        name: &str,
        size: u32,
        signed: bool,
        offset: u8,
        bits: u8,
    ) -> TypeId {
        let encoding = (u32::from(signed) << 24) | (u32::from(offset) << 16) | u32::from(bits);
        self.raw(
            Kind::Int.raw(),
            name,
            0,
            false,
            size,
            &encoding.to_le_bytes(),
        )
    }

    /// A floating-point type.
    pub fn float(&mut self, name: &str, size: u32) -> TypeId {
        self.simple(Kind::Float, name, size)
    }

    /// A pointer to `target`.
    pub fn ptr(&mut self, target: TypeId) -> TypeId {
        self.simple(Kind::Ptr, "", target)
    }

    /// An array of `nelems` × `element`, indexed by `index`.
    pub fn array(&mut self, element: TypeId, index: TypeId, nelems: u32) -> TypeId {
        let mut data = Vec::with_capacity(12);
        for word in [element, index, nelems] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        self.raw(Kind::Array.raw(), "", 0, false, 0, &data)
    }

    /// A typedef.
    pub fn typedef(&mut self, name: &str, target: TypeId) -> TypeId {
        self.simple(Kind::Typedef, name, target)
    }

    /// `const target`.
    pub fn const_(&mut self, target: TypeId) -> TypeId {
        self.simple(Kind::Const, "", target)
    }

    /// `volatile target`.
    pub fn volatile(&mut self, target: TypeId) -> TypeId {
        self.simple(Kind::Volatile, "", target)
    }

    /// `restrict target`.
    pub fn restrict(&mut self, target: TypeId) -> TypeId {
        self.simple(Kind::Restrict, "", target)
    }

    /// A type tag on `target`.
    pub fn type_tag(&mut self, name: &str, target: TypeId) -> TypeId {
        self.simple(Kind::TypeTag, name, target)
    }

    /// A forward declaration of a struct (or union).
    pub fn fwd(&mut self, name: &str, union: bool) -> TypeId {
        self.raw(Kind::Fwd.raw(), name, 0, union, 0, &[])
    }

    fn aggregate(
        &mut self,
        kind: Kind,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32, u8)],
    ) -> TypeId {
        let bitfields = members.iter().any(|m| m.3 != 0);
        let mut data = Vec::with_capacity(members.len() * 12);
        for &(member, ty, bit_offset, bits) in members {
            let name_off = self.string(member);
            let offset = if bitfields {
                (u32::from(bits) << 24) | (bit_offset & 0x00ff_ffff)
            } else {
                bit_offset
            };
            for word in [name_off, ty, offset] {
                data.extend_from_slice(&word.to_le_bytes());
            }
        }
        let vlen = u16::try_from(members.len()).unwrap_or(u16::MAX);
        self.raw(kind.raw(), name, vlen, bitfields, size, &data)
    }

    /// A struct; members are `(name, type, bit offset, bitfield width or 0)` ("" for an
    /// anonymous member). Any bitfield switches on the `kind_flag` encoding.
    pub fn struct_(
        &mut self,
        name: &str,
        size: u32,
        members: &[(&str, TypeId, u32, u8)],
    ) -> TypeId {
        self.aggregate(Kind::Struct, name, size, members)
    }

    /// A union; members as for [`BtfBuilder::struct_`].
    pub fn union_(&mut self, name: &str, size: u32, members: &[(&str, TypeId, u32, u8)]) -> TypeId {
        self.aggregate(Kind::Union, name, size, members)
    }

    /// An enum of `size` bytes.
    pub fn enum_(&mut self, name: &str, size: u32, values: &[(&str, i32)]) -> TypeId {
        let mut data = Vec::with_capacity(values.len() * 8);
        for &(value_name, value) in values {
            let name_off = self.string(value_name);
            data.extend_from_slice(&name_off.to_le_bytes());
            data.extend_from_slice(&value.to_le_bytes());
        }
        let vlen = u16::try_from(values.len()).unwrap_or(u16::MAX);
        self.raw(Kind::Enum.raw(), name, vlen, false, size, &data)
    }

    /// A 64-bit enum of `size` bytes.
    pub fn enum64(&mut self, name: &str, size: u32, values: &[(&str, i64)]) -> TypeId {
        let mut data = Vec::with_capacity(values.len() * 12);
        for &(value_name, value) in values {
            let name_off = self.string(value_name);
            let bits = value as u64;
            data.extend_from_slice(&name_off.to_le_bytes());
            data.extend_from_slice(&(bits as u32).to_le_bytes());
            data.extend_from_slice(&((bits >> 32) as u32).to_le_bytes());
        }
        let vlen = u16::try_from(values.len()).unwrap_or(u16::MAX);
        self.raw(Kind::Enum64.raw(), name, vlen, true, size, &data)
    }

    /// A function prototype.
    pub fn func_proto(&mut self, ret: TypeId, params: &[(&str, TypeId)]) -> TypeId {
        let mut data = Vec::with_capacity(params.len() * 8);
        for &(param, ty) in params {
            let name_off = self.string(param);
            data.extend_from_slice(&name_off.to_le_bytes());
            data.extend_from_slice(&ty.to_le_bytes());
        }
        let vlen = u16::try_from(params.len()).unwrap_or(u16::MAX);
        self.raw(Kind::FuncProto.raw(), "", vlen, false, ret, &data)
    }

    /// A function with prototype `proto`.
    pub fn func(&mut self, name: &str, proto: TypeId) -> TypeId {
        self.simple(Kind::Func, name, proto)
    }

    /// A variable.
    pub fn var(&mut self, name: &str, ty: TypeId, linkage: u32) -> TypeId {
        self.raw(Kind::Var.raw(), name, 0, false, ty, &linkage.to_le_bytes())
    }

    /// A data section with `(var type, offset, size)` entries.
    pub fn datasec(&mut self, name: &str, size: u32, vars: &[(TypeId, u32, u32)]) -> TypeId {
        let mut data = Vec::with_capacity(vars.len() * 12);
        for &(ty, offset, var_size) in vars {
            for word in [ty, offset, var_size] {
                data.extend_from_slice(&word.to_le_bytes());
            }
        }
        let vlen = u16::try_from(vars.len()).unwrap_or(u16::MAX);
        self.raw(Kind::Datasec.raw(), name, vlen, false, size, &data)
    }

    /// A declaration tag on `target` (component -1: the whole declaration).
    pub fn decl_tag(&mut self, name: &str, target: TypeId, component: i32) -> TypeId {
        self.raw(
            Kind::DeclTag.raw(),
            name,
            0,
            false,
            target,
            &component.to_le_bytes(),
        )
    }

    /// The blob: header, type section, string section.
    pub fn build(&self) -> Vec<u8> {
        let type_len = self.types.len() as u32;
        let str_len = self.strings.len() as u32;
        let mut out =
            Vec::with_capacity(HEADER_LEN as usize + self.types.len() + self.strings.len());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(VERSION);
        out.push(0);
        for word in [HEADER_LEN, 0, type_len, type_len, str_len] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}
