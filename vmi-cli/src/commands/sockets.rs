//! `vmi sockets` (alias `netstat`): every socket of the guest, as `ss -tuanxp` lists them,
//! through the OS-neutral [`vmi_core::os::Sockets`] capability.
//!
//! The table has `ss`'s columns: `netid` (`tcp`, `udp`, `raw`, `u_str`, `u_dgr`, `u_seq`, `nl`,
//! `p_raw`, `p_dgr`), `state`, `local` and `peer` (`ADDR:PORT`, IPv6 in brackets; a Unix
//! name or `*`; netlink `PROTOCOL:PORTID`), the inode and the holding pids. JSON gives the
//! `Socket` records whole.

use vmi_core::os::Socket;
use vmi_core::BoxError;

use super::os::warn;
use super::Context;
use crate::output;

/// `ss`'s netid of a socket.
fn netid(s: &Socket) -> String {
    match (s.family.as_str(), s.protocol.as_str()) {
        ("unix", "stream") => "u_str".into(),
        ("unix", "dgram") => "u_dgr".into(),
        ("unix", "seqpacket") => "u_seq".into(),
        ("netlink", _) => "nl".into(),
        ("packet", "raw") => "p_raw".into(),
        ("packet", "dgram") => "p_dgr".into(),
        (_, p) if !p.is_empty() => p.to_owned(),
        (f, _) => f.to_owned(),
    }
}

/// An endpoint as `ss -n` prints it.
fn endpoint(s: &Socket, address: &str, port: u16, local: bool) -> String {
    match s.family.as_str() {
        "inet" => format!("{address}:{}", port_text(port)),
        "inet6" => format!("[{address}]:{}", port_text(port)),
        "netlink" => {
            if local {
                format!("{}:{address}", s.protocol)
            } else {
                format!("*:{address}")
            }
        }
        "packet" if local => format!("{address}:{port:#06x}"),
        "packet" => "*".into(),
        _ if address.is_empty() => "*".into(),
        _ => address.to_owned(),
    }
}

fn port_text(port: u16) -> String {
    if port == 0 {
        "*".into()
    } else {
        port.to_string()
    }
}

/// `vmi sockets`.
pub fn run(ctx: &Context<'_>) -> Result<(), BoxError> {
    let sockets = ctx.session.os_capability("sockets", |os| os.sockets())?;
    let partial = sockets.sockets(ctx.session)?;
    warn(&partial);
    output::emit(ctx.format, &partial.items, || {
        let rows: Vec<Vec<String>> = partial
            .items
            .iter()
            .map(|s| {
                vec![
                    netid(s),
                    s.state.clone(),
                    endpoint(s, &s.local_address, s.local_port, true),
                    endpoint(s, &s.remote_address, s.remote_port, false),
                    s.inode.to_string(),
                    s.pids
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ]
            })
            .collect();
        output::columns(&["netid", "state", "local", "peer", "inode", "pids"], &rows)
    })
}
