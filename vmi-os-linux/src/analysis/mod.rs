//! The analyses users run first, each a library API behind a `vmi` command.

pub mod creds;
pub mod dmesg;
pub mod integrity;
pub mod lsof;
pub mod maps;
pub mod modules;
pub mod mounts;
pub mod namespaces;
pub mod page_cache;
pub mod process_memory;
pub mod ps;
pub mod sockets;
pub mod trace;
