//! Analyses of a Windows kernel: processes and threads ([`ps`]), kernel and process modules
//! ([`modules`]), command lines and environments ([`peb`]), memory regions ([`vad`]); FILETIME
//! conversions in [`time`].

pub mod modules;
pub mod peb;
pub mod ps;
pub mod time;
pub mod vad;

pub use modules::{kernel_modules, process_modules, Module};
pub use peb::{command_line, environment, split_command_line};
pub use ps::{find_process, process_space, processes, threads, Process, Thread};
pub use vad::{regions, Vad};
