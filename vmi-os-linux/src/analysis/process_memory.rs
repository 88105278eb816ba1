//! A process's own memory: its command line and environment (`vmi cmdline`, `vmi env`) and
//! raw reads at user addresses (`vmi read --pid`).
//!
//! Arguments and environment are where exec left them: `[mm->arg_start, mm->arg_end)` and
//! `[mm->env_start, mm->env_end)`, NUL-separated strings read through the process's own page
//! tables ([`process_space`]). The lengths are guest data, refused above
//! [`crate::comps::mm::MAX_USER_AREA_BYTES`] (6 MiB) before anything is allocated.
//!
//! A process may overwrite its arguments in place to set its title (`setproctitle`: sshd,
//! postgres, nginx, systemd's workers), writing past `arg_end` into the environment area.
//! [`cmdline`] follows the kernel's rule for `/proc/PID/cmdline` ([`TitleRule`]), so it shows
//! what `ps` shows.

use vmi_core::{AddressSpace, MemoryError, Session, Va};

use crate::analysis::ps::{find_process, process_space, user_mm};
use crate::comps::mm::{read_user_range, MmOffsets, MmReader, UserRange, MAX_USER_AREA_BYTES};
use crate::error::LinuxError;
use crate::kernel::Kernel;

/// Runs `f` on `pid`'s `mm_struct` (a reader of it, its address, the process address space).
fn with_mm<R>(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
    f: impl FnOnce(&MmReader<'_>, Va, AddressSpace) -> Result<R, LinuxError>,
) -> Result<R, LinuxError> {
    let process = find_process(session, kernel, pid)?;
    let mm = user_mm(&process)?;
    let offsets = MmOffsets::resolve(kernel.profile())?;
    let mms = MmReader::new(kernel.memory(session), &offsets);
    let space = mms.address_space(mm)?;
    f(&mms, mm, space)
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
    let bytes = with_mm(session, kernel, pid, |mms, mm, space| {
        let vm = session.virtual_memory(space);
        TitleRule::new(mms.args(mm)?, mms.env(mm)?).read(|va, buf| vm.read(va, buf))
    })?;
    Ok(split_nul(&bytes))
}

/// How `/proc/PID/cmdline` reads a process's arguments (`get_mm_cmdline` in the kernel's
/// `fs/proc/base.c`): when the last byte of the argument area is not NUL, the process has
/// rewritten its title over argv, maybe running on into the environment area; the title is
/// then the text from `arg_start` to its first NUL, within one page and within the end of the
/// environment (or of the arguments, when the environment does not directly follow them).
/// Otherwise the arguments are exactly `[arg_start, arg_end)`.
#[derive(Debug, Clone, Copy)]
pub struct TitleRule {
    args: UserRange,
    /// Where a rewritten title may run to.
    limit: Va,
}

/// The most a rewritten title shows: the kernel reads one page of it.
const TITLE_MAX_BYTES: u64 = 4096;

impl TitleRule {
    /// The rule for a process whose `mm_struct` names these areas.
    pub fn new(args: UserRange, env: UserRange) -> Self {
        let env_follows = env.start == args.end && env.end >= env.start;
        Self {
            args,
            limit: if env_follows { env.end } else { args.end },
        }
    }

    /// The bytes `/proc/PID/cmdline` would give, read with `read(va, buf)` (bytes read, stopping
    /// at the first unreadable page; an error if none could be read, which is returned: an
    /// argument area whose first page is unmapped is corrupt, or swapped out).
    pub fn read(
        &self,
        mut read: impl FnMut(Va, &mut [u8]) -> Result<usize, MemoryError>,
    ) -> Result<Vec<u8>, LinuxError> {
        let arg_len = self.args.checked_len(MAX_USER_AREA_BYTES)?;
        if arg_len == 0 {
            return Ok(Vec::new());
        }
        let last = Va::new(self.args.end.raw().wrapping_sub(1));
        let mut byte = [0u8];
        let rewritten = read(last, &mut byte).is_ok_and(|n| n == 1) && byte[0] != 0;
        if !rewritten {
            let mut buf = vec![0u8; arg_len];
            let n = read(self.args.start, &mut buf)?;
            buf.truncate(n);
            return Ok(buf);
        }
        let span = self.limit.offset_from(self.args.start).unwrap_or(0);
        let mut buf = vec![0u8; span.min(TITLE_MAX_BYTES) as usize];
        let n = read(self.args.start, &mut buf)?;
        buf.truncate(n);
        if let Some(nul) = buf.iter().position(|&b| b == 0) {
            buf.truncate(nul + 1);
        }
        Ok(buf)
    }
}

/// The environment of process `pid`, in order, as `(KEY, VALUE)` split at the first `=`.
pub fn environ(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<Vec<(String, String)>, LinuxError> {
    Ok(split_environ(&with_mm(
        session,
        kernel,
        pid,
        |mms, mm, space| read_user_range(session, space, mms.env(mm)?),
    )?))
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

    /// A process memory of `bytes` at `base`, read as [`TitleRule::read`] expects.
    fn memory(
        base: u64,
        bytes: &[u8],
    ) -> impl FnMut(Va, &mut [u8]) -> Result<usize, MemoryError> + '_ {
        move |va, buf| {
            let unmapped = MemoryError::OutOfRange {
                pa: vmi_core::Pa::new(va.raw()),
                len: buf.len() as u64,
            };
            let Some(src) = va
                .raw()
                .checked_sub(base)
                .and_then(|off| bytes.get(usize::try_from(off).ok()?..))
                .filter(|s| !s.is_empty())
            else {
                return Err(unmapped);
            };
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            Ok(n)
        }
    }

    fn range(start: u64, end: u64) -> UserRange {
        UserRange {
            mm: Va::new(0xffff_8880_0000_0000),
            start: Va::new(start),
            end: Va::new(end),
        }
    }

    #[test]
    fn plain_arguments_stop_at_arg_end() {
        let mem = b"ls\0-l\0HOME=/\0";
        let rule = TitleRule::new(range(0x1000, 0x1006), range(0x1006, 0x100d));
        assert_eq!(rule.read(memory(0x1000, mem)).unwrap(), b"ls\0-l\0");
    }

    #[test]
    fn a_rewritten_title_runs_into_the_environment() {
        // sshd's "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups" over a short argv.
        let mut mem = b"sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups".to_vec();
        mem.extend_from_slice(&[0; 8]);
        let rule = TitleRule::new(range(0x1000, 0x1012), range(0x1012, 0x1040));
        assert_eq!(
            split_nul(&rule.read(memory(0x1000, &mem)).unwrap()),
            ["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"]
        );
    }

    #[test]
    fn a_title_is_bounded_by_the_areas_and_a_page() {
        let mem = vec![b'x'; 0x3000];
        // The environment does not follow the arguments: the title stops at arg_end.
        let rule = TitleRule::new(range(0x1000, 0x1010), range(0x2000, 0x2100));
        assert_eq!(rule.read(memory(0x1000, &mem)).unwrap().len(), 0x10);
        // It does: the title runs to env_end, but at most one page.
        let rule = TitleRule::new(range(0x1000, 0x1010), range(0x1010, 0x1100));
        assert_eq!(rule.read(memory(0x1000, &mem)).unwrap().len(), 0x100);
        let rule = TitleRule::new(range(0x1000, 0x1010), range(0x1010, 0x3000));
        assert_eq!(rule.read(memory(0x1000, &mem)).unwrap().len(), 4096);
        // Reversed or empty areas give nothing.
        let rule = TitleRule::new(range(0x1010, 0x1010), range(0x1010, 0x1100));
        assert!(rule.read(memory(0x1000, &mem)).unwrap().is_empty());
        assert!(TitleRule::new(range(0x1010, 0x1000), range(0, 0))
            .read(memory(0x1000, &mem))
            .is_err());
    }

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
