//! `struct sock` and its `struct sock_common` head: what every socket of every family has, the
//! bounded walk of the hash chains the kernel links them on, and the few `packet_sock` fields
//! `/proc/net/packet` shows.
//!
//! `sock_common` (`__sk_common`, at offset 0 of `struct sock`) holds the family, the state,
//! the IPv4 addresses (`skc_daddr`, `skc_rcv_saddr`, network byte order), the ports
//! (`skc_num`: local, host order; `skc_dport`: remote, network order), the IPv6 addresses,
//! the network namespace (`skc_net`) and the links of the hash tables (`skc_node`,
//! `skc_nulls_node`). TCP's `inet_timewait_sock` and `request_sock` (states `TIME_WAIT` and
//! `NEW_SYN_RECV`) begin with the same `sock_common` but are much smaller than a `sock`:
//! [`read_sock`] reads the common head first and the rest only for full sockets.
//!
//! Hash chains are `hlist` (end: NULL) or `hlist_nulls` (end: an odd "nulls" value), both with
//! `next` first; [`ChainWalk`] walks either, bounded: per chain ([`MAX_CHAIN`]), in total
//! ([`MAX_TABLE_SOCKETS`] and a time bound, for all tables of one analysis) and against cycles
//! (a node seen twice in one chain ends it). What is cut is a warning.

use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{unexpected_layout, Scalar, StructBuf};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;

/// TCP's `TCP_TIME_WAIT`: the entry is an `inet_timewait_sock`.
pub const TCP_TIME_WAIT: u8 = 6;
/// TCP's `TCP_NEW_SYN_RECV`: the entry is a `request_sock`.
pub const TCP_NEW_SYN_RECV: u8 = 12;

/// The longest hash chain walked; real chains hold a handful of sockets.
pub const MAX_CHAIN: usize = 1 << 16;
/// The most sockets taken from all kernel tables of one analysis.
pub const MAX_TABLE_SOCKETS: usize = 1 << 20;
/// The most buckets of one hash table read (a table claiming more is cut).
pub const MAX_BUCKETS: u64 = 1 << 22;
/// Damaged chains or unreadable bucket stretches tolerated in one table before its walk
/// stops (a table pointing into garbage would otherwise give a warning per bucket).
pub const MAX_TABLE_WARNINGS: usize = 16;
/// The time bound of all table walks of one analysis.
pub const MAX_TABLES_TIME: Duration = Duration::from_secs(5);

/// Where the fields of `sock_common`, `sock`, `net` and `packet_sock` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockLayout {
    daddr: Scalar,
    rcv_saddr: Scalar,
    dport: Scalar,
    num: Scalar,
    family: Scalar,
    state: Scalar,
    net: Scalar,
    v6_daddr: u64,
    v6_rcv_saddr: u64,
    common_span: usize,
    /// Offset of `skc_node` (an `hlist_node`) in `sock`.
    pub node: u64,
    /// Offset of `skc_nulls_node` (an `hlist_nulls_node`) in `sock`.
    pub nulls_node: u64,
    sk_type: Scalar,
    sk_protocol: Scalar,
    sk_socket: Scalar,
    sock_span: usize,
    /// `net.ns.inum`: the namespace's inode number (`net:[INUM]`).
    pub net_inum: Scalar,
    /// `packet_sock.ifindex`.
    pub packet_ifindex: Option<Scalar>,
    /// `packet_sock.num`: the protocol (ethertype), network order.
    pub packet_num: Option<Scalar>,
}

pub(crate) fn span(ty: &str, fields: &[Scalar]) -> Result<usize, ProfileError> {
    let end = fields.iter().map(Scalar::end).max().unwrap_or(0);
    usize::try_from(end)
        .ok()
        .filter(|&e| e as u64 <= crate::comps::layout::MAX_STRUCT_SIZE)
        .ok_or_else(|| unexpected_layout(ty, "<span>", "too large"))
}

