//! Symbol tables by PDB identity: the RSDS GUID and age of ntoskrnl name one build; the
//! table of that build is found on the search path (Volatility 3's layout or the flat names of
//! `windows-isf/`), loaded with only what the analyses use, and cached on disk in that small
//! form, so that a run does not decompress and parse a 6 MiB JSON document each time.
//!
//! Windows ISF symbol addresses are RVAs: the run-time address is the kernel base plus it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer;
use vmi_core::Profile;

use crate::WindowsError;

/// The identity of a PDB, from a CodeView RSDS record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PdbId {
    /// The GUID bytes as stored in the record (Data1–3 little-endian).
    pub guid: [u8; 16],
    /// The age.
    pub age: u32,
    /// The PDB's file name (`ntkrnlmp.pdb`).
    pub name: String,
}

impl PdbId {
    /// The GUID as Volatility 3 and the symbol server spell it: Data1–3 byte-swapped to big
    /// endian, then Data4, upper-case hex, no dashes.
    ///
    /// ```
    /// let id = vmi_os_windows::PdbId {
    ///     guid: [0x0a, 0x04, 0x11, 0x8b, 0x28, 0x59, 0x7b, 0x75, 0x11, 0x39, 0x0a, 0xc7,
    ///            0x8f, 0x6b, 0x69, 0x25],
    ///     age: 1,
    ///     name: "ntkrnlmp.pdb".into(),
    /// };
    /// assert_eq!(id.guid_string(), "8B11040A5928757B11390AC78F6B6925");
    /// assert_eq!(id.key(), "8B11040A5928757B11390AC78F6B69251");
    /// ```
    pub fn guid_string(&self) -> String {
        let g = &self.guid;
        let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
        order.iter().map(|&i| format!("{:02X}", g[i])).collect()
    }

    /// GUID and age as the Microsoft symbol server keys a PDB (age in hex).
    pub fn key(&self) -> String {
        format!("{}{:X}", self.guid_string(), self.age)
    }

    /// The PDB name to look tables up by (lower case).
    pub fn pdb_name(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    /// Every file name this table could have under `dir`, in the order tried: Volatility 3's
    /// `windows/<pdb>/<GUID>-<AGE>.json.xz` (and without `windows/`), then the flat
    /// `<pdb>-<GUID>-<AGE>.json.xz`, each also as `.json`. Age in decimal (Volatility) and in
    /// hex when that differs.
    pub fn candidates(&self, dir: &Path) -> Vec<PathBuf> {
        let guid = self.guid_string();
        let pdb = self.pdb_name();
        let mut ages = vec![self.age.to_string()];
        let hex = format!("{:X}", self.age);
        if hex != ages[0] {
            ages.push(hex);
        }
        let mut out = Vec::new();
        for age in &ages {
            for ext in ["json.xz", "json"] {
                out.push(
                    dir.join("windows")
                        .join(&pdb)
                        .join(format!("{guid}-{age}.{ext}")),
                );
                out.push(dir.join(&pdb).join(format!("{guid}-{age}.{ext}")));
                out.push(dir.join(format!("{pdb}-{guid}-{age}.{ext}")));
            }
        }
        out
    }
}

impl fmt::Display for PdbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.key())
    }
}

/// The directories searched for tables: the given ones, then `$VMI_SYMBOL_PATH` (split like
/// `$PATH`).
pub fn search_dirs(given: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = given.to_vec();
    if let Some(p) = std::env::var_os("VMI_SYMBOL_PATH") {
        dirs.extend(std::env::split_paths(&p).filter(|d| !d.as_os_str().is_empty()));
    }
    dirs
}

/// The table file of `id` on `dirs`, or an error naming every path tried.
pub fn find_table(id: &PdbId, dirs: &[PathBuf]) -> Result<PathBuf, WindowsError> {
    let mut looked = Vec::new();
    for dir in dirs {
        for path in id.candidates(dir) {
            if path.is_file() {
                return Ok(path);
            }
            looked.push(path);
        }
    }
    Err(WindowsError::NoSymbolTable {
        pdb: id.name.clone(),
        guid: id.guid_string(),
        age: id.age,
        key: id.key(),
        looked,
    })
}

