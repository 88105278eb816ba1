//! `struct module`: a loaded kernel module, as `/proc/modules` (`m_show` in
//! kernel/module/procfs.c) describes it.
//!
//! Where a module's memory is changed in 6.4:
//!
//! - up to 6.3, `core_layout` and `init_layout` (and `data_layout` on architectures with
//!   `CONFIG_ARCH_WANTS_MODULES_DATA_IN_VMALLOC`) are `struct module_layout {base, size, ...}`;
//!   `/proc/modules` prints `init_layout.size + core_layout.size (+ data_layout.size)` and
//!   `core_layout.base`;
//! - from 6.4, `mem[MOD_MEM_NUM_TYPES]` is an array of `struct module_memory {base, size,
//!   ...}`; `/proc/modules` prints the sum of every `mem[type].size` and `mem[MOD_TEXT].base`
//!   (`MOD_TEXT` is 0).
//!
//! Which one a kernel has is decided by the fields its profile has, not by its version.

use vmi_core::{Profile, ProfileError, Va, VirtualMemory};

use crate::comps::layout::{unexpected_layout, ArrayField, Scalar, StructBuf, MAX_STRUCT_SIZE};
use crate::error::LinuxError;

/// `MODULE_STATE_UNFORMED` of `enum module_state` (LIVE, COMING, GOING, UNFORMED): a module
/// still being set up, which `/proc/modules` does not list.
pub const MODULE_STATE_UNFORMED: u64 = 3;

/// `MOD_TEXT`, the first of `enum mod_mem_type`: the memory whose base `/proc/modules` prints.
const MOD_TEXT: u64 = 0;

/// Where a module's memory is described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryLayout {
    /// 6.4+: `mem[]` of `struct module_memory`.
    Memory {
        /// `module.mem`.
        mem: ArrayField,
        /// `module_memory.base` inside one element.
        base: Scalar,
        /// `module_memory.size` inside one element.
        size: Scalar,
    },
    /// Up to 6.3: `struct module_layout` fields.
    Layouts {
        /// `module.core_layout` (its base is the module's address).
        core: u64,
        /// `module.init_layout` (size 0 once the init sections are freed).
        init: u64,
        /// `module.data_layout`, where the kernel has it.
        data: Option<u64>,
        /// `module_layout.base`.
        base: Scalar,
        /// `module_layout.size`.
        size: Scalar,
    },
}

/// Where the fields of `struct module` are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleOffsets {
    /// `module.list`, its link in the `modules` list.
    pub list: u64,
    name: ArrayField,
    state: Scalar,
    memory: MemoryLayout,
    span: usize,
}

fn shifted(s: Scalar, by: u64, ty: &str, field: &str) -> Result<Scalar, ProfileError> {
    Ok(Scalar {
        offset: s
            .offset
            .checked_add(by)
            .ok_or_else(|| unexpected_layout(ty, field, "offset overflows"))?,
        ..s
    })
}

impl ModuleOffsets {
    /// Resolves the layout, choosing [`MemoryLayout`] by whether `module.mem` exists.
    pub fn resolve(profile: &Profile) -> Result<ModuleOffsets, ProfileError> {
        const T: &str = "module";
        let name = ArrayField::resolve(profile, T, "name")?;
        if name.stride != 1 || name.count == 0 {
            return Err(unexpected_layout(T, "name", "not a char array"));
        }
        let state = Scalar::resolve(profile, T, "state")?;
        let list = profile.field_offset(T, "list")?;
        let memory = if profile.field(T, "mem").is_ok() {
            let mem = ArrayField::resolve(profile, T, "mem")?;
            let base = Scalar::resolve(profile, "module_memory", "base")?;
            let size = Scalar::resolve(profile, "module_memory", "size")?;
            if base.end() > mem.stride || size.end() > mem.stride || mem.count == 0 {
                return Err(unexpected_layout(T, "mem", "element layout does not fit"));
            }
            MemoryLayout::Memory { mem, base, size }
        } else {
            MemoryLayout::Layouts {
                core: profile.field_offset(T, "core_layout")?,
                init: profile.field_offset(T, "init_layout")?,
                data: profile.field_offset(T, "data_layout").ok(),
                base: Scalar::resolve(profile, "module_layout", "base")?,
                size: Scalar::resolve(profile, "module_layout", "size")?,
            }
        };
        let mut end = name.end().max(state.end()).max(list.saturating_add(16));
        match &memory {
            MemoryLayout::Memory { mem, .. } => end = end.max(mem.end()),
            MemoryLayout::Layouts {
                core,
                init,
                data,
                base,
                size,
            } => {
                for layout in [Some(*core), Some(*init), *data].into_iter().flatten() {
                    end = end
                        .max(shifted(*base, layout, T, "base")?.end())
                        .max(shifted(*size, layout, T, "size")?.end());
                }
            }
        }
        let span = usize::try_from(end)
            .ok()
            .filter(|&e| e as u64 <= MAX_STRUCT_SIZE)
            .ok_or_else(|| unexpected_layout(T, "<span>", "fields beyond 64 KiB"))?;
        Ok(ModuleOffsets {
            list,
            name,
            state,
            memory,
            span,
        })
    }

