//! `sockets()` on every real guest against the guest's own `/proc/net/*` tables (of the initial
//! network namespace) and `/proc/PID/fd` links (`socket:[INODE]`).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::GuestExt;
use vmi_core::os::{Detail, Socket};
use vmi_os_linux::analysis::sockets::sockets;

/// One truth row, in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    family: String,
    protocol: String,
    state: String,
    local_address: String,
    local_port: u16,
    remote_address: String,
    remote_port: u16,
    inode: u64,
}

fn hex32(s: &str) -> u32 {
    u32::from_str_radix(s, 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// `/proc/net/tcp`'s address: hex words in host byte order, then the port.
fn inet_endpoint(s: &str) -> (String, u16) {
    let (addr, port) = s.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let text = match addr.len() {
        8 => std::net::Ipv4Addr::from(hex32(addr).to_le_bytes()).to_string(),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4]
                    .copy_from_slice(&hex32(&addr[i * 8..i * 8 + 8]).to_le_bytes());
            }
            std::net::Ipv6Addr::from(octets).to_string()
        }
        n => panic!("address of {n} hex digits: {s}"),
    };
    (text, port)
}

/// ss's state names by TCP state number (written out here, not taken from the library).
fn ss_state(st: u32) -> &'static str {
    [
        "?",
        "ESTAB",
        "SYN-SENT",
        "SYN-RECV",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "TIME-WAIT",
        "UNCONN",
        "CLOSE-WAIT",
        "LAST-ACK",
        "LISTEN",
        "CLOSING",
    ][st as usize]
}

fn inet_rows(text: &str, family: &str, protocol: &str) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local_address, local_port) = inet_endpoint(f[1]);
            let (remote_address, remote_port) = inet_endpoint(f[2]);
            let state = if protocol == "raw" {
                "UNCONN"
            } else {
                ss_state(hex32(f[3]))
            };
            Row {
                family: family.into(),
                protocol: protocol.into(),
                state: state.into(),
                local_address,
                local_port,
                remote_address,
                remote_port,
                inode: f[9].parse().unwrap(),
            }
        })
        .collect()
}

fn unix_rows(text: &str) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = hex32(f[3]);
            let protocol = match hex32(f[4]) {
                1 => "stream",
                2 => "dgram",
                5 => "seqpacket",
                n => panic!("unix type {n}"),
            };
            let state = if flags & 0x10000 != 0 {
                "LISTEN"
            } else if hex32(f[5]) == 3 {
                "ESTAB"
            } else {
                "UNCONN"
            };
            Row {
                family: "unix".into(),
                protocol: protocol.into(),
                state: state.into(),
                local_address: f.get(7).map(|s| s.to_string()).unwrap_or_default(),
                local_port: 0,
                remote_address: String::new(),
                remote_port: 0,
                inode: f[6].parse().unwrap(),
            }
        })
        .collect()
}

fn ours_row(s: &Socket) -> Row {
    Row {
        family: s.family.clone(),
        protocol: s.protocol.clone(),
        state: s.state.clone(),
        local_address: s.local_address.clone(),
        local_port: s.local_port,
        remote_address: s.remote_address.clone(),
        remote_port: s.remote_port,
        inode: s.inode,
    }
}

fn int(s: &Socket, key: &str) -> Option<u64> {
    match s.os.get(key) {
        Some(Detail::Int(n)) => Some(*n),
        _ => None,
    }
}

fn sources(s: &Socket) -> BTreeSet<String> {
    match s.os.get("sources") {
        Some(Detail::Text(t)) => t.split(',').map(str::to_owned).collect(),
        other => panic!("sources {other:?}"),
    }
}

/// The initial network namespace's inode: init's `net` link.
fn init_netns(g: &vmi_fixtures::Guest) -> u64 {
    g.truth("ns")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == "1" && f[1] == "net").then(|| f[2].parse().unwrap())
        })
        .expect("init's net namespace in truth ns")
}

