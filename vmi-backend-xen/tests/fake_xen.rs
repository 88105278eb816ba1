//! The backend's whole Xen code path against `vmi-fake-xen`, a test-only library exporting
//! the Xen functions, backed by a real guest dump and loaded through the backend's own loader
//! (`$VMI_XEN_LIBRARY_DIR`): registers, memory (holes, the mapping cache, writes), domain
//! lookup, pause/resume. This proves vmi's side of the ABI; no Xen hypervisor runs here.

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use vmi_backend_file::Dump;
use vmi_backend_xen::memory::{CHUNK_FRAMES, MAX_CHUNKS};
use vmi_backend_xen::{
    open_with, DomainSpec, LibrarySearch, PauseGuard, XenError, XenLibraries, XenMemory,
};
use vmi_core::{MemoryError, OpenOptions, Pa, PhysicalMemory, Target, VcpuRegisters};

const NAME: &str = "web01";
const DOMID: u32 = 7;

struct Fixture {
    libs: Arc<XenLibraries>,
    dump: Dump,
    log: PathBuf,
}

/// The fake libraries, set up once per process (the fake reads its environment once).
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    let f = FIXTURE
        .get_or_init(|| {
            let guest = vmi_fixtures::guests().into_iter().next()?;
            let log = std::env::temp_dir().join(format!("vmi-fake-xen-{}.log", std::process::id()));
            let _ = std::fs::remove_file(&log);
            std::env::set_var("VMI_FAKE_XEN_DUMP", guest.elf());
            std::env::set_var("VMI_FAKE_XEN_NAME", NAME);
            std::env::set_var("VMI_FAKE_XEN_DOMID", DOMID.to_string());
            std::env::set_var("VMI_FAKE_XEN_LOG", &log);
            let dir = support::fake_library_dir();
            let libs = Arc::new(XenLibraries::load(&LibrarySearch::Dir(dir)).unwrap());
            Some(Fixture {
                libs,
                dump: Dump::open(guest.elf()).unwrap(),
                log,
            })
        })
        .as_ref();
    if f.is_none() {
        // Only the first test asked `vmi_fixtures`; every test reports its own skip.
        vmi_fixtures::guests();
    }
    f
}

fn open(spec: &str, write: bool) -> Result<Target, XenError> {
    let f = fixture().unwrap();
    open_with(
        f.libs.clone(),
        &DomainSpec::parse(spec).unwrap(),
        &OpenOptions { write },
    )
}

fn registers_equal_the_dumps() {
    let Some(f) = fixture() else { return };
    let t = open(NAME, false).unwrap();
    assert_eq!((t.backend, t.format.as_str()), ("xen", "hvm"));
    let ours = t.registers.unwrap();
    let truth = f.dump.registers().unwrap();
    assert_eq!(ours.vcpu_count(), truth.vcpu_count());
    for i in 0..truth.vcpu_count() {
        let (a, b) = (ours.registers(i).unwrap(), truth.registers(i).unwrap());
        assert_eq!(
            (a.cr0, a.cr3, a.cr4, a.efer, a.rip, a.rsp, a.rflags),
            (b.cr0, b.cr3, b.cr4, b.efer, b.rip, b.rsp, b.rflags),
            "vCPU {i}"
        );
        assert_eq!(
            (a.rax, a.r15, a.gs_base, a.kernel_gs_base),
            (b.rax, b.r15, b.gs_base, b.kernel_gs_base)
        );
        assert_eq!(
            (a.cs.selector, a.cs.long_mode()),
            (b.cs.selector, b.cs.long_mode()),
            "vCPU {i}"
        );
        assert_eq!((a.idtr_base, a.gdtr_base), (b.idtr_base, b.gdtr_base));
    }
    assert!(ours.registers(truth.vcpu_count()).is_err());
}

