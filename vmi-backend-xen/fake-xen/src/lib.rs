//! Test only: a stand-in for Xen's userspace libraries, backed by a real guest dump.
//!
//! It exports the C functions `vmi-backend-xen` resolves from libxenctrl,
//! libxenforeignmemory, libxenstore and libxenevtchn, with their C signatures. Copied under
//! the real sonames into a directory that `$VMI_XEN_LIBRARY_DIR` names, it is loaded through
//! the backend's own loader, so a test drives the backend's whole Xen code path (library
//! loading, symbol resolution, xenstore lookups, foreign mappings with per-frame errors, HVM
//! save records, pause/unpause) against a real guest's memory and registers.
//!
//! The dump and the domain come from the environment:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `VMI_FAKE_XEN_DUMP` | the guest dump (a QEMU ELF core with per-vCPU registers); unset: every `*_open` fails with `ENOENT`, like a machine that is not a dom0 |
//! | `VMI_FAKE_XEN_NAME` | the domain's name in xenstore (default `fixture`) |
//! | `VMI_FAKE_XEN_DOMID` | its domain id (default 7) |
//! | `VMI_FAKE_XEN_LOG` | a file to append `pause`/`unpause`/`map`/`unmap` lines to |
//! | `VMI_FAKE_XEN_FAIL` | comma-separated calls that fail with `EPERM` (`pause`, `unpause`), read at each call: fault injection |
//!
//! The HVM CPU record is laid out byte by byte from the offsets of Xen 4.17's
//! `struct hvm_hw_cpu`, independently of the backend's `#[repr(C)]` type, so the two check
//! each other. Frames the dump does not hold fail alone in `xenforeignmemory_map`'s error
//! array, as on Xen. Writes through writable mappings are kept (in an overlay) when the
//! mapping is unmapped.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};

use vmi_backend_file::Dump;
use vmi_core::{Pa, VcpuRegisters, X86Registers};

const PAGE: usize = 4096;
const EPERM: c_int = 1;
const ENOENT: c_int = 2;
const ESRCH: c_int = 3;
const EINVAL: c_int = 22;
const ENOBUFS: c_int = 105;
const EOPNOTSUPP: c_int = 95;
const PROT_WRITE: c_int = 2;
const HVM_HW_CPU_SIZE: usize = 1032;

struct Domain {
    dump: Dump,
    domid: u32,
    name: String,
    frames: u64,
    vcpus: usize,
    log: Option<String>,
    overlay: Mutex<HashMap<u64, Box<[u8]>>>,
    mappings: Mutex<HashMap<usize, Mapping>>,
}

struct Mapping {
    pfns: Vec<u64>,
    ok: Vec<bool>,
    writable: bool,
    layout: Layout,
}

fn domain() -> Option<&'static Domain> {
    static DOMAIN: OnceLock<Option<Domain>> = OnceLock::new();
    DOMAIN
        .get_or_init(|| {
            let path = std::env::var_os("VMI_FAKE_XEN_DUMP")?;
            let dump = Dump::open(&path).ok()?;
            let end = dump
                .memory()
                .memory_map()
                .iter()
                .map(|r| r.end_raw())
                .max()?;
            let vcpus = dump.registers().map_or(0, |r| r.vcpu_count());
            Some(Domain {
                domid: std::env::var("VMI_FAKE_XEN_DOMID")
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(7),
                name: std::env::var("VMI_FAKE_XEN_NAME").unwrap_or_else(|_| "fixture".into()),
                frames: end.div_ceil(PAGE as u64),
                vcpus,
                log: std::env::var("VMI_FAKE_XEN_LOG").ok(),
                overlay: Mutex::new(HashMap::new()),
                mappings: Mutex::new(HashMap::new()),
                dump,
            })
        })
        .as_ref()
}

impl Domain {
    /// Whether `call` is made to fail; sets errno to `EPERM` if so. Read at each call (unlike
    /// the rest of the environment), so one test can fail a call, then let it succeed.
    fn fails(&self, call: &str) -> bool {
        let fails = std::env::var("VMI_FAKE_XEN_FAIL")
            .unwrap_or_default()
            .split(',')
            .any(|f| f == call);
        if fails {
            set_errno(EPERM);
        }
        fails
    }

