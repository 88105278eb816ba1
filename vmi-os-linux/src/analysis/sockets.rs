//! Sockets (`vmi sockets`, `vmi netstat`): every socket as `ss -tuanxp` lists it, with the
//! processes holding it.
//!
//! Two sources, merged by `struct sock` address, each socket saying under `os.sources` which
//! found it:
//!
//! - `fd`: the descriptors of every process (as Volatility's `linux.sockstat`): a file whose
//!   `f_op` is `socket_file_ops` holds a `struct socket` in `private_data`, whose `sk` is the
//!   socket. This is where the pids come from.
//! - the kernel's own tables, which also hold sockets no process holds (the kernel's netlink
//!   sockets, TCP connections in TIME-WAIT or not yet accepted, orphans closing down):
//!   `tcp-listen` and `tcp-established` (`inet_hashinfo` `lhash2`, `ehash`), `udp`
//!   (`udp_table`), `udplite` (`udplite_table`), `raw` (`raw_v4_hashinfo`,
//!   `raw_v6_hashinfo`), `unix` (each namespace's `net->unx.table`), `packet` (each
//!   namespace's `net->packet.sklist`), `netlink` (`nl_table`). Namespaces come from
//!   `net_namespace_list`.
//!
//! Every socket carries its network namespace (`os.netns`, the inode of `net:[INUM]`):
//! `/proc/net/*` of a process shows only its own namespace's sockets.
//!
//! What differs from `ss`/`/proc`: the inode of a time-wait or request socket is 0 (as in
//! `/proc/net/tcp`); addresses are always numeric; netlink addresses are the port ids in
//! decimal, packet sockets show their interface index (`*` for all) and ethertype (as the
//! port). Not walked: the tables of SCTP, MPTCP, XDP, vsock, Bluetooth and the other families
//! (their sockets are listed when a process holds them, family `family-N` where the family
//! has no name here), nested rhashtable bucket tables (warned), and, before 6.0, the global
//! Unix table (warned).
//!
//! Bounds: tasks by the task-list walk, descriptors by the fd-table walk, hash tables by
//! [`ChainWalk`] (chain length, total sockets, time, cycles), namespaces by the list walker.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use vmi_core::os::{self, Detail, Details, Sockets};
use vmi_core::{OsError, Partial as CorePartial, Session, Va};

use crate::comps::fdtable::{task_fds, FdTableOffsets};
use crate::comps::inet::{self, InetLayout};
use crate::comps::layout::StructBuf;
use crate::comps::netlink::{self, NetlinkLayout};
use crate::comps::sock::{read_pointer, read_sock, Buckets, ChainWalk, SockInfo, SockLayout};
use crate::comps::socket::{read_socket, socket_inode, socket_of_file, SocketLayout};
use crate::comps::task::{TaskLayout, TaskReader};
use crate::comps::unix_sock::{self, UnixLayout};
use crate::error::LinuxError;
use crate::iter::list::{container_of, is_kernel_pointer, ListOffsets, ListWalker};
use crate::kernel::Kernel;
use crate::partial::Partial;
use crate::LinuxOs;

/// `AF_UNIX`.
pub const AF_UNIX: u16 = 1;
/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `AF_NETLINK`.
pub const AF_NETLINK: u16 = 16;
/// `AF_PACKET`.
pub const AF_PACKET: u16 = 17;

/// Table entries that are not sockets warned about one by one (the rest are counted).
pub const MAX_SOCKET_WARNINGS: usize = 8;

/// The most network namespaces walked.
pub const MAX_NAMESPACES: usize = 1 << 16;

/// Everything the analysis resolves once.
struct Ctx<'a> {
    mem: vmi_core::VirtualMemory<'a>,
    socket: SocketLayout,
    sock: SockLayout,
    inet: InetLayout,
    unix: UnixLayout,
    netlink: NetlinkLayout,
    /// `net.packet.sklist` in `struct net`.
    net_packet_sklist: u64,
    net_inums: FxHashMap<Va, Option<u32>>,
}

/// One socket found, before it is read.
#[derive(Default)]
struct Found {
    sources: BTreeSet<&'static str>,
    pids: BTreeSet<u32>,
}

