//! The plugin side: [`Analysis`], what an author implements, and the ABI-stable
//! [`PluginInterface`] the export helper makes of it, catching panics at the boundary.

// `#[sabi_trait]` generates its impls inside a `const _` block.
#![allow(non_local_definitions)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RSlice, RString, RVec};

use crate::events::{EventRecord, EventSummary, Flow, Subscription};
use crate::host::{Host, HostRef};
use crate::types::{PluginError, PluginErrorKind, Table};

/// An analysis plugin, as its author writes it.
///
/// ```
/// use vmi_plugin_api::{Analysis, Cell, Host, PluginError, Table};
///
/// #[derive(Default)]
/// struct KernelBase;
///
/// impl Analysis for KernelBase {
///     fn name(&self) -> &str { "kernel-base" }
///     fn description(&self) -> &str { "Where the kernel is" }
///     fn usage(&self) -> &str { "kernel-base" }
///     fn run(&self, host: &Host<'_>, _args: &[String]) -> Result<Table, PluginError> {
///         let info = host.target_info();
///         let mut t = Table::new(&["kernel_base"]);
///         t.push(vec![Cell::address(info.kernel_base)]);
///         Ok(t)
///     }
/// }
///
/// vmi_plugin_api::export_plugin!(KernelBase::default);
/// ```
pub trait Analysis: Send + Sync + 'static {
    /// A short name (`syscall-check`).
    fn name(&self) -> &str;
    /// The plugin's own version (default: none).
    fn version(&self) -> &str {
        ""
    }
    /// One line on what it does.
    fn description(&self) -> &str;
    /// How to call it (`scan [--pid N] PATTERN`).
    fn usage(&self) -> &str;
    /// Runs the analysis with the arguments after `--`.
    ///
    /// A plugin that works through events (API 1.1) need not implement it: a host that
    /// subscribes it never calls `run`, and the default answers a host that cannot (one of
    /// API 1.0, which does not know of events) with an error saying so.
    fn run(&self, host: &Host<'_>, args: &[String]) -> Result<Table, PluginError> {
        let _ = (host, args);
        Err(PluginError::usage(format!(
            "{} works through events (vmi-plugin-api 1.1): this vmi's plugin host does not \
             offer them; upgrade vmi",
            self.name()
        )))
    }

    /// API 1.1: the events to run on, from the arguments after `--` (called once, before
    /// anything else). Empty (the default): no events, the host calls [`Analysis::run`].
    fn subscriptions(
        &mut self,
        host: &Host<'_>,
        args: &[String],
    ) -> Result<Vec<Subscription>, PluginError> {
        let _ = (host, args);
        Ok(Vec::new())
    }

    /// API 1.1: one event, with the guest stopped at it (reads through `host` see it as it
    /// is there). An error ends the run (the host still cleans up the guest).
    fn on_event(&mut self, host: &Host<'_>, event: &EventRecord) -> Result<Flow, PluginError> {
        let _ = (host, event);
        Ok(Flow::Continue)
    }

    /// API 1.1: the result of an event run, once it is over (the guest runs again).
    fn finish(&mut self, host: &Host<'_>, summary: &EventSummary) -> Result<Table, PluginError> {
        let _ = (host, summary);
        Err(PluginError::failed(format!(
            "{} subscribed to events but makes no table of them (no `finish`)",
            self.name()
        )))
    }
}

/// The ABI-stable plugin object the host calls. Plugin authors implement [`Analysis`] and
/// let [`crate::export_plugin!`] make this of it.
#[sabi_trait]
pub trait PluginInterface: Send + Sync {
    /// [`Analysis::name`].
    fn name(&self) -> RString;
    /// [`Analysis::version`].
    fn version(&self) -> RString;
    /// [`Analysis::description`].
    fn description(&self) -> RString;
    /// [`Analysis::usage`].
    fn usage(&self) -> RString;
    /// [`Analysis::run`]; a panic comes back as [`PluginErrorKind::Panicked`].
    #[sabi(last_prefix_field)]
    fn run(&self, host: HostRef<'_>, args: RSlice<'_, RString>) -> RResult<Table, PluginError>;