    fn log(&self, line: &str) {
        if let Some(path) = &self.log {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{line}");
            }
        }
    }

    fn frame(&self, pfn: u64, out: &mut [u8]) -> bool {
        if let Some(page) = self.overlay.lock().unwrap().get(&pfn) {
            out.copy_from_slice(page);
            return true;
        }
        pfn < self.frames
            && self
                .dump
                .memory()
                .read(Pa::new(pfn * PAGE as u64), out)
                .is_ok()
    }

    fn registers(&self, vcpu: usize) -> Option<X86Registers> {
        self.dump.registers()?.registers(vcpu).ok()
    }
}

fn set_errno(e: c_int) {
    extern "C" {
        fn __errno_location() -> *mut c_int;
    }
    // SAFETY: glibc's thread-local errno location is always valid for the calling thread.
    let p = unsafe { __errno_location() };
    // SAFETY: `p` points to this thread's errno.
    unsafe { p.write(e) };
}

/// Writes `v` through `p` if it is not null.
///
/// # Safety
///
/// `p` must be null or valid for a write of `T`.
unsafe fn put<T>(p: *mut T, v: T) -> bool {
    if p.is_null() {
        return false;
    }
    // SAFETY: not null, and the caller guarantees validity.
    unsafe { p.write(v) };
    true
}

static HANDLE: u8 = 0;

fn handle<T>() -> *mut T {
    std::ptr::from_ref(&HANDLE).cast_mut().cast::<T>()
}

fn open_handle<T>() -> *mut T {
    if domain().is_some() {
        handle()
    } else {
        set_errno(ENOENT);
        std::ptr::null_mut()
    }
}

fn our_domain(domid: u32) -> Option<&'static Domain> {
    match domain() {
        Some(d) if d.domid == domid => Some(d),
        _ => {
            set_errno(ESRCH);
            None
        }
    }
}

/// `xc_interface_open`: fails with ENOENT when `VMI_FAKE_XEN_DUMP` is unset.
#[no_mangle]
pub extern "C" fn xc_interface_open(_l: *mut c_void, _d: *mut c_void, _f: c_uint) -> *mut c_void {
    open_handle()
}

/// `xc_interface_close`.
#[no_mangle]
pub extern "C" fn xc_interface_close(_xch: *mut c_void) -> c_int {
    0
}

/// `xc_domain_pause`.
#[no_mangle]
pub extern "C" fn xc_domain_pause(_xch: *mut c_void, domid: u32) -> c_int {
    our_domain(domid).map_or(-1, |d| {
        if d.fails("pause") {
            return -1;
        }
        d.log("pause");
        0
    })
}

/// `xc_domain_unpause`.
#[no_mangle]
pub extern "C" fn xc_domain_unpause(_xch: *mut c_void, domid: u32) -> c_int {
    our_domain(domid).map_or(-1, |d| {
        if d.fails("unpause") {
            return -1;
        }
        d.log("unpause");
        0
    })
}

/// `xc_domain_maximum_gpfn`.
///
/// # Safety
///
/// `gpfn` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_maximum_gpfn(
    _xch: *mut c_void,
    domid: u32,
    gpfn: *mut c_ulong,
) -> c_int {
    let Some(d) = our_domain(domid) else {
        return -1;
    };
    // SAFETY: the caller passes a valid out-pointer.
    if unsafe { put(gpfn, d.frames.saturating_sub(1)) } {
        0
    } else {
        set_errno(EINVAL);
        -1
    }
}

/// `xc_maximum_ram_page`.
///
/// # Safety
///
/// `mfn` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xc_maximum_ram_page(_xch: *mut c_void, mfn: *mut c_ulong) -> c_int {
    let frames = domain().map_or(0, |d| d.frames);
    // SAFETY: the caller passes a valid out-pointer.
    if unsafe { put(mfn, frames.saturating_sub(1)) } {
        0
    } else {
        -1
    }
}

/// `xc_domain_get_guest_width`: 8 (a 64-bit guest).
///
/// # Safety
///
/// `width` must be valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_get_guest_width(
    _xch: *mut c_void,
    domid: u32,
    width: *mut c_uint,
) -> c_int {
    if our_domain(domid).is_none() {
        return -1;
    }
    // SAFETY: the caller passes a valid out-pointer.
    if unsafe { put(width, 8) } {
        0
    } else {
        -1
    }
}

