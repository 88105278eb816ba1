//! `vmi files` and `vmi dump-file PATH OUT`: the page cache, through the OS-neutral
//! [`vmi_core::os::PageCache`] capability.

use vmi_core::BoxError;

use super::Context;
use crate::output;

/// `vmi files`.
pub fn files(ctx: &Context<'_>) -> Result<(), BoxError> {
    let cache = ctx
        .session
        .os_capability("page cache files", |os| os.page_cache())?;
    let partial = cache.cached_files(ctx.session)?;
    super::os::warn(&partial);
    let rows: Vec<Vec<String>> = partial
        .items
        .iter()
        .map(|f| {
            vec![
                f.inode.to_string(),
                f.size.to_string(),
                f.cached_pages.to_string(),
                f.fs_type.clone(),
                f.path.clone(),
            ]
        })
        .collect();
    output::emit(ctx.format, &partial.items, || {
        output::columns(&["inode", "size", "cached_pages", "fs", "path"], &rows)
    })
}

/// Arguments of `vmi dump-file`.
#[derive(Debug, clap::Args)]
pub struct DumpFileArgs {
    /// The file's path, as `vmi files` shows it.
    path: String,
    /// Where to write its contents (pages not in memory are left as holes).
    out: std::path::PathBuf,
}

/// `vmi dump-file PATH OUT`.
pub fn dump_file(ctx: &Context<'_>, args: &DumpFileArgs) -> Result<(), BoxError> {
    let cache = ctx
        .session
        .os_capability("page cache files", |os| os.page_cache())?;
    let out = std::fs::File::create(&args.out)
        .map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    let extract = match cache.extract_cached_file(ctx.session, &args.path, &out) {
        Ok(x) => x,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&args.out);
            return Err(e.into());
        }
    };
    for w in &extract.warnings {
        eprintln!("vmi: warning: {w}");
    }
    let missing: u64 = extract.missing_pages.iter().map(|(a, b)| b - a).sum();
    if missing > 0 {
        eprintln!(
            "vmi: warning: {missing} of {} pages of {} are not in memory (holes in {})",
            extract.file.size.div_ceil(4096),
            args.path,
            args.out.display()
        );
    }
    output::emit(ctx.format, &extract, || {
        format!(
            "wrote {} bytes of {} to {} ({} pages from memory, {missing} missing)\n",
            extract.bytes_written,
            args.path,
            args.out.display(),
            extract.pages_copied
        )
    })
}
