//! Where the gdbstub vmi starts is put: a Unix socket in a directory only QEMU's user can
//! enter.
//!
//! A gdbstub controls the VM (stop, registers, memory writes) and stays listening until QEMU
//! exits; QEMU starts one per process only (a second HMP `gdbserver` fails), so the socket
//! vmi starts is the VM's for good and later runs reuse it. Whoever can connect to it
//! controls the VM, so it goes where only its owner can reach it:
//!
//! - `$XDG_RUNTIME_DIR/vmi-gdb/` when QEMU runs as the user running vmi and that variable
//!   names a directory (a per-user 0700 directory on systemd machines);
//! - otherwise `/tmp/vmi-gdb-<uid>/`, `uid` being QEMU's user (root running vmi on another
//!   user's QEMU makes the directory that user's, so that QEMU can create the socket in it).
//!
//! The directory is created with mode 0700. If it exists it must be a real directory (not a
//! symlink), owned by QEMU's user, with no access for group or others; anything else (a
//! directory another user created first, to catch the socket) is refused, and the backend
//! falls back to QMP/HMP. The socket is `qemu-<pid>.sock` in it. A later run finds the stub
//! again through HMP `info chardev` (QEMU's own record of it), whatever its path.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The user id owning a path (`/proc/PID` belongs to the process's effective user).
fn owner(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.uid())
}

/// The effective user id of QEMU (process `pid`) and of this process.
pub fn uids(pid: u32) -> std::io::Result<(u32, u32)> {
    Ok((
        owner(Path::new(&format!("/proc/{pid}")))?,
        owner(Path::new("/proc/self"))?,
    ))
}

/// The directory for the gdbstub socket of a QEMU running as `qemu_uid`, when vmi runs as
/// `our_uid` with `$XDG_RUNTIME_DIR` = `runtime_dir` (see the module docs).
pub fn socket_dir(qemu_uid: u32, our_uid: u32, runtime_dir: Option<&Path>) -> PathBuf {
    match runtime_dir {
        Some(d) if qemu_uid == our_uid && d.is_absolute() && d.is_dir() => d.join("vmi-gdb"),
        _ => PathBuf::from(format!("/tmp/vmi-gdb-{qemu_uid}")),
    }
}

/// The socket path for QEMU `pid` in `dir`.
pub fn socket_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("qemu-{pid}.sock"))
}

/// Why a directory is not private to one user.
fn not_private(path: &Path, owner: u32) -> Option<String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    if meta.file_type().is_symlink() {
        return Some(format!("{} is a symbolic link", path.display()));
    }
    if !meta.is_dir() {
        return Some(format!("{} is not a directory", path.display()));
    }
    if meta.uid() != owner {
        return Some(format!(
            "{} belongs to uid {}, not uid {owner}",
            path.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Some(format!(
            "{} has mode {mode:03o}: group or others can enter it",
            path.display()
        ));
    }
    None
}

/// Makes `dir` a directory only `owner` can enter (mode 0700), or checks that it is one.
///
/// # Errors
///
/// Why the directory cannot be made or is not private (the caller then does without the
/// gdbstub).
pub fn ensure_private_dir(dir: &Path, owner: u32, our_uid: u32) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            if owner != our_uid {
                std::os::unix::fs::chown(dir, Some(owner), None)
                    .map_err(|e| format!("giving {} to uid {owner}: {e}", dir.display()))?;
            }
            // The umask may have taken bits away, never added any; set exactly 0700 anyway.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating {}: {e}", dir.display())),
    }
    match not_private(dir, owner) {
        Some(why) => Err(format!("refusing to put the gdbstub socket there: {why}")),
        None => Ok(()),
    }
}

/// Whether the socket at `path` sits in a directory private to `owner` (for `vmi info` about
/// a stub found running).
pub fn is_private(path: &Path, owner: u32) -> Result<(), String> {
    match path.parent() {
        Some(dir) => not_private(dir, owner).map_or(Ok(()), Err),
        None => Err(format!("{} has no directory", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmi-gdb-socket-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_new_directory_is_0700_and_an_open_one_is_refused() {
        let me = owner(Path::new("/proc/self")).unwrap();
        let base = scratch("mode");
        let dir = base.join("vmi-gdb");
        ensure_private_dir(&dir, me, me).unwrap();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), me);
        // Again: reused as it is.
        ensure_private_dir(&dir, me, me).unwrap();
        assert!(is_private(&socket_path(&dir, 42), me).is_ok());

        // Someone made it first, open to others.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = ensure_private_dir(&dir, me, me).unwrap_err();
        assert!(e.contains("mode 755"), "{e}");
        assert!(is_private(&socket_path(&dir, 42), me).is_err());

        // A symbolic link to a private directory is not accepted either.
        let real = base.join("real");
        ensure_private_dir(&real, me, me).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = ensure_private_dir(&link, me, me).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");

        // Owned by another user than QEMU's.
        let e = ensure_private_dir(&real, me.wrapping_add(1), me).unwrap_err();
        assert!(e.contains("belongs to uid"), "{e}");

        // A file in the way.
        let file = base.join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(ensure_private_dir(&file, me, me)
            .unwrap_err()
            .contains("not a directory"));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn the_directory_follows_qemu_s_user() {
        let rt = scratch("runtime");
        assert_eq!(socket_dir(1000, 1000, Some(&rt)), rt.join("vmi-gdb"));
        assert_eq!(
            socket_dir(1000, 0, Some(&rt)),
            PathBuf::from("/tmp/vmi-gdb-1000")
        );
        assert_eq!(socket_dir(0, 0, None), PathBuf::from("/tmp/vmi-gdb-0"));
        assert_eq!(
            socket_dir(0, 0, Some(Path::new("relative"))),
            PathBuf::from("/tmp/vmi-gdb-0")
        );
        assert_eq!(
            socket_path(Path::new("/tmp/vmi-gdb-0"), 77),
            PathBuf::from("/tmp/vmi-gdb-0/qemu-77.sock")
        );
        let _ = std::fs::remove_dir_all(&rt);
    }
}