/// `xc_domain_hvm_getcontext`: the domain is HVM; with no buffer, the context's size.
#[no_mangle]
pub extern "C" fn xc_domain_hvm_getcontext(
    _xch: *mut c_void,
    domid: u32,
    buf: *mut u8,
    _size: u32,
) -> c_int {
    let Some(d) = our_domain(domid) else {
        return -1;
    };
    if !buf.is_null() {
        // The whole-context format is not emulated; vmi only asks for the size.
        set_errno(EOPNOTSUPP);
        return -1;
    }
    // Header + one CPU record (with its descriptor) per vCPU, roughly as Xen sizes it.
    c_int::try_from(64 + d.vcpus * (HVM_HW_CPU_SIZE + 8)).unwrap_or(c_int::MAX)
}

/// `xc_domain_hvm_getcontext_partial`: the `hvm_hw_cpu` record (typecode 2) of a vCPU,
/// from the dump's registers.
///
/// # Safety
///
/// `buf` must be valid for `size` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn xc_domain_hvm_getcontext_partial(
    _xch: *mut c_void,
    domid: u32,
    typecode: u16,
    instance: u16,
    buf: *mut c_void,
    size: u32,
) -> c_int {
    let Some(d) = our_domain(domid) else {
        return -1;
    };
    if typecode != 2 || buf.is_null() {
        set_errno(EINVAL);
        return -1;
    }
    if (size as usize) < HVM_HW_CPU_SIZE {
        set_errno(ENOBUFS);
        return -1;
    }
    let Some(regs) = d.registers(usize::from(instance)) else {
        set_errno(ENOENT);
        return -1;
    };
    let record = hvm_hw_cpu_bytes(&regs);
    // SAFETY: `buf` holds at least `size >= HVM_HW_CPU_SIZE` writable bytes (checked above).
    unsafe { std::ptr::copy_nonoverlapping(record.as_ptr(), buf.cast::<u8>(), HVM_HW_CPU_SIZE) };
    0
}

/// vmi's segment flags (QEMU layout) as Xen's `arbytes`.
fn arbytes(flags: u32) -> u32 {
    ((flags >> 8) & 0xff) | ((flags >> 12) & 0xf00)
}

/// `struct hvm_hw_cpu`, byte by byte (offsets of Xen 4.17's `xen/arch-x86/hvm/save.h`).
fn hvm_hw_cpu_bytes(r: &X86Registers) -> [u8; HVM_HW_CPU_SIZE] {
    let mut b = [0u8; HVM_HW_CPU_SIZE];
    let mut q = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    for (i, v) in [
        r.rax, r.rbx, r.rcx, r.rdx, r.rbp, r.rsi, r.rdi, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip, r.rflags, r.cr0, r.cr2, r.cr3, r.cr4,
    ]
    .into_iter()
    .enumerate()
    {
        q(512 + 8 * i, v);
    }
    // Segment bases: cs ds es fs gs ss tr ldtr idtr gdtr from 808.
    let segs = [r.cs, r.ds, r.es, r.fs, r.gs, r.ss];
    for (i, s) in segs.iter().enumerate() {
        q(808 + 8 * i, s.base);
    }
    q(832, r.fs_base);
    q(840, r.gs_base);
    q(872, r.idtr_base);
    q(880, r.gdtr_base);
    q(944, r.kernel_gs_base);
    q(992, r.efer);
    let mut d = |off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    for (i, s) in segs.iter().enumerate() {
        d(736 + 4 * i, u32::from(s.selector));
        d(768 + 4 * i, s.limit);
        d(888 + 4 * i, arbytes(s.flags));
    }
    d(1024, 1); // XEN_X86_FPU_INITIALISED
    b
}

/// `xc_vcpu_getcontext`: not emulated (the fake domain is HVM).
#[no_mangle]
pub extern "C" fn xc_vcpu_getcontext(
    _xch: *mut c_void,
    _domid: u32,
    _vcpu: u32,
    _ctxt: *mut c_void,
) -> c_int {
    set_errno(EOPNOTSUPP);
    -1
}

