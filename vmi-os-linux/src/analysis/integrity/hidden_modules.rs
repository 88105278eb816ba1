//! `hidden_modules`: three views of the loaded modules, compared.
//!
//! 1. The `modules` list (what `/proc/modules` and `lsmod` show): the view rootkits unlink
//!    themselves from (`list_del(&THIS_MODULE->list)`).
//! 2. The `module_kset` kobjects (what `/sys/module` shows): each loaded module's
//!    `mkobj.kobj`, whose `module_kobject.mod` points back at its `struct module` (built-in
//!    code with parameters has kobjects too, with `mod` NULL: not modules, skipped).
//! 3. A carve of the module area: every mapped page of `[MODULES_VADDR, MODULES_END)` is read
//!    and searched for a `struct module` — a word that holds its own struct's address at
//!    `module.mkobj.mod` (a loaded module's `mkobj.mod` is itself), whose `state` is one of
//!    the four `enum module_state` values, whose `name` is printable and NUL-terminated and
//!    whose list pointers are kernel addresses. A module unlinked from both lists is still in
//!    memory, and is found here.
//!
//! A module in one view but not another is suspicious: in the kset or the carve but not the
//! list (hidden from `lsmod`), in the list but not the kset (removed from `/sys/module`; only
//! for live modules: one being loaded or unloaded has no kobject for a moment), in the list
//! but not the carve (its `struct module` is not where or what a module's is).
//!
//! The module area is fixed on x86-64: `MODULES_VADDR` is `__START_KERNEL_map +
//! KERNEL_IMAGE_SIZE`, `0xffffffffc0000000` with KASLR (`CONFIG_RANDOMIZE_BASE`, every Debian
//! kernel), and `MODULES_END` is `0xffffffffff000000`. The carve skips unmapped page-table
//! subtrees whole (a not-present PD entry skips 2 MiB), reads at most [`MAX_CARVE_PAGES`]
//! pages and stops at [`MAX_CARVE_TIME`], with a warning. Cost on the fixture guests (dev
//! profile): the busybox guests (5 to 12 modules) have 533 to 579 mapped pages in the area,
//! read in 1 to 6 ms; the systemd guest with 64 modules, 2,127 pages in about 15 ms. The
//! summary finding says how many pages were read and how long it took.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vmi_core::os::{Finding, Severity};
use vmi_core::{TranslationError, Va, VirtualMemory};

use super::{finding, Check, Context};
use crate::comps::kobject::{module_kobjects, KobjectOffsets, MODULE_KSET_SYMBOL};
use crate::comps::layout::{struct_size, ArrayField, Scalar, StructBuf};
use crate::comps::module::MODULE_STATE_UNFORMED;
use crate::error::LinuxError;
use crate::iter::list::{container_of, is_kernel_pointer, ListOffsets, ListWalker};
use crate::partial::Partial;

/// Start of the module area with KASLR (`MODULES_VADDR`).
pub const MODULES_VADDR: u64 = 0xffff_ffff_c000_0000;
/// End of the module area (`MODULES_END`).
pub const MODULES_END: u64 = 0xffff_ffff_ff00_0000;
/// Most pages the carve reads (the whole area is 258,048 pages).
pub const MAX_CARVE_PAGES: usize = 1 << 18;
/// Time bound of the carve.
pub const MAX_CARVE_TIME: Duration = Duration::from_secs(3);

const PAGE: u64 = 4096;

/// Where the carve looks in a `struct module`.
#[derive(Debug, Clone, Copy)]
struct ModuleFields {
    size: usize,
    state: Scalar,
    name: ArrayField,
    list: u64,
    next: u64,
    /// `module.mkobj.mod`.
    self_pointer: u64,
}

impl ModuleFields {
    fn resolve(ctx: &Context<'_>, kobj: &KobjectOffsets) -> Result<ModuleFields, LinuxError> {
        let p = ctx.kernel.profile();
        Ok(ModuleFields {
            size: struct_size(p, "module")?,
            state: Scalar::resolve(p, "module", "state")?,
            name: ArrayField::resolve(p, "module", "name")?,
            list: p.field_offset("module", "list")?,
            next: ListOffsets::resolve(p)?.next,
            self_pointer: kobj
                .module_self_pointer()
                .ok_or_else(|| LinuxError::Corrupt {
                    what: "module",
                    at: Va::new(0),
                    reason: "module.mkobj.mod offset overflows".into(),
                })?,
        })
    }
}

/// A `struct module` as the carve validated it.
#[derive(Debug, Clone)]
struct Carved {
    name: String,
    state: u64,
}

