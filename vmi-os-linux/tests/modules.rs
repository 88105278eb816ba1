//! `modules()` on every real guest against the guest's own `/proc/modules`.

mod common;

use common::GuestExt;

use vmi_os_linux::analysis::modules::modules;

fn modules_match_proc_modules() {
    for g in common::guests() {
        let session = g.session();
        let kernel = g.kernel(&session);
        let got = modules(&session, &kernel).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        assert!(got.warnings.is_empty(), "{}: {:?}", g.name, got.warnings);
        // name size refcount deps state address [taints]
        let truth: Vec<(String, u64, u64)> = g
            .truth("modules")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let addr = u64::from_str_radix(f[5].trim_start_matches("0x"), 16).unwrap();
                (f[0].to_owned(), f[1].parse().unwrap(), addr)
            })
            .collect();
        // The modules init loads (and, on capture guests, lime): never an empty comparison.
        for known in ["crc7", "crc_itu_t", "nls_ascii", "binfmt_misc"] {
            assert!(
                truth.iter().any(|(n, _, _)| n == known),
                "{}: {known} not in truth/modules",
                g.name
            );
        }
        let ours: Vec<(String, u64, u64)> = got
            .items
            .iter()
            .map(|m| (m.name.clone(), m.size, m.base.raw()))
            .collect();
        assert_eq!(ours, truth, "{}", g.name);
        let json = serde_json::to_value(&got.items[0]).unwrap();
        assert_eq!(json["base"], format!("{:#x}", truth[0].2));
        assert_eq!(json["size"], truth[0].1);
        eprintln!("{}: {} modules match", g.name, ours.len());
    }
}

/// Wall-clock times of the three analyses on each guest (run with `--release -- --ignored
/// --nocapture timings`): discovery once, then each analysis on a warm session.
fn timings() {
    use std::time::Instant;
    use vmi_os_linux::analysis::{dmesg::dmesg, maps::maps};
    for g in common::guests() {
        let session = g.session();
        let t = Instant::now();
        let kernel = g.kernel(&session);
        let discover = t.elapsed();
        let pid = g.targets()[1].pid;
        let time = |f: &dyn Fn() -> usize| {
            let t = Instant::now();
            let n = f();
            let first = t.elapsed();
            let t = Instant::now();
            for _ in 0..10 {
                f();
            }
            (n, first, t.elapsed() / 10)
        };
        let m = time(&|| maps(&session, &kernel, pid).unwrap().items.len());
        let md = time(&|| modules(&session, &kernel).unwrap().items.len());
        let d = time(&|| dmesg(&session, &kernel).unwrap().items.len());
        eprintln!(
            "{}: discover {discover:?}; maps({pid}) {} in {:?} (then {:?}); modules {} in {:?} \
             (then {:?}); dmesg {} in {:?} (then {:?})",
            g.name, m.0, m.1, m.2, md.0, md.1, md.2, d.0, d.1, d.2
        );
    }
}

vmi_fixtures::real_guest_tests!(
    modules_match_proc_modules,
    #[ignore]
    timings,
);