/// `xc_monitor_enable`: not emulated (events are a later issue).
#[no_mangle]
pub extern "C" fn xc_monitor_enable(
    _xch: *mut c_void,
    _domid: u32,
    _port: *mut u32,
) -> *mut c_void {
    set_errno(EOPNOTSUPP);
    std::ptr::null_mut()
}

/// `xc_monitor_disable`: not emulated.
#[no_mangle]
pub extern "C" fn xc_monitor_disable(_xch: *mut c_void, _domid: u32) -> c_int {
    set_errno(EOPNOTSUPP);
    -1
}

/// `xenforeignmemory_open`.
#[no_mangle]
pub extern "C" fn xenforeignmemory_open(_l: *mut c_void, _f: c_uint) -> *mut c_void {
    open_handle()
}

/// `xenforeignmemory_close`.
#[no_mangle]
pub extern "C" fn xenforeignmemory_close(_h: *mut c_void) -> c_int {
    0
}

/// `xenforeignmemory_map`: copies the frames into fresh page-aligned memory; a frame the
/// dump lacks gets `-EINVAL` in `err` and its page stays zero.
///
/// # Safety
///
/// `arr` and `err` must be valid for `pages` elements.
#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_map(
    _h: *mut c_void,
    dom: u32,
    prot: c_int,
    pages: usize,
    arr: *const c_ulong,
    err: *mut c_int,
) -> *mut c_void {
    let Some(d) = our_domain(dom) else {
        return std::ptr::null_mut();
    };
    if pages == 0 || arr.is_null() || err.is_null() {
        set_errno(EINVAL);
        return std::ptr::null_mut();
    }
    // SAFETY: the caller passes `pages` frame numbers.
    let pfns = unsafe { std::slice::from_raw_parts(arr, pages) }.to_vec();
    // SAFETY: the caller passes `pages` writable error slots.
    let errs = unsafe { std::slice::from_raw_parts_mut(err, pages) };
    let Ok(layout) = Layout::from_size_align(pages * PAGE, PAGE) else {
        set_errno(EINVAL);
        return std::ptr::null_mut();
    };
    // SAFETY: the layout's size is non-zero (pages > 0).
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        set_errno(12);
        return std::ptr::null_mut();
    }
    // SAFETY: `base` is a fresh allocation of `pages * PAGE` bytes, owned here.
    let mem = unsafe { std::slice::from_raw_parts_mut(base, pages * PAGE) };
    let mut ok = Vec::with_capacity(pages);
    for (i, pfn) in pfns.iter().enumerate() {
        let good = d.frame(*pfn, &mut mem[i * PAGE..(i + 1) * PAGE]);
        errs[i] = if good { 0 } else { -EINVAL };
        ok.push(good);
    }
    d.log(&format!("map {pages}"));
    d.mappings.lock().unwrap().insert(
        base as usize,
        Mapping {
            pfns,
            ok,
            writable: prot & PROT_WRITE != 0,
            layout,
        },
    );
    base.cast::<c_void>()
}

/// `xenforeignmemory_unmap`: frees a mapping, keeping what was written through it.
///
/// # Safety
///
/// `addr` must be a mapping `xenforeignmemory_map` returned and not yet unmapped.
#[no_mangle]
pub unsafe extern "C" fn xenforeignmemory_unmap(
    _h: *mut c_void,
    addr: *mut c_void,
    pages: usize,
) -> c_int {
    let Some(d) = domain() else { return -1 };
    let Some(m) = d.mappings.lock().unwrap().remove(&(addr as usize)) else {
        set_errno(EINVAL);
        return -1;
    };
    if m.pfns.len() != pages {
        set_errno(EINVAL);
        return -1;
    }
    if m.writable {
        // SAFETY: `addr` is this mapping's live allocation of `pages * PAGE` bytes.
        let mem = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), pages * PAGE) };
        let mut before = vec![0u8; PAGE];
        for (i, pfn) in m.pfns.iter().enumerate() {
            let page = &mem[i * PAGE..(i + 1) * PAGE];
            // `frame` takes the overlay's lock: compare first, then insert.
            if m.ok[i] && (!d.frame(*pfn, &mut before) || before != page) {
                d.overlay.lock().unwrap().insert(*pfn, page.into());
            }
        }
    }
    d.log(&format!("unmap {pages}"));
    // SAFETY: allocated in `xenforeignmemory_map` with exactly this layout.
    unsafe { std::alloc::dealloc(addr.cast::<u8>(), m.layout) };
    0
}

