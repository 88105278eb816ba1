//! The page cache on every real guest: every file of a busybox guest's initramfs (a ramfs,
//! which keeps every page) is listed with its size and all its pages, and extracting it from
//! memory gives its bytes; on a systemd guest, every cached page of the system's binaries and
//! libraries equals the same page of the file on its ext4 root image (read by `debugfs`); and
//! the files the truth script wrote on `/tmp` (a tmpfs) come back as the truth has them.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::GuestExt;
use vmi_os_linux::analysis::page_cache::{cached_files, extract};
use vmi_os_linux::LinuxError;

/// The initramfs of guest `g`, unpacked once per test run by Debian's `cpio`: path -> bytes of
/// every regular file.
fn initramfs_files(g: &common::Guest) -> BTreeMap<String, Vec<u8>> {
    let cpio = g.dir.join("initramfs.cpio.gz");
    assert!(cpio.exists(), "{}: no initramfs.cpio.gz", g.name);
    let dir =
        std::env::temp_dir().join(format!("vmi-page-cache-{}-{}", std::process::id(), g.name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | cpio -id --quiet --no-absolute-filenames",
            cpio.display()
        ))
        .current_dir(&dir)
        .status()
        .expect("sh");
    assert!(status.success(), "{}: unpacking the initramfs", g.name);
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                let rel = Path::new("/").join(e.path().strip_prefix(&dir).unwrap());
                out.insert(rel.display().to_string(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

fn extract_bytes(
    session: &vmi_core::Session,
    kernel: &vmi_os_linux::Kernel,
    path: &str,
) -> Result<(Vec<u8>, vmi_core::os::CachedFileExtract), LinuxError> {
    let out = std::env::temp_dir().join(format!(
        "vmi-extract-{}-{}",
        std::process::id(),
        path.replace('/', "_")
    ));
    let file = std::fs::File::create(&out).unwrap();
    let r = extract(session, kernel, path, &file);
    drop(file);
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    r.map(|x| (bytes, x))
}

fn initramfs_files_are_cached_whole_and_extract_exactly() {
    let with_initramfs = vmi_fixtures::select("with a busybox initramfs", |g| {
        g.dir.join("initramfs.cpio.gz").exists()
    });
    for g in with_initramfs {
        let session = g.session();
        let kernel = g.kernel(&session);
        let listed = cached_files(&session, &kernel).unwrap();
        assert!(
            listed.warnings.is_empty(),
            "{}: {:?}",
            g.name,
            listed.warnings
        );
        let rootfs: BTreeMap<&str, &vmi_core::os::CachedFile> = listed
            .items
            .iter()
            .filter(|f| f.fs_type == "rootfs")
            .map(|f| (f.path.as_str(), f))
            .collect();
        let truth = initramfs_files(&g);
        assert!(
            truth.len() >= 5,
            "{}: initramfs has {} files",
            g.name,
            truth.len()
        );
        for (path, bytes) in &truth {
            if bytes.is_empty() {
                continue; // an empty file has no page to cache
            }
            let f = rootfs
                .get(path.as_str())
                .unwrap_or_else(|| panic!("{}: {path} not in the page cache list", g.name));
            assert_eq!(f.size, bytes.len() as u64, "{}: size of {path}", g.name);
            assert_eq!(
                f.cached_pages,
                (bytes.len() as u64).div_ceil(4096),
                "{}: pages of {path} (ramfs keeps them all)",
                g.name
            );
        }
        // Extract the big binaries and a small file.
        for path in ["/bin/busybox", "/bin/vmi-target", "/init"] {
            let (got, x) = extract_bytes(&session, &kernel, path).unwrap();
            assert!(
                x.missing_pages.is_empty(),
                "{}: {path}: {:?}",
                g.name,
                x.missing_pages
            );
            assert!(
                got == truth[path],
                "{}: {path} extracted differs from the initramfs",
                g.name
            );
        }
        // Nothing listed on rootfs that the initramfs lacks.
        for path in rootfs.keys() {
            assert!(
                truth.contains_key(*path),
                "{}: listed {path}, not in the initramfs",
                g.name
            );
        }
    }
}

fn files_written_by_the_guest_on_tmpfs_extract_as_the_truth_has_them() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        // init wrote /tmp/truth-tasks and printed it as the `tasks` section (which the host
        // sorted); each target wrote its VMI-TARGET line to /tmp/target-ROLE.out.
        let (tasks, _) = extract_bytes(&session, &kernel, "/tmp/truth-tasks").unwrap();
        let mut ours: Vec<&str> = std::str::from_utf8(&tasks).unwrap().lines().collect();
        let truth = g.truth("tasks");
        let mut want: Vec<&str> = truth.lines().collect();
        ours.sort_unstable();
        want.sort_unstable();
        assert_eq!(ours, want, "{}: /tmp/truth-tasks", g.name);
        // `truth/targets` lists alpha, beta and gamma in that order.
        for (t, role) in g.targets().iter().zip(["alpha", "beta", "gamma"]) {
            let path = format!("/tmp/target-{role}.out");
            let (out, _) = extract_bytes(&session, &kernel, &path).unwrap();
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.starts_with(&format!("VMI-TARGET pid={} ", t.pid)),
                "{}: {path}: {text:?}",
                g.name
            );
        }
        // The fds target's file: 1234 bytes of 'v'.
        let pid = g.truth("fds-target").trim().to_owned();
        let (fds, x) =
            extract_bytes(&session, &kernel, &format!("/tmp/vmi-fds-{pid}.txt")).unwrap();
        assert_eq!(x.file.fs_type, "tmpfs", "{}", g.name);
        assert_eq!(fds, vec![b'v'; 1234], "{}", g.name);
    }
}

