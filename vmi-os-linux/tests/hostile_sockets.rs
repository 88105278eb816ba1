//! Hostile socket tables: real dumps with a hash chain that loops, an absurd Unix address
//! length and bucket counts of 2^32 patched in memory (an overlay, no file written). The
//! analysis must end, without a panic, listing what it could read with a warning, and must
//! not size an allocation by guest data.

mod common;
mod hostile;

use std::collections::BTreeSet;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use common::Guest;
use hostile::{largest_alloc, Patches};
use vmi_core::os::{Detail, Socket};
use vmi_core::{PhysicalMemory, Session, Va, VcpuRegisters};
use vmi_os_linux::analysis::sockets::sockets;
use vmi_os_linux::{Kernel, LinuxError};

/// A real guest, discovered once, and what it lists when intact.
struct Base {
    guest: Guest,
    memory: Arc<dyn PhysicalMemory>,
    registers: Option<Arc<dyn VcpuRegisters>>,
    session: Session,
    kernel: Kernel,
    intact: Vec<Socket>,
}

impl hostile::KernelView for Base {
    fn session(&self) -> &Session {
        &self.session
    }

    fn space(&self) -> vmi_core::AddressSpace {
        self.kernel.space()
    }
}

impl Base {
    fn off(&self, ty: &str, field: &str) -> u64 {
        self.kernel.profile().field_offset(ty, field).unwrap()
    }

    fn read_va(&self, va: Va) -> Va {
        self.kernel.memory(&self.session).read_va(va).unwrap()
    }

    fn patched(&self, patches: &Patches) -> Session {
        hostile::patched_session(&self.memory, &self.registers, &patches.0)
    }

    /// The first intact socket that `keep` selects.
    fn socket(&self, what: &str, keep: impl Fn(&Socket) -> bool) -> &Socket {
        self.intact
            .iter()
            .find(|s| keep(s))
            .unwrap_or_else(|| panic!("{}: no {what} socket", self.guest.name))
    }
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        common::guests()
            .into_iter()
            .map(|guest| {
                let hostile::OpenGuest {
                    memory,
                    registers,
                    session,
                    kernel,
                } = hostile::open_guest(&guest);
                let got = sockets(&session, &kernel).unwrap();
                assert!(
                    got.warnings.is_empty(),
                    "{}: {:?}",
                    guest.name,
                    got.warnings
                );
                Base {
                    guest,
                    memory,
                    registers,
                    session,
                    kernel,
                    intact: got.items,
                }
            })
            .collect()
    })
}

