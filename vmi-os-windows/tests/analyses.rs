//! Threads, DLLs (64- and 32-bit), command lines, environments and VADs of every process of
//! the four builds equal the generator's truth.

mod common;

use common::{guests, options};
use vmi_core::{OsProfile, Session, Va};
use vmi_fixtures::windows::{Options, ProcessTruth};
use vmi_os_windows::analysis::{self, peb};
use vmi_os_windows::comps::vad;
use vmi_os_windows::discovery::Methods;
use vmi_os_windows::os::{open, Opened};
use vmi_os_windows::{Kernel, WindowsError, WindowsOs};

fn opened(session: &Session) -> Box<WindowsOs> {
    match open(session, &options(), Methods::ALL).unwrap() {
        Opened::Found(os, _) => os,
        Opened::NotWindows(why) => panic!("not Windows: {why}"),
    }
}

fn has_user_space(p: &ProcessTruth) -> bool {
    p.peb.is_some() && p.exit_time.is_none()
}

fn check_process(session: &Session, k: &Kernel, want: &ProcessTruth, isf: &str) {
    let ctx = format!("{isf} pid {} {}", want.pid, want.name);
    let threads = analysis::threads(session, k, want.pid).unwrap();
    assert!(threads.warnings.is_empty(), "{ctx}: {:?}", threads.warnings);
    let got: Vec<(u32, u64, u64, u64)> = threads
        .items
        .iter()
        .map(|t| {
            assert_eq!(t.pid, want.pid, "{ctx}");
            (
                t.tid,
                t.ethread.raw(),
                t.teb.raw(),
                t.start_address.map_or(0, |v| v.raw()),
            )
        })
        .collect();
    let expected: Vec<(u32, u64, u64, u64)> = want
        .threads
        .iter()
        .map(|t| (t.tid, t.ethread, t.teb, t.start_address))
        .collect();
    assert_eq!(got, expected, "{ctx}: threads");

    if !has_user_space(want) {
        let e = analysis::process_modules(session, k, want.pid);
        match want.peb {
            None => assert!(matches!(e, Err(WindowsError::NoPeb { .. })), "{ctx}: {e:?}"),
            // An exited process: its PEB pointer is stale; an error or nothing, never a panic.
            Some(_) => assert!(e.map_or(true, |p| p.items.is_empty()), "{ctx}"),
        }
        return;
    }
    let dlls = analysis::process_modules(session, k, want.pid).unwrap();
    assert!(dlls.warnings.is_empty(), "{ctx}: {:?}", dlls.warnings);
    let got: Vec<(String, String, u64, u64, bool)> = dlls
        .items
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.path.clone(),
                m.base.raw(),
                m.size,
                m.wow64,
            )
        })
        .collect();
    let expected: Vec<(String, String, u64, u64, bool)> = want
        .dlls
        .iter()
        .map(|d| (d.name.clone(), d.path.clone(), d.base, d.size, false))
        .chain(
            want.dlls32
                .iter()
                .map(|d| (d.name.clone(), d.path.clone(), d.base, d.size, true)),
        )
        .collect();
    assert_eq!(got, expected, "{ctx}: DLLs");
    assert_eq!(want.wow64, !want.dlls32.is_empty(), "{ctx}");

    let p = analysis::find_process(session, k, want.pid).unwrap();
    assert_eq!(
        peb::command_line_of(session, k, &p).unwrap(),
        want.cmdline,
        "{ctx}"
    );
    assert_eq!(
        analysis::command_line(session, k, want.pid).unwrap(),
        peb::split_command_line(&want.cmdline),
        "{ctx}"
    );
    assert_eq!(
        analysis::environment(session, k, want.pid).unwrap(),
        want.env,
        "{ctx}"
    );
}

fn check_vads(session: &Session, k: &Kernel, want: &ProcessTruth, isf: &str) {
    let ctx = format!("{isf} pid {} {}", want.pid, want.name);
    let vads = analysis::regions(session, k, want.pid).unwrap();
    assert!(vads.warnings.is_empty(), "{ctx}: {:?}", vads.warnings);
    assert_eq!(vads.items.len(), want.vads.len(), "{ctx}");
    let mut sorted = want.vads.clone();
    sorted.sort_by_key(|v| v.start);
    for (v, w) in vads.items.iter().zip(&sorted) {
        assert_eq!(v.node, Va::new(w.node), "{ctx}");
        assert_eq!(v.start, Va::new(w.start), "{ctx}");
        assert_eq!(v.end, Va::new(w.end + 1), "{ctx}");
        assert_eq!(
            v.protection,
            u64::from(w.protection),
            "{ctx} {:#x}",
            w.start
        );
        assert_eq!(v.file, w.file, "{ctx} {:#x}", w.start);
        let kind = match (v.private, vad::vad_type_name(v.vad_type)) {
            (true, _) => "private",
            (false, "VadImageMap") => "image",
            (false, _) => "mapped",
        };
        assert_eq!(kind, w.kind, "{ctx} {:#x}", w.start);
    }
}

#[test]
fn every_process_matches_truth() {
    for g in guests(&Options::default()) {
        let t = g.truth();
        let session = g.session();
        let os = opened(&session);
        for want in &t.processes {
            check_process(&session, os.kernel(), want, &t.isf);
            check_vads(&session, os.kernel(), want, &t.isf);
        }
    }
}

#[test]
fn neutral_capabilities_answer_like_the_analyses() {
    let g = &guests(&Options::default())[1];
    let t = g.truth();
    let session = g.session();
    let os = opened(&session);
    let profile: &dyn OsProfile = os.as_ref();
    let explorer = t
        .processes
        .iter()
        .find(|p| p.name == "explorer.exe")
        .unwrap();
    let args = profile
        .arguments()
        .unwrap()
        .command_line(&session, explorer.pid)
        .unwrap();
    assert_eq!(args, peb::split_command_line(&explorer.cmdline));
    let maps = profile
        .regions()
        .unwrap()
        .regions(&session, explorer.pid)
        .unwrap();
    let image = maps
        .items
        .iter()
        .find(|r| r.path.ends_with("explorer.exe"))
        .unwrap();
    assert_eq!(image.perms, "rwxp");
    let space = profile
        .processes()
        .unwrap()
        .process_space(&session, explorer.pid)
        .unwrap();
    assert_eq!(space.root.raw(), explorer.dtb_pa);
    let mods = profile
        .process_modules()
        .unwrap()
        .process_modules(&session, explorer.pid)
        .unwrap();
    assert_eq!(mods.items[0].name, explorer.dlls[0].name);
    let threads = profile
        .threads()
        .unwrap()
        .threads(&session, explorer.pid)
        .unwrap();
    assert_eq!(threads.items.len(), explorer.threads.len());
    let sym = profile.symbols().unwrap();
    assert_eq!(
        sym.symbol("PsActiveProcessHead").unwrap(),
        Va::new(t.ps_active_process_head)
    );
    // The subset table lacks it: the caller is told to ask for the whole table.
    assert!(matches!(
        sym.symbol("IoCreateDevice"),
        Err(vmi_core::OsError::IncompleteProfile(_))
    ));
    let mut full = options();
    full.full_profile = true;
    let Opened::Found(whole, _) = open(&session, &full, Methods::ALL).unwrap() else {
        panic!("not found with the whole table");
    };
    let rva = whole
        .kernel()
        .profile()
        .symbol_address("IoCreateDevice")
        .unwrap();
    assert_eq!(
        whole.symbols().unwrap().symbol("IoCreateDevice").unwrap(),
        Va::new(t.kernel_base + rva)
    );
}
