//! A process's own memory: its command line and environment (`vmi cmdline`, `vmi env`) and
//! raw reads at user addresses (`vmi read --pid`).
//!
//! Arguments and environment are where exec left them: `[mm->arg_start, mm->arg_end)` and
//! `[mm->env_start, mm->env_end)`, NUL-separated strings read through the process's own page
//! tables ([`process_space`]). The lengths are guest data, refused above
//! [`crate::comps::mm::MAX_USER_AREA_BYTES`] (6 MiB) before anything is allocated.
//!
//! A process may overwrite its arguments in place (`setproctitle`); `/proc` then follows the
//! text past `arg_end`. vmi reads only the area and splits it at NULs, which gives the same
//! strings for every process that did not, and the rewritten text (maybe with empty strings
//! where padding was) for one that did.

use vmi_core::{Session, Va};

use crate::analysis::ps::{find_process, process_space, user_mm};
use crate::comps::mm::{read_user_range, MmOffsets, MmReader};
use crate::error::LinuxError;
use crate::kernel::Kernel;

/// Which area of an `mm_struct`.
#[derive(Clone, Copy)]
enum Area {
    Args,
    Env,
}

/// Reads an area of `pid`'s memory.
fn read_area(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
    area: Area,
) -> Result<Vec<u8>, LinuxError> {
    let process = find_process(session, kernel, pid)?;
    let mm = user_mm(&process)?;
    let offsets = MmOffsets::resolve(kernel.profile())?;
    let mms = MmReader::new(kernel.memory(session), &offsets);
    let space = mms.address_space(mm)?;
    let range = match area {
        Area::Args => mms.args(mm)?,
        Area::Env => mms.env(mm)?,
    };
    read_user_range(session, space, range)
}

/// Splits a NUL-separated area into strings: the terminator of the last string is dropped
/// (so `"a\0b\0"` is `["a", "b"]` and `"a\0\0"` is `["a", ""]`, an empty last argument); bytes
/// that are not UTF-8 are replaced.
pub fn split_nul(bytes: &[u8]) -> Vec<String> {
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Splits an environment area into `(KEY, VALUE)` pairs at each entry's first `=`; an entry
/// without `=` is a key with an empty value; empty entries are skipped.
pub fn split_environ(bytes: &[u8]) -> Vec<(String, String)> {
    split_nul(bytes)
        .into_iter()
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (e, String::new()),
        })
        .collect()
}

/// The command line of process `pid`: its arguments, `argv[0]` first.
///
/// ```no_run
/// # fn demo(session: &vmi_core::Session, kernel: &vmi_os_linux::Kernel)
/// #     -> Result<(), vmi_os_linux::LinuxError> {
/// let args = vmi_os_linux::analysis::process_memory::cmdline(session, kernel, 1)?;
/// println!("{}", args.join(" "));
/// # Ok(()) }
/// ```
pub fn cmdline(session: &Session, kernel: &Kernel, pid: u32) -> Result<Vec<String>, LinuxError> {
    Ok(split_nul(&read_area(session, kernel, pid, Area::Args)?))
}

/// The environment of process `pid`, in order, as `(KEY, VALUE)` split at the first `=`.
pub fn environ(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<Vec<(String, String)>, LinuxError> {
    Ok(split_environ(&read_area(session, kernel, pid, Area::Env)?))
}

/// Fills `buf` from user address `va` of process `pid`, or fails naming the first address that
/// could not be read (for example a page that is not present or swapped out).
pub fn read_process(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
    va: Va,
    buf: &mut [u8],
) -> Result<(), LinuxError> {
    let process = find_process(session, kernel, pid)?;
    let space = process_space(session, kernel, &process)?;
    session.virtual_memory(space).read_exact(va, buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        assert_eq!(split_nul(b"a\0b\0"), ["a", "b"]);
        assert_eq!(split_nul(b"a\0\0"), ["a", ""]);
        assert_eq!(split_nul(b"a\0b"), ["a", "b"]);
        assert_eq!(split_nul(b"\0"), Vec::<String>::new());
        assert_eq!(split_nul(b""), Vec::<String>::new());
        assert_eq!(split_nul(b"two words\0\xff\0"), ["two words", "\u{fffd}"]);
        assert_eq!(
            split_environ(b"A=1\0B==2\0C\0\0D=\0"),
            [
                ("A".into(), "1".into()),
                ("B".into(), "=2".into()),
                ("C".into(), String::new()),
                ("D".into(), String::new())
            ]
        );
    }
}
