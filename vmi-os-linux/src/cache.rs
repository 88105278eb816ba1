//! The on-disk profile cache: what discovery found, kept so the next run on the same kernel
//! build skips it.
//!
//! The key is the kernel's banner (release, build number, compiler, build date), which names
//! one build. The value is a small Volatility 3 ISF holding only the symbols and types the
//! analyses looked up (see [`vmi_core::Profile::record_accesses`]): loading it takes a
//! millisecond where discovery takes ~100. Addresses are link-time, so a cache entry is valid
//! for every boot of that build; the KASLR slide is found anew each run (see [`find_slide`]).

use std::path::PathBuf;

use vmi_core::profile::isf;
use vmi_core::{AddressSpace, PageSize, Profile, Session, Va};

use crate::kernel::Kernel;

/// Where cache files go: `$VMI_CACHE_DIR`, else `$XDG_CACHE_HOME/vmi`, else `~/.cache/vmi`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("VMI_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("vmi"))
}

/// FNV-1a: a stable hash for file names (std's hasher is randomly keyed per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn release(banner: &str) -> &str {
    banner
        .strip_prefix("Linux version ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("unknown")
}

/// The cache file for a banner: `linux-<release>-<hash of the whole banner>.json`.
pub fn cache_path(banner: &str) -> Option<PathBuf> {
    let safe: String = release(banner)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(cache_dir()?.join(format!(
        "linux-{safe}-{:016x}.json",
        fnv1a(banner.trim_end().as_bytes())
    )))
}

/// Whether `$VMI_NO_CACHE` is set: the cache is then neither read nor written.
pub fn disabled() -> bool {
    std::env::var_os("VMI_NO_CACHE").is_some()
}

/// Saves what `kernel`'s analyses used (its profile must be recording accesses), merged with
/// what the cache already holds; nothing when `$VMI_NO_CACHE` is set (see [`disabled`]).
/// Errors are returned for the caller to report as warnings: a cache that cannot be written
/// only costs speed.
pub fn save(kernel: &Kernel) -> std::io::Result<()> {
    if disabled() {
        return Ok(());
    }
    let Some(path) = cache_path(kernel.banner()) else {
        return Ok(());
    };
    let Some(mut used) = kernel.profile().accessed_subset() else {
        return Ok(());
    };
    // `linux_banner` is how the next run finds the slide: always keep it.
    if let Some(s) = kernel.profile().symbol("linux_banner") {
        used.insert_symbol("linux_banner", s.clone());
    }
    if let Some(mut old) = std::fs::read(&path)
        .ok()
        .and_then(|b| Profile::from_isf(&b).ok())
    {
        old.merge(used);
        used = old;
    }
    let doc = isf::from_profile(
        &used,
        serde_json::json!({
            "format": isf::WRITTEN_FORMAT,
            "producer": {"name": "vmi", "version": env!("CARGO_PKG_VERSION")},
            "vmi_banner": kernel.banner().trim_end(),
        }),
    );
    let bytes = serde_json::to_vec(&doc).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)
}

/// The largest KASLR slide on x86-64: the kernel image lives in the 1 GiB above
/// `__START_KERNEL_map`.
const MAX_SLIDE: u64 = 1 << 30;

/// Finds the KASLR slide of a kernel whose `linux_banner` is at `banner_link` (link-time)
/// and starts with `want` (the whole banner, or just `Linux version `): tries each 2 MiB-aligned
/// slide (KASLR's granularity) and keeps the first where it is found. At most 512 translations.
pub fn find_slide(
    session: &Session,
    space: AddressSpace,
    banner_link: u64,
    want: &[u8],
) -> Option<u64> {
    let vm = session.virtual_memory(space);
    let mut buf = vec![0u8; want.len()];
    (0..MAX_SLIDE / PageSize::Size2M.bytes())
        .map(|i| i * PageSize::Size2M.bytes())
        .find(|&slide| {
            let va = Va::new(banner_link.wrapping_add(slide));
            vm.read_exact(va, &mut buf).is_ok() && buf == want
        })
}

/// The cached kernel for this guest, if the cache has its build. Each entry names its banner
/// and the banner's link-time address; the entry whose banner is found in memory under some
/// slide is this guest's (no scan of the kernel image is needed).
pub fn load(session: &Session, space: AddressSpace) -> Option<Kernel> {
    entries()?.find_map(|entry| entry.kernel_in(session, space))
}

/// The cached kernel for a guest whose dump has no registers, found in physical memory without
/// a scan: the image is placed at a 2 MiB-aligned physical address, so the cached banner can
/// only be at its link-time offset within some 2 MiB frame; where it is, the cached
/// `init_top_pgt` is at the same distance from it as at link time.
pub fn load_physical(session: &Session) -> Option<Kernel> {
    let large = PageSize::Size2M.bytes();
    let mem = session.memory();
    entries()?.find_map(|entry| {
        let init_top_pgt = entry.doc.symbols.get("init_top_pgt")?.address;
        let want = entry.banner.trim_end().as_bytes();
        let mut buf = vec![0u8; want.len()];
        let banner_pa = mem.memory_map().iter().find_map(|region| {
            let first = region.start.raw().div_ceil(large);
            let last = region.end_raw() / large;
            (first..=last)
                .filter_map(|frame| frame.checked_mul(large)?.checked_add(entry.link % large))
                .find(|&pa| {
                    mem.read(vmi_core::Pa::new(pa), &mut buf).is_ok() && buf.as_slice() == want
                })
        })?;
        let root = banner_pa.checked_add(init_top_pgt.checked_sub(entry.link)?)?;
        [vmi_core::PagingMode::Ia32e5, vmi_core::PagingMode::Ia32e4]
            .into_iter()
            .find_map(|mode| {
                let space = AddressSpace {
                    root: vmi_core::Pa::new(root),
                    mode,
                };
                let mut kernel = entry.kernel_in(session, space)?;
                kernel.use_own_space(
                    session,
                    kernel.symbol("linux_banner").ok()?,
                    crate::kernel_space::RootSource::PhysicalScan,
                );
                Some(kernel)
            })
    })
}

/// One cache file, parsed.
struct Entry {
    path: PathBuf,
    bytes: Vec<u8>,
    doc: isf::IsfDocument,
    banner: String,
    /// Link-time address of `linux_banner`.
    link: u64,
}

/// The cache's entries that name a banner and its address.
fn entries() -> Option<impl Iterator<Item = Entry>> {
    let dir = cache_dir()?;
    Some(std::fs::read_dir(dir).ok()?.flatten().filter_map(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("linux-") && name.ends_with(".json")) {
            return None;
        }
        let bytes = std::fs::read(entry.path()).ok()?;
        let doc = serde_json::from_slice::<isf::IsfDocument>(&bytes).ok()?;
        let banner = doc.metadata.get("vmi_banner")?.as_str()?.to_owned();
        let link = doc.symbols.get("linux_banner")?.address;
        Some(Entry {
            path: entry.path(),
            bytes,
            doc,
            banner,
            link,
        })
    }))
}

impl Entry {
    /// The cached kernel, if its banner is in `space` under some KASLR slide.
    fn kernel_in(&self, session: &Session, space: AddressSpace) -> Option<Kernel> {
        let slide = find_slide(session, space, self.link, self.banner.trim_end().as_bytes())?;
        let mut profile = Profile::from_isf(&self.bytes).ok()?;
        profile.source = format!("cache {}", self.path.display());
        profile.record_accesses();
        Some(Kernel::new(profile, slide, space, self.banner.clone()))
    }
}
