//! A plugin as if built against vmi-plugin-api 2.0.0: its library header claims API version
//! 2.0.0. The loader must refuse it, naming the plugin, its version and ours.
//!
//! Its root module has the layout of the 1.x one; only the version differs, so the refusal is
//! the version check's, made before any layout is looked at.

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

/// The root module of the pretended API 2.0.0.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Creates the plugin.
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn() -> RResult<PluginBox, PluginError>,
}

impl RootModule for PluginModuleRef {
    abi_stable::declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = vmi_plugin_api::ROOT_MODULE_NAME;
    const NAME: &'static str = vmi_plugin_api::ROOT_MODULE_NAME;
    const VERSION_STRINGS: VersionStrings = VersionStrings {
        version: RStr::from_str("2.0.0"),
    };
}

extern "C" fn new() -> RResult<PluginBox, PluginError> {
    RResult::RErr(PluginError::failed("must never be constructed"))
}

/// The exported root module.
#[abi_stable::export_root_module]
pub fn root() -> PluginModuleRef {
    PluginModule { new }.leak_into_prefix()
}
