//! Shared set-up of the vmi benchmarks: synthetic address spaces with every page of a RAM
//! image mapped, seeded address lists, and the real-guest dump to measure on.

use std::path::PathBuf;

use vmi_arch_x86::testing::{PageTableBuilder, SplitMix64};
use vmi_core::memory::BufferMemory;
use vmi_core::{AddressSpace, Pa, PageSize, PagingMode, Permissions, Va};

/// Where the synthetic RAM image is mapped: the start of the Linux direct map on 4-level
/// paging, canonical in both 4- and 5-level modes.
pub const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;

/// A synthetic guest: `ram_bytes` of RAM, all of it mapped with 4 KiB pages at
/// [`DIRECT_MAP`] (the page tables live in the same memory, as in a real guest).
pub struct SyntheticGuest {
    /// Guest memory (page tables and data).
    pub memory: BufferMemory,
    /// The address space that maps it.
    pub space: AddressSpace,
    /// Bytes mapped from [`DIRECT_MAP`].
    pub mapped_bytes: u64,
}

impl SyntheticGuest {
    /// Builds the guest. 512 MiB of RAM takes 131072 page-table entries.
    pub fn new(mode: PagingMode, ram_bytes: u64) -> Self {
        // Room for the page tables after the mapped RAM: one table per 2 MiB plus the upper
        // levels.
        let tables = ram_bytes / (2 << 20) + 64;
        let total = ram_bytes + tables * 4096;
        let mut builder = PageTableBuilder::new(
            mode,
            usize::try_from(total).expect("benchmark image fits in memory"),
        );
        let rw = Permissions {
            writable: true,
            user: false,
            executable: false,
        };
        for page in 0..ram_bytes / 4096 {
            let off = page * 4096;
            builder
                .map(
                    Va::new(DIRECT_MAP + off),
                    Pa::new(off),
                    PageSize::Size4K,
                    rw,
                )
                .expect("mapping the synthetic direct map");
        }
        let space = builder.space();
        Self {
            memory: builder.into_memory(),
            space,
            mapped_bytes: ram_bytes,
        }
    }
}

/// `count` seeded 8-byte-aligned addresses in `[base, base + span - 8]`.
pub fn seeded_addresses(seed: u64, base: u64, span: u64, count: usize) -> Vec<Va> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| Va::new(base + (rng.below(span / 8 - 1) * 8)))
        .collect()
}

/// The real guest to measure on: `$VMI_BENCH_GUEST` (a complete fixture guest), else the 6.1
/// guest with 5-level paging among the fixtures (see `vmi-fixtures`), else the first one
/// without PTI. `None` if there is none (a `vmi_fixtures::skip`: the real-dump benchmarks
/// are then skipped with a message, or fail under `$VMI_REQUIRE_FIXTURES`).
pub fn real_guest() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VMI_BENCH_GUEST") {
        let dir = PathBuf::from(dir);
        if vmi_fixtures::load(&dir).is_none() {
            vmi_fixtures::skip(format_args!(
                "$VMI_BENCH_GUEST names {}, which is not a complete fixture guest",
                dir.display()
            ));
            return None;
        }
        return Some(dir);
    }
    let guests = vmi_fixtures::guests();
    let picked = guests
        .iter()
        .find(|g| g.kernel_release.starts_with("6.1.") && g.paging == 5 && !g.pti)
        .or(guests.iter().find(|g| !g.pti))
        .map(|g| g.dir.clone());
    if picked.is_none() && !guests.is_empty() {
        vmi_fixtures::skip("no fixture guest without PTI to measure on");
    }
    picked
}