    // API 1.1, after the prefix: a 1.0 plugin's vtable lacks them, and calling one on such a
    // plugin runs the default body here (no events: it is run with `run`).

    /// [`Analysis::subscriptions`]; a 1.0 plugin subscribes to nothing.
    fn subscriptions(
        &mut self,
        host: HostRef<'_>,
        args: RSlice<'_, RString>,
    ) -> RResult<RVec<Subscription>, PluginError> {
        let _ = (host, args);
        RResult::ROk(RVec::new())
    }

    /// [`Analysis::on_event`].
    fn on_event(&mut self, host: HostRef<'_>, event: &EventRecord) -> RResult<Flow, PluginError> {
        let _ = (host, event);
        RResult::ROk(Flow::Stop)
    }

    /// [`Analysis::finish`].
    fn finish(&mut self, host: HostRef<'_>, summary: &EventSummary) -> RResult<Table, PluginError> {
        let _ = (host, summary);
        RResult::RErr(PluginError::failed(
            "the plugin (vmi-plugin-api 1.0) knows no events",
        ))
    }
}

/// A plugin object owned by the host (allocated and freed by the plugin).
pub type PluginBox = PluginInterface_TO<'static, RBox<()>>;

/// An [`Analysis`] behind the ABI, with every call guarded against unwinding across it.
struct Exported<A>(A);

/// Runs `f`, turning a panic into a [`PluginErrorKind::Panicked`] error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> Result<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            Err(PluginError::new(
                PluginErrorKind::Panicked,
                format!("panicked in {what}: {msg}"),
            ))
        }
    }
}

/// A string accessor that must not unwind: a panic gives `fallback`.
fn guarded_str(f: impl FnOnce() -> String, fallback: &str) -> RString {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(s) => s.into(),
        Err(_) => fallback.into(),
    }
}

impl<A: Analysis> PluginInterface for Exported<A> {
    fn name(&self) -> RString {
        guarded_str(|| self.0.name().to_owned(), "(name panicked)")
    }

    fn version(&self) -> RString {
        guarded_str(|| self.0.version().to_owned(), "")
    }

    fn description(&self) -> RString {
        guarded_str(|| self.0.description().to_owned(), "(description panicked)")
    }

    fn usage(&self) -> RString {
        guarded_str(|| self.0.usage().to_owned(), "(usage panicked)")
    }

    fn run(&self, host: HostRef<'_>, args: RSlice<'_, RString>) -> RResult<Table, PluginError> {
        guarded("run", || {
            let args: Vec<String> = args.iter().map(|a| a.as_str().to_owned()).collect();
            self.0.run(&Host::new(host), &args)
        })
        .into()
    }

    fn subscriptions(
        &mut self,
        host: HostRef<'_>,
        args: RSlice<'_, RString>,
    ) -> RResult<RVec<Subscription>, PluginError> {
        guarded("subscriptions", || {
            let args: Vec<String> = args.iter().map(|a| a.as_str().to_owned()).collect();
            self.0
                .subscriptions(&Host::new(host), &args)
                .map(RVec::from)
        })
        .into()
    }

    fn on_event(&mut self, host: HostRef<'_>, event: &EventRecord) -> RResult<Flow, PluginError> {
        guarded("on_event", || self.0.on_event(&Host::new(host), event)).into()
    }

    fn finish(&mut self, host: HostRef<'_>, summary: &EventSummary) -> RResult<Table, PluginError> {
        guarded("finish", || self.0.finish(&Host::new(host), summary)).into()
    }
}

/// Builds the plugin object: what [`crate::export_plugin!`]'s constructor calls. A panic in
/// `new` is an error, not an unwind into the host.
#[doc(hidden)]
pub fn construct<A: Analysis>(new: impl FnOnce() -> A) -> RResult<PluginBox, PluginError> {
    guarded("the plugin's constructor", || {
        Ok(PluginInterface_TO::from_value(Exported(new()), TD_Opaque))
    })
    .into()
}
