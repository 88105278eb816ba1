//! The plugin-side ABI of earlier 1.x versions, frozen, so that a host of this version can
//! check a plugin against exactly the version it was built for.
//!
//! abi_stable lets a library's prefix types (the root module, a `#[sabi_trait]` vtable) have
//! *more* fields than the loader expects, never fewer: a 1.0 plugin's `PluginInterface`
//! vtable (5 methods) fails the layout check against 1.1's (8 methods) with "too many fields".
//! So each minor version that grows a plugin-side type keeps the previous definitions here,
//! with the same type names (the layout check compares names, the package and the structure),
//! and the host loads a plugin claiming 1.`m` through the root module of 1.`m`. Everything
//! else a 1.0 plugin sees ([`crate::HostInterface`], [`crate::Table`], the errors) is the
//! same in 1.1 and is shared.

/// vmi-plugin-api 1.0.0: the root module and plugin interface before events.
pub mod v1_0 {
    // `#[sabi_trait]` and `#[derive(StableAbi)]` generate impls inside `const _` blocks.
    #![allow(non_local_definitions)]

    use abi_stable::library::RootModule;
    use abi_stable::sabi_trait;
    use abi_stable::sabi_types::VersionStrings;
    use abi_stable::std_types::{RBox, RResult, RSlice, RStr, RString};
    use abi_stable::StableAbi;

    use crate::host::HostRef;
    use crate::types::{PluginError, Table};

    /// The version these definitions are.
    pub const API_VERSION: &str = "1.0.0";

    /// The plugin object of API 1.0 (see [`crate::PluginInterface`]).
    #[sabi_trait]
    pub trait PluginInterface: Send + Sync {
        /// The plugin's name.
        fn name(&self) -> RString;
        /// Its version.
        fn version(&self) -> RString;
        /// One line on what it does.
        fn description(&self) -> RString;
        /// How to call it.
        fn usage(&self) -> RString;
        /// Runs it.
        #[sabi(last_prefix_field)]
        fn run(&self, host: HostRef<'_>, args: RSlice<'_, RString>) -> RResult<Table, PluginError>;
    }

    /// A 1.0 plugin object owned by the host.
    pub type PluginBox = PluginInterface_TO<'static, RBox<()>>;

    /// The root module of API 1.0.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
    #[sabi(missing_field(panic))]
    pub struct PluginModule {
        /// Creates the plugin object.
        #[sabi(last_prefix_field)]
        pub new: extern "C" fn() -> RResult<PluginBox, PluginError>,
    }

    impl RootModule for PluginModuleRef {
        abi_stable::declare_root_module_statics! {PluginModuleRef}
        const BASE_NAME: &'static str = crate::module::ROOT_MODULE_NAME;
        const NAME: &'static str = crate::module::ROOT_MODULE_NAME;
        const VERSION_STRINGS: VersionStrings = VersionStrings {
            version: RStr::from_str(API_VERSION),
        };
    }
}
