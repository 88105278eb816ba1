//! The page cache (`vmi files`, `vmi dump-file`): every in-memory inode with cached pages, on
//! every filesystem, and the recovery of a file's contents from those pages — a file deleted
//! from the disk, a tmpfs or initramfs file, a binary that ran and is gone.
//!
//! Inodes are found per super block (`super_blocks` -> `s_inodes`), as the kernel's
//! `drop_pagecache_sb` finds them; names come from the inode's first dentry, rendered by
//! `d_path` through the super block's first mount (`s_mounts`), so a file on `/tmp`'s tmpfs is
//! `/tmp/NAME`. Pages come from the mapping's xarray; a shadow entry (an evicted page) or an
//! index with no entry is a page not in memory, left as a hole (zeros) in the extract.

use std::os::unix::fs::FileExt;

use vmi_core::os::{self, CachedFile, CachedFileExtract, Detail, Details, PageCache};
use vmi_core::{OsError, Session, Va, VirtualMemory};

use crate::comps::file::{d_path, FileOffsets};
use crate::comps::inode::{read_inode, read_super_block, Inode, InodeOffsets, PageFrames};
use crate::error::LinuxError;
use crate::iter::list::{container_of, ListOffsets, ListWalker};
use crate::iter::xarray::{self, XaValue, XarrayOffsets};
use crate::kernel::Kernel;
use crate::{LinuxOs, Partial};

/// Most super blocks walked (a real system has a few dozen).
pub const MAX_SUPER_BLOCKS: usize = 4096;
/// Most inodes walked over all super blocks.
pub const MAX_INODES: usize = 1 << 21;
/// The largest file `extract` writes (its size is guest data; the output is sparse, but a
/// bound keeps a hostile `i_size` from making a file no tool can handle).
pub const MAX_EXTRACT_BYTES: u64 = 1 << 40;

/// A cached inode and where it was found.
struct Found {
    file: CachedFile,
    inode: Inode,
}

struct Walk<'a> {
    mem: VirtualMemory<'a>,
    list: ListOffsets,
    inode: InodeOffsets,
    file: FileOffsets,
}

impl<'a> Walk<'a> {
    fn new(session: &'a Session, kernel: &Kernel) -> Result<Self, LinuxError> {
        Ok(Self {
            mem: kernel.memory(session),
            list: ListOffsets::resolve(kernel.profile())?,
            inode: InodeOffsets::resolve(kernel.profile())?,
            file: FileOffsets::resolve_for(kernel)?,
        })
    }

    /// Visits every cached inode (`nrpages > 0`) until `visit` returns `false`; what could
    /// not be read is returned as warnings.
    fn cached(
        &self,
        kernel: &Kernel,
        mut visit: impl FnMut(Found) -> bool,
    ) -> Result<Vec<LinuxError>, LinuxError> {
        let head = kernel.symbol("super_blocks")?;
        let mut warnings = Vec::new();
        let mut inodes_left = MAX_INODES;
        let mut supers = ListWalker::new(self.mem, self.list, head, "super block list")
            .with_limit(MAX_SUPER_BLOCKS);
        for link in supers.by_ref() {
            let Some(sb_at) = container_of(link, self.inode.s_list) else {
                continue;
            };
            let sb = match read_super_block(&self.mem, &self.inode, sb_at) {
                Ok(sb) => sb,
                Err(e) => {
                    warnings.push(e);
                    continue;
                }
            };
            let vfsmount = self.first_mount(sb_at);
            let inodes_head = sb_at
                .checked_add(self.inode.s_inodes)
                .ok_or_else(|| corrupt(sb_at, "s_inodes overflows"))?;
            let mut inodes = ListWalker::new(self.mem, self.list, inodes_head, "inode list")
                .with_limit(inodes_left);
            for link in inodes.by_ref() {
                let Some(at) = container_of(link, self.inode.i_sb_list) else {
                    continue;
                };
                let inode = match read_inode(&self.mem, &self.inode, at) {
                    Ok(i) if i.nrpages > 0 => i,
                    Ok(_) => continue,
                    Err(e) => {
                        warnings.push(e);
                        continue;
                    }
                };
                let path = match (vfsmount, inode.dentry) {
                    (Some(mnt), Some(dentry)) => d_path(&self.mem, &self.file, mnt, dentry)
                        .unwrap_or_else(|e| {
                            warnings.push(e);
                            String::new()
                        }),
                    _ => String::new(),
                };
                let mut details = Details::new();
                details.insert("mode", Detail::Int(inode.mode.into()));
                details.insert(
                    "device",
                    Detail::Text(format!("{}:{}", sb.dev >> 20, sb.dev & 0xf_ffff)),
                );
                let file = CachedFile {
                    path,
                    inode: inode.ino,
                    size: inode.size,
                    cached_pages: inode.nrpages,
                    fs_type: sb.fs_type.clone(),
                    object: at,
                    os: details,
                };
                if !visit(Found { file, inode }) {
                    return Ok(warnings);
                }
            }
            inodes_left = inodes_left.saturating_sub(ListWalker::count(&inodes));
            warnings.extend(inodes.into_warning());
        }
        warnings.extend(supers.into_warning());
        Ok(warnings)
    }

