//! Safe wrappers over the Xen handles: every call into the libraries goes through here.
//!
//! Each wrapper reads `errno` right after a failing call (libxenctrl and libxenforeignmemory
//! return -1 or NULL and set it).

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};
use std::io;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::error::XenError;
use crate::loader::XenLibraries;
use crate::sys::{self, hvm_hw_cpu, vcpu_guest_context_any_t, xen_pfn_t, Functions};

/// An open `xc_interface` and `xenforeignmemory_handle`: the privileged interfaces of dom0.
pub struct Xen {
    libs: Arc<XenLibraries>,
    xc: *mut sys::xc_interface,
    fmem: *mut sys::xenforeignmemory_handle,
}

// SAFETY: libxenctrl handles opened without XC_OPENFLAG_NON_REENTRANT may be used from any
// thread, concurrently (xenctrl.h); a xenforeignmemory handle is a file descriptor on
// privcmd whose ioctls are thread-safe. The pointers are owned by this value and closed once.
unsafe impl Send for Xen {}
// SAFETY: as for Send: every call through `&Xen` is one thread-safe library call.
unsafe impl Sync for Xen {}

impl std::fmt::Debug for Xen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xen").field("libs", &self.libs).finish()
    }
}

impl Xen {
    /// Opens the control and foreign-memory interfaces. Fails with [`XenError::NotDom0`]
    /// where there is no Xen or no privilege.
    pub fn open(libs: Arc<XenLibraries>) -> Result<Xen, XenError> {
        let f = *libs.functions();
        // SAFETY: NULL loggers select libxenctrl's default (stderr) logger; flags 0.
        let xc = unsafe { (f.xc_interface_open)(ptr::null_mut(), ptr::null_mut(), 0) };
        if xc.is_null() {
            return Err(XenError::NotDom0 {
                call: "xc_interface_open",
                source: io::Error::last_os_error(),
            });
        }
        let mut xen = Xen {
            libs,
            xc,
            fmem: ptr::null_mut(),
        };
        // SAFETY: NULL logger selects the default; flags 0.
        let fmem = unsafe { (f.xenforeignmemory_open)(ptr::null_mut(), 0) };
        if fmem.is_null() {
            // `xen` drops here and closes the xc handle.
            return Err(XenError::NotDom0 {
                call: "xenforeignmemory_open",
                source: io::Error::last_os_error(),
            });
        }
        xen.fmem = fmem;
        Ok(xen)
    }

    fn f(&self) -> &Functions {
        self.libs.functions()
    }

    /// The loaded libraries.
    pub fn libraries(&self) -> &XenLibraries {
        &self.libs
    }

