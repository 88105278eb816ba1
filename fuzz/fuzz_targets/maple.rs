//! Maple tree walks over fuzzer-chosen guest memory: `iter::maple::entries` must never panic
//! or hang, and what it returns must be in index order, without overlaps, within its caps.
//!
//! Input: an 8-byte root (`maple_tree.ma_root`, little endian), then guest memory from
//! physical (= virtual, paging disabled) address 0x1000. The tree struct is at 0x100. The
//! root is used as given when its byte 0 has bit 7 set; otherwise it is folded onto a node
//! inside the memory (256-byte aligned, type from bits 3..6, the root tag set), so that most
//! inputs reach real nodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmi_core::memory::BufferMemory;
use vmi_core::profile::{Field, TypeRef, UserType, UserTypeKind};
use vmi_core::{AddressSpace, Pa, PagingMode, Profile, Va, VirtualMemory};
use vmi_os_linux::iter::maple::{entries, MapleLimits, MapleOffsets, MAX_WARNINGS};

const TREE: u64 = 0x100;
const NODES: u64 = 0x1000;

/// The 64-bit layouts of include/linux/maple_tree.h, as BTF describes them.
fn profile() -> Profile {
    let mut p = Profile::new("fuzz maple");
    p.insert_base_type("long unsigned int", 8);
    p.insert_base_type("unsigned char", 1);
    let words = |n| TypeRef::Array {
        count: n,
        element: Box::new(TypeRef::Base("long unsigned int".into())),
    };
    let ptr = || TypeRef::Pointer(Box::new(TypeRef::Void));
    let ptrs = |n| TypeRef::Array {
        count: n,
        element: Box::new(ptr()),
    };
    let meta = || TypeRef::Struct("maple_metadata".into());
    let mut add = |name: &str, size, fields: Vec<(&str, u64, TypeRef)>| {
        p.insert_type(
            name,
            UserType {
                kind: UserTypeKind::Struct,
                size,
                fields: fields
                    .into_iter()
                    .map(|(n, offset, ty)| (n.to_owned(), Field { offset, ty }))
                    .collect(),
            },
        );
    };
    add("maple_tree", 24, vec![("ma_root", 8, ptr())]);
    add(
        "maple_node",
        256,
        vec![("parent", 0, ptr()), ("slot", 8, ptrs(31))],
    );
    add(
        "maple_range_64",
        256,
        vec![
            ("pivot", 8, words(15)),
            ("slot", 128, ptrs(16)),
            ("meta", 248, meta()),
        ],
    );
    add(
        "maple_arange_64",
        248,
        vec![
            ("pivot", 8, words(9)),
            ("slot", 80, ptrs(10)),
            ("meta", 240, meta()),
        ],
    );
    add(
        "maple_metadata",
        2,
        vec![("end", 0, TypeRef::Base("unsigned char".into()))],
    );
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((root, memory)) = data.split_first_chunk::<8>() else {
        return;
    };
    if memory.is_empty() || memory.len() > 1 << 20 {
        return;
    }
    let raw = u64::from_le_bytes(*root);
    let root = if raw & 0x80 != 0 {
        raw
    } else {
        let nodes = (memory.len() as u64).div_ceil(256);
        let node = NODES + (raw >> 8) % nodes * 256;
        node | (raw & 0x78) | 0x4 | 0x2
    };
    let mut bytes = vec![0u8; NODES as usize];
    bytes[TREE as usize + 8..TREE as usize + 16].copy_from_slice(&root.to_le_bytes());
    bytes.extend_from_slice(memory);
    let mem = BufferMemory::new(Pa::new(0), bytes);
    let arch = vmi_arch_x86::X86::new();
    let space = AddressSpace {
        root: Pa::new(0),
        mode: PagingMode::Disabled,
    };
    let vm = VirtualMemory::new(&mem, &arch, space);
    let offsets = MapleOffsets::resolve(&profile()).expect("the synthetic profile resolves");
    let limits = MapleLimits {
        max_depth: 16,
        max_nodes: 4096,
        max_entries: 1 << 16,
    };
    let Ok(walk) = entries(&vm, &offsets, Va::new(TREE), &limits) else {
        return;
    };
    assert!(walk.warnings.len() <= MAX_WARNINGS + 1);
    assert!(walk.items.len() <= limits.max_entries);
    for e in &walk.items {
        assert!(e.first <= e.last);
    }
    for pair in walk.items.windows(2) {
        assert!(pair[0].last < pair[1].first, "{pair:?}");
    }
});
