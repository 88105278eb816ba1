//! Loaded eBPF programs: `prog_idr` (kernel/bpf/syscall.c), an `idr` over an `xarray`, maps
//! program ids to `struct bpf_prog`; each program's `aux` (`struct bpf_prog_aux`) holds its
//! id, name and attach target.
//!
//! The idr's xarray is walked by [`crate::iter::xarray`], which trusts no node (shifts
//! checked, nodes, entries and time bounded); programs are read with every pointer checked
//! and at most [`MAX_PROG_INSNS`] instructions.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{struct_size, unexpected_layout, ArrayField, Scalar, StructBuf};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;
use crate::iter::xarray::{entries, XaValue, XarrayOffsets};
use crate::Partial;

/// The program id allocator: `static DEFINE_IDR(prog_idr)`.
pub const PROG_IDR_SYMBOL: &str = "prog_idr";

/// Most programs listed (far above what any system loads; each is a few pages of memory).
pub const MAX_BPF_PROGS: usize = 1 << 16;

/// Most instructions of one program read to look for helper calls (`BPF_COMPLEXITY_LIMIT_INSNS`
/// is 1M; real programs are a few thousand).
pub const MAX_PROG_INSNS: u64 = 1 << 16;

/// The `(id, struct bpf_prog *)` entries of the `struct idr` at `idr`, in id order: its
/// `idr_rt` xarray walked by [`crate::iter::xarray::entries`] (bounded, shifts checked), ids
/// offset by `idr_base`. A value entry, which no `idr` of pointers holds, is a warning.
pub fn idr_entries(
    mem: &VirtualMemory<'_>,
    profile: &Profile,
    idr: Va,
) -> Result<Partial<(u64, Va)>, LinuxError> {
    let rt = profile.field_offset("idr", "idr_rt")?;
    let base = Scalar::resolve(profile, "idr", "idr_base")?;
    let xa = XarrayOffsets::resolve(profile)?;
    let at = |off: u64| {
        idr.checked_add(off).ok_or_else(|| LinuxError::Corrupt {
            what: "idr",
            at: idr,
            reason: "field lies beyond the address space".into(),
        })
    };
    let mut raw = [0u8; 8];
    mem.read_exact(at(base.offset)?, &mut raw[..usize::from(base.size)])?;
    let id_base = base.get(&raw).unwrap_or(0);
    let walk = entries(mem, &xa, at(rt)?, MAX_BPF_PROGS, "prog_idr")?;
    let mut out = Partial {
        items: Vec::new(),
        warnings: walk.warnings,
    };
    for e in walk.items {
        match e.value {
            XaValue::Pointer(p) => out.items.push((id_base.wrapping_add(e.index), p)),
            XaValue::Value(v) => out.warnings.push(LinuxError::Corrupt {
                what: "idr",
                at: idr,
                reason: format!("index {} holds the value {v:#x}, not a pointer", e.index),
            }),
        }
    }
    Ok(out)
}

/// Where the fields of `struct bpf_prog` and `struct bpf_prog_aux` are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgOffsets {
    kind: Scalar,
    expected_attach_type: Scalar,
    len: Scalar,
    tag: ArrayField,
    aux: Scalar,
    bpf_func: Scalar,
    /// `bpf_prog.insnsi`: the (translated) instructions follow the struct.
    insnsi: u64,
    /// `bpf_prog.kprobe_override`, a bit set when the program overrides return values.
    kprobe_override: Option<Scalar>,
    prog_size: usize,
    aux_id: Scalar,
    aux_name: ArrayField,
    aux_attach_func_name: Option<Scalar>,
    aux_attach_btf_id: Option<Scalar>,
    aux_size: usize,
}

