//! `syscall-check`: every entry of the kernel's `sys_call_table` must point into kernel text
//! (`[_stext, _etext)`); an entry that does not is flagged as hooked. Each entry is named by
//! the kernel symbol it points to.
//!
//! The table's length is not in kallsyms: it is the distance from `sys_call_table` to the next
//! kernel symbol (an upper bound), less trailing zero words (alignment padding); `--count N`
//! overrides it.

use vmi_plugin_api::{Analysis, Cell, Host, PluginError, Space, Table};

/// Most entries read (x86-64 Linux has under 500 system calls).
const MAX_ENTRIES: u64 = 4096;

/// The plugin.
#[derive(Debug, Default)]
pub struct SyscallCheck;

/// One checked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index in the table (the system call number).
    pub index: u64,
    /// The pointer found there.
    pub target: u64,
    /// `symbol+0xoff` of the target, if any symbol is at or below it.
    pub symbol: Option<String>,
    /// Whether the target is outside kernel text.
    pub hooked: bool,
}

/// Checks the table.
pub fn check(host: &Host<'_>, count: Option<u64>) -> Result<Vec<Entry>, PluginError> {
    let table = host.symbol("sys_call_table")?;
    let stext = host.symbol("_stext")?;
    let etext = host.symbol("_etext")?;
    let count = match count {
        Some(n) => n.min(MAX_ENTRIES),
        None => {
            let extent = host
                .symbol_at(table)
                .filter(|s| s.address == table)
                .map(|s| s.extent)
                .unwrap_or(0);
            if extent == 0 {
                return Err(PluginError::target(
                    "the length of sys_call_table is unknown (no symbol follows it): pass --count N",
                ));
            }
            (extent / 8).min(MAX_ENTRIES)
        }
    };
    let mut raw = vec![0u8; usize::try_from(count * 8).unwrap_or(0)];
    host.read(Space::Kernel, table, &mut raw)?;
    let mut words: Vec<u64> = raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    while words.last() == Some(&0) {
        words.pop();
    }
    Ok(words
        .iter()
        .zip(0u64..)
        .map(|(&target, index)| Entry {
            index,
            target,
            symbol: host.symbol_at(target).map(|s| {
                let off = target - s.address;
                if off == 0 {
                    s.name.to_string()
                } else {
                    format!("{}+{off:#x}", s.name)
                }
            }),
            hooked: !(stext..etext).contains(&target),
        })
        .collect())
}

impl Analysis for SyscallCheck {
    fn name(&self) -> &str {
        "syscall-check"
    }
    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }
    fn description(&self) -> &str {
        "Linux: flags sys_call_table entries that point outside kernel text, naming every target"
    }
    fn usage(&self) -> &str {
        "syscall-check [--hooked] [--count N]   (--hooked: only the flagged entries)"
    }
    fn run(&self, host: &Host<'_>, args: &[String]) -> Result<Table, PluginError> {
        let mut only_hooked = false;
        let mut count = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--hooked" => only_hooked = true,
                "--count" => {
                    let n = it.next().and_then(|n| n.parse().ok());
                    count = Some(n.ok_or_else(|| PluginError::usage(self.usage()))?);
                }
                _ => return Err(PluginError::usage(self.usage())),
            }
        }
        let mut t = Table::new(&["index", "target", "symbol", "status"]);
        for e in check(host, count)? {
            if only_hooked && !e.hooked {
                continue;
            }
            t.push(vec![
                Cell::int(i64::try_from(e.index).unwrap_or(i64::MAX)),
                Cell::address(e.target),
                e.symbol.map_or(Cell::Empty, Cell::text),
                Cell::text(if e.hooked { "HOOKED" } else { "ok" }),
            ]);
        }
        Ok(t)
    }
}

vmi_plugin_api::export_plugin!(SyscallCheck::default);