/// Every Windows kernel table file on `dirs` (for fingerprinting a kernel with no RSDS): files
/// named like ntoskrnl PDB tables in each directory and in Volatility's `windows/<pdb>/`.
pub fn all_tables(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let is_table = |p: &Path| {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase());
        n.is_some_and(|n| n.ends_with(".json.xz") || n.ends_with(".json"))
    };
    for dir in dirs {
        let mut places = vec![(dir.clone(), true)];
        for pdb in KERNEL_PDBS {
            places.push((dir.join("windows").join(pdb), false));
            places.push((dir.join(pdb), false));
        }
        for (place, flat) in places {
            let Ok(entries) = std::fs::read_dir(&place) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_table(p))
                .filter(|p| {
                    !flat || {
                        let n = p
                            .file_name()
                            .map(|n| n.to_string_lossy().to_ascii_lowercase());
                        n.is_some_and(|n| KERNEL_PDBS.iter().any(|k| n.starts_with(k)))
                    }
                })
                .collect();
            found.sort();
            out.extend(found);
        }
    }
    out.dedup();
    out
}

/// The PDB names of 64-bit Windows kernels.
pub const KERNEL_PDBS: [&str; 4] = [
    "ntkrnlmp.pdb",
    "ntoskrnl.pdb",
    "ntkrnlpa.pdb",
    "ntkrpamp.pdb",
];

/// The structs and unions the analyses use: all a subset table keeps.
pub const USED_TYPES: &[&str] = &[
    "_CLIENT_ID",
    "_CONTROL_AREA",
    "_EPROCESS",
    "_ETHREAD",
    "_EWOW64PROCESS",
    "_EX_FAST_REF",
    "_FILE_OBJECT",
    "_KLDR_DATA_TABLE_ENTRY",
    "_KPCR",
    "_KPRCB",
    "_KPROCESS",
    "_KTHREAD",
    "_KUSER_SHARED_DATA",
    "_LDR_DATA_TABLE_ENTRY",
    "_LIST_ENTRY",
    "_MMPTE_HARDWARE",
    "_MMPTE_PROTOTYPE",
    "_MMPTE_SOFTWARE",
    "_MMPTE_TRANSITION",
    "_MMSECTION_FLAGS",
    "_MMVAD",
    "_MMVAD_FLAGS",
    "_MMVAD_SHORT",
    "_MM_SESSION_SPACE",
    "_OBJECT_HEADER",
    "_OBJECT_NAME_INFORMATION",
    "_PEB",
    "_PEB_LDR_DATA",
    "_RTL_AVL_TREE",
    "_RTL_BALANCED_NODE",
    "_RTL_USER_PROCESS_PARAMETERS",
    "_SE_AUDIT_PROCESS_CREATION_INFO",
    "_SUBSECTION",
    "_UNICODE_STRING",
];

/// The symbols the analyses and discovery use: all a subset table keeps.
pub const USED_SYMBOLS: &[&str] = &[
    "KdDebuggerDataBlock",
    "KdVersionBlock",
    "KdpDataBlockEncoded",
    "KeNumberProcessors",
    "KiDivideErrorFault",
    "KiDivideErrorFaultShadow",
    "KiKvaShadow",
    "KiProcessorBlock",
    "KiSystemCall32",
    "KiSystemCall32Shadow",
    "KiSystemCall64",
    "KiSystemCall64Shadow",
    "KiWaitAlways",
    "KiWaitNever",
    "MmPfnDatabase",
    "MmPteBase",
    "NtBuildLab",
    "NtBuildNumber",
    "PsActiveProcessHead",
    "PsInitialSystemProcess",
    "PsLoadedModuleList",
];

/// Names the subset a table file holds ([`USED_TYPES`] and [`USED_SYMBOLS`]), so that a cache
/// written by a vmi that used other items is rebuilt rather than trusted.
pub fn subset_key() -> String {
    let all = USED_TYPES
        .iter()
        .chain(USED_SYMBOLS)
        .fold(0xcbf2_9ce4_8422_2325u64, |h, name| {
            name.bytes()
                .chain(std::iter::once(0))
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        });
    format!("{all:016x}")
}

/// A table loaded for this build: the profile and the identity its metadata states.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    /// Symbols (RVAs) and types.
    pub profile: Profile,
    /// The PDB the table says it describes, when its metadata says so.
    pub pdb: Option<PdbId>,
    /// Whether this is the whole table or only [`USED_TYPES`] and [`USED_SYMBOLS`].
    pub complete: bool,
    /// The subset, as an ISF document, ready for the cache.
    pub subset_json: Option<Vec<u8>>,
}

