//! Pause and resume failures are control errors naming the domain, not vCPU register errors,
//! against `vmi-fake-xen` with its fault injection (`VMI_FAKE_XEN_FAIL`). One test in its own
//! process: it changes the environment the fake reads at each call.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use vmi_backend_xen::{open_with, DomainSpec, LibrarySearch, PauseGuard, XenLibraries};
use vmi_core::error::ControlError;
use vmi_core::OpenOptions;

#[test]
fn pause_and_resume_failures_name_the_domain_and_the_call() {
    let Some(guest) = vmi_fixtures::guests().into_iter().next() else {
        return;
    };
    std::env::set_var("VMI_FAKE_XEN_DUMP", guest.elf());
    std::env::set_var("VMI_FAKE_XEN_NAME", "web01");
    std::env::set_var("VMI_FAKE_XEN_DOMID", "7");
    let libs =
        Arc::new(XenLibraries::load(&LibrarySearch::Dir(support::fake_library_dir())).unwrap());
    let target = open_with(
        libs,
        &DomainSpec::parse("web01").unwrap(),
        &OpenOptions { write: false },
    )
    .unwrap();
    let control = target.control.clone().unwrap();

    std::env::set_var("VMI_FAKE_XEN_FAIL", "pause");
    let Err(e) = PauseGuard::new(control.clone()) else {
        panic!("the pause was made to fail")
    };
    let text = e.to_string();
    eprintln!("{text}");
    assert!(matches!(e, ControlError::Pause { .. }), "{text}");
    assert!(
        text.starts_with("pausing Xen domain 7 (web01): xc_domain_pause:"),
        "{text}"
    );
    assert!(!text.contains("vCPU"), "{text}");

    std::env::set_var("VMI_FAKE_XEN_FAIL", "unpause");
    control.pause().unwrap();
    let e = control.resume().unwrap_err();
    let text = e.to_string();
    eprintln!("{text}");
    assert!(matches!(e, ControlError::Resume { .. }), "{text}");
    assert!(
        text.starts_with(
            "resuming Xen domain 7 (web01) (it may still be paused): xc_domain_unpause:"
        ),
        "{text}"
    );
    std::env::set_var("VMI_FAKE_XEN_FAIL", "");
    control.resume().unwrap();
}
