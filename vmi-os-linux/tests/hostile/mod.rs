//! What the hostile-guest tests share: a global allocator that notes the largest allocation
//! (to show no guest length sizes one), and an overlay that patches a real dump's physical
//! memory without writing a file, and can add made-up memory (bytes computed on demand, mapped
//! into the kernel's address space) for floods far larger than any file.

#![allow(dead_code)] // each test binary uses a different part

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use vmi_core::{
    AddressSpace, MemoryError, MemoryRegion, Pa, PageSize, PagingMode, PhysicalMemory, Session,
    Target, Va, VcpuRegisters,
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

/// Bytes computed on demand: `fill(offset, buf)` writes the bytes at `offset..offset +
/// buf.len()` of the region.
pub type Fill = Arc<dyn Fn(u64, &mut [u8]) + Send + Sync>;

/// Guest-physical memory that is not in the dump: made up by a function, so a flood of
/// gigabytes costs nothing to build.
#[derive(Clone)]
pub struct Synthetic {
    /// First physical address (beyond the dump's memory).
    pub start: Pa,
    /// Length.
    pub len: u64,
    /// The bytes.
    pub fill: Fill,
}

/// A dump's physical memory with some bytes replaced, and made-up regions added.
pub struct Overlay {
    /// The dump's memory.
    pub inner: Arc<dyn PhysicalMemory>,
    /// Bytes to show instead, by physical address (each at most a page: see [`Patches::at`]).
    pub patches: BTreeMap<Pa, Vec<u8>>,
    /// Made-up regions.
    pub synthetic: Vec<Synthetic>,
    /// The dump's memory map and the made-up regions.
    map: Vec<MemoryRegion>,
}

impl Overlay {
    /// `inner` with `patches` and `synthetic` regions.
    pub fn new(
        inner: Arc<dyn PhysicalMemory>,
        patches: BTreeMap<Pa, Vec<u8>>,
        synthetic: Vec<Synthetic>,
    ) -> Overlay {
        let mut map = inner.memory_map().to_vec();
        map.extend(synthetic.iter().map(|r| MemoryRegion {
            start: r.start,
            len: r.len,
        }));
        map.sort_by_key(|r| r.start);
        Overlay {
            inner,
            patches,
            synthetic,
            map,
        }
    }
}

impl PhysicalMemory for Overlay {
    fn read(&self, pa: Pa, buf: &mut [u8]) -> Result<(), MemoryError> {
        let start = pa.raw();
        let end = start + buf.len() as u64;
        if let Some(r) = self
            .synthetic
            .iter()
            .find(|r| start >= r.start.raw() && end <= r.start.raw() + r.len)
        {
            (r.fill)(start - r.start.raw(), buf);
        } else {
            self.inner.read(pa, buf)?;
        }
        // Patches are at most a page long: only those starting a page before `start` or later
        // can overlap, which keeps a read cheap however many patches there are.
        let from = Pa::new(start.saturating_sub(PageSize::Size4K.bytes()));
        for (at, bytes) in self.patches.range(from..Pa::new(end)) {
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
        &self.map
    }
}

/// A session on `memory` with `patches` shown instead of the dump's bytes.
pub fn patched_session(
    memory: &Arc<dyn PhysicalMemory>,
    registers: &Option<Arc<dyn VcpuRegisters>>,
    patches: &BTreeMap<Pa, Vec<u8>>,
) -> Session {
    synthetic_session(memory, registers, patches, Vec::new())
}

/// A session on `memory` with `patches` shown instead of the dump's bytes and `synthetic`
/// regions added to its physical memory.
pub fn synthetic_session(
    memory: &Arc<dyn PhysicalMemory>,
    registers: &Option<Arc<dyn VcpuRegisters>>,
    patches: &BTreeMap<Pa, Vec<u8>>,
    synthetic: Vec<Synthetic>,
) -> Session {
    for (at, bytes) in patches {
        assert!(bytes.len() <= 4096, "a patch at {at} is longer than a page");
    }
    let overlay = Overlay::new(memory.clone(), patches.clone(), synthetic);
    let target = Target::builder("file", "elf-core (patched)", Arc::new(overlay))
        .maybe_registers(registers.clone())
        .build();
    Session::from_target("hostile", target, Box::new(vmi_arch_x86::X86::new()))
}

/// Where made-up memory starts in guest-physical space: far above any fixture's RAM, below
/// MAXPHYADDR, 1 GiB-aligned.
pub const MADE_UP_PA: u64 = 0x40_0000_0000;

const GIB: u64 = 1 << 30;

/// Kernel virtual memory made up by a function: `gib` GiB at [`MadeUp::va`], whose bytes
/// `fill(offset, buf)` computes.
pub struct MadeUp {
    /// Where the made-up memory is in the kernel's address space.
    pub va: Va,
    /// The patch of the kernel's top-level page table that maps it (add it to a test's
    /// patches).
    pub root_patch: (Pa, Vec<u8>),
    /// The physical region behind it (its first GiB holds the made-up page tables).
    pub region: Synthetic,
}

/// Maps `gib` GiB of made-up memory into the kernel's address space of `base`: an unused
/// kernel-half slot of its top-level page table points to made-up tables (a PDPT, and a P4D
/// with 5 levels) of 1 GiB pages, whose frames `fill` computes.
pub fn made_up_kernel_memory(base: &impl KernelView, gib: u64, fill: Fill) -> MadeUp {
    assert!((1..=511).contains(&gib));
    let space = base.space();
    let (shift, va_bits) = match space.mode {
        PagingMode::Ia32e4 => (39, 48),
        PagingMode::Ia32e5 => (48, 57),
        m => panic!("made-up kernel memory needs IA-32e paging, not {m}"),
    };
    let mem = base.session().memory();
    let slot = (256..512u64)
        .rev()
        .find(|i| {
            let mut e = [0u8; 8];
            mem.read(Pa::new(space.root.raw() + i * 8), &mut e).is_ok() && e == [0; 8]
        })
        .expect("a free kernel-half slot in the top-level page table");
    let raw = slot << shift;
    let va = Va::new(raw | !((1u64 << va_bits) - 1));
    // The made-up tables: [0x0000] the PDPT (1 GiB pages of the data, which starts 1 GiB into
    // the region), [0x1000] the P4D pointing to it with 5-level paging.
    const TABLE: u64 = 0x63; // present, writable, accessed, dirty
    const HUGE: u64 = 0xe3; // ... and PS: a 1 GiB page
    let mut tables = vec![0u8; 0x2000];
    for j in 0..gib {
        let e = (MADE_UP_PA + (j + 1) * GIB) | HUGE;
        tables[(j * 8) as usize..(j * 8 + 8) as usize].copy_from_slice(&e.to_le_bytes());
    }
    let top_target = if space.mode == PagingMode::Ia32e5 {
        tables[0x1000..0x1008].copy_from_slice(&(MADE_UP_PA | TABLE).to_le_bytes());
        MADE_UP_PA + 0x1000
    } else {
        MADE_UP_PA
    };
    let tables: Arc<[u8]> = tables.into();
    let region = Synthetic {
        start: Pa::new(MADE_UP_PA),
        len: (gib + 1) * GIB,
        fill: Arc::new(move |off, buf| {
            if off < GIB {
                buf.fill(0);
                let (s, e) = (off as usize, (off as usize + buf.len()).min(tables.len()));
                if s < e {
                    buf[..e - s].copy_from_slice(&tables[s..e]);
                }
            } else {
                fill(off - GIB, buf);
            }
        }),
    };
    MadeUp {
        va,
        root_patch: (
            Pa::new(space.root.raw() + slot * 8),
            (top_target | TABLE).to_le_bytes().to_vec(),
        ),
        region,
    }
}

/// Writes `value` where it overlaps `buf`, which holds the bytes at `buf_at..` of a made-up
/// region, for a field at `field_at` (both offsets in the region).
pub fn put(buf: &mut [u8], buf_at: u64, field_at: u64, value: &[u8]) {
    let (b0, b1) = (buf_at, buf_at + buf.len() as u64);
    let (f0, f1) = (field_at, field_at + value.len() as u64);
    let (lo, hi) = (b0.max(f0), b1.min(f1));
    if lo < hi {
        buf[(lo - b0) as usize..(hi - b0) as usize]
            .copy_from_slice(&value[(lo - f0) as usize..(hi - f0) as usize]);
    }
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
