//! Every raw declaration of the Xen userspace ABI this crate uses, and nothing else: opaque
//! handle types, the C signatures of the functions resolved at run time, constants, and the
//! `#[repr(C)]` layouts `xen-sys` does not carry.
//!
//! Signatures and layouts are those of Debian bookworm's Xen 4.17 headers (libxen-dev
//! 4.17.7): `xenctrl.h`, `xenforeignmemory.h`, `xenstore.h`, `xenevtchn.h` and
//! `xen/arch-x86/hvm/save.h`. Every function used here has kept its signature from Xen 4.7 to
//! 4.22, which is why one table serves `libxenctrl.so.4.17` to `.4.22`.
//!
//! `xc_domaininfo_t` / `xc_dominfo_t` are deliberately absent: their layout follows the
//! domctl interface version, which changes between Xen releases. Domain names come from
//! xenstore, HVM-or-PV from `xc_domain_hvm_getcontext`.

#![allow(non_camel_case_types)] // C names, so they can be grepped in the Xen headers

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use std::mem::{offset_of, size_of};

/// `vcpu_guest_context` of a 64-bit guest (PV vCPU state), from `xen-sys`.
pub use xen_sys::vcpu_guest_context;

/// `xen_pfn_t` on x86: `unsigned long`.
pub type xen_pfn_t = c_ulong;
/// `xs_transaction_t`.
pub type xs_transaction_t = u32;
/// `XBT_NULL`: no xenstore transaction.
pub const XBT_NULL: xs_transaction_t = 0;
/// `PROT_READ` of `<sys/mman.h>` (Linux), the `prot` of `xenforeignmemory_map`.
pub const PROT_READ: c_int = 1;
/// `PROT_WRITE` of `<sys/mman.h>` (Linux).
pub const PROT_WRITE: c_int = 2;
/// `HVM_SAVE_CODE(CPU)`: the typecode of the per-vCPU `hvm_hw_cpu` save record.
pub const HVM_SAVE_CODE_CPU: u16 = 2;
/// `XEN_X86_FPU_INITIALISED` in `hvm_hw_cpu::flags`.
pub const XEN_X86_FPU_INITIALISED: u32 = 1;
/// Guest page size: 4 KiB (`XC_PAGE_SHIFT` 12).
pub const XC_PAGE_SHIFT: u32 = 12;

/// Opaque `xc_interface`.
#[repr(C)]
pub struct xc_interface {
    _opaque: [u8; 0],
}

/// Opaque `xenforeignmemory_handle`.
#[repr(C)]
pub struct xenforeignmemory_handle {
    _opaque: [u8; 0],
}

/// Opaque `struct xs_handle`.
#[repr(C)]
pub struct xs_handle {
    _opaque: [u8; 0],
}

/// Opaque `xenevtchn_handle`.
#[repr(C)]
pub struct xenevtchn_handle {
    _opaque: [u8; 0],
}

/// `vcpu_guest_context_any_t` on an x86_64 host: the union of the 32- and 64-bit layouts,
/// whose size is the 64-bit one.
#[repr(C)]
#[derive(Clone, Copy)]
pub union vcpu_guest_context_any_t {
    /// The 64-bit layout (the only one vmi reads: 32-bit PV guests are refused).
    pub x64: vcpu_guest_context,
    /// The union's raw bytes.
    pub bytes: [u8; 5168],
}

const _: () = assert!(size_of::<vcpu_guest_context>() == 5168);
const _: () = assert!(size_of::<vcpu_guest_context_any_t>() == 5168);
const _: () = assert!(offset_of!(vcpu_guest_context, user_regs) == 520);
const _: () = assert!(offset_of!(vcpu_guest_context, ctrlreg) == 4984);
const _: () = assert!(offset_of!(vcpu_guest_context, fs_base) == 5144);
const _: () = assert!(offset_of!(vcpu_guest_context, gs_base_user) == 5160);

