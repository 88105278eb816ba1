//! A plugin whose library header claims a compatible API version (ours) but whose root module
//! has another layout (its constructor takes an argument): the loader's layout check must
//! refuse it, naming the plugin, its version and ours.

// `#[derive(StableAbi)]` on a prefix type generates impls inside a `const _` block.
#![allow(non_local_definitions)]
// `#[abi_stable::export_root_module]` generates an undocumented static.
#![allow(missing_docs)]

use abi_stable::library::RootModule;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RResult, RStr};
use abi_stable::StableAbi;
use vmi_plugin_api::{PluginBox, PluginError};

/// A root module that is not the API's.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Creates the plugin (with an argument the real API does not have).
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(u32) -> RResult<PluginBox, PluginError>,
}

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = vmi_plugin_api::ROOT_MODULE_NAME;
    const NAME: &'static str = vmi_plugin_api::ROOT_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = VersionStrings {
        version: RStr::from_str(vmi_plugin_api::API_VERSION),
    };
}

extern "C" fn new(_: u32) -> RResult<PluginBox, PluginError> {
    RResult::RErr(PluginError::failed("must never be constructed"))
}

/// The exported root module.
#[abi_stable::export_root_module]
pub fn root() -> PluginModuleRef {
    PluginModule { new }.leak_into_prefix()
}
