//! Hostile variants of real compressed dumps: QEMU's own flattened kdump-zlib file, its flat
//! copy by makedumpfile -R, and an AVML capture written by the real avml (a guest's in-guest
//! `capture.avml-compressed`, else one converted with `$VMI_AVML`, see `tests/avml.rs`):
//! truncated, with huge or overlapping records, bitmaps claiming pages beyond the file, bad
//! compressed sizes and corrupt chunks. Each must be a precise error (at open,
//! or when the damaged page is read), never a panic, and no single allocation may exceed the
//! size of the file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use vmi_backend_file::{Dump, DumpError, DumpFormat};
use vmi_core::{MemoryError, Pa};
use vmi_fixtures::guests;

mod common;

thread_local! {
    /// Const-initialised and without a destructor, so touching it never allocates.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// `System`, noting the largest allocation of the allocating thread.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds as it does for `System`; the bookkeeping only touches a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: the caller upholds `alloc`'s contract, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.with(|m| m.set(m.get().max(new_size)));
        // SAFETY: as for `dealloc`; the caller guarantees `new_size` is valid for `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Opens `bytes` and reads up to `reads` pages of its map (evenly spread), returning the open
/// result and how many reads failed. Panics if any single allocation exceeded `bytes.len()`.
fn open_and_read(
    what: &str,
    bytes: Vec<u8>,
    reads: usize,
) -> (Result<DumpFormat, DumpError>, usize) {
    let limit = bytes.len().max(1 << 20);
    LARGEST.with(|m| m.set(0));
    let mut failed = 0;
    let result = Dump::from_bytes(bytes).map(|dump| {
        let mem = dump.memory();
        let pages: u64 = mem.memory_map().iter().map(|r| r.len / 4096).sum();
        let step = (pages / reads.max(1) as u64).max(1);
        let mut buf = [0u8; 4096];
        let mut i = 0u64;
        for r in mem.memory_map() {
            let mut pa = r.start.raw();
            while pa + 4096 <= r.end_raw() {
                if i % step == 0 {
                    match mem.read(Pa::new(pa), &mut buf) {
                        Ok(()) => {}
                        Err(MemoryError::Io { .. }) => failed += 1,
                        Err(e) => panic!("{what}: a mapped page {pa:#x} is {e}"),
                    }
                }
                i += 1;
                pa += 4096;
            }
        }
        dump.format()
    });
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest <= limit,
        "{what}: an allocation of {largest} bytes for a {limit}-byte file"
    );
    (result, failed)
}

fn be(v: i64) -> [u8; 8] {
    v.to_be_bytes()
}

/// File offset of the first flattened record whose flat offset is `flat`.
fn record_at(stream: &[u8], flat: i64) -> usize {
    let mut at = 4096;
    loop {
        let off = i64::from_be_bytes(stream[at..at + 8].try_into().unwrap());
        let size = i64::from_be_bytes(stream[at + 8..at + 16].try_into().unwrap());
        assert!(off != -1, "no record at flat offset {flat:#x}");
        if off == flat {
            return at;
        }
        at += 16 + size as usize;
    }
}

