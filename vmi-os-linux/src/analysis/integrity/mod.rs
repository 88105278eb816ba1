//! `vmi integrity`: has the kernel been tampered with? Five checks, one file each, that report
//! [`Finding`]s: [`Severity::Suspicious`] for what a clean kernel does not have,
//! [`Severity::Info`] for inventory (loaded eBPF programs, what a check covered).
//!
//! - [`syscalls`] (`syscall_table`): every `sys_call_table` entry points into core kernel text.
//! - [`idt`] (`idt`): every present gate of `idt_table` has its handler in kernel text, and
//!   every vCPU's IDTR is `idt_table` (or its read-only alias).
//! - [`hidden_modules`] (`hidden_modules`): the `modules` list, the `module_kset` kobjects and a
//!   carve of `struct module`s in the module area name the same modules.
//! - [`inline_hooks`] (`inline_hooks`): the first instruction of functions rootkits hook does
//!   not jump out of kernel text.
//! - [`ebpf`] (`ebpf`): the loaded eBPF programs, with a heuristic for the ones that tamper.
//!
//! What "kernel text" is: `[_stext, _etext)`, which holds the entry text
//! (`__entry_text_start..__entry_text_end`) on every x86-64 kernel; the entry range is added
//! explicitly in case a kernel places it apart. Where a pointer lands outside, the finding
//! names the module whose memory holds it (from the `modules` list, every memory region of
//! each module), or says it lands in no module.
//!
//! Addresses are named by the nearest kernel symbol (`asm_exc_page_fault`,
//! `__x64_sys_read+0x10`), which needs the whole symbol table sorted by address: a profile
//! read back from the cache holds only the symbols earlier runs looked up, so the checks ask
//! for the full profile ([`vmi_core::OsError::IncompleteProfile`] from a cached one). The
//! index costs one pass over kallsyms and a sort: about 10 ms for the 88,000 symbols of 6.1
//! and 20 ms for the 156,000 of 6.12 (dev profile), after the names are decoded (15 to 35 ms,
//! once per run).

pub mod ebpf;
pub mod hidden_modules;
pub mod idt;
pub mod inline_hooks;
pub mod syscalls;

use std::cell::OnceCell;

use vmi_core::os::{Details, Finding, Severity};
use vmi_core::{Session, Va, VirtualMemory};

use crate::comps::layout::{struct_size, ArrayField, Scalar};
use crate::comps::module::{MemoryLayout, ModuleOffsets};
use crate::error::LinuxError;
use crate::iter::list::{container_of, ListOffsets, ListWalker};
use crate::kernel::Kernel;
use crate::partial::Partial;

/// One check: its name (as `vmi integrity NAME` takes it) and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `syscall_table`.
    SyscallTable,
    /// `idt`.
    Idt,
    /// `hidden_modules`.
    HiddenModules,
    /// `inline_hooks`.
    InlineHooks,
    /// `ebpf`.
    Ebpf,
}

impl Check {
    /// Every check, in the order they run.
    pub const ALL: [Check; 5] = [
        Check::SyscallTable,
        Check::Idt,
        Check::HiddenModules,
        Check::InlineHooks,
        Check::Ebpf,
    ];

    /// The name users give.
    pub const fn name(self) -> &'static str {
        match self {
            Check::SyscallTable => "syscall_table",
            Check::Idt => "idt",
            Check::HiddenModules => "hidden_modules",
            Check::InlineHooks => "inline_hooks",
            Check::Ebpf => "ebpf",
        }
    }

    /// The check called `name`.
    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The names of every check, for messages.
    pub fn names() -> Vec<&'static str> {
        Check::ALL.iter().map(|c| c.name()).collect()
    }
}

