//! BTF parsing: arbitrary bytes through `Btf::parse`, the queries and `to_profile`. Must never
//! panic or hang; the asserts check the invariants the parser promises.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vmi_os_linux::btf::{Btf, Kind};

fuzz_target!(|data: &[u8]| {
    exercise(data);
    // Also with a valid magic, version and header length, so the fuzzer spends its time in
    // the sections rather than on the first bytes.
    if data.len() >= 24 {
        let mut bytes = data.to_vec();
        bytes[..4].copy_from_slice(&[0x9f, 0xeb, 1, 0]);
        bytes[4..8].copy_from_slice(&24u32.to_le_bytes());
        exercise(&bytes);
    }
});

fn exercise(blob: &[u8]) {
    let Ok(btf) = Btf::parse(blob) else { return };
    let count = btf.count();
    assert!(u64::from(count) * 12 <= u64::from(btf.header().type_len));
    for t in btf.types() {
        let id = t.id();
        assert_eq!(btf.type_by_id(id).map(|u| u.id()), Ok(id));
        let _ = btf.name(&t);
        let _ = btf.user_type_name(&t);
        let _ = btf.size_of(id);
        if let Ok(r) = btf.resolve(id) {
            assert!(r <= count);
        }
        let _ = btf.type_ref(id);
        if matches!(t.kind(), Kind::Struct | Kind::Union) {
            if let Ok(fields) = btf.fields(id) {
                // Flattening is bounded by the blob's member budget.
                assert!(fields.len() as u64 <= btf.member_record_count() * 2 + 1024);
                if let Some(f) = fields.first() {
                    let _ = btf.field(id, f.name);
                }
            }
        }
        let _ = t.enumerators().map(|e| e.count());
        let _ = t.params().map(|p| p.count());
        let _ = t.section_vars().map(|v| v.count());
        let _ = t.int();
        let _ = t.array();
    }
    assert!(btf.type_by_id(0).is_err());
    assert!(btf.type_by_id(count.saturating_add(1)).is_err());
    for name in ["", "task_struct", "a"] {
        let _ = btf.find_struct(name);
        let _ = btf.field_offset(name, "a");
    }
    let (profile, report) = btf.to_profile_with_report();
    assert!(report.errors.len() <= 32);
    for (_, ut) in profile.user_types() {
        for f in ut.fields.values() {
            let _ = profile.type_size(&f.ty);
        }
    }
}
