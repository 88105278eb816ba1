//! Each discovery method alone (the others switched off), on the four builds and on variants:
//! KVA shadow, an encoded KDBG, 4 KiB kernel pages, a vCPU stopped in user mode, no low stub, a
//! DTB outside the usual range, crash dumps (header DTB and list heads).

mod common;

use common::{guests, options};
use vmi_core::{OpenOptions, Pa, Session, Va};
use vmi_fixtures::windows::{cached, isf_files, Options, Truth};
use vmi_os_windows::discovery::{self, dtb, nt, BaseSource, DtbSource, Methods};
use vmi_os_windows::os::{open, Opened};

use vmi_backend_file as _;

fn only(f: impl FnOnce(&mut Methods)) -> Methods {
    let mut m = Methods::NONE;
    f(&mut m);
    m
}

/// The kernel found with `methods` is the truth's, through `dtb_source` and `base_source`.
fn found_with(session: &Session, t: &Truth, methods: Methods) -> vmi_os_windows::Kernel {
    match open(session, &options(), methods).unwrap() {
        Opened::Found(os, _) => {
            let k = os.kernel();
            assert_eq!(k.base(), Va::new(t.kernel_base), "{}", t.isf);
            assert_eq!(k.space().root, Pa::new(t.dtb_pa), "{}", t.isf);
            let ps = vmi_os_windows::analysis::processes(session, k).unwrap();
            assert_eq!(ps.items.len(), t.processes.len(), "{}", t.isf);
            os.into_kernel()
        }
        Opened::NotWindows(why) => panic!("{}: not found with {methods:?}: {why}", t.isf),
    }
}

const SCAN: fn(&mut Methods) = |m| m.rsds_scan = true;

#[test]
fn dtb_from_vcpu_cr3_alone() {
    for g in guests(&Options::default()) {
        let s = g.session();
        let (space, src) = dtb::from_vcpus(&s).unwrap();
        assert!(matches!(src, DtbSource::VcpuCr3(_)));
        let cr3s: Vec<u64> = g.truth().vcpus.iter().map(|v| v.cr3 & !0xFFF).collect();
        assert!(cr3s.contains(&space.root.raw()));
        let k = found_with(
            &s,
            g.truth(),
            only(|m| {
                m.vcpu_cr3 = true;
                SCAN(m)
            }),
        );
        assert!(k.found_through().is_some() || k.dtb_source() == DtbSource::VcpuCr3(1));
    }
}

#[test]
fn dtb_from_low_stub_alone() {
    for g in guests(&Options::default()) {
        let s = g.session_with(false);
        let (space, src) = dtb::from_low_stub(s.memory()).unwrap();
        assert_eq!(space.root, Pa::new(g.truth().dtb_pa));
        assert_eq!(
            src,
            DtbSource::LowStub(Pa::new(g.truth().low_stub_pa.unwrap()))
        );
        let k = found_with(
            &s,
            g.truth(),
            only(|m| {
                m.low_stub = true;
                SCAN(m)
            }),
        );
        assert!(matches!(k.dtb_source(), DtbSource::LowStub(_)));
    }
}

#[test]
fn dtb_from_pml4_scan_alone_even_outside_the_usual_range() {
    for dtb_pa in [0x1AD000, 0x6D4000] {
        let o = Options {
            low_stub: false,
            dtb_pa,
            ..Options::default()
        };
        for g in guests(&o) {
            let s = g.session_with(false);
            assert!(dtb::from_low_stub(s.memory()).is_none());
            let (space, src) = dtb::from_pml4_scan(s.memory()).unwrap();
            assert_eq!(src, DtbSource::Pml4Scan);
            assert_eq!(space.root, Pa::new(dtb_pa), "{}", g.truth().isf);
            found_with(
                &s,
                g.truth(),
                only(|m| {
                    m.pml4_scan = true;
                    SCAN(m)
                }),
            );
        }
    }
}

#[test]
fn crash_dumps_header_dtb_and_hints_alone() {
    for isf in isf_files() {
        let dir = cached(&isf, &Options::default()).unwrap();
        let t = Truth::load(&dir).unwrap();
        for name in ["memory.dmp", "memory.bmp.dmp"] {
            let s =
                Session::open(dir.join(name).to_str().unwrap(), &OpenOptions::default()).unwrap();
            assert!(s.kernel_hints().dtb.is_some(), "{name}");
            let (space, src) = dtb::from_hints(&s).unwrap();
            assert_eq!((space.root, src), (Pa::new(t.dtb_pa), DtbSource::Header));
            // nt back from the header's PsActiveProcessHead, no scan.
            let k = found_with(
                &s,
                &t,
                only(|m| {
                    m.header_dtb = true;
                    m.hint_base = true;
                }),
            );
            assert!(
                matches!(k.image().source, BaseSource::Hint(ref h) if h.contains("PsActiveProcessHead"))
            );
        }
    }
}