/// Runs `checks` (every check when empty). A check that cannot run (a symbol or type the
/// kernel lacks) is a warning; the other checks still run.
pub fn check_integrity(session: &Session, kernel: &Kernel, checks: &[Check]) -> Partial<Finding> {
    let ctx = Context::new(session, kernel);
    let checks = if checks.is_empty() {
        &Check::ALL[..]
    } else {
        checks
    };
    let mut out = Partial::default();
    for &check in checks {
        let result = match check {
            Check::SyscallTable => syscalls::check(&ctx),
            Check::Idt => idt::check(&ctx),
            Check::HiddenModules => hidden_modules::check(&ctx),
            Check::InlineHooks => inline_hooks::check(&ctx),
            Check::Ebpf => ebpf::check(&ctx),
        };
        match result {
            Ok(p) => {
                out.items.extend(p.items);
                out.warnings.extend(p.warnings);
            }
            Err(e) => out.warnings.push(e),
        }
    }
    out.warnings.extend(ctx.take_warnings());
    out
}

/// The x86-64 kernel image mapping: only symbols there are slid by KASLR.
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// What the checks share: the kernel, its text ranges, the symbol index and the modules.
pub struct Context<'a> {
    /// The session.
    pub session: &'a Session,
    /// The kernel.
    pub kernel: &'a Kernel,
    /// Kernel virtual memory.
    pub mem: VirtualMemory<'a>,
    text: Option<(u64, u64)>,
    entry_text: Option<(u64, u64)>,
    symbols: OnceCell<Vec<(u64, &'a str)>>,
    modules: OnceCell<Vec<ModuleSpan>>,
    warnings: std::cell::RefCell<Vec<LinuxError>>,
}

/// A module of the `modules` list and the memory it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpan {
    /// Its name.
    pub name: String,
    /// Its `struct module`.
    pub addr: Va,
    /// `[start, end)` of each memory region (text, data, read-only data, init...).
    pub regions: Vec<(u64, u64)>,
}

/// Where a pointer lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// In core kernel text (or entry text).
    KernelText,
    /// In the memory of the module so named.
    Module(String),
    /// Elsewhere.
    Nowhere,
}