/// `struct hvm_hw_cpu` (`xen/arch-x86/hvm/save.h`): the per-vCPU HVM save record. Part of
/// the migration format, so its layout is stable across Xen versions. `xen-sys` lacks it.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)] // field names are the header's
pub struct hvm_hw_cpu {
    pub fpu_regs: [u8; 512],
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub dr0: u64,
    pub dr1: u64,
    pub dr2: u64,
    pub dr3: u64,
    pub dr6: u64,
    pub dr7: u64,
    pub cs_sel: u32,
    pub ds_sel: u32,
    pub es_sel: u32,
    pub fs_sel: u32,
    pub gs_sel: u32,
    pub ss_sel: u32,
    pub tr_sel: u32,
    pub ldtr_sel: u32,
    pub cs_limit: u32,
    pub ds_limit: u32,
    pub es_limit: u32,
    pub fs_limit: u32,
    pub gs_limit: u32,
    pub ss_limit: u32,
    pub tr_limit: u32,
    pub ldtr_limit: u32,
    pub idtr_limit: u32,
    pub gdtr_limit: u32,
    pub cs_base: u64,
    pub ds_base: u64,
    pub es_base: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ss_base: u64,
    pub tr_base: u64,
    pub ldtr_base: u64,
    pub idtr_base: u64,
    pub gdtr_base: u64,
    pub cs_arbytes: u32,
    pub ds_arbytes: u32,
    pub es_arbytes: u32,
    pub fs_arbytes: u32,
    pub gs_arbytes: u32,
    pub ss_arbytes: u32,
    pub tr_arbytes: u32,
    pub ldtr_arbytes: u32,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub shadow_gs: u64,
    pub msr_flags: u64,
    pub msr_lstar: u64,
    pub msr_star: u64,
    pub msr_cstar: u64,
    pub msr_syscall_mask: u64,
    pub msr_efer: u64,
    pub msr_tsc_aux: u64,
    pub tsc: u64,
    /// The header's union of `pending_event` and its bitfields.
    pub pending_event: u32,
    pub error_code: u32,
    pub flags: u32,
    pub pad0: u32,
}

impl hvm_hw_cpu {
    /// An all-zero record (every field is an integer, so zero is valid).
    pub const fn zeroed() -> Self {
        // Not `mem::zeroed`: spelled out so no unsafe is needed.
        hvm_hw_cpu {
            fpu_regs: [0; 512],
            rax: 0,
            rbx: 0,
            rcx: 0,
            rdx: 0,
            rbp: 0,
            rsi: 0,
            rdi: 0,
            rsp: 0,
            r8: 0,
            r9: 0,
            r10: 0,
            r11: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
            rip: 0,
            rflags: 0,
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            dr0: 0,
            dr1: 0,
            dr2: 0,
            dr3: 0,
            dr6: 0,
            dr7: 0,
            cs_sel: 0,
            ds_sel: 0,
            es_sel: 0,
            fs_sel: 0,
            gs_sel: 0,
            ss_sel: 0,
            tr_sel: 0,
            ldtr_sel: 0,
            cs_limit: 0,
            ds_limit: 0,
            es_limit: 0,
            fs_limit: 0,
            gs_limit: 0,
            ss_limit: 0,
            tr_limit: 0,
            ldtr_limit: 0,
            idtr_limit: 0,
            gdtr_limit: 0,
            cs_base: 0,
            ds_base: 0,
            es_base: 0,
            fs_base: 0,
            gs_base: 0,
            ss_base: 0,
            tr_base: 0,
            ldtr_base: 0,
            idtr_base: 0,
            gdtr_base: 0,
            cs_arbytes: 0,
            ds_arbytes: 0,
            es_arbytes: 0,
            fs_arbytes: 0,
            gs_arbytes: 0,
            ss_arbytes: 0,
            tr_arbytes: 0,
            ldtr_arbytes: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            shadow_gs: 0,
            msr_flags: 0,
            msr_lstar: 0,
            msr_star: 0,
            msr_cstar: 0,
            msr_syscall_mask: 0,
            msr_efer: 0,
            msr_tsc_aux: 0,
            tsc: 0,
            pending_event: 0,
            error_code: 0,
            flags: 0,
            pad0: 0,
        }
    }
}