impl BpfProgOffsets {
    /// Resolves the fields; the attach fields are optional (older kernels lack some).
    pub fn resolve(profile: &Profile) -> Result<BpfProgOffsets, ProfileError> {
        const P: &str = "bpf_prog";
        const A: &str = "bpf_prog_aux";
        let tag = ArrayField::resolve(profile, P, "tag")?;
        let aux_name = ArrayField::resolve(profile, A, "name")?;
        if tag.stride != 1 || aux_name.stride != 1 {
            return Err(unexpected_layout(P, "tag/name", "not byte arrays"));
        }
        Ok(BpfProgOffsets {
            kind: Scalar::resolve(profile, P, "type")?,
            expected_attach_type: Scalar::resolve(profile, P, "expected_attach_type")?,
            len: Scalar::resolve(profile, P, "len")?,
            tag,
            aux: Scalar::resolve(profile, P, "aux")?,
            bpf_func: Scalar::resolve(profile, P, "bpf_func")?,
            insnsi: profile.field_offset(P, "insnsi")?,
            kprobe_override: Scalar::resolve(profile, P, "kprobe_override").ok(),
            prog_size: struct_size(profile, P)?,
            aux_id: Scalar::resolve(profile, A, "id")?,
            aux_name,
            aux_attach_func_name: Scalar::resolve(profile, A, "attach_func_name").ok(),
            aux_attach_btf_id: Scalar::resolve(profile, A, "attach_btf_id").ok(),
            aux_size: struct_size(profile, A)?,
        })
    }
}

/// One loaded program, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProg {
    /// The `struct bpf_prog`.
    pub addr: Va,
    /// `aux->id`, as `bpftool prog` shows it.
    pub id: u64,
    /// `enum bpf_prog_type` value.
    pub kind: u64,
    /// `enum bpf_attach_type` value.
    pub expected_attach_type: u64,
    /// `aux->name`, escaped where not printable.
    pub name: String,
    /// The tag (hash of the instructions), in hex as `bpftool` prints it.
    pub tag: String,
    /// Instructions.
    pub len: u64,
    /// The JIT image (or the interpreter).
    pub bpf_func: Va,
    /// `aux->attach_func_name`, where set.
    pub attach_func_name: Option<String>,
    /// `aux->attach_btf_id`, where non-zero.
    pub attach_btf_id: Option<u64>,
    /// Whether `kprobe_override` is set.
    pub kprobe_override: bool,
    /// The `imm` of every helper call instruction (`BPF_JMP | BPF_CALL` with `src_reg` 0),
    /// at most [`MAX_PROG_INSNS`] instructions read.
    pub helper_calls: Vec<i32>,
    /// Whether the instructions could not all be read (too many, or unmapped).
    pub insns_truncated: bool,
}

