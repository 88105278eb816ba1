//! `scan`: finds a byte string or a regular expression in a process's or the kernel's virtual
//! memory, reporting each match's virtual and physical address.
//!
//! A process is scanned over its memory map (every region); the kernel over its image
//! (`[_text, _end)`) or an explicit `--range`. Memory is read page by page through the host, so
//! unmapped pages end a contiguous run instead of failing the scan; matches may span pages
//! within a run.

use regex::bytes::Regex;
use vmi_plugin_api::{Analysis, Cell, Host, PluginError, Space, Table};

/// Bytes scanned at once (runs longer than this are scanned in overlapping windows).
const WINDOW: usize = 1 << 20;
/// Longest match reported whole across a window boundary.
const OVERLAP: usize = 4096;
/// Default cap on matches.
const DEFAULT_MAX: usize = 1000;
/// Most bytes shown of a match.
const SHOWN: usize = 64;

/// The plugin.
#[derive(Debug, Default)]
pub struct Scan;

/// One match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Virtual address.
    pub va: u64,
    /// Physical address, when it translates.
    pub pa: Option<u64>,
    /// The matched bytes (at most 64).
    pub bytes: Vec<u8>,
}

struct Options {
    space: Space,
    regex: Regex,
    max: usize,
    range: Option<(u64, u64)>,
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse(args: &[String], usage: &str) -> Result<Options, PluginError> {
    let bad = || PluginError::usage(usage);
    let (mut space, mut is_regex, mut is_hex, mut max, mut range) =
        (Space::Kernel, false, false, DEFAULT_MAX, None);
    let mut pattern = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pid" => {
                space = Space::Process(it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?)
            }
            "--kernel" => space = Space::Kernel,
            "--regex" => is_regex = true,
            "--hex" => is_hex = true,
            "--max" => max = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?,
            "--range" => {
                let start = it.next().and_then(|s| parse_num(s)).ok_or_else(bad)?;
                let len = it.next().and_then(|s| parse_num(s)).ok_or_else(bad)?;
                range = Some((start, start.checked_add(len).ok_or_else(bad)?));
            }
            p if pattern.is_none() => pattern = Some(p.to_owned()),
            _ => return Err(bad()),
        }
    }
    let pattern = pattern.ok_or_else(bad)?;
    let source = if is_regex {
        pattern
    } else if is_hex {
        let digits: String = pattern.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() % 2 != 0 || digits.is_empty() {
            return Err(PluginError::usage(
                "--hex wants an even number of hex digits",
            ));
        }
        let mut s = String::from("(?-u)");
        for i in (0..digits.len()).step_by(2) {
            let b = u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| PluginError::usage("--hex wants hex digits"))?;
            s.push_str(&format!("\\x{b:02x}"));
        }
        s
    } else {
        regex::escape(&pattern)
    };
    let regex = Regex::new(&source).map_err(|e| PluginError::usage(format!("bad pattern: {e}")))?;
    Ok(Options {
        space,
        regex,
        max,
        range,
    })
}

/// Scans `[start, end)` of `space`, appending matches to `out` (at most `max`).
pub fn scan_range(
    host: &Host<'_>,
    space: Space,
    regex: &Regex,
    (start, end): (u64, u64),
    max: usize,
    out: &mut Vec<Match>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    let mut va = start;
    let mut page = [0u8; 4096];
    while va < end && out.len() < max {
        let page_end = (va | 0xfff).saturating_add(1).min(end);
        let n = usize::try_from(page_end - va).unwrap_or(0);
        match host.read(space, va, &mut page[..n]) {
            Ok(()) => {
                if buf.is_empty() {
                    buf_start = va;
                }
                buf.extend_from_slice(&page[..n]);
                if buf.len() >= WINDOW + OVERLAP {
                    flush(
                        host,
                        space,
                        regex,
                        &mut buf,
                        &mut buf_start,
                        OVERLAP,
                        max,
                        out,
                    );
                }
            }
            Err(_) => flush(host, space, regex, &mut buf, &mut buf_start, 0, max, out),
        }
        if page_end == u64::MAX {
            break;
        }
        va = page_end;
    }
    flush(host, space, regex, &mut buf, &mut buf_start, 0, max, out);
}

/// Reports the matches that start before the last `keep` bytes of `buf`, then drops all but
/// those bytes (kept for matches that cross into the next window).
#[allow(clippy::too_many_arguments)]
fn flush(
    host: &Host<'_>,
    space: Space,
    regex: &Regex,
    buf: &mut Vec<u8>,
    buf_start: &mut u64,
    keep: usize,
    max: usize,
    out: &mut Vec<Match>,
) {
    let limit = buf.len().saturating_sub(keep);
    for m in regex.find_iter(buf) {
        if m.start() >= limit || out.len() >= max {
            break;
        }
        let va = *buf_start + m.start() as u64;
        out.push(Match {
            va,
            pa: host.translate(space, va).ok().map(|t| t.pa),
            bytes: m.as_bytes()[..m.len().min(SHOWN)].to_vec(),
        });
    }
    buf.drain(..limit);
    *buf_start += limit as u64;
}

fn show(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

impl Analysis for Scan {
    fn name(&self) -> &str {
        "scan"
    }
    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }
    fn description(&self) -> &str {
        "Finds a byte string or regex in a process's or the kernel's virtual memory"
    }
    fn usage(&self) -> &str {
        "scan [--pid N | --kernel] [--range START LEN] [--regex | --hex] [--max N] PATTERN"
    }
    fn run(&self, host: &Host<'_>, args: &[String]) -> Result<Table, PluginError> {
        let o = parse(args, self.usage())?;
        let ranges: Vec<(u64, u64, String)> = match (o.range, o.space) {
            (Some((s, e)), _) => vec![(s, e, String::new())],
            (None, Space::Process(pid)) => host
                .regions(pid)?
                .into_iter()
                .map(|r| (r.start, r.end, r.path.to_string()))
                .collect(),
            (None, Space::Kernel) => {
                vec![(host.symbol("_text")?, host.symbol("_end")?, String::new())]
            }
        };
        let mut found = Vec::new();
        let mut t = Table::new(&["va", "pa", "where", "match"]);
        for (start, end, path) in ranges {
            let before = found.len();
            scan_range(host, o.space, &o.regex, (start, end), o.max, &mut found);
            for m in &found[before..] {
                let place = if o.space == Space::Kernel {
                    host.symbol_at(m.va)
                        .map(|s| format!("{}+{:#x}", s.name, m.va - s.address))
                        .unwrap_or_default()
                } else {
                    path.clone()
                };
                t.push(vec![
                    Cell::address(m.va),
                    m.pa.map_or(Cell::Empty, Cell::address),
                    Cell::text(place),
                    Cell::text(show(&m.bytes)),
                ]);
            }
        }
        Ok(t)
    }
}

vmi_plugin_api::export_plugin!(Scan::default);