/// Runs `f` on another thread and fails if it does not end within `limit` or panics.
fn bounded<R: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(limit) {
        Ok(()) => handle.join().unwrap_or_else(|_| panic!("{what}: panicked")),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no end within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

const LIMIT: Duration = Duration::from_secs(60);

fn sources(s: &Socket) -> String {
    match s.os.get("sources") {
        Some(Detail::Text(t)) => t.clone(),
        _ => String::new(),
    }
}

fn text(ws: &[LinuxError]) -> String {
    ws.iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs the analysis on base `i` patched by `patches`, bounded, and returns its sockets, its
/// warnings and its largest allocation.
fn run(i: usize, name: &str, patches: Patches) -> (Vec<Socket>, Vec<LinuxError>, usize) {
    bounded(name, LIMIT, move || {
        let b = &bases()[i];
        let s = b.patched(&patches);
        let (got, largest) = largest_alloc(|| sockets(&s, &b.kernel));
        let got = got.unwrap();
        (got.items, got.warnings, largest)
    })
}

/// Every socket a process holds is still listed (they come from the descriptors).
fn held_still_listed(b: &Base, got: &[Socket], name: &str) {
    let held: BTreeSet<u64> = b
        .intact
        .iter()
        .filter(|s| !s.pids.is_empty())
        .map(|s| s.inode)
        .collect();
    let ours: BTreeSet<u64> = got.iter().map(|s| s.inode).collect();
    assert!(
        held.is_subset(&ours),
        "{name}: {:?} lost",
        held.difference(&ours)
    );
}

fn a_looping_hash_chain_is_cut() {
    for (i, b) in bases().iter().enumerate() {
        let nulls = b.off("sock_common", "skc_nulls_node");
        let node = b.off("sock_common", "skc_node");
        for (what, table, keep, offset) in [
            (
                "tcp-established",
                "TCP established hash",
                Box::new(|s: &Socket| sources(s).contains("tcp-established"))
                    as Box<dyn Fn(&Socket) -> bool>,
                nulls,
            ),
            (
                "tcp-listen",
                "TCP listening hash",
                Box::new(|s: &Socket| sources(s).contains("tcp-listen")),
                nulls,
            ),
            (
                "unix",
                "Unix socket table",
                Box::new(|s: &Socket| sources(s).contains("unix")),
                node,
            ),
            (
                "udp",
                "UDP hash",
                Box::new(|s: &Socket| sources(s).contains("udp")),
                node,
            ),
        ] {
            let victim = b.socket(what, keep);
            let link = victim.object.checked_add(offset).unwrap();
            // The node's next points back to itself: a chain without end.
            let patches = Patches::default().u64_at(b, link, link.raw());
            let name = format!("{}: {what} chain loops at {}", b.guest.name, victim.object);
            let (got, warnings, largest) = run(i, &name, patches);
            let w = text(&warnings);
            eprintln!("{name}: {w}");
            assert!(w.contains(table) && w.contains("cycle"), "{name}: {w}");
            assert!(got.iter().any(|s| s.object == victim.object), "{name}");
            held_still_listed(b, &got, &name);
            assert!(
                largest < 1 << 20,
                "{name}: an allocation of {largest} bytes"
            );
        }
    }
}

fn an_absurd_unix_address_length_is_cut() {
    for (i, b) in bases().iter().enumerate() {
        let victim = b.socket("named unix", |s| {
            s.family == "unix" && s.local_address.starts_with('/')
        });
        let addr = b.read_va(
            victim
                .object
                .checked_add(b.off("unix_sock", "addr"))
                .unwrap(),
        );
        let len_at = addr.checked_add(b.off("unix_address", "len")).unwrap();
        for len in [0x7fff_ffffu32, 0xffff_ffff, 111] {
            let patches = Patches::default().at(b, len_at, &len.to_le_bytes());
            let name = format!("{}: unix address length {len:#x}", b.guest.name);
            let (got, warnings, largest) = run(i, &name, patches);
            let w = text(&warnings);
            eprintln!("{name}: {w}");
            assert!(
                w.contains("unix_address") && w.contains("cut"),
                "{name}: {w}"
            );
            let about_it = warnings
                .iter()
                .filter(|w| w.to_string().contains("unix_address"))
                .count();
            assert_eq!(about_it, 1, "{name}: {w}");
            let s = got
                .iter()
                .find(|s| s.object == victim.object)
                .unwrap_or_else(|| panic!("{name}: the socket is gone"));
            assert!(
                s.local_address.chars().count() <= 108,
                "{name}: {}",
                s.local_address
            );
            assert!(
                s.local_address.starts_with(&victim.local_address),
                "{name}: {} for {}",
                s.local_address,
                victim.local_address
            );
            held_still_listed(b, &got, &name);
            assert!(
                largest < 1 << 20,
                "{name}: an allocation of {largest} bytes"
            );
        }
    }
}

fn absurd_bucket_counts_are_bounded() {
    for (i, b) in bases().iter().enumerate() {
        let k = &b.kernel;
        // tcp_hashinfo.ehash_mask and lhash2_mask.
        let tcp = k.symbol("tcp_hashinfo").unwrap();
        // The route protocol's netlink bucket table size.
        let nl = b.read_va(k.symbol("nl_table").unwrap());
        let tbl = b.read_va(
            nl.checked_add(b.off("netlink_table", "hash") + b.off("rhashtable", "tbl"))
                .unwrap(),
        );
        for (what, at) in [
            (
                "ehash_mask",
                tcp.checked_add(b.off("inet_hashinfo", "ehash_mask"))
                    .unwrap(),
            ),
            (
                "lhash2_mask",
                tcp.checked_add(b.off("inet_hashinfo", "lhash2_mask"))
                    .unwrap(),
            ),
            (
                "netlink bucket_table.size",
                tbl.checked_add(b.off("bucket_table", "size")).unwrap(),
            ),
        ] {
            let patches = Patches::default().at(b, at, &u32::MAX.to_le_bytes());
            let name = format!("{}: {what} = 2^32-1", b.guest.name);
            let (got, warnings, largest) = run(i, &name, patches);
            let w = text(&warnings);
            eprintln!("{name}: {} warnings: {}", warnings.len(), w);
            assert!(w.contains("buckets claimed"), "{name}: {w}");
            assert!(warnings.len() <= 48, "{name}: {} warnings", warnings.len());
            held_still_listed(b, &got, &name);
            assert!(
                largest < 1 << 20,
                "{name}: an allocation of {largest} bytes"
            );
        }
    }
}

/// A socket whose state says it is a TCP time-wait or request socket is read as one: only its
/// `sock_common` (those are far smaller than a `sock`), inode 0 as `/proc/net/tcp` shows.
fn time_wait_and_request_states_read_the_common_head_only() {
    for (i, b) in bases().iter().enumerate() {
        let victim = b.socket("established TCP", |s| {
            s.protocol == "tcp" && s.state == "ESTAB" && !s.pids.is_empty()
        });
        let state_at = victim
            .object
            .checked_add(b.off("sock_common", "skc_state"))
            .unwrap();
        for (state, name_of) in [(6u8, "TIME-WAIT"), (12, "SYN-RECV")] {
            let patches = Patches::default().at(b, state_at, &[state]);
            let name = format!("{}: skc_state {state}", b.guest.name);
            let (got, warnings, _) = run(i, &name, patches);
            assert!(warnings.is_empty(), "{name}: {}", text(&warnings));
            let s = got
                .iter()
                .find(|s| s.object == victim.object)
                .unwrap_or_else(|| panic!("{name}: gone"));
            assert_eq!(
                (s.protocol.as_str(), s.state.as_str(), s.inode),
                ("tcp", name_of, 0),
                "{name}"
            );
            assert_eq!(
                (s.local_port, s.remote_port, &s.pids),
                (victim.local_port, victim.remote_port, &victim.pids),
                "{name}"
            );
        }
    }
}

vmi_fixtures::real_guest_tests!(
    time_wait_and_request_states_read_the_common_head_only,
    a_looping_hash_chain_is_cut,
    an_absurd_unix_address_length_is_cut,
    absurd_bucket_counts_are_bounded
);
