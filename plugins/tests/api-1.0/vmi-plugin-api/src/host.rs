//! What the host offers a plugin: the target, its memory, and the OS profile's symbols and
//! types.
//!
//! [`HostInterface`] is the ABI-stable trait the host implements (its methods take and return
//! abi_stable types); [`Host`] wraps it with plain Rust types for plugin code.

// `#[sabi_trait]` generates its impls inside a `const _` block.
#![allow(non_local_definitions)]

use abi_stable::sabi_trait;
use abi_stable::std_types::{ROption, RResult, RSliceMut, RStr, RVec};

use crate::types::{
    HostError, ModuleInfo, ProcessInfo, Region, Registers, Space, SymbolInfo, TargetInfo,
    Translation,
};

/// The host side of the ABI, implemented by vmi. A plugin receives it as a [`HostRef`] and
/// usually calls it through [`Host`].
///
/// Methods may be appended in minor versions (after the last one, which then moves); a
/// plugin calling one the host does not have gets an error, not a crash.
#[sabi_trait]
pub trait HostInterface {
    /// The target and the OS found in it.
    fn target_info(&self) -> TargetInfo;

    /// A vCPU's registers.
    fn vcpu_registers(&self, vcpu: u32) -> RResult<Registers, HostError>;

    /// Fills `buf` from guest-physical `pa`, all or error.
    fn read_physical(&self, pa: u64, buf: RSliceMut<'_, u8>) -> RResult<(), HostError>;

    /// Fills `buf` from virtual `va` in `space`, all or error.
    fn read_virtual(&self, space: Space, va: u64, buf: RSliceMut<'_, u8>)
        -> RResult<(), HostError>;

    /// Translates `va` in `space`.
    fn translate(&self, space: Space, va: u64) -> RResult<Translation, HostError>;

    /// The run-time address of a kernel symbol.
    fn symbol_address(&self, name: RStr<'_>) -> RResult<u64, HostError>;

    /// The kernel symbol at or below `va`, if any.
    fn symbol_at(&self, va: u64) -> ROption<SymbolInfo>;

    /// The size of a kernel struct or union.
    fn struct_size(&self, name: RStr<'_>) -> RResult<u64, HostError>;

    /// The byte offset of a field of a kernel struct or union (`a.b` walks nested members).
    fn field_offset(&self, ty: RStr<'_>, field: RStr<'_>) -> RResult<u64, HostError>;

    /// The processes, as `vmi ps` lists them.
    fn processes(&self) -> RResult<RVec<ProcessInfo>, HostError>;

    /// The loaded kernel modules.
    fn modules(&self) -> RResult<RVec<ModuleInfo>, HostError>;

    /// A process's memory map.
    #[sabi(last_prefix_field)]
    fn regions(&self, pid: u32) -> RResult<RVec<Region>, HostError>;
}

/// The host as a plugin receives it: a borrowed, ABI-stable trait object.
pub type HostRef<'a> = HostInterface_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;

/// [`HostInterface`] with plain Rust types, for plugin code.
pub struct Host<'a> {
    inner: HostRef<'a>,
}

impl<'a> Host<'a> {
    /// Wraps the trait object the host passed.
    pub fn new(inner: HostRef<'a>) -> Host<'a> {
        Host { inner }
    }

    /// The ABI-stable object itself.
    pub fn raw(&self) -> &HostRef<'a> {
        &self.inner
    }

    /// See [`HostInterface::target_info`].
    pub fn target_info(&self) -> TargetInfo {
        self.inner.target_info()
    }

    /// See [`HostInterface::vcpu_registers`].
    pub fn vcpu_registers(&self, vcpu: u32) -> Result<Registers, HostError> {
        self.inner.vcpu_registers(vcpu).into_result()
    }

    /// Fills `buf` from guest-physical `pa`.
    pub fn read_physical(&self, pa: u64, buf: &mut [u8]) -> Result<(), HostError> {
        self.inner.read_physical(pa, buf.into()).into_result()
    }

    /// Fills `buf` from `va` in `space`.
    #[inline]
    pub fn read(&self, space: Space, va: u64, buf: &mut [u8]) -> Result<(), HostError> {
        self.inner.read_virtual(space, va, buf.into()).into_result()
    }

    /// Reads a little-endian `u64`.
    #[inline]
    pub fn read_u64(&self, space: Space, va: u64) -> Result<u64, HostError> {
        let mut b = [0u8; 8];
        self.read(space, va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&self, space: Space, va: u64) -> Result<u32, HostError> {
        let mut b = [0u8; 4];
        self.read(space, va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a NUL-terminated string of at most `max` bytes (the terminator excluded; bytes
    /// that are not UTF-8 are replaced). Stops early at unreadable memory: a string running
    /// into an unmapped page is what precedes the hole. Fails only if not even its first byte
    /// can be read.
    ///
    /// These are the semantics of vmi's own `VirtualMemory::read_cstr`, which vmi's commands
    /// use, so a plugin and vmi read the same string at the same address. The ABI offers
    /// all-or-error reads only, so the string is read in pieces that never cross a 4 KiB page:
    /// each piece is then wholly mapped or wholly not, and the first piece that fails is where
    /// the readable memory ends.
    pub fn read_cstr(&self, space: Space, va: u64, max: usize) -> Result<String, HostError> {
        /// One read: small strings (`comm`, names) cost one call across the boundary.
        const CHUNK: usize = 256;
        const PAGE: u64 = 4096;
        let mut out = Vec::new();
        let mut chunk = [0u8; CHUNK];
        let mut cur = va;
        while out.len() < max {
            let to_page_end = PAGE - cur % PAGE;
            let want = CHUNK
                .min(max - out.len())
                .min(usize::try_from(to_page_end).unwrap_or(CHUNK));
            match self.read(space, cur, &mut chunk[..want]) {
                Ok(()) => {}
                Err(e) if out.is_empty() => return Err(e),
                Err(_) => break,
            }
            if let Some(end) = chunk[..want].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..end]);
                break;
            }
            out.extend_from_slice(&chunk[..want]);
            match cur.checked_add(want as u64) {
                Some(next) => cur = next,
                None => break,
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// See [`HostInterface::translate`].
    pub fn translate(&self, space: Space, va: u64) -> Result<Translation, HostError> {
        self.inner.translate(space, va).into_result()
    }

    /// The run-time address of a kernel symbol.
    pub fn symbol(&self, name: &str) -> Result<u64, HostError> {
        self.inner.symbol_address(name.into()).into_result()
    }

    /// The kernel symbol at or below `va`.
    pub fn symbol_at(&self, va: u64) -> Option<SymbolInfo> {
        self.inner.symbol_at(va).into_option()
    }

    /// The size of a kernel struct or union.
    pub fn struct_size(&self, name: &str) -> Result<u64, HostError> {
        self.inner.struct_size(name.into()).into_result()
    }

    /// The offset of `field` in `ty`.
    pub fn field_offset(&self, ty: &str, field: &str) -> Result<u64, HostError> {
        self.inner
            .field_offset(ty.into(), field.into())
            .into_result()
    }

    /// The processes.
    pub fn processes(&self) -> Result<Vec<ProcessInfo>, HostError> {
        self.inner.processes().into_result().map(RVec::into_vec)
    }

    /// The kernel modules.
    pub fn modules(&self) -> Result<Vec<ModuleInfo>, HostError> {
        self.inner.modules().into_result().map(RVec::into_vec)
    }

    /// A process's memory map.
    pub fn regions(&self, pid: u32) -> Result<Vec<Region>, HostError> {
        self.inner.regions(pid).into_result().map(RVec::into_vec)
    }
}

impl std::fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}