impl<'a> Context<'a> {
    /// The context of `kernel`.
    pub fn new(session: &'a Session, kernel: &'a Kernel) -> Context<'a> {
        let range = |a: &str, b: &str| {
            let (a, b) = (kernel.symbol(a).ok()?, kernel.symbol(b).ok()?);
            (a < b).then_some((a.raw(), b.raw()))
        };
        Context {
            session,
            kernel,
            mem: kernel.memory(session),
            text: range("_stext", "_etext"),
            entry_text: range("__entry_text_start", "__entry_text_end"),
            symbols: OnceCell::new(),
            modules: OnceCell::new(),
            warnings: Default::default(),
        }
    }

    /// `[_stext, _etext)`, or the error naming the missing symbol.
    pub fn text(&self) -> Result<(u64, u64), LinuxError> {
        match self.text {
            Some(t) => Ok(t),
            None => {
                self.kernel.symbol("_stext")?;
                self.kernel.symbol("_etext")?;
                Err(LinuxError::Corrupt {
                    what: "kernel text",
                    at: self.kernel.symbol("_stext")?,
                    reason: "_etext does not follow _stext".into(),
                })
            }
        }
    }

    /// Whether `va` is in core kernel text or entry text.
    pub fn in_kernel_text(&self, va: u64) -> bool {
        [self.text, self.entry_text]
            .into_iter()
            .flatten()
            .any(|(s, e)| (s..e).contains(&va))
    }

    /// Where `va` lands.
    pub fn landing(&self, va: u64) -> Landing {
        if self.in_kernel_text(va) {
            return Landing::KernelText;
        }
        match self.module_at(va) {
            Some(m) => Landing::Module(m.name.clone()),
            None => Landing::Nowhere,
        }
    }

    /// The module of the `modules` list whose memory holds `va`.
    pub fn module_at(&self, va: u64) -> Option<&ModuleSpan> {
        self.modules()
            .iter()
            .find(|m| m.regions.iter().any(|&(s, e)| (s..e).contains(&va)))
    }

    /// The modules of the `modules` list (read once; problems become warnings).
    pub fn modules(&self) -> &[ModuleSpan] {
        self.modules
            .get_or_init(|| match module_spans(&self.mem, self.kernel) {
                Ok(p) => {
                    self.warnings.borrow_mut().extend(p.warnings);
                    p.items
                }
                Err(e) => {
                    self.warnings.borrow_mut().push(e);
                    Vec::new()
                }
            })
    }

    /// `symbol+0xoff` of the nearest kernel symbol at or below `va` within 1 MiB, if any.
    pub fn symbol_name(&self, va: u64) -> Option<String> {
        let symbols = self.symbols();
        let i = symbols.partition_point(|&(a, _)| a <= va);
        let (addr, _) = *symbols.get(i.checked_sub(1)?)?;
        // Of the names at one address, prefer one that is not a `__pfx_` padding alias, then
        // the first by name (the index's order among equal addresses is not stable).
        let same = symbols[..i].iter().rev().take_while(|&&(a, _)| a == addr);
        let name = same
            .clone()
            .map(|&(_, n)| n)
            .filter(|n| !n.starts_with("__pfx_"))
            .min()
            .or_else(|| same.map(|&(_, n)| n).min())?;
        let off = va - addr;
        if off >= 1 << 20 {
            return None;
        }
        Some(if off == 0 {
            name.to_owned()
        } else {
            format!("{name}+{off:#x}")
        })
    }

    /// The address of the first kernel symbol above `va`.
    pub fn next_symbol_after(&self, va: u64) -> Option<u64> {
        let symbols = self.symbols();
        let i = symbols.partition_point(|&(a, _)| a <= va);
        symbols.get(i).map(|&(a, _)| a)
    }

    /// Kernel image symbols by run-time address (built on first use: one pass over the
    /// profile's symbols).
    fn symbols(&self) -> &[(u64, &'a str)] {
        self.symbols.get_or_init(|| {
            let slide = self.kernel.virtual_slide();
            let mut v: Vec<(u64, &'a str)> = self
                .kernel
                .profile()
                .symbols()
                .filter(|(_, s)| s.address >= START_KERNEL_MAP)
                .map(|(n, s)| (s.address.wrapping_add(slide), n))
                .collect();
            v.sort_unstable_by_key(|&(a, _)| a);
            v
        })
    }

    /// A description of where `va` lands, for findings: `in module X (sym)`, `in no module`.
    pub fn describe(&self, va: u64) -> String {
        let name = self
            .symbol_name(va)
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        match self.landing(va) {
            Landing::KernelText => format!("in kernel text{name}"),
            Landing::Module(m) => format!("in module {m}"),
            Landing::Nowhere => {
                let mapped = self.mem.read_u64(Va::new(va)).is_ok();
                format!(
                    "outside kernel text and every module ({}){name}",
                    if mapped { "mapped" } else { "not mapped" }
                )
            }
        }
    }

    fn take_warnings(&self) -> Vec<LinuxError> {
        std::mem::take(&mut self.warnings.borrow_mut())
    }
}

/// A finding of `check`.
pub fn finding(
    check: Check,
    severity: Severity,
    subject: impl Into<String>,
    address: Option<Va>,
    detail: impl Into<String>,
) -> Finding {
    Finding {
        check: check.name().to_owned(),
        severity,
        subject: subject.into(),
        address,
        detail: detail.into(),
        os: Details::new(),
    }
}

/// Every module of the `modules` list with its memory regions.
pub fn module_spans(
    mem: &VirtualMemory<'_>,
    kernel: &Kernel,
) -> Result<Partial<ModuleSpan>, LinuxError> {
    let profile = kernel.profile();
    let offsets = ModuleOffsets::resolve(profile)?;
    let name = ArrayField::resolve(profile, "module", "name")?;
    let size = struct_size(profile, "module")?;
    let list = ListOffsets::resolve(profile)?;
    let head = kernel.symbol(crate::analysis::modules::MODULES_SYMBOL)?;
    let mut out = Partial::default();
    let mut walk = ListWalker::new(*mem, list, head, "module list")
        .with_limit(crate::analysis::modules::MAX_MODULES);
    for entry in walk.by_ref() {
        let Some(addr) = container_of(entry, offsets.list) else {
            continue;
        };
        match read_span(mem, &offsets, name, size, addr) {
            Ok(m) => out.items.push(m),
            Err(e) => out.warnings.push(e),
        }
    }
    out.warnings.extend(walk.into_warning());
    Ok(out)
}

/// Reads the name and memory regions of the `struct module` at `addr`.
pub fn read_span(
    mem: &VirtualMemory<'_>,
    offsets: &ModuleOffsets,
    name: ArrayField,
    size: usize,
    addr: Va,
) -> Result<ModuleSpan, LinuxError> {
    let b = crate::comps::layout::StructBuf::read(mem, "module", addr, size)?;
    let raw = b.array(name)?;
    let raw = &raw[..raw.iter().position(|&c| c == 0).unwrap_or(raw.len())];
    let name = raw
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() && c != b'\\' {
                char::from(c).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect();
    let mut regions = Vec::new();
    let mut push = |base: u64, len: u64| {
        if base != 0 && len != 0 {
            if let Some(end) = base.checked_add(len) {
                regions.push((base, end));
            }
        }
    };
    let at = |s: Scalar, by: u64| Scalar {
        offset: s.offset.saturating_add(by),
        ..s
    };
    match offsets.memory_layout() {
        MemoryLayout::Memory {
            mem: array,
            base,
            size,
        } => {
            for i in 0..array.count {
                let (Some(bf), Some(sf)) = (
                    array.element(i, base.offset, base.size),
                    array.element(i, size.offset, size.size),
                ) else {
                    continue;
                };
                push(
                    b.get(bf)?,
                    b.get(Scalar {
                        bits: size.bits,
                        ..sf
                    })?,
                );
            }
        }
        MemoryLayout::Layouts {
            core,
            init,
            data,
            base,
            size,
        } => {
            for layout in [Some(*core), Some(*init), *data].into_iter().flatten() {
                push(b.get(at(*base, layout))?, b.get(at(*size, layout))?);
            }
        }
    }
    Ok(ModuleSpan {
        name,
        addr,
        regions,
    })
}

impl vmi_core::os::IntegrityChecks for crate::LinuxOs {
    fn integrity_checks(&self) -> Vec<&'static str> {
        Check::names()
    }

    fn check_integrity(
        &self,
        session: &Session,
        checks: &[String],
    ) -> Result<vmi_core::Partial<Finding>, vmi_core::OsError> {
        let mut wanted = Vec::new();
        for name in checks {
            let check = Check::from_name(name).ok_or_else(|| {
                vmi_core::OsError::os(format!(
                    "unknown integrity check `{name}` (known: {})",
                    Check::names().join(", ")
                ))
            })?;
            if !wanted.contains(&check) {
                wanted.push(check);
            }
        }
        if self.from_cache() {
            // Findings name addresses by the nearest symbol and the syscall table's length
            // is the distance to the next one: both need every symbol, which a cached
            // profile does not keep.
            return Err(vmi_core::OsError::IncompleteProfile(
                "integrity checks need the kernel's whole symbol table".into(),
            ));
        }
        let found = check_integrity(session, self.kernel(), &wanted);
        let mut out = vmi_core::Partial {
            items: found.items,
            warnings: Vec::new(),
        };
        out.warnings
            .extend(found.warnings.into_iter().map(|w| self.neutral(w)));
        Ok(out)
    }
}
