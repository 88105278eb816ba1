//! Linux guests: a zero-configuration profile found in the guest's own memory, and the
//! analyses users run first.
//!
//! - [`btf`]: a zero-copy, no-panic parser of the kernel's BTF type information.
//! - [`kallsyms`]: finding and decoding the kernel's symbol table in memory.
//! - [`discovery`]: [`discover`] builds a [`Kernel`] from kallsyms and BTF in memory.
//! - [`kernel`]: a [`Kernel`] bound to a session (profile + KASLR slide), what analyses take.
//! - [`os`]: [`LinuxOs`], the [`vmi_core::OsProfile`] registered for Linux guests, and
//!   [`cache`], the on-disk profile cache keyed by the kernel's banner.
//! - [`comps`], [`iter`], [`analysis`]: kernel structures, bounded walks, and the analyses.
//! - [`error`]: [`LinuxError`]; [`partial`]: results with warnings.

pub mod analysis;
pub mod btf;
pub mod cache;
pub mod comps;
pub mod discovery;
pub mod error;
pub mod iter;
pub mod kallsyms;
pub mod kernel;
pub mod os;
pub mod partial;

pub use discovery::discover;
pub use error::LinuxError;
pub use kernel::Kernel;
pub use os::{linux, LinuxOs};
pub use partial::Partial;
