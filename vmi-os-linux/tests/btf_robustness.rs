//! Hostile blobs: random mutations of a synthetic blob holding every kind (and of a real
//! kernel's blob when a fixture guest is at hand) never panic, never hang, and whatever parses
//! converts into a profile.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use vmi_os_linux::btf::{Btf, BtfBuilder, Kind};

/// Every kind, anonymous members, bitfields, typedef chains, a cycle and a self-nesting struct.
fn rich_blob() -> Vec<u8> {
    let mut b = BtfBuilder::new();
    let int = b.int("int", 4, true);
    let uint = b.int("unsigned int", 4, false);
    let ulong = b.int("long unsigned int", 8, false);
    let chr = b.int("char", 1, true);
    let c = b.const_(int);
    let v = b.volatile(c);
    let r = b.restrict(v);
    let tag = b.type_tag("rcu", r);
    let td = b.typedef("s32", tag);
    let p = b.ptr(td);
    let comm = b.array(chr, int, 16);
    let grid = b.array(comm, int, 4);
    let anon_union = b.union_("", 8, &[("pgd", ulong, 0, 0), ("raw", p, 0, 0)]);
    let anon_struct = b.struct_(
        "",
        16,
        &[
            ("a", uint, 0, 3),
            ("b", uint, 3, 29),
            ("", anon_union, 64, 0),
        ],
    );
    let list = b.next_id();
    let lp = b.ptr(list);
    b.struct_("list_head", 16, &[("next", lp, 0, 0), ("prev", lp, 64, 0)]);
    let e = b.enum_("pid_type", 4, &[("PIDTYPE_PID", 0), ("PIDTYPE_MAX", 4)]);
    let e64 = b.enum64("big", 8, &[("X", -1)]);
    let kuid_anon = b.struct_("", 4, &[("val", uint, 0, 0)]);
    let kuid = b.typedef("kuid_t", kuid_anon);
    let proto = b.func_proto(int, &[("task", p), ("", 0)]);
    let f = b.func("do_fork", proto);
    let fp = b.ptr(proto);
    let fwd = b.fwd("opaque", false);
    let fwdp = b.ptr(fwd);
    let legacy = b.int_bits("unsigned int", 4, false, 2, 5);
    let float = b.float("double", 8);
    let cyc = b.next_id();
    b.typedef("loop_a", cyc + 1);
    b.typedef("loop_b", cyc);
    let ouro = b.next_id();
    b.struct_("ouroboros", 4, &[("", ouro, 0, 0)]);
    let task = b.struct_(
        "task_struct",
        160,
        &[
            ("pid", td, 0, 0),
            ("comm", comm, 32, 0),
            ("grid", grid, 160, 0),
            ("", anon_struct, 704, 0),
            ("tasks", list, 832, 0),
            ("state", e, 960, 0),
            ("big", e64, 1024, 0),
            ("uid", kuid, 1088, 0),
            ("fn", fp, 1152, 0),
            ("opaque", fwdp, 1216, 0),
            ("legacy", legacy, 1280, 0),
            ("d", float, 1216, 0),
            ("loop", cyc, 1240, 0),
        ],
    );
    let var = b.var("current_task", p, 1);
    b.datasec(".data..percpu", 64, &[(var, 0, 8)]);
    b.decl_tag("kfunc", f, -1);
    b.decl_tag("arg", task, 0);
    b.build()
}

/// Everything a caller can ask of a parsed blob.
fn exercise(blob: &[u8]) {
    let Ok(btf) = Btf::parse(blob) else { return };
    let count = btf.count();
    for id in 0..=count.saturating_add(1) {
        let _ = btf.type_by_id(id);
        let _ = btf.type_name(id);
        let _ = btf.size_of(id);
        let _ = btf.resolve(id);
        let _ = btf.type_ref(id);
        if let Ok(members) = btf.members(id) {
            for m in members {
                let _ = btf.string(m.name_offset);
            }
        }
        let _ = btf.fields(id);
        if let Ok(t) = btf.type_by_id(id) {
            let _ = t.int();
            let _ = t.array();
            let _ = t.enumerators().map(|e| e.count());
            let _ = t.params().map(|p| p.count());
            let _ = t.section_vars().map(|v| v.count());
            let _ = t.var_linkage();
            let _ = t.decl_tag_component();
            let _ = btf.user_type_name(&t);
        }
    }
    for name in ["task_struct", "list_head", "kuid_t", "ouroboros", "nope"] {
        if let Some(t) = btf.find_struct(name) {
            let _ = btf.fields(t.id());
        }
        let _ = btf.field_offset(name, "pid");
    }
    let _ = btf.find_type(Kind::Typedef, "s32");
    let (profile, report) = btf.to_profile_with_report();
    assert!(report.errors.len() <= 32);
    for (name, ut) in profile.user_types() {
        for field in ut.fields.values() {
            let _ = profile.type_size(&field.ty);
        }
        let _ = profile.struct_size(name);
    }
}

