//! Hostile socket tables (written below).
fn main() {}