/// Every socket of the guest: held by a process or in the kernel's tables (see the module
/// docs). Sorted by family, protocol and inode.
pub fn sockets(session: &Session, kernel: &Kernel) -> Result<Partial<os::Socket>, LinuxError> {
    let profile = kernel.profile();
    let mem = kernel.memory(session);
    let mut ctx = Ctx {
        mem,
        socket: SocketLayout::resolve(profile)?,
        sock: SockLayout::resolve(profile)?,
        inet: InetLayout::resolve(profile)?,
        unix: UnixLayout::resolve(profile)?,
        netlink: NetlinkLayout::resolve(profile)?,
        net_packet_sklist: profile
            .field_offset("net", "packet")?
            .checked_add(profile.field_offset("netns_packet", "sklist")?)
            .ok_or_else(|| crate::comps::layout::unexpected_layout("net", "packet", "overflow"))?,
        net_inums: FxHashMap::default(),
    };
    // Every symbol first, so a cached profile lacking one fails before any work.
    let socket_file_ops = kernel.symbol("socket_file_ops")?;
    let init_task = kernel.symbol("init_task")?;
    let net_list = kernel.symbol("net_namespace_list")?;
    let tcp_hashinfo = kernel.symbol("tcp_hashinfo")?;
    let udp_table = kernel.symbol("udp_table")?;
    let udplite_table = kernel.symbol("udplite_table")?;
    let raw_tables = [
        ("raw IPv4 hash", kernel.symbol("raw_v4_hashinfo")?),
        ("raw IPv6 hash", kernel.symbol("raw_v6_hashinfo")?),
    ];
    let nl_table_ptr = kernel.symbol("nl_table")?;
    let task_layout = TaskLayout::resolve(profile)?;
    let fd_offsets = FdTableOffsets::resolve(profile)?;
    let list = ListOffsets::resolve(profile)?;
    let net_list_member = profile.field_offset("net", "list")?;

    let mut out = Partial::default();
    let mut found: Vec<(Va, Found)> = Vec::new();
    let mut index: FxHashMap<Va, usize> = FxHashMap::default();
    let mut note = |sk: Va, source: &'static str, pid: Option<u32>| {
        let i = *index.entry(sk).or_insert_with(|| {
            found.push((sk, Found::default()));
            found.len() - 1
        });
        found[i].1.sources.insert(source);
        if let Some(pid) = pid {
            found[i].1.pids.insert(pid);
        }
    };

    // Descriptors of every process.
    let tasks = TaskReader::new(mem, &task_layout);
    let mut walk = tasks.tasks(init_task)?;
    for task in walk.by_ref() {
        let pid = match tasks.tgid(task) {
            Ok(p) => p,
            Err(e) => {
                out.warnings.push(e);
                continue;
            }
        };
        let fds = match task_fds(&mem, &fd_offsets, task) {
            Ok(f) => f,
            Err(e) => {
                out.warnings.push(e);
                continue;
            }
        };
        out.warnings.extend(fds.warnings);
        for fd in fds.items {
            let sk = socket_of_file(&mem, &ctx.socket, socket_file_ops, fd.file)
                .and_then(|s| s.map(|s| read_socket(&mem, &ctx.socket, s)).transpose());
            match sk {
                Ok(Some(socket)) => {
                    if let Some(sk) = socket.sk {
                        note(sk, "fd", Some(pid));
                    }
                }
                Ok(None) => {}
                Err(e) => out.warnings.push(e),
            }
        }
    }
    if let Some(w) = walk.into_warning() {
        out.warnings.push(w);
    }

    // Network namespaces.
    let mut nets = Vec::new();
    let mut net_walk =
        ListWalker::new(mem, list, net_list, "network namespace list").with_limit(MAX_NAMESPACES);
    for entry in net_walk.by_ref() {
        if let Some(net) = container_of(entry, net_list_member) {
            nets.push(net);
        }
    }
    if let Some(w) = net_walk.into_warning() {
        out.warnings.push(w);
    }

    // The kernel's tables.
    let mut chains = ChainWalk::new(mem);
    let mut tables: Vec<(&'static str, Buckets)> = Vec::new();
    let mut hashinfos = vec![tcp_hashinfo];
    let mut udp_tables = vec![udp_table];
    for &net in &nets {
        let own = |off: Option<u64>| off.map(|o| read_pointer(&mem, "net", net, o)).transpose();
        match (own(ctx.inet.net_tcp_hashinfo), own(ctx.inet.net_udp_table)) {
            (Ok(tcp), Ok(udp)) => {
                hashinfos.extend(tcp.filter(|v| v.raw() != 0));
                udp_tables.extend(udp.filter(|v| v.raw() != 0));
            }
            (Err(e), _) | (_, Err(e)) => out.warnings.push(e),
        }
        match ctx.unix.table(&mem, net, ctx.sock.node) {
            Ok(Some(t)) => tables.push(("unix", t)),
            Ok(None) => {}
            Err(e) => out.warnings.push(e),
        }
        match read_pointer(&mem, "net", net, ctx.net_packet_sklist) {
            Ok(first) => {
                let mut sks = Vec::new();
                chains.chain("packet socket list", first, ctx.sock.node, &mut sks);
                for sk in sks {
                    note(sk, "packet", None);
                }
            }
            Err(e) => out.warnings.push(e),
        }
    }
    if ctx.unix.net_buckets.is_none() {
        out.warnings.push(LinuxError::Corrupt {
            what: "Unix socket table",
            at: net_list,
            reason: "this kernel has no per-namespace table (net->unx.table, 6.0+): Unix \
                     sockets no process holds are not listed"
                .into(),
        });
    }
    hashinfos.sort();
    hashinfos.dedup();
    udp_tables.sort();
    udp_tables.dedup();
    for at in hashinfos {
        let read = StructBuf::read(&mem, "inet_hashinfo", at, ctx.inet.hashinfo_span())
            .and_then(|info| ctx.inet.tcp_tables(&info, ctx.sock.nulls_node));
        match read {
            Ok((listen, established)) => {
                tables.push(("tcp-listen", listen));
                tables.push(("tcp-established", established));
            }
            Err(e) => out.warnings.push(e),
        }
    }
    for at in udp_tables {
        let read = StructBuf::read(&mem, "udp_table", at, ctx.inet.udp_span())
            .and_then(|t| ctx.inet.udp_buckets(&t, ctx.sock.node));
        match read {
            Ok(t) => tables.push(("udp", t)),
            Err(e) => out.warnings.push(e),
        }
    }
    // UDP-Lite sockets (IPPROTO_UDPLITE) have their own table of the same layout.
    match StructBuf::read(&mem, "udp_table", udplite_table, ctx.inet.udp_span())
        .and_then(|t| ctx.inet.udp_buckets(&t, ctx.sock.node))
    {
        Ok(t) => tables.push((
            "udplite",
            Buckets {
                what: "UDP-Lite hash",
                ..t
            },
        )),
        Err(e) => out.warnings.push(e),
    }
    for (what, at) in raw_tables {
        if let Some(t) = ctx.inet.raw_buckets(what, at, ctx.sock.node) {
            tables.push(("raw", t));
        }
    }
    match mem.read_va(nl_table_ptr) {
        Ok(nl) if is_kernel_pointer(mem.space().mode, nl) => {
            let mut warnings = Vec::new();
            for t in ctx.netlink.tables(&mem, nl, &mut warnings) {
                tables.push(("netlink", t));
            }
            out.warnings.extend(warnings);
        }
        Ok(nl) => out.warnings.push(LinuxError::Corrupt {
            what: "nl_table",
            at: nl_table_ptr,
            reason: format!("{nl} is not an aligned kernel address"),
        }),
        Err(e) => out.warnings.push(e.into()),
    }
    let mut sks = Vec::new();
    for (source, table) in &tables {
        sks.clear();
        chains.table(table, &mut sks);
        for &sk in &sks {
            note(sk, source, None);
        }
    }
    out.warnings.append(&mut chains.warnings);

    // Read each socket once. What a damaged table links in is no socket of its family (or
    // no readable object): dropped, the first few with a warning each, the rest counted.
    let (mut foreign, mut unreadable) = (0usize, 0usize);
    for (sk, f) in found {
        let first = |n: usize| n < MAX_SOCKET_WARNINGS;
        match ctx.render(sk, &f, &mut out.warnings) {
            Ok(Some(s)) => out.items.push(s),
            Ok(None) => {
                if first(foreign) {
                    out.warnings.push(LinuxError::Corrupt {
                        what: "socket table entry",
                        at: sk,
                        reason: format!(
                            "not a socket of the family its table ({}) holds: dropped",
                            f.sources.iter().copied().collect::<Vec<_>>().join(",")
                        ),
                    });
                }
                foreign += 1;
            }
            Err(e) => {
                if f.sources.contains("fd") || first(unreadable) {
                    out.warnings.push(e);
                }
                if !f.sources.contains("fd") {
                    unreadable += 1;
                }
            }
        }
    }
    for (n, what) in [(foreign, "of another family"), (unreadable, "unreadable")] {
        if n > MAX_SOCKET_WARNINGS {
            out.warnings.push(LinuxError::Corrupt {
                what: "socket tables",
                at: Va::new(0),
                reason: format!(
                    "{n} table entries {what} in all, {} more than warned about: dropped",
                    n - MAX_SOCKET_WARNINGS
                ),
            });
        }
    }
    out.items.sort_by(|a, b| {
        (family_rank(&a.family), &a.protocol, a.inode, a.object).cmp(&(
            family_rank(&b.family),
            &b.protocol,
            b.inode,
            b.object,
        ))
    });
    Ok(out)
}