    /// Opens xenstore (closed when the returned value drops).
    pub fn xenstore(&self) -> Result<Xenstore<'_>, XenError> {
        // SAFETY: flags 0: the default connection (socket or /dev/xen/xenbus).
        let h = unsafe { (self.f().xs_open)(0) };
        if h.is_null() {
            return Err(XenError::NotDom0 {
                call: "xs_open",
                source: io::Error::last_os_error(),
            });
        }
        Ok(Xenstore { xen: self, h })
    }

    fn check(rc: c_int) -> io::Result<c_int> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    /// `xc_domain_pause`.
    pub fn pause(&self, domid: u32) -> io::Result<()> {
        // SAFETY: `xc` is an open handle; plain integer argument.
        Self::check(unsafe { (self.f().xc_domain_pause)(self.xc, domid) }).map(drop)
    }

    /// `xc_domain_unpause`.
    pub fn unpause(&self, domid: u32) -> io::Result<()> {
        // SAFETY: `xc` is an open handle; plain integer argument.
        Self::check(unsafe { (self.f().xc_domain_unpause)(self.xc, domid) }).map(drop)
    }

    /// `xc_domain_maximum_gpfn`: the highest guest frame number of the domain.
    pub fn maximum_gpfn(&self, domid: u32) -> io::Result<u64> {
        let mut gpfn: xen_pfn_t = 0;
        // SAFETY: `xc` is open; `gpfn` is a valid out-pointer for the call's duration.
        Self::check(unsafe { (self.f().xc_domain_maximum_gpfn)(self.xc, domid, &mut gpfn) })?;
        Ok(gpfn)
    }

    /// `xc_maximum_ram_page`: the highest machine frame of the host (bounds PV guests'
    /// frames, which are machine frames).
    pub fn maximum_ram_page(&self) -> io::Result<u64> {
        let mut mfn: c_ulong = 0;
        // SAFETY: `xc` is open; `mfn` is a valid out-pointer for the call's duration.
        Self::check(unsafe { (self.f().xc_maximum_ram_page)(self.xc, &mut mfn) })?;
        Ok(mfn)
    }

    /// `xc_domain_get_guest_width`: 8 for a 64-bit guest, 4 for 32-bit (bytes).
    pub fn guest_width(&self, domid: u32) -> io::Result<u32> {
        let mut width: c_uint = 0;
        // SAFETY: `xc` is open; `width` is a valid out-pointer for the call's duration.
        Self::check(unsafe { (self.f().xc_domain_get_guest_width)(self.xc, domid, &mut width) })?;
        Ok(width)
    }

    /// `xc_domain_hvm_getcontext` with no buffer: the size of the domain's HVM context.
    /// Fails with `EINVAL` for a PV domain.
    pub fn hvm_context_size(&self, domid: u32) -> io::Result<u32> {
        // SAFETY: `xc` is open; a NULL buffer of size 0 asks for the size only.
        let rc = unsafe { (self.f().xc_domain_hvm_getcontext)(self.xc, domid, ptr::null_mut(), 0) };
        Self::check(rc).map(|n| n.unsigned_abs())
    }

    /// The `hvm_hw_cpu` save record of vCPU `vcpu`.
    pub fn hvm_cpu(&self, domid: u32, vcpu: u16) -> io::Result<hvm_hw_cpu> {
        let mut cpu = hvm_hw_cpu::zeroed();
        let size = u32::try_from(std::mem::size_of::<hvm_hw_cpu>()).unwrap_or(u32::MAX);
        // SAFETY: `xc` is open; `cpu` is a writable buffer of exactly `size` bytes, the size of
        // the record typecode HVM_SAVE_CODE(CPU) names; the library writes at most `size`.
        let rc = unsafe {
            (self.f().xc_domain_hvm_getcontext_partial)(
                self.xc,
                domid,
                sys::HVM_SAVE_CODE_CPU,
                vcpu,
                ptr::from_mut(&mut cpu).cast::<c_void>(),
                size,
            )
        };
        Self::check(rc)?;
        Ok(cpu)
    }

    /// The PV vCPU context of `vcpu` (`xc_vcpu_getcontext`), as the bytes of the 64-bit
    /// `vcpu_guest_context`.
    pub fn pv_context(&self, domid: u32, vcpu: u32) -> io::Result<Box<[u8; 5168]>> {
        let mut ctx = Box::new(vcpu_guest_context_any_t { bytes: [0; 5168] });
        // SAFETY: `xc` is open; `ctx` is a writable `vcpu_guest_context_any_t`, which is what
        // the call fills.
        let rc = unsafe { (self.f().xc_vcpu_getcontext)(self.xc, domid, vcpu, &mut *ctx) };
        Self::check(rc)?;
        // SAFETY: every field of the union is plain integers, so its bytes are initialised
        // (zeroed above, then written by the library) and any value is a valid `[u8; N]`.
        let bytes = unsafe { ctx.bytes };
        Ok(Box::new(bytes))
    }

    /// Maps `pfns` of `domid` with `prot`, filling `errs` (one negative errno or 0 per
    /// frame). `None` (with errno) when nothing could be mapped.
    pub fn map(
        &self,
        domid: u32,
        prot: c_int,
        pfns: &[xen_pfn_t],
        errs: &mut [c_int],
    ) -> io::Result<NonNull<u8>> {
        if pfns.len() != errs.len() || pfns.is_empty() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: `fmem` is open; `pfns` and `errs` are valid arrays of `pfns.len()`
        // elements for the duration of the call (checked equal above).
        let p = unsafe {
            (self.f().xenforeignmemory_map)(
                self.fmem,
                domid,
                prot,
                pfns.len(),
                pfns.as_ptr(),
                errs.as_mut_ptr(),
            )
        };
        NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)
    }

    /// Unmaps what [`Xen::map`] returned.
    ///
    /// # Safety
    ///
    /// `addr` and `frames` must be a mapping [`Xen::map`] returned on this handle, not yet
    /// unmapped, and no reference into it may outlive this call.
    pub unsafe fn unmap(&self, addr: NonNull<u8>, frames: usize) {
        // SAFETY: the caller guarantees this is a live mapping of `frames` frames made on
        // `fmem`. A failure leaves the mapping in place (leaked): nothing else can be done.
        let _ = unsafe {
            (self.f().xenforeignmemory_unmap)(self.fmem, addr.as_ptr().cast::<c_void>(), frames)
        };
    }
}

