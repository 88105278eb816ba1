//! Unit tests on synthetic blobs: each malformation has its error, each layout rule its case.

use vmi_core::profile::{TypeRef, UserTypeKind};

use super::*;

fn base(name: &str) -> TypeRef {
    TypeRef::Base(name.to_owned())
}

fn header_with(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = BtfBuilder::new();
    b.int("int", 4, true);
    let mut blob = b.build();
    f(&mut blob);
    blob
}

#[test]
fn header_errors_name_what_and_where() {
    assert_eq!(
        Btf::parse(&[]).unwrap_err(),
        BtfError::Truncated {
            section: "header",
            offset: 0,
            needed: 24
        }
    );
    assert_eq!(
        Btf::parse(b"\x7fELF").unwrap_err(),
        BtfError::BadMagic { found: 0x457f }
    );
    let big_endian = header_with(|b| b.swap(0, 1));
    assert_eq!(
        Btf::parse(&big_endian).unwrap_err(),
        BtfError::BadMagic { found: 0x9feb }
    );
    let v2 = header_with(|b| b[2] = 2);
    assert_eq!(
        Btf::parse(&v2).unwrap_err(),
        BtfError::UnsupportedVersion { found: 2 }
    );
    let short_hdr = header_with(|b| b[4] = 20);
    assert!(matches!(
        Btf::parse(&short_hdr).unwrap_err(),
        BtfError::BadHeaderLength { hdr_len: 20, .. }
    ));
    let huge_hdr = header_with(|b| b[4..8].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert!(matches!(
        Btf::parse(&huge_hdr).unwrap_err(),
        BtfError::Truncated {
            section: "header",
            ..
        }
    ));
    // Type section running past the end (type_len = 0xffff_ffff).
    let long_types = header_with(|b| b[12..16].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert_eq!(
        Btf::parse(&long_types).unwrap_err(),
        BtfError::Truncated {
            section: "type section",
            offset: 24,
            needed: u64::from(u32::MAX)
        }
    );
    // String section offset at u32::MAX: no overflow, just out of bounds.
    let far_strings = header_with(|b| b[16..20].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert!(matches!(
        Btf::parse(&far_strings).unwrap_err(),
        BtfError::Truncated {
            section: "string section",
            ..
        }
    ));
    // Blob cut in the middle of the string section.
    let mut cut = header_with(|_| {});
    cut.pop();
    assert!(matches!(
        Btf::parse(&cut).unwrap_err(),
        BtfError::Truncated {
            section: "string section",
            ..
        }
    ));
    // Last string not terminated.
    let unterminated = header_with(|b| {
        let last = b.len() - 1;
        b[last] = b'x';
    });
    assert!(matches!(
        Btf::parse(&unterminated).unwrap_err(),
        BtfError::UnterminatedStrings { .. }
    ));
}

#[test]
fn longer_header_and_padding_after_strings_are_accepted() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let blob = b.build();
    // A 32-byte header (8 unknown trailing bytes), sections shifted accordingly.
    let mut longer = blob[..24].to_vec();
    longer[4..8].copy_from_slice(&32u32.to_le_bytes());
    longer.extend_from_slice(&[0; 8]);
    longer.extend_from_slice(&blob[24..]);
    longer.extend_from_slice(&[0xcc; 5]); // padding up to __stop_BTF
    let btf = Btf::parse(&longer).unwrap();
    assert_eq!(btf.header().hdr_len, 32);
    assert_eq!(btf.type_name(int).unwrap(), "int");
}

#[test]
fn record_errors() {
    // Unknown kind 0 and 20.
    for kind in [0u8, 20, 31] {
        let mut b = BtfBuilder::new();
        b.int("int", 4, true);
        b.raw(kind, "x", 0, false, 0, &[]);
        assert_eq!(
            Btf::parse(&b.build()).unwrap_err(),
            BtfError::UnknownKind {
                id: 2,
                offset: 24 + 16,
                kind
            }
        );
    }
    // A struct announcing 3 members but carrying 2.
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let mut data = Vec::new();
    for w in [0u32, int, 0, 0, int, 32] {
        data.extend_from_slice(&w.to_le_bytes());
    }
    b.raw(Kind::Struct.raw(), "s", 3, false, 8, &data);
    assert_eq!(
        Btf::parse(&b.build()).unwrap_err(),
        BtfError::Truncated {
            section: "type record",
            offset: 24 + 16,
            needed: 12 + 36
        }
    );
    // A record cut after 8 bytes.
    let mut b = BtfBuilder::new();
    b.int("int", 4, true);
    let mut blob = b.build();
    let type_len = u32::from_le_bytes(blob[12..16].try_into().unwrap());
    blob[12..16].copy_from_slice(&(type_len - 8).to_le_bytes());
    assert_eq!(
        Btf::parse(&blob).unwrap_err(),
        BtfError::Truncated {
            section: "type record",
            offset: 24,
            needed: 12
        }
    );
}

#[test]
fn dangling_references_and_bad_names() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.struct_("s", 4, &[("a", int, 0, 0), ("b", 77, 0, 0)]);
    assert_eq!(
        Btf::parse(&b.build()).unwrap_err(),
        BtfError::DanglingReference {
            from: 2,
            to: 77,
            count: 2
        }
    );
    let mut b = BtfBuilder::new();
    b.ptr(9);
    assert!(matches!(
        Btf::parse(&b.build()).unwrap_err(),
        BtfError::DanglingReference { from: 1, to: 9, .. }
    ));
    let mut b = BtfBuilder::new();
    b.array(1, 5, 3);
    assert!(matches!(
        Btf::parse(&b.build()).unwrap_err(),
        BtfError::DanglingReference { to: 5, .. }
    ));
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.func_proto(int, &[("x", 42)]);
    assert!(matches!(
        Btf::parse(&b.build()).unwrap_err(),
        BtfError::DanglingReference { to: 42, .. }
    ));
    // A member name offset past the string section.
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let mut data = Vec::new();
    for w in [0x1000u32, int, 0] {
        data.extend_from_slice(&w.to_le_bytes());
    }
    b.raw(Kind::Struct.raw(), "s", 1, false, 4, &data);
    assert!(matches!(
        Btf::parse(&b.build()).unwrap_err(),
        BtfError::StringOutOfRange {
            id: 2,
            offset: 0x1000,
            ..
        }
    ));
    // Non-UTF-8 name: parsing succeeds, the name query says what is wrong.
    let mut b = BtfBuilder::new();
    b.int("int", 4, true);
    let mut blob = b.build();
    let i = blob.len() - 3; // "int\0": the 'n'
    blob[i] = 0xff;
    let btf = Btf::parse(&blob).unwrap();
    assert_eq!(
        btf.type_name(1).unwrap_err(),
        BtfError::BadString { offset: 1 }
    );
    // ... and the profile skips it, reporting why.
    let (profile, report) = btf.to_profile_with_report();
    assert_eq!(profile.type_size(&base("int")), None);
    assert_eq!(report.errors, vec![BtfError::BadString { offset: 1 }]);
}

#[test]
fn ids_are_checked() {
    let mut b = BtfBuilder::new();
    b.int("int", 4, true);
    let blob = b.build();
    let btf = Btf::parse(&blob).unwrap();
    assert_eq!(btf.count(), 1);
    assert_eq!(
        btf.type_by_id(0).unwrap_err(),
        BtfError::TypeIdOutOfRange { id: 0, count: 1 }
    );
    assert_eq!(
        btf.type_by_id(2).unwrap_err(),
        BtfError::TypeIdOutOfRange { id: 2, count: 1 }
    );
    assert_eq!(
        btf.type_by_id(u32::MAX).unwrap_err(),
        BtfError::TypeIdOutOfRange {
            id: u32::MAX,
            count: 1
        }
    );
    assert_eq!(btf.type_name(0).unwrap(), "void");
    assert_eq!(
        btf.size_of(0).unwrap_err(),
        BtfError::NoSize {
            id: 0,
            kind: "void"
        }
    );
    assert!(matches!(
        btf.fields(1).unwrap_err(),
        BtfError::NotComposite { id: 1, kind: "INT" }
    ));
}

#[test]
fn empty_sections_parse() {
    let blob = BtfBuilder::new().build();
    let btf = Btf::parse(&blob).unwrap();
    assert_eq!(btf.count(), 0);
    assert_eq!(btf.to_profile().user_types().count(), 0);
    // A string section of zero bytes: only offset 0 ("") is valid.
    let mut blob = blob;
    blob[20..24].copy_from_slice(&0u32.to_le_bytes());
    blob.truncate(24);
    let btf = Btf::parse(&blob).unwrap();
    assert_eq!(btf.string(0).unwrap(), "");
    assert!(btf.string(1).is_err());
}

#[test]
fn bitfields_kind_flag_and_legacy_encodings() {
    let mut b = BtfBuilder::new();
    let uint = b.int("unsigned int", 4, false);
    let uchar = b.int("unsigned char", 1, false);
    let u8_t = b.typedef("u8", uchar);
    // struct printk_info-like: u64 seq; u16 len; u8 facility; u8 flags:5, level:3; ...
    let ull = b.int("long long unsigned int", 8, false);
    let info = b.struct_(
        "info",
        24,
        &[
            ("seq", ull, 0, 0),
            ("facility", u8_t, 72, 0),
            ("flags", u8_t, 80, 5),
            ("level", u8_t, 85, 3),
            ("frozen", uint, 104, 1),
            ("wide", uint, 105, 31),
        ],
    );
    // Legacy: no kind_flag, the member's int type carries offset and width.
    let bits3 = b.int_bits("unsigned int", 4, false, 0, 3);
    let legacy = b.struct_("legacy", 4, &[("low", bits3, 0, 0), ("high", bits3, 3, 0)]);
    let blob = b.build();
    let btf = Btf::parse(&blob).unwrap();

    let level = btf.field(info, "level").unwrap().unwrap();
    assert_eq!(
        (level.bit_offset, level.bitfield_size, level.byte_offset()),
        (85, 3, 10)
    );
    assert!(!btf.field(info, "seq").unwrap().unwrap().is_bitfield());
    let high = btf.field(legacy, "high").unwrap().unwrap();
    assert_eq!((high.bit_offset, high.bitfield_size), (3, 3));

    let p = btf.to_profile();
    let f = p.field("info", "level").unwrap();
    assert_eq!(f.offset, 10);
    assert_eq!(
        f.ty,
        TypeRef::Bitfield {
            position: 5,
            length: 3,
            storage: Box::new(base("unsigned char"))
        }
    );
    // `frozen` is bit 104 = byte 13; its unsigned int storage unit starts at byte 12.
    let f = p.field("info", "frozen").unwrap();
    assert_eq!(f.offset, 12);
    assert!(matches!(
        f.ty,
        TypeRef::Bitfield {
            position: 8,
            length: 1,
            ..
        }
    ));
    // `wide` (31 bits from bit 105) straddles two units: placed at its first byte.
    let f = p.field("info", "wide").unwrap();
    assert_eq!(f.offset, 13);
    assert!(matches!(
        f.ty,
        TypeRef::Bitfield {
            position: 1,
            length: 31,
            ..
        }
    ));
    assert!(matches!(
        p.field("legacy", "high").unwrap().ty,
        TypeRef::Bitfield {
            position: 3,
            length: 3,
            ..
        }
    ));
    assert_eq!(
        p.field("info", "facility").unwrap().ty,
        base("unsigned char")
    );
}

/// `struct mm_struct { struct { struct maple_tree mm_mt; union { ..; unsigned long pgd_like; }; }; long cpu_bitmap[]; }`
fn anonymous_blob() -> (Vec<u8>, TypeId, TypeId) {
    let mut b = BtfBuilder::new();
    let ulong = b.int("long unsigned int", 8, false);
    let int = b.int("int", 4, true);
    let kuid_anon = b.struct_("", 4, &[("val", int, 0, 0)]);
    let kuid = b.typedef("kuid_t", kuid_anon);
    let tree = b.struct_(
        "maple_tree",
        16,
        &[("ma_root", ulong, 0, 0), ("ma_flags", int, 64, 0)],
    );
    let inner_union = b.union_("", 8, &[("pgd", ulong, 0, 0), ("alias", int, 0, 0)]);
    let outer = b.struct_(
        "",
        32,
        &[
            ("mm_mt", tree, 0, 0),
            ("", inner_union, 128, 0),
            ("owner", kuid, 192, 0),
        ],
    );
    let idx = b.int("int", 4, true);
    let flex = b.array(ulong, idx, 0);
    let mm = b.struct_(
        "mm_struct",
        32,
        &[("", outer, 0, 0), ("cpu_bitmap", flex, 256, 0)],
    );
    // Named member of an anonymous struct type.
    let anon_named = b.struct_("", 8, &[("x", int, 0, 0), ("y", int, 32, 0)]);
    let holder = b.struct_("holder", 8, &[("pos", anon_named, 0, 0)]);
    (b.build(), mm, holder)
}

#[test]
fn anonymous_members_are_flattened() {
    let (blob, mm, _) = anonymous_blob();
    let btf = Btf::parse(&blob).unwrap();
    let names: Vec<_> = btf.fields(mm).unwrap().iter().map(|f| f.name).collect();
    assert_eq!(names, ["mm_mt", "pgd", "alias", "owner", "cpu_bitmap"]);
    assert_eq!(btf.field_offset("mm_struct", "pgd"), Some(16));
    assert_eq!(btf.field_offset("mm_struct", "owner"), Some(24));
    assert_eq!(btf.field_offset("mm_struct", "nope"), None);
    // Raw members keep the anonymous one.
    assert_eq!(btf.members(mm).unwrap().len(), 2);
    assert_eq!(
        btf.find_struct("kuid_t")
            .and_then(|t| btf.size_of(t.id()).ok()),
        Some(4)
    );
}

#[test]
fn profile_keeps_anonymous_members_and_names_them() {
    let (blob, _, _) = anonymous_blob();
    let btf = Btf::parse(&blob).unwrap();
    let (p, report) = btf.to_profile_with_report();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(p.struct_size("mm_struct").unwrap(), 32);
    assert_eq!(p.field_offset("mm_struct", "mm_mt").unwrap(), 0);
    assert_eq!(p.field_offset("mm_struct", "pgd").unwrap(), 16);
    assert_eq!(p.field_offset("mm_struct", "cpu_bitmap").unwrap(), 32);
    assert_eq!(
        p.field("mm_struct", "cpu_bitmap").unwrap().ty,
        TypeRef::Array {
            count: 0,
            element: Box::new(base("long unsigned int"))
        }
    );
    // The anonymous member itself, as dwarf2json lists it.
    let anon = p.field("mm_struct", "unnamed_field_0").unwrap();
    let TypeRef::Struct(anon_name) = &anon.ty else {
        panic!("{:?}", anon.ty)
    };
    assert!(anon_name.starts_with("unnamed_btf_"));
    let inner = p.user_type(anon_name).unwrap();
    assert_eq!(inner.size, 32);
    assert!(inner.fields.contains_key("unnamed_field_0"));
    assert_eq!(inner.fields["pgd"].offset, 16);
    // Typedef-named anonymous struct.
    assert_eq!(
        p.field("mm_struct", "owner").unwrap().ty,
        TypeRef::Struct("kuid_t".into())
    );
    assert_eq!(p.field_offset("kuid_t", "val").unwrap(), 0);
    assert_eq!(p.user_type("kuid_t").unwrap().kind, UserTypeKind::Struct);
    // Named member of an anonymous type refers to it by its synthetic name.
    let TypeRef::Struct(pos) = &p.field("holder", "pos").unwrap().ty else {
        panic!()
    };
    assert_eq!(p.field_offset(pos, "y").unwrap(), 4);
    assert_eq!(p.type_size(&TypeRef::Struct(pos.clone())), Some(8));
    assert_eq!(p.type_size(&base("int")), Some(4));
}

#[test]
fn sizes_follow_alias_chains_and_arrays() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let td = b.typedef("s32", int);
    let c = b.const_(td);
    let v = b.volatile(c);
    let r = b.restrict(v);
    let tag = b.type_tag("rcu", r);
    let ptr = b.ptr(tag);
    let arr = b.array(tag, int, 5);
    let arr2 = b.array(arr, int, 3);
    let var = b.var("x", arr2, 1);
    let huge = b.array(int, int, u32::MAX);
    let huger = b.array(huge, int, 1 << 16);
    let hugest = b.array(huger, int, u32::MAX);
    let fwd = b.fwd("later", false);
    let proto = b.func_proto(int, &[("a", ptr)]);
    let func = b.func("f", proto);
    let blob = b.build();
    let btf = Btf::parse(&blob).unwrap();
    assert_eq!(btf.size_of(tag).unwrap(), 4);
    assert_eq!(btf.resolve(tag).unwrap(), int);
    assert_eq!(btf.size_of(ptr).unwrap(), 8);
    assert_eq!(btf.size_of(arr2).unwrap(), 60);
    assert_eq!(btf.size_of(var).unwrap(), 60);
    assert_eq!(btf.size_of(huger).unwrap(), (4 * u64::from(u32::MAX)) << 16);
    assert_eq!(
        btf.size_of(hugest).unwrap_err(),
        BtfError::SizeOverflow { id: hugest }
    );
    assert_eq!(
        btf.size_of(fwd).unwrap_err(),
        BtfError::NoSize {
            id: fwd,
            kind: "FWD"
        }
    );
    assert_eq!(
        btf.size_of(func).unwrap_err(),
        BtfError::NoSize {
            id: func,
            kind: "FUNC"
        }
    );
    assert_eq!(btf.type_ref(tag).unwrap(), base("int"));
    assert_eq!(
        btf.type_ref(arr2).unwrap(),
        TypeRef::Array {
            count: 3,
            element: Box::new(TypeRef::Array {
                count: 5,
                element: Box::new(base("int"))
            })
        }
    );
    assert_eq!(btf.type_ref(func).unwrap(), TypeRef::Function);
    assert_eq!(btf.type_ref(fwd).unwrap(), TypeRef::Struct("later".into()));
}

