//! Every analysis on synthetic guests of the four real builds equals the generator's truth.

mod common;

use common::{guests, options};
use vmi_core::{Confidence, Pa, Va};
use vmi_fixtures::windows::Options;
use vmi_os_windows::discovery::Methods;
use vmi_os_windows::os::{open, Opened};
use vmi_os_windows::{analysis, WindowsOs};

fn opened(session: &vmi_core::Session) -> Box<WindowsOs> {
    match open(session, &options(), Methods::ALL).unwrap() {
        Opened::Found(os, c) => {
            assert_eq!(c, Confidence::CERTAIN);
            os
        }
        Opened::NotWindows(why) => panic!("not Windows: {why}"),
    }
}

#[test]
fn discovery_and_processes_match_truth() {
    for g in guests(&Options::default()) {
        let t = g.truth();
        let session = g.session();
        let os = opened(&session);
        let k = os.kernel();
        assert_eq!(k.base(), Va::new(t.kernel_base), "{}", t.isf);
        assert_eq!(k.space().root, Pa::new(t.dtb_pa), "{}", t.isf);
        assert_eq!(k.pdb().unwrap().guid_string(), t.pdb_guid);
        assert_eq!(k.build(), Some(t.build));
        assert_eq!(k.kva_shadow(), Some(t.kva_shadow));
        let kdbg = k.kdbg().as_ref().unwrap();
        assert_eq!(kdbg.kern_base, Va::new(t.kernel_base));
        assert_eq!(
            kdbg.ps_active_process_head,
            Va::new(t.ps_active_process_head)
        );

        let ps = analysis::processes(&session, k).unwrap();
        assert!(ps.warnings.is_empty(), "{:?}", ps.warnings);
        assert_eq!(ps.items.len(), t.processes.len());
        for (p, want) in ps.items.iter().zip(&t.processes) {
            assert_eq!(p.pid, want.pid);
            assert_eq!(p.ppid, want.ppid);
            assert_eq!(p.eprocess, Va::new(want.eprocess));
            assert_eq!(p.name, want.image_file_name, "pid {}", p.pid);
            assert_eq!(
                p.image_path.clone().unwrap_or_default(),
                want.image_path,
                "pid {}",
                p.pid
            );
            assert_eq!(p.create_time, want.create_time);
            assert_eq!(Some(p.exit_time).filter(|&e| e != 0), want.exit_time);
            assert_eq!(p.dtb, Pa::new(want.dtb_pa), "pid {}", p.pid);
            assert_eq!(p.peb, Va::new(want.peb.unwrap_or(0)));
            assert_eq!(p.wow64.is_some(), want.wow64);
            assert_eq!(p.session_id, want.session);
            assert_eq!(p.threads as usize, want.threads.len(), "pid {}", p.pid);
        }
        let mods = analysis::kernel_modules(&session, k).unwrap();
        assert!(mods.warnings.is_empty(), "{:?}", mods.warnings);
        assert_eq!(mods.items.len(), t.modules.len());
        for (m, want) in mods.items.iter().zip(&t.modules) {
            assert_eq!(m.name, want.name);
            assert_eq!(m.path, want.path);
            assert_eq!(m.base, Va::new(want.base));
            assert_eq!(m.size, want.size);
        }
    }
}
