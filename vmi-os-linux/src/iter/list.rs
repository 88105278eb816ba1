//! A bounded walk over a kernel `struct list_head` list.
//!
//! Kernel lists are circular: the head is a `list_head` embedded in some owner (`init_task.tasks`,
//! the `modules` variable, `signal->thread_head`) and every entry is a `list_head` embedded in
//! the listed object, which [`container_of`] recovers. A guest controls every pointer of the
//! list, so the walk trusts none of them: it ends, with a warning, at
//!
//! - a `next` that is not a kernel address (NULL, `LIST_POISON1`, a user address, misaligned),
//! - a `next` that cannot be read,
//! - a `next` that revisits an entry already seen (a cycle that does not pass the head),
//! - the entry bound ([`MAX_LIST_ENTRIES`] unless [`ListWalker::with_limit`] says otherwise).
//!
//! Entries walked before the problem are still produced, so an analysis reports what it could
//! read plus the warning (see [`crate::Partial`]).
//!
//! ```no_run
//! # fn demo(session: &vmi_core::Session, kernel: &vmi_os_linux::Kernel)
//! #     -> Result<(), vmi_os_linux::LinuxError> {
//! use vmi_os_linux::iter::list::{container_of, ListOffsets, ListWalker};
//!
//! let list = ListOffsets::resolve(kernel.profile())?;
//! let tasks = kernel.profile().field_offset("task_struct", "tasks")?;
//! let head = kernel.symbol("init_task")?.checked_add(tasks).expect("init_task.tasks");
//! let mut walk = ListWalker::new(kernel.memory(session), list, head, "task list");
//! for entry in walk.by_ref() {
//!     if let Some(task) = container_of(entry, tasks) {
//!         println!("task_struct at {task}");
//!     }
//! }
//! if let Some(warning) = walk.into_warning() {
//!     eprintln!("warning: {warning}");
//! }
//! # Ok(()) }
//! ```

use rustc_hash::FxHashSet;
use vmi_core::{PagingMode, Profile, ProfileError, Va, VirtualMemory};

use crate::error::LinuxError;

/// The default bound on the entries of one list: far above any real kernel list (pid_max is
/// at most 4 Mi, but each walk here is one list, and real task lists hold thousands), small
/// enough that a hostile list ends in well under a second and the visited set stays bounded.
pub const MAX_LIST_ENTRIES: usize = 1 << 20;

/// Where the pointers of a `struct list_head` are, resolved once from the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsets {
    /// Offset of `next`.
    pub next: u64,
}

impl ListOffsets {
    /// Resolves `list_head.next`.
    pub fn resolve(profile: &Profile) -> Result<Self, ProfileError> {
        Ok(Self {
            next: profile.field_offset("list_head", "next")?,
        })
    }
}

/// The address of the object that embeds `entry` at `member_offset` (the kernel's
/// `container_of`), or `None` if the subtraction underflows (a pointer no kernel list holds).
pub fn container_of(entry: Va, member_offset: u64) -> Option<Va> {
    entry.checked_sub(member_offset)
}

/// Whether `va` can be a pointer to a kernel object in an address space of `mode`: in the
/// kernel half of the address space and pointer-aligned.
///
/// The kernel half is the upper canonical half in IA-32e paging: from `0xffff_8000_0000_0000`
/// with 4 levels, from `0xff00_0000_0000_0000` with 5. The Linux layer reads 64-bit kernels
/// only (8-byte pointers), so no address of another paging mode qualifies.
pub fn is_kernel_pointer(mode: PagingMode, va: Va) -> bool {
    let raw = va.raw();
    raw % 8 == 0
        && match mode {
            PagingMode::Ia32e4 => raw >= 0xffff_8000_0000_0000,
            PagingMode::Ia32e5 => raw >= 0xff00_0000_0000_0000,
            _ => false,
        }
}

/// An iterator over the entries of a circular `list_head` list: the address of each entry's
/// `list_head`, the head itself excluded, in `next` order.
///
/// The walk stops at the head (the normal end) or at the first problem, which
/// [`ListWalker::warning`] then describes. Memory: one visited-set slot per entry, bounded by
/// the limit.
pub struct ListWalker<'a> {
    mem: VirtualMemory<'a>,
    offsets: ListOffsets,
    what: &'static str,
    head: Va,
    cursor: Va,
    limit: usize,
    count: usize,
    seen: FxHashSet<Va>,
    done: bool,
    warning: Option<LinuxError>,
}

impl<'a> ListWalker<'a> {
    /// A walk of the list whose head `list_head` is at `head`, read through `mem` (a kernel
    /// address space). `what` names the list in warnings ("task list", "module list").
    pub fn new(mem: VirtualMemory<'a>, offsets: ListOffsets, head: Va, what: &'static str) -> Self {
        Self {
            mem,
            offsets,
            what,
            head,
            cursor: head,
            limit: MAX_LIST_ENTRIES,
            count: 0,
            seen: FxHashSet::default(),
            done: false,
            warning: None,
        }
    }

    /// The same walk, producing at most `limit` entries (more is reported as
    /// [`LinuxError::Unbounded`]).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Entries produced so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Why the walk ended early, once it has ended; `None` while it runs or if it reached the
    /// head again.
    pub fn warning(&self) -> Option<&LinuxError> {
        self.warning.as_ref()
    }

    /// The warning, consuming the walker.
    pub fn into_warning(self) -> Option<LinuxError> {
        self.warning
    }

