mod common;

#[test]
fn explore() {
    for g in common::guests() {
        let s = g.session();
        let t = std::time::Instant::now();
        let k = g.kernel(&s);
        eprintln!("== {} discover {:?}", g.name, t.elapsed());
        let p = k.profile();
        for (ty, fields) in [
            (
                "task_struct",
                &[
                    "pid",
                    "tgid",
                    "comm",
                    "real_parent",
                    "real_cred",
                    "cred",
                    "mm",
                    "active_mm",
                    "flags",
                    "tasks",
                    "thread_node",
                    "thread_group",
                    "signal",
                    "start_time",
                    "start_boottime",
                    "real_start_time",
                    "group_leader",
                    "__state",
                    "exit_state",
                ][..],
            ),
            ("signal_struct", &["thread_head", "nr_threads"][..]),
            ("cred", &["uid", "gid", "euid"][..]),
            ("kuid_t", &["val"][..]),
            ("kgid_t", &["val"][..]),
            (
                "mm_struct",
                &[
                    "pgd",
                    "arg_start",
                    "arg_end",
                    "env_start",
                    "env_end",
                    "mm_mt",
                ][..],
            ),
            ("list_head", &["next", "prev"][..]),
        ] {
            eprintln!("{ty}: size {:?}", p.struct_size(ty).ok());
            for f in fields {
                match p.field(ty, f) {
                    Ok(fl) => eprintln!(
                        "  {f}: +{:#x} {:?} size {:?}",
                        fl.offset,
                        fl.ty,
                        p.type_size(&fl.ty)
                    ),
                    Err(e) => eprintln!("  {f}: {e}"),
                }
            }
        }
        eprintln!(
            "init_task {:?} init_mm {:?}",
            k.symbol("init_task"),
            k.symbol("init_mm")
        );
    }
}
