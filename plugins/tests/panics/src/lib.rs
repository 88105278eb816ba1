//! A plugin that panics in `run`: the export helper must turn the panic into an error and the
//! host must go on (tests of the plugin loader).

use vmi_plugin_api::{Analysis, Host, PluginError, Table};

/// Panics when run.
#[derive(Default)]
pub struct Panics;

impl Analysis for Panics {
    fn name(&self) -> &str {
        "panics"
    }
    fn description(&self) -> &str {
        "Panics when run (a test of the plugin boundary)"
    }
    fn usage(&self) -> &str {
        "panics"
    }
    fn run(&self, _host: &Host<'_>, args: &[String]) -> Result<Table, PluginError> {
        panic!("deliberate panic in run (args {args:?})");
    }
}

vmi_plugin_api::export_plugin!(Panics::default);
