//! Bad targets and bad requests get a clear message on stderr, a non-zero exit and nothing on
//! stdout. These tests make their own small files and need no fixtures.

mod common;

use common::run_err;

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vmi-cli-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn missing_target_is_explained() {
    let err = run_err(&["info"]);
    assert!(err.contains("no target given"), "{err}");
    let err = run_err(&["--target", "/nonexistent/dump.elf", "info"]);
    assert!(err.contains("/nonexistent/dump.elf"), "{err}");
}

#[test]
fn unknown_format_is_named() {
    let p = temp_file("unknown.bin", b"this is not a memory dump\n");
    let err = run_err(&["--target", p.to_str().unwrap(), "info"]);
    assert!(err.contains("not a memory dump vmi recognises"), "{err}");
}

#[test]
fn truncated_elf_is_named() {
    // An ELF header cut short.
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(40, 0);
    let p = temp_file("truncated.elf", &elf);
    let err = run_err(&["--target", p.to_str().unwrap(), "info"]);
    assert!(err.to_lowercase().contains("truncated"), "{err}");
}

#[test]
fn unknown_backend_prefix_lists_the_registered_ones() {
    // `nosuch:` is not a registered prefix, and the path does not exist either.
    let err = run_err(&["--target", "nosuch:thing", "info"]);
    assert!(err.contains("nosuch:thing"), "{err}");
}

#[test]
fn raw_dump_reads_physical_and_refuses_out_of_range() {
    let mut img = vec![0u8; 64 << 10];
    img[0x2000..0x2005].copy_from_slice(b"hello");
    let p = temp_file("small.raw", &img);
    let t = p.to_str().unwrap();
    let doc = common::run_json(&["--target", t, "read", "--phys", "0x2000", "5"]);
    assert_eq!(doc["bytes"], "68656c6c6f");
    let err = run_err(&["--target", t, "read", "--phys", "0xfffe", "4"]);
    assert!(err.contains("outside"), "{err}");
    // No registers in a raw image: a virtual read needs --dtb and --paging-mode.
    let err = run_err(&["--target", t, "read", "0xffffffff81000000", "8"]);
    assert!(err.contains("registers"), "{err}");
    let err = run_err(&["--target", t, "read", "--phys", "0", "0x10000000000"]);
    assert!(err.contains("limit"), "{err}");
}

#[test]
fn non_canonical_address_is_an_error() {
    let img = vec![0u8; 64 << 10];
    let p = temp_file("canon.raw", &img);
    let err = run_err(&[
        "--target",
        p.to_str().unwrap(),
        "translate",
        "0x0000900000000000",
        "--dtb",
        "0x1000",
        "--paging-mode",
        "ia32e-4",
    ]);
    assert!(err.contains("canonical"), "{err}");
}

#[test]
fn a_fifo_target_is_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("vmi-cli-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("dump.fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening a FIFO for reading blocks until a writer comes: vmi must not open it.
    let mut child = common::vmi()
        .args(["--target", fifo.to_str().unwrap(), "info"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("vmi blocked on a FIFO target");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a regular file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
