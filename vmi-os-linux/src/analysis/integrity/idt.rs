//! `idt`: the interrupt descriptor table. Every present gate of `idt_table` must have its
//! handler in kernel text (the `asm_exc_*`, `asm_sysvec_*` and `irq_entries_start` stubs), use
//! the kernel code segment and be an interrupt or trap gate; a handler elsewhere is a hooked
//! vector (a page-fault or breakpoint hook of a rootkit, a debugger's stub).
//!
//! One exception, seen on every fixture guest: the reserved exception vectors (20-31 on 6.1,
//! 22-28 and 30-31 on 6.12, which defines #CP and #VC) keep the boot-time handlers
//! `idt_setup_early_handler` gave all 32 exception vectors, the stubs of
//! `early_idt_handler_array` in `.init.text` (freed after boot: unmapped on the PTI guests).
//! The kernel never replaces them because those vectors are never raised. A gate of vector
//! `v < 32` whose handler is exactly `early_idt_handler_array + v * stride` (stride: the
//! array's extent over 32, 9 bytes or 13 with IBT's `endbr64`) is therefore normal, and
//! counted in the summary instead of reported.
//!
//! Which table the CPUs use: each vCPU's IDTR base (from the dump's registers, where it has
//! them). On the fixture guests (6.1 and 6.12, 4- and 5-level paging, with and without PTI)
//! every vCPU's IDTR is `0xfffffe0000000000`, not `idt_table`: that is `CPU_ENTRY_AREA_RO_IDT`,
//! the read-only alias of `idt_table` in the CPU entry area (`idt_map_in_cea`, mapped so that
//! `sidt` does not reveal the kernel's address and the table cannot be written through it).
//! So an IDTR is accepted when it is `idt_table` itself or translates to the same physical
//! address; any other base is suspicious, and its gates are checked as well.

use vmi_core::os::{Finding, Severity};
use vmi_core::Va;

use super::{finding, Check, Context};
use crate::comps::idt::{
    layout_matches, Gate, GATE_INTERRUPT, GATE_SIZE, GATE_TRAP, IDT_ENTRIES, KERNEL_CS,
};
use crate::error::LinuxError;
use crate::partial::Partial;

/// The table Linux loads: `gate_desc idt_table[IDT_ENTRIES]`.
pub const IDT_TABLE_SYMBOL: &str = "idt_table";

/// Runs the check.
pub fn check(ctx: &Context<'_>) -> Result<Partial<Finding>, LinuxError> {
    ctx.text()?;
    if !layout_matches(ctx.kernel.profile()) {
        return Err(LinuxError::Corrupt {
            what: "gate_struct",
            at: Va::new(0),
            reason: "the profile's gate_struct is not the 16-byte x86-64 gate".into(),
        });
    }
    let table = ctx.kernel.symbol(IDT_TABLE_SYMBOL)?;
    let mut out = Partial::default();
    let gates = read_gates(ctx, table)?;
    let (present, early) = check_gates(ctx, "IDT", &gates, &mut out.items);
    out.items.push(finding(
        Check::Idt,
        Severity::Info,
        IDT_TABLE_SYMBOL,
        Some(table),
        format!(
            "{present} present gates of {IDT_ENTRIES} checked; {early} reserved exception \
             vectors still on their boot-time stubs in early_idt_handler_array (normal)"
        ),
    ));
    let space = ctx.kernel.space();
    let table_pa = ctx.session.translate(space, table).ok().map(|t| t.pa);
    for cpu in 0..ctx.session.vcpu_count() {
        let Ok(regs) = ctx.session.registers(cpu) else {
            continue;
        };
        let base = Va::new(regs.idtr_base);
        let subject = format!("vCPU {cpu} IDTR");
        if base == table {
            continue;
        }
        let pa = ctx.session.translate(space, base).ok().map(|t| t.pa);
        if pa.is_some() && pa == table_pa {
            out.items.push(finding(
                Check::Idt,
                Severity::Info,
                subject,
                Some(base),
                format!(
                    "the read-only alias of idt_table (same physical address {}; the CPU \
                     entry area's CPU_ENTRY_AREA_RO_IDT)",
                    pa.map(|p| p.to_string()).unwrap_or_default()
                ),
            ));
            continue;
        }
        out.items.push(finding(
            Check::Idt,
            Severity::Suspicious,
            subject.clone(),
            Some(base),
            match pa {
                Some(pa) => format!(
                    "the vCPU loads an IDT at {base} (physical {pa}), not idt_table at {table}"
                ),
                None => format!(
                    "the vCPU loads an IDT at {base}, which is not mapped, not idt_table at \
                     {table}"
                ),
            },
        ));
        if let Ok(other) = read_gates(ctx, base) {
            check_gates(ctx, &format!("vCPU {cpu} IDT"), &other, &mut out.items);
        }
    }
    Ok(out)
}

/// The 256 gates at `at`.
fn read_gates(ctx: &Context<'_>, at: Va) -> Result<Vec<Gate>, LinuxError> {
    let mut raw = vec![0u8; IDT_ENTRIES * GATE_SIZE];
    ctx.mem.read_exact(at, &mut raw)?;
    Ok(Gate::decode_table(&raw))
}

/// The boot-time stub of exception `vector`: `early_idt_handler_array + vector * stride`.
fn early_stub(ctx: &Context<'_>, vector: u8) -> Option<u64> {
    if vector >= 32 {
        return None;
    }
    let start = ctx.kernel.symbol("early_idt_handler_array").ok()?.raw();
    let extent = ctx.next_symbol_after(start)? - start;
    (extent % 32 == 0).then(|| start + u64::from(vector) * (extent / 32))
}

/// Adds a finding for every bad present gate; returns how many are present, and how many of
/// them are reserved exception vectors on their boot-time stubs.
fn check_gates(
    ctx: &Context<'_>,
    what: &str,
    gates: &[Gate],
    out: &mut Vec<Finding>,
) -> (usize, usize) {
    let mut present = 0;
    let mut early = 0;
    for g in gates.iter().filter(|g| g.present) {
        present += 1;
        let subject = format!("{what}[{}]", g.vector);
        let h = g.handler.raw();
        let mut wrong = Vec::new();
        if early_stub(ctx, g.vector) == Some(h) {
            early += 1;
        } else if !ctx.in_kernel_text(h) {
            wrong.push(format!("its handler is {}", ctx.describe(h)));
        }
        if g.selector != KERNEL_CS {
            wrong.push(format!(
                "its selector is {:#x}, not the kernel code segment {KERNEL_CS:#x}",
                g.selector
            ));
        }
        if g.kind != GATE_INTERRUPT && g.kind != GATE_TRAP {
            wrong.push(format!(
                "its type is {:#x}, neither an interrupt nor a trap gate",
                g.kind
            ));
        }
        if !wrong.is_empty() {
            out.push(finding(
                Check::Idt,
                Severity::Suspicious,
                subject,
                Some(g.handler),
                format!("vector {}: {}", g.vector, wrong.join("; ")),
            ));
        }
    }
    (present, early)
}
