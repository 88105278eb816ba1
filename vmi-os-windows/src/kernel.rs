//! The discovered kernel: where nt is, which build (by PDB identity), its page tables, its
//! symbol table and the offsets resolved from it.

use std::path::PathBuf;

use vmi_core::{AddressSpace, Pa, Profile, Session, Va, VirtualMemory};

use crate::comps::Offsets;
use crate::discovery::kdbg::{self, Kdbg};
use crate::discovery::{DtbSource, NtImage};
use crate::mem::{GuestMemory, WindowsMemory};
use crate::symbols::{self, PdbId, SymbolTable};
use crate::WindowsError;

/// KUSER_SHARED_DATA's kernel address (fixed on x64).
pub const KUSER_SHARED_DATA: u64 = 0xFFFF_F780_0000_0000;

/// How the symbol table was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableMatch {
    /// The RSDS GUID and age named it.
    Guid,
    /// Given with `--symbols`, without a GUID check.
    Given,
    /// No RSDS: its RVAs fit the dump header's (or the list heads' own) addresses.
    Fingerprint,
}

/// A Windows kernel found in a guest.
#[derive(Debug)]
pub struct Kernel {
    profile: Profile,
    complete: bool,
    subset_json: Option<Vec<u8>>,
    offsets: Offsets,
    image: NtImage,
    space: AddressSpace,
    dtb_source: DtbSource,
    table_match: TableMatch,
    build: Option<u32>,
    kuser_build: Option<u32>,
    kva_shadow: Option<bool>,
    kdbg: Result<Kdbg, String>,
    found_through: Option<DtbSource>,
}

impl Kernel {
    /// The kernel of `image` in `space`, with the symbol table `table`.
    pub fn new(
        session: &Session,
        space: AddressSpace,
        dtb_source: DtbSource,
        image: NtImage,
        table: SymbolTable,
        table_match: TableMatch,
    ) -> Result<Kernel, WindowsError> {
        let offsets = Offsets::resolve(&table.profile)?;
        let mut k = Kernel {
            profile: table.profile,
            complete: table.complete,
            subset_json: table.subset_json,
            offsets,
            image,
            space,
            dtb_source,
            table_match,
            build: None,
            kuser_build: None,
            kva_shadow: None,
            kdbg: Err("not read".into()),
            found_through: None,
        };
        let vm = k.memory(session);
        k.build = k
            .symbol("NtBuildNumber")
            .ok()
            .and_then(|va| GuestMemory::read_u32(&vm, va).ok())
            .map(|b| b & 0xFFFF)
            .filter(|&b| b != 0);
        k.kuser_build = GuestMemory::read_u32(&vm, Va::new(KUSER_SHARED_DATA + 0x260))
            .ok()
            .filter(|&b| b != 0);
        k.kva_shadow = k.symbol("KiKvaShadow").ok().and_then(|va| {
            let mut b = [0u8; 1];
            vm.read_exact(va, &mut b).ok().map(|()| b[0] != 0)
        });
        k.kdbg = kdbg::read(&vm, k.image.base, &k.profile);
        k.use_system_dtb(session);
        Ok(k)
    }

    /// Switches to System's own page tables (`PsInitialSystemProcess->DirectoryTableBase`)
    /// when discovery went through another process's (a vCPU's CR3 is the running process's)
    /// and System's root maps nt too.
    fn use_system_dtb(&mut self, session: &Session) {
        let vm = self.memory(session);
        let Some(system) = self
            .symbol("PsInitialSystemProcess")
            .ok()
            .and_then(|va| GuestMemory::read_va(&vm, va).ok())
        else {
            return;
        };
        let Some(dtb) = system
            .checked_add(self.offsets.eprocess.directory_table_base)
            .and_then(|at| GuestMemory::read_u64(&vm, at).ok())
        else {
            return;
        };
        let root = crate::discovery::dtb::root_of(dtb);
        if root == self.space.root || root.raw() == 0 {
            return;
        }
        let space = AddressSpace {
            root,
            mode: self.space.mode,
        };
        let mut magic = [0u8; 2];
        let maps_nt = session
            .virtual_memory(space)
            .read_exact(self.image.base, &mut magic)
            .is_ok()
            && &magic == b"MZ";
        if maps_nt && crate::discovery::dtb::self_reference(session.memory(), root).is_some() {
            self.found_through = Some(self.dtb_source);
            self.space = space;
            self.dtb_source = DtbSource::SystemProcess;
        }
    }

    /// The symbol table.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Whether the table is whole (else only what the analyses use).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The subset table as JSON, when it was just built from a table file (for the cache).
    pub fn subset_json(&self) -> Option<&[u8]> {
        self.subset_json.as_deref()
    }

    /// The resolved offsets.
    pub fn offsets(&self) -> &Offsets {
        &self.offsets
    }

    /// The nt image.
    pub fn image(&self) -> &NtImage {
        &self.image
    }

    /// nt's base.
    pub fn base(&self) -> Va {
        self.image.base
    }

    /// nt's PDB identity, when its RSDS was read.
    pub fn pdb(&self) -> Option<&PdbId> {
        self.image.pdb.as_ref()
    }

