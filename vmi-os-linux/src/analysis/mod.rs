//! The analyses users run first, each a library API behind a `vmi` command.

pub mod dmesg;
pub mod maps;
pub mod modules;
pub mod process_memory;
pub mod ps;
