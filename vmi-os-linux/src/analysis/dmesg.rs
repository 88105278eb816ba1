//! `vmi dmesg`: the kernel log, from the printk ring buffer (5.10+; see
//! [`crate::comps::printk`]).
//!
//! The records come oldest first with their sequence numbers, timestamps and levels; the text
//! has no `[    0.000000] ` prefix (that is added by the console and `dmesg`). Records that
//! were not printed on a console (levels above the console log level, or everything after
//! `kernel.printk` was lowered) are here too.
//!
//! The ring is guest data: at most [`MAX_RECORDS`](crate::comps::printk::MAX_RECORDS) records
//! and [`MAX_TEXT_BYTES`](crate::comps::printk::MAX_TEXT_BYTES) bytes of text
//! are kept, the newest ones, with a warning when a ring holds more (a flood of 4 Mi empty
//! records is 262,144 records and 12 MiB here, read in 30 ms).

use vmi_core::Session;

pub use crate::comps::printk::LogRecord;
use crate::comps::printk::{records, PrintkOffsets, PRB_SYMBOL};
use crate::error::LinuxError;
use crate::kernel::Kernel;
use crate::partial::Partial;

/// The kernel log, oldest record first.
///
/// ```no_run
/// # fn demo(session: &vmi_core::Session) -> Result<(), vmi_os_linux::LinuxError> {
/// let kernel = vmi_os_linux::discover(session)?;
/// let log = vmi_os_linux::analysis::dmesg::dmesg(session, &kernel)?;
/// for r in &log.items {
///     let (s, us) = (r.timestamp_ns / 1_000_000_000, r.timestamp_ns % 1_000_000_000 / 1000);
///     for line in r.text.lines() {
///         println!("[{s:5}.{us:06}] {line}");
///     }
/// }
/// # Ok(()) }
/// ```
pub fn dmesg(session: &Session, kernel: &Kernel) -> Result<Partial<LogRecord>, LinuxError> {
    let offsets = PrintkOffsets::resolve(kernel.profile())?;
    let mem = kernel.memory(session);
    // `prb` is a `struct printk_ringbuffer *`: the static ring at boot, a larger one once
    // `log_buf_len=` or many CPUs made the kernel allocate it.
    let rb = mem.read_va(kernel.symbol(PRB_SYMBOL)?)?;
    records(&mem, &offsets, rb)
}