fn every_truth_socket_is_listed_alike() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let got = sockets(&session, &kernel).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        assert!(
            got.warnings.is_empty(),
            "{}: warnings {:?}",
            g.name,
            got.warnings
        );
        let init_net = init_netns(&g);
        let ours: Vec<&Socket> = got
            .items
            .iter()
            .filter(|s| int(s, "netns") == Some(init_net))
            .collect();
        assert!(
            !ours.is_empty(),
            "{}: no socket in the initial namespace",
            g.name
        );
        let by_inode: BTreeMap<u64, &Socket> = ours
            .iter()
            .filter(|s| s.inode != 0)
            .map(|s| (s.inode, *s))
            .collect();

        let mut truth = Vec::new();
        for (file, family, protocol) in [
            ("tcp", "inet", "tcp"),
            ("tcp6", "inet6", "tcp"),
            ("udp", "inet", "udp"),
            ("udp6", "inet6", "udp"),
            ("raw", "inet", "raw"),
            ("raw6", "inet6", "raw"),
        ] {
            truth.extend(inet_rows(
                &g.truth(&format!("net/{file}")),
                family,
                protocol,
            ));
        }
        truth.extend(unix_rows(&g.truth("net/unix")));
        let mut rows_checked = 0;
        for row in &truth {
            rows_checked += 1;
            if row.inode == 0 {
                // A time-wait or request socket: matched by everything else.
                assert!(
                    ours.iter().any(|s| ours_row(s) == *row),
                    "{}: {row:?} not listed",
                    g.name
                );
                continue;
            }
            let s = by_inode
                .get(&row.inode)
                .unwrap_or_else(|| panic!("{}: {row:?} not listed", g.name));
            let mut mine = ours_row(s);
            if row.family == "unix" {
                // /proc/net/unix has no peer column.
                mine.remote_address.clear();
            }
            assert_eq!(&mine, row, "{}: inode {}", g.name, row.inode);
        }
        for l in g.truth("net/netlink").lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            rows_checked += 1;
            let inode: u64 = f[9].parse().unwrap();
            let s = by_inode
                .get(&inode)
                .unwrap_or_else(|| panic!("{}: netlink {l} not listed", g.name));
            assert_eq!(s.family, "netlink", "{}: {l}", g.name);
            assert_eq!(
                int(s, "netlink_protocol"),
                Some(f[1].parse().unwrap()),
                "{l}"
            );
            assert_eq!(s.local_address, f[2], "{}: {l}", g.name);
            assert!(sources(s).contains("netlink"), "{}: {l}: {s:?}", g.name);
        }
        for l in g.truth("net/packet").lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            rows_checked += 1;
            let inode: u64 = f[8].parse().unwrap();
            let s = by_inode
                .get(&inode)
                .unwrap_or_else(|| panic!("{}: packet {l} not listed", g.name));
            assert_eq!(s.family, "packet", "{}: {l}", g.name);
            let kind = match f[2] {
                "3" => "raw",
                "2" => "dgram",
                k => panic!("packet type {k}"),
            };
            assert_eq!(s.protocol, kind, "{}: {l}", g.name);
            assert_eq!(u32::from(s.local_port), hex32(f[3]), "{}: {l}", g.name);
            let iface = if f[4] == "0" { "*" } else { f[4] };
            assert_eq!(s.local_address, iface, "{}: {l}", g.name);
            assert!(sources(s).contains("packet"), "{}: {l}", g.name);
        }
        eprintln!(
            "{}: {} sockets ({} in the initial namespace), {rows_checked} truth rows",
            g.name,
            got.items.len(),
            ours.len()
        );
        // The target's sockets at least: 4 unix, 3+1 tcp, 2 udp, netlink, packet.
        assert!(
            rows_checked >= 12,
            "{}: only {rows_checked} truth rows",
            g.name
        );

        // Every socket of the truth's fds is ours, with the same pids (init, which the truth
        // leaves out, aside).
        let mut holders: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
        for l in g.truth("fds").lines() {
            let f: Vec<&str> = l.splitn(7, ' ').collect();
            if let Some(ino) = f
                .get(6)
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
            {
                holders
                    .entry(ino.parse().unwrap())
                    .or_default()
                    .insert(f[0].parse().unwrap());
            }
        }
        assert!(
            holders.len() >= 12,
            "{}: {} sockets in fds",
            g.name,
            holders.len()
        );
        let all_by_inode: BTreeMap<u64, &Socket> = got.items.iter().map(|s| (s.inode, s)).collect();
        for (ino, pids) in &holders {
            let s = all_by_inode
                .get(ino)
                .unwrap_or_else(|| panic!("{}: socket:[{ino}] of {pids:?} not listed", g.name));
            let ours: BTreeSet<u32> = s.pids.iter().copied().filter(|&p| p != 1).collect();
            assert_eq!(&ours, pids, "{}: socket:[{ino}]", g.name);
            assert!(sources(s).contains("fd"), "{}: socket:[{ino}]", g.name);
        }

        // Nothing held by a process in the initial namespace is missing from the truth
        // tables, but for what /proc/net does not list: TCP/UDP sockets in no table (never
        // bound or listening), unbound netlink sockets, families /proc/net has no table of here.
        let truth_inodes: BTreeSet<u64> = truth
            .iter()
            .map(|r| r.inode)
            .chain(["net/netlink", "net/packet"].iter().flat_map(|t| {
                g.truth(t)
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().last()?.parse().ok())
                    .collect::<Vec<u64>>()
            }))
            .collect();
        for s in &ours {
            if !sources(s).contains("fd") {
                continue;
            }
            let exempt = match s.family.as_str() {
                "inet" | "inet6" => {
                    s.state == "UNCONN" && (s.protocol == "tcp" || s.local_port == 0)
                }
                "netlink" => s.os.get("bound") == Some(&Detail::Bool(false)),
                "unix" | "packet" => false,
                _ => true,
            };
            if !exempt {
                assert!(
                    truth_inodes.contains(&s.inode),
                    "{}: {s:?} is not in /proc/net",
                    g.name
                );
            }
        }

        // The kernel's tables found what the descriptors found.
        for s in &ours {
            let src = sources(s);
            let table = match (s.family.as_str(), s.protocol.as_str(), s.state.as_str()) {
                ("inet" | "inet6", "tcp", "LISTEN") => Some("tcp-listen"),
                ("inet" | "inet6", "tcp", "UNCONN") => None,
                ("inet" | "inet6", "tcp", _) => Some("tcp-established"),
                ("inet" | "inet6", "udp", _) if s.local_port != 0 => Some("udp"),
                ("unix", _, _) => Some("unix"),
                ("packet", _, _) => Some("packet"),
                _ => None,
            };
            if let Some(t) = table {
                assert!(src.contains(t), "{}: {s:?} not found in {t}", g.name);
            }
        }
    }
}

