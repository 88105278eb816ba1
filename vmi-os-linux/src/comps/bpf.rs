//! Loaded eBPF programs: `prog_idr` (kernel/bpf/syscall.c), an `idr` over an `xarray`, maps
//! program ids to `struct bpf_prog`; each program's `aux` (`struct bpf_prog_aux`) holds its
//! id, name and attach target.
//!
//! The xarray (lib/xarray.c, include/linux/xarray.h) is walked here without trusting it:
//!
//! - `xa_head` is NULL (empty), a plain pointer (the only entry, index 0), or an internal
//!   "node" entry (`entry & 3 == 2`, above 4096) pointing 2 bytes past a `struct xa_node`;
//! - a node's `slots[XA_CHUNK_SIZE]` hold entries the same way; other internal entries
//!   (sibling, retry, zero: internal values below 4096) are skipped; a leaf at slot `i` of a
//!   node of `shift` is index `base + (i << shift)`.
//!
//! A guest controls every node: the walk visits each node once (a node reached twice is a
//! cycle, reported), at most [`MAX_XA_DEPTH`] levels deep, at most [`MAX_XA_NODES`] nodes and
//! [`MAX_XA_ENTRIES`] entries, within [`MAX_XA_TIME`]; the shift a node claims only places
//! indices (it is not trusted for the depth).

use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;
use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{struct_size, unexpected_layout, ArrayField, Scalar, StructBuf};
use crate::error::LinuxError;
use crate::iter::list::is_kernel_pointer;

/// The program id allocator: `static DEFINE_IDR(prog_idr)`.
pub const PROG_IDR_SYMBOL: &str = "prog_idr";

/// Deepest node chain walked: 64-bit indices in 6-bit chunks need at most 11 levels.
pub const MAX_XA_DEPTH: usize = 12;
/// Most nodes visited (a system with 10,000 programs needs about 160).
pub const MAX_XA_NODES: usize = 4096;
/// Most entries produced (far above the programs any system loads).
pub const MAX_XA_ENTRIES: usize = 1 << 16;
/// Time bound of one walk.
pub const MAX_XA_TIME: Duration = Duration::from_secs(2);
/// Most warnings one walk keeps (a hostile tree repeats the same problem in every slot).
pub const MAX_XA_WARNINGS: usize = 16;

/// Most instructions of one program read to look for helper calls (`BPF_COMPLEXITY_LIMIT_INSNS`
/// is 1M; real programs are a few thousand).
pub const MAX_PROG_INSNS: u64 = 1 << 16;

/// Where the fields of `struct xarray` (inside `struct idr`) and `struct xa_node` are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XarrayOffsets {
    /// `idr.idr_rt` + `xarray.xa_head`.
    head: u64,
    /// `idr.idr_base`: the id of index 0.
    base: Scalar,
    /// `xa_node.shift`.
    shift: Scalar,
    /// `xa_node.slots`.
    slots: ArrayField,
    /// Size of `struct xa_node`.
    node_size: usize,
}

impl XarrayOffsets {
    /// Resolves `idr`, `xarray` and `xa_node`.
    pub fn resolve(profile: &Profile) -> Result<XarrayOffsets, ProfileError> {
        let rt = profile.field_offset("idr", "idr_rt")?;
        let head = rt
            .checked_add(profile.field_offset("xarray", "xa_head")?)
            .ok_or_else(|| unexpected_layout("idr", "idr_rt", "offset overflows"))?;
        let slots = ArrayField::resolve(profile, "xa_node", "slots")?;
        if slots.stride != 8 || slots.count == 0 || slots.count > 256 {
            return Err(unexpected_layout(
                "xa_node",
                "slots",
                "not an array of pointers",
            ));
        }
        Ok(XarrayOffsets {
            head,
            base: Scalar::resolve(profile, "idr", "idr_base")?,
            shift: Scalar::resolve(profile, "xa_node", "shift")?,
            slots,
            node_size: struct_size(profile, "xa_node")?,
        })
    }
}

/// What the walk of an idr found: `(id, pointer)` in index order, and why it stopped early.
#[derive(Debug, Default)]
pub struct IdrWalk {
    /// Each entry's id and pointer.
    pub entries: Vec<(u64, Va)>,
    /// Problems met (cycles, bounds, unreadable nodes).
    pub warnings: Vec<LinuxError>,
    /// Nodes visited.
    pub nodes: usize,
    /// Warnings beyond [`MAX_XA_WARNINGS`], counted only.
    pub dropped: usize,
}

/// Keeps `e` unless the walk has [`MAX_XA_WARNINGS`] already.
fn note(walk: &mut IdrWalk, e: LinuxError) {
    if walk.warnings.len() < MAX_XA_WARNINGS {
        walk.warnings.push(e);
    } else {
        walk.dropped += 1;
    }
}

fn is_internal(entry: u64) -> bool {
    entry & 3 == 2
}

