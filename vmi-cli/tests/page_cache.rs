//! `vmi files` and `vmi dump-file` on every real guest: the known binary (from the initramfs of
//! a busybox guest, from the ext4 root of a systemd guest: every cached page) and a file the
//! guest wrote come back from memory byte for byte, through a profile cache that an earlier
//! command left without the page cache's types.

mod common;

use common::{fresh_cache_dir, run_err, run_json_cached, vmi};
use vmi_fixtures::guests;

fn dump_file_recovers_binaries_and_guest_written_files() {
    for g in guests() {
        let cache = fresh_cache_dir("files");
        let elf = g.elf();
        let t = elf.to_str().unwrap();
        // `ps` caches a profile subset without super_block or inode: `files` must still work.
        run_json_cached(&cache, &["--target", t, "ps"]);
        let files = run_json_cached(&cache, &["--target", t, "files"]);
        let listed = files.as_array().unwrap();
        // The binaries' paths and file system: the initramfs (rootfs) of a busybox guest, the
        // ext4 root of a systemd guest, whose /bin is a symlink to usr/bin.
        let (target_path, busybox_path) = (g.init.vmi_target_path(), g.init.busybox_path());
        let root_fs = match g.init {
            vmi_fixtures::GuestInit::Busybox => "rootfs",
            vmi_fixtures::GuestInit::Systemd => "ext4",
        };
        let target = listed
            .iter()
            .find(|f| f["path"] == target_path)
            .unwrap_or_else(|| panic!("{}: {target_path} not listed", g.name));
        let binary = std::fs::read(g.dir.join("vmi-target")).unwrap();
        assert_eq!(target["size"], binary.len() as u64, "{}", g.name);
        assert_eq!(target["fs_type"], root_fs, "{}", g.name);
        assert!(
            target["object"].as_str().unwrap().starts_with("0x"),
            "{}",
            g.name
        );

        let out =
            std::env::temp_dir().join(format!("vmi-dump-file-{}-{}", std::process::id(), g.name));
        let x = run_json_cached(
            &cache,
            &[
                "--target",
                t,
                "dump-file",
                target_path,
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(x["bytes_written"], binary.len() as u64, "{}", g.name);
        // `[first, end)` page ranges that were not in memory: none on a busybox guest (ramfs
        // keeps every page of the initramfs); on ext4 pages are read on demand, so a systemd
        // guest may lack some, which are holes (zeros) in the output. Every other page is the
        // binary's.
        let missing: Vec<(usize, usize)> = x["missing_pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let n = |i: usize| usize::try_from(r[i].as_u64().unwrap()).unwrap();
                (n(0), n(1))
            })
            .collect();
        if g.init == vmi_fixtures::GuestInit::Busybox {
            assert!(missing.is_empty(), "{}: {missing:?}", g.name);
        }
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len(), binary.len(), "{}", g.name);
        let mut holes = 0;
        for (page, (ours, want)) in got.chunks(4096).zip(binary.chunks(4096)).enumerate() {
            if missing.iter().any(|&(a, b)| a <= page && page < b) {
                holes += 1;
                assert!(ours.iter().all(|&b| b == 0), "{}: page {page}", g.name);
            } else {
                assert!(ours == want, "{}: extracted page {page} differs", g.name);
            }
        }
        assert_eq!(
            x["pages_copied"].as_u64().unwrap() + holes,
            binary.len().div_ceil(4096) as u64,
            "{}",
            g.name
        );

        // The table form names the file and its filesystem.
        let table = vmi()
            .env("VMI_CACHE_DIR", &cache)
            .args(["--target", t, "files"])
            .output()
            .unwrap();
        let text = String::from_utf8(table.stdout).unwrap();
        // Column widths follow the content (ext4 inode numbers are wider than the header).
        assert!(
            text.lines()
                .next()
                .is_some_and(|h| h.split_whitespace().eq([
                    "inode",
                    "size",
                    "cached_pages",
                    "fs",
                    "path"
                ])),
            "{}: {text}",
            g.name
        );
        assert!(
            text.lines().any(|l| l
                .split_whitespace()
                .rev()
                .take(2)
                .eq([busybox_path, root_fs])),
            "{}: {text}",
            g.name
        );

        // An unknown path: a clear error, nothing on stdout, no output file left behind.
        let _ = std::fs::remove_file(&out);
        let err = run_err(&[
            "--target",
            t,
            "dump-file",
            "/no/such",
            out.to_str().unwrap(),
        ]);
        assert!(
            err.contains("no file with pages in the page cache"),
            "{}: {err}",
            g.name
        );
        assert!(!out.exists(), "{}: output left after an error", g.name);
        let _ = std::fs::remove_dir_all(&cache);
    }
}

vmi_fixtures::real_guest_tests!(dump_file_recovers_binaries_and_guest_written_files);