/// Keeps only the map entries whose key is in `wanted` (as raw JSON values), skipping the rest
/// without building them.
struct Filtered<'w>(&'w [&'w str]);

impl<'de> DeserializeSeed<'de> for Filtered<'_> {
    type Value = BTreeMap<String, serde_json::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Filtered<'_> {
    type Value = BTreeMap<String, serde_json::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.0.contains(&key.as_ref()) {
                out.insert(key.into_owned(), map.next_value::<serde_json::Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// The subset of an ISF document: metadata, base types, wanted types and symbols.
struct SubsetDoc;

impl<'de> Visitor<'de> for SubsetDoc {
    type Value = serde_json::Map<String, serde_json::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISF document")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match key.as_str() {
                "metadata" | "base_types" => map.next_value::<serde_json::Value>()?,
                "user_types" => serde_json::to_value(map.next_value_seed(Filtered(USED_TYPES))?)
                    .map_err(serde::de::Error::custom)?,
                "symbols" => serde_json::to_value(map.next_value_seed(Filtered(USED_SYMBOLS))?)
                    .map_err(serde::de::Error::custom)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            out.insert(key, value);
        }
        out.entry("enums")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        Ok(out)
    }
}

/// The bytes of a table file, decompressed when it is `.xz`.
fn read_table_bytes(path: &Path) -> Result<Vec<u8>, WindowsError> {
    let bad = |reason: String| WindowsError::BadSymbolTable {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if bytes.starts_with(b"\xfd7zXZ\0") {
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(12).min(64 << 20));
        lzma_rs::xz_decompress(&mut &bytes[..], &mut out).map_err(|e| bad(e.to_string()))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// The PDB identity an ISF's metadata states (`metadata.windows.pdb`).
pub fn pdb_of_metadata(metadata: &serde_json::Value) -> Option<PdbId> {
    let pdb = metadata.get("windows")?.get("pdb")?;
    let guid_text = pdb.get("GUID")?.as_str()?;
    let age = u32::try_from(pdb.get("age")?.as_u64()?).ok()?;
    let name = pdb.get("database")?.as_str()?.to_owned();
    guid_from_string(guid_text).map(|guid| PdbId { guid, age, name })
}

/// The GUID bytes (as stored in RSDS) of a GUID spelled as [`PdbId::guid_string`] does.
pub fn guid_from_string(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut be = [0u8; 16];
    for (i, b) in be.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut stored = [0u8; 16];
    for (dst, &src) in stored.iter_mut().zip(order.iter()) {
        *dst = be[src];
    }
    Some(stored)
}

/// Loads the table at `path`: only what the analyses use unless `complete`.
pub fn load_table(path: &Path, complete: bool) -> Result<SymbolTable, WindowsError> {
    let bad = |reason: String| WindowsError::BadSymbolTable {
        path: path.to_owned(),
        reason,
    };
    if complete {
        let bytes = read_table_bytes(path)?;
        let mut profile = Profile::from_isf(&bytes).map_err(|e| bad(e.to_string()))?;
        profile.source = path.display().to_string();
        let metadata: Option<serde_json::Value> = {
            let mut de = serde_json::Deserializer::from_slice(&bytes);
            de.deserialize_map(SubsetDoc)
                .ok()
                .and_then(|m| m.get("metadata").cloned())
        };
        return Ok(SymbolTable {
            profile,
            pdb: metadata.as_ref().and_then(pdb_of_metadata),
            complete: true,
            subset_json: None,
        });
    }
    // Decompressing then parsing from a slice beats parsing while decompressing: serde_json
    // reads a slice several times faster than a stream (measured: 80-95 ms + 20 ms against
    // 145 ms for the two threads).
    let bytes = read_table_bytes(path)?;
    let doc = {
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        de.deserialize_map(SubsetDoc)
            .map_err(|e| bad(e.to_string()))?
    };
    let pdb = doc.get("metadata").and_then(pdb_of_metadata);
    let mut doc = doc;
    if let Some(serde_json::Value::Object(meta)) = doc.get_mut("metadata") {
        meta.insert("vmi_subset".into(), subset_key().into());
    }
    let json = serde_json::to_vec(&doc).map_err(|e| bad(e.to_string()))?;
    let mut profile = Profile::from_isf(&json).map_err(|e| bad(e.to_string()))?;
    profile.source = format!("{} (the types vmi uses)", path.display());
    Ok(SymbolTable {
        profile,
        pdb,
        complete: false,
        subset_json: Some(json),
    })
}

/// The on-disk cache of subset tables, keyed by PDB identity, in the directory the Linux
/// profile cache uses.
pub mod cache {
    use super::*;

    /// Where cache files go: `$VMI_CACHE_DIR`, else `$XDG_CACHE_HOME/vmi`, else `~/.cache/vmi`.
    pub fn dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("VMI_CACHE_DIR") {
            return Some(PathBuf::from(d));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("vmi"))
    }

    /// Whether `$VMI_NO_CACHE` is set: the cache is then neither read nor written.
    pub fn disabled() -> bool {
        std::env::var_os("VMI_NO_CACHE").is_some()
    }

    /// The cache file of `id`: `windows-<pdb>-<GUID>-<AGE>.json`.
    pub fn path(id: &PdbId) -> Option<PathBuf> {
        let pdb: String = id
            .pdb_name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(dir()?.join(format!(
            "windows-{pdb}-{}-{}.json",
            id.guid_string(),
            id.age
        )))
    }

    /// The cached subset table of `id`, if there is one.
    pub fn load(id: &PdbId) -> Option<SymbolTable> {
        if disabled() {
            return None;
        }
        let path = path(id)?;
        let bytes = std::fs::read(&path).ok()?;
        // A subset written by a vmi that used other types is not this vmi's: rebuild it.
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let doc = de.deserialize_map(SubsetDoc).ok()?;
        let key = doc.get("metadata")?.get("vmi_subset")?.as_str()?;
        if key != subset_key() {
            return None;
        }
        let mut profile = Profile::from_isf(&bytes).ok()?;
        profile.source = format!("cache {}", path.display());
        Some(SymbolTable {
            profile,
            pdb: Some(id.clone()),
            complete: false,
            subset_json: None,
        })
    }

    /// Every cached table, with its identity (for fingerprinting).
    pub fn entries() -> Vec<(PdbId, PathBuf)> {
        if disabled() {
            return Vec::new();
        }
        let Some(dir) = dir() else {
            return Vec::new();
        };
        let Ok(read) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut out: Vec<(PdbId, PathBuf)> = read
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix("windows-")?.strip_suffix(".json")?;
                let mut parts = rest.rsplitn(3, '-');
                let age = parts.next()?.parse().ok()?;
                let guid = guid_from_string(parts.next()?)?;
                let pdb = parts.next()?.to_owned();
                Some((
                    PdbId {
                        guid,
                        age,
                        name: pdb,
                    },
                    e.path(),
                ))
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// Writes `json` (a subset table) as the cache entry of `id`; nothing when the cache is
    /// disabled. Written then renamed, so a concurrent reader never sees half a file.
    pub fn save(id: &PdbId, json: &[u8]) -> std::io::Result<()> {
        if disabled() {
            return Ok(());
        }
        let Some(path) = path(id) else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, &path)
    }
}

/// The table of `id`: from the cache, else from the search path (then cached), loaded whole
/// when `complete`.
pub fn table_for(
    id: &PdbId,
    dirs: &[PathBuf],
    complete: bool,
) -> Result<SymbolTable, WindowsError> {
    if !complete {
        if let Some(t) = cache::load(id) {
            return Ok(t);
        }
    }
    let path = find_table(id, dirs)?;
    let table = load_table(&path, complete)?;
    if let Some(json) = &table.subset_json {
        // A cache that cannot be written only costs speed.
        let _ = cache::save(id, json);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISF_DIR: &str = "/work/shared/data/windows-isf";

    fn bbed() -> PdbId {
        PdbId {
            guid: [
                0x29, 0x7c, 0xed, 0xbb, 0xfb, 0x55, 0x52, 0xe4, 0x2a, 0xaa, 0x23, 0xf4, 0xb8, 0x67,
                0x7a, 0xd9,
            ],
            age: 1,
            name: "ntkrnlmp.pdb".into(),
        }
    }

    #[test]
    fn guid_spelling_round_trips() {
        let id = bbed();
        assert_eq!(id.guid_string(), "BBED7C2955FBE4522AAA23F4B8677AD9");
        assert_eq!(guid_from_string(&id.guid_string()), Some(id.guid));
        assert_eq!(guid_from_string("xyz"), None);
        assert_eq!(guid_from_string(&"G".repeat(32)), None);
    }

    #[test]
    fn finds_flat_and_volatility_layouts_and_names_every_place_on_failure() {
        let tmp = std::env::temp_dir().join(format!("vmi-win-sym-{}", std::process::id()));
        let vol = tmp.join("windows").join("ntkrnlmp.pdb");
        std::fs::create_dir_all(&vol).unwrap();
        let id = bbed();
        let file = vol.join(format!("{}-1.json.xz", id.guid_string()));
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(find_table(&id, std::slice::from_ref(&tmp)).unwrap(), file);
        std::fs::remove_file(&file).unwrap();
        let flat = tmp.join(format!("ntkrnlmp.pdb-{}-1.json", id.guid_string()));
        std::fs::write(&flat, b"x").unwrap();
        assert_eq!(find_table(&id, std::slice::from_ref(&tmp)).unwrap(), flat);
        std::fs::remove_file(&flat).unwrap();
        let err = find_table(&id, std::slice::from_ref(&tmp)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("BBED7C2955FBE4522AAA23F4B8677AD9"), "{text}");
        assert!(text.contains("ntkrnlmp.pdb"), "{text}");
        assert!(text.contains("windows/ntkrnlmp.pdb/BBED"), "{text}");
        assert!(
            text.contains(&format!("{}", tmp.join("ntkrnlmp.pdb-BBED").display())),
            "{text}"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn subset_keeps_what_the_analyses_use() {
        let dir = PathBuf::from(ISF_DIR);
        if !dir.is_dir() {
            panic!("{ISF_DIR} is missing");
        }
        let path = find_table(&bbed(), &[dir]).unwrap();
        let t = load_table(&path, false).unwrap();
        assert_eq!(t.pdb.as_ref(), Some(&bbed()));
        assert_eq!(
            t.profile
                .field_offset("_EPROCESS", "ActiveProcessLinks")
                .unwrap(),
            0x448
        );
        assert_eq!(
            t.profile.symbol_address("PsActiveProcessHead").unwrap(),
            0xC1E060
        );
        assert!(t.profile.symbol("KiInitialPCR").is_none());
        assert!(t.profile.user_type("_DEVICE_OBJECT").is_none());
        // The cache accepts its own subsets only.
        let tmp = std::env::temp_dir().join(format!("vmi-win-cache-{}", std::process::id()));
        std::env::set_var("VMI_CACHE_DIR", &tmp);
        cache::save(&bbed(), t.subset_json.as_ref().unwrap()).unwrap();
        assert!(cache::load(&bbed()).is_some());
        let stale = String::from_utf8(t.subset_json.clone().unwrap())
            .unwrap()
            .replace(&subset_key(), "0000000000000000");
        cache::save(&bbed(), stale.as_bytes()).unwrap();
        assert!(cache::load(&bbed()).is_none());
        assert_eq!(cache::entries().len(), 1);
        std::fs::remove_dir_all(&tmp).unwrap();
        // Reparsing the cached form gives the same offsets.
        let again = Profile::from_isf(t.subset_json.as_ref().unwrap()).unwrap();
        assert_eq!(again.struct_size("_EPROCESS").unwrap(), 0xA40);
        assert!(t.subset_json.unwrap().len() < 400_000);
    }

    #[test]
    fn truncated_or_corrupt_tables_fail_cleanly() {
        let dir = PathBuf::from(ISF_DIR);
        let path = find_table(&bbed(), &[dir]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let tmp = std::env::temp_dir().join(format!("vmi-win-cut-{}.json.xz", std::process::id()));
        for cut in [bytes.len() / 2, 100, 7] {
            std::fs::write(&tmp, &bytes[..cut]).unwrap();
            let e = load_table(&tmp, false).unwrap_err();
            assert!(matches!(e, WindowsError::BadSymbolTable { .. }), "{e}");
        }
        std::fs::write(
            &tmp,
            b"{\"metadata\": {\"format\": \"6.1.0\"}, \"user_types\": [1,2]}",
        )
        .unwrap();
        assert!(load_table(&tmp, false).is_err());
        std::fs::remove_file(&tmp).unwrap();
    }
}