#[test]
fn function_pointers_and_void_pointers() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let proto = b.func_proto(int, &[("a", int)]);
    let fptr = b.ptr(proto);
    let vptr = b.ptr(0);
    b.struct_("ops", 16, &[("fn", fptr, 0, 0), ("data", vptr, 64, 0)]);
    let blob = b.build();
    let p = Btf::parse(&blob).unwrap().to_profile();
    assert_eq!(
        p.field("ops", "fn").unwrap().ty,
        TypeRef::Pointer(Box::new(TypeRef::Function))
    );
    assert_eq!(
        p.field("ops", "data").unwrap().ty,
        TypeRef::Pointer(Box::new(TypeRef::Void))
    );
}

#[test]
fn cycles_stop_at_the_depth_limit() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    // typedef a -> const -> typedef b -> a ...
    let a = b.next_id();
    let c = b.const_(a + 2);
    let td_b = b.typedef("b", c);
    let td_a = b.typedef("a", td_b);
    assert_eq!(td_a, a + 2);
    // pointer to itself, array of itself
    let self_ptr = b.next_id();
    b.ptr(self_ptr);
    let self_arr = b.next_id();
    b.array(self_arr, int, 2);
    // struct whose anonymous member is itself
    let self_struct = b.next_id();
    b.struct_("ouroboros", 4, &[("", self_struct, 0, 0)]);
    let victim = b.struct_("victim", 8, &[("loop", td_a, 0, 0), ("ok", int, 32, 0)]);
    let fine = b.struct_("fine", 4, &[("x", int, 0, 0)]);
    let blob = b.build();
    let btf = Btf::parse(&blob).unwrap();
    let limit = MAX_DEPTH;
    assert_eq!(
        btf.size_of(td_a).unwrap_err(),
        BtfError::Cycle { id: td_a, limit }
    );
    assert_eq!(
        btf.resolve(c).unwrap_err(),
        BtfError::Cycle { id: c, limit }
    );
    assert_eq!(
        btf.type_ref(td_a).unwrap_err(),
        BtfError::Cycle { id: td_a, limit }
    );
    assert_eq!(
        btf.type_ref(self_ptr).unwrap_err(),
        BtfError::Cycle {
            id: self_ptr,
            limit
        }
    );
    assert_eq!(
        btf.size_of(self_arr).unwrap_err(),
        BtfError::Cycle {
            id: self_arr,
            limit
        }
    );
    assert_eq!(
        btf.fields(self_struct).unwrap_err(),
        BtfError::Cycle {
            id: self_struct,
            limit
        }
    );
    // The conversion skips the fields that loop and keeps the rest.
    let (p, report) = btf.to_profile_with_report();
    assert_eq!(
        report.errors,
        [
            BtfError::Cycle {
                id: self_struct,
                limit
            },
            BtfError::Cycle { id: td_a, limit }
        ]
    );
    assert!(p.field("victim", "loop").is_err());
    assert_eq!(p.field_offset("victim", "ok").unwrap(), 4);
    assert_eq!(p.user_type("ouroboros").unwrap().fields.len(), 1);
    assert_eq!(p.field_offset("fine", "x").unwrap(), 0);
    let _ = (victim, fine);
}