// Size and offsets measured with offsetof() against Debian's Xen 4.17 headers.
const _: () = assert!(size_of::<hvm_hw_cpu>() == 1032);
const _: () = assert!(offset_of!(hvm_hw_cpu, rax) == 512);
const _: () = assert!(offset_of!(hvm_hw_cpu, rsp) == 568);
const _: () = assert!(offset_of!(hvm_hw_cpu, r15) == 632);
const _: () = assert!(offset_of!(hvm_hw_cpu, rip) == 640);
const _: () = assert!(offset_of!(hvm_hw_cpu, rflags) == 648);
const _: () = assert!(offset_of!(hvm_hw_cpu, cr0) == 656);
const _: () = assert!(offset_of!(hvm_hw_cpu, cr2) == 664);
const _: () = assert!(offset_of!(hvm_hw_cpu, cr3) == 672);
const _: () = assert!(offset_of!(hvm_hw_cpu, cr4) == 680);
const _: () = assert!(offset_of!(hvm_hw_cpu, dr7) == 728);
const _: () = assert!(offset_of!(hvm_hw_cpu, cs_sel) == 736);
const _: () = assert!(offset_of!(hvm_hw_cpu, cs_limit) == 768);
const _: () = assert!(offset_of!(hvm_hw_cpu, cs_base) == 808);
const _: () = assert!(offset_of!(hvm_hw_cpu, fs_base) == 832);
const _: () = assert!(offset_of!(hvm_hw_cpu, gs_base) == 840);
const _: () = assert!(offset_of!(hvm_hw_cpu, idtr_base) == 872);
const _: () = assert!(offset_of!(hvm_hw_cpu, gdtr_base) == 880);
const _: () = assert!(offset_of!(hvm_hw_cpu, cs_arbytes) == 888);
const _: () = assert!(offset_of!(hvm_hw_cpu, shadow_gs) == 944);
const _: () = assert!(offset_of!(hvm_hw_cpu, msr_lstar) == 960);
const _: () = assert!(offset_of!(hvm_hw_cpu, msr_efer) == 992);
const _: () = assert!(offset_of!(hvm_hw_cpu, flags) == 1024);

/// `void free(void *)` of the C library: frees what `xs_directory` and `xs_read` return.
///
/// Declared directly (std links the C library anyway) rather than resolved at run time.
mod libc_free {
    use std::ffi::c_void;
    extern "C" {
        /// C `free`.
        pub fn free(ptr: *mut c_void);
    }
}
pub use libc_free::free;

/// One of the four Xen libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lib {
    /// libxenctrl (Debian package `libxenmisc4.17`; soname changes with every Xen release).
    Ctrl,
    /// libxenforeignmemory (stable ABI, soname `.1`).
    ForeignMemory,
    /// libxenstore (stable ABI, soname `.4`).
    Store,
    /// libxenevtchn (stable ABI, soname `.1`).
    Evtchn,
}

impl Lib {
    /// Every library, in load order.
    pub const ALL: [Lib; 4] = [Lib::Ctrl, Lib::ForeignMemory, Lib::Store, Lib::Evtchn];

    /// The library's name without `.so`.
    pub const fn name(self) -> &'static str {
        match self {
            Lib::Ctrl => "libxenctrl",
            Lib::ForeignMemory => "libxenforeignmemory",
            Lib::Store => "libxenstore",
            Lib::Evtchn => "libxenevtchn",
        }
    }

    /// The Debian (bookworm) package that ships the run-time library.
    pub const fn debian_package(self) -> &'static str {
        match self {
            Lib::Ctrl => "libxenmisc4.17",
            Lib::ForeignMemory => "libxenforeignmemory1",
            Lib::Store => "libxenstore4",
            Lib::Evtchn => "libxenevtchn1",
        }
    }
}

