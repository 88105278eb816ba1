//! What the crate's unit tests share.

use std::ops::ControlFlow;

use crate::addr::{Pa, PageSize, Va};
use crate::arch::{AddressSpace, Architecture, Mapping, PageWalk, Permissions, Translation};
use crate::error::TranslationError;
use crate::memory::PhysicalMemory;

/// Paging that maps every virtual address to the same physical address, in 4 KiB pages.
pub(crate) struct Identity;

impl Architecture for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }
    fn translate(
        &self,
        _: &dyn PhysicalMemory,
        _: AddressSpace,
        va: Va,
    ) -> Result<Translation, TranslationError> {
        Ok(Translation {
            pa: Pa::new(va.raw()),
            size: PageSize::Size4K,
            perms: Permissions::ALL,
        })
    }
    fn walk(&self, mem: &dyn PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk {
        PageWalk {
            va,
            space,
            steps: Vec::new(),
            result: self.translate(mem, space, va),
        }
    }
    fn for_each_mapping(
        &self,
        _: &dyn PhysicalMemory,
        _: AddressSpace,
        _: &mut dyn FnMut(Result<Mapping, TranslationError>) -> ControlFlow<()>,
    ) {
    }
}