    /// How the table was matched to the image.
    pub fn table_match(&self) -> &TableMatch {
        &self.table_match
    }

    /// The kernel's page tables.
    pub fn space(&self) -> AddressSpace {
        self.space
    }

    /// How the DTB was found.
    pub fn dtb_source(&self) -> DtbSource {
        self.dtb_source
    }

    /// How discovery first reached the kernel, when the DTB was then switched to System's.
    pub fn found_through(&self) -> Option<DtbSource> {
        self.found_through
    }

    /// [`Kernel::dtb_source`] in words, with the way it was first reached.
    pub fn describe_dtb_source(&self) -> String {
        match self.found_through {
            Some(first) => format!(
                "{}, reached through {}",
                self.dtb_source.describe(),
                first.describe()
            ),
            None => self.dtb_source.describe(),
        }
    }

    /// `NtBuildNumber & 0xFFFF`.
    pub fn build(&self) -> Option<u32> {
        self.build.or(self.kuser_build)
    }

    /// KUSER_SHARED_DATA's `NtBuildNumber`.
    pub fn kuser_build(&self) -> Option<u32> {
        self.kuser_build
    }

    /// Whether KVA shadow (the Meltdown mitigation) is on.
    pub fn kva_shadow(&self) -> Option<bool> {
        self.kva_shadow
    }

    /// The debugger data block, or why it could not be read.
    pub fn kdbg(&self) -> &Result<Kdbg, String> {
        &self.kdbg
    }

    /// Run-time address of a symbol (base + its RVA).
    pub fn symbol(&self, name: &str) -> Result<Va, WindowsError> {
        let rva = self.profile.symbol_address(name)?;
        self.image
            .base
            .checked_add(rva)
            .ok_or(WindowsError::Corrupt {
                what: "symbol",
                at: self.image.base,
                reason: format!("{name}'s RVA {rva:#x} overflows"),
            })
    }

    /// The kernel's memory (hardware walk).
    pub fn memory<'s>(&self, session: &'s Session) -> VirtualMemory<'s> {
        session.virtual_memory(self.space)
    }

    /// A process's memory with its page-table root `dtb`, read with Windows' PTE states.
    pub fn process_memory<'s>(&self, session: &'s Session, dtb: Pa) -> WindowsMemory<'s> {
        WindowsMemory::new(
            session,
            AddressSpace {
                root: dtb,
                mode: self.space.mode,
            },
            self.space,
            self.offsets.mmpte,
        )
    }

    /// `"Windows 10.0.<build> (<pdb> <key>)"`.
    pub fn version(&self) -> String {
        let build = self
            .build()
            .map_or_else(|| "?".to_owned(), |b| b.to_string());
        match self.pdb() {
            Some(id) => format!("Windows 10.0.{build} ({} {})", id.name, id.key()),
            None => format!(
                "Windows 10.0.{build} (no PDB identity: {})",
                self.profile.source
            ),
        }
    }
}

/// The symbol table of a kernel with no readable RSDS: each candidate table on `dirs` (and in
/// the cache) is tried, and the one whose RVAs of `PsActiveProcessHead` and
/// `PsLoadedModuleList` fit is used. A dump header's addresses must equal base + RVA; without
/// them the list head at base + RVA must be a list (its first entry's Blink points back).
pub fn fingerprint(
    session: &Session,
    space: AddressSpace,
    base: Va,
    dirs: &[PathBuf],
    use_cache: bool,
) -> Result<SymbolTable, WindowsError> {
    let hints = &session.kernel_hints().symbols;
    let vm = session.virtual_memory(space);
    let fits = |p: &Profile| -> bool {
        let mut checked = 0;
        for name in ["PsActiveProcessHead", "PsLoadedModuleList"] {
            let Ok(rva) = p.symbol_address(name) else {
                return false;
            };
            let Some(at) = base.checked_add(rva) else {
                return false;
            };
            match hints.get(name) {
                Some(&hinted) => {
                    if hinted != at {
                        return false;
                    }
                    checked += 1;
                }
                None => {
                    let back = GuestMemory::read_va(&vm, at).and_then(|first| {
                        GuestMemory::read_va(&vm, first.checked_add(8).unwrap_or(first))
                    });
                    if back.ok() != Some(at) {
                        return false;
                    }
                    checked += 1;
                }
            }
        }
        checked == 2
    };
    let mut looked = Vec::new();
    let cached = if use_cache {
        symbols::cache::entries()
    } else {
        Vec::new()
    };
    for (id, path) in cached {
        if let Some(t) = symbols::cache::load(&id) {
            if fits(&t.profile) {
                return Ok(t);
            }
        }
        looked.push(path);
    }
    for path in symbols::all_tables(dirs) {
        if let Ok(t) = symbols::load_table(&path, false) {
            if fits(&t.profile) {
                if let (true, Some(id), Some(json)) = (use_cache, &t.pdb, &t.subset_json) {
                    let _ = symbols::cache::save(id, json);
                }
                return Ok(t);
            }
        }
        looked.push(path);
    }
    Err(WindowsError::NoFingerprint { base, looked })
}
