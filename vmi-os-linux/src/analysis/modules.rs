//! `vmi modules`: the loaded kernel modules, as `/proc/modules` lists them.
//!
//! The walk follows the kernel's `modules` list (a `struct list_head` variable, newest module
//! first) through `module.list`, bounded and cycle-checked by
//! [`crate::iter::list::ListWalker`]. Modules still being set up
//! (`MODULE_STATE_UNFORMED`) are skipped, as `/proc/modules` skips them. Name, size and base
//! follow `m_show` (see [`crate::comps::module`]).

use serde::Serialize;
use vmi_core::{Session, Va};

use crate::comps::module::{ModuleInfo, ModuleOffsets, MODULE_STATE_UNFORMED};
use crate::error::LinuxError;
use crate::iter::list::{container_of, ListOffsets, ListWalker};
use crate::kernel::Kernel;
use crate::partial::Partial;

/// The variable heading the module list: `struct list_head modules` (kernel/module/main.c).
/// BTF has no type for variables, so the type is declared here.
pub const MODULES_SYMBOL: &str = "modules";

/// Most modules walked: real systems load a few hundred.
pub const MAX_MODULES: usize = 1 << 16;

/// A loaded module, as a line of `/proc/modules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Module {
    /// The module's name.
    pub name: String,
    /// Where its text is (the address `/proc/modules` prints).
    pub base: Va,
    /// Its size in bytes, as `/proc/modules` prints it (all of its memory).
    pub size: u64,
}

/// The loaded modules, newest first.
///
/// ```no_run
/// # fn demo(session: &vmi_core::Session) -> Result<(), vmi_os_linux::LinuxError> {
/// let kernel = vmi_os_linux::discover(session)?;
/// let modules = vmi_os_linux::analysis::modules::modules(session, &kernel)?;
/// for m in &modules.items {
///     println!("{} {} {}", m.name, m.size, m.base);
/// }
/// # Ok(()) }
/// ```
pub fn modules(session: &Session, kernel: &Kernel) -> Result<Partial<Module>, LinuxError> {
    let profile = kernel.profile();
    let offsets = ModuleOffsets::resolve(profile)?;
    let list = ListOffsets::resolve(profile)?;
    let head = kernel.symbol(MODULES_SYMBOL)?;
    let mem = kernel.memory(session);
    let mut out = Partial::default();
    let mut walk = ListWalker::new(mem, list, head, "module list").with_limit(MAX_MODULES);
    for entry in walk.by_ref() {
        let Some(addr) = container_of(entry, offsets.list) else {
            out.warnings.push(LinuxError::Corrupt {
                what: "module list",
                at: entry,
                reason: "entry lies below the offset of module.list".into(),
            });
            continue;
        };
        match ModuleInfo::read(&mem, &offsets, addr) {
            Ok((m, warning)) => {
                out.warnings.extend(warning);
                if m.state != MODULE_STATE_UNFORMED {
                    out.items.push(Module {
                        name: m.name,
                        base: m.base,
                        size: m.size,
                    });
                }
            }
            Err(e) => out.warnings.push(e),
        }
    }
    out.warnings.extend(walk.into_warning());
    Ok(out)
}
