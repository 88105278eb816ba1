//! `struct netlink_sock` and the netlink table: netlink sockets, the kernel's own included.
//!
//! `nl_table` is a pointer to `MAX_LINKS` (32) `struct netlink_table`s, one per protocol;
//! each `hash` is an `rhashtable` of the protocol's *bound* sockets (every kernel socket, and
//! a user socket once it is bound or has sent), keyed by (namespace, port id), linked by
//! `netlink_sock.node` (an `rhash_head`). The table's `tbl` is a `bucket_table` of `size`
//! buckets; each bucket is an `rhash_lock_head *` whose bit 0 is a lock; chains end at an odd
//! "nulls" value. While the table is resized, `future_tbl` holds the new table, which is walked
//! too (sockets in both are listed once). A nested table (`nest` != 0, only when a large
//! allocation failed) is not walked, with a warning. An unbound user socket is in no table
//! (nor in `/proc/net/netlink`): only its descriptor finds it.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{Scalar, StructBuf};
use crate::comps::sock::{read_field, read_pointer, span, Buckets};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;

/// `MAX_LINKS`: netlink protocols.
pub const MAX_LINKS: u64 = 32;
/// Tables followed through `future_tbl` (a resize in progress has two).
pub const MAX_FUTURE_TABLES: usize = 4;

/// Where the fields of `netlink_sock`, `netlink_table`, `rhashtable` and `bucket_table` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetlinkLayout {
    portid: Scalar,
    dst_portid: Scalar,
    bound: Option<Scalar>,
    /// Offset of `netlink_sock.node`.
    pub node: u64,
    table_size: u64,
    /// Offset of `netlink_table.hash.tbl`.
    table_tbl: u64,
    bucket_size: Scalar,
    bucket_nest: Scalar,
    bucket_future: Scalar,
    bucket_span: usize,
    buckets: u64,
}

impl NetlinkLayout {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<NetlinkLayout, ProfileError> {
        let hash = profile.field_offset("netlink_table", "hash")?;
        let tbl = profile.field_offset("rhashtable", "tbl")?;
        let bucket_size = Scalar::resolve(profile, "bucket_table", "size")?;
        let bucket_nest = Scalar::resolve(profile, "bucket_table", "nest")?;
        let bucket_future = Scalar::resolve(profile, "bucket_table", "future_tbl")?;
        Ok(NetlinkLayout {
            portid: Scalar::resolve(profile, "netlink_sock", "portid")?,
            dst_portid: Scalar::resolve(profile, "netlink_sock", "dst_portid")?,
            bound: Scalar::resolve(profile, "netlink_sock", "bound").ok(),
            node: profile.field_offset("netlink_sock", "node")?,
            table_size: profile.struct_size("netlink_table")?,
            table_tbl: hash.checked_add(tbl).ok_or_else(|| {
                crate::comps::layout::unexpected_layout("netlink_table", "hash", "overflow")
            })?,
            bucket_span: span("bucket_table", &[bucket_size, bucket_nest, bucket_future])?,
            bucket_size,
            bucket_nest,
            bucket_future,
            buckets: profile.field_offset("bucket_table", "buckets")?,
        })
    }

    /// The bucket arrays of every protocol's table (`nl_table` is the value of the
    /// `nl_table` pointer), with the warnings of tables that cannot be walked.
    pub fn tables(
        &self,
        mem: &VirtualMemory<'_>,
        nl_table: Va,
        warnings: &mut Vec<LinuxError>,
    ) -> Vec<Buckets> {
        let mode = mem.space().mode;
        let mut out = Vec::new();
        for protocol in 0..MAX_LINKS {
            let Some(entry) = protocol
                .checked_mul(self.table_size)
                .and_then(|o| nl_table.checked_add(o))
            else {
                break;
            };
            let mut tbl = match read_pointer(mem, "netlink_table", entry, self.table_tbl) {
                Ok(t) => t,
                Err(e) => {
                    warnings.push(e);
                    continue;
                }
            };
            let mut hops = 0;
            while tbl.raw() != 0 && hops < MAX_FUTURE_TABLES {
                hops += 1;
                if !is_kernel_pointer(mode, tbl) {
                    warnings.push(LinuxError::Corrupt {
                        what: "netlink_table",
                        at: entry,
                        reason: format!("bucket table {tbl} is not an aligned kernel address"),
                    });
                    break;
                }
                let b = match StructBuf::read(mem, "bucket_table", tbl, self.bucket_span) {
                    Ok(b) => b,
                    Err(e) => {
                        warnings.push(e);
                        break;
                    }
                };
                let (Ok(size), Ok(nest), Ok(future)) = (
                    b.get(self.bucket_size),
                    b.get(self.bucket_nest),
                    b.va(self.bucket_future),
                ) else {
                    break;
                };
                if nest != 0 {
                    warnings.push(b.corrupt(format!(
                        "netlink protocol {protocol}: a nested bucket table (nest {nest}) is \
                         not walked"
                    )));
                } else if let Some(base) = tbl.checked_add(self.buckets) {
                    out.push(Buckets {
                        what: "netlink table",
                        base,
                        count: size,
                        stride: 8,
                        head: 0,
                        node_in_object: self.node,
                        lock_bit: true,
                    });
                }
                tbl = future;
            }
        }
        out
    }
}

/// A netlink socket's port ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetlinkInfo {
    /// `portid`: its own port id (0 for the kernel's and for unbound sockets).
    pub portid: u32,
    /// `dst_portid`: the default destination (0: the kernel).
    pub dst_portid: u32,
    /// `bound`, where the kernel has it.
    pub bound: Option<bool>,
}

/// Reads the port ids of the `netlink_sock` at `sk`.
pub fn read_netlink(
    mem: &VirtualMemory<'_>,
    layout: &NetlinkLayout,
    sk: Va,
) -> Result<NetlinkInfo, LinuxError> {
    Ok(NetlinkInfo {
        portid: read_field(mem, "netlink_sock", sk, layout.portid)? as u32,
        dst_portid: read_field(mem, "netlink_sock", sk, layout.dst_portid)? as u32,
        bound: layout
            .bound
            .map(|b| read_field(mem, "netlink_sock", sk, b).map(|v| v != 0))
            .transpose()?,
    })
}

/// The name of a netlink protocol (`NETLINK_ROUTE` is `route`), as `ss` knows them.
pub fn protocol_name(protocol: u16) -> String {
    match protocol {
        0 => "route",
        2 => "usersock",
        3 => "firewall",
        4 => "sock_diag",
        5 => "nflog",
        6 => "xfrm",
        7 => "selinux",
        8 => "iscsi",
        9 => "audit",
        10 => "fib_lookup",
        11 => "connector",
        12 => "netfilter",
        13 => "ip6_fw",
        14 => "dnrtmsg",
        15 => "kobject_uevent",
        16 => "generic",
        18 => "scsitransport",
        19 => "ecryptfs",
        20 => "rdma",
        21 => "crypto",
        22 => "smc",
        n => return format!("netlink-{n}"),
    }
    .to_owned()
}
