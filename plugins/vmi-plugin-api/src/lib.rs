//! The stable ABI between vmi and third-party analysis plugins (abi_stable): the only crate a
//! plugin depends on.
//!
//! Not yet implemented: filled by the plugins issue.
