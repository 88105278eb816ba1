//! `vmi info`: what the target is.

use serde::Serialize;
use vmi_core::os::DetectionReport;
use vmi_core::registry::{ARCHITECTURES, BACKENDS, OS_DETECTORS};
use vmi_core::vcpu::RegisterSource;
use vmi_core::{BoxError, OsInfo, Pa, PagingMode, PhysicalMemoryExt};

use super::Context;
use crate::output;

#[derive(Serialize)]
struct Info {
    backend: &'static str,
    format: String,
    memory_bytes: u64,
    memory_map: Vec<Region>,
    vcpus: usize,
    /// Paging mode and DTB of vCPU 0 (the contract's top-level fields).
    paging_mode: Option<PagingMode>,
    dtb: Option<Pa>,
    vcpu_registers: Vec<Vcpu>,
    os: Option<OsInfo>,
    /// What every OS detector said.
    detectors: Vec<DetectionReport>,
    profiles: Vec<ProfileSummary>,
    details: std::collections::BTreeMap<String, String>,
    registered: Registered,
}

#[derive(Serialize)]
struct Region {
    start: Pa,
    end: Pa,
}

#[derive(Serialize)]
struct Vcpu {
    index: usize,
    paging_mode: PagingMode,
    dtb: Pa,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    cr0: u64,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    cr3: u64,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    cr4: u64,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    efer: u64,
    efer_source: Option<RegisterSource>,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    rip: u64,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    rsp: u64,
}

#[derive(Serialize)]
struct ProfileSummary {
    source: String,
    symbols: usize,
    types: usize,
}

#[derive(Serialize)]
struct Registered {
    backends: Vec<&'static str>,
    architectures: Vec<&'static str>,
    os: Vec<&'static str>,
}

pub fn run(ctx: &Context<'_>) -> Result<(), BoxError> {
    let s = ctx.session;
    let mut vcpus = Vec::new();
    for index in 0..s.vcpu_count() {
        let r = s.registers(index)?;
        let space = PagingMode::from_registers(&r);
        vcpus.push(Vcpu {
            index,
            paging_mode: space.mode,
            dtb: space.root,
            cr0: r.cr0,
            cr3: r.cr3,
            cr4: r.cr4,
            efer: r.efer,
            efer_source: r.efer_source,
            rip: r.rip,
            rsp: r.rsp,
        });
    }
    let info = Info {
        backend: s.backend(),
        format: s.format().to_owned(),
        memory_bytes: s.memory().total_bytes(),
        memory_map: s
            .memory()
            .memory_map()
            .iter()
            .map(|r| Region {
                start: r.start,
                end: Pa::new(r.end_raw()),
            })
            .collect(),
        vcpus: s.vcpu_count(),
        // vCPU 0's; a target without registers reports the kernel's own space.
        paging_mode: vcpus
            .first()
            .map(|v| v.paging_mode)
            .or_else(|| s.os().map(|os| os.kernel_space().mode)),
        dtb: vcpus
            .first()
            .map(|v| v.dtb)
            .or_else(|| s.os().map(|os| os.kernel_space().root)),
        vcpu_registers: vcpus,
        os: s.os().map(|os| os.info()),
        detectors: s.detections().to_vec(),
        profiles: ctx
            .profiles
            .iter()
            .map(|p| ProfileSummary {
                source: p.source.clone(),
                symbols: p.symbol_count(),
                types: p.user_types().count(),
            })
            .collect(),
        details: s.details().iter().cloned().collect(),
        registered: Registered {
            backends: BACKENDS.items().iter().map(|b| b.name).collect(),
            architectures: ARCHITECTURES.items().iter().map(|a| a.name).collect(),
            os: OS_DETECTORS.items().iter().map(|d| d.name).collect(),
        },
    };
    output::emit(ctx.format, &info, || table(&info))
}

fn table(info: &Info) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k:<13} {v}\n"));
    kv("backend", info.backend.to_owned());
    kv("format", info.format.clone());
    kv(
        "memory",
        format!(
            "{} MiB in {} region(s)",
            info.memory_bytes >> 20,
            info.memory_map.len()
        ),
    );
    for r in &info.memory_map {
        kv("", format!("{}..{}", r.start, r.end));
    }
    kv("vcpus", info.vcpus.to_string());
    kv(
        "paging_mode",
        info.paging_mode.map_or("unknown".into(), |m| m.to_string()),
    );
    kv("dtb", info.dtb.map_or("unknown".into(), |d| d.to_string()));
    match &info.os {
        Some(os) => {
            kv("os", format!("{} {}", os.kind, os.version));
            kv("kernel_base", os.kernel_base.to_string());
            kv("kaslr_slide", format!("{:#x}", os.kaslr_slide));
            kv(
                "kernel_dtb",
                format!(
                    "{} ({}), from {}",
                    os.kernel_dtb, os.kernel_paging_mode, os.kernel_dtb_source
                ),
            );
            for (k, v) in &os.details {
                kv(k, v.clone());
            }
        }
        None => kv("os", "not detected".into()),
    }
    for d in &info.detectors {
        let verdict = match d.confidence {
            Some(c) if d.bound => format!("found ({}% sure), bound", c.0),
            Some(c) => format!("found ({}% sure)", c.0),
            None => format!("{}: {}", d.outcome, d.reason),
        };
        kv(&format!("detector {}", d.detector), verdict);
    }
    for p in &info.profiles {
        kv(
            "symbols",
            format!("{}: {} symbols, {} types", p.source, p.symbols, p.types),
        );
    }
    for (k, v) in &info.details {
        kv(k, v.clone());
    }
    kv(
        "registered",
        format!(
            "backends [{}], architectures [{}], os [{}]",
            info.registered.backends.join(", "),
            info.registered.architectures.join(", "),
            info.registered.os.join(", ")
        ),
    );
    let rows: Vec<Vec<String>> = info
        .vcpu_registers
        .iter()
        .map(|v| {
            vec![
                v.index.to_string(),
                v.paging_mode.to_string(),
                format!("{:#x}", v.cr0),
                format!("{:#x}", v.cr3),
                format!("{:#x}", v.cr4),
                format!(
                    "{:#x}{}",
                    v.efer,
                    if v.efer_source == Some(RegisterSource::Inferred) {
                        " (inferred)"
                    } else {
                        ""
                    }
                ),
                format!("{:#x}", v.rip),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&output::columns(
            &["vcpu", "paging", "cr0", "cr3", "cr4", "efer", "rip"],
            &rows,
        ));
    }
    out
}
