//! `struct kobject`, `struct kset` and `struct module_kobject`: the objects behind `/sys/module`.
//!
//! Every module the kernel knows has a directory in `/sys/module`: its `struct module_kobject
//! mkobj` (embedded in `struct module`) is a `kobject` in the `module_kset` set
//! (kernel/params.c), linked through `kobject.entry` into `kset.list`. Built-in code with
//! parameters has one too (`/sys/module/printk`), made by `locate_module_kobject`, whose `mod` is
//! NULL. A rootkit that unlinks itself from the `modules` list (hiding from `/proc/modules` and
//! `lsmod`) often forgets this set, or removes itself from it separately (`kobject_del`): the
//! two views are compared by [`crate::analysis::integrity`].

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::Scalar;
use crate::error::LinuxError;
use crate::iter::list::{container_of, is_kernel_pointer, ListOffsets, ListWalker};

/// The variable pointing at the set of module kobjects: `struct kset *module_kset`.
pub const MODULE_KSET_SYMBOL: &str = "module_kset";

/// Most kobjects walked in `module_kset` (built-in modules with parameters plus loaded
/// modules: a few hundred on real systems).
pub const MAX_MODULE_KOBJECTS: usize = 1 << 16;

/// Longest kobject name read (`/sys/module` names are module names: under 56 bytes).
const MAX_KOBJECT_NAME: usize = 256;

/// Where the fields of the three structures are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KobjectOffsets {
    /// `kset.list`: the head of the set's kobjects.
    pub kset_list: u64,
    /// `kobject.entry`: a kobject's link in its set.
    pub kobject_entry: u64,
    /// `kobject.name` (`const char *`).
    pub kobject_name: Scalar,
    /// `module_kobject.kobj`.
    pub mkobj_kobj: u64,
    /// `module_kobject.mod` (`struct module *`, NULL for built-in code).
    pub mkobj_mod: Scalar,
    /// `module.mkobj`: where a module's `module_kobject` is embedded.
    pub module_mkobj: u64,
}

impl KobjectOffsets {
    /// Resolves the fields.
    pub fn resolve(profile: &Profile) -> Result<KobjectOffsets, ProfileError> {
        Ok(KobjectOffsets {
            kset_list: profile.field_offset("kset", "list")?,
            kobject_entry: profile.field_offset("kobject", "entry")?,
            kobject_name: Scalar::resolve(profile, "kobject", "name")?,
            mkobj_kobj: profile.field_offset("module_kobject", "kobj")?,
            mkobj_mod: Scalar::resolve(profile, "module_kobject", "mod")?,
            module_mkobj: profile.field_offset("module", "mkobj")?,
        })
    }

    /// Offset of `module.mkobj.mod` in `struct module`: a `struct module` in memory has its
    /// own address there (what the carve of the module area looks for).
    pub fn module_self_pointer(&self) -> Option<u64> {
        self.module_mkobj.checked_add(self.mkobj_mod.offset)
    }
}

/// One kobject of `module_kset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleKobject {
    /// The `struct module_kobject`.
    pub addr: Va,
    /// Its name (the `/sys/module` directory), escaped where not printable.
    pub name: String,
    /// `mod`: the module it stands for, `None` for built-in code.
    pub module: Option<Va>,
}

/// The kobjects of `module_kset`, in list order, with what stopped the walk early.
pub fn module_kobjects(
    mem: &VirtualMemory<'_>,
    profile: &Profile,
    kset_pointer: Va,
) -> Result<(Vec<ModuleKobject>, Vec<LinuxError>), LinuxError> {
    let o = KobjectOffsets::resolve(profile)?;
    let list = ListOffsets::resolve(profile)?;
    let kset = mem.read_va(kset_pointer)?;
    if !is_kernel_pointer(mem.space().mode, kset) {
        return Err(LinuxError::Corrupt {
            what: "module_kset",
            at: kset_pointer,
            reason: format!("points at {kset}, not a kernel object"),
        });
    }
    let head = kset
        .checked_add(o.kset_list)
        .ok_or_else(|| LinuxError::Corrupt {
            what: "module_kset",
            at: kset,
            reason: "kset.list lies beyond the address space".into(),
        })?;
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut walk =
        ListWalker::new(*mem, list, head, "module_kset kobjects").with_limit(MAX_MODULE_KOBJECTS);
    for entry in walk.by_ref() {
        let Some(mkobj) =
            container_of(entry, o.kobject_entry).and_then(|kobj| container_of(kobj, o.mkobj_kobj))
        else {
            warnings.push(LinuxError::Corrupt {
                what: "module_kset kobject",
                at: entry,
                reason: "entry lies below the offset of kobject.entry".into(),
            });
            continue;
        };
        match read_one(mem, &o, mkobj) {
            Ok(k) => out.push(k),
            Err(e) => warnings.push(e),
        }
    }
    warnings.extend(walk.into_warning());
    Ok((out, warnings))
}

fn read_one(
    mem: &VirtualMemory<'_>,
    o: &KobjectOffsets,
    mkobj: Va,
) -> Result<ModuleKobject, LinuxError> {
    let field = |off: u64| {
        mkobj.checked_add(off).ok_or_else(|| LinuxError::Corrupt {
            what: "module_kobject",
            at: mkobj,
            reason: "field lies beyond the address space".into(),
        })
    };
    let module = mem.read_va(field(o.mkobj_mod.offset)?)?;
    let name_ptr = mem.read_va(field(o.mkobj_kobj.saturating_add(o.kobject_name.offset))?)?;
    let name = if is_kernel_pointer(mem.space().mode, Va::new(name_ptr.raw() & !7))
        && name_ptr.raw() != 0
    {
        read_name(mem, name_ptr)
    } else {
        String::new()
    };
    Ok(ModuleKobject {
        addr: mkobj,
        name,
        module: (module.raw() != 0).then_some(module),
    })
}

/// A NUL-terminated name of at most [`MAX_KOBJECT_NAME`] bytes, escaped; unreadable bytes end
/// it.
fn read_name(mem: &VirtualMemory<'_>, at: Va) -> String {
    let mut buf = [0u8; MAX_KOBJECT_NAME];
    let n = mem.read(at, &mut buf).unwrap_or(0);
    let bytes = &buf[..n];
    let bytes = &bytes[..bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len())];
    let mut out = String::with_capacity(bytes.len());
    for &c in bytes {
        if c.is_ascii_graphic() && c != b'\\' {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out
}
