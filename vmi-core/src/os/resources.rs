//! What a process holds and where it runs: open files, sockets, mounts, namespaces and
//! credentials (`vmi lsof`, `sockets`, `mounts`, `namespaces`, `creds`). The fields are those a
//! responder reads off `/proc` (Linux's names); an OS that has no such concept leaves the
//! capability out rather than inventing values.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::addr::Va;

use super::model::Details;

/// What an open file is, as the mode of its inode (or the OS's object type) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A character device (`/dev/null`, a tty).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A pipe or FIFO.
    Fifo,
    /// A socket.
    Socket,
    /// A symbolic link (an `O_PATH` fd of one).
    Symlink,
    /// A file with no inode of its own kind (Linux `anon_inode:[eventfd]`, `[timerfd]`, ...).
    Anonymous,
    /// Anything else (a mode the reader does not know).
    Unknown,
}

impl FileKind {
    /// The short name `lsof` prints in its TYPE column (`REG`, `DIR`, `CHR`, ...).
    pub fn lsof_type(self) -> &'static str {
        match self {
            FileKind::Regular => "REG",
            FileKind::Directory => "DIR",
            FileKind::CharDevice => "CHR",
            FileKind::BlockDevice => "BLK",
            FileKind::Fifo => "FIFO",
            FileKind::Socket => "sock",
            FileKind::Symlink => "LINK",
            FileKind::Anonymous => "a_inode",
            FileKind::Unknown => "unknown",
        }
    }
}

/// A file a process has open (`vmi lsof`): one per descriptor (Windows: per handle).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenFile {
    /// The process.
    pub pid: u32,
    /// The descriptor number (Windows: the handle value).
    pub fd: u64,
    /// What it is.
    pub kind: FileKind,
    /// What it names, as `readlink /proc/PID/fd/FD` shows it: a path (mounts resolved,
    /// ` (deleted)` when unlinked), `pipe:[INODE]`, `socket:[INODE]`, `anon_inode:[eventfd]`...
    pub path: String,
    /// The file position in bytes (`pos:` of fdinfo).
    pub position: u64,
    /// The open flags as the OS keeps them (Linux: `O_*` bits, `flags:` of fdinfo, octal there).
    pub flags: u64,
    /// The inode number, where the file has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// The kernel object of the open file (Linux `struct file`).
    pub object: Va,
    /// What only this OS has (Linux `mnt_id`, `mode`).
    pub os: Details,
}

/// A network or local socket (`vmi sockets`), as `ss -tuanxp` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// Address family: `unix`, `inet`, `inet6`, `netlink`, `packet`, or `family-N`.
    pub family: String,
    /// Protocol: `tcp`, `udp`, `raw` (inet); `stream`, `dgram`, `seqpacket` (unix); the netlink
    /// protocol (`route`, `audit`, ...); the socket type for packet sockets.
    pub protocol: String,
    /// State as `ss` names it: `LISTEN`, `ESTAB`, `TIME-WAIT`, ..., `UNCONN` for an unconnected
    /// datagram or raw socket.
    pub state: String,
    /// Local address: an IP address (`127.0.0.1`, `::1`, `0.0.0.0`, `*` when unbound), a Unix
    /// path (`@name` for the abstract namespace, `""` when unnamed), a netlink port id.
    pub local_address: String,
    /// Local port (0 where the family has none).
    pub local_port: u16,
    /// Remote address, in the same forms (`""` when unconnected).
    pub remote_address: String,
    /// Remote port (0 where the family has none or it is unconnected).
    pub remote_port: u16,
    /// The socket's inode number (`socket:[INODE]`).
    pub inode: u64,
    /// Processes holding a descriptor to it, by pid.
    pub pids: Vec<u32>,
    /// The kernel object (Linux `struct sock`).
    pub object: Va,
    /// What only this OS has (Linux queue sizes, `uid`, the Unix peer's inode).
    pub os: Details,
}

/// A mount in a process's mount namespace (`vmi mounts PID`), as `/proc/PID/mountinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Mount id (mountinfo's first field).
    pub id: u32,
    /// Id of the parent mount (its own id for the namespace root).
    pub parent_id: u32,
    /// The device as `major:minor`.
    pub device: String,
    /// The directory of the filesystem that is mounted (`/` unless a bind mount of a subtree).
    pub root: String,
    /// Where it is mounted, relative to the process's root.
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub options: String,
    /// Filesystem type (`ext4`, `tmpfs`).
    pub fs_type: String,
    /// Mount source (the device name, or what was given to mount: `tmpfs`, `/dev/vda1`).
    pub source: String,
    /// The kernel object (Linux `struct mount`).
    pub object: Va,
    /// What only this OS has (Linux propagation `shared:N`, `master:N`).
    pub os: Details,
}