#[test]
fn nested_anonymous_explosion_is_bounded() {
    // C has 200 ints; B has 200 anonymous C; A has 200 anonymous B: 8 million flattened
    // fields if nothing stopped it.
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let ints: Vec<(&str, TypeId, u32, u8)> = (0..200).map(|_| ("x", int, 0, 0)).collect();
    let c = b.union_("", 4, &ints);
    let cs: Vec<_> = (0..200).map(|_| ("", c, 0, 0)).collect();
    let bb = b.union_("", 4, &cs);
    let bs: Vec<_> = (0..200).map(|_| ("", bb, 0, 0)).collect();
    let a = b.union_("a", 4, &bs);
    let blob = b.build();
    let btf = Btf::parse(&blob).unwrap();
    let start = std::time::Instant::now();
    assert!(matches!(
        btf.fields(a).unwrap_err(),
        BtfError::TooManyMembers { id, .. } if id == a
    ));
    let (p, report) = btf.to_profile_with_report();
    assert!(p.user_type("a").unwrap().fields.len() < 1_000_000);
    assert!(report.skipped >= 1);
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn duplicate_names_prefer_the_first_complete() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let empty = b.struct_("dup", 0, &[]);
    let first = b.struct_("dup", 4, &[("a", int, 0, 0)]);
    let second = b.struct_("dup", 8, &[("a", int, 0, 0), ("b", int, 32, 0)]);
    let only_empty = b.struct_("lonely", 0, &[]);
    let blob = b.build();
    let btf = Btf::parse(&blob).unwrap();
    assert_eq!(btf.find_struct("dup").unwrap().id(), first);
    assert_eq!(btf.find_struct("lonely").unwrap().id(), only_empty);
    let (p, report) = btf.to_profile_with_report();
    assert_eq!(p.struct_size("dup").unwrap(), 4);
    assert_eq!(p.struct_size("lonely").unwrap(), 0);
    assert_eq!(report.duplicates, 2);
    let _ = (empty, second);
}

