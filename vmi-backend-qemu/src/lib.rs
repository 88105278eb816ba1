//! Live QEMU/KVM guests with no patches: guest RAM from a shared memory file or the QEMU
//! process, vCPU registers and pause/resume through QMP and the gdbstub.
//!
//! Not yet implemented: filled by the live QEMU issue.