/// Whether the struct at `addr` is a plausible `struct module`; why not otherwise.
fn validate(mem: &VirtualMemory<'_>, f: &ModuleFields, addr: Va) -> Result<Carved, String> {
    let b = StructBuf::read(mem, "module", addr, f.size).map_err(|e| e.to_string())?;
    let own = b
        .get(Scalar {
            offset: f.self_pointer,
            size: 8,
            bits: None,
        })
        .map_err(|e| e.to_string())?;
    if own != addr.raw() {
        return Err(format!("mkobj.mod is {own:#x}, not the module itself"));
    }
    let state = b.get(f.state).map_err(|e| e.to_string())?;
    if state > MODULE_STATE_UNFORMED {
        return Err(format!("state {state} is no module_state"));
    }
    let raw = b.array(f.name).map_err(|e| e.to_string())?;
    let len = raw
        .iter()
        .position(|&c| c == 0)
        .ok_or("name is not NUL-terminated")?;
    let name = &raw[..len];
    if name.is_empty() || !name.iter().all(|c| c.is_ascii_graphic()) {
        return Err("name is empty or not printable".into());
    }
    let mode = mem.space().mode;
    for off in [f.list + f.next, f.list + f.next + 8] {
        let p = b
            .get(Scalar {
                offset: off,
                size: 8,
                bits: None,
            })
            .map_err(|e| e.to_string())?;
        if !is_kernel_pointer(mode, Va::new(p)) {
            return Err(format!("list pointer {p:#x} is not a kernel address"));
        }
    }
    Ok(Carved {
        name: String::from_utf8_lossy(name).into_owned(),
        state,
    })
}

/// What the carve of the module area found, and what it cost.
struct Carve {
    modules: BTreeMap<Va, Carved>,
    pages: usize,
    elapsed: Duration,
}

/// Reads every mapped page of the module area and validates each self-pointing candidate.
fn carve(ctx: &Context<'_>, f: &ModuleFields, warnings: &mut Vec<LinuxError>) -> Carve {
    let started = Instant::now();
    let space = ctx.kernel.space();
    let mut modules = BTreeMap::new();
    let mut pages = 0usize;
    let mut page = vec![0u8; PAGE as usize];
    let mut va = MODULES_VADDR;
    while va < MODULES_END {
        if pages >= MAX_CARVE_PAGES || started.elapsed() >= MAX_CARVE_TIME {
            warnings.push(LinuxError::Corrupt {
                what: "module area carve",
                at: Va::new(va),
                reason: format!(
                    "stopped after {pages} pages and {:.1?} (bounds: {MAX_CARVE_PAGES} pages, \
                     {MAX_CARVE_TIME:?})",
                    started.elapsed()
                ),
            });
            break;
        }
        match ctx.session.translate(space, Va::new(va)) {
            Ok(_) => {}
            Err(TranslationError::NotPresent { level, .. }) => {
                // A not-present entry at level L maps nothing for 4 KiB << 9 (L - 1).
                let shift = 12 + 9 * u32::from(level.0.clamp(1, 5) - 1);
                let span = 1u64 << shift.min(63);
                va = match (va & !(span - 1)).checked_add(span) {
                    Some(n) => n,
                    None => break,
                };
                continue;
            }
            Err(_) => {
                va += PAGE;
                continue;
            }
        }
        pages += 1;
        if ctx.mem.read_exact(Va::new(va), &mut page).is_ok() {
            for (i, w) in page.chunks_exact(8).enumerate() {
                let mut b = [0u8; 8];
                b.copy_from_slice(w);
                let value = u64::from_le_bytes(b);
                let here = va + 8 * i as u64;
                if here.checked_sub(f.self_pointer) != Some(value) {
                    continue;
                }
                let candidate = Va::new(value);
                if let Ok(m) = validate(&ctx.mem, f, candidate) {
                    modules.insert(candidate, m);
                }
            }
        }
        va += PAGE;
    }
    Carve {
        modules,
        pages,
        elapsed: started.elapsed(),
    }
}