fn hostile_variants_of_real_compressed_dumps() {
    let Some(g) = guests().into_iter().find(|g| {
        g.dir.join("memory.kdump-zlib").is_file() && g.dir.join("memory.kdump-zlib.flat").is_file()
    }) else {
        vmi_fixtures::skip("no fixture guest has memory.kdump-zlib and memory.kdump-zlib.flat");
        return;
    };
    let stream = std::fs::read(g.dir.join("memory.kdump-zlib")).unwrap();
    let flat = std::fs::read(g.dir.join("memory.kdump-zlib.flat")).unwrap();
    let name = |v: &str| format!("{} {v}", g.name);

    // The originals read in full.
    for (what, bytes) in [("flattened", &stream), ("flat", &flat)] {
        let (r, failed) = open_and_read(&name(what), bytes.clone(), 2000);
        assert!(
            r.is_ok() && failed == 0,
            "{}: {r:?}, {failed} failed",
            name(what)
        );
    }

    // Truncated anywhere: an error at open, or (past the headers) pages that fail to read.
    for frac in [1, 3, 10, 50, 200, 500, 900, 999] {
        for (what, bytes) in [("flattened", &stream), ("flat", &flat)] {
            let cut = bytes.len() * frac / 1000;
            let what = name(&format!("{what} truncated at {cut:#x}"));
            let (r, failed) = open_and_read(&what, bytes[..cut].to_vec(), 500);
            assert!(
                r.is_err() || failed > 0 || frac >= 900,
                "{what}: opened and read cleanly"
            );
        }
    }

    // Flattened records: huge, negative, overlapping, far away.
    let first = record_at(&stream, 0);
    let mut v = stream.clone();
    v[first + 8..first + 16].copy_from_slice(&be(i64::MAX));
    assert!(matches!(
        open_and_read(&name("huge record"), v, 10).0,
        Err(DumpError::KdumpRecordBeyondFile { .. })
    ));
    let mut v = stream.clone();
    v[first..first + 8].copy_from_slice(&be(-4096));
    assert!(matches!(
        open_and_read(&name("negative record"), v, 10).0,
        Err(DumpError::KdumpRecordNegative { .. })
    ));
    // Every record moved onto flat offset 0: they overlap, the last one wins, and the
    // "file" that is left has no valid header (or reads fail), without a panic.
    let mut v = stream.clone();
    let mut at = 4096;
    loop {
        let size = i64::from_be_bytes(v[at + 8..at + 16].try_into().unwrap());
        if size == -1 {
            break;
        }
        v[at..at + 8].copy_from_slice(&be(0));
        at += 16 + size as usize;
    }
    let (r, _) = open_and_read(&name("overlapping records"), v, 100);
    assert!(r.is_err(), "overlapping records: {r:?}");
    // The headers record claiming 2^36 pages and bitmaps of u32::MAX blocks, with a one-byte
    // record at 2^50 making the flat file long enough for them: refused, nothing sized by it.
    let mut v = stream.clone();
    let sub = record_at(&stream, 4096) + 16;
    v[sub + 96..sub + 104].copy_from_slice(&(1u64 << 36).to_le_bytes());
    let hdr = first + 16;
    v[hdr + 436..hdr + 440].copy_from_slice(&u32::MAX.to_le_bytes());
    let end = v.len() - 16;
    v.truncate(end);
    v.extend_from_slice(&be(1 << 50));
    v.extend_from_slice(&be(1));
    v.push(0);
    v.extend_from_slice(&be(-1));
    v.extend_from_slice(&be(-1));
    assert!(matches!(
        open_and_read(&name("huge bitmaps far away"), v, 10).0,
        Err(DumpError::KdumpBitmapBeyondFile { .. })
    ));

    // Flat file: bitmaps beyond the file, and descriptors with bad sizes and offsets.
    let mut v = flat.clone();
    v[436..440].copy_from_slice(&(u32::MAX / 2).to_le_bytes());
    assert!(matches!(
        open_and_read(&name("flat: bitmaps beyond the file"), v, 10).0,
        Err(DumpError::KdumpBitmapBeyondFile { .. })
    ));
    let sub_blocks = u32::from_le_bytes(flat[432..436].try_into().unwrap()) as usize;
    let bitmap_blocks = u32::from_le_bytes(flat[436..440].try_into().unwrap()) as usize;
    let descs = (1 + sub_blocks + bitmap_blocks) * 4096;
    let mut v = flat.clone();
    // Every 7th descriptor: size u32::MAX, offset past the end, or size 1 (bad zlib data).
    let count = 2000;
    for i in 0..count {
        let d = descs + 24 * i * 7;
        match i % 3 {
            0 => v[d + 8..d + 12].copy_from_slice(&u32::MAX.to_le_bytes()),
            1 => v[d..d + 8].copy_from_slice(&(flat.len() as u64 * 2).to_le_bytes()),
            _ => v[d + 8..d + 12].copy_from_slice(&1u32.to_le_bytes()),
        }
    }
    let (r, failed) = open_and_read(&name("flat: bad descriptors"), v, usize::MAX);
    assert!(r.is_ok(), "{r:?}");
    assert!(
        failed >= count / 2,
        "only {failed} of {count} damaged pages failed"
    );
    println!(
        "{}: {failed} of {count} damaged kdump pages failed to read",
        g.name
    );

    // AVML: a capture avml took inside a guest, else one the real avml converts here.
    let in_guest = guests()
        .into_iter()
        .map(|g| g.dir.join("capture.avml-compressed"))
        .find(|p| p.is_file());
    let capture = if let Some(path) = in_guest {
        Some(std::fs::read(path).unwrap())
    } else if let Some(avml) = common::avml::avml_binary() {
        let dir = std::env::temp_dir().join(format!("vmi-hostile-avml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("raw.avml");
        common::avml::convert(&avml, "raw", "lime_compressed", &g.raw(), &out);
        let bytes = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Some(bytes)
    } else {
        None
    };
    if let Some(capture) = capture {
        let (r, failed) = open_and_read(&name("avml"), capture.clone(), 2000);
        assert!(r.is_ok() && failed == 0, "{r:?} {failed}");
        for frac in [1, 10, 300, 700, 999] {
            let cut = capture.len() * frac / 1000;
            let (r, _) = open_and_read(
                &name(&format!("avml cut at {cut:#x}")),
                capture[..cut].to_vec(),
                100,
            );
            assert!(r.is_err(), "avml cut at {cut:#x}: {r:?}");
        }
        // Flip bytes inside chunk data: CRC or snappy errors on read, never a panic.
        let mut v = capture.clone();
        for i in (4096..v.len() - 4096).step_by(v.len() / 64) {
            v[i] ^= 0x5a;
        }
        let (r, failed) = open_and_read(&name("avml flipped bytes"), v, usize::MAX);
        assert!(
            r.is_err() || failed > 0,
            "flipped bytes went unnoticed: {r:?}"
        );
        println!(
            "{}: 64 flipped AVML bytes: {r:?}, {failed} chunk reads failed",
            g.name
        );
    } else {
        vmi_fixtures::skip(
            "no in-guest capture.avml-compressed and $VMI_AVML unset: AVML hostile variants not run",
        );
    }
}

vmi_fixtures::real_guest_tests!(hostile_variants_of_real_compressed_dumps,);
