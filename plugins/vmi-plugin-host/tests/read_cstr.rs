//! `Host::read_cstr` (what plugins call) and the core's `VirtualMemory::read_cstr` (what vmi's
//! commands call) read the same string at every address: up to the NUL, at most `max` bytes,
//! stopping at a hole in the address space, failing only when the first byte is unreadable.
//! The guest is built in code: real IA-32e page tables mapping two pages, the third unmapped.

use std::sync::Arc;

use vmi_arch_x86::testing::PageTableBuilder;
use vmi_arch_x86::X86;
use vmi_core::{
    Pa, PageSize, PagingMode, Permissions, Session, Target, Va, VcpuError, VcpuRegisters,
    X86Registers,
};
use vmi_plugin_api::abi_stable::sabi_trait::TD_Opaque;
use vmi_plugin_api::{Host, HostInterface_TO, Space};
use vmi_plugin_host::SessionHost;

/// The two mapped pages; the page after them is not mapped.
const BASE: u64 = 0xffff_8000_0010_0000;
const FRAMES: [u64; 2] = [0x8_0000, 0x8_7000];

struct Regs(X86Registers);

impl VcpuRegisters for Regs {
    fn vcpu_count(&self) -> usize {
        1
    }
    fn registers(&self, index: usize) -> Result<X86Registers, VcpuError> {
        match index {
            0 => Ok(self.0.clone()),
            _ => Err(VcpuError::NoSuchVcpu { index, count: 1 }),
        }
    }
}

/// A session whose vCPU 0 maps `BASE..BASE+0x2000`, with `bytes` written at `BASE + offset`.
fn session(writes: &[(u64, &[u8])]) -> Session {
    let mut b = PageTableBuilder::new(PagingMode::Ia32e4, 1 << 20);
    for (i, frame) in FRAMES.iter().enumerate() {
        b.map(
            Va::new(BASE + 0x1000 * i as u64),
            Pa::new(*frame),
            PageSize::Size4K,
            Permissions::ALL,
        )
        .unwrap();
    }
    let root = b.root();
    let mut mem = b.into_memory();
    // Make every mapped byte a non-NUL letter first, so a string ends only where a test says.
    for frame in FRAMES {
        let f = frame as usize;
        mem.bytes_mut()[f..f + 0x1000].fill(b'x');
    }
    for (off, bytes) in writes {
        for (k, byte) in bytes.iter().enumerate() {
            let o = off + k as u64;
            let pa = FRAMES[(o / 0x1000) as usize] + o % 0x1000;
            mem.bytes_mut()[pa as usize] = *byte;
        }
    }
    let regs = X86Registers {
        cr0: 1 << 31 | 1,
        cr4: 1 << 5,
        efer: 1 << 8 | 1 << 10,
        cr3: root.raw(),
        ..X86Registers::default()
    };
    let target = Target::builder("test", "buffer", Arc::new(mem))
        .registers(Arc::new(Regs(regs)))
        .build();
    Session::from_target("synthetic", target, Box::new(X86::new()))
}

/// Both readers at `BASE + off`: (core, plugin), errors as `None`.
fn both(s: &Session, off: u64, max: usize) -> (Option<String>, Option<String>) {
    let space = s.vcpu_address_space(0).unwrap();
    let core = s
        .virtual_memory(space)
        .read_cstr(Va::new(BASE + off), max)
        .ok();
    let host = SessionHost::new(s);
    let host = Host::new(HostInterface_TO::from_ptr(&host, TD_Opaque));
    let plugin = host.read_cstr(Space::Kernel, BASE + off, max).ok();
    (core, plugin)
}

#[test]
fn a_string_running_into_an_unmapped_page_stops_at_the_hole_in_both() {
    // 16 letters at the end of the second page and no NUL: the next page is not mapped.
    let s = session(&[(0x1ff0, b"ABCDEFGHIJKLMNOP")]);
    let (core, plugin) = both(&s, 0x1ff0, 256);
    assert_eq!(core.as_deref(), Some("ABCDEFGHIJKLMNOP"));
    assert_eq!(plugin, core);
    // A string starting in the first page runs on through the second up to the hole.
    let (core, plugin) = both(&s, 0xff0, 8192);
    assert_eq!(core.as_ref().map(String::len), Some(0x1010));
    assert!(core.as_deref().unwrap().ends_with("xxABCDEFGHIJKLMNOP"));
    assert_eq!(plugin, core);
}

#[test]
fn both_readers_agree_everywhere() {
    let s = session(&[
        (0x10, b"hello\0"),
        (0xffa, b"across\0"),
        (0x1800, b"caf\xc3\xa9 \xff\0"),
    ]);
    let cases: &[(u64, usize, Option<&str>)] = &[
        (0x10, 64, Some("hello")),
        (0x10, 3, Some("hel")),
        (0x10, 0, Some("")),
        (0x15, 64, Some("")),
        (0xffa, 64, Some("across")),
        (0xffa, 4, Some("acro")),
        (0x1800, 64, Some("café \u{fffd}")),
        // Unmapped at the first byte: both fail.
        (0x2000, 64, None),
        (0x2ff8, 1, None),
    ];
    for &(off, max, want) in cases {
        let (core, plugin) = both(&s, off, max);
        assert_eq!(core.as_deref(), want, "core at +{off:#x} max {max}");
        assert_eq!(plugin, core, "plugin vs core at +{off:#x} max {max}");
    }
    // Every start and several bounds over the mapped pages and the hole.
    for off in (0..0x2010u64).step_by(0x7f) {
        for max in [1, 15, 255, 256, 257, 4096, 9000] {
            let (core, plugin) = both(&s, off, max);
            assert_eq!(plugin, core, "plugin vs core at +{off:#x} max {max}");
        }
    }
}