    /// Which memory layout the kernel has.
    pub fn memory_layout(&self) -> &MemoryLayout {
        &self.memory
    }
}

/// One module, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Where the `struct module` is.
    pub addr: Va,
    /// `module.name`, with bytes that are not printable ASCII escaped as `\xNN`.
    pub name: String,
    /// `enum module_state`.
    pub state: u64,
    /// The address `/proc/modules` prints (text base).
    pub base: Va,
    /// The size `/proc/modules` prints.
    pub size: u64,
}

impl ModuleInfo {
    /// Reads the `struct module` at `addr`. A name with no NUL inside `module.name`, or with
    /// bytes no module name has, is returned escaped along with a [`LinuxError::Corrupt`]
    /// describing it: a hostile module should still be listed.
    pub fn read(
        mem: &VirtualMemory<'_>,
        offsets: &ModuleOffsets,
        addr: Va,
    ) -> Result<(ModuleInfo, Option<LinuxError>), LinuxError> {
        let b = StructBuf::read(mem, "module", addr, offsets.span)?;
        let raw = b.array(offsets.name)?;
        let (bytes, terminated) = match raw.iter().position(|&c| c == 0) {
            Some(n) => (&raw[..n], true),
            None => (raw, false),
        };
        let (name, clean) = escape(bytes);
        let warning = (!terminated || !clean || bytes.is_empty()).then(|| {
            b.corrupt(format!(
                "module name \"{name}\" is {}",
                if !terminated {
                    format!("not NUL-terminated within {} bytes", raw.len())
                } else if bytes.is_empty() {
                    "empty".to_owned()
                } else {
                    "not printable ASCII".to_owned()
                }
            ))
        });
        let (base, size) = match &offsets.memory {
            MemoryLayout::Memory {
                mem: array,
                base,
                size,
            } => {
                let mut total = 0u64;
                let mut text = 0u64;
                for i in 0..array.count {
                    let element = |inner: Scalar| {
                        array
                            .element(i, inner.offset, inner.size)
                            .map(|s| Scalar {
                                bits: inner.bits,
                                ..s
                            })
                            .ok_or_else(|| b.corrupt(format!("mem[{i}] outside the structure")))
                    };
                    total = total.saturating_add(b.get(element(*size)?)?);
                    if i == MOD_TEXT {
                        text = b.get(element(*base)?)?;
                    }
                }
                (text, total)
            }
            MemoryLayout::Layouts {
                core,
                init,
                data,
                base,
                size,
            } => {
                let mut total = 0u64;
                for layout in [Some(*core), Some(*init), *data].into_iter().flatten() {
                    total = total.saturating_add(b.get(shifted(*size, layout, "module", "size")?)?);
                }
                (b.get(shifted(*base, *core, "module", "base")?)?, total)
            }
        };
        Ok((
            ModuleInfo {
                addr,
                name,
                state: b.get(offsets.state)?,
                base: Va::new(base),
                size,
            },
            warning,
        ))
    }
}

/// The name with bytes outside printable ASCII (and backslash) escaped; whether none was.
fn escape(bytes: &[u8]) -> (String, bool) {
    let mut out = String::with_capacity(bytes.len());
    let mut clean = true;
    for &c in bytes {
        if c.is_ascii_graphic() && c != b'\\' {
            out.push(char::from(c));
        } else {
            clean = false;
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    (out, clean)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape(b"nls_ascii"), ("nls_ascii".to_owned(), true));
        assert_eq!(
            escape(b"a b\\\xff"),
            ("a\\x20b\\x5c\\xff".to_owned(), false)
        );
    }
}
