//! A process's memory regions from its VAD tree (`_EPROCESS.VadRoot`).

use vmi_core::{Session, Va};

use crate::comps::{unicode, vad};
use crate::iter::{list::wrap, tree, Bounds};
use crate::mem::GuestMemory;
use crate::{Kernel, Partial, WindowsError};

use super::ps::find_process;

/// One VAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vad {
    /// The `_MMVAD_SHORT`.
    pub node: Va,
    /// First address.
    pub start: Va,
    /// One past the last address.
    pub end: Va,
    /// `_MMVAD_FLAGS.Protection` (an MM protection index).
    pub protection: u64,
    /// `_MMVAD_FLAGS.VadType`.
    pub vad_type: u64,
    /// `_MMVAD_FLAGS.PrivateMemory`.
    pub private: bool,
    /// The mapped file's name, for a file-backed VAD.
    pub file: Option<String>,
}

impl Vad {
    /// `r-xp`-style permissions.
    pub fn perms(&self) -> String {
        vad::perms(self.protection, self.private)
    }
}

/// The VADs of process `pid`, by address.
pub fn regions(session: &Session, kernel: &Kernel, pid: u32) -> Result<Partial<Vad>, WindowsError> {
    let p = find_process(session, kernel, pid)?;
    let o = kernel.offsets().vad.ok_or(WindowsError::Corrupt {
        what: "symbol table",
        at: kernel.base(),
        reason: "lacks the VAD types".into(),
    })?;
    let root_field = kernel
        .offsets()
        .eprocess
        .vad_root
        .ok_or(WindowsError::Corrupt {
            what: "symbol table",
            at: kernel.base(),
            reason: "_EPROCESS has no VadRoot".into(),
        })?;
    let mem = kernel.memory(session);
    let root_at =
        p.eprocess
            .checked_add(root_field + o.tree_root)
            .ok_or(WindowsError::Corrupt {
                what: "_EPROCESS",
                at: p.eprocess,
                reason: "VadRoot overflows".into(),
            })?;
    let root = GuestMemory::read_va(&mem, root_at)?;
    let walk = tree::in_order(&mem, root, o.left, o.right, Bounds::TREE, "VAD tree");
    let mut out = Partial {
        items: Vec::with_capacity(walk.items.len().min(4096)),
        warnings: walk.warnings,
    };
    for node in walk.items {
        match read_vad(&mem, &o, node) {
            Ok(v) => out.items.push(v),
            Err(e) => out.warnings.push(wrap("VAD", node, e)),
        }
    }
    Ok(out)
}

fn read_vad(mem: &dyn GuestMemory, o: &vad::VadOffsets, node: Va) -> Result<Vad, WindowsError> {
    let vad = node.checked_sub(o.vad_node).ok_or(WindowsError::Corrupt {
        what: "VAD",
        at: node,
        reason: "node below its offset".into(),
    })?;
    let at = |off: u64| {
        vad.checked_add(off).ok_or(WindowsError::Corrupt {
            what: "VAD",
            at: vad,
            reason: "field overflows".into(),
        })
    };
    let byte = |off: Option<u64>| -> Result<u64, WindowsError> {
        match off {
            Some(off) => {
                let mut b = [0u8; 1];
                mem.read_exact(at(off)?, &mut b)?;
                Ok(u64::from(b[0]))
            }
            None => Ok(0),
        }
    };
    let start_vpn =
        u64::from(mem.read_u32(at(o.starting_vpn)?)?) | byte(o.starting_vpn_high)? << 32;
    let end_vpn = u64::from(mem.read_u32(at(o.ending_vpn)?)?) | byte(o.ending_vpn_high)? << 32;
    if end_vpn < start_vpn {
        return Err(WindowsError::Corrupt {
            what: "VAD",
            at: vad,
            reason: format!("ends (VPN {end_vpn:#x}) before it starts ({start_vpn:#x})"),
        });
    }
    let flags = u64::from(mem.read_u32(at(o.flags)?)?);
    let private = o.private_memory.get(flags) != 0;
    let file = if private {
        None
    } else {
        file_name(mem, o, vad).ok().flatten()
    };
    Ok(Vad {
        node,
        start: Va::new(start_vpn << 12),
        end: Va::new((end_vpn + 1) << 12),
        protection: o.protection.get(flags),
        vad_type: o.vad_type.get(flags),
        private,
        file,
    })
}

/// `_MMVAD.Subsection->ControlArea->FilePointer` (an `_EX_FAST_REF`, low 4 bits a count) →
/// `_FILE_OBJECT.FileName`.
fn file_name(
    mem: &dyn GuestMemory,
    o: &vad::VadOffsets,
    vad: Va,
) -> Result<Option<String>, WindowsError> {
    let ptr = |base: Va, off: u64| -> Result<Va, WindowsError> {
        let at = base.checked_add(off).ok_or(WindowsError::Corrupt {
            what: "VAD",
            at: base,
            reason: "overflow".into(),
        })?;
        mem.read_va(at)
    };
    let subsection = ptr(vad, o.subsection)?;
    if subsection.raw() == 0 {
        return Ok(None);
    }
    let control_area = ptr(subsection, o.control_area)?;
    if control_area.raw() == 0 {
        return Ok(None);
    }
    let file = Va::new(ptr(control_area, o.file_pointer)?.raw() & !0xF);
    if file.raw() == 0 {
        return Ok(None);
    }
    let name_at = file.checked_add(o.file_name).ok_or(WindowsError::Corrupt {
        what: "_FILE_OBJECT",
        at: file,
        reason: "overflow".into(),
    })?;
    Ok(Some(unicode::read(mem, name_at)?).filter(|s| !s.is_empty()))
}
