//! Test support of the walks' unit tests: kernel virtual memory over a plain buffer.

use vmi_core::{AddressSpace, Architecture, Pa, PageWalk, Translation, TranslationError, Va};

/// Identity "paging" over the kernel half: VA `0xffff_8000_0000_0000 + x` is PA `x`.
pub(crate) struct DirectMap;

pub(crate) const BASE: u64 = 0xffff_8000_0000_0000;

impl Architecture for DirectMap {
    fn name(&self) -> &'static str {
        "direct"
    }
    fn translate(
        &self,
        _mem: &dyn vmi_core::PhysicalMemory,
        _space: AddressSpace,
        va: Va,
    ) -> Result<Translation, TranslationError> {
        match va.raw().checked_sub(BASE) {
            Some(pa) => Ok(Translation {
                pa: Pa::new(pa),
                size: vmi_core::PageSize::Size4K,
                perms: vmi_core::Permissions::ALL,
            }),
            None => Err(TranslationError::NotPresent {
                va,
                level: vmi_core::PagingLevel(4),
                entry: 0,
            }),
        }
    }
    fn walk(&self, mem: &dyn vmi_core::PhysicalMemory, space: AddressSpace, va: Va) -> PageWalk {
        PageWalk {
            va,
            space,
            steps: Vec::new(),
            result: self.translate(mem, space, va),
        }
    }
    fn for_each_mapping(
        &self,
        _mem: &dyn vmi_core::PhysicalMemory,
        _space: AddressSpace,
        _visit: &mut dyn FnMut(
            Result<vmi_core::Mapping, TranslationError>,
        ) -> std::ops::ControlFlow<()>,
    ) {
    }
}
