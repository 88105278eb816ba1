//! `ebpf`: the loaded eBPF programs (`bpftool prog` from memory): id, type, name, tag and
//! attach information, from `prog_idr` (see [`crate::comps::bpf`] for the bounded walk).
//!
//! Each program is an [`Severity::Info`] finding. Rootkits use eBPF too (to hide files and
//! processes, to tamper with system call results): the judgement here is a **heuristic**, not
//! a verdict. A program is [`Severity::Suspicious`] when it is of a tracing type (`kprobe`,
//! `tracepoint`, `raw_tracepoint`, `raw_tracepoint_writable`, `tracing`, `perf_event`, `lsm`)
//! and calls a helper that writes to user memory or changes what the kernel returns or does:
//! `bpf_probe_write_user`, `bpf_override_return`, `bpf_send_signal`,
//! `bpf_send_signal_thread` (or has `kprobe_override` set). Legitimate tools call some of
//! these (debuggers, fault injection); systemd's cgroup programs call none of them.
//!
//! Helper calls are found in the program's translated instructions (`bpf_prog.insnsi`, kept
//! after JIT): a `BPF_CALL` whose `imm` the verifier rewrote to `helper - __bpf_call_base`, or
//! still the helper id. Type and attach type names come from the kernel's BTF
//! (`enum bpf_prog_type`, `enum bpf_attach_type`, `enum bpf_func_id`), read only when there
//! are programs; without BTF the numbers are shown.
//!
//! Where a program is attached: `aux->attach_func_name` (tracing programs), the cgroups of the
//! default hierarchy whose `cgroup.bpf.progs[]` lists hold it (cgroup programs, whether
//! attached directly with `BPF_PROG_ATTACH`, as systemd 252 does on the fixture guests, or by
//! a link), and the other `bpf_link`s of `link_idr` (their type only). Programs attached
//! elsewhere without a link (XDP or tc on a device, socket filters) show no attachment.

use std::collections::HashMap;

use vmi_core::os::{Detail, Finding, Severity};
use vmi_core::Va;

use super::{finding, Check, Context};
use crate::btf::{Btf, Kind};
use crate::comps::bpf::{
    cgroup_attachments, idr_entries, BpfLink, BpfLinkOffsets, BpfProg, BpfProgOffsets,
    CGROUP_DFL_ROOT_SYMBOL, LINK_IDR_SYMBOL, PROG_IDR_SYMBOL,
};
use crate::comps::cgroup::{kernfs_path, CgroupLayout};
use crate::comps::layout::Scalar;
use crate::error::LinuxError;
use crate::partial::Partial;

/// Program types that run in tracing context, where tampering helpers matter.
const TRACING_TYPES: [&str; 7] = [
    "kprobe",
    "tracepoint",
    "raw_tracepoint",
    "raw_tracepoint_writable",
    "tracing",
    "perf_event",
    "lsm",
];

/// Helpers that write user memory or change what the kernel does (`BPF_FUNC_<name>`), with
/// their ids should BTF be unavailable.
const TAMPERING_HELPERS: [(&str, i64); 4] = [
    ("probe_write_user", 36),
    ("override_return", 58),
    ("send_signal", 109),
    ("send_signal_thread", 117),
];

/// Names of enum values from the kernel's BTF.
#[derive(Default)]
struct EnumNames {
    prog_types: HashMap<u64, String>,
    attach_types: HashMap<u64, String>,
    link_types: HashMap<u64, String>,
    cgroup_attach_types: HashMap<u64, String>,
    helpers: HashMap<String, i64>,
}

impl EnumNames {
    fn read(ctx: &Context<'_>) -> Result<EnumNames, LinuxError> {
        let start = ctx.kernel.symbol("__start_BTF")?;
        let stop = ctx.kernel.symbol("__stop_BTF")?;
        let len = stop
            .raw()
            .checked_sub(start.raw())
            .filter(|&l| l > 0 && l <= crate::discovery::MAX_BTF_BYTES)
            .ok_or_else(|| LinuxError::Corrupt {
                what: "BTF section",
                at: start,
                reason: "__stop_BTF does not follow __start_BTF within 64 MiB".into(),
            })?;
        let mut blob = vec![0u8; len as usize];
        ctx.mem.read_exact(start, &mut blob)?;
        let btf = Btf::parse(&blob)?;
        let values = |name: &str, prefix: &str| -> HashMap<u64, String> {
            let Some(t) = btf
                .find_type(Kind::Enum, name)
                .or_else(|| btf.find_type(Kind::Enum64, name))
            else {
                return HashMap::new();
            };
            t.enumerators()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let n = btf.string(e.name_offset).ok()?;
                    let short = n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase();
                    Some((e.value as u64, short))
                })
                .collect()
        };
        Ok(EnumNames {
            prog_types: values("bpf_prog_type", "BPF_PROG_TYPE_"),
            attach_types: values("bpf_attach_type", "BPF_"),
            link_types: values("bpf_link_type", "BPF_LINK_TYPE_"),
            cgroup_attach_types: values("cgroup_bpf_attach_type", ""),
            helpers: values("bpf_func_id", "BPF_FUNC_")
                .into_iter()
                .map(|(v, n)| (n, v as i64))
                .collect(),
        })
    }
}

