//! Bounded walks over guest data: doubly linked `LIST_ENTRY` lists ([`list`]) and the VAD AVL
//! tree ([`tree`]). Each stops at a count and a time bound and at a cycle, and reports why in
//! its warnings.

pub mod list;
pub mod tree;

use std::time::Duration;

/// Bounds of one walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The most entries visited.
    pub max_entries: usize,
    /// The longest a walk may take.
    pub max_time: Duration,
}

impl Bounds {
    /// Processes, threads of a process, modules: far above any real system.
    pub const LIST: Bounds = Bounds {
        max_entries: 65_536,
        max_time: Duration::from_secs(10),
    };
    /// VADs of a process.
    pub const TREE: Bounds = Bounds {
        max_entries: 262_144,
        max_time: Duration::from_secs(10),
    };
}