fn escape(bytes: &[u8]) -> String {
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

impl BpfProg {
    /// Reads the program at `addr`.
    pub fn read(
        mem: &VirtualMemory<'_>,
        o: &BpfProgOffsets,
        addr: Va,
    ) -> Result<BpfProg, LinuxError> {
        let p = StructBuf::read(mem, "bpf_prog", addr, o.prog_size)?;
        let aux_at = p.va(o.aux)?;
        if !is_kernel_pointer(mem.space().mode, aux_at) {
            return Err(p.corrupt(format!("aux {aux_at} is not a kernel pointer")));
        }
        let a = StructBuf::read(mem, "bpf_prog_aux", aux_at, o.aux_size)?;
        let tag: String = p.array(o.tag)?.iter().map(|b| format!("{b:02x}")).collect();
        let attach_func_name = match o.aux_attach_func_name {
            Some(f) => {
                let ptr = a.va(f)?;
                (ptr.raw() != 0)
                    .then(|| mem.read_cstr(ptr, 128).ok())
                    .flatten()
            }
            None => None,
        };
        let len = p.get(o.len)?;
        let (helper_calls, insns_truncated) = helper_calls(mem, addr, o.insnsi, len);
        Ok(BpfProg {
            addr,
            id: a.get(o.aux_id)?,
            kind: p.get(o.kind)?,
            expected_attach_type: p.get(o.expected_attach_type)?,
            name: escape(a.array(o.aux_name)?),
            tag,
            len,
            bpf_func: p.va(o.bpf_func)?,
            attach_func_name,
            attach_btf_id: o
                .aux_attach_btf_id
                .and_then(|f| a.get(f).ok())
                .filter(|&v| v != 0),
            kprobe_override: o
                .kprobe_override
                .and_then(|f| p.get(f).ok())
                .is_some_and(|v| v != 0),
            helper_calls,
            insns_truncated,
        })
    }
}

/// The `imm` of each helper call among the first `len` (at most [`MAX_PROG_INSNS`])
/// instructions at `prog + insnsi`, and whether fewer were read.
fn helper_calls(mem: &VirtualMemory<'_>, prog: Va, insnsi: u64, len: u64) -> (Vec<i32>, bool) {
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    let Some(start) = prog.checked_add(insnsi) else {
        return (Vec::new(), true);
    };
    let want = len.min(MAX_PROG_INSNS);
    let mut calls = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut done = 0u64;
    while done < want {
        let n = ((want - done) * 8).min(chunk.len() as u64) as usize;
        let Some(at) = start.checked_add(done * 8) else {
            return (calls, true);
        };
        if mem.read_exact(at, &mut chunk[..n]).is_err() {
            return (calls, true);
        }
        for insn in chunk[..n].chunks_exact(8) {
            // code, dst_reg:4 | src_reg:4, off, imm
            if insn[0] == CALL && insn[1] >> 4 == 0 {
                calls.push(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
            }
        }
        done += (n / 8) as u64;
    }
    (calls, len > MAX_PROG_INSNS)
}

/// The link id allocator: `static DEFINE_IDR(link_idr)`. A `bpf_link` ties a program to where
/// it is attached (a cgroup, a tracepoint, a network device...).
pub const LINK_IDR_SYMBOL: &str = "link_idr";

/// Where the fields of `struct bpf_link` and `struct bpf_cgroup_link` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfLinkOffsets {
    id: Scalar,
    kind: Scalar,
    prog: Scalar,
    /// `bpf_cgroup_link.cgroup` and `.type`, where the kernel has them.
    cgroup: Option<(Scalar, Scalar)>,
    size: usize,
}

impl BpfLinkOffsets {
    /// Resolves the fields.
    pub fn resolve(profile: &Profile) -> Result<BpfLinkOffsets, ProfileError> {
        const L: &str = "bpf_link";
        let cgroup = Scalar::resolve(profile, "bpf_cgroup_link", "cgroup")
            .and_then(|c| Ok((c, Scalar::resolve(profile, "bpf_cgroup_link", "type")?)))
            .ok();
        let mut size = struct_size(profile, L)?;
        if let Some((c, t)) = cgroup {
            size = size.max(c.end().max(t.end()) as usize);
        }
        Ok(BpfLinkOffsets {
            id: Scalar::resolve(profile, L, "id")?,
            kind: Scalar::resolve(profile, L, "type")?,
            prog: Scalar::resolve(profile, L, "prog")?,
            cgroup,
            size,
        })
    }
}

/// One link, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfLink {
    /// The `struct bpf_link`.
    pub addr: Va,
    /// Its id (`bpftool link`).
    pub id: u64,
    /// `enum bpf_link_type` value.
    pub kind: u64,
    /// The program it attaches.
    pub prog: Va,
    /// For a cgroup link (`kind` is `cgroup_kind`): the cgroup and the attach type.
    pub cgroup: Option<(Va, u64)>,
}

impl BpfLink {
    /// Reads the link at `addr`; `cgroup_kind` is `BPF_LINK_TYPE_CGROUP`, whose links are
    /// `struct bpf_cgroup_link`s.
    pub fn read(
        mem: &VirtualMemory<'_>,
        o: &BpfLinkOffsets,
        addr: Va,
        cgroup_kind: u64,
    ) -> Result<BpfLink, LinuxError> {
        let b = StructBuf::read(mem, "bpf_link", addr, o.size)?;
        let kind = b.get(o.kind)?;
        let cgroup = match o.cgroup {
            Some((c, t)) if kind == cgroup_kind => Some((b.va(c)?, b.get(t)?)),
            _ => None,
        };
        Ok(BpfLink {
            addr,
            id: b.get(o.id)?,
            kind,
            prog: b.va(o.prog)?,
            cgroup,
        })
    }
}