/// The namespaces and control group of a process (`vmi namespaces`): what makes a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessNamespaces {
    /// The process (as the initial PID namespace numbers it).
    pub pid: u32,
    /// The process's name.
    pub name: String,
    /// Each namespace by kind (`cgroup`, `ipc`, `mnt`, `net`, `pid`, `pid_for_children`,
    /// `time`, `time_for_children`, `user`, `uts`) to its inode number, as the links in
    /// `/proc/PID/ns` show them.
    pub namespaces: BTreeMap<String, u64>,
    /// The pid in each PID namespace it is in, outermost first (`NSpid:` of `status`); the
    /// last is the pid the process sees for itself.
    pub nspid: Vec<u32>,
    /// Its control group path (cgroup v2, as `/proc/PID/cgroup` shows it after `0::`).
    pub cgroup: String,
    /// What only this OS has (Linux: the UTS namespace's `hostname`).
    pub os: Details,
}

/// A process's credentials (`vmi creds PID`), as `/proc/PID/status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    /// The process.
    pub pid: u32,
    /// Real, effective, saved and filesystem user ids.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem group ids.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Capability sets (bit N = capability N), named as `status` does.
    pub capabilities: CapabilitySets,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
    /// The seccomp mode: 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
    /// What only this OS has (Linux `securebits`, the `cred` address).
    pub os: Details,
}

/// The five capability sets of a process; in JSON as `"0x..."` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CapabilitySets {
    /// `CapInh`.
    #[serde(serialize_with = "crate::serde_hex::u64")]
    pub inheritable: u64,
    /// `CapPrm`.
    #[serde(serialize_with = "crate::serde_hex::u64")]
    pub permitted: u64,
    /// `CapEff`.
    #[serde(serialize_with = "crate::serde_hex::u64")]
    pub effective: u64,
    /// `CapBnd`.
    #[serde(serialize_with = "crate::serde_hex::u64")]
    pub bounding: u64,
    /// `CapAmb`.
    #[serde(serialize_with = "crate::serde_hex::u64")]
    pub ambient: u64,
}

/// How much a finding of an integrity check matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// An inventory item a responder should see (a loaded eBPF program).
    Info,
    /// Something a clean kernel does not have: a hook, a hidden module.
    Suspicious,
}

/// One result of a kernel integrity check (`vmi integrity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check that made it (`syscall_table`, `idt`, `hidden_modules`, `inline_hooks`,
    /// `ebpf`).
    pub check: String,
    /// How much it matters.
    pub severity: Severity,
    /// What was checked (`sys_call_table[59]`, `IDT[14]`, a module or function name).
    pub subject: String,
    /// Where the subject is, or where it points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Va>,
    /// What is wrong, or what the item is, in words.
    pub detail: String,
    /// What only this OS has.
    #[serde(skip_serializing_if = "Details::is_empty")]
    pub os: Details,
}

/// A file with pages in the kernel's page cache (`vmi files`): what a responder can recover
/// from memory alone, even after the file is gone from the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedFile {
    /// Its path, as `d_path` renders it through a mount of its filesystem (` (deleted)` when
    /// unlinked); `""` when it has no name left.
    pub path: String,
    /// Its inode number.
    pub inode: u64,
    /// Its size in bytes (`i_size`).
    pub size: u64,
    /// Pages of it in the page cache.
    pub cached_pages: u64,
    /// The filesystem's type (`ext4`, `tmpfs`, `ramfs`).
    pub fs_type: String,
    /// The kernel object (Linux `struct inode`).
    pub object: Va,
    /// What only this OS has.
    #[serde(skip_serializing_if = "Details::is_empty")]
    pub os: Details,
}

/// What [`crate::os::PageCache::extract_cached_file`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedFileExtract {
    /// The file.
    pub file: CachedFile,
    /// Bytes written (the file's size).
    pub bytes_written: u64,
    /// Pages copied from memory.
    pub pages_copied: u64,
    /// Page ranges `[first, end)` not in memory (written as zeros): the file is only
    /// partly recovered when this is not empty.
    pub missing_pages: Vec<(u64, u64)>,
    /// What could not be read of the file's page index (a corrupted tree is cut there).
    pub warnings: Vec<String>,
}
