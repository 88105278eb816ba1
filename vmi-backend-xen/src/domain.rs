//! Which domain a target spec names, and what kind of guest it is.

use std::io;

use crate::error::XenError;
use crate::handle::Xen;

/// The most vCPUs probed when xenstore does not list them (Xen 4.17's HVM limit is 128).
const MAX_PROBED_VCPUS: u32 = 512;

/// How the guest is virtualised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// Hardware-assisted (HVM or PVH): guest-physical frames, CPU state in HVM save records.
    Hvm,
    /// Paravirtualised, 64-bit: frames and page-table entries are machine frames.
    Pv,
}

impl GuestKind {
    /// "hvm" or "pv".
    pub const fn name(self) -> &'static str {
        match self {
            GuestKind::Hvm => "hvm",
            GuestKind::Pv => "pv",
        }
    }
}

/// What a target spec (`NAME` or `DOMID`) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainSpec {
    /// A domain id.
    Id(u32),
    /// A domain name, looked up in xenstore.
    Name(String),
}

impl DomainSpec {
    /// Parses what follows `xen:`. All-digit specs are domain ids.
    pub fn parse(spec: &str) -> Result<DomainSpec, XenError> {
        let bad = |reason| XenError::BadSpec {
            spec: spec.to_owned(),
            reason,
        };
        if spec.is_empty() {
            return Err(bad("the domain name or id is empty"));
        }
        if spec.bytes().all(|b| b.is_ascii_digit()) {
            return spec
                .parse::<u32>()
                .map(DomainSpec::Id)
                .map_err(|_| bad("the domain id does not fit 32 bits"));
        }
        if spec.contains('/') || spec.contains('\0') {
            return Err(bad("a domain name has no '/' or NUL"));
        }
        Ok(DomainSpec::Name(spec.to_owned()))
    }
}

/// A resolved domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The domain id.
    pub domid: u32,
    /// Its name in xenstore, if it has one.
    pub name: Option<String>,
    /// HVM or PV.
    pub kind: GuestKind,
    /// Number of vCPUs.
    pub vcpus: u32,
}

impl Domain {
    /// Resolves `spec` through xenstore and the control interface.
    pub fn resolve(xen: &Xen, spec: &DomainSpec) -> Result<Domain, XenError> {
        let xs = xen.xenstore()?;
        let (domid, name) = match spec {
            DomainSpec::Id(id) => (*id, xs.read(&format!("/local/domain/{id}/name"))),
            DomainSpec::Name(name) => {
                let ids = xs.directory("/local/domain").unwrap_or_default();
                let mut known = Vec::new();
                let mut found = None;
                for id in ids.iter().filter_map(|s| s.parse::<u32>().ok()) {
                    if let Some(n) = xs.read(&format!("/local/domain/{id}/name")) {
                        if n == *name {
                            found = Some(id);
                            break;
                        }
                        known.push(n);
                    }
                }
                let Some(id) = found else {
                    return Err(XenError::NoSuchDomain {
                        name: name.clone(),
                        known: if known.is_empty() {
                            "none listed in xenstore".into()
                        } else {
                            known.join(", ")
                        },
                    });
                };
                (id, Some(name.clone()))
            }
        };
        let kind = match xen.hvm_context_size(domid) {
            Ok(_) => GuestKind::Hvm,
            Err(e) if e.raw_os_error() == Some(EINVAL) => GuestKind::Pv,
            Err(source) => {
                return Err(XenError::Call {
                    call: "xc_domain_hvm_getcontext",
                    domid,
                    source,
                })
            }
        };
        if kind == GuestKind::Pv {
            let width = xen.guest_width(domid).map_err(|source| XenError::Call {
                call: "xc_domain_get_guest_width",
                domid,
                source,
            })?;
            if width != 8 {
                return Err(XenError::Unsupported {
                    domid,
                    reason: format!(
                        "a {}-bit PV guest: vmi reads 64-bit PV guests only",
                        width * 8
                    ),
                });
            }
        }
        let listed = xs
            .directory(&format!("/local/domain/{domid}/cpu"))
            .map(|cpus| {
                cpus.iter()
                    .filter_map(|c| c.parse::<u32>().ok())
                    .map(|c| c.saturating_add(1))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        drop(xs);
        let vcpus = if listed > 0 {
            listed
        } else {
            probe_vcpus(xen, domid, kind)
        };
        if vcpus == 0 {
            return Err(XenError::Call {
                call: match kind {
                    GuestKind::Hvm => "xc_domain_hvm_getcontext_partial",
                    GuestKind::Pv => "xc_vcpu_getcontext",
                },
                domid,
                source: io::Error::other("no vCPU state could be read for vCPU 0"),
            });
        }
        Ok(Domain {
            domid,
            name,
            kind,
            vcpus,
        })
    }
}

const EINVAL: i32 = 22;

fn probe_vcpus(xen: &Xen, domid: u32, kind: GuestKind) -> u32 {
    (0..MAX_PROBED_VCPUS)
        .take_while(|&i| match kind {
            GuestKind::Hvm => u16::try_from(i).is_ok_and(|i| xen.hvm_cpu(domid, i).is_ok()),
            GuestKind::Pv => xen.pv_context(domid, i).is_ok(),
        })
        .count()
        .try_into()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(DomainSpec::parse("7").unwrap(), DomainSpec::Id(7));
        assert_eq!(
            DomainSpec::parse("web01").unwrap(),
            DomainSpec::Name("web01".into())
        );
        assert!(DomainSpec::parse("").is_err());
        assert!(DomainSpec::parse("99999999999").is_err());
        assert!(DomainSpec::parse("a/b").is_err());
    }
}
