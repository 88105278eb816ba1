//! `vmi translate VA`: the physical address and every paging level's entry.

use serde::Serialize;
use vmi_core::{BoxError, Pa, PageWalk, PagingMode, Va};

use super::space::SpaceArgs;
use super::{parse_u64, Context};
use crate::output;

/// Arguments of `vmi translate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The virtual address (0x... hex or decimal).
    #[arg(value_parser = parse_u64)]
    va: u64,
    #[command(flatten)]
    pub space: SpaceArgs,
}

#[derive(Serialize)]
struct Report {
    va: Va,
    paging_mode: PagingMode,
    dtb: Pa,
    pa: Pa,
    page_size: u64,
    permissions: String,
    steps: Vec<Step>,
}

#[derive(Serialize)]
struct Step {
    level: &'static str,
    index: u16,
    entry_pa: Pa,
    #[serde(serialize_with = "vmi_core::serde_hex::u64")]
    entry: u64,
    flags: String,
}

pub fn run(ctx: &Context<'_>, args: &Args) -> Result<(), BoxError> {
    let space = args.space.resolve(ctx, Va::new(args.va))?;
    let walk = ctx.session.walk(space, Va::new(args.va));
    let steps: Vec<Step> = walk
        .steps
        .iter()
        .map(|s| Step {
            level: s.level.name(),
            index: s.index,
            entry_pa: s.entry_pa,
            entry: s.entry,
            flags: vmi_arch_x86::describe_entry(s.entry, s.level, space.mode),
        })
        .collect();
    let table = steps_table(&walk, &steps);
    match walk.result {
        Ok(t) => {
            let report = Report {
                va: walk.va,
                paging_mode: space.mode,
                dtb: space.root,
                pa: t.pa,
                page_size: t.size.bytes(),
                permissions: t.perms.to_string(),
                steps,
            };
            output::emit(ctx.format, &report, || {
                format!("{table}-> {} ({} page, {})\n", t.pa, t.size, t.perms)
            })
        }
        // Nothing on stdout for a failure (the contract), but the walk up to where it stopped
        // is what a user debugging it needs: it goes into the error message.
        Err(e) => Err(format!("{e}\n{}", table.trim_end()).into()),
    }
}

fn steps_table(walk: &PageWalk, steps: &[Step]) -> String {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                s.level.to_owned(),
                s.index.to_string(),
                s.entry_pa.to_string(),
                format!("{:#018x}", s.entry),
                s.flags.clone(),
            ]
        })
        .collect();
    let mut out = format!(
        "{} in {} paging (dtb {})\n",
        walk.va, walk.space.mode, walk.space.root
    );
    out.push_str(&output::columns(
        &["level", "index", "entry_pa", "entry", "flags"],
        &rows,
    ));
    out
}
