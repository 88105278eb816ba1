//! `struct unix_sock` and the Unix socket table: a Unix socket's name, its peer, and where
//! the kernel keeps every Unix socket of a namespace.
//!
//! `unix_sock.addr` points to a `struct unix_address { refcount_t refcnt; int len;
//! struct sockaddr_un name[]; }`, NULL while unbound; `len` counts `sun_family` (2 bytes) and
//! the path bytes given to `bind` (for a path, its NUL too). A name whose first byte is NUL is
//! in the abstract namespace: `/proc/net/unix` prints it with `@` for the NUL, and any NUL
//! inside as `@` too; a path loses its trailing NUL. `len` is guest data: above
//! `sizeof(struct sockaddr_un)` (110) the name is cut there, with a warning.
//!
//! `unix_sock.peer` is the connected peer's `sock` (a socketpair's other end, the client of an
//! accepted connection), NULL otherwise.
//!
//! Since 6.0 every namespace has its own table, `net->unx.table.buckets`: `UNIX_HASH_SIZE`
//! (512) `hlist_head`s, the first 256 for unbound sockets, the others for bound ones, chained
//! by `sk_node`. (Before 6.0 a global `unix_socket_table`: not supported here.)

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::Scalar;
use crate::comps::sock::{read_field, read_pointer, Buckets};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;

/// `UNIX_HASH_SIZE`: buckets of a namespace's table (`256 * 2`).
pub const UNIX_HASH_SIZE: u64 = 512;
/// `sizeof(struct sockaddr_un)`: the longest name.
pub const SOCKADDR_UN_SIZE: u64 = 110;

/// Where the fields of `unix_sock`, `unix_address` and the namespace's table are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixLayout {
    addr: u64,
    peer: u64,
    addr_len: Scalar,
    /// Offset of `name.sun_path` in `unix_address`.
    addr_path: u64,
    /// Offset of `sun_path` in `sockaddr_un` (the size of `sun_family`).
    family_size: u64,
    /// Offset of `net.unx.table.buckets` in `struct net`.
    pub net_buckets: Option<u64>,
}

impl UnixLayout {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<UnixLayout, ProfileError> {
        let family_size = profile.field_offset("sockaddr_un", "sun_path")?;
        let net_buckets = (|| {
            let unx = profile.field_offset("net", "unx").ok()?;
            let table = profile.field_offset("netns_unix", "table").ok()?;
            let buckets = profile.field_offset("unix_table", "buckets").ok()?;
            unx.checked_add(table)?.checked_add(buckets)
        })();
        Ok(UnixLayout {
            addr: profile.field_offset("unix_sock", "addr")?,
            peer: profile.field_offset("unix_sock", "peer")?,
            addr_len: Scalar::resolve(profile, "unix_address", "len")?,
            addr_path: profile
                .field_offset("unix_address", "name")?
                .checked_add(family_size)
                .ok_or_else(|| {
                    crate::comps::layout::unexpected_layout("unix_address", "name", "overflow")
                })?,
            family_size,
            net_buckets,
        })
    }

    /// The Unix table of the namespace at `net`, if the kernel has per-namespace tables.
    pub fn table(
        &self,
        mem: &VirtualMemory<'_>,
        net: Va,
        node: u64,
    ) -> Result<Option<Buckets>, LinuxError> {
        let Some(off) = self.net_buckets else {
            return Ok(None);
        };
        let base = read_pointer(mem, "net", net, off)?;
        if base.raw() == 0 {
            return Ok(None);
        }
        Ok(Some(Buckets {
            what: "Unix socket table",
            base,
            count: UNIX_HASH_SIZE,
            stride: 8,
            head: 0,
            node_in_object: node,
            lock_bit: false,
        }))
    }
}

/// A Unix socket's name and peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixInfo {
    /// Its name as `/proc/net/unix` prints it: a path, `@name`, or `""` when unbound.
    pub name: String,
    /// `unix_sock.peer`, when connected.
    pub peer: Option<Va>,
}

/// Reads the name and peer of the `unix_sock` at `sk`; a damaged name gives a warning beside
/// what could be read.
pub fn read_unix(
    mem: &VirtualMemory<'_>,
    layout: &UnixLayout,
    sk: Va,
    warnings: &mut Vec<LinuxError>,
) -> Result<UnixInfo, LinuxError> {
    let mode = mem.space().mode;
    let peer = read_pointer(mem, "unix_sock", sk, layout.peer)?;
    let peer = (peer.raw() != 0 && is_kernel_pointer(mode, peer)).then_some(peer);
    let addr = read_pointer(mem, "unix_sock", sk, layout.addr)?;
    if addr.raw() == 0 {
        return Ok(UnixInfo {
            name: String::new(),
            peer,
        });
    }
    if !is_kernel_pointer(mode, addr) {
        warnings.push(LinuxError::Corrupt {
            what: "unix_sock",
            at: sk,
            reason: format!("addr {addr} is not an aligned kernel address"),
        });
        return Ok(UnixInfo {
            name: String::new(),
            peer,
        });
    }
    // An int: negative values read as huge, and are cut like them.
    let claimed = read_field(mem, "unix_address", addr, layout.addr_len)? as u32 as i32;
    let total = if claimed < 0 || claimed as u64 > SOCKADDR_UN_SIZE {
        warnings.push(LinuxError::Corrupt {
            what: "unix_address",
            at: addr,
            reason: format!(
                "length {claimed} is outside 0..={SOCKADDR_UN_SIZE}: the name is cut to \
                 {SOCKADDR_UN_SIZE} bytes"
            ),
        });
        SOCKADDR_UN_SIZE
    } else {
        claimed as u64
    };
    let path_len = total.saturating_sub(layout.family_size) as usize;
    let mut path = vec![0u8; path_len];
    if path_len > 0 {
        let at = addr
            .checked_add(layout.addr_path)
            .ok_or_else(|| LinuxError::Corrupt {
                what: "unix_address",
                at: addr,
                reason: "name address overflows".into(),
            })?;
        mem.read_exact(at, &mut path)?;
    }
    Ok(UnixInfo {
        name: render_name(&path),
        peer,
    })
}

/// A `sun_path` of `len - sizeof(sun_family)` bytes as `/proc/net/unix` prints it
/// (net/unix/af_unix.c `unix_seq_show`).
pub fn render_name(path: &[u8]) -> String {
    let (prefix, body) = match path.first() {
        None => return String::new(),
        Some(0) => ("@", &path[1..]),
        // A path: its last byte is the NUL `bind` counted.
        Some(_) => ("", &path[..path.len() - 1]),
    };
    let mut out = String::from(prefix);
    let text: Vec<u8> = body
        .iter()
        .map(|&b| if b == 0 { b'@' } else { b })
        .collect();
    out.push_str(&String::from_utf8_lossy(&text));
    out
}

/// `ss`'s name of a Unix socket type.
pub fn kind_name(kind: u16) -> String {
    match kind {
        1 => "stream".into(),
        2 => "dgram".into(),
        5 => "seqpacket".into(),
        n => format!("type-{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::render_name;

    #[test]
    fn names_render_as_proc_net_unix() {
        assert_eq!(render_name(b""), "");
        assert_eq!(render_name(b"/tmp/x.sock\0"), "/tmp/x.sock");
        assert_eq!(render_name(b"\0abstract"), "@abstract");
        assert_eq!(render_name(b"\0a\0b"), "@a@b");
        assert_eq!(render_name(b"\0"), "@");
    }
}
