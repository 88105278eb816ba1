//! The stable ABI between vmi and third-party analysis plugins: the only crate a plugin
//! depends on.
//!
//! A plugin is a `cdylib` that implements [`Analysis`] and exports it with
//! [`export_plugin!`]. vmi loads it (`vmi plugin run PATH.so -- ARGS`), checks that it was
//! built against a compatible version of this crate ([`API_VERSION`]) and that every type
//! crossing the boundary has the layout vmi expects, then calls [`Analysis::run`] with a
//! [`Host`]: the target's memory, registers, and the guest kernel's symbols and types. The
//! plugin answers with a [`Table`] of typed [`Cell`]s, or a [`PluginError`].
//!
//! - [`types`]: what crosses the boundary (all `StableAbi`; each side frees what it allocated).
//! - [`host`]: [`HostInterface`], the ABI-stable trait vmi implements, and [`Host`], its
//!   plain-Rust wrapper.
//! - [`plugin`]: [`Analysis`] and the ABI-stable [`PluginInterface`] made of it; panics are
//!   caught at the boundary and come back as [`PluginErrorKind::Panicked`].
//! - [`module`]: the root module ([`PluginModule`]) each plugin library exports, a prefix type
//!   carrying the ABI version.
//!
//! ```
//! use vmi_plugin_api::{Analysis, Cell, Host, PluginError, Space, Table};
//!
//! /// Prints the first bytes of the kernel banner.
//! #[derive(Default)]
//! struct Banner;
//!
//! impl Analysis for Banner {
//!     fn name(&self) -> &str { "banner" }
//!     fn description(&self) -> &str { "The kernel's banner, read from memory" }
//!     fn usage(&self) -> &str { "banner" }
//!     fn run(&self, host: &Host<'_>, _args: &[String]) -> Result<Table, PluginError> {
//!         let at = host.symbol("linux_banner")?;
//!         let text = host.read_cstr(Space::Kernel, at, 128)?;
//!         let mut t = Table::new(&["address", "banner"]);
//!         t.push(vec![Cell::address(at), Cell::text(text)]);
//!         Ok(t)
//!     }
//! }
//!
//! vmi_plugin_api::export_plugin!(Banner::default);
//! ```
//!
//! See `plugins/README.md` for the author's guide: building outside the vmi workspace, the
//! ABI rules and the trust model (a plugin is trusted native code; loading is not a sandbox).

pub mod host;
pub mod module;
pub mod plugin;
pub mod types;

pub use host::{Host, HostInterface, HostInterface_TO, HostRef};
pub use module::{PluginModule, PluginModuleRef, API_VERSION, ROOT_MODULE_NAME};
pub use plugin::{Analysis, PluginBox, PluginInterface, PluginInterface_TO};
pub use types::{
    Cell, HostError, HostErrorKind, ModuleInfo, PluginError, PluginErrorKind, ProcessInfo, Region,
    Registers, Space, SymbolInfo, Table, TargetInfo, Translation,
};

/// abi_stable, as this crate uses it (pinned exactly): hosts and the export macro use it
/// through here, so a plugin needs no other dependency.
pub use abi_stable;

/// What [`export_plugin!`] expands to; not an API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::construct;
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::RResult;

    use abi_stable::prefix_type::PrefixTypeTrait;

    /// The root module around a constructor.
    pub fn root_module(
        new: extern "C" fn() -> RResult<crate::PluginBox, crate::PluginError>,
    ) -> crate::PluginModuleRef {
        crate::PluginModule { new }.leak_into_prefix()
    }
}

/// Exports an [`Analysis`] as a vmi plugin: call it once, at the root of a `cdylib` crate,
/// with a function (or closure) that makes the analysis.
///
/// It exports the library header abi_stable's loader looks for (what
/// `#[abi_stable::export_root_module]` would, without the plugin depending on abi_stable):
/// the root module [`PluginModule`], this crate's version, and the layout of every type that
/// crosses the boundary. A panic in the constructor or in any [`Analysis`] method is caught
/// here and reaches the host as an error.
#[macro_export]
macro_rules! export_plugin {
    ($new:expr) => {
        /// The abi_stable library header of this vmi plugin.
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __vmi_plugin_new(
            ) -> $crate::__private::RResult<$crate::PluginBox, $crate::PluginError> {
                $crate::__private::construct($new)
            }
            fn __vmi_plugin_root() -> $crate::PluginModuleRef {
                $crate::__private::root_module(__vmi_plugin_new)
            }
            extern "C" fn __vmi_plugin_erased() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(__vmi_plugin_root)
            }
            // SAFETY: the constructor returns the `PrefixRef<PluginModule>` of
            // `__vmi_plugin_root`, erased by abi_stable's own loader function, as
            // `from_constructor` requires.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::PluginModuleRef>(
                    __vmi_plugin_erased,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    /// The export macro hard-codes the symbol abi_stable's loader looks up; abi_stable is
    /// pinned exactly, and this catches an upgrade that renames it.
    #[test]
    fn export_symbol_is_abi_stables() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