#[test]
fn enums_and_other_kinds() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let e = b.enum_("pid_type", 4, &[("PIDTYPE_PID", 0), ("PIDTYPE_MAX", -1)]);
    let anon_enum = b.enum_("", 4, &[("A", 1)]);
    let e64 = b.enum64("big", 8, &[("HUGE", i64::MIN), ("ONE", 1)]);
    let named = b.typedef("named_t", anon_enum);
    let var = b.var("per_cpu_thing", int, 1);
    let sec = b.datasec(".data..percpu", 64, &[(var, 16, 4)]);
    let tag = b.decl_tag("user", var, -1);
    let float = b.float("double", 8);
    b.struct_(
        "holder",
        20,
        &[
            ("t", e, 0, 0),
            ("n", named, 32, 0),
            ("b", e64, 64, 0),
            ("f", float, 128, 0),
        ],
    );
    let blob = b.build();
    let btf = Btf::parse(&blob).unwrap();
    let t = btf.type_by_id(e).unwrap();
    let values: Vec<_> = t.enumerators().unwrap().map(|v| v.value).collect();
    assert_eq!(values, [0, -1]);
    let t = btf.type_by_id(e64).unwrap();
    let values: Vec<_> = t.enumerators().unwrap().map(|v| v.value).collect();
    assert_eq!(values, [i64::MIN, 1]);
    let t = btf.type_by_id(sec).unwrap();
    let vars: Vec<_> = t.section_vars().unwrap().collect();
    assert_eq!(
        (vars[0].type_id, vars[0].offset, vars[0].size),
        (var, 16, 4)
    );
    assert_eq!(btf.type_by_id(tag).unwrap().decl_tag_component(), Some(-1));
    assert_eq!(btf.type_by_id(var).unwrap().var_linkage(), Some(1));
    assert_eq!(btf.size_of(sec).unwrap(), 64);
    assert_eq!(
        btf.find_type(Kind::Var, "per_cpu_thing").map(|t| t.id()),
        Some(var)
    );
    assert!(btf.type_by_id(int).unwrap().int().unwrap().is_signed());

    let (p, report) = btf.to_profile_with_report();
    assert_eq!((report.enums, report.base_types), (3, 2));
    assert_eq!(p.type_size(&TypeRef::Enum("pid_type".into())), Some(4));
    assert_eq!(p.type_size(&TypeRef::Enum("named_t".into())), Some(4));
    assert_eq!(p.type_size(&TypeRef::Enum("big".into())), Some(8));
    assert_eq!(
        p.field("holder", "n").unwrap().ty,
        TypeRef::Enum("named_t".into())
    );
    assert_eq!(p.field("holder", "f").unwrap().ty, base("double"));
    assert_eq!(p.type_size(&base("double")), Some(8));
}