fn is_node(entry: u64) -> bool {
    is_internal(entry) && entry > 4096
}

/// The entries of the `struct idr` at `idr`.
pub fn idr_entries(mem: &VirtualMemory<'_>, o: &XarrayOffsets, idr: Va) -> IdrWalk {
    let mut walk = IdrWalk::default();
    let corrupt = |at: Va, reason: String| LinuxError::Corrupt {
        what: "idr",
        at,
        reason,
    };
    let head_at = match idr.checked_add(o.head) {
        Some(a) => a,
        None => return walk,
    };
    let head = match mem.read_u64(head_at) {
        Ok(h) => h,
        Err(e) => {
            note(&mut walk, e.into());
            return walk;
        }
    };
    let id_base = idr
        .checked_add(o.base.offset)
        .and_then(|a| {
            let mut b = [0u8; 8];
            mem.read_exact(a, &mut b[..usize::from(o.base.size)]).ok()?;
            o.base.get(&b[..usize::from(o.base.size)])
        })
        .unwrap_or(0);
    let mode = mem.space().mode;
    if head == 0 {
        return walk;
    }
    if !is_internal(head) {
        if is_kernel_pointer(mode, Va::new(head)) {
            walk.entries.push((id_base, Va::new(head)));
        } else {
            note(
                &mut walk,
                corrupt(
                    head_at,
                    format!("xa_head {head:#x} is neither a node nor a kernel pointer"),
                ),
            );
        }
        return walk;
    }
    if !is_node(head) {
        return walk;
    }
    let started = Instant::now();
    let mut seen = FxHashSet::default();
    // (node address, index of its first slot, depth)
    let mut stack = vec![(Va::new(head - 2), 0u64, 1usize)];
    let mut stopped = false;
    while let Some((node, first, depth)) = stack.pop() {
        if started.elapsed() >= MAX_XA_TIME {
            let nodes = walk.nodes;
            // The bound that ended the walk is always reported.
            walk.warnings.push(corrupt(
                idr,
                format!("walk stopped at its time bound ({MAX_XA_TIME:?}) after {nodes} nodes"),
            ));
            break;
        }
        if !is_kernel_pointer(mode, node) {
            note(
                &mut walk,
                corrupt(node, "node is not an aligned kernel address".into()),
            );
            continue;
        }
        if depth > MAX_XA_DEPTH {
            note(
                &mut walk,
                corrupt(
                    node,
                    format!("nodes nest deeper than {MAX_XA_DEPTH} levels"),
                ),
            );
            continue;
        }
        if !seen.insert(node) {
            note(
                &mut walk,
                corrupt(node, "node reached twice (a cycle in the tree)".into()),
            );
            continue;
        }
        if walk.nodes >= MAX_XA_NODES {
            // The bound that ended the walk is always reported.
            walk.warnings.push(corrupt(
                idr,
                format!("more than {MAX_XA_NODES} nodes (corrupted or absurd tree)"),
            ));
            break;
        }
        walk.nodes += 1;
        let buf = match StructBuf::read(mem, "xa_node", node, o.node_size) {
            Ok(b) => b,
            Err(e) => {
                note(&mut walk, e);
                continue;
            }
        };
        let shift = match buf.get(o.shift) {
            Ok(s) => s,
            Err(e) => {
                note(&mut walk, e);
                continue;
            }
        };
        let slots = match buf.array(o.slots) {
            Ok(s) => s,
            Err(e) => {
                note(&mut walk, e);
                continue;
            }
        };
        // Children are pushed in reverse so that the stack pops them in index order.
        let mut children = Vec::new();
        for (i, raw) in slots.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(raw);
            let entry = u64::from_le_bytes(w);
            let index = (i as u64)
                .checked_shl(u32::try_from(shift).unwrap_or(u32::MAX))
                .and_then(|d| first.checked_add(d))
                .unwrap_or(u64::MAX);
            if entry == 0 {
                continue;
            }
            if is_node(entry) {
                children.push((Va::new(entry - 2), index, depth + 1));
            } else if is_internal(entry) {
                // Sibling, retry or zero entries: no item here.
                continue;
            } else if walk.entries.len() >= MAX_XA_ENTRIES {
                stopped = true;
                break;
            } else {
                walk.entries
                    .push((id_base.wrapping_add(index), Va::new(entry)));
            }
        }
        if stopped {
            // The bound that ended the walk is always reported.
            walk.warnings.push(corrupt(
                idr,
                format!("more than {MAX_XA_ENTRIES} entries (corrupted or absurd tree)"),
            ));
            break;
        }
        stack.extend(children.into_iter().rev());
    }
    if walk.dropped > 0 {
        let dropped = walk.dropped;
        walk.warnings.push(corrupt(
            idr,
            format!("and {dropped} more problems of the same tree"),
        ));
    }
    walk.entries.sort_by_key(|&(id, _)| id);
    walk
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