    fn stop(&mut self, reason: String) -> Option<Va> {
        self.done = true;
        self.warning = Some(LinuxError::Corrupt {
            what: self.what,
            at: self.cursor,
            reason,
        });
        None
    }
}

impl Iterator for ListWalker<'_> {
    type Item = Va;

    fn next(&mut self) -> Option<Va> {
        if self.done {
            return None;
        }
        let Some(slot) = self.cursor.checked_add(self.offsets.next) else {
            return self.stop("the entry's next pointer lies beyond the address space".into());
        };
        let next = match self.mem.read_va(slot) {
            Ok(next) => next,
            Err(e) => return self.stop(format!("its next pointer cannot be read: {e}")),
        };
        if next == self.head {
            self.done = true;
            return None;
        }
        if !is_kernel_pointer(self.mem.space().mode, next) {
            return self.stop(format!(
                "next pointer {next} is not an aligned kernel address"
            ));
        }
        if self.count >= self.limit {
            self.done = true;
            self.warning = Some(LinuxError::Unbounded {
                what: self.what,
                head: self.head,
                limit: self.limit,
            });
            return None;
        }
        if !self.seen.insert(next) {
            return self.stop(format!(
                "next pointer {next} returns to an entry already walked (a cycle that misses \
                 the head)"
            ));
        }
        self.cursor = next;
        self.count += 1;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmi_core::memory::BufferMemory;
    use vmi_core::{AddressSpace, Architecture, Pa, PageWalk, Translation, TranslationError};

    /// Identity "paging" over the kernel half: VA `0xffff_8000_0000_0000 + x` is PA `x`.
    struct DirectMap;

    const BASE: u64 = 0xffff_8000_0000_0000;

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
        fn walk(
            &self,
            mem: &dyn vmi_core::PhysicalMemory,
            space: AddressSpace,
            va: Va,
        ) -> PageWalk {
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

    /// A list in a 4 KiB buffer: `next[i]` is the next pointer of the node at `0x100 * i`
    /// (node 0 is the head).
    fn walk(next: &[u64], limit: usize) -> (Vec<u64>, Option<String>) {
        let mut bytes = vec![0u8; 0x1000];
        for (i, n) in next.iter().enumerate() {
            bytes[i * 0x100..i * 0x100 + 8].copy_from_slice(&n.to_le_bytes());
        }
        let mem = BufferMemory::new(Pa::new(0), bytes);
        let space = AddressSpace {
            root: Pa::new(0),
            mode: PagingMode::Ia32e4,
        };
        let vm = VirtualMemory::new(&mem, &DirectMap, space);
        let mut w = ListWalker::new(vm, ListOffsets { next: 0 }, Va::new(BASE), "test list")
            .with_limit(limit);
        let got: Vec<u64> = w.by_ref().map(|v| (v.raw() - BASE) / 0x100).collect();
        (got, w.into_warning().map(|e| e.to_string()))
    }

    fn node(i: u64) -> u64 {
        BASE + i * 0x100
    }

    #[test]
    fn complete_list() {
        let (got, warn) = walk(&[node(1), node(2), node(3), node(0)], 10);
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(warn, None);
        let (got, warn) = walk(&[node(0)], 10);
        assert!(got.is_empty() && warn.is_none());
    }

    #[test]
    fn cycle_missing_the_head() {
        let (got, warn) = walk(&[node(1), node(2), node(3), node(1)], 10);
        assert_eq!(got, [1, 2, 3]);
        assert!(warn.unwrap().contains("cycle"));
        let (got, warn) = walk(&[node(1), node(1)], 10);
        assert_eq!(got, [1]);
        assert!(warn.unwrap().contains("cycle"));
    }

    #[test]
    fn bad_pointers() {
        let (got, warn) = walk(&[node(1), 0], 10);
        assert_eq!(got, [1]);
        assert!(warn.unwrap().contains("not an aligned kernel address"));
        let (got, warn) = walk(&[node(1), 0xdead_0000_0000_0100], 10);
        assert_eq!(got, [1]);
        assert!(warn.unwrap().contains("not an aligned kernel address"));
        let (got, warn) = walk(&[node(1), node(1) + 4], 10);
        assert_eq!(got, [1]);
        assert!(warn.unwrap().contains("not an aligned kernel address"));
        // Mapped by the direct map but beyond the buffer: unreadable.
        let (got, warn) = walk(&[node(1), BASE + 0x10_0000], 10);
        assert_eq!(got, [1, 0x1000]);
        assert!(warn.unwrap().contains("cannot be read"));
        // The last aligned address: its next pointer would wrap around the address space.
        let (got, warn) = walk(&[!7], 10);
        assert_eq!(got.len(), 1);
        assert!(warn.is_some());
    }

    #[test]
    fn limit() {
        let (got, warn) = walk(&[node(1), node(2), node(3), node(0)], 2);
        assert_eq!(got, [1, 2]);
        assert!(warn.unwrap().contains("no end after 2 entries"));
        // Exactly at the limit the list still ends normally.
        let (got, warn) = walk(&[node(1), node(2), node(0)], 2);
        assert_eq!(got, [1, 2]);
        assert_eq!(warn, None);
    }

    #[test]
    fn container_of_checks() {
        assert_eq!(container_of(Va::new(0x1890), 0x890), Some(Va::new(0x1000)));
        assert_eq!(container_of(Va::new(0x10), 0x890), None);
    }
}
