//! Being written.

mod common;

fn placeholder() {
    for _g in common::guests() {}
}

vmi_fixtures::real_guest_tests!(placeholder);
