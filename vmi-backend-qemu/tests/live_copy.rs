//! Live guest RAM is copied in one audited place: vmi-core's volatile copies
//! (`vmi_core::memory::copy_from_live` / `copy_to_live`). A plain `copy_nonoverlapping` (or a
//! slice made over the mapping) races with the guest's writes, which Rust's memory model makes
//! undefined behaviour; this checks that neither live backend (QEMU's mapped RAM file, Xen's
//! foreign mappings) does either, and that both go through the helper.

use std::path::Path;

/// The Rust sources of a crate directory next to this one.
fn sources(krate: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(krate)
        .join("src");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    assert!(!out.is_empty(), "no sources in {}", dir.display());
    out
}

#[test]
fn live_ram_is_copied_only_through_the_volatile_helper() {
    for krate in ["vmi-backend-qemu", "vmi-backend-xen"] {
        let files = sources(krate);
        for (path, text) in &files {
            for forbidden in [
                "copy_nonoverlapping",
                "ptr::copy(",
                "copy_from_nonoverlapping",
            ] {
                assert!(!text.contains(forbidden), "{path} uses {forbidden}");
            }
            // A slice over memory is only allowed for the xenstore value libxenstore returns
            // (malloc'd, owned by us, not guest RAM).
            for (i, line) in text.lines().enumerate() {
                if line.contains("from_raw_parts") {
                    assert!(
                        path.ends_with("handle.rs"),
                        "{path}:{}: a slice over raw memory: {line}",
                        i + 1
                    );
                }
            }
        }
        let all: String = files.iter().map(|(_, t)| t.as_str()).collect();
        assert!(
            all.contains("vmi_core::memory::copy_from_live(")
                && all.contains("vmi_core::memory::copy_to_live("),
            "{krate} does not copy through vmi-core's helpers"
        );
    }
}
