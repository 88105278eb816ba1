//! Raw FFI, all of it: the peer credentials of a Unix socket and the signal handlers that
//! keep a paused guest from being left paused by Ctrl-C.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// The pid of the process at the other end of a connected Unix socket (`SO_PEERCRED`).
pub fn peer_pid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid, writable and live for the call; `len` holds the
    // size of `cred`, so the kernel writes at most that many bytes. The fd is open (borrowed
    // from `stream`).
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(cred.pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::other("the socket's peer has no pid (another namespace?)"))
}

/// The signal that arrived while handlers were installed (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Signals that would otherwise end the process with the guest paused.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The handlers that were in place before [`install_interrupt_handlers`].
static SAVED: Mutex<Option<Vec<(libc::c_int, libc::sigaction)>>> = Mutex::new(None);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    PENDING.store(sig, Ordering::SeqCst);
}

/// The signal that arrived since the handlers were installed, if any.
pub fn pending_signal() -> Option<i32> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Catches SIGINT/SIGTERM/SIGHUP: they only set a flag ([`pending_signal`]), so that the
/// operation in flight fails fast and the guest is resumed before the process dies
/// ([`restore_and_reraise`]). Idempotent.
pub fn install_interrupt_handlers() {
    let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
    if saved.is_some() {
        return;
    }
    PENDING.store(0, Ordering::SeqCst);
    let mut old_list = Vec::new();
    for sig in SIGNALS {
        // SAFETY: an all-zero `sigaction` is a valid value of the C struct (no handler, empty
        // mask, no flags); the fields that matter are set right below.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // No SA_RESTART: a blocking read returns EINTR at once. SA_RESETHAND: a second Ctrl-C
        // kills the process the usual way.
        new.sa_flags = libc::SA_RESETHAND;
        // SAFETY: as above, a zeroed sigaction is valid; the kernel fills it in.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to valid, live `sigaction` values; the handler only does
        // an atomic store, which is async-signal-safe.
        if unsafe { libc::sigaction(sig, &new, &mut old) } == 0 {
            if old.sa_sigaction == libc::SIG_IGN {
                // The process ignores it (a background job's SIGINT): keep it ignored.
                // SAFETY: `old` is the disposition the kernel just returned for `sig`.
                unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
            } else {
                old_list.push((sig, old));
            }
        }
    }
    *saved = Some(old_list);
}

/// Puts the previous handlers back; if a signal arrived meanwhile, raises it again now (the
/// guest has been resumed), so the process ends as the user asked.
pub fn restore_and_reraise() {
    let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(list) = saved.take() else { return };
    for (sig, old) in &list {
        // SAFETY: `old` is the handler the kernel gave us for `sig`; restoring it is valid.
        unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
    }
    drop(saved);
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        // SAFETY: raising a signal has no memory-safety preconditions.
        unsafe { libc::raise(sig) };
    }
}
