//! Windows guests (x86-64, Windows 10 and 11): ntoskrnl discovery, the PDB GUID to symbol
//! table, and analyses (processes, threads, modules, PEB, VADs).
//!
//! No Windows guest can run on the machines this project is built on: this crate is proven on
//! synthetic guests built from the real Volatility 3 symbol tables of four real ntoskrnl builds
//! (Windows 10 1809, 2004, 20H2 and Windows 11 21H2).
//!
//! - [`pe`]: a zero-copy, no-panic PE/CodeView parser.
//! - [`symbols`]: PDB identity, the symbol search path, subset tables and their cache.
//! - [`discovery`]: the kernel DTB, the nt base, KDBG, KVA shadow and the build.
//! - [`kernel`]: the discovered kernel ([`Kernel`]) and its resolved offsets.
//! - [`iter`]: bounded walks (LIST_ENTRY lists, AVL trees).
//! - [`analysis`]: processes, threads, modules, PEB, VADs, process address spaces.
//! - [`os`]: the [`WindowsOs`] profile and its self-registering detector.

pub mod analysis;
pub mod comps;
pub mod discovery;
mod error;
pub mod iter;
pub mod kernel;
pub mod mem;
pub mod os;
pub mod pe;
pub mod symbols;

pub use error::WindowsError;
pub use kernel::Kernel;
pub use os::WindowsOs;
pub use symbols::PdbId;

/// The items of a walk over guest data and the problems it met.
pub type Partial<T> = vmi_core::Partial<T, WindowsError>;