fn memory_equals_the_dumps_and_a_hole_fails_alone() {
    let Some(f) = fixture() else { return };
    let t = open(&DOMID.to_string(), false).unwrap();
    assert!(t.writer.is_none(), "writable without --write");
    let details: std::collections::HashMap<_, _> = t.details.iter().cloned().collect();
    assert_eq!(details["name"], NAME);
    let mem = t.memory;
    let regions = f.dump.memory().memory_map().to_vec();
    for r in &regions {
        for pa in [r.start.raw(), r.end_raw() - 4096, r.start.raw() + r.len / 2] {
            let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
            mem.read(Pa::new(pa), &mut a).unwrap();
            f.dump.memory().read(Pa::new(pa), &mut b).unwrap();
            assert!(a == b, "bytes differ at {pa:#x}");
        }
    }
    // A read spanning many chunks (and page boundaries at odd offsets).
    let big = &regions.iter().max_by_key(|r| r.len).unwrap();
    let len = (3 * CHUNK_FRAMES as usize * 4096 + 123).min(big.len as usize - 4096);
    let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
    mem.read(Pa::new(big.start.raw() + 77), &mut a).unwrap();
    f.dump
        .memory()
        .read(Pa::new(big.start.raw() + 77), &mut b)
        .unwrap();
    assert!(a == b);

    // A frame the guest lacks: the frame before it reads, the hole fails alone.
    let gap = regions
        .windows(2)
        .find(|w| w[1].start.raw() > w[0].end_raw())
        .map(|w| w[0].end_raw())
        .expect("the dump has a hole");
    let mut page = [0u8; 4096];
    mem.read(Pa::new(gap - 4096), &mut page).unwrap();
    let err = mem.read(Pa::new(gap), &mut page).unwrap_err();
    assert!(matches!(err, MemoryError::Io { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{gap:#x}")), "{err}");
    assert!(mem.read(Pa::new(gap - 8), &mut [0u8; 16]).is_err());
    // Beyond the maximum frame: outside the memory map.
    let end = mem.memory_map()[0].end_raw();
    assert!(matches!(
        mem.read(Pa::new(end - 4), &mut [0u8; 8]),
        Err(MemoryError::OutOfRange { .. })
    ));
}

fn the_mapping_cache_is_bounded() {
    let Some(f) = fixture() else { return };
    let xen = Arc::new(vmi_backend_xen::Xen::open(f.libs.clone()).unwrap());
    let regions = f.dump.memory().memory_map().to_vec();
    let big = regions.iter().max_by_key(|r| r.len).unwrap();
    let mem = XenMemory::new(xen, DOMID, (big.end_raw() >> 12) - 1, false);
    let chunk = CHUNK_FRAMES * 4096;
    let mut b = [0u8; 8];
    let mut touched = 0;
    let mut pa = big.start.raw().next_multiple_of(chunk);
    while pa + 8 <= big.end_raw() && touched < MAX_CHUNKS + 8 {
        mem.read(Pa::new(pa), &mut b).unwrap();
        assert!(mem.mapped_chunks() <= MAX_CHUNKS);
        pa += chunk;
        touched += 1;
    }
    assert!(touched > MAX_CHUNKS, "guest too small to exceed the cache");
    assert_eq!(mem.mapped_chunks(), MAX_CHUNKS);
    mem.invalidate();
    assert_eq!(mem.mapped_chunks(), 0);
}

fn writes_only_with_write_and_never_partially_into_a_hole() {
    let Some(f) = fixture() else { return };
    let t = open(NAME, true).unwrap();
    let w = t.writer.clone().expect("--write gives a writer");
    let regions = f.dump.memory().memory_map().to_vec();
    let r = regions.iter().max_by_key(|r| r.len).unwrap();
    let pa = Pa::new(r.start.raw() + 0x1234);
    let mut before = [0u8; 16];
    t.memory.read(pa, &mut before).unwrap();
    w.write(pa, b"VMI-XEN-WRITE-OK").unwrap();
    t.memory.invalidate(); // unmaps: the fake keeps what was written through the mapping
    let mut after = [0u8; 16];
    t.memory.read(pa, &mut after).unwrap();
    assert_eq!(&after, b"VMI-XEN-WRITE-OK");
    w.write(pa, &before).unwrap();

    let gap = regions
        .windows(2)
        .find(|w| w[1].start.raw() > w[0].end_raw())
        .map(|w| w[0].end_raw())
        .unwrap();
    let mut edge = [0u8; 8];
    t.memory.read(Pa::new(gap - 8), &mut edge).unwrap();
    assert!(w.write(Pa::new(gap - 8), &[0xee; 16]).is_err());
    t.memory.invalidate();
    let mut again = [0u8; 8];
    t.memory.read(Pa::new(gap - 8), &mut again).unwrap();
    assert_eq!(edge, again, "a write into a hole wrote its first part");
}

fn pause_is_undone_by_the_guard_and_by_dropping_the_target() {
    let Some(f) = fixture() else { return };
    let count = |what: &str| {
        std::fs::read_to_string(&f.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == what)
            .count()
    };
    let t = open(NAME, false).unwrap();
    let control = t.control.clone().unwrap();
    let (p0, u0) = (count("pause"), count("unpause"));
    {
        let _guard = PauseGuard::new(control.clone()).unwrap();
        assert_eq!(count("pause"), p0 + 1);
    }
    assert_eq!(count("unpause"), u0 + 1);
    // Paused, then the target is dropped (an analysis failed midway): resumed.
    control.pause().unwrap();
    drop(control);
    drop(t);
    assert_eq!(count("pause"), p0 + 2);
    assert_eq!(count("unpause"), u0 + 2);
    // A resume without a pause by vmi does not unpause someone else's pause.
    let t = open(NAME, false).unwrap();
    t.control.as_ref().unwrap().resume().unwrap();
    assert_eq!(count("unpause"), u0 + 2);
}

fn unknown_names_list_the_domains() {
    if fixture().is_none() {
        return;
    }
    let Err(err) = open("db02", false) else {
        panic!("db02 opened")
    };
    let msg = err.to_string();
    assert!(matches!(err, XenError::NoSuchDomain { .. }), "{msg}");
    assert!(
        msg.contains("db02") && msg.contains(NAME) && msg.contains("Domain-0"),
        "{msg}"
    );
    let Err(err) = open("4242", false) else {
        panic!("4242 opened")
    };
    assert!(err.to_string().contains("4242"), "{err}");
}

vmi_fixtures::real_guest_tests!(
    registers_equal_the_dumps,
    memory_equals_the_dumps_and_a_hole_fails_alone,
    the_mapping_cache_is_bounded,
    writes_only_with_write_and_never_partially_into_a_hole,
    pause_is_undone_by_the_guard_and_by_dropping_the_target,
    unknown_names_list_the_domains,
);