/// The default (v2) cgroup hierarchy's root: `struct cgroup_root cgrp_dfl_root`.
pub const CGROUP_DFL_ROOT_SYMBOL: &str = "cgrp_dfl_root";

/// Most cgroups visited (a busy systemd host has a few hundred).
pub const MAX_CGROUPS: usize = 1 << 16;
/// Deepest cgroup nesting followed.
pub const MAX_CGROUP_NESTING: usize = 64;
/// Most programs on one attach point of one cgroup (the kernel's limit is 64).
pub const MAX_PROGS_PER_ATTACH: usize = 64;
/// Time bound of the cgroup tree walk.
pub const MAX_CGROUP_WALK_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Where programs attached to cgroups (`BPF_PROG_ATTACH` or links) are:
/// `cgroup.bpf.progs[enum cgroup_bpf_attach_type]`, each an `hlist` of `struct
/// bpf_prog_list`, and how to walk the cgroup tree (`cgroup.self.children`/`.sibling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupBpfOffsets {
    root_cgrp: u64,
    cgroup_self: u64,
    css_children: u64,
    css_sibling: u64,
    progs: ArrayField,
    pl_node: u64,
    pl_prog: Scalar,
    node_next: u64,
}

impl CgroupBpfOffsets {
    /// Resolves the fields.
    pub fn resolve(profile: &Profile) -> Result<CgroupBpfOffsets, ProfileError> {
        let bpf = profile.field_offset("cgroup", "bpf")?;
        let mut progs = ArrayField::resolve(profile, "cgroup_bpf", "progs")?;
        if progs.stride != 8 || progs.count > 256 {
            return Err(unexpected_layout("cgroup_bpf", "progs", "not hlist heads"));
        }
        progs.offset = progs
            .offset
            .checked_add(bpf)
            .ok_or_else(|| unexpected_layout("cgroup", "bpf", "offset overflows"))?;
        Ok(CgroupBpfOffsets {
            root_cgrp: profile.field_offset("cgroup_root", "cgrp")?,
            cgroup_self: profile.field_offset("cgroup", "self")?,
            css_children: profile.field_offset("cgroup_subsys_state", "children")?,
            css_sibling: profile.field_offset("cgroup_subsys_state", "sibling")?,
            progs,
            pl_node: profile.field_offset("bpf_prog_list", "node")?,
            pl_prog: Scalar::resolve(profile, "bpf_prog_list", "prog")?,
            node_next: profile.field_offset("hlist_node", "next")?,
        })
    }
}

/// A program attached to a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupAttachment {
    /// The `struct cgroup`.
    pub cgroup: Va,
    /// The `enum cgroup_bpf_attach_type` index.
    pub attach: u64,
    /// The `struct bpf_prog`.
    pub prog: Va,
}

