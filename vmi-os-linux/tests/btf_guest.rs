//! BTF read from real guests' memory (`scripts/fixture-guest`), checked against the DWARF of the
//! same kernel (a Volatility 3 ISF made by dwarf2json).
//!
//! Guests: those of `vmi-fixtures`. The ISF files: `$VMI_SHARED_DIR/data/linux-isf/` (default:
//! `shared/` next to the workspace); every kernel they name is compared with its guests
//! (`vmi_fixtures::isf_kernels`). A test without its guests or files is reported ignored, with
//! the reason (failed under `$VMI_REQUIRE_FIXTURES`, except for absent shared data).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use vmi_arch_x86 as _;
use vmi_backend_file as _;
use vmi_core::profile::TypeRef;
use vmi_core::{Profile, Session, Va};
use vmi_os_linux::btf::{Btf, Kind};

fn kallsyms(guest: &Path, name: &str) -> u64 {
    let g = vmi_fixtures::load(guest).expect("a complete fixture");
    *g.kallsyms()
        .get(name)
        .unwrap_or_else(|| panic!("{name} not in {}/truth/kallsyms", guest.display()))
}

/// The bytes from `__start_BTF` to `__stop_BTF`, read through the guest's own page tables.
fn read_btf(guest: &Path) -> Vec<u8> {
    let start = kallsyms(guest, "__start_BTF");
    let stop = kallsyms(guest, "__stop_BTF");
    assert!(stop > start && stop - start < 64 << 20, "odd BTF bounds");
    let elf = guest.join("memory.elf");
    let session = Session::open(elf.to_str().unwrap(), &Default::default())
        .unwrap_or_else(|e| panic!("opening {}: {e}", elf.display()));
    // A PTI guest dumped in user mode has a user PGD in CR3: read through its kernel half.
    let space = session.vcpu_address_space(0).unwrap();
    let space = vmi_os_linux::kernel_space::pti_kernel_half(space).unwrap_or(space);
    let mut blob = vec![0u8; (stop - start) as usize];
    session
        .virtual_memory(space)
        .read_exact(Va::new(start), &mut blob)
        .unwrap();
    blob
}

/// The structs the Linux analyses use (`?`: not in every kernel).
const ANALYSIS_STRUCTS: &[&str] = &[
    "task_struct",
    "mm_struct",
    "vm_area_struct",
    "maple_tree",
    "maple_node",
    "maple_range_64",
    "maple_arange_64",
    "maple_enode?",
    "file",
    "dentry",
    "qstr",
    "path",
    "vfsmount",
    "mount",
    "module",
    "module_memory?",
    "module_layout?",
    "cred",
    "kuid_t",
    "kgid_t",
    "list_head",
    "hlist_node",
    "pid",
    "upid",
    "pid_namespace",
    "idr",
    "xarray",
    "xa_node",
    "signal_struct",
    "printk_ringbuffer",
    "prb_desc_ring",
    "prb_data_ring",
    "prb_desc",
    "printk_info",
    "mm_rss_stat?",
    "linux_binprm?",
    "nsproxy",
    "fs_struct",
    "files_struct",
    "fdtable",
    "inode",
    "super_block",
    "kernel_symbol",
    "load_info?",
    "atomic_t",
    "refcount_struct",
    "kref",
];

/// A field as both sides can state it: where its first bit is, and its width if a bitfield.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    bit: u64,
    bitfield_len: Option<u32>,
}

fn place(offset: u64, ty: &TypeRef) -> Place {
    match ty {
        TypeRef::Bitfield {
            position, length, ..
        } => Place {
            bit: offset * 8 + u64::from(*position),
            bitfield_len: Some(*length),
        },
        _ => Place {
            bit: offset * 8,
            bitfield_len: None,
        },
    }
}

