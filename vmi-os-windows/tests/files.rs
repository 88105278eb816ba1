//! The guests written as files (ELF core with vCPU notes, raw, LiME) and opened through the
//! file backend: the detector finds Windows with no hint and `ps` equals the truth.

mod common;

use vmi_core::{Confidence, Detection, OpenOptions, Session, Va};
use vmi_fixtures::windows::{cached, isf_files, Options, Truth};
use vmi_os_windows::os::windows;

use vmi_backend_file as _;

fn check(path: &std::path::Path, truth: &Truth) {
    let mut session = Session::open(path.to_str().unwrap(), &OpenOptions::default()).unwrap();
    let os = session.detect_os(&common::options());
    assert!(
        os.is_some(),
        "{}: {:?}",
        path.display(),
        session.detections()
    );
    let report = session
        .detections()
        .iter()
        .find(|r| r.detector == "windows")
        .unwrap()
        .clone();
    assert!(report.bound, "{}: {report:?}", path.display());
    assert_eq!(report.confidence, Some(Confidence::CERTAIN));
    let w = windows(&session).unwrap();
    assert_eq!(w.kernel().base(), Va::new(truth.kernel_base));
    let info = session.os().unwrap().info();
    assert_eq!(info.kind, "windows");
    assert!(
        info.version.ends_with(&format!(
            "(ntkrnlmp.pdb {}{:X})",
            truth.pdb_guid, truth.pdb_age
        )),
        "{}",
        info.version
    );
    assert!(info
        .version
        .starts_with(&format!("Windows 10.0.{} ", truth.build)));
    let ps = session
        .os()
        .unwrap()
        .processes()
        .unwrap()
        .processes(&session)
        .unwrap();
    let pids: Vec<u32> = ps.items.iter().map(|p| p.pid).collect();
    let want: Vec<u32> = truth.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, want, "{}", path.display());
    let system = ps.items.iter().find(|p| p.pid == 4).unwrap();
    assert!(system.kernel_thread);
    assert_eq!(system.uid, None);
}

#[test]
fn elf_raw_and_lime_files() {
    let _ = Detection::NotThisOs(String::new());
    for isf in isf_files() {
        let dir = cached(&isf, &Options::default()).unwrap();
        let truth = Truth::load(&dir).unwrap();
        for name in ["memory.elf", "memory.raw", "memory.lime"] {
            check(&dir.join(name), &truth);
        }
    }
}

/// With no registers (raw, LiME) discovery goes through the low stub or the PML4 scan; it
/// must stay cheap (no scan of all of memory).
#[test]
fn registerless_discovery_is_quick() {
    let isf = &isf_files()[0];
    let dir = cached(isf, &Options::default()).unwrap();
    let session = Session::open(
        dir.join("memory.raw").to_str().unwrap(),
        &OpenOptions::default(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let opened = vmi_os_windows::os::open(
        &session,
        &common::options(),
        vmi_os_windows::discovery::Methods::ALL,
    )
    .unwrap();
    let took = started.elapsed();
    assert!(matches!(opened, vmi_os_windows::os::Opened::Found(..)));
    eprintln!("raw discovery: {took:?}");
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}

/// The benchmark guest: 200 processes in 1 GiB (benches time `vmi ps` on it).
#[test]
fn two_hundred_processes() {
    let isf = isf_files()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("BBED"))
        .unwrap();
    let o = Options {
        processes: 200,
        ..Options::default()
    };
    let dir = cached(&isf, &o).unwrap();
    let truth = Truth::load(&dir).unwrap();
    assert_eq!(truth.processes.len(), 200);
    check(&dir.join("memory.elf"), &truth);
    eprintln!("benchmark guest: {}", dir.display());
}