    /// The `vfsmount` of the super block's first mount, through which its paths are rendered.
    fn first_mount(&self, sb: Va) -> Option<Va> {
        let head = sb.checked_add(self.inode.s_mounts)?;
        let first = self.mem.read_va(head).ok()?;
        (first != head)
            .then(|| self.inode.vfsmount_of_instance(first))
            .flatten()
    }
}

fn corrupt(at: Va, reason: &str) -> LinuxError {
    LinuxError::Corrupt {
        what: "super_block",
        at,
        reason: reason.into(),
    }
}

/// Every inode with pages in the page cache, super block by super block.
pub fn cached_files(session: &Session, kernel: &Kernel) -> Result<Partial<CachedFile>, LinuxError> {
    let walk = Walk::new(session, kernel)?;
    let mut items = Vec::new();
    let warnings = walk.cached(kernel, |f| {
        items.push(f.file);
        true
    })?;
    Ok(Partial { items, warnings })
}

/// Writes the cached contents of the file named `path` (as [`cached_files`] names it) to
/// `out` (truncated to the file's size first; pages not in memory stay holes), and says what
/// was recovered.
pub fn extract(
    session: &Session,
    kernel: &Kernel,
    path: &str,
    out: &std::fs::File,
) -> Result<CachedFileExtract, LinuxError> {
    let walk = Walk::new(session, kernel)?;
    let mut found = None;
    walk.cached(kernel, |f| {
        if f.file.path == path {
            found = Some(f);
            false
        } else {
            true
        }
    })?;
    let Some(Found { file, inode }) = found else {
        return Err(LinuxError::NotCached(path.to_owned()));
    };
    if file.size > MAX_EXTRACT_BYTES {
        return Err(LinuxError::Corrupt {
            what: "inode",
            at: file.object,
            reason: format!("a size of {} bytes, above the extract bound", file.size),
        });
    }
    let frames = PageFrames::resolve(kernel, &walk.mem)?;
    let xa = XarrayOffsets::resolve(kernel.profile())?;
    let pages_at = walk
        .inode
        .pages_of(inode.mapping)
        .ok_or_else(|| corrupt(inode.at, "i_mapping overflows"))?;
    let pages_in_file = file.size.div_ceil(4096);
    let entries = xarray::entries(
        &walk.mem,
        &xa,
        pages_at,
        usize::try_from(pages_in_file).unwrap_or(usize::MAX),
        "page cache",
    )?;
    let io = |e: std::io::Error| LinuxError::Corrupt {
        what: "extract",
        at: file.object,
        reason: format!("writing the output: {e}"),
    };
    out.set_len(file.size).map_err(io)?;
    let mut copied = 0u64;
    let mut present = Vec::new();
    let mut page = vec![0u8; 4096];
    for e in &entries.items {
        let XaValue::Pointer(folio) = e.value else {
            continue; // a shadow entry: the page was evicted
        };
        // A large folio's pages are consecutive frames, as are their `struct page`s.
        for k in 0..e.span {
            let index = e.index.saturating_add(k);
            if index >= pages_in_file {
                break;
            }
            let Some(frame) = frames
                .frame(folio)
                .and_then(|pa| pa.checked_add(k.saturating_mul(4096)))
            else {
                continue;
            };
            if session.memory().read(frame, &mut page).is_err() {
                continue;
            }
            let offset = index * 4096;
            let len = (file.size - offset).min(4096) as usize;
            out.write_all_at(&page[..len], offset).map_err(io)?;
            copied += 1;
            present.push(index);
        }
    }
    present.sort_unstable();
    present.dedup();
    let mut missing = Vec::new();
    let mut next = 0u64;
    for &i in &present {
        if i > next {
            missing.push((next, i));
        }
        next = i + 1;
    }
    if next < pages_in_file {
        missing.push((next, pages_in_file));
    }
    Ok(CachedFileExtract {
        bytes_written: file.size,
        pages_copied: copied,
        missing_pages: missing,
        warnings: entries.warnings.iter().map(ToString::to_string).collect(),
        file,
    })
}

impl PageCache for LinuxOs {
    fn cached_files(&self, session: &Session) -> Result<os::Partial<CachedFile>, OsError> {
        self.neutral_partial(cached_files(session, self.kernel()), |f| f)
    }

    fn extract_cached_file(
        &self,
        session: &Session,
        path: &str,
        out: &std::fs::File,
    ) -> Result<CachedFileExtract, OsError> {
        extract(session, self.kernel(), path, out).map_err(|e| self.neutral(e))
    }
}
