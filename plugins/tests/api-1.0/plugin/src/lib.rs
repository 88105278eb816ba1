//! A plugin of plugin API 1.0: the target's OS and kernel base, through `target_info`.

use vmi_plugin_api::{Analysis, Cell, Host, PluginError, Table};

#[derive(Default)]
struct Api10;

impl Analysis for Api10 {
    fn name(&self) -> &str {
        "api-1.0"
    }
    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }
    fn description(&self) -> &str {
        "A plugin built against vmi-plugin-api 1.0.0"
    }
    fn usage(&self) -> &str {
        "api-1.0"
    }
    fn run(&self, host: &Host<'_>, _args: &[String]) -> Result<Table, PluginError> {
        let info = host.target_info();
        let mut t = Table::new(&["os_kind", "kernel_base"]);
        t.push(vec![
            Cell::text(info.os_kind.as_str()),
            Cell::address(info.kernel_base),
        ]);
        Ok(t)
    }
}

vmi_plugin_api::export_plugin!(Api10::default);