impl SockLayout {
    /// Resolves the layout from `profile` (`packet_sock` included: a profile from the cache
    /// lacking it must send the caller to full discovery).
    pub fn resolve(profile: &Profile) -> Result<SockLayout, ProfileError> {
        let c = |f: &str| Scalar::resolve(profile, "sock_common", f);
        let daddr = c("skc_daddr")?;
        let rcv_saddr = c("skc_rcv_saddr")?;
        let dport = c("skc_dport")?;
        let num = c("skc_num")?;
        let family = c("skc_family")?;
        let state = c("skc_state")?;
        let net = Scalar::resolve_nested(profile, "sock_common", "skc_net", "net")?;
        let v6_daddr = profile.field_offset("sock_common", "skc_v6_daddr")?;
        let v6_rcv_saddr = profile.field_offset("sock_common", "skc_v6_rcv_saddr")?;
        let common_in_sock = profile.field_offset("sock", "__sk_common")?;
        if common_in_sock != 0 {
            return Err(unexpected_layout("sock", "__sk_common", "not at offset 0"));
        }
        let v6_end = v6_daddr.max(v6_rcv_saddr).saturating_add(16);
        let common_span = span(
            "sock_common",
            &[daddr, rcv_saddr, dport, num, family, state, net],
        )?
        .max(usize::try_from(v6_end).unwrap_or(usize::MAX));
        if common_span as u64 > crate::comps::layout::MAX_STRUCT_SIZE {
            return Err(unexpected_layout("sock_common", "<span>", "too large"));
        }
        let sk_type = Scalar::resolve(profile, "sock", "sk_type")?;
        let sk_protocol = Scalar::resolve(profile, "sock", "sk_protocol")?;
        let sk_socket = Scalar::resolve(profile, "sock", "sk_socket")?;
        Ok(SockLayout {
            daddr,
            rcv_saddr,
            dport,
            num,
            family,
            state,
            net,
            v6_daddr,
            v6_rcv_saddr,
            common_span,
            node: profile.field_offset("sock_common", "skc_node")?,
            nulls_node: profile.field_offset("sock_common", "skc_nulls_node")?,
            sock_span: span("sock", &[sk_type, sk_protocol, sk_socket])?.max(common_span),
            sk_type,
            sk_protocol,
            sk_socket,
            net_inum: Scalar::resolve_nested(profile, "net", "ns", "inum")?,
            packet_ifindex: Some(Scalar::resolve(profile, "packet_sock", "ifindex")?),
            packet_num: Some(Scalar::resolve(profile, "packet_sock", "num")?),
        })
    }
}

/// The fields of one `struct sock` (or of the `sock_common` of a TCP time-wait or request
/// socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockInfo {
    /// Its address.
    pub sk: Va,
    /// `skc_family` (`AF_UNIX` 1, `AF_INET` 2, `AF_INET6` 10, `AF_NETLINK` 16, `AF_PACKET` 17).
    pub family: u16,
    /// `skc_state` (TCP states; Unix and the others reuse `TCP_ESTABLISHED`, `TCP_CLOSE`,
    /// `TCP_LISTEN`).
    pub state: u8,
    /// `skc_rcv_saddr`: the bound IPv4 address, octets in order.
    pub local_v4: [u8; 4],
    /// `skc_daddr`: the peer's IPv4 address.
    pub remote_v4: [u8; 4],
    /// `skc_v6_rcv_saddr`.
    pub local_v6: [u8; 16],
    /// `skc_v6_daddr`.
    pub remote_v6: [u8; 16],
    /// `skc_num`: local port, host order.
    pub local_port: u16,
    /// `skc_dport`, converted to host order.
    pub remote_port: u16,
    /// `skc_net.net`: its network namespace.
    pub net: Va,
    /// The rest of `struct sock`; `None` for a time-wait or request socket.
    pub full: Option<FullSock>,
}

