//! `vmi lsof [PID]`: the open files of every process (or of one), through the OS-neutral
//! [`vmi_core::os::OpenFiles`] capability. The table is lsof's (`pid fd type pos flags inode
//! path`, flags in octal with a leading 0, as Linux's fdinfo prints them); JSON is the
//! `OpenFile` records.

use vmi_core::os::OpenFile;
use vmi_core::BoxError;

use super::os::warn;
use super::Context;
use crate::output;

/// Arguments of `vmi lsof`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this process (default: every process).
    pid: Option<u32>,
}

const HEADERS: [&str; 7] = ["pid", "fd", "type", "pos", "flags", "inode", "path"];

fn rows(files: &[OpenFile]) -> Vec<Vec<String>> {
    files
        .iter()
        .map(|f| {
            vec![
                f.pid.to_string(),
                f.fd.to_string(),
                f.kind.lsof_type().to_owned(),
                f.position.to_string(),
                format!("0{:o}", f.flags),
                f.inode.map_or("-".to_owned(), |i| i.to_string()),
                f.path.clone(),
            ]
        })
        .collect()
}

/// `vmi lsof [PID]`.
pub fn run(ctx: &Context<'_>, args: &Args) -> Result<(), BoxError> {
    let open_files = ctx
        .session
        .os_capability("open files", |os| os.open_files())?;
    let partial = open_files.open_files(ctx.session, args.pid)?;
    warn(&partial);
    output::emit(ctx.format, &partial.items, || {
        output::columns(&HEADERS, &rows(&partial.items))
    })
}