fn the_rich_blob_is_valid() {
    let blob = rich_blob();
    let btf = Btf::parse(&blob).unwrap();
    let p = btf.to_profile();
    assert_eq!(p.field_offset("task_struct", "pgd").unwrap(), 96);
    assert_eq!(p.field_offset("task_struct", "b").unwrap(), 88);
    assert_eq!(p.user_type("ouroboros").unwrap().fields.len(), 1);
    assert!(p.field("task_struct", "loop").is_err());
    exercise(&blob);
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte.
    Flip(usize, u8),
    /// Overwrite an aligned word (ids, offsets, counts, `info`).
    Word(usize, u32),
    /// Cut the blob.
    Truncate(usize),
    /// Insert bytes (shifting records out of alignment).
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        (
            any::<usize>(),
            prop_oneof![
                any::<u32>(),
                Just(0),
                Just(u32::MAX),
                0..64u32,
                (0..20u32, any::<u16>(), any::<bool>())
                    .prop_map(|(k, v, f)| (k << 24) | u32::from(v) | (u32::from(f) << 31)),
            ]
        )
            .prop_map(|(at, w)| Mutation::Word(at, w)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
    ]
}

fn apply(blob: &mut Vec<u8>, m: &Mutation) {
    if blob.is_empty() {
        return;
    }
    let n = blob.len();
    match m {
        Mutation::Flip(at, x) => blob[at % n] ^= x,
        Mutation::Word(at, w) => {
            let at = (at % n) & !3;
            for (i, b) in w.to_le_bytes().iter().enumerate() {
                if let Some(slot) = blob.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        Mutation::Truncate(at) => blob.truncate(at % n),
        Mutation::Insert(at, bytes) => {
            let at = at % n;
            blob.splice(at..at, bytes.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    fn mutated_synthetic_blobs_never_panic(mutations in proptest::collection::vec(mutation(), 1..6)) {
        let mut blob = rich_blob();
        for m in &mutations {
            apply(&mut blob, m);
        }
        let start = Instant::now();
        exercise(&blob);
        prop_assert!(start.elapsed() < Duration::from_secs(5), "slow: {:?}", start.elapsed());
    }

    fn random_bytes_after_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        type_len in 0u32..600,
        str_off in 0u32..600,
        str_len in 0u32..600,
    ) {
        let mut blob = vec![0x9f, 0xeb, 1, 0];
        for w in [24, 0, type_len, str_off, str_len] {
            blob.extend_from_slice(&u32::to_le_bytes(w));
        }
        blob.extend_from_slice(&body);
        exercise(&blob);
    }
}

/// Word overwrites in a real kernel's type records (names, sizes, ids, offsets): the parser either rejects the blob or
/// converts it, within a time bound. Runs only with a fixture guest (the blob is read from
/// its memory by the `btf_guest` test's method: `truth/kallsyms` + the session).
fn mutated_real_blob_never_panics() {
    use vmi_arch_x86 as _;
    use vmi_backend_file as _;

    // One guest is enough; a 6.1 one when there is one (its blob is the one this was tuned on).
    // (Not a PTI guest: vCPU 0 of one is on a user PGD, which maps no BTF.)
    let all = vmi_fixtures::select("without PTI", |g| !g.pti);
    let Some(guest) = all
        .iter()
        .find(|g| g.kernel_release.starts_with("6.1."))
        .or(all.first())
        .map(|g| g.dir.clone())
    else {
        return;
    };
    let syms = std::fs::read_to_string(guest.join("truth/kallsyms")).unwrap();
    let addr = |name: &str| {
        syms.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .and_then(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
            .unwrap()
    };
    let (start, stop) = (addr("__start_BTF"), addr("__stop_BTF"));
    let session = vmi_core::Session::open(
        guest.join("memory.elf").to_str().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let vm = session.virtual_memory(session.vcpu_address_space(0).unwrap());
    let mut blob = vec![0u8; (stop - start) as usize];
    vm.read_exact(vmi_core::Va::new(start), &mut blob).unwrap();

    // A fixed-seed xorshift: reproducible, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Every word of the type section but the `info` words (which would mostly break the
    // record chain and be rejected right away): names, sizes, ids, offsets, counts.
    let type_len = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    let mut words = Vec::new();
    let mut at = 0;
    while at + 12 <= type_len {
        let info = u32::from_le_bytes(blob[24 + at + 4..24 + at + 8].try_into().unwrap());
        let kind = Kind::from_raw(((info >> 24) & 0x1f) as u8).unwrap();
        let len = 12 + kind.data_len((info & 0xffff) as u16);
        words.extend(
            (at..at + len)
                .step_by(4)
                .filter(|&w| w != at + 4)
                .map(|w| 24 + w),
        );
        at += len;
    }
    let mut parsed = 0;
    for round in 0..8 {
        let mut m = blob.clone();
        for _ in 0..1 + round * 3 {
            let at = words[(next() % words.len() as u64) as usize];
            // Mostly small values: valid type ids, plausible sizes and offsets, so that many
            // mutants pass validation and reach the conversion.
            let word = match next() % 32 {
                0 => next() as u32,
                1 => u32::MAX,
                2..=9 => (next() % 64) as u32,
                _ => (next() % 100_000) as u32,
            };
            m[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
        let t = Instant::now();
        match Btf::parse(&m) {
            Ok(btf) => {
                parsed += 1;
                let (_, report) = btf.to_profile_with_report();
                println!(
                    "round {round}: parsed, {} skipped, {:?}",
                    report.skipped,
                    t.elapsed()
                );
            }
            Err(e) => println!("round {round}: {e}"),
        }
        assert!(t.elapsed() < Duration::from_secs(30));
    }
    println!("{parsed} of 8 mutants parsed");
}

vmi_fixtures::real_guest_tests!(
    the_rich_blob_is_valid,
    mutated_synthetic_blobs_never_panic,
    random_bytes_after_a_valid_header_never_panic,
    mutated_real_blob_never_panics,
);