/// Whether the table `source` holds sockets of `family`.
fn holds(source: &str, family: u16) -> bool {
    match source {
        "unix" => family == AF_UNIX,
        "netlink" => family == AF_NETLINK,
        "packet" => family == AF_PACKET,
        _ => family == AF_INET || family == AF_INET6,
    }
}

fn family_rank(family: &str) -> u8 {
    match family {
        "inet" => 0,
        "inet6" => 1,
        "unix" => 2,
        "netlink" => 3,
        "packet" => 4,
        _ => 5,
    }
}

fn family_name(family: u16) -> String {
    match family {
        AF_UNIX => "unix".into(),
        AF_INET => "inet".into(),
        AF_INET6 => "inet6".into(),
        AF_NETLINK => "netlink".into(),
        AF_PACKET => "packet".into(),
        n => format!("family-{n}"),
    }
}

impl Ctx<'_> {
    /// `net.ns.inum` of the namespace at `net` (remembered).
    fn netns(&mut self, net: Va) -> Option<u32> {
        let (mem, field) = (self.mem, self.sock.net_inum);
        *self.net_inums.entry(net).or_insert_with(|| {
            crate::comps::sock::read_field(&mem, "net", net, field)
                .ok()
                .map(|v| v as u32)
        })
    }

    fn inode_of(&self, info: &SockInfo) -> Result<u64, LinuxError> {
        match info.full.and_then(|f| f.socket) {
            Some(socket) => socket_inode(&self.mem, &self.socket, socket),
            None => Ok(0),
        }
    }

    fn render(
        &mut self,
        sk: Va,
        found: &Found,
        warnings: &mut Vec<LinuxError>,
    ) -> Result<Option<os::Socket>, LinuxError> {
        let mem = self.mem;
        let info = read_sock(&mem, &self.sock, sk, true)?;
        if !found.sources.contains("fd") && !found.sources.iter().all(|s| holds(s, info.family)) {
            return Ok(None);
        }
        let inode = self.inode_of(&info)?;
        let mut details = Details::new();
        details.insert(
            "sources",
            Detail::Text(found.sources.iter().copied().collect::<Vec<_>>().join(",")),
        );
        if let Some(inum) = self.netns(info.net) {
            details.insert("netns", Detail::Int(u64::from(inum)));
        }
        if let Some(socket) = info.full.and_then(|f| f.socket) {
            details.insert("socket", Detail::Address(socket));
            match read_socket(&mem, &self.socket, socket) {
                Ok(s) => {
                    details.insert("socket_state", Detail::Int(u64::from(s.state)));
                }
                Err(e) => warnings.push(e),
            }
        }
        let kind = info.full.map(|f| f.kind);
        let protocol_number = info.full.map(|f| f.protocol);
        if let Some(kind) = kind {
            details.insert("type", Detail::Int(u64::from(kind)));
        }
        let mut s = os::Socket {
            family: family_name(info.family),
            protocol: String::new(),
            state: inet::state_name(info.state),
            local_address: String::new(),
            local_port: 0,
            remote_address: String::new(),
            remote_port: 0,
            inode,
            pids: found.pids.iter().copied().collect(),
            object: sk,
            os: Details::new(),
        };
        match info.family {
            AF_INET | AF_INET6 => {
                // Time-wait and request sockets are TCP's.
                s.protocol = match (kind, protocol_number) {
                    (Some(k), Some(p)) => inet::protocol_name(k, p),
                    _ => "tcp".into(),
                };
                let v6 = info.family == AF_INET6;
                let addr = |v4: [u8; 4], v6addr: [u8; 16]| {
                    if v6 {
                        inet::ipv6_text(v6addr)
                    } else {
                        inet::ipv4_text(v4)
                    }
                };
                s.local_address = addr(info.local_v4, info.local_v6);
                s.remote_address = addr(info.remote_v4, info.remote_v6);
                s.local_port = info.local_port;
                s.remote_port = info.remote_port;
                if s.protocol == "raw" {
                    // skc_num of a raw socket is its protocol, not a port.
                    s.state = "UNCONN".into();
                }
            }
            AF_UNIX => {
                s.protocol = unix_sock::kind_name(kind.unwrap_or(0));
                let u = unix_sock::read_unix(&mem, &self.unix, sk, warnings)?;
                s.local_address = u.name;
                if let Some(peer) = u.peer {
                    details.insert("peer", Detail::Address(peer));
                    match read_sock(&mem, &self.sock, peer, false).and_then(|p| {
                        let ino = self.inode_of(&p)?;
                        // The peer's own entry warns about its name.
                        let name =
                            unix_sock::read_unix(&mem, &self.unix, peer, &mut Vec::new())?.name;
                        Ok((ino, name))
                    }) {
                        Ok((ino, name)) => {
                            details.insert("peer_inode", Detail::Int(ino));
                            s.remote_address = name;
                        }
                        Err(e) => warnings.push(e),
                    }
                }
            }
            AF_NETLINK => {
                s.protocol = netlink::protocol_name(protocol_number.unwrap_or(u16::MAX));
                if let Some(p) = protocol_number {
                    details.insert("netlink_protocol", Detail::Int(u64::from(p)));
                }
                let n = netlink::read_netlink(&mem, &self.netlink, sk)?;
                s.local_address = n.portid.to_string();
                s.remote_address = n.dst_portid.to_string();
                s.state = "UNCONN".into();
                details.insert("portid", Detail::Int(u64::from(n.portid)));
                if let Some(bound) = n.bound {
                    details.insert("bound", Detail::Bool(bound));
                }
            }
            AF_PACKET => {
                s.protocol = match kind {
                    Some(3) => "raw".into(),
                    Some(2) => "dgram".into(),
                    Some(k) => format!("type-{k}"),
                    None => String::new(),
                };
                s.state = "UNCONN".into();
                if let (Some(ifindex), Some(num)) = (self.sock.packet_ifindex, self.sock.packet_num)
                {
                    let ifindex = crate::comps::sock::read_field(&mem, "packet_sock", sk, ifindex)?
                        as u32 as i32;
                    let num = (crate::comps::sock::read_field(&mem, "packet_sock", sk, num)?
                        as u16)
                        .swap_bytes();
                    s.local_address = if ifindex == 0 {
                        "*".into()
                    } else {
                        ifindex.to_string()
                    };
                    s.local_port = num;
                    details.insert("ifindex", Detail::Int(ifindex as u32 as u64));
                }
            }
            _ => {
                s.protocol = kind.map(unix_sock::kind_name).unwrap_or_default();
            }
        }
        s.os = details;
        Ok(Some(s))
    }
}

impl Sockets for LinuxOs {
    fn sockets(&self, session: &Session) -> Result<CorePartial<os::Socket>, OsError> {
        self.neutral_partial(sockets(session, self.kernel()), |s| s)
    }
}