#[test]
fn non_utf8_struct_names_are_skipped_not_fatal() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    b.struct_("bad", 4, &[("x", int, 0, 0)]);
    b.struct_("good", 4, &[("x", int, 0, 0)]);
    let mut blob = b.build();
    let at = blob.windows(4).position(|w| w == b"bad\0").unwrap();
    blob[at] = 0xc3; // a lone UTF-8 lead byte
    let btf = Btf::parse(&blob).unwrap();
    assert!(btf.find_struct("good").is_some());
    let (p, report) = btf.to_profile_with_report();
    assert_eq!(p.field_offset("good", "x").unwrap(), 0);
    assert_eq!(report.skipped, 1);
    assert!(matches!(report.errors[0], BtfError::BadString { .. }));
}

/// Compares a lazily converted profile with the full conversion: the same names, each with
/// the same struct, and the same base types and enums.
fn assert_same_types(what: &str, eager: &vmi_core::Profile, lazy: &vmi_core::Profile) {
    use std::collections::BTreeMap;
    let eager_types: BTreeMap<&str, _> = eager.user_types().collect();
    let lazy_types: BTreeMap<&str, _> = lazy.user_types().collect();
    assert_eq!(
        eager_types.len(),
        lazy_types.len(),
        "{what}: {} user types in full, {} lazily",
        eager_types.len(),
        lazy_types.len()
    );
    for (name, ty) in &eager_types {
        assert_eq!(lazy.user_type(name), Some(*ty), "{what}: lookup of {name}");
        assert_eq!(lazy_types.get(name), Some(ty), "{what}: listing of {name}");
    }
    let sorted = |p: &vmi_core::Profile| {
        let b: BTreeMap<String, _> = p
            .base_types()
            .map(|(n, b)| (n.to_owned(), b.clone()))
            .collect();
        let e: BTreeMap<String, u64> = p.enums().map(|(n, s)| (n.to_owned(), s)).collect();
        (b, e)
    };
    assert_eq!(sorted(eager), sorted(lazy), "{what}: base types and enums");
    assert_eq!(lazy.user_type("no_such_struct_anywhere"), None);
}

