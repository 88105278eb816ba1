//! `struct socket` and `struct socket_alloc`: the VFS side of a socket, reached from an open
//! file.
//!
//! A socket file's `file->f_op` is `socket_file_ops` and its `file->private_data` is the
//! `struct socket` (net/socket.c `sock_from_file`); `socket->sk` is the protocol's
//! `struct sock` (see [`crate::comps::sock`]). The socket is allocated inside a
//! `struct socket_alloc { struct socket socket; struct inode vfs_inode; }` (`SOCKET_I`), so
//! its inode number, the `INO` of `socket:[INO]` and the inode column of `/proc/net/*`
//! (`sock_i_ino`: `sk->sk_socket`'s inode), is read at `socket + (vfs_inode - socket) +
//! i_ino`. Kernel sockets (`sock_create_kern`) have such an inode too, without any file.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{unexpected_layout, Scalar, StructBuf};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;

/// Where the fields of `file` (the socket-file test), `socket` and `socket_alloc` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLayout {
    /// `file.f_op`.
    pub f_op: Scalar,
    /// `file.private_data`.
    pub private_data: Scalar,
    file_span: usize,
    /// `socket.state` (`SS_UNCONNECTED` 1, `SS_CONNECTING` 2, `SS_CONNECTED` 3, ...).
    pub state: Scalar,
    /// `socket.type` (`SOCK_STREAM` 1, `SOCK_DGRAM` 2, ...).
    pub kind: Scalar,
    /// `socket.sk`.
    pub sk: Scalar,
    socket_span: usize,
    /// Offset of `i_ino` from the start of the `struct socket` (through `socket_alloc`).
    inode_number: Scalar,
}

fn span_of(ty: &str, fields: &[Scalar]) -> Result<usize, ProfileError> {
    let end = fields.iter().map(Scalar::end).max().unwrap_or(0);
    usize::try_from(end)
        .ok()
        .filter(|&e| e as u64 <= crate::comps::layout::MAX_STRUCT_SIZE)
        .ok_or_else(|| unexpected_layout(ty, "<span>", "too large"))
}

impl SocketLayout {
    /// Resolves the layout from `profile`.
    pub fn resolve(profile: &Profile) -> Result<SocketLayout, ProfileError> {
        let f_op = Scalar::resolve(profile, "file", "f_op")?;
        let private_data = Scalar::resolve(profile, "file", "private_data")?;
        let state = Scalar::resolve(profile, "socket", "state")?;
        let kind = Scalar::resolve(profile, "socket", "type")?;
        let sk = Scalar::resolve(profile, "socket", "sk")?;
        let socket_in_alloc = profile.field_offset("socket_alloc", "socket")?;
        let inode_in_alloc = profile.field_offset("socket_alloc", "vfs_inode")?;
        let i_ino = Scalar::resolve(profile, "inode", "i_ino")?;
        let offset = inode_in_alloc
            .checked_sub(socket_in_alloc)
            .and_then(|d| d.checked_add(i_ino.offset))
            .ok_or_else(|| {
                unexpected_layout("socket_alloc", "vfs_inode", "inode lies before the socket")
            })?;
        Ok(SocketLayout {
            file_span: span_of("file", &[f_op, private_data])?,
            f_op,
            private_data,
            socket_span: span_of("socket", &[state, kind, sk])?,
            state,
            kind,
            sk,
            inode_number: Scalar { offset, ..i_ino },
        })
    }
}

/// A `struct socket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketInfo {
    /// Its address.
    pub socket: Va,
    /// `socket->state`.
    pub state: u32,
    /// `socket->type`.
    pub kind: u16,
    /// `socket->sk`, `None` when NULL (a socket being released).
    pub sk: Option<Va>,
}

/// The `struct socket` of the open file at `file`, if it is a socket file (its `f_op` is
/// `socket_file_ops`, at `socket_file_ops`).
pub fn socket_of_file(
    mem: &VirtualMemory<'_>,
    layout: &SocketLayout,
    socket_file_ops: Va,
    file: Va,
) -> Result<Option<Va>, LinuxError> {
    let f = StructBuf::read(mem, "file", file, layout.file_span)?;
    if f.va(layout.f_op)? != socket_file_ops {
        return Ok(None);
    }
    let socket = f.va(layout.private_data)?;
    if !is_kernel_pointer(mem.space().mode, socket) {
        return Err(f.corrupt(format!(
            "socket file whose private_data {socket} is not an aligned kernel address"
        )));
    }
    Ok(Some(socket))
}

/// Reads the `struct socket` at `socket`.
pub fn read_socket(
    mem: &VirtualMemory<'_>,
    layout: &SocketLayout,
    socket: Va,
) -> Result<SocketInfo, LinuxError> {
    let s = StructBuf::read(mem, "socket", socket, layout.socket_span)?;
    let sk = s.va(layout.sk)?;
    let sk = match sk.raw() {
        0 => None,
        _ if is_kernel_pointer(mem.space().mode, sk) => Some(sk),
        _ => {
            return Err(s.corrupt(format!("sk {sk} is not an aligned kernel address")));
        }
    };
    Ok(SocketInfo {
        socket,
        // Enum and short: the widths come from the profile.
        state: s.get(layout.state)? as u32,
        kind: s.get(layout.kind)? as u16,
        sk,
    })
}

/// The inode number of the socket at `socket` (`SOCK_INODE(socket)->i_ino`).
pub fn socket_inode(
    mem: &VirtualMemory<'_>,
    layout: &SocketLayout,
    socket: Va,
) -> Result<u64, LinuxError> {
    let at = socket
        .checked_add(layout.inode_number.offset)
        .ok_or_else(|| LinuxError::Corrupt {
            what: "socket",
            at: socket,
            reason: "its inode's address overflows".into(),
        })?;
    let mut bytes = [0u8; 8];
    let width = usize::from(layout.inode_number.size);
    mem.read_exact(at, &mut bytes[..width])?;
    Ok(u64::from_le_bytes(bytes))
}