/// The fields only a full `struct sock` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullSock {
    /// `sk_type` (`SOCK_STREAM` 1, `SOCK_DGRAM` 2, `SOCK_RAW` 3, `SOCK_SEQPACKET` 5, ...).
    pub kind: u16,
    /// `sk_protocol` (`IPPROTO_TCP` 6, the netlink protocol, ...).
    pub protocol: u16,
    /// `sk_socket`, `None` for an orphan (a TCP socket closed by its process, still in
    /// FIN-WAIT): its inode is then 0, as `sock_i_ino` gives.
    pub socket: Option<Va>,
}

/// Reads the socket at `sk`: its `sock_common`, then (unless `tcp_mini` says it may be a TCP
/// time-wait or request socket and its state is one) the rest of `struct sock`.
pub fn read_sock(
    mem: &VirtualMemory<'_>,
    layout: &SockLayout,
    sk: Va,
    tcp_mini: bool,
) -> Result<SockInfo, LinuxError> {
    let common = StructBuf::read(mem, "sock_common", sk, layout.common_span)?;
    let state = common.get(layout.state)? as u8;
    let family = common.get(layout.family)? as u16;
    let v6 = |off: u64| -> Result<[u8; 16], LinuxError> {
        let start = usize::try_from(off).unwrap_or(usize::MAX);
        common
            .bytes()
            .get(start..start.saturating_add(16))
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or_else(|| common.corrupt("IPv6 address outside the structure".into()))
    };
    let full = if tcp_mini && matches!(state, TCP_TIME_WAIT | TCP_NEW_SYN_RECV) {
        None
    } else {
        let s = StructBuf::read(mem, "sock", sk, layout.sock_span)?;
        let socket = s.va(layout.sk_socket)?;
        let socket = match socket.raw() {
            0 => None,
            _ if is_kernel_pointer(mem.space().mode, socket) => Some(socket),
            _ => {
                return Err(s.corrupt(format!(
                    "sk_socket {socket} is not an aligned kernel address"
                )))
            }
        };
        Some(FullSock {
            kind: s.get(layout.sk_type)? as u16,
            protocol: s.get(layout.sk_protocol)? as u16,
            socket,
        })
    };
    Ok(SockInfo {
        sk,
        family,
        state,
        // __be32 read little-endian: its bytes are the octets in order.
        local_v4: (common.get(layout.rcv_saddr)? as u32).to_le_bytes(),
        remote_v4: (common.get(layout.daddr)? as u32).to_le_bytes(),
        local_v6: v6(layout.v6_rcv_saddr)?,
        remote_v6: v6(layout.v6_daddr)?,
        local_port: common.get(layout.num)? as u16,
        remote_port: (common.get(layout.dport)? as u16).swap_bytes(),
        net: common.va(layout.net)?,
        full,
    })
}

/// Reads an unsigned field of `ty` at `base`.
pub(crate) fn read_field(
    mem: &VirtualMemory<'_>,
    what: &'static str,
    base: Va,
    field: Scalar,
) -> Result<u64, LinuxError> {
    let at = base
        .checked_add(field.offset)
        .ok_or_else(|| LinuxError::Corrupt {
            what,
            at: base,
            reason: format!("field at offset {} overflows", field.offset),
        })?;
    let mut bytes = [0u8; 8];
    mem.read_exact(at, &mut bytes[..usize::from(field.size)])?;
    let raw = u64::from_le_bytes(bytes);
    Ok(match field.bits {
        None => raw,
        Some((pos, 64)) => raw >> pos,
        Some((pos, len)) => (raw >> pos) & ((1u64 << len) - 1),
    })
}

/// Reads a pointer at `base + offset`.
pub(crate) fn read_pointer(
    mem: &VirtualMemory<'_>,
    what: &'static str,
    base: Va,
    offset: u64,
) -> Result<Va, LinuxError> {
    let at = base
        .checked_add(offset)
        .ok_or_else(|| LinuxError::Corrupt {
            what,
            at: base,
            reason: format!("field at offset {offset} overflows"),
        })?;
    Ok(mem.read_va(at)?)
}