fn unix_peers_and_pids_of_the_target() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let got = sockets(&session, &kernel).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        let target: u32 = g.truth("fds-target").trim().parse().unwrap();
        let mine: Vec<&Socket> = got
            .items
            .iter()
            .filter(|s| s.pids.contains(&target))
            .collect();
        assert_eq!(mine.len(), 12, "{}: {mine:#?}", g.name);
        // The socketpair: two connected stream sockets, each the other's peer.
        let pair: Vec<&&Socket> = mine
            .iter()
            .filter(|s| s.family == "unix" && s.state == "ESTAB")
            .collect();
        assert_eq!(pair.len(), 2, "{}", g.name);
        assert_eq!(
            int(pair[0], "peer_inode"),
            Some(pair[1].inode),
            "{}",
            g.name
        );
        assert_eq!(
            int(pair[1], "peer_inode"),
            Some(pair[0].inode),
            "{}",
            g.name
        );
        // The abstract listener renders as ss shows it.
        assert!(
            mine.iter()
                .any(|s| s.family == "unix" && s.local_address.starts_with("@vmi-abstract-")),
            "{}",
            g.name
        );
        // The TCP connection's two ends.
        let estab: Vec<&&Socket> = mine
            .iter()
            .filter(|s| s.protocol == "tcp" && s.state == "ESTAB")
            .collect();
        assert_eq!(estab.len(), 2, "{}", g.name);
        assert_eq!(estab[0].local_port, estab[1].remote_port, "{}", g.name);
        assert_eq!(estab[1].local_port, estab[0].remote_port, "{}", g.name);
    }
}

vmi_fixtures::real_guest_tests!(
    every_truth_socket_is_listed_alike,
    unix_peers_and_pids_of_the_target
);
