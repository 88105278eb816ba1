//! The kernel's IPv4/IPv6 socket tables (`inet_hashinfo` of TCP, `udp_table`,
//! `raw_hashinfo`) and how `ss` names what is in them.
//!
//! - TCP (`struct inet_hashinfo`, global `tcp_hashinfo`; a namespace may have its own, reached
//!   through `net->ipv4.tcp_death_row.hashinfo`): listeners hang on `lhash2[0..=lhash2_mask]`
//!   (`inet_listen_hashbucket.nulls_head`) by `sk_nulls_node`; every other connection
//!   (established, SYN-SENT, FIN-WAIT, ..., time-wait and request sockets) on
//!   `ehash[0..=ehash_mask]` (`inet_ehash_bucket.chain`) by `sk_nulls_node` too. Both are
//!   `hlist_nulls` chains. Both address families share them. A TCP socket that is only bound
//!   (or not even bound) is on neither, and `/proc/net/tcp` does not show it.
//! - UDP (`struct udp_table`, global `udp_table`; 6.x namespaces may have their own,
//!   `net->ipv4.udp_table`): `hash[0..=mask]` (`udp_hslot.head`), an `hlist` by `sk_node`,
//!   bound sockets only. UDP-Lite's `udplite_table` has the same layout.
//! - Raw (`raw_v4_hashinfo`, `raw_v6_hashinfo`): `ht[RAW_HTABLE_SIZE]`, by `sk_node`.
//!
//! Every table holds the sockets of every namespace that shares it; each socket's `skc_net`
//! says which.

use vmi_core::{Profile, ProfileError, Va};

use crate::comps::layout::Scalar;
use crate::comps::sock::Buckets;

/// Where the fields of the IPv4/IPv6 tables are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InetLayout {
    ehash: Scalar,
    ehash_mask: Scalar,
    lhash2: Scalar,
    lhash2_mask: Scalar,
    ehash_bucket_size: u64,
    ehash_chain: u64,
    listen_bucket_size: u64,
    listen_head: u64,
    udp_hash: Scalar,
    udp_mask: Scalar,
    udp_slot_size: u64,
    udp_slot_head: u64,
    /// `raw_hashinfo.ht`: offset, buckets.
    raw_ht: Option<(u64, u64)>,
    /// Offset of `net.ipv4.tcp_death_row.hashinfo` in `struct net`.
    pub net_tcp_hashinfo: Option<u64>,
    /// Offset of `net.ipv4.udp_table` in `struct net` (6.2+).
    pub net_udp_table: Option<u64>,
}

impl InetLayout {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<InetLayout, ProfileError> {
        let h = |f: &str| Scalar::resolve(profile, "inet_hashinfo", f);
        let ipv4 = profile.field_offset("net", "ipv4").ok();
        let net_tcp_hashinfo = ipv4.and_then(|ipv4| {
            let dr = profile.field_offset("netns_ipv4", "tcp_death_row").ok()?;
            let hi = profile
                .field_offset("inet_timewait_death_row", "hashinfo")
                .ok()?;
            ipv4.checked_add(dr)?.checked_add(hi)
        });
        let net_udp_table = ipv4.and_then(|ipv4| {
            ipv4.checked_add(profile.field_offset("netns_ipv4", "udp_table").ok()?)
        });
        let raw_ht = crate::comps::layout::ArrayField::resolve(profile, "raw_hashinfo", "ht")
            .ok()
            .map(|a| (a.offset, a.count));
        Ok(InetLayout {
            ehash: h("ehash")?,
            ehash_mask: h("ehash_mask")?,
            lhash2: h("lhash2")?,
            lhash2_mask: h("lhash2_mask")?,
            ehash_bucket_size: profile.struct_size("inet_ehash_bucket")?,
            ehash_chain: profile.field_offset("inet_ehash_bucket", "chain")?,
            listen_bucket_size: profile.struct_size("inet_listen_hashbucket")?,
            listen_head: profile.field_offset("inet_listen_hashbucket", "nulls_head")?,
            udp_hash: Scalar::resolve(profile, "udp_table", "hash")?,
            udp_mask: Scalar::resolve(profile, "udp_table", "mask")?,
            udp_slot_size: profile.struct_size("udp_hslot")?,
            udp_slot_head: profile.field_offset("udp_hslot", "head")?,
            raw_ht,
            net_tcp_hashinfo,
            net_udp_table,
        })
    }

