mod common;

#[test]
#[ignore]
fn explore() {
    for g in common::guests() {
        let s = g.session();
        let k = g.kernel(&s);
        let p = k.profile();
        println!("===== {}", g.name);
        for ty in [
            "maple_tree",
            "maple_node",
            "maple_range_64",
            "maple_arange_64",
            "maple_metadata",
            "vm_area_struct",
            "mm_struct",
            "file",
            "path",
            "dentry",
            "qstr",
            "vfsmount",
            "mount",
            "vm_special_mapping",
            "module",
            "module_layout",
            "module_memory",
            "printk_ringbuffer",
            "prb_desc_ring",
            "prb_data_ring",
            "prb_desc",
            "prb_data_blk_lpos",
            "printk_info",
            "hlist_bl_node",
            "inode",
            "task_struct",
            "list_head",
        ] {
            match p.user_type(ty) {
                None => println!("{ty}: MISSING"),
                Some(t) => {
                    let mut f: Vec<_> = t.fields.iter().collect();
                    f.sort_by_key(|(_, f)| f.offset);
                    let want: &[&str] = match ty {
                        "mm_struct" => &[
                            "mm_mt",
                            "start_brk",
                            "brk",
                            "start_stack",
                            "mmap",
                            "mmap_base",
                        ],
                        "task_struct" => &["tasks", "pid", "mm", "comm", "tgid"],
                        "inode" => &["i_ino", "i_sb"],
                        "module" => &[
                            "list",
                            "name",
                            "state",
                            "core_layout",
                            "init_layout",
                            "data_layout",
                            "mem",
                        ],
                        "file" => &["f_path", "f_inode"],
                        "dentry" => &["d_parent", "d_name", "d_iname", "d_hash", "d_flags"],
                        "mount" => &["mnt", "mnt_parent", "mnt_mountpoint"],
                        _ => &[],
                    };
                    println!("{ty}: size {}", t.size);
                    for (n, fl) in f {
                        if want.is_empty() || want.contains(&n.as_str()) {
                            println!("   {:5} {n}: {:?}", fl.offset, fl.ty);
                        }
                    }
                }
            }
        }
        for sym in [
            "prb",
            "modules",
            "init_task",
            "init_mm",
            "special_mapping_vmops",
            "legacy_special_mapping_vmops",
            "printk_rb_static",
            "printk_rb_dynamic",
        ] {
            println!("sym {sym}: {:?}", p.symbol(sym).map(|s| s.address));
        }
    }
}