/// A type's shape: anonymous types' names (which differ by construction) erased, nested arrays
/// as one (pahole writes `long marks[3][1]` as `long marks[3]`).
fn shape(ty: &TypeRef) -> String {
    let anon = |n: &str| {
        if n.starts_with("unnamed_") {
            "<anonymous>".to_owned()
        } else {
            n.to_owned()
        }
    };
    match ty {
        TypeRef::Base(n) => format!("base {n}"),
        TypeRef::Struct(n) => format!("struct {}", anon(n)),
        TypeRef::Union(n) => format!("union {}", anon(n)),
        TypeRef::Enum(n) => format!("enum {}", anon(n)),
        TypeRef::Pointer(t) => format!("*{}", shape(t)),
        TypeRef::Array { count, element } => {
            let (mut total, mut inner) = (*count, &**element);
            while let TypeRef::Array { count, element } = inner {
                total *= count;
                inner = element;
            }
            format!("[{total}]{}", shape(inner))
        }
        TypeRef::Bitfield {
            length, storage, ..
        } => format!("{}:{length}", shape(storage)),
        TypeRef::Function => "fn".to_owned(),
        TypeRef::Void => "void".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Whether the ISF's type and ours denote the same thing: same shape, where a struct the ISF
/// names by a typedef (`spinlock_t`) is the same struct in our profile (`spinlock`).
fn same_type(isf_ty: &TypeRef, ours: &TypeRef, btf: &Profile, isf: &Profile) -> bool {
    if shape(isf_ty) == shape(ours) {
        return true;
    }
    match (isf_ty, ours) {
        (TypeRef::Struct(a), TypeRef::Struct(b)) | (TypeRef::Union(a), TypeRef::Union(b))
            if btf.user_type(a).is_some() =>
        {
            btf.user_type(a) == btf.user_type(b)
        }
        (TypeRef::Pointer(a), TypeRef::Pointer(b)) => same_type(a, b, btf, isf),
        (
            TypeRef::Array {
                count: n,
                element: a,
            },
            TypeRef::Array {
                count: m,
                element: b,
            },
        ) => n == m && same_type(a, b, btf, isf),
        // An anonymous type in the ISF that BTF names: dedup merged identical anonymous types
        // and a typedef names the survivor (`typedef struct {} lockdep_map_p` for every empty
        // `struct {}`), or dwarf2json leaves a typedef'd enum anonymous.
        (TypeRef::Struct(a), TypeRef::Struct(b)) | (TypeRef::Union(a), TypeRef::Union(b))
            if a.starts_with("unnamed_") =>
        {
            let offsets = |p: &Profile, n: &str| {
                p.user_type(n).map(|t| {
                    (
                        t.size,
                        t.fields
                            .iter()
                            .map(|(k, f)| (k.clone(), f.offset))
                            .collect::<BTreeMap<_, _>>(),
                    )
                })
            };
            offsets(isf, a).is_some() && offsets(isf, a) == offsets(btf, b)
        }
        // Both opaque (only declared): nothing to compare but the name's spelling.
        (TypeRef::Struct(a), TypeRef::Struct(b)) | (TypeRef::Union(a), TypeRef::Union(b))
            if isf.user_type(a).is_none() && btf.user_type(b).is_none() =>
        {
            true
        }
        (TypeRef::Enum(a), TypeRef::Enum(b)) if a.starts_with("unnamed_") => {
            let a = TypeRef::Enum(a.clone());
            let b = TypeRef::Enum(b.clone());
            isf.type_size(&a).is_some() && isf.type_size(&a) == btf.type_size(&b)
        }
        _ => false,
    }
}

/// The fields of an ISF type, with the fields of anonymous members added at the summed offset
/// (dwarf2json keeps them only in the anonymous type), as `name -> (offset, type)`.
fn isf_fields_flattened(isf: &Profile, name: &str) -> BTreeMap<String, (u64, TypeRef)> {
    fn walk(
        isf: &Profile,
        name: &str,
        base: u64,
        depth: u32,
        top: bool,
        out: &mut BTreeMap<String, (u64, TypeRef)>,
    ) {
        let Some(t) = isf.user_type(name) else { return };
        for (f, field) in &t.fields {
            let is_anon = f.starts_with("unnamed_field_");
            if !is_anon || top {
                out.entry(f.clone())
                    .or_insert((base + field.offset, field.ty.clone()));
            }
            if is_anon && depth < 16 {
                if let TypeRef::Struct(inner) | TypeRef::Union(inner) = &field.ty {
                    walk(isf, inner, base + field.offset, depth + 1, false, out);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(isf, name, 0, 0, true, &mut out);
    out
}

#[derive(Default)]
struct Comparison {
    /// Structs with any difference.
    differing: BTreeSet<String>,
    structs: usize,
    fields: usize,
    bitfields: usize,
    mismatches: Vec<String>,
    type_mismatches: Vec<String>,
    only_isf: Vec<String>,
    only_btf: Vec<String>,
}

impl Comparison {
    fn compare(&mut self, isf: &Profile, btf: &Profile, name: &str) {
        let (Some(i), Some(b)) = (isf.user_type(name), btf.user_type(name)) else {
            return;
        };
        self.structs += 1;
        let before = (
            self.mismatches.len(),
            self.type_mismatches.len(),
            self.only_isf.len(),
            self.only_btf.len(),
        );
        if i.size != b.size {
            self.mismatches
                .push(format!("{name}: size ISF {} BTF {}", i.size, b.size));
        }
        let isf_fields = isf_fields_flattened(isf, name);
        for (f, (offset, ty)) in &isf_fields {
            let Some(ours) = b.fields.get(f) else {
                self.only_isf.push(format!("{name}.{f}"));
                continue;
            };
            self.fields += 1;
            let (want, got) = (place(*offset, ty), place(ours.offset, &ours.ty));
            if want.bitfield_len.is_some() {
                self.bitfields += 1;
            }
            if want != got {
                self.mismatches.push(format!(
                    "{name}.{f}: ISF offset {offset} {ty:?}, BTF offset {} {:?}",
                    ours.offset, ours.ty
                ));
            } else if !same_type(ty, &ours.ty, btf, isf) {
                self.type_mismatches.push(format!(
                    "{name}.{f}: ISF {}, BTF {}",
                    shape(ty),
                    shape(&ours.ty)
                ));
            }
        }
        for f in b.fields.keys() {
            if !isf_fields.contains_key(f) {
                self.only_btf.push(format!("{name}.{f}"));
            }
        }
        let after = (
            self.mismatches.len(),
            self.type_mismatches.len(),
            self.only_isf.len(),
            self.only_btf.len(),
        );
        if before != after {
            self.differing.insert(name.to_owned());
        }
    }
}

fn show(title: &str, items: &[String]) {
    println!("{title}: {}", items.len());
    for i in items.iter().take(40) {
        println!("  {i}");
    }
    if items.len() > 40 {
        println!("  ... {} more", items.len() - 40);
    }
}

/// Every kernel of a shared ISF file: the BTF of its guests against that dwarf2json ISF.
/// `scripts/test` builds a guest of each exact kernel there besides the newest kernels.
fn btf_of_every_isf_kernel_matches_dwarf2json() {
    for k in vmi_fixtures::isf_kernels() {
        println!("kernel {}: {}", k.release, k.isf.display());
        let dirs: Vec<PathBuf> = k.guests.into_iter().map(|g| g.dir).collect();
        compare_with_dwarf2json(&k.isf, &dirs);
    }
}

/// `guests` (all of one kernel): their BTF, converted to a profile, against the dwarf2json
/// ISF `isf_path` of the same kernel (in the shared data).
fn compare_with_dwarf2json(isf_path: &Path, guests: &[PathBuf]) {
    let t = Instant::now();
    let isf = Profile::from_path(isf_path).unwrap();
    println!("ISF loaded in {:?}", t.elapsed());

    let mut first_blob: Option<Vec<u8>> = None;
    for guest in guests {
        let blob = read_btf(guest);
        println!("{}: BTF {} bytes", guest.display(), blob.len());
        if let Some(first) = &first_blob {
            assert!(
                first == &blob,
                "same kernel, different BTF in {}",
                guest.display()
            );
            continue;
        }
        let t = Instant::now();
        let btf = Btf::parse(&blob).unwrap();
        let parsed = t.elapsed();
        let (profile, report) = btf.to_profile_with_report();
        let total = t.elapsed();
        // The first run pays for growing the heap; a warm one is what a cached session sees.
        let warm = (0..2)
            .map(|_| {
                let t = Instant::now();
                let p = Btf::parse(&blob).unwrap().to_profile();
                let e = t.elapsed();
                drop(p);
                e
            })
            .min()
            .unwrap();
        println!(
            "parse {parsed:?}, parse + to_profile {total:?} (warm: {warm:?}); {} types, {} \
             member records",
            btf.count(),
            btf.member_record_count()
        );
        println!(
            "profile: {} user types, {} typedef aliases, {} fields, {} base types, {} enums, \
             {} duplicates, {} skipped",
            report.user_types,
            report.aliases,
            report.fields,
            report.base_types,
            report.enums,
            report.duplicates,
            report.skipped
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);

        // The structs the analyses use: all present, every ISF field at the same place.
        let mut c = Comparison::default();
        let mut missing = Vec::new();
        for entry in ANALYSIS_STRUCTS {
            let (name, optional) = match entry.strip_suffix('?') {
                Some(n) => (n, true),
                None => (*entry, false),
            };
            match (
                isf.user_type(name).is_some(),
                profile.user_type(name).is_some(),
            ) {
                (true, true) => c.compare(&isf, &profile, name),
                (false, false) if optional => {
                    println!("{name}: in neither (not in this kernel)");
                }
                (i, b) => missing.push(format!("{name}: ISF {i}, BTF {b}")),
            }
        }
        println!(
            "analysis structs: {} compared, {} fields ({} bitfields)",
            c.structs, c.fields, c.bitfields
        );
        show("mismatches", &c.mismatches);
        show("type differences", &c.type_mismatches);
        show("fields only in the ISF", &c.only_isf);
        show("fields only in BTF", &c.only_btf);
        assert!(missing.is_empty(), "{missing:?}");
        assert!(c.mismatches.is_empty());
        assert!(c.only_isf.is_empty());
        assert!(c.type_mismatches.is_empty());

        // Whole kernel: every named ISF struct or union that BTF also has.
        let mut all = Comparison::default();
        let mut only_isf_types = BTreeSet::new();
        for (name, _) in isf.user_types() {
            if name.starts_with("unnamed_") {
                continue;
            }
            if profile.user_type(name).is_some() {
                all.compare(&isf, &profile, name);
            } else {
                only_isf_types.insert(name.to_owned());
            }
        }
        // Names several structs share (different definitions in different files): BTF keeps
        // all of them, a profile one per name, and dwarf2json may have kept another one.
        let mut defined: BTreeMap<&str, usize> = BTreeMap::new();
        for t in btf.types() {
            if matches!(t.kind(), Kind::Struct | Kind::Union) && t.vlen() > 0 {
                *defined.entry(btf.name(&t).unwrap()).or_default() += 1;
            }
        }
        let (collisions, real): (Vec<String>, Vec<String>) = all
            .differing
            .iter()
            .cloned()
            .partition(|n| defined.get(n.as_str()).is_some_and(|&c| c > 1));
        println!(
            "whole kernel: {} structs compared, {} fields ({} bitfields); {} ISF types not in BTF",
            all.structs,
            all.fields,
            all.bitfields,
            only_isf_types.len()
        );
        println!(
            "whole kernel: {} structs differ, {} of them names with several definitions in \
             BTF (another definition kept): {collisions:?}",
            all.differing.len(),
            collisions.len()
        );
        show("whole kernel mismatches", &all.mismatches);
        show("whole kernel type differences", &all.type_mismatches);
        show("whole kernel fields only in the ISF", &all.only_isf);
        show("whole kernel fields only in BTF", &all.only_btf);
        assert!(
            real.is_empty(),
            "structs differing without a name collision: {real:?}"
        );
        assert!(only_isf_types.is_empty(), "{only_isf_types:?}");
        first_blob = Some(blob);
    }
}

fn btf_of_6_12_guests_has_the_analysis_fields() {
    let guests = vmi_fixtures::select("of a 6.12 kernel", |g| {
        g.kernel_release.starts_with("6.12.")
    });
    for guest in guests.iter().map(|g| &g.dir) {
        let blob = read_btf(guest);
        let t = Instant::now();
        let btf = Btf::parse(&blob).unwrap();
        let (profile, report) = btf.to_profile_with_report();
        println!(
            "{}: {} bytes, {} types, parse + to_profile {:?}, {} user types, {} fields",
            guest.display(),
            blob.len(),
            btf.count(),
            t.elapsed(),
            report.user_types,
            report.fields
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);

        let task_size = profile.struct_size("task_struct").unwrap();
        assert!(
            (4096..32768).contains(&task_size),
            "task_struct size {task_size}"
        );
        for f in ["pid", "comm", "tasks", "mm", "real_parent"] {
            let off = profile.field_offset("task_struct", f).unwrap();
            assert!(off < task_size, "task_struct.{f} at {off}");
            // The parser's own query agrees with the profile.
            assert_eq!(btf.field_offset("task_struct", f), Some(off));
            println!("  task_struct.{f} = {off}");
        }
        let field = |t: &str, f: &str| profile.field(t, f).unwrap().ty.clone();
        assert_eq!(
            field("task_struct", "comm"),
            TypeRef::Array {
                count: 16,
                element: Box::new(TypeRef::Base("char".into()))
            }
        );
        assert_eq!(field("task_struct", "pid"), TypeRef::Base("int".into()));
        assert_eq!(
            field("task_struct", "mm"),
            TypeRef::Pointer(Box::new(TypeRef::Struct("mm_struct".into())))
        );
        assert_eq!(
            field("task_struct", "real_parent"),
            TypeRef::Pointer(Box::new(TypeRef::Struct("task_struct".into())))
        );
        assert_eq!(
            field("task_struct", "tasks"),
            TypeRef::Struct("list_head".into())
        );

        let mm_size = profile.struct_size("mm_struct").unwrap();
        for f in ["mm_mt", "pgd"] {
            let off = profile.field_offset("mm_struct", f).unwrap();
            assert!(off < mm_size, "mm_struct.{f} at {off}");
            println!("  mm_struct.{f} = {off}");
        }
        assert_eq!(
            field("mm_struct", "mm_mt"),
            TypeRef::Struct("maple_tree".into())
        );
        assert!(matches!(field("mm_struct", "pgd"), TypeRef::Pointer(_)));
        // 6.4+ replaced module_layout by module_memory.
        assert!(profile.user_type("module_memory").is_some());
        assert_eq!(profile.struct_size("list_head").unwrap(), 16);
    }
}

vmi_fixtures::real_guest_tests!(
    btf_of_every_isf_kernel_matches_dwarf2json,
    btf_of_6_12_guests_has_the_analysis_fields,
);