/// The loaded programs, in id order (an empty list when none is loaded), with the problems
/// the bounded walk of `prog_idr` met.
pub fn programs(
    session: &vmi_core::Session,
    kernel: &crate::Kernel,
) -> Result<Partial<BpfProg>, LinuxError> {
    let profile = kernel.profile();
    let idr = kernel.symbol(PROG_IDR_SYMBOL)?;
    let mem = kernel.memory(session);
    let walk = idr_entries(&mem, profile, idr)?;
    let mut out = Partial {
        items: Vec::new(),
        warnings: walk.warnings,
    };
    if walk.items.is_empty() {
        return Ok(out);
    }
    let offsets = BpfProgOffsets::resolve(profile)?;
    for &(_, prog_at) in &walk.items {
        match BpfProg::read(&mem, &offsets, prog_at) {
            Ok(p) => out.items.push(p),
            Err(e) => out.warnings.push(e),
        }
    }
    Ok(out)
}

/// The links of `link_idr` (where programs are attached), with the problems met;
/// `cgroup_kind` is `BPF_LINK_TYPE_CGROUP`.
pub fn links(
    session: &vmi_core::Session,
    kernel: &crate::Kernel,
    cgroup_kind: u64,
) -> Result<Partial<BpfLink>, LinuxError> {
    let profile = kernel.profile();
    let idr = kernel.symbol(LINK_IDR_SYMBOL)?;
    let mem = kernel.memory(session);
    let walk = idr_entries(&mem, profile, idr)?;
    let mut out = Partial {
        items: Vec::new(),
        warnings: walk.warnings,
    };
    if walk.items.is_empty() {
        return Ok(out);
    }
    let offsets = BpfLinkOffsets::resolve(profile)?;
    for &(_, at) in &walk.items {
        match BpfLink::read(&mem, &offsets, at, cgroup_kind) {
            Ok(l) => out.items.push(l),
            Err(e) => out.warnings.push(e),
        }
    }
    Ok(out)
}

/// `BPF_LINK_TYPE_CGROUP` where BTF does not say.
const LINK_TYPE_CGROUP: u64 = 2;

/// How each program is attached, by `struct bpf_prog` address: "cgroup PATH as TYPE" for
/// programs on a cgroup of the default hierarchy (attached directly, as systemd does, or by a
/// link: `cgroup.bpf.progs` holds both), "a TYPE link (N)" for the other links.
fn attachments(
    ctx: &Context<'_>,
    names: &EnumNames,
    warnings: &mut Vec<LinuxError>,
) -> HashMap<Va, Vec<String>> {
    let profile = ctx.kernel.profile();
    let mut out: HashMap<Va, Vec<String>> = HashMap::new();
    // Cgroups.
    let layout = CgroupLayout::resolve(profile);
    let kn = Scalar::resolve(profile, "cgroup", "kn");
    let mut paths: HashMap<Va, String> = HashMap::new();
    let mut path_of = |cgroup: Va| -> String {
        paths
            .entry(cgroup)
            .or_insert_with(|| {
                let path = match (&layout, &kn) {
                    (Ok(layout), Ok(kn)) => cgroup
                        .checked_add(kn.offset)
                        .and_then(|a| ctx.mem.read_va(a).ok())
                        .and_then(|node| kernfs_path(&ctx.mem, layout, node).ok()),
                    _ => None,
                };
                path.unwrap_or_else(|| format!("at {cgroup}"))
            })
            .clone()
    };
    match ctx
        .kernel
        .symbol(CGROUP_DFL_ROOT_SYMBOL)
        .and_then(|root| cgroup_attachments(&ctx.mem, profile, root))
    {
        Ok(found) => {
            warnings.extend(found.warnings);
            for a in found.items {
                let how = names
                    .cgroup_attach_types
                    .get(&a.attach)
                    .cloned()
                    .unwrap_or_else(|| format!("attach type {}", a.attach));
                out.entry(a.prog)
                    .or_default()
                    .push(format!("cgroup {} as {how}", path_of(a.cgroup)));
            }
        }
        Err(e) => warnings.push(e),
    }
    // Links other than cgroup links (those are in the cgroups' lists).
    let cgroup_kind = names
        .link_types
        .iter()
        .find(|(_, n)| n.as_str() == "cgroup")
        .map_or(LINK_TYPE_CGROUP, |(&v, _)| v);
    match links(ctx.session, ctx.kernel, cgroup_kind) {
        Ok(found) => {
            warnings.extend(found.warnings);
            for link in found.items.into_iter().filter(|l| l.kind != cgroup_kind) {
                let kind = names
                    .link_types
                    .get(&link.kind)
                    .cloned()
                    .unwrap_or_else(|| format!("type {}", link.kind));
                out.entry(link.prog)
                    .or_default()
                    .push(format!("a {kind} link ({})", link.id));
            }
        }
        Err(e) => warnings.push(e),
    }
    out
}