/// Every program attached to a cgroup of the default hierarchy whose `struct cgroup_root` is
/// at `root`: the tree walked depth first (bounded in cgroups, nesting and time, each
/// children list by [`crate::iter::list::ListWalker`]), each attach list bounded.
pub fn cgroup_attachments(
    mem: &VirtualMemory<'_>,
    profile: &Profile,
    root: Va,
) -> Result<Partial<CgroupAttachment>, LinuxError> {
    use crate::iter::list::{container_of, ListOffsets, ListWalker};
    let o = CgroupBpfOffsets::resolve(profile)?;
    let list = ListOffsets::resolve(profile)?;
    let mode = mem.space().mode;
    let beyond = |at: Va| LinuxError::Corrupt {
        what: "cgroup",
        at,
        reason: "a field lies beyond the address space".into(),
    };
    let top = root.checked_add(o.root_cgrp).ok_or_else(|| beyond(root))?;
    let mut out = Partial::default();
    let mut stack = vec![(top, 0usize)];
    // Every cgroup ever queued: a cgroup is visited once, and the queue is bounded by it.
    let mut queued = std::collections::HashSet::from([top]);
    let started = std::time::Instant::now();
    let mut full = false;
    let mut heads = vec![0u8; (o.progs.count * 8) as usize];
    while let Some((cgroup, depth)) = stack.pop() {
        if started.elapsed() >= MAX_CGROUP_WALK_TIME {
            warn(
                &mut out.warnings,
                LinuxError::Corrupt {
                    what: "cgroup tree",
                    at: top,
                    reason: format!(
                    "walk stopped at its time bound ({MAX_CGROUP_WALK_TIME:?}) after {} cgroups",
                    queued.len()
                ),
                },
            );
            break;
        }
        // The programs of each attach type.
        let at = cgroup
            .checked_add(o.progs.offset)
            .ok_or_else(|| beyond(cgroup))?;
        if let Err(e) = mem.read_exact(at, &mut heads) {
            warn(&mut out.warnings, e.into());
            continue;
        }
        for (attach, head) in heads.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(head);
            let mut node = u64::from_le_bytes(w);
            let mut n = 0;
            while node != 0 {
                if n >= MAX_PROGS_PER_ATTACH || !is_kernel_pointer(mode, Va::new(node)) {
                    warn(
                        &mut out.warnings,
                        LinuxError::Corrupt {
                            what: "cgroup bpf program list",
                            at,
                            reason: format!(
                                "attach type {attach}: more than {MAX_PROGS_PER_ATTACH} programs, \
                             or a node {node:#x} that is not a kernel pointer"
                            ),
                        },
                    );
                    break;
                }
                n += 1;
                let Some(pl) = container_of(Va::new(node), o.pl_node) else {
                    break;
                };
                match pl
                    .checked_add(o.pl_prog.offset)
                    .map(|a| mem.read_va(a))
                    .transpose()
                {
                    Ok(Some(prog)) if prog.raw() != 0 => out.items.push(CgroupAttachment {
                        cgroup,
                        attach: attach as u64,
                        prog,
                    }),
                    Ok(_) => {}
                    Err(e) => {
                        warn(&mut out.warnings, e.into());
                        break;
                    }
                }
                match Va::new(node)
                    .checked_add(o.node_next)
                    .map(|a| mem.read_u64(a))
                    .transpose()
                {
                    Ok(Some(next)) => node = next,
                    _ => break,
                }
            }
        }
        // The children, pushed to visit in list order.
        if depth >= MAX_CGROUP_NESTING {
            warn(
                &mut out.warnings,
                LinuxError::Corrupt {
                    what: "cgroup tree",
                    at: cgroup,
                    reason: format!("nested deeper than {MAX_CGROUP_NESTING} levels"),
                },
            );
            continue;
        }
        let Some(head) = cgroup
            .checked_add(o.cgroup_self)
            .and_then(|css| css.checked_add(o.css_children))
        else {
            continue;
        };
        let mut walk = ListWalker::new(*mem, list, head, "cgroup children").with_limit(MAX_CGROUPS);
        let mut children = Vec::new();
        for entry in walk.by_ref() {
            let Some(child) =
                container_of(entry, o.css_sibling).and_then(|css| container_of(css, o.cgroup_self))
            else {
                continue;
            };
            if queued.len() >= MAX_CGROUPS {
                if full {
                    break;
                }
                full = true;
                warn(
                    &mut out.warnings,
                    LinuxError::Unbounded {
                        what: "cgroup tree",
                        head: top,
                        limit: MAX_CGROUPS,
                    },
                );
                break;
            }
            if queued.insert(child) {
                children.push((child, depth + 1));
            } else {
                warn(
                    &mut out.warnings,
                    LinuxError::Corrupt {
                        what: "cgroup tree",
                        at: child,
                        reason: "a cgroup reached twice (a cycle)".into(),
                    },
                );
                break;
            }
        }
        if let Some(w) = walk.into_warning() {
            warn(&mut out.warnings, w);
        }
        stack.extend(children.into_iter().rev());
    }
    Ok(out)
}

/// Most warnings the cgroup walk keeps (a hostile tree repeats one problem everywhere).
const MAX_CGROUP_WARNINGS: usize = 64;

fn warn(warnings: &mut Vec<LinuxError>, e: LinuxError) {
    if warnings.len() < MAX_CGROUP_WARNINGS {
        warnings.push(e);
    }
}
