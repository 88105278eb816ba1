//! Kernel structures, one file each: where their fields are (resolved once from the profile
//! into typed offsets) and how to read them.

pub mod bpf;
pub mod cgroup;
pub mod cred;
pub mod fdtable;
pub mod file;
pub mod idt;
pub mod inet;
pub mod inode;
pub mod kobject;
pub mod layout;
pub mod mm;
pub mod module;
pub mod mount;
pub mod netlink;
pub mod nsproxy;
pub mod open_how;
pub mod percpu;
pub mod pid;
pub mod printk;
pub mod pt_regs;
pub mod sock;
pub mod socket;
pub mod task;
pub mod unix_sock;
pub mod vma;
