//! Finding the kernel and its symbol table in guest memory alone: no System.map, no debug
//! kernel.
//!
//! 1. [`KernelImage::locate`] ([`locate`]): the kernel image in the x86-64 KASLR range, its
//!    virtual and physical slides, `linux_banner` ([`banner`]), and one copy of `.rodata`.
//! 2. [`Kallsyms::find`]: the kallsyms tables found by their shape in those bytes
//!    ([`TableLayout`], [`scan`]) and decoded ([`decode`]) into names, types and runtime
//!    addresses ([`Kallsyms`], [`symbols`]); [`Kallsyms::to_profile_symbols`] feeds a
//!    [`vmi_core::Profile`] at link-time addresses.
//! 3. [`KallsymsError`] ([`error`]): what was not found, or what contradicts what, and where.
//!
//! Supported: 64-bit kernels with base-relative kallsyms (`CONFIG_KALLSYMS_BASE_RELATIVE`, the
//! only kind since 6.12) and compressed names, in the table orders of Linux up to 6.3 (with or
//! without `kallsyms_seqs_of_names`) and of 6.4 and later, with or without `--absolute-percpu`.
//! Verified on real Debian 6.1 and 6.12 guests.
//!
//! ```no_run
//! use vmi_backend_file as _;
//! use vmi_arch_x86 as _;
//! use vmi_os_linux::kallsyms::KernelImage;
//!
//! let session = vmi_core::Session::open("memory.elf", &Default::default())?;
//! let image = KernelImage::locate(&session)?;
//! println!("{} at {} (slide {:#x})", image.release(), image.text(), image.virtual_slide());
//! let symbols = image.kallsyms()?;
//! let init_task = symbols.lookup("init_task").expect("every kernel has init_task");
//! let profile = symbols.to_profile(image.virtual_slide());
//! assert_eq!(
//!     profile.symbol_address("init_task")?,
//!     init_task.wrapping_sub(image.virtual_slide() as u64)
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod banner;
mod bytes;
pub mod decode;
pub mod error;
pub mod locate;
pub mod scan;
pub mod symbols;

pub use banner::find_banner;
pub use error::KallsymsError;
pub use locate::{ImageRegion, KernelImage};
pub use scan::{SeqsOfNames, TableLayout, TableOrder, MAX_SYMBOLS};
pub use symbols::{Kallsyms, KernelSymbol};