#[test]
fn nt_base_each_way_alone() {
    for g in guests(&Options::default()) {
        let t = g.truth();
        let s = g.session();
        let (space, _) = discovery::find_dtb(&s, Methods::ALL).unwrap();
        let want = Va::new(t.kernel_base);
        let scan = nt::from_rsds_scan(&s, space).unwrap();
        assert_eq!(
            (scan.base, scan.source.clone()),
            (want, BaseSource::RsdsScan)
        );
        assert_eq!(scan.pdb.as_ref().unwrap().guid_string(), t.pdb_guid);
        assert_eq!(u64::from(scan.size), t.kernel_size);
        let search = nt::from_rsds_search(&s, space).unwrap();
        assert_eq!((search.base, search.source), (want, BaseSource::RsdsSearch));
        let exported = nt::from_export_name(&s, space).unwrap();
        assert_eq!(
            (exported.base, exported.source),
            (want, BaseSource::ExportName)
        );
        // IDT[0] of a vCPU is KiDivideErrorFault, inside nt.
        let hints = nt::hints(&s, space);
        assert!(
            hints
                .iter()
                .any(|(va, _)| va.raw() == t.vcpus[0].idt0_handler),
            "{hints:?}"
        );
        let (va, what) = &hints[0];
        let hinted = nt::from_hint(&s, space, *va, what).unwrap();
        assert_eq!(hinted.base, want);
        let ex = nt::exports_at(&s.virtual_memory(space), want);
        assert!(ex.iter().any(|(n, _)| n == "PsLoadedModuleList"));
        for only_one in [
            only(|m| {
                m.vcpu_cr3 = true;
                m.hint_base = true
            }),
            only(|m| {
                m.vcpu_cr3 = true;
                m.rsds_search = true
            }),
            only(|m| {
                m.vcpu_cr3 = true;
                m.export_name = true
            }),
        ] {
            found_with(&s, t, only_one);
        }
    }
}

#[test]
fn variants_kva_shadow_encoded_kdbg_small_pages_user_mode_vcpu() {
    let o = Options {
        kva_shadow: true,
        encoded_kdbg: true,
        large_kernel_pages: false,
        user_mode_vcpu: true,
        seed: 7,
        ..Options::default()
    };
    for g in guests(&o) {
        let t = g.truth();
        let s = g.session();
        let k = found_with(&s, t, Methods::ALL);
        assert_eq!(k.kva_shadow(), Some(true), "{}", t.isf);
        let kdbg = k.kdbg().as_ref().unwrap();
        assert!(kdbg.encoded);
        assert_eq!(kdbg.kern_base, Va::new(t.kernel_base));
        assert_eq!(kdbg.ps_loaded_module_list, Va::new(t.ps_loaded_module_list));
        let ps = vmi_os_windows::analysis::processes(&s, &k).unwrap();
        for (p, want) in ps.items.iter().zip(&t.processes) {
            assert_eq!(p.dtb, Pa::new(want.dtb_pa), "PCID bits masked");
            assert_eq!(
                p.user_dtb.map(|u| u.raw()),
                want.user_dtb.map(|u| u & !0xFFF),
                "{} pid {}",
                t.isf,
                p.pid
            );
        }
    }
}

#[test]
fn missing_table_names_guid_pdb_and_every_place() {
    let g = &guests(&Options::default())[0];
    let s = g.session();
    let empty = std::env::temp_dir().join(format!("vmi-win-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let opts = vmi_core::DetectOptions {
        symbol_path: vec![empty.clone()],
        use_cache: false,
        ..Default::default()
    };
    let err = open(&s, &opts, Methods::ALL).unwrap_err().to_string();
    let t = g.truth();
    assert!(err.contains(&t.pdb_guid), "{err}");
    assert!(err.contains("ntkrnlmp.pdb"), "{err}");
    assert!(
        err.contains(&format!(
            "{}",
            empty.join("windows").join("ntkrnlmp.pdb").display()
        )),
        "{err}"
    );
    assert!(err.contains(&format!("{}", empty.display())), "{err}");
    std::fs::remove_dir_all(&empty).unwrap();
}
