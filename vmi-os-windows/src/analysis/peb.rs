//! A process's command line and environment: `PEB.ProcessParameters` →
//! `_RTL_USER_PROCESS_PARAMETERS.CommandLine` / `.Environment` (NUL-separated UTF-16
//! `NAME=VALUE` strings ending with an empty one).

use vmi_core::{Session, Va};

use crate::comps::unicode;
use crate::mem::GuestMemory;
use crate::{Kernel, WindowsError};

use super::modules::peb_pointer;
use super::ps::{find_process, Process};

/// The largest environment block read.
pub const MAX_ENVIRONMENT: usize = 1 << 20;

fn parameters(session: &Session, kernel: &Kernel, p: &Process) -> Result<Va, WindowsError> {
    if p.peb.raw() == 0 {
        return Err(WindowsError::NoPeb { pid: p.pid });
    }
    let mem = kernel.process_memory(session, p.dtb);
    let params = peb_pointer(&mem, p.peb, kernel.offsets().peb.process_parameters, true)?;
    if params.raw() == 0 {
        return Err(WindowsError::Corrupt {
            what: "PEB",
            at: p.peb,
            reason: "ProcessParameters is NULL".into(),
        });
    }
    Ok(params)
}

/// The raw command line of `process`.
pub fn command_line_of(
    session: &Session,
    kernel: &Kernel,
    p: &Process,
) -> Result<String, WindowsError> {
    let params = parameters(session, kernel, p)?;
    let mem = kernel.process_memory(session, p.dtb);
    let at = params
        .checked_add(kernel.offsets().peb.command_line)
        .ok_or(WindowsError::Corrupt {
            what: "_RTL_USER_PROCESS_PARAMETERS",
            at: params,
            reason: "CommandLine overflows".into(),
        })?;
    unicode::read(&mem, at)
}

/// The command line of process `pid`, split as `CommandLineToArgvW` splits it.
pub fn command_line(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<Vec<String>, WindowsError> {
    let p = find_process(session, kernel, pid)?;
    Ok(split_command_line(&command_line_of(session, kernel, &p)?))
}

/// The environment of process `pid`, as (name, value) pairs in block order.
pub fn environment(
    session: &Session,
    kernel: &Kernel,
    pid: u32,
) -> Result<Vec<(String, String)>, WindowsError> {
    let p = find_process(session, kernel, pid)?;
    environment_of(session, kernel, &p)
}

/// The environment of `process`.
pub fn environment_of(
    session: &Session,
    kernel: &Kernel,
    p: &Process,
) -> Result<Vec<(String, String)>, WindowsError> {
    let params = parameters(session, kernel, p)?;
    let mem = kernel.process_memory(session, p.dtb);
    let o = &kernel.offsets().peb;
    let block = mem.read_va(params.checked_add(o.environment).unwrap_or(params))?;
    if block.raw() == 0 {
        return Ok(Vec::new());
    }
    let size = o
        .environment_size
        .and_then(|off| mem.read_u64(params.checked_add(off)?).ok())
        .filter(|&s| s != 0)
        .map_or(MAX_ENVIRONMENT, |s| (s as usize).min(MAX_ENVIRONMENT));
    let mut bytes = vec![0u8; size & !1];
    let n = mem.read(block, &mut bytes)?;
    bytes.truncate(n & !1);
    Ok(parse_environment(&bytes))
}

/// `NAME=VALUE` pairs of a UTF-16 environment block, up to the empty string that ends it.
/// Entries starting with `=` (the per-drive current directories, `=C:=C:\`) keep their
/// leading `=` in the name.
pub fn parse_environment(block: &[u8]) -> Vec<(String, String)> {
    let units: Vec<u16> = block
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let mut out = Vec::new();
    for s in units.split(|&u| u == 0) {
        if s.is_empty() {
            break;
        }
        let text: String = char::decode_utf16(s.iter().copied())
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        let split_at = text
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == '=')
            .map(|(i, _)| i);
        match split_at {
            Some(i) => out.push((text[..i].to_owned(), text[i + 1..].to_owned())),
            None => out.push((text, String::new())),
        }
    }
    out
}

/// Splits a command line as `CommandLineToArgvW` does: the program name runs to the next
/// space outside quotes (backslashes literal); then 2n backslashes before a quote give n and
/// toggle quoting, 2n+1 give n and a literal quote, other backslashes are literal, and `""`
/// inside quotes is a literal quote.
pub fn split_command_line(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    // The program name.
    let mut name = String::new();
    let mut quoted = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && (c == ' ' || c == '\t') {
            break;
        } else {
            name.push(c);
        }
        i += 1;
    }
    args.push(name);
    loop {
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let mut arg = String::new();
        let mut quoted = false;
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' {
                let start = i;
                while i < chars.len() && chars[i] == '\\' {
                    i += 1;
                }
                let n = i - start;
                if i < chars.len() && chars[i] == '"' {
                    arg.extend(std::iter::repeat_n('\\', n / 2));
                    if n % 2 == 1 {
                        arg.push('"');
                        i += 1;
                    }
                } else {
                    arg.extend(std::iter::repeat_n('\\', n));
                }
                continue;
            }
            if c == '"' {
                if quoted && chars.get(i + 1) == Some(&'"') {
                    arg.push('"');
                    i += 2;
                    continue;
                }
                quoted = !quoted;
                i += 1;
                continue;
            }
            if !quoted && (c == ' ' || c == '\t') {
                break;
            }
            arg.push(c);
            i += 1;
        }
        args.push(arg);
    }
    if line.is_empty() {
        args.clear();
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    #[test]
    fn splits_like_windows() {
        assert_eq!(
            split_command_line(r#""C:\Program Files\a.exe" -x "two words" a\\"b c\"d"#),
            [r"C:\Program Files\a.exe", "-x", "two words", r#"a\b c"d"#]
        );
        assert_eq!(
            split_command_line(r"C:\Windows\notepad.exe"),
            [r"C:\Windows\notepad.exe"]
        );
        assert_eq!(
            split_command_line(r#"x a\\\\"b" c\d"#),
            ["x", r"a\\b", r"c\d"]
        );
        assert!(split_command_line("").is_empty());
    }

    #[test]
    fn parses_environment_blocks() {
        let block = utf16("=C:=C:\\Windows\0PATH=C:\\bin;D:\\x\0EMPTY=\0ODD\0\0garbage=1\0");
        assert_eq!(
            parse_environment(&block),
            [
                ("=C:".to_owned(), "C:\\Windows".to_owned()),
                ("PATH".to_owned(), "C:\\bin;D:\\x".to_owned()),
                ("EMPTY".to_owned(), String::new()),
                ("ODD".to_owned(), String::new()),
            ]
        );
        // A block without its terminator, cut mid-character.
        let mut cut = utf16("A=1\0B=2");
        cut.push(0x41);
        assert_eq!(parse_environment(&cut).len(), 2);
    }
}
