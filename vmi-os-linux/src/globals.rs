//! Types of global variables. BTF describes types, not the variables of the kernel image
//! (only per-CPU ones), and kallsyms has names and addresses only; the analyses and exported
//! ISFs need to know what `init_task` or `prb` is. Declared once here, per kernel range where
//! they differ, and applied to whatever profile discovery builds.

use vmi_core::profile::TypeRef;
use vmi_core::Profile;

fn strukt(name: &str) -> TypeRef {
    TypeRef::Struct(name.to_owned())
}

/// `(symbol, type)` of the globals vmi and Volatility read. The same for every 6.x kernel:
/// `prb` (a pointer since the lockless ring buffer of 5.10) and the rest have not changed.
fn declarations() -> Vec<(&'static str, TypeRef)> {
    vec![
        ("init_task", strukt("task_struct")),
        ("init_mm", strukt("mm_struct")),
        ("modules", strukt("list_head")),
        (
            "prb",
            TypeRef::Pointer(Box::new(strukt("printk_ringbuffer"))),
        ),
        ("init_pid_ns", strukt("pid_namespace")),
        ("init_fs", strukt("fs_struct")),
        ("init_files", strukt("files_struct")),
        // What Volatility's linux.sockstat and linux.lsof reach: the namespaces, and the
        // operation tables a socket file is recognised by.
        ("init_net", strukt("net")),
        ("net_namespace_list", strukt("list_head")),
        ("socket_file_ops", strukt("file_operations")),
        ("sockfs_dentry_operations", strukt("dentry_operations")),
        ("vmemmap_base", TypeRef::Base("unsigned long".into())),
        ("cap_last_cap", TypeRef::Base("int".into())),
        ("tk_core", TypeRef::Void), // an anonymous struct in timekeeping.c: left untyped
    ]
}

/// Gives the declared types to the symbols `profile` has, where the profile has the type too
/// and the symbol has none yet.
pub fn apply(profile: &mut Profile) {
    for (name, ty) in declarations() {
        let known = match &ty {
            TypeRef::Struct(t) => profile.user_type(t).is_some(),
            TypeRef::Pointer(to) => {
                matches!(&**to, TypeRef::Struct(t) if profile.user_type(t).is_some())
            }
            TypeRef::Base(b) => profile.base_types().any(|(name, _)| name == b),
            _ => false,
        };
        if !known {
            continue;
        }
        if let Some(sym) = profile.symbol(name).filter(|s| s.ty.is_none()).cloned() {
            profile.insert_symbol(
                name,
                vmi_core::profile::Symbol {
                    ty: Some(ty),
                    ..sym
                },
            );
        }
    }
}