/// `xs_open`.
#[no_mangle]
pub extern "C" fn xs_open(_flags: c_ulong) -> *mut c_void {
    open_handle()
}

/// `xs_close`.
#[no_mangle]
pub extern "C" fn xs_close(_h: *mut c_void) {}

fn xs_lookup(path: &str) -> Option<Result<Vec<String>, String>> {
    let d = domain()?;
    let dom = format!("/local/domain/{}", d.domid);
    Some(match path {
        "/local/domain" => Ok(vec!["0".into(), d.domid.to_string()]),
        "/local/domain/0/name" => Err("Domain-0".into()),
        p if p == format!("{dom}/name") => Err(d.name.clone()),
        p if p == format!("{dom}/cpu") => Ok((0..d.vcpus).map(|i| i.to_string()).collect()),
        _ => return None,
    })
}

fn c_path(path: *const c_char) -> Option<String> {
    if path.is_null() {
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated path.
    Some(
        unsafe { CStr::from_ptr(path) }
            .to_string_lossy()
            .into_owned(),
    )
}

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
}

/// `xs_directory`: one malloc'd block holding the pointer array and the strings.
///
/// # Safety
///
/// `path` must be NUL-terminated; `num` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xs_directory(
    _h: *mut c_void,
    _t: u32,
    path: *const c_char,
    num: *mut c_uint,
) -> *mut *mut c_char {
    let Some(Some(Ok(entries))) = c_path(path).map(|p| xs_lookup(&p)) else {
        set_errno(ENOENT);
        return std::ptr::null_mut();
    };
    let table = entries.len() * size_of::<*mut c_char>();
    let total = table + entries.iter().map(|e| e.len() + 1).sum::<usize>();
    // SAFETY: plain allocation; the caller frees it with free().
    let block = unsafe { malloc(total.max(1)) }.cast::<u8>();
    if block.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `block` is `total` fresh bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(block, total) };
    let mut at = table;
    let mut ptrs = Vec::with_capacity(entries.len());
    for e in &entries {
        bytes[at..at + e.len()].copy_from_slice(e.as_bytes());
        bytes[at + e.len()] = 0;
        ptrs.push(block.wrapping_add(at) as usize);
        at += e.len() + 1;
    }
    for (i, p) in ptrs.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&p.to_ne_bytes());
    }
    // SAFETY: the caller passes a valid out-pointer.
    unsafe { put(num, c_uint::try_from(entries.len()).unwrap_or(0)) };
    block.cast::<*mut c_char>()
}

/// `xs_read`: a malloc'd, NUL-terminated value.
///
/// # Safety
///
/// `path` must be NUL-terminated; `len` null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xs_read(
    _h: *mut c_void,
    _t: u32,
    path: *const c_char,
    len: *mut c_uint,
) -> *mut c_void {
    let Some(Some(Err(value))) = c_path(path).map(|p| xs_lookup(&p)) else {
        set_errno(ENOENT);
        return std::ptr::null_mut();
    };
    // SAFETY: plain allocation; the caller frees it with free().
    let block = unsafe { malloc(value.len() + 1) }.cast::<u8>();
    if block.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `block` is `value.len() + 1` fresh bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(block, value.len() + 1) };
    bytes[..value.len()].copy_from_slice(value.as_bytes());
    bytes[value.len()] = 0;
    // SAFETY: the caller passes a valid out-pointer (or null).
    unsafe { put(len, c_uint::try_from(value.len()).unwrap_or(0)) };
    block.cast::<c_void>()
}

/// `xenevtchn_open`.
#[no_mangle]
pub extern "C" fn xenevtchn_open(_l: *mut c_void, _f: c_uint) -> *mut c_void {
    open_handle()
}

/// `xenevtchn_close`.
#[no_mangle]
pub extern "C" fn xenevtchn_close(_h: *mut c_void) -> c_int {
    0
}
