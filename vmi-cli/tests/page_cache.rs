//! `vmi files` and `vmi dump-file` on every real guest: the initramfs binaries and a file the
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
        let target = listed
            .iter()
            .find(|f| f["path"] == "/bin/vmi-target")
            .unwrap_or_else(|| panic!("{}: /bin/vmi-target not listed", g.name));
        let binary = std::fs::read(g.dir.join("vmi-target")).unwrap();
        assert_eq!(target["size"], binary.len() as u64, "{}", g.name);
        assert_eq!(target["fs_type"], "rootfs", "{}", g.name);
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
                "/bin/vmi-target",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(x["bytes_written"], binary.len() as u64, "{}", g.name);
        assert_eq!(
            x["missing_pages"].as_array().unwrap().len(),
            0,
            "{}",
            g.name
        );
        assert!(
            std::fs::read(&out).unwrap() == binary,
            "{}: extracted binary differs",
            g.name
        );

        // The table form names the file and its filesystem.
        let table = vmi()
            .env("VMI_CACHE_DIR", &cache)
            .args(["--target", t, "files"])
            .output()
            .unwrap();
        let text = String::from_utf8(table.stdout).unwrap();
        assert!(text.starts_with("inode  size"), "{}: {text}", g.name);
        assert!(
            text.lines().any(|l| l.ends_with("rootfs  /bin/busybox")),
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
