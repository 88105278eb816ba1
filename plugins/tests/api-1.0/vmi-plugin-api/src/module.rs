//! The root module every plugin library exports, and the ABI version it carries.

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::RResult;
use abi_stable::StableAbi;

use crate::plugin::PluginBox;
use crate::types::PluginError;

/// The root module of a plugin library: a prefix type, so minor versions of the API can append
/// fields after [`PluginModule::new`] without breaking plugins built against older ones.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Creates the plugin object.
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn() -> RResult<PluginBox, PluginError>,
}

/// The name of the root module, as a loader sees it in the library header.
pub const ROOT_MODULE_NAME: &str = "vmi_plugin";

/// The plugin API (= ABI) version this crate speaks: its own package version.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = ROOT_MODULE_NAME;
    const NAME: &'static str = ROOT_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
}
