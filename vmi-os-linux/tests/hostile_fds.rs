//! Hostile descriptor tables (being written).

fn placeholder() {}

vmi_fixtures::real_guest_tests!(placeholder);
