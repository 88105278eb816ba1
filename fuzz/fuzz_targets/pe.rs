//! The PE/CodeView parser of vmi-os-windows: arbitrary bytes as a mapped image's headers,
//! export directory, debug directory and RSDS record. Every accessor either answers or says
//! no; nothing panics or reads out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmi_os_windows::pe::{self, CodeView, Exports, ImageSlice, PeHeaders};

fuzz_target!(|data: &[u8]| {
    let _ = CodeView::parse(data).map(|cv| cv.file_name().len());
    let Ok(h) = PeHeaders::parse(data) else {
        return;
    };
    let _ = (h.machine(), h.size_of_image(), h.image_base(), h.os_version());
    let _ = h.sections().count();
    let _ = h.section(b"POOLCODE");
    let image = ImageSlice { rva: 0, bytes: data };
    if let Some(debug) = h.data_directory(pe::dir::DEBUG) {
        let _ = pe::debug_entries(image, debug).count();
        let _ = pe::codeview_of(image, debug);
    }
    if let Some(export) = h.data_directory(pe::dir::EXPORT) {
        if let Some(bytes) = image.from_rva(export.rva) {
            if let Ok(ex) = Exports::parse(ImageSlice { rva: export.rva, bytes }) {
                let _ = ex.dll_name();
                let _ = ex.named().take(4096).count();
                let _ = ex.find(b"PsLoadedModuleList");
            }
        }
    }
});
