//! Disk images and filesystems of a guest, and change monitoring.
//!
//! Not yet implemented.