impl Drop for Xen {
    fn drop(&mut self) {
        let f = *self.f();
        if !self.fmem.is_null() {
            // SAFETY: opened by `xenforeignmemory_open`, closed once here. Mappings were
            // unmapped by their owners, which hold an `Arc<Xen>` and so dropped before this.
            let _ = unsafe { (f.xenforeignmemory_close)(self.fmem) };
        }
        // SAFETY: opened by `xc_interface_open` (never null once `Xen` exists), closed once.
        let _ = unsafe { (f.xc_interface_close)(self.xc) };
    }
}

/// An open xenstore connection.
pub struct Xenstore<'a> {
    xen: &'a Xen,
    h: *mut sys::xs_handle,
}

impl Xenstore<'_> {
    /// The entries of directory `path`; `None` if it does not exist.
    pub fn directory(&self, path: &str) -> Option<Vec<String>> {
        let cpath = CString::new(path).ok()?;
        let mut num: c_uint = 0;
        // SAFETY: `h` is open; `cpath` is NUL-terminated; `num` a valid out-pointer.
        let list =
            unsafe { (self.xen.f().xs_directory)(self.h, sys::XBT_NULL, cpath.as_ptr(), &mut num) };
        if list.is_null() {
            return None;
        }
        let count = usize::try_from(num).unwrap_or(0);
        let mut out = Vec::with_capacity(count.min(4096));
        for i in 0..count {
            // SAFETY: xs_directory returns an array of `num` pointers (in one allocation).
            let entry: *mut c_char = unsafe { list.wrapping_add(i).read() };
            if !entry.is_null() {
                // SAFETY: each entry is a NUL-terminated string inside the same allocation.
                let s = unsafe { CStr::from_ptr(entry) };
                out.push(s.to_string_lossy().into_owned());
            }
        }
        // SAFETY: the array and its strings are one malloc'd block the caller must free.
        unsafe { sys::free(list.cast::<c_void>()) };
        Some(out)
    }

    /// The value at `path`; `None` if it does not exist.
    pub fn read(&self, path: &str) -> Option<String> {
        let cpath = CString::new(path).ok()?;
        let mut len: c_uint = 0;
        // SAFETY: `h` is open; `cpath` is NUL-terminated; `len` a valid out-pointer.
        let value =
            unsafe { (self.xen.f().xs_read)(self.h, sys::XBT_NULL, cpath.as_ptr(), &mut len) };
        if value.is_null() {
            return None;
        }
        let len = usize::try_from(len).unwrap_or(0);
        // SAFETY: xs_read returns a malloc'd buffer of `len` bytes (plus a NUL).
        let bytes = unsafe { std::slice::from_raw_parts(value.cast::<u8>(), len) };
        let s = String::from_utf8_lossy(bytes).into_owned();
        // SAFETY: the buffer is malloc'd and owned by the caller; `bytes` is not used again.
        unsafe { sys::free(value) };
        Some(s)
    }
}

impl Drop for Xenstore<'_> {
    fn drop(&mut self) {
        // SAFETY: opened by `xs_open`, closed once here.
        unsafe { (self.xen.f().xs_close)(self.h) };
    }
}
