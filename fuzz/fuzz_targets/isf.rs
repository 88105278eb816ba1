//! Symbol-table sources: arbitrary bytes as a Volatility 3 ISF and as a System.map. Either
//! parses or fails with an error; then every lookup on the result is safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmi_core::Profile;

fuzz_target!(|data: &[u8]| {
    for profile in [Profile::from_isf(data), Profile::from_system_map(data)]
        .into_iter()
        .flatten()
    {
        for (name, ty) in profile.user_types() {
            let _ = profile.struct_size(name);
            for (field, f) in &ty.fields {
                let _ = profile.field_offset(name, field);
                let _ = profile.type_size(&f.ty);
            }
        }
        for (name, _) in profile.symbols() {
            let _ = profile.symbol_address(name);
        }
        let doc = vmi_core::profile::isf::from_profile(&profile, serde_json::json!({"format": "6.2.0"}));
        let bytes = serde_json::to_vec(&doc).expect("an ISF document always serializes");
        Profile::from_isf(&bytes).expect("what vmi writes, vmi reads");
    }
});