/// A hash table's bucket array: `count` buckets of `stride` bytes whose chain head pointer
/// is at `head` inside each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// What the table is, for warnings ("TCP established hash").
    pub what: &'static str,
    /// The first bucket.
    pub base: Va,
    /// The buckets the table claims.
    pub count: u64,
    /// Bytes per bucket.
    pub stride: u64,
    /// Offset of the chain's first pointer in a bucket.
    pub head: u64,
    /// Offset of the chain node in the listed object (`container_of`).
    pub node_in_object: u64,
    /// Whether bit 0 of a bucket's pointer is a lock (rhashtable's `rhash_lock_head`).
    pub lock_bit: bool,
}

/// Bounded walks of hash chains, sharing one entry budget and one deadline (all the tables
/// of one analysis).
pub struct ChainWalk<'a> {
    mem: VirtualMemory<'a>,
    started: Instant,
    deadline: Instant,
    taken: usize,
    max_entries: usize,
    max_chain: usize,
    /// Set when the budget or the deadline ran out: every later walk stops at once.
    exhausted: bool,
    seen: FxHashSet<Va>,
    /// What was cut, and why.
    pub warnings: Vec<LinuxError>,
}

impl<'a> ChainWalk<'a> {
    /// Walks through `mem` with the default bounds.
    pub fn new(mem: VirtualMemory<'a>) -> Self {
        Self::with_limits(mem, MAX_TABLE_SOCKETS, MAX_CHAIN, MAX_TABLES_TIME)
    }

    /// Walks with explicit bounds (tests).
    pub fn with_limits(
        mem: VirtualMemory<'a>,
        max_entries: usize,
        max_chain: usize,
        time: Duration,
    ) -> Self {
        let started = Instant::now();
        Self {
            mem,
            started,
            deadline: started.checked_add(time).unwrap_or(started),
            taken: 0,
            max_entries,
            max_chain,
            exhausted: false,
            seen: FxHashSet::default(),
            warnings: Vec::new(),
        }
    }

    fn out_of_budget(&mut self, what: &'static str, head: Va) -> bool {
        if self.exhausted {
            return true;
        }
        if self.taken >= self.max_entries {
            self.exhausted = true;
            self.warnings.push(LinuxError::Unbounded {
                what,
                head,
                limit: self.max_entries,
            });
            return true;
        }
        let now = Instant::now();
        if now >= self.deadline {
            self.exhausted = true;
            self.warnings.push(LinuxError::TimedOut {
                what,
                head,
                entries: self.taken,
                elapsed: now.saturating_duration_since(self.started),
                limit: self.deadline.saturating_duration_since(self.started),
                inherited: false,
            });
            return true;
        }
        false
    }

    /// The objects on the chain whose first node is `first` (NULL or odd: empty), each
    /// `container_of(node, node_in_object)`, appended to `out`.
    pub fn chain(&mut self, what: &'static str, first: Va, node_in_object: u64, out: &mut Vec<Va>) {
        self.seen.clear();
        let mode = self.mem.space().mode;
        let mut cur = first;
        let mut length = 0usize;
        loop {
            if cur.raw() == 0 || cur.raw() & 1 == 1 {
                return; // NULL (hlist) or a nulls marker (hlist_nulls, rhashtable)
            }
            if !is_kernel_pointer(mode, cur) {
                self.warnings.push(LinuxError::Corrupt {
                    what,
                    at: first,
                    reason: format!("a chain node {cur} is not an aligned kernel address"),
                });
                return;
            }
            if !self.seen.insert(cur) {
                self.warnings.push(LinuxError::Corrupt {
                    what,
                    at: first,
                    reason: format!(
                        "the chain returns to node {cur} after {length} nodes (a cycle)"
                    ),
                });
                return;
            }
            if length >= self.max_chain {
                self.warnings.push(LinuxError::Unbounded {
                    what,
                    head: first,
                    limit: self.max_chain,
                });
                return;
            }
            if self.out_of_budget(what, first) {
                return;
            }
            match cur.checked_sub(node_in_object) {
                Some(object) => out.push(object),
                None => {
                    self.warnings.push(LinuxError::Corrupt {
                        what,
                        at: first,
                        reason: format!("chain node {cur} lies below its offset in the object"),
                    });
                    return;
                }
            }
            length += 1;
            self.taken += 1;
            cur = match self.mem.read_va(cur) {
                Ok(next) => next,
                Err(e) => {
                    self.warnings.push(LinuxError::Corrupt {
                        what,
                        at: first,
                        reason: format!("the next pointer of chain node {cur} cannot be read: {e}"),
                    });
                    return;
                }
            };
        }
    }

