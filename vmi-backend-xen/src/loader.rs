//! Finding and loading the Xen libraries at run time, and resolving the function table once.
//!
//! libxenctrl's soname changes with every Xen release (`libxenctrl.so.4.17`, `.4.18`, ...) and
//! only the -dev package installs the plain `libxenctrl.so`, so the versioned names are tried
//! first, newest first (a host that kept an old library after an upgrade runs the newest
//! hypervisor), then the plain name. The other three libraries have stable sonames.
//!
//! # Test seam: `VMI_XEN_LIBRARY_DIR`
//!
//! With `$VMI_XEN_LIBRARY_DIR` set, the same names are looked up in that directory only (as
//! full paths), and nowhere else. vmi's tests point it at a directory holding a test-only
//! library (`vmi-fake-xen`) under the real sonames; on a real host it can point at a Xen
//! installed outside the linker's search path (e.g. `/usr/local/lib`).

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::error::XenError;
use crate::sys::{Functions, Lib, SYMBOLS};

/// The environment variable naming a directory to load the Xen libraries from.
pub const LIBRARY_DIR_ENV: &str = "VMI_XEN_LIBRARY_DIR";

/// The Xen releases whose libxenctrl vmi loads, newest first.
pub const XEN_VERSIONS: [&str; 6] = ["4.22", "4.21", "4.20", "4.19", "4.18", "4.17"];

/// Where to look for the libraries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibrarySearch {
    /// The dynamic linker's search path (`ld.so.cache`, `LD_LIBRARY_PATH`).
    System,
    /// Only this directory.
    Dir(PathBuf),
}

impl LibrarySearch {
    /// [`LibrarySearch::Dir`] if `$VMI_XEN_LIBRARY_DIR` is set and not empty, else
    /// [`LibrarySearch::System`].
    pub fn from_env() -> LibrarySearch {
        match std::env::var_os(LIBRARY_DIR_ENV) {
            Some(dir) if !dir.is_empty() => LibrarySearch::Dir(dir.into()),
            _ => LibrarySearch::System,
        }
    }

    /// The names (or paths) tried for `lib`, in order.
    pub fn candidates(&self, lib: Lib) -> Vec<String> {
        let names: Vec<String> = match lib {
            Lib::Ctrl => XEN_VERSIONS
                .iter()
                .map(|v| format!("libxenctrl.so.{v}"))
                .chain(std::iter::once("libxenctrl.so".to_owned()))
                .collect(),
            Lib::ForeignMemory => vec!["libxenforeignmemory.so.1".into()],
            Lib::Store => vec!["libxenstore.so.4".into()],
            Lib::Evtchn => vec!["libxenevtchn.so.1".into()],
        };
        match self {
            LibrarySearch::System => names,
            LibrarySearch::Dir(dir) => names
                .into_iter()
                .map(|n| dir.join(n).display().to_string())
                .collect(),
        }
    }
}

/// A library as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedLibrary {
    /// Which library.
    pub lib: Lib,
    /// The name or path it was loaded under.
    pub file: String,
}

/// The four Xen libraries, loaded, with their functions resolved.
pub struct XenLibraries {
    functions: Functions,
    loaded: Vec<LoadedLibrary>,
    xen: String,
    // Dropped last: the function pointers above point into these.
    _handles: Vec<libloading::Library>,
}

impl std::fmt::Debug for XenLibraries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenLibraries")
            .field("loaded", &self.loaded)
            .field("xen", &self.xen)
            .finish_non_exhaustive()
    }
}

