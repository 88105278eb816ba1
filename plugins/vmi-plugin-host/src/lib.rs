//! The host side of vmi's plugin ABI, used by the `vmi` command (vmi-core never sees
//! abi_stable).
//!
//! - [`loader`]: [`load`] opens a plugin library through its abi_stable library header (so
//!   several plugins load in one process), refuses one built against another plugin-API major
//!   version or layout with a message naming it, its version and ours, and runs it
//!   ([`LoadedPlugin::run`]); a panicking plugin yields [`PluginError::Panicked`].
//! - [`events`]: plugins that subscribe to events (API 1.1):
//!   [`LoadedPlugin::run_with_events`] resolves their subscriptions through the OS profile's
//!   neutral tracing and symbol capabilities, runs an event loop within [`EventLimits`], and
//!   cleans the guest up before the plugin's table is made.
//! - [`session_host`]: [`SessionHost`], a [`vmi_core::Session`] (and the OS-neutral
//!   capabilities of whatever OS profile is bound) served to plugins as a
//!   [`vmi_plugin_api::HostInterface`]. No OS crate is a dependency: a plugin runs on any OS
//!   that has what it asks for.
//! - [`search`]: finding a plugin by path or name ([`search::resolve`]: the current directory,
//!   then `$VMI_PLUGIN_PATH`).
//! - [`error`]: why a plugin could not be loaded or run ([`PluginError`]).
//!
//! ```no_run
//! # fn demo(session: &vmi_core::Session) -> Result<(), Box<dyn std::error::Error>> {
//! let plugin = vmi_plugin_host::load(std::path::Path::new("target/debug/libscan.so"))?;
//! let table = plugin.run(&vmi_plugin_host::SessionHost::new(session), &["VMI-".into()])?;
//! println!("{} rows", table.rows.len());
//! # Ok(()) }
//! ```

pub mod error;
pub mod events;
pub mod loader;
pub mod search;
pub mod session_host;

pub use error::PluginError;
pub use events::{EventLimits, PluginRun};
pub use loader::{load, LoadedPlugin};
pub use session_host::{SessionHost, NO_NUMERIC_ID};
pub use vmi_plugin_api::{Cell, Table, API_VERSION};
