//! Finding a plugin by name: the current directory, then `$VMI_PLUGIN_PATH`, with the real
//! `scan` example plugin (built here, as the CLI's plugin tests do) copied into scratch
//! directories. The directories are passed to `resolve_in`, so no test changes the process's
//! current directory or environment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmi_plugin_host::search::resolve_in;
use vmi_plugin_host::PluginError;

/// `libscan.so` (the platform's spelling).
fn scan_file_name() -> String {
    format!(
        "{}scan{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Builds the `scan` plugin once, with this test's cargo, profile and target directory (found
/// from the test binary's path: `<target>/<profile>/deps/resolve-*`).
fn scan_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
        let target_dir = profile_dir.parent().unwrap().to_owned();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "scan", "--profile", &profile])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .status()
            .expect("running cargo build for the scan plugin");
        assert!(status.success(), "building the scan plugin failed");
        let lib = profile_dir.join(scan_file_name());
        assert!(lib.is_file(), "{} was not built", lib.display());
        lib
    })
}

/// A fresh scratch directory under the system temp directory.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("vmi-plugin-resolve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the real plugin into `dir` as `file`.
fn install(dir: &Path, file: &str) -> PathBuf {
    let to = dir.join(file);
    std::fs::copy(scan_library(), &to).unwrap();
    to
}

#[test]
fn a_bare_file_name_is_found_in_the_current_directory() {
    let cwd = scratch("cwd");
    // A file name on no library path (`cargo test` puts the target directory, where
    // `libscan.so` is, on LD_LIBRARY_PATH).
    let file = format!(
        "{}vmi_resolve_here{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let installed = install(&cwd, &file);
    // The defect: the bare name handed to the dynamic loader, which searches the system
    // library paths and not the current directory.
    let direct = vmi_plugin_host::load(Path::new(&file));
    assert!(
        matches!(direct, Err(PluginError::Open { .. })),
        "dlopen of a bare name was expected to miss: {direct:?}"
    );
    let p = resolve_in(&file, &cwd, &[]).unwrap();
    assert_eq!(p.name, "scan");
    assert_eq!(p.path, installed);
    // Without the library spelling too.
    let p = resolve_in("vmi_resolve_here", &cwd, &[]).unwrap();
    assert_eq!(p.path, installed);
    let p = resolve_in("vmi-resolve-here", &cwd, &[]).unwrap();
    assert_eq!(p.path, installed);
}

#[test]
fn the_current_directory_comes_before_the_plugin_path_and_the_path_in_order() {
    let cwd = scratch("order-cwd");
    let (d1, d2) = (scratch("order-d1"), scratch("order-d2"));
    let in_d2 = install(&d2, &scan_file_name());
    let p = resolve_in("scan", &cwd, &[d1.clone(), d2.clone()]).unwrap();
    assert_eq!(p.path, in_d2);
    let in_d1 = install(&d1, &scan_file_name());
    let p = resolve_in(&scan_file_name(), &cwd, &[d1.clone(), d2.clone()]).unwrap();
    assert_eq!(p.path, in_d1);
    // A file of that name in the current directory is the one meant, even if it is not a
    // plugin: its own error, naming it, rather than a silent pick from the plugin path.
    let bogus = cwd.join(scan_file_name());
    std::fs::write(&bogus, b"not an ELF file").unwrap();
    let e = resolve_in("scan", &cwd, &[d1, d2]).unwrap_err();
    assert!(
        matches!(&e, PluginError::Open { path, .. } if *path == bogus),
        "{e}"
    );
}

#[test]
fn a_plugin_on_the_path_is_found_by_the_name_it_gives_itself() {
    let cwd = scratch("self-cwd");
    let dir = scratch("self-dir");
    let installed = install(&dir, "libsomething_else.so");
    let p = resolve_in("scan", &cwd, std::slice::from_ref(&dir)).unwrap();
    assert_eq!(
        (p.name.as_str(), p.path.as_path()),
        ("scan", installed.as_path())
    );
    // By its file stem too, `_` and `-` alike.
    let p = resolve_in("something-else", &cwd, &[dir]).unwrap();
    assert_eq!(p.path, installed);
}

#[test]
fn a_missing_plugin_names_every_place_looked_at() {
    let cwd = scratch("missing-cwd");
    let dir = scratch("missing-dir");
    let e = resolve_in("nosuch", &cwd, std::slice::from_ref(&dir)).unwrap_err();
    let text = e.to_string();
    eprintln!("{text}");
    assert!(matches!(e, PluginError::NotFound { .. }), "{text}");
    for place in [
        cwd.join("nosuch"),
        cwd.join("libnosuch.so"),
        dir.join("nosuch"),
        dir.join("libnosuch.so"),
        dir.join("nosuch.so"),
    ] {
        assert!(text.contains(&place.display().to_string()), "{text}");
    }
    assert!(text.contains("$VMI_PLUGIN_PATH"), "{text}");
    let e = resolve_in("nosuch", &cwd, &[]).unwrap_err().to_string();
    assert!(e.contains("$VMI_PLUGIN_PATH is not set"), "{e}");
    // A name with a slash is a path, looked for there only.
    let path = cwd.join("sub/libscan.so");
    let e = resolve_in(path.to_str().unwrap(), &dir, std::slice::from_ref(&dir)).unwrap_err();
    assert!(
        matches!(&e, PluginError::NotFound { searched, .. } if searched == std::slice::from_ref(&path)),
        "{e}"
    );
}
