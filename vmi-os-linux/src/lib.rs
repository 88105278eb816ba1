//! Linux guests: a zero-configuration profile found in the guest's own memory, and the
//! analyses users run first.
//!
//! - [`btf`]: a zero-copy, no-panic parser of the kernel's BTF type information.
//! - [`kallsyms`]: finding and decoding the kernel's symbol table in memory.
//! - [`discovery`]: [`discover`] builds a [`Kernel`] from kallsyms and BTF in memory.
//! - [`kernel`]: a [`Kernel`] bound to a session (profile + KASLR slide), what analyses take.
//! - [`kernel_space`]: the kernel's own page tables (`init_top_pgt`), from registers, VMCOREINFO
//!   or physical memory alone; the one PTI rule.
//! - [`os`]: [`LinuxOs`], the [`vmi_core::OsProfile`] registered for Linux guests, and
//!   [`cache`], the on-disk profile cache keyed by the kernel's banner.
//! - [`comps`], [`iter`], [`analysis`]: kernel structures, bounded walks, and the analyses.
//! - [`globals`]: types of global variables, which BTF does not describe.
//! - [`isf_export`]: a Volatility 3 ISF built from the guest itself.
//! - [`error`]: [`LinuxError`]; [`partial`]: results with warnings.

pub mod analysis;
pub mod btf;
pub mod cache;
pub mod comps;
pub mod discovery;
pub mod error;
pub mod globals;
pub mod isf_export;
pub mod iter;
pub mod kallsyms;
pub mod kernel;
pub mod kernel_space;
pub mod os;
pub mod partial;

pub use analysis::dmesg::dmesg;
pub use analysis::maps::{maps, Map};
pub use analysis::modules::{modules, Module};
pub use analysis::process_memory::{cmdline, environ, read_process};
pub use analysis::ps::{find_process, process_space, processes, threads, Process, Thread};
pub use comps::printk::LogRecord;
pub use discovery::discover;
pub use error::LinuxError;
pub use kernel::Kernel;
pub use os::{linux, LinuxOs};
pub use partial::Partial;