#[test]
fn lazy_profiles_match_the_full_conversion_on_synthetic_blobs() {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let anon = b.struct_("", 8, &[("pid", int, 0, 0), ("tgid", int, 32, 0)]);
    b.typedef("pair_t", anon);
    let loose = b.struct_("", 4, &[("x", int, 0, 0)]);
    b.struct_(
        "task_struct",
        16,
        &[("flags", int, 0, 0), ("", anon, 64, 0)],
    );
    let lock = b.struct_("spinlock", 4, &[("raw", int, 0, 0)]);
    b.typedef("spinlock_t", lock);
    b.typedef("spinlock_t", lock);
    b.struct_("dup", 0, &[]);
    b.struct_("dup", 4, &[("a", int, 0, 0)]);
    b.union_("u", 4, &[("i", int, 0, 0), ("", loose, 0, 0)]);
    let blob = b.build();
    let btf = Btf::parse(&blob).unwrap();
    let (eager, report) = btf.to_profile_with_report();
    assert!(report.aliases >= 1 && report.duplicates >= 1, "{report:?}");
    assert_same_types("to_profile", &eager, &btf.to_profile());
    assert_same_types(
        "profile_from_blob",
        &eager,
        &Btf::profile_from_blob(blob.clone()).unwrap(),
    );
    let lazy = btf.to_profile();
    assert_eq!(lazy.field_offset("spinlock_t", "raw").unwrap(), 0);
    assert_eq!(lazy.field_offset("pair_t", "tgid").unwrap(), 4);
    assert_eq!(
        lazy.field_offset(&format!("unnamed_btf_{loose}"), "x")
            .unwrap(),
        0
    );
}

