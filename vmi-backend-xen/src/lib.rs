//! Live Xen domains through the Xen userspace libraries (libxenctrl, libxenforeignmemory,
//! libxenstore), opened at run time with `libloading` so vmi builds and runs without Xen.
//!
//! Not yet implemented: filled by the Xen issue.