    /// Whether `table` gave [`MAX_TABLE_WARNINGS`] warnings since `before` (then warned: its
    /// walk stops at bucket `index`).
    fn too_damaged(&mut self, table: &Buckets, before: usize, index: u64, count: u64) -> bool {
        if self.warnings.len().saturating_sub(before) < MAX_TABLE_WARNINGS {
            return false;
        }
        self.warnings.push(LinuxError::Corrupt {
            what: table.what,
            at: table.base,
            reason: format!(
                "{MAX_TABLE_WARNINGS} damaged chains or unreadable buckets: the walk stops at \
                 bucket {index} of {count}"
            ),
        });
        true
    }

    /// The objects on every chain of `table`, appended to `out`. Buckets beyond
    /// [`MAX_BUCKETS`] are cut; an unreadable stretch of buckets is skipped; both warned.
    pub fn table(&mut self, table: &Buckets, out: &mut Vec<Va>) {
        const CHUNK: u64 = 4096;
        let count = if table.count > MAX_BUCKETS {
            self.warnings.push(LinuxError::Corrupt {
                what: table.what,
                at: table.base,
                reason: format!(
                    "{} buckets claimed: only the first {MAX_BUCKETS} are read",
                    table.count
                ),
            });
            MAX_BUCKETS
        } else {
            table.count
        };
        if table.stride == 0 || table.head.saturating_add(8) > table.stride {
            self.warnings.push(LinuxError::Corrupt {
                what: table.what,
                at: table.base,
                reason: "bucket layout does not hold a pointer".into(),
            });
            return;
        }
        let warnings_before = self.warnings.len();
        let per_chunk = (CHUNK / table.stride).max(1);
        let mut bytes = vec![0u8; (per_chunk * table.stride) as usize];
        let mut index = 0u64;
        while index < count {
            if self.out_of_budget(table.what, table.base) {
                return;
            }
            if self.too_damaged(table, warnings_before, index, count) {
                return;
            }
            let n = per_chunk.min(count - index);
            let Some(at) = index
                .checked_mul(table.stride)
                .and_then(|off| table.base.checked_add(off))
            else {
                self.warnings.push(LinuxError::Corrupt {
                    what: table.what,
                    at: table.base,
                    reason: format!("bucket {index} lies beyond the address space"),
                });
                return;
            };
            let buf = &mut bytes[..(n * table.stride) as usize];
            if let Err(e) = self.mem.read_exact(at, buf) {
                self.warnings.push(LinuxError::Corrupt {
                    what: table.what,
                    at: table.base,
                    reason: format!(
                        "buckets {index}..{} cannot be read and are skipped: {e}",
                        index + n
                    ),
                });
                index += n;
                continue;
            }
            let heads: Vec<Va> = buf
                .chunks_exact(table.stride as usize)
                .map(|b| {
                    let h = table.head as usize;
                    let mut le = [0u8; 8];
                    le.copy_from_slice(&b[h..h + 8]);
                    let raw = u64::from_le_bytes(le);
                    Va::new(if table.lock_bit { raw & !1 } else { raw })
                })
                .collect();
            for (i, first) in heads.into_iter().enumerate() {
                if self.too_damaged(table, warnings_before, index + i as u64, count) {
                    return;
                }
                self.chain(table.what, first, table.node_in_object, out);
            }
            index += n;
        }
    }
}