/// Declares the function table: one field per C function, its library and its type, and the
/// list of `(library, symbol)` pairs the loader resolves (and tests check).
macro_rules! functions {
    ($( $lib:ident $name:ident : fn($($arg:ty),*) $(-> $ret:ty)?; )*) => {
        /// The C functions vmi calls, resolved once when the libraries are loaded. Each is a
        /// plain function pointer, valid while the [`crate::loader::XenLibraries`] that
        /// resolved it is alive (it owns the library handles).
        #[derive(Clone, Copy)]
        pub struct Functions {
            $(
                #[doc = concat!("`", stringify!($name), "` from ", stringify!($lib), ".")]
                pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,
            )*
        }

        /// Every `(library, symbol)` in [`Functions`].
        pub const SYMBOLS: &[(Lib, &str)] = &[ $( (Lib::$lib, stringify!($name)), )* ];

        impl Functions {
            /// Resolves every function through `lookup`, which returns the symbol's address
            /// for a library and a NUL-terminated name.
            ///
            /// # Safety
            ///
            /// `lookup` must return, for each symbol, the address of a function whose C
            /// signature is the one declared here, valid for as long as the table is used.
            pub unsafe fn resolve<E>(
                mut lookup: impl FnMut(Lib, &'static [u8]) -> Result<*const c_void, E>,
            ) -> Result<Functions, E> {
                Ok(Functions {
                    $(
                        $name: {
                            let ptr = lookup(Lib::$lib, concat!(stringify!($name), "\0").as_bytes())?;
                            // SAFETY: the caller guarantees `ptr` is this function with this
                            // signature; a function pointer and a data pointer have the same
                            // size and representation on every host vmi supports (64-bit
                            // Linux), and `lookup` never returns null (libloading reports a
                            // missing symbol as an error).
                            unsafe {
                                std::mem::transmute::<
                                    *const c_void,
                                    unsafe extern "C" fn($($arg),*) $(-> $ret)?,
                                >(ptr)
                            }
                        },
                    )*
                })
            }
        }
    };
}

functions! {
    Ctrl xc_interface_open: fn(*mut c_void, *mut c_void, c_uint) -> *mut xc_interface;
    Ctrl xc_interface_close: fn(*mut xc_interface) -> c_int;
    Ctrl xc_domain_pause: fn(*mut xc_interface, u32) -> c_int;
    Ctrl xc_domain_unpause: fn(*mut xc_interface, u32) -> c_int;
    Ctrl xc_domain_maximum_gpfn: fn(*mut xc_interface, u32, *mut xen_pfn_t) -> c_int;
    Ctrl xc_maximum_ram_page: fn(*mut xc_interface, *mut c_ulong) -> c_int;
    Ctrl xc_domain_get_guest_width: fn(*mut xc_interface, u32, *mut c_uint) -> c_int;
    Ctrl xc_domain_hvm_getcontext: fn(*mut xc_interface, u32, *mut u8, u32) -> c_int;
    Ctrl xc_domain_hvm_getcontext_partial:
        fn(*mut xc_interface, u32, u16, u16, *mut c_void, u32) -> c_int;
    Ctrl xc_vcpu_getcontext: fn(*mut xc_interface, u32, u32, *mut vcpu_guest_context_any_t) -> c_int;
    Ctrl xc_monitor_enable: fn(*mut xc_interface, u32, *mut u32) -> *mut c_void;
    Ctrl xc_monitor_disable: fn(*mut xc_interface, u32) -> c_int;
    ForeignMemory xenforeignmemory_open: fn(*mut c_void, c_uint) -> *mut xenforeignmemory_handle;
    ForeignMemory xenforeignmemory_close: fn(*mut xenforeignmemory_handle) -> c_int;
    ForeignMemory xenforeignmemory_map:
        fn(*mut xenforeignmemory_handle, u32, c_int, usize, *const xen_pfn_t, *mut c_int) -> *mut c_void;
    ForeignMemory xenforeignmemory_unmap: fn(*mut xenforeignmemory_handle, *mut c_void, usize) -> c_int;
    Store xs_open: fn(c_ulong) -> *mut xs_handle;
    Store xs_close: fn(*mut xs_handle);
    Store xs_directory: fn(*mut xs_handle, xs_transaction_t, *const c_char, *mut c_uint) -> *mut *mut c_char;
    Store xs_read: fn(*mut xs_handle, xs_transaction_t, *const c_char, *mut c_uint) -> *mut c_void;
    Evtchn xenevtchn_open: fn(*mut c_void, c_uint) -> *mut xenevtchn_handle;
    Evtchn xenevtchn_close: fn(*mut xenevtchn_handle) -> c_int;
}
