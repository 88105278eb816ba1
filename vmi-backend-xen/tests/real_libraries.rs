//! The backend against Debian's real Xen 4.17 libraries (installed by `scripts/test`): every
//! function it uses resolves, and on a machine that is not a Xen dom0 opening a domain fails
//! cleanly. Reported ignored when the libraries are absent, failed if `$VMI_REQUIRE_FIXTURES`
//! is set.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use vmi_backend_xen::sys::Lib;
use vmi_backend_xen::{open_with, DomainSpec, LibrarySearch, XenError, XenLibraries};
use vmi_core::OpenOptions;

fn every_function_the_backend_uses_resolves_from_the_real_libraries() {
    if !support::real_libraries_present("real-library resolution") {
        return;
    }
    let libs = XenLibraries::load(&LibrarySearch::System).expect("loading the real libraries");
    let loaded: Vec<(Lib, &str)> = libs
        .loaded()
        .iter()
        .map(|l| (l.lib, l.file.as_str()))
        .collect();
    assert_eq!(
        loaded.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        Lib::ALL.to_vec()
    );
    // A Debian bookworm host (this one) has Xen 4.17's libxenctrl under its versioned soname.
    let (_, ctrl) = loaded[0];
    assert!(ctrl.starts_with("libxenctrl.so.4."), "{ctrl}");
    assert!(
        libs.xen_version().starts_with("Xen 4."),
        "{}",
        libs.xen_version()
    );
    assert_eq!(loaded[1].1, "libxenforeignmemory.so.1");
    assert_eq!(loaded[2].1, "libxenstore.so.4");
    assert_eq!(loaded[3].1, "libxenevtchn.so.1");

    // `load` resolved the whole table; check the list itself covers what the issue names,
    // and that each symbol lives in the library the table says (by resolving it alone).
    let symbols: BTreeSet<&str> = XenLibraries::symbols().map(|(_, s)| s).collect();
    for needed in [
        "xc_interface_open",
        "xc_domain_maximum_gpfn",
        "xc_domain_hvm_getcontext_partial",
        "xc_vcpu_getcontext",
        "xc_domain_pause",
        "xc_domain_unpause",
        "xenforeignmemory_map",
        "xenforeignmemory_unmap",
        "xs_directory",
        "xs_read",
        "xenevtchn_open",
        "xc_monitor_enable",
    ] {
        assert!(symbols.contains(needed), "{needed} is not in the table");
    }
    for (lib, symbol) in XenLibraries::symbols() {
        let file = &libs.loaded().iter().find(|l| l.lib == lib).unwrap().file;
        // SAFETY: the library is one of Xen's, already loaded above (initialisers ran).
        let handle = unsafe { libloading::Library::new(file) }.unwrap();
        let name = format!("{symbol}\0");
        // SAFETY: only the symbol's presence is checked; it is not called.
        let found = unsafe { handle.get::<*const std::ffi::c_void>(name.as_bytes()) };
        assert!(found.is_ok(), "{symbol} is not in {file}");
    }
    eprintln!(
        "{} functions resolved from {}",
        symbols.len(),
        loaded
            .iter()
            .map(|(_, f)| *f)
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn opening_a_domain_outside_dom0_fails_with_a_clear_error() {
    if !support::real_libraries_present("non-dom0 failure") {
        return;
    }
    if support::is_xen_domain() {
        return;
    }
    let libs = Arc::new(XenLibraries::load(&LibrarySearch::System).unwrap());
    let spec = DomainSpec::parse("web01").unwrap();
    let Err(err) = open_with(libs, &spec, &OpenOptions::default()) else {
        panic!("a domain opened outside dom0")
    };
    assert!(
        matches!(
            err,
            XenError::NotDom0 {
                call: "xc_interface_open",
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("not a Xen dom0"), "{msg}");
}

vmi_fixtures::real_guest_tests!(
    every_function_the_backend_uses_resolves_from_the_real_libraries,
    opening_a_domain_outside_dom0_fails_with_a_clear_error,
);
