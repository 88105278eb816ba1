//! Linux guests: a zero-configuration profile found in the guest's own memory (kallsyms,
//! BTF) and the analyses users run first (processes, modules, memory maps, kernel log).
//!
//! Not yet implemented: this crate is filled by the Linux issue. Until then `vmi` reports no
//! OS for Linux guests, and `read`/`translate` work on physical addresses and vCPU CR3s.
