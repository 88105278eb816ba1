//! `syscall-count`: counts system calls per process on a live guest, through events (plugin
//! API 1.1).
//!
//! ```text
//! vmi --target qemu:/run/vm.qmp plugin run --count 2000 syscall-count -- [--pid N] [NAME...]
//! ```
//!
//! It subscribes to the entries of every system call (or of the named ones), counts each stop
//! by (pid, thread name, system call) and, when the run is over, answers with one row per
//! key, the most frequent first. Nothing in it is OS-specific: the host's OS profile decides
//! where system calls enter and names them.

use std::collections::HashMap;

use vmi_plugin_api::{
    Analysis, Cell, EventRecord, EventSummary, Flow, Host, PluginError, Subscription, Table,
};

/// Most distinct (pid, name, system call) keys kept: names come from the guest, and a guest
/// that renames its threads at will must not grow the table without bound. Stops of new keys
/// past it are counted in one `(other)` row.
pub const MAX_KEYS: usize = 1 << 16;

/// The usage line.
const USAGE: &str = "syscall-count [--pid N] [SYSCALL...]   (with `vmi plugin run --count N | \
                     --duration S`)";

/// What a row is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    pid: Option<u32>,
    name: String,
    syscall: String,
    nr: Option<u64>,
}

/// The plugin's state: its filter and the counts so far.
#[derive(Debug, Default)]
pub struct SyscallCount {
    pid: Option<u32>,
    counts: HashMap<Key, u64>,
    /// Stops of keys past [`MAX_KEYS`].
    overflow: u64,
    /// Stops of other processes (with `--pid`).
    skipped: u64,
}

impl SyscallCount {
    /// Counts one event (what [`Analysis::on_event`] does, without a host).
    pub fn count(&mut self, event: &EventRecord) {
        let pid = event.pid.into_option();
        if self.pid.is_some() && pid != self.pid {
            self.skipped += 1;
            return;
        }
        let key = Key {
            pid,
            name: event.name.as_str().to_owned(),
            syscall: event.syscall.as_str().to_owned(),
            nr: event.nr.into_option(),
        };
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
        } else if self.counts.len() < MAX_KEYS {
            self.counts.insert(key, 1);
        } else {
            self.overflow += 1;
        }
    }

    /// The table: pid, name, syscall, nr, count; the largest count first, then by pid and
    /// system call.
    pub fn table(&self) -> Table {
        let mut rows: Vec<(&Key, u64)> = self.counts.iter().map(|(k, n)| (k, *n)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut t = Table::new(&["pid", "name", "syscall", "nr", "count"]);
        for (k, n) in rows {
            t.push(vec![
                k.pid.map_or(Cell::Empty, Cell::from),
                Cell::text(k.name.as_str()),
                if k.syscall.is_empty() {
                    Cell::Empty
                } else {
                    Cell::text(k.syscall.as_str())
                },
                k.nr.and_then(|nr| i64::try_from(nr).ok())
                    .map_or(Cell::Empty, Cell::int),
                Cell::int(i64::try_from(n).unwrap_or(i64::MAX)),
            ]);
        }
        if self.overflow > 0 {
            t.push(vec![
                Cell::Empty,
                Cell::text("(other)"),
                Cell::Empty,
                Cell::Empty,
                Cell::int(i64::try_from(self.overflow).unwrap_or(i64::MAX)),
            ]);
        }
        t
    }
}

/// Parses `[--pid N] [SYSCALL...]`.
fn parse(args: &[String]) -> Result<(Option<u32>, Vec<String>), PluginError> {
    let mut pid = None;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pid" => {
                let v = it.next().ok_or_else(|| PluginError::usage(USAGE))?;
                pid = Some(
                    v.parse()
                        .map_err(|_| PluginError::usage(format!("bad pid `{v}`: {USAGE}")))?,
                );
            }
            s if s.starts_with('-') => {
                return Err(PluginError::usage(format!("unknown option `{s}`: {USAGE}")))
            }
            s => names.push(s.to_owned()),
        }
    }
    Ok((pid, names))
}

impl Analysis for SyscallCount {
    fn name(&self) -> &str {
        "syscall-count"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn description(&self) -> &str {
        "System calls per process on a live guest, counted at their entry (events)"
    }

    fn usage(&self) -> &str {
        USAGE
    }

    fn subscriptions(
        &mut self,
        _host: &Host<'_>,
        args: &[String],
    ) -> Result<Vec<Subscription>, PluginError> {
        let (pid, names) = parse(args)?;
        self.pid = pid;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(vec![Subscription::syscalls(&names)])
    }

    fn on_event(&mut self, _host: &Host<'_>, event: &EventRecord) -> Result<Flow, PluginError> {
        self.count(event);
        Ok(Flow::Continue)
    }

    fn finish(&mut self, _host: &Host<'_>, _summary: &EventSummary) -> Result<Table, PluginError> {
        Ok(self.table())
    }
}

vmi_plugin_api::export_plugin!(SyscallCount::default);

#[cfg(test)]
mod tests {
    use super::*;
    use vmi_plugin_api::abi_stable::std_types::ROption;

    fn event(pid: u32, name: &str, syscall: &str, nr: u64) -> EventRecord {
        EventRecord {
            event: "syscall".into(),
            pid: ROption::RSome(pid),
            name: name.into(),
            syscall: syscall.into(),
            nr: ROption::RSome(nr),
            ..EventRecord::default()
        }
    }

    #[test]
    fn counts_per_process_and_call_sorted_by_count() {
        let mut c = SyscallCount::default();
        for _ in 0..3 {
            c.count(&event(7, "loop", "openat", 257));
        }
        c.count(&event(7, "loop", "close", 3));
        c.count(&event(1, "init", "openat", 257));
        c.count(&event(1, "init", "openat", 257));
        let t = c.table();
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0][0], Cell::int(7));
        assert_eq!(t.rows[0][2], Cell::text("openat"));
        assert_eq!(t.rows[0][4], Cell::int(3));
        assert_eq!(t.rows[1][0], Cell::int(1));
        assert_eq!(t.rows[2][4], Cell::int(1));
    }

    #[test]
    fn a_pid_filter_skips_the_others() {
        let mut c = SyscallCount {
            pid: Some(7),
            ..SyscallCount::default()
        };
        c.count(&event(7, "loop", "openat", 257));
        c.count(&event(8, "sh", "read", 0));
        assert_eq!(c.table().rows.len(), 1);
        assert_eq!(c.skipped, 1);
    }

    #[test]
    fn keys_are_bounded() {
        let mut c = SyscallCount::default();
        for i in 0..(MAX_KEYS as u32 + 10) {
            c.count(&event(i, "x", "getpid", 39));
        }
        assert_eq!(c.counts.len(), MAX_KEYS);
        let t = c.table();
        assert_eq!(t.rows.last().unwrap()[1], Cell::text("(other)"));
        assert_eq!(t.rows.last().unwrap()[4], Cell::int(10));
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse(&["--pid".into(), "5".into(), "openat".into()]).unwrap(),
            (Some(5), vec!["openat".to_owned()])
        );
        assert!(parse(&["--pid".into()]).is_err());
        assert!(parse(&["--bogus".into()]).is_err());
    }
}
