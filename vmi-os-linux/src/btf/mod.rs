//! BTF, the kernel's own type information: a zero-copy, no-panic parser and its conversion
//! into a [`vmi_core::Profile`].
//!
//! A kernel built with `CONFIG_DEBUG_INFO_BTF` (every Debian kernel since 5.x) carries the
//! layout of all its types between the symbols `__start_BTF` and `__stop_BTF`. Read those
//! bytes from guest memory (their addresses come from kallsyms), then:
//!
//! ```
//! use vmi_os_linux::btf::{Btf, BtfBuilder};
//!
//! # let blob = {
//! #     let mut b = BtfBuilder::new();
//! #     let int = b.int("int", 4, true);
//! #     let anon = b.struct_("", 8, &[("pid", int, 0, 0), ("tgid", int, 32, 0)]);
//! #     b.struct_("task_struct", 16, &[("flags", int, 0, 0), ("", anon, 64, 0)]);
//! #     b.build()
//! # };
//! let btf = Btf::parse(&blob)?;
//! let profile = btf.to_profile();
//! // Fields of anonymous members are found directly.
//! assert_eq!(profile.field_offset("task_struct", "tgid").unwrap(), 12);
//! # Ok::<(), vmi_os_linux::btf::BtfError>(())
//! ```
//!
//! The format is Linux's `Documentation/bpf/btf.rst` (`include/uapi/linux/btf.h`):
//! - [`header`]: the header and the two sections it delimits.
//! - [`types`]: kinds and zero-copy views of type records.
//! - [`Btf`] (in `index`): the validated index of records and the queries (by id, by name,
//!   sizes, members with anonymous members flattened).
//! - `profile`: conversion into a [`vmi_core::Profile`]; `lazy`: the profile's type source,
//!   which converts a struct when it is first looked up.
//! - [`BtfBuilder`]: a writer of small blobs for synthetic fixtures and tests.
//! - [`BtfError`]: what can be wrong, and where.
//!
//! The blob is guest data: parsing bounds every read, the number of records is bounded by the
//! type section's length, every reference is checked once, and every chain a query follows
//! (typedef -> const -> typedef ..., arrays of arrays, anonymous members within anonymous
//! members) stops at [`MAX_DEPTH`] with [`BtfError::Cycle`].
//! Split BTF (kernel modules, whose ids continue the kernel's) is not handled yet.

mod builder;
mod error;
pub mod header;
mod index;
mod lazy;
mod profile;
pub mod types;

pub use builder::BtfBuilder;
pub use error::BtfError;
pub use header::Header;
pub use index::{Btf, Field, MAX_DEPTH, POINTER_SIZE};
pub use profile::ConversionReport;
pub use types::{Kind, Member, Type, TypeId};

#[cfg(test)]
mod tests;