/// Runs the check.
pub fn check(ctx: &Context<'_>) -> Result<Partial<Finding>, LinuxError> {
    let found = programs(ctx.session, ctx.kernel)?;
    let mut out = Partial {
        items: Vec::new(),
        warnings: found.warnings,
    };
    if found.items.is_empty() {
        out.items.push(finding(
            Check::Ebpf,
            Severity::Info,
            PROG_IDR_SYMBOL,
            ctx.kernel.symbol(PROG_IDR_SYMBOL).ok(),
            "no eBPF programs loaded",
        ));
        return Ok(out);
    }
    let names = match EnumNames::read(ctx) {
        Ok(n) => n,
        Err(e) => {
            out.warnings.push(e);
            EnumNames::default()
        }
    };
    let attached = attachments(ctx, &names, &mut out.warnings);
    let call_base = ctx.kernel.symbol("__bpf_call_base").ok();
    // The helpers' addresses, as a rewritten call's imm gives them.
    let tampering: Vec<(&str, i64, Option<u64>)> = TAMPERING_HELPERS
        .iter()
        .map(|&(n, id)| {
            let id = names.helpers.get(n).copied().unwrap_or(id);
            let addr = ctx.kernel.symbol(&format!("bpf_{n}")).ok().map(Va::raw);
            (n, id, addr)
        })
        .collect();
    for prog in found.items {
        let kind = names
            .prog_types
            .get(&prog.kind)
            .cloned()
            .unwrap_or_else(|| format!("type {}", prog.kind));
        let attach = names
            .attach_types
            .get(&prog.expected_attach_type)
            .cloned()
            .unwrap_or_else(|| format!("attach type {}", prog.expected_attach_type));
        let mut calls: Vec<&str> = Vec::new();
        for &imm in &prog.helper_calls {
            for &(n, hid, addr) in &tampering {
                let rewritten = call_base
                    .zip(addr)
                    .is_some_and(|(base, a)| base.raw().wrapping_add_signed(i64::from(imm)) == a);
                if (rewritten || i64::from(imm) == hid) && !calls.contains(&n) {
                    calls.push(n);
                }
            }
        }
        let tracing = TRACING_TYPES.contains(&kind.as_str());
        let suspicious = tracing && (!calls.is_empty() || prog.kprobe_override);
        let mut detail = format!(
            "{kind} program \"{}\" (id {}, tag {}, {} insns)",
            prog.name, prog.id, prog.tag, prog.len
        );
        // 0 is both the first attach type and what a loader that names none leaves.
        if prog.expected_attach_type != 0 {
            detail.push_str(&format!(", expected attach type {attach}"));
        }
        if let Some(f) = &prog.attach_func_name {
            detail.push_str(&format!(", attached to {f}"));
        }
        let links = attached.get(&prog.addr);
        if let Some(links) = links {
            detail.push_str(&format!(", attached to {}", links.join(", ")));
        }
        if suspicious {
            detail.push_str(&format!(
                "; a tracing program that calls {} (heuristic: helpers that write user memory \
                 or change what the kernel does)",
                if calls.is_empty() {
                    "bpf_override_return (kprobe_override)".to_owned()
                } else {
                    calls
                        .iter()
                        .map(|c| format!("bpf_{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        if prog.insns_truncated {
            detail.push_str("; not every instruction could be read");
        }
        let mut f = finding(
            Check::Ebpf,
            if suspicious {
                Severity::Suspicious
            } else {
                Severity::Info
            },
            format!("bpf prog {}", prog.id),
            Some(prog.addr),
            detail,
        );
        f.os.insert("id", Detail::Int(prog.id));
        f.os.insert("type", Detail::Text(kind));
        f.os.insert("name", Detail::Text(prog.name.clone()));
        f.os.insert("tag", Detail::Text(prog.tag.clone()));
        f.os.insert("expected_attach_type", Detail::Text(attach));
        f.os.insert("bpf_func", Detail::Address(prog.bpf_func));
        if let Some(n) = prog.attach_func_name {
            f.os.insert("attach_func_name", Detail::Text(n));
        }
        if let Some(b) = prog.attach_btf_id {
            f.os.insert("attach_btf_id", Detail::Int(b));
        }
        if let Some(links) = links {
            f.os.insert("attached_to", Detail::Text(links.join(", ")));
        }
        out.items.push(f);
    }
    Ok(out)
}