/// The bytes of `path` on the ext4 image `image`, by Debian's `debugfs` (the oracle).
fn debugfs_cat(image: &Path, path: &str) -> Vec<u8> {
    let out = std::process::Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat \"{path}\""))
        .arg(image)
        .output()
        .expect("debugfs (Debian package e2fsprogs)");
    assert!(
        out.status.success(),
        "debugfs cat {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ext4_cached_pages_equal_the_disk_image() {
    for g in vmi_fixtures::select("with an ext4 root image", |g| {
        g.dir.join("root.img").exists()
    }) {
        let session = g.session();
        let kernel = g.kernel(&session);
        let listed = cached_files(&session, &kernel).unwrap();
        assert!(
            listed.warnings.is_empty(),
            "{}: {:?}",
            g.name,
            listed.warnings
        );
        // Binaries and libraries: read-only since the image was made, so memory and disk agree.
        let mut system: Vec<&vmi_core::os::CachedFile> = listed
            .items
            .iter()
            .filter(|f| f.fs_type == "ext4" && f.path.starts_with("/usr/") && f.size > 0)
            .collect();
        system.sort_by_key(|f| std::cmp::Reverse(f.cached_pages));
        assert!(
            system.len() >= 20,
            "{}: {} cached files under /usr",
            g.name,
            system.len()
        );
        let mut pages_compared = 0u64;
        for f in system.iter().take(25) {
            let (got, x) = extract_bytes(&session, &kernel, &f.path).unwrap();
            let disk = debugfs_cat(&g.dir.join("root.img"), &f.path);
            assert_eq!(disk.len() as u64, f.size, "{}: size of {}", g.name, f.path);
            let missing = |i: u64| x.missing_pages.iter().any(|&(a, b)| (a..b).contains(&i));
            for i in 0..f.size.div_ceil(4096) {
                if missing(i) {
                    continue;
                }
                let (a, b) = ((i * 4096) as usize, ((i + 1) * 4096).min(f.size) as usize);
                assert!(
                    got[a..b] == disk[a..b],
                    "{}: page {i} of {} differs from the disk",
                    g.name,
                    f.path
                );
                pages_compared += 1;
            }
        }
        assert!(
            pages_compared >= 500,
            "{}: only {pages_compared} pages compared",
            g.name
        );
    }
}

fn an_uncached_path_is_a_clear_error() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        match extract_bytes(&session, &kernel, "/no/such/file") {
            Err(LinuxError::NotCached(p)) => assert_eq!(p, "/no/such/file"),
            other => panic!("{}: {:?}", g.name, other.map(|(_, x)| x)),
        }
    }
}

vmi_fixtures::real_guest_tests!(
    initramfs_files_are_cached_whole_and_extract_exactly,
    ext4_cached_pages_equal_the_disk_image,
    files_written_by_the_guest_on_tmpfs_extract_as_the_truth_has_them,
    an_uncached_path_is_a_clear_error,
);
