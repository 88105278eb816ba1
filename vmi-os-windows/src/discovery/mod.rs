//! Finding the kernel with no dump header: the DTB ([`dtb`]), the ntoskrnl image and its PDB
//! identity ([`nt`]), the debugger data block ([`kdbg`]). Each method is a function of its own;
//! [`Methods`] switches them, so each can be tested with the others off.

pub mod dtb;
pub mod kdbg;
pub mod nt;

use vmi_core::{AddressSpace, Session};

pub use dtb::DtbSource;
pub use nt::{BaseSource, NtImage};

/// Which discovery methods may run (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods {
    /// DTB from a vCPU's CR3.
    pub vcpu_cr3: bool,
    /// DTB from the low stub.
    pub low_stub: bool,
    /// DTB from the dump header.
    pub header_dtb: bool,
    /// DTB from a scan of physical memory below 16 MiB.
    pub pml4_scan: bool,
    /// nt by RSDS at 2 MiB steps of the kernel range.
    pub rsds_scan: bool,
    /// nt back from hint addresses (header list heads, `IDT[0]`).
    pub hint_base: bool,
    /// nt by the RSDS record anywhere in the kernel range's bytes.
    pub rsds_search: bool,
    /// nt by export name `ntoskrnl.exe`.
    pub export_name: bool,
}

impl Default for Methods {
    fn default() -> Self {
        Self::ALL
    }
}

impl Methods {
    /// Every method.
    pub const ALL: Methods = Methods {
        vcpu_cr3: true,
        low_stub: true,
        header_dtb: true,
        pml4_scan: true,
        rsds_scan: true,
        hint_base: true,
        rsds_search: true,
        export_name: true,
    };
    /// No method (switch on the ones wanted).
    pub const NONE: Methods = Methods {
        vcpu_cr3: false,
        low_stub: false,
        header_dtb: false,
        pml4_scan: false,
        rsds_scan: false,
        hint_base: false,
        rsds_search: false,
        export_name: false,
    };
}

/// The kernel DTB by the first method that finds one: vCPU CR3, low stub, the dump header,
/// then the PML4 scan (the costliest). Errors name what was tried.
pub fn find_dtb(session: &Session, methods: Methods) -> Result<(AddressSpace, DtbSource), String> {
    let mut tried = Vec::new();
    if methods.vcpu_cr3 {
        if let Some(found) = dtb::from_vcpus(session) {
            return Ok(found);
        }
        tried.push(format!(
            "no CR3 of {} vCPUs self-references",
            session.vcpu_count()
        ));
    }
    if methods.low_stub {
        if let Some(found) = dtb::from_low_stub(session.memory()) {
            return Ok(found);
        }
        tried.push("no low stub".to_owned());
    }
    if methods.header_dtb {
        if let Some(found) = dtb::from_hints(session) {
            return Ok(found);
        }
        tried.push("no header DTB".to_owned());
    }
    if methods.pml4_scan {
        if let Some(found) = dtb::from_pml4_scan(session.memory()) {
            return Ok(found);
        }
        tried.push("no kernel PML4 below 16 MiB".to_owned());
    }
    Err(tried.join("; "))
}

/// The nt image in `space` by the first method that finds it: RSDS at 2 MiB steps, back from
/// hints, RSDS anywhere, export name. Errors name what was tried.
pub fn find_nt(
    session: &Session,
    space: AddressSpace,
    methods: Methods,
) -> Result<NtImage, String> {
    let mut tried = Vec::new();
    if methods.rsds_scan {
        if let Some(found) = nt::from_rsds_scan(session, space) {
            return Ok(found);
        }
        tried.push("no kernel RSDS at a 2 MiB step".to_owned());
    }
    if methods.hint_base {
        let hints = nt::hints(session, space);
        for (va, what) in &hints {
            if let Some(found) = nt::from_hint(session, space, *va, what) {
                return Ok(found);
            }
        }
        tried.push(format!("no nt image behind {} hints", hints.len()));
    }
    if methods.rsds_search {
        if let Some(found) = nt::from_rsds_search(session, space) {
            return Ok(found);
        }
        tried.push("no kernel RSDS record in the kernel range".to_owned());
    }
    if methods.export_name {
        if let Some(found) = nt::from_export_name(session, space) {
            return Ok(found);
        }
        tried.push("no image exporting as ntoskrnl.exe".to_owned());
    }
    Err(tried.join("; "))
}
