//! Builders of small synthetic ELF cores and CPU notes for unit tests.

use crate::elf::{EM_386, EM_X86_64, PT_LOAD, PT_NOTE};

enum Ph {
    Load {
        paddr: u64,
        vaddr: u64,
        data: Vec<u8>,
        memsz: u64,
    },
    Note(Vec<u8>),
}

/// One ELF note (header, NUL-terminated padded name, padded descriptor).
pub fn note_bytes(name: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let namesz = name.len() + 1;
    bytes.extend_from_slice(&(namesz as u32).to_le_bytes());
    bytes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&n_type.to_le_bytes());
    bytes.extend_from_slice(name);
    bytes.resize(bytes.len() + 1 + (4 - namesz % 4) % 4, 0);
    bytes.extend_from_slice(desc);
    bytes.resize(bytes.len() + (4 - desc.len() % 4) % 4, 0);
    bytes
}

/// Builds an ELF core: header, program headers in call order, then note and load bytes.
pub struct ElfBuilder {
    is64: bool,
    machine: u16,
    phs: Vec<Ph>,
}

impl ElfBuilder {
    pub fn new64() -> Self {
        Self {
            is64: true,
            machine: EM_X86_64,
            phs: Vec::new(),
        }
    }

    pub fn new32() -> Self {
        Self {
            is64: false,
            machine: EM_386,
            phs: Vec::new(),
        }
    }

    pub fn load(self, paddr: u64, data: Vec<u8>) -> Self {
        self.load_with(paddr, paddr, data)
    }

    pub fn load_with(mut self, paddr: u64, vaddr: u64, data: Vec<u8>) -> Self {
        let memsz = data.len() as u64;
        self.phs.push(Ph::Load {
            paddr,
            vaddr,
            data,
            memsz,
        });
        self
    }

    pub fn load_memsz(mut self, paddr: u64, data: Vec<u8>, memsz: u64) -> Self {
        self.phs.push(Ph::Load {
            paddr,
            vaddr: paddr,
            data,
            memsz,
        });
        self
    }

    /// Appends a note to the last PT_NOTE segment if it is the last program header, else to a
    /// new one.
    pub fn note(mut self, name: &[u8], n_type: u32, desc: &[u8]) -> Self {
        let bytes = note_bytes(name, n_type, desc);
        match self.phs.last_mut() {
            Some(Ph::Note(v)) => v.extend_from_slice(&bytes),
            _ => self.phs.push(Ph::Note(bytes)),
        }
        self
    }

    /// A PT_NOTE segment with exactly these bytes.
    pub fn raw_notes(mut self, bytes: &[u8]) -> Self {
        self.phs.push(Ph::Note(bytes.to_vec()));
        self
    }

    pub fn build(self) -> Vec<u8> {
        let (ehsize, phsize) = if self.is64 { (64u64, 56u64) } else { (52, 32) };
        let mut data_off = ehsize + phsize * self.phs.len() as u64;
        let mut out = vec![0u8; data_off as usize];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = if self.is64 { 2 } else { 1 };
        out[5] = 1;
        out[6] = 1;
        out[16..18].copy_from_slice(&4u16.to_le_bytes());
        out[18..20].copy_from_slice(&self.machine.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        let n = self.phs.len() as u16;
        if self.is64 {
            out[32..40].copy_from_slice(&64u64.to_le_bytes());
            out[52..54].copy_from_slice(&64u16.to_le_bytes());
            out[54..56].copy_from_slice(&56u16.to_le_bytes());
            out[56..58].copy_from_slice(&n.to_le_bytes());
        } else {
            out[28..32].copy_from_slice(&52u32.to_le_bytes());
            out[40..42].copy_from_slice(&52u16.to_le_bytes());
            out[42..44].copy_from_slice(&32u16.to_le_bytes());
            out[44..46].copy_from_slice(&n.to_le_bytes());
        }
        let mut payload = Vec::new();
        for (i, ph) in self.phs.iter().enumerate() {
            let (p_type, paddr, vaddr, bytes, memsz) = match ph {
                Ph::Load {
                    paddr,
                    vaddr,
                    data,
                    memsz,
                } => (PT_LOAD, *paddr, *vaddr, data.as_slice(), *memsz),
                Ph::Note(b) => (PT_NOTE, 0, 0, b.as_slice(), b.len() as u64),
            };
            let filesz = bytes.len() as u64;
            let at = (ehsize + phsize * i as u64) as usize;
            let h = &mut out[at..at + phsize as usize];
            if self.is64 {
                h[0..4].copy_from_slice(&p_type.to_le_bytes());
                h[8..16].copy_from_slice(&data_off.to_le_bytes());
                h[16..24].copy_from_slice(&vaddr.to_le_bytes());
                h[24..32].copy_from_slice(&paddr.to_le_bytes());
                h[32..40].copy_from_slice(&filesz.to_le_bytes());
                h[40..48].copy_from_slice(&memsz.to_le_bytes());
            } else {
                h[0..4].copy_from_slice(&p_type.to_le_bytes());
                h[4..8].copy_from_slice(&(data_off as u32).to_le_bytes());
                h[8..12].copy_from_slice(&(vaddr as u32).to_le_bytes());
                h[12..16].copy_from_slice(&(paddr as u32).to_le_bytes());
                h[16..20].copy_from_slice(&(filesz as u32).to_le_bytes());
                h[20..24].copy_from_slice(&(memsz as u32).to_le_bytes());
            }
            payload.extend_from_slice(bytes);
            data_off += filesz;
        }
        out.extend_from_slice(&payload);
        out
    }
}

/// An x86-64 NT_PRSTATUS descriptor with `pr_pid = pid` and `pr_reg[i] = reg(i)`.
pub fn prstatus_x86_64(pid: u32, reg: impl Fn(usize) -> u64) -> Vec<u8> {
    let mut d = vec![0u8; 336];
    d[32..36].copy_from_slice(&pid.to_le_bytes());
    for i in 0..27 {
        d[112 + 8 * i..120 + 8 * i].copy_from_slice(&reg(i).to_le_bytes());
    }
    d
}

/// Fields of a synthetic QEMU CPU note that tests care about; registers are numbered
/// `0x100 + i` in note order, segment i has base `0x4000 + i`.
#[derive(Default)]
pub struct QemuFields {
    pub cr: [u64; 5],
    pub cs_flags: u32,
    pub kernel_gs_base: Option<u64>,
}

pub fn qemu_note(f: &QemuFields) -> Vec<u8> {
    let size: u32 = if f.kernel_gs_base.is_some() { 440 } else { 432 };
    let mut d = Vec::new();
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&size.to_le_bytes());
    for i in 0..18u64 {
        d.extend_from_slice(&(0x100 + i).to_le_bytes());
    }
    for i in 0..10u64 {
        let selector: u32 = if i == 0 { 0x10 } else { 0x18 };
        d.extend_from_slice(&selector.to_le_bytes());
        d.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
        let flags = if i == 0 { f.cs_flags } else { 0x00cf_9300 };
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(&(0x4000 + i).to_le_bytes());
    }
    for cr in f.cr {
        d.extend_from_slice(&cr.to_le_bytes());
    }
    if let Some(k) = f.kernel_gs_base {
        d.extend_from_slice(&k.to_le_bytes());
    }
    assert_eq!(d.len(), size as usize);
    d
}
