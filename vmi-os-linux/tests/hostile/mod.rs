//! What the hostile-guest tests share: a global allocator that notes the largest allocation
//! (to show no guest length sizes one), and an overlay that patches a real dump's physical
//! memory without writing a file.

#![allow(dead_code)] // each test binary uses a different part

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use vmi_core::{
    AddressSpace, MemoryError, MemoryRegion, Pa, PageSize, PhysicalMemory, Session, Target, Va,
    VcpuRegisters,
};

// ---------------------------------------------------------------------------------------------
// The largest single allocation made by the current thread, to show that no guest length sizes
// an allocation.

thread_local! {
    /// Const-initialised and without a destructor, so touching it never allocates.
    static LARGEST_ALLOC: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    LARGEST_ALLOC.with(|m| m.set(m.get().max(size)));
}

/// `System`, noting the size of each allocation on the allocating thread.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as it does for `System`; the bookkeeping only touches a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (every allocation goes through it) with
        // `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        // SAFETY: as for `dealloc`; the caller guarantees `new_size` is valid for `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
pub fn largest_alloc<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST_ALLOC.with(|m| m.set(0));
    let r = f();
    (r, LARGEST_ALLOC.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Patched guests.

/// A dump's physical memory with some bytes replaced.
pub struct Overlay {
    /// The dump's memory.
    pub inner: Arc<dyn PhysicalMemory>,
    /// Bytes to show instead, by physical address.
    pub patches: BTreeMap<Pa, Vec<u8>>,
}

impl PhysicalMemory for Overlay {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read(pa, buf)?;
        let start = pa.raw();
        let end = start + buf.len() as u64;
        for (at, bytes) in self.patches.range(..Pa::new(end)) {
            let (p0, p1) = (at.raw(), at.raw() + bytes.len() as u64);
            let (lo, hi) = (p0.max(start), p1.min(end));
            if lo < hi {
                buf[(lo - start) as usize..(hi - start) as usize]
                    .copy_from_slice(&bytes[(lo - p0) as usize..(hi - p0) as usize]);
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &[MemoryRegion] {
        self.inner.memory_map()
    }
}

/// A session on `memory` with `patches` shown instead of the dump's bytes.
pub fn patched_session(
    memory: &Arc<dyn PhysicalMemory>,
    registers: &Option<Arc<dyn VcpuRegisters>>,
    patches: &BTreeMap<Pa, Vec<u8>>,
) -> Session {
    let target = Target {
        backend: "file",
        format: "elf-core (patched)".into(),
        memory: Arc::new(Overlay {
            inner: memory.clone(),
            patches: patches.clone(),
        }),
        registers: registers.clone(),
        control: None,
        writer: None,
        slow_reads: false,
        vmcoreinfo: None,
        details: Vec::new(),
    };
    Session::from_target("hostile", target, Box::new(vmi_arch_x86::X86::new()))
}

/// A guest's kernel as the patch builder needs it.
pub trait KernelView {
    /// The unpatched session.
    fn session(&self) -> &Session;
    /// The kernel's address space.
    fn space(&self) -> AddressSpace;
}

/// Bytes to write at kernel virtual addresses, kept by physical address.
#[derive(Default, Clone)]
pub struct Patches(pub BTreeMap<Pa, Vec<u8>>);

impl Patches {
    /// Writes `bytes` at `va` (kernel space of `base`), page by page.
    pub fn at(mut self, base: &impl KernelView, va: Va, bytes: &[u8]) -> Self {
        let mut done = 0;
        while done < bytes.len() {
            let cur = va.checked_add(done as u64).unwrap();
            let t = base.session().translate(base.space(), cur).unwrap();
            let n = ((4096 - cur.page_offset(PageSize::Size4K)) as usize).min(bytes.len() - done);
            self.0.insert(t.pa, bytes[done..done + n].to_vec());
            done += n;
        }
        self
    }

    /// Writes a little-endian `u64` at `va`.
    pub fn u64_at(self, base: &impl KernelView, va: Va, value: u64) -> Self {
        self.at(base, va, &value.to_le_bytes())
    }
}

/// A real guest opened for patching.
pub struct OpenGuest {
    /// The dump's memory, to build patched sessions over.
    pub memory: Arc<dyn PhysicalMemory>,
    /// The dump's vCPU registers.
    pub registers: Option<Arc<dyn VcpuRegisters>>,
    /// The unpatched session.
    pub session: Session,
    /// The kernel found in it.
    pub kernel: vmi_os_linux::Kernel,
}

/// Opens `guest`'s dump and finds its kernel.
pub fn open_guest(guest: &vmi_fixtures::Guest) -> OpenGuest {
    use crate::common::GuestExt;
    let target = vmi_backend_file::Dump::open(guest.elf())
        .unwrap()
        .into_target();
    let (memory, registers) = (target.memory.clone(), target.registers.clone());
    let session = Session::from_target(
        guest.elf().to_str().unwrap(),
        target,
        Box::new(vmi_arch_x86::X86::new()),
    );
    let kernel = guest.kernel(&session);
    OpenGuest {
        memory,
        registers,
        session,
        kernel,
    }
}