/// Runs the check.
pub fn check(ctx: &Context<'_>) -> Result<Partial<Finding>, LinuxError> {
    let profile = ctx.kernel.profile();
    let kobj = KobjectOffsets::resolve(profile)?;
    let fields = ModuleFields::resolve(ctx, &kobj)?;
    let mut out = Partial::default();

    // 1. The modules list.
    let list_head = ctx
        .kernel
        .symbol(crate::analysis::modules::MODULES_SYMBOL)?;
    let mut listed: BTreeMap<Va, ()> = BTreeMap::new();
    let mut walk = ListWalker::new(
        ctx.mem,
        ListOffsets::resolve(profile)?,
        list_head,
        "module list",
    )
    .with_limit(crate::analysis::modules::MAX_MODULES);
    for entry in walk.by_ref() {
        if let Some(m) = container_of(entry, fields.list) {
            listed.insert(m, ());
        }
    }
    out.warnings.extend(walk.into_warning());

    // 2. The module_kset kobjects.
    let kset_pointer = ctx.kernel.symbol(MODULE_KSET_SYMBOL)?;
    let (kobjects, kset_warnings) = module_kobjects(&ctx.mem, profile, kset_pointer)?;
    out.warnings.extend(kset_warnings);
    let mut in_kset: BTreeMap<Va, String> = BTreeMap::new();
    for k in &kobjects {
        let Some(module) = k.module else {
            continue;
        };
        // A module's kobject is embedded in it: mod->mkobj is this kobject.
        if module.checked_add(kobj.module_mkobj) != Some(k.addr) {
            out.items.push(finding(
                Check::HiddenModules,
                Severity::Suspicious,
                k.name.clone(),
                Some(k.addr),
                format!(
                    "the /sys/module kobject at {} names the module at {module}, whose \
                     mkobj is elsewhere",
                    k.addr
                ),
            ));
        }
        in_kset.insert(module, k.name.clone());
    }

    // 3. The carve.
    let carve = carve(ctx, &fields, &mut out.warnings);

    // Compare.
    let mut all: BTreeMap<Va, String> = BTreeMap::new();
    for (&a, c) in &carve.modules {
        all.insert(a, c.name.clone());
    }
    for (&a, n) in &in_kset {
        all.entry(a).or_insert_with(|| n.clone());
    }
    for &a in listed.keys() {
        if let std::collections::btree_map::Entry::Vacant(v) = all.entry(a) {
            v.insert(match validate(&ctx.mem, &fields, a) {
                Ok(c) => c.name,
                Err(_) => read_name(&ctx.mem, &fields, a),
            });
        }
    }
    let mut consistent = 0usize;
    for (&addr, name) in &all {
        let (l, k, c) = (
            listed.contains_key(&addr),
            in_kset.contains_key(&addr),
            carve.modules.get(&addr),
        );
        let state = c
            .map(|c| c.state)
            .or_else(|| validate(&ctx.mem, &fields, addr).ok().map(|c| c.state));
        let mut wrong = Vec::new();
        if !l {
            let seen: Vec<&str> = [(k, "module_kset"), (c.is_some(), "the module-area carve")]
                .into_iter()
                .filter_map(|(b, s)| b.then_some(s))
                .collect();
            wrong.push(format!(
                "hidden from the modules list (lsmod, /proc/modules): seen by {}",
                seen.join(" and ")
            ));
        }
        if l && !k && state == Some(0) {
            wrong.push("live but not in module_kset (removed from /sys/module)".to_owned());
        }
        if l && c.is_none() {
            let inside = (MODULES_VADDR..MODULES_END).contains(&addr.raw());
            wrong.push(match validate(&ctx.mem, &fields, addr) {
                Err(why) => format!("its struct module fails the carve's checks: {why}"),
                Ok(_) if !inside => "its struct module lies outside the module area".into(),
                Ok(_) => "its page was not read by the carve".into(),
            });
        }
        if wrong.is_empty() {
            consistent += 1;
            continue;
        }
        out.items.push(finding(
            Check::HiddenModules,
            Severity::Suspicious,
            name.clone(),
            Some(addr),
            wrong.join("; "),
        ));
    }
    let builtin = kobjects.iter().filter(|k| k.module.is_none()).count();
    out.items.push(finding(
        Check::HiddenModules,
        Severity::Info,
        "modules",
        None,
        format!(
            "{} in the modules list, {} in module_kset (and {builtin} built-in kobjects), {} \
             carved; {consistent} in all three views; carve read {} pages of the module area \
             in {:.1?}",
            listed.len(),
            in_kset.len(),
            carve.modules.len(),
            carve.pages,
            carve.elapsed
        ),
    ));
    Ok(out)
}

/// The name of the `struct module` at `addr`, escaped, or `"?"`.
fn read_name(mem: &VirtualMemory<'_>, f: &ModuleFields, addr: Va) -> String {
    let Some(at) = addr.checked_add(f.name.offset) else {
        return "?".into();
    };
    let mut buf = vec![0u8; f.name.count.min(256) as usize];
    if mem.read_exact(at, &mut buf).is_err() {
        return "?".into();
    }
    let bytes = &buf[..buf.iter().position(|&c| c == 0).unwrap_or(buf.len())];
    bytes
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() && c != b'\\' {
                char::from(c).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect()
}
