//! Shared by the tests: synthetic Windows guests (built by `vmi_fixtures::windows` from the
//! real symbol tables of four ntoskrnl builds) as sessions, and the symbol options that find
//! their tables. Only the tests read the generator's truth; the crate reads guest memory.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use vmi_core::{
    DetectOptions, PhysicalMemory, Session, Target, VcpuError, VcpuRegisters, X86Registers,
};
use vmi_fixtures::windows::{isf_dir, isf_files, Options, SyntheticWindows, Truth};

/// vCPU registers of a synthetic guest.
pub struct Regs(pub Vec<X86Registers>);

impl VcpuRegisters for Regs {
    fn vcpu_count(&self) -> usize {
        self.0.len()
    }

    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError> {
        self.0.get(index).cloned().ok_or(VcpuError::NoSuchVcpu {
            index,
            count: self.0.len(),
        })
    }
}

/// A built guest and its truth.
pub struct Guest {
    pub isf: PathBuf,
    pub guest: SyntheticWindows,
}

impl Guest {
    pub fn build(isf: &std::path::Path, options: &Options) -> Guest {
        Guest {
            isf: isf.to_owned(),
            guest: SyntheticWindows::build(isf, options).unwrap(),
        }
    }

    pub fn truth(&self) -> &Truth {
        self.guest.truth()
    }

    /// A session with the vCPUs (as an ELF core gives them).
    pub fn session(&self) -> Session {
        self.session_with(true)
    }

    /// A session with or without vCPU registers (raw and LiME images have none).
    pub fn session_with(&self, registers: bool) -> Session {
        let memory: Arc<dyn PhysicalMemory> = Arc::new(self.guest.memory().clone());
        let mut b = Target::builder("test", "synthetic", memory);
        if registers {
            b = b.registers(Arc::new(Regs(self.guest.vcpus().to_vec())));
        }
        Session::from_target("synthetic", b.build(), Box::new(vmi_arch_x86::X86::new()))
    }
}

/// Every ISF, with a guest built from it with `options`.
pub fn guests(options: &Options) -> Vec<Guest> {
    let files = isf_files();
    assert_eq!(files.len(), 4, "the four ISFs in {}", isf_dir().display());
    files.iter().map(|isf| Guest::build(isf, options)).collect()
}

/// Detect options that find the tables in the ISF directory and use no cache.
pub fn options() -> DetectOptions {
    DetectOptions {
        symbol_path: vec![isf_dir()],
        use_cache: false,
        ..Default::default()
    }
}

/// Physical memory with some bytes replaced (hostile variants of a guest).
pub struct Overlay {
    pub base: Arc<dyn PhysicalMemory>,
    pub patches: Vec<(u64, Vec<u8>)>,
}

impl PhysicalMemory for Overlay {
    fn read(&self, pa: vmi_core::Pa, buf: &mut [u8]) -> Result<(), vmi_core::MemoryError> {
        self.base.read(pa, buf)?;
        let start = pa.raw();
        let end = start + buf.len() as u64;
        for (at, bytes) in &self.patches {
            let (p0, p1) = (*at, *at + bytes.len() as u64);
            let (lo, hi) = (p0.max(start), p1.min(end));
            if lo < hi {
                buf[(lo - start) as usize..(hi - start) as usize]
                    .copy_from_slice(&bytes[(lo - p0) as usize..(hi - p0) as usize]);
            }
        }
        Ok(())
    }

    fn memory_map(&self) -> &[vmi_core::MemoryRegion] {
        self.base.memory_map()
    }
}

impl Guest {
    /// A session on this guest with `patches` (virtual address in `space`, bytes) applied.
    pub fn patched(
        &self,
        space: vmi_core::AddressSpace,
        patches: &[(vmi_core::Va, Vec<u8>)],
    ) -> Session {
        let plain = self.session();
        let phys = patches
            .iter()
            .map(|(va, bytes)| {
                let pa = plain.translate(space, *va).unwrap().pa.raw();
                (pa, bytes.clone())
            })
            .collect();
        let memory: Arc<dyn PhysicalMemory> = Arc::new(Overlay {
            base: Arc::new(self.guest.memory().clone()),
            patches: phys,
        });
        let target = Target::builder("test", "patched", memory)
            .registers(Arc::new(Regs(self.guest.vcpus().to_vec())))
            .build();
        Session::from_target("patched", target, Box::new(vmi_arch_x86::X86::new()))
    }
}