impl XenLibraries {
    /// Loads the libraries from `search` and resolves every function.
    pub fn load(search: &LibrarySearch) -> Result<XenLibraries, XenError> {
        let mut handles = Vec::with_capacity(Lib::ALL.len());
        let mut loaded = Vec::with_capacity(Lib::ALL.len());
        for lib in Lib::ALL {
            let (handle, file) = open_one(search, lib)?;
            handles.push(handle);
            loaded.push(LoadedLibrary { lib, file });
        }
        let xen = xen_version(&loaded[0].file);
        let file_of = |lib: Lib| {
            let i = Lib::ALL.iter().position(|l| *l == lib).unwrap_or(0);
            (&handles[i], loaded[i].file.clone())
        };
        let lookup = |lib: Lib, name: &'static [u8]| -> Result<*const c_void, XenError> {
            let (handle, file) = file_of(lib);
            let symbol = symbol_name(name);
            let missing = |reason: String| XenError::SymbolNotFound {
                symbol,
                library: file_name(&file),
                xen: xen.clone(),
                reason,
            };
            // SAFETY: the symbol is only read as an address here; its type is asserted by
            // `Functions::resolve` from the declarations in sys.rs.
            let sym =
                unsafe { handle.get::<*const c_void>(name) }.map_err(|e| missing(e.to_string()))?;
            let ptr = *sym;
            if ptr.is_null() {
                return Err(missing("the symbol's address is null".into()));
            }
            Ok(ptr)
        };
        // SAFETY: every symbol is looked up by the exact name of the C function whose
        // signature sys.rs declares (from the Xen 4.17 headers; unchanged up to 4.22), and
        // the libraries stay loaded for as long as `functions` lives (both are owned by the
        // returned value, which drops the handles last).
        let functions = unsafe { Functions::resolve(lookup) }?;
        Ok(XenLibraries {
            functions,
            loaded,
            xen,
            _handles: handles,
        })
    }

    /// The libraries of the search `$VMI_XEN_LIBRARY_DIR` selects, loaded once per process
    /// (a failure is not remembered, so a later call tries again).
    pub fn shared() -> Result<Arc<XenLibraries>, XenError> {
        static SHARED: OnceLock<Arc<XenLibraries>> = OnceLock::new();
        if let Some(libs) = SHARED.get() {
            return Ok(libs.clone());
        }
        let libs = Arc::new(XenLibraries::load(&LibrarySearch::from_env())?);
        Ok(SHARED.get_or_init(|| libs).clone())
    }

    /// The resolved functions.
    pub(crate) fn functions(&self) -> &Functions {
        &self.functions
    }

    /// What was loaded, and from where.
    pub fn loaded(&self) -> &[LoadedLibrary] {
        &self.loaded
    }

    /// The Xen release libxenctrl belongs to ("Xen 4.17"), from its soname.
    pub fn xen_version(&self) -> &str {
        &self.xen
    }

    /// Every `(library, function)` this crate resolves.
    pub fn symbols() -> impl Iterator<Item = (Lib, &'static str)> {
        SYMBOLS.iter().copied()
    }
}

fn open_one(search: &LibrarySearch, lib: Lib) -> Result<(libloading::Library, String), XenError> {
    let candidates = search.candidates(lib);
    let mut last_error = String::new();
    for name in &candidates {
        // SAFETY: loading runs the library's initialisers. The Xen libraries' constructors
        // only set up their own state (libxentoolcore's handle list); vmi loads nothing else
        // through this path.
        match unsafe { libloading::Library::new(name) } {
            Ok(handle) => return Ok((handle, name.clone())),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(XenError::LibraryNotFound {
        library: lib.name(),
        tried: candidates.join(", "),
        package: lib.debian_package(),
        reason: if last_error.is_empty() {
            String::new()
        } else {
            format!(": {last_error}")
        },
    })
}

fn symbol_name(name: &'static [u8]) -> &'static str {
    let trimmed = name.strip_suffix(b"\0").unwrap_or(name);
    std::str::from_utf8(trimmed).unwrap_or("?")
}

fn file_name(file: &str) -> String {
    file.rsplit('/').next().unwrap_or(file).to_owned()
}

/// "Xen 4.17" from "libxenctrl.so.4.17" (or a path ending in it).
fn xen_version(ctrl_file: &str) -> String {
    let name = file_name(ctrl_file);
    match name.strip_prefix("libxenctrl.so.") {
        Some(v) if !v.is_empty() => format!("Xen {v}"),
        _ => "Xen version unknown: plain libxenctrl.so from the -dev package".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_try_versioned_names_first() {
        let c = LibrarySearch::System.candidates(Lib::Ctrl);
        assert_eq!(c.first().map(String::as_str), Some("libxenctrl.so.4.22"));
        assert!(c.contains(&"libxenctrl.so.4.17".to_owned()));
        assert_eq!(c.last().map(String::as_str), Some("libxenctrl.so"));
        let d = LibrarySearch::Dir("/opt/x".into()).candidates(Lib::Store);
        assert_eq!(d, vec!["/opt/x/libxenstore.so.4".to_owned()]);
    }

    #[test]
    fn version_from_soname() {
        assert_eq!(xen_version("/usr/lib/libxenctrl.so.4.17"), "Xen 4.17");
        assert!(xen_version("libxenctrl.so").contains("unknown"));
    }

    #[test]
    fn missing_directory_names_library_and_package() {
        let dir = std::env::temp_dir().join("vmi-xen-no-such-dir");
        let err = XenLibraries::load(&LibrarySearch::Dir(dir)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("libxenctrl"), "{msg}");
        assert!(msg.contains("libxenctrl.so.4.17"), "{msg}");
        assert!(msg.contains("libxenmisc4.17"), "{msg}");
    }
}