/// The same on every real guest's kernel BTF (one guest per kernel build).
#[test]
fn lazy_profiles_match_the_full_conversion_on_real_guests() {
    use vmi_arch_x86 as _;
    use vmi_backend_file as _;

    let mut guests = vmi_fixtures::guests();
    if guests.is_empty() {
        vmi_fixtures::skip("no real guests under the fixtures directory");
        return;
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    let mut seen = std::collections::BTreeSet::new();
    for g in &guests {
        let session = vmi_core::Session::open(g.elf().to_str().unwrap(), &Default::default())
            .unwrap_or_else(|e| panic!("{}: {e}", g.name));
        let image = crate::kallsyms::KernelImage::locate(&session)
            .unwrap_or_else(|e| panic!("{}: {e}", g.name));
        if !seen.insert(image.banner().to_owned()) {
            continue;
        }
        let k = image.kallsyms().unwrap();
        let (start, stop) = (
            k.lookup("__start_BTF").unwrap(),
            k.lookup("__stop_BTF").unwrap(),
        );
        let mut blob = vec![0u8; (stop - start) as usize];
        session
            .virtual_memory(image.space())
            .read_exact(vmi_core::Va::new(start), &mut blob)
            .unwrap();
        let btf = Btf::parse(&blob).unwrap();
        let (eager, report) = btf.to_profile_with_report();
        assert!(report.errors.is_empty(), "{}: {:?}", g.name, report.errors);
        assert!(report.user_types > 1000, "{}: {report:?}", g.name);
        println!(
            "{}: {} user types, {} aliases, {} fields",
            g.name, report.user_types, report.aliases, report.fields
        );
        assert_same_types(&g.name, &eager, &btf.to_profile());
        assert_same_types(&g.name, &eager, &Btf::profile_from_blob(blob).unwrap());
    }
}
