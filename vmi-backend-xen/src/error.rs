//! [`XenError`]: everything that can go wrong between vmi and Xen. The doc comment of each
//! variant is its message.

use std::io;

/// Loading the Xen libraries or talking to Xen failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XenError {
    /// A Xen library could not be loaded under any of its names.
    #[error(
        "cannot load {library} (tried {tried}): install Xen's userspace libraries \
         (Debian: apt-get install {package}; vmi supports Xen 4.17 to 4.22){reason}"
    )]
    LibraryNotFound {
        /// The library ("libxenctrl").
        library: &'static str,
        /// The file names or paths tried, comma-separated.
        tried: String,
        /// The Debian package that ships it.
        package: &'static str,
        /// The loader's message for the last name tried, prefixed with ": " (or empty).
        reason: String,
    },
    /// A library loaded but lacks a function vmi needs.
    #[error("{library} ({xen}) has no function `{symbol}`: {reason}")]
    SymbolNotFound {
        /// The function.
        symbol: &'static str,
        /// The file that was loaded ("libxenctrl.so.4.17").
        library: String,
        /// The Xen version the file belongs to ("Xen 4.17").
        xen: String,
        /// The loader's message.
        reason: String,
    },
    /// A Xen interface could not be opened: not a dom0, or not privileged.
    #[error(
        "{call} failed ({source}): this machine is not a Xen dom0, or vmi lacks the privilege \
         (run as root in dom0, with /dev/xen/privcmd and xenstored available; under XSM/FLASK \
         the domain needs the introspection permissions)"
    )]
    NotDom0 {
        /// The call that failed ("xc_interface_open").
        call: &'static str,
        /// errno as the library left it.
        #[source]
        source: io::Error,
    },
    /// The target spec is not `xen:NAME` or `xen:DOMID`.
    #[error("bad Xen target `xen:{spec}`: {reason} (expected xen:NAME or xen:DOMID)")]
    BadSpec {
        /// What followed `xen:`.
        spec: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No domain has the requested name.
    #[error("no Xen domain is named `{name}` (domains: {known})")]
    NoSuchDomain {
        /// The requested name.
        name: String,
        /// The names xenstore lists, comma-separated.
        known: String,
    },
    /// A Xen call about a domain failed.
    #[error("{call} for domain {domid} failed: {source}")]
    Call {
        /// The C function.
        call: &'static str,
        /// The domain.
        domid: u32,
        /// errno as the library left it.
        #[source]
        source: io::Error,
    },
    /// A domain vmi cannot introspect.
    #[error("domain {domid}: {reason}")]
    Unsupported {
        /// The domain.
        domid: u32,
        /// Why.
        reason: String,
    },
}
