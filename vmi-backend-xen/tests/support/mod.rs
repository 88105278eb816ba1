//! Test support shared by vmi-backend-xen's and vmi-cli's Xen tests: the test-only library
//! (`vmi-fake-xen`) built and laid out under the real Xen sonames, and the real libraries'
//! presence.

#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The sonames the backend's loader looks for.
pub const SONAMES: [&str; 4] = [
    "libxenctrl.so.4.17",
    "libxenforeignmemory.so.1",
    "libxenstore.so.4",
    "libxenevtchn.so.1",
];

fn workspace_root() -> PathBuf {
    // Both vmi-backend-xen and vmi-cli sit directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate directory has a parent")
        .to_path_buf()
}

/// Builds `vmi-fake-xen` (once per test process) and returns a directory holding it under
/// each Xen soname: the value for `$VMI_XEN_LIBRARY_DIR`.
pub fn fake_library_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        // The same target directory: cargo releases its lock before running tests, and the
        // dependencies are already built there.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "-p", "vmi-fake-xen", "--target-dir"])
            .arg(&target)
            .status()
            .expect("running cargo build -p vmi-fake-xen");
        assert!(status.success(), "cargo build -p vmi-fake-xen failed");
        let built = target.join("debug").join("libvmi_fake_xen.so");
        let dir = std::env::temp_dir().join(format!("vmi-fake-xen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in SONAMES {
            // Copies, not links: the loader must treat them as the four libraries they stand for.
            std::fs::copy(&built, dir.join(name)).unwrap();
        }
        dir
    })
    .clone()
}

/// Whether the real Xen run-time libraries are installed; when they are not, the test is a
/// `vmi_fixtures::skip` (it fails under `$VMI_REQUIRE_FIXTURES`, as `scripts/test` sets it,
/// which installs them).
pub fn real_libraries_present(test: &str) -> bool {
    let present = vmi_backend_xen::XenLibraries::load(&vmi_backend_xen::LibrarySearch::System);
    match present {
        Ok(_) => true,
        Err(e) => {
            vmi_fixtures::skip(format_args!(
                "{test} needs Debian's Xen 4.17 libraries (libxenmisc4.17 libxenforeignmemory1 \
                 libxenevtchn1 libxenstore4): {e}"
            ));
            false
        }
    }
}

/// Whether this machine is a Xen domain, where the outside-dom0 failure cannot be tried (an
/// optional skip: nothing the suite promises is missing).
pub fn is_xen_domain() -> bool {
    let xen = std::path::Path::new("/dev/xen/privcmd").exists();
    if xen {
        vmi_fixtures::skip_optional(
            "this machine looks like a Xen domain (/dev/xen/privcmd exists)",
        );
    }
    xen
}