    /// The fields of `inet_hashinfo` to read, as one span.
    pub fn hashinfo_span(&self) -> usize {
        [self.ehash, self.ehash_mask, self.lhash2, self.lhash2_mask]
            .iter()
            .map(Scalar::end)
            .max()
            .unwrap_or(0) as usize
    }

    /// The listening and established tables of the `inet_hashinfo` read into `info`
    /// (at `at`): `(listen, established)`.
    pub fn tcp_tables(
        &self,
        info: &crate::comps::layout::StructBuf,
        nulls_node: u64,
    ) -> Result<(Buckets, Buckets), crate::LinuxError> {
        let listen = Buckets {
            what: "TCP listening hash (lhash2)",
            base: info.va(self.lhash2)?,
            count: info.get(self.lhash2_mask)?.saturating_add(1),
            stride: self.listen_bucket_size,
            head: self.listen_head,
            node_in_object: nulls_node,
            lock_bit: false,
        };
        let established = Buckets {
            what: "TCP established hash (ehash)",
            base: info.va(self.ehash)?,
            count: info.get(self.ehash_mask)?.saturating_add(1),
            stride: self.ehash_bucket_size,
            head: self.ehash_chain,
            node_in_object: nulls_node,
            lock_bit: false,
        };
        Ok((listen, established))
    }

    /// The fields of `udp_table` to read, as one span.
    pub fn udp_span(&self) -> usize {
        self.udp_hash.end().max(self.udp_mask.end()) as usize
    }

    /// The primary hash of the `udp_table` read into `table`.
    pub fn udp_buckets(
        &self,
        table: &crate::comps::layout::StructBuf,
        node: u64,
    ) -> Result<Buckets, crate::LinuxError> {
        Ok(Buckets {
            what: "UDP hash",
            base: table.va(self.udp_hash)?,
            count: table.get(self.udp_mask)?.saturating_add(1),
            stride: self.udp_slot_size,
            head: self.udp_slot_head,
            node_in_object: node,
            lock_bit: false,
        })
    }

    /// The buckets of the `raw_hashinfo` at `at`, if the profile describes it.
    pub fn raw_buckets(&self, what: &'static str, at: Va, node: u64) -> Option<Buckets> {
        let (offset, count) = self.raw_ht?;
        Some(Buckets {
            what,
            base: at.checked_add(offset)?,
            count,
            stride: 8,
            head: 0,
            node_in_object: node,
            lock_bit: false,
        })
    }
}

/// `ss`'s name of a TCP state (also used for the other families' `sk_state`): `TCP_CLOSE`
/// is `UNCONN`, `TCP_NEW_SYN_RECV` (a request socket) shows as `SYN-RECV`, as in
/// `/proc/net/tcp`.
pub fn state_name(state: u8) -> String {
    match state {
        1 => "ESTAB",
        2 => "SYN-SENT",
        3 | 12 => "SYN-RECV",
        4 => "FIN-WAIT-1",
        5 => "FIN-WAIT-2",
        6 => "TIME-WAIT",
        7 => "UNCONN",
        8 => "CLOSE-WAIT",
        9 => "LAST-ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        n => return format!("state-{n}"),
    }
    .to_owned()
}

/// The protocol name of an inet socket: `raw` for `SOCK_RAW`, else by `sk_protocol`.
pub fn protocol_name(kind: u16, protocol: u16) -> String {
    if kind == 3 {
        return "raw".into();
    }
    match protocol {
        6 => "tcp",
        17 => "udp",
        136 => "udplite",
        1 | 58 => "icmp",
        132 => "sctp",
        262 => "mptcp",
        n => return format!("proto-{n}"),
    }
    .to_owned()
}

/// An IPv4 address as text (`127.0.0.1`, `0.0.0.0`).
pub fn ipv4_text(octets: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(octets).to_string()
}

/// An IPv6 address as text, compressed (`::1`, `::`, `::ffff:127.0.0.1`).
pub fn ipv6_text(octets: [u8; 16]) -> String {
    std::net::Ipv6Addr::from(octets).to_string()
}
