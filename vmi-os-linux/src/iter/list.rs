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
//! - the entry bound ([`MAX_LIST_ENTRIES`] unless [`ListWalker::with_limit`] says otherwise),
//! - the time bound ([`MAX_LIST_TIME`] unless [`ListWalker::with_time_limit`] says otherwise).
//!
//! Entries walked before the problem are still produced, so an analysis reports what it could
//! read plus the warning (see [`crate::Partial`]).
//!
//! # Cost
//!
//! A walk is linear in the entries it produces: one read per entry and one insertion into a
//! hash set for cycle detection (amortised O(1); its memory is bounded by the entry bound). The
//! time bound covers the caller's work on each entry too, since the clock is checked at each
//! step: a list flooded with a million entries whose owners are each expensive to read (a
//! `ps` over a million fake tasks) still ends at the bound.
//!
//! Walks nest (`ps` walks each process's thread list while walking the task list), and a
//! guest can make every inner list long, or the same long list. The outer walk's clock covers
//! its inner walks, but an inner walk running when the outer deadline passes would go on to
//! its own bound, one more bound per level of nesting. So the outermost walk on a thread sets
//! a deadline that every walk started while it lives inherits (the earlier of the two): the
//! whole analysis ends at the outer walk's bound, however its inner walks are arranged.
//!
//! Measured on the fixtures (`tests/hostile_flood.rs`, dev profile): a task list flooded with
//! a million made-up tasks, each a full copy of a real one, is walked to the entry bound in
//! 1.2 s (about 1.1 µs per process, thread list included); with a million bare `list_head`s,
//! 0.5 s; a million made-up tasks sharing one thread list of a million entries end at the
//! time bound after about 30 processes.
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

use std::cell::Cell;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;
use vmi_core::{PagingMode, Profile, ProfileError, Va, VirtualMemory};

use crate::error::LinuxError;

/// The default bound on the entries of one list: far above any real kernel list (pid_max is
/// at most 4 Mi, but each walk here is one list, and real task lists hold thousands), small
/// enough that a hostile list ends in well under a second and the visited set stays bounded.
pub const MAX_LIST_ENTRIES: usize = 1 << 20;

/// The default bound on the time of one walk, the caller's work on each entry included, and of
/// every walk nested in it. A `ps` of a real guest with 10,000 processes takes well under a
/// second even through a slow live backend; a guest that floods its task list with a million
/// entries is cut here, with a warning, instead of running for minutes.
pub const MAX_LIST_TIME: Duration = Duration::from_secs(5);

thread_local! {
    /// The deadline of the outermost live walk on this thread, and that walk's serial number
    /// (so only it clears the slot). Const-initialised and without a destructor.
    static OUTER_DEADLINE: Cell<Option<(u64, Instant)>> = const { Cell::new(None) };
    /// Serial numbers of walks, to tell the owner of [`OUTER_DEADLINE`].
    static NEXT_SERIAL: Cell<u64> = const { Cell::new(0) };
}

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
/// the limit. Time: bounded by [`MAX_LIST_TIME`] from its creation, or by the deadline of the
/// walk it is nested in (see the module docs); a walker is therefore not `Send`, as the
/// nesting is tracked per thread.
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
    started: Instant,
    /// When this walk stops: its own bound, or the enclosing walk's deadline if earlier.
    deadline: Instant,
    /// The bound `deadline` came from, for the warning.
    time_limit: Duration,
    /// Whether this walk is the outermost one (it set [`OUTER_DEADLINE`] and clears it).
    serial: Option<u64>,
    /// The deadline nesting is per thread: keep walkers on theirs.
    _not_send: PhantomData<*const ()>,
}

impl<'a> ListWalker<'a> {
    /// A walk of the list whose head `list_head` is at `head`, read through `mem` (a kernel
    /// address space). `what` names the list in warnings ("task list", "module list").
    pub fn new(mem: VirtualMemory<'a>, offsets: ListOffsets, head: Va, what: &'static str) -> Self {
        let started = Instant::now();
        let mut walk = Self {
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
            started,
            deadline: started,
            time_limit: MAX_LIST_TIME,
            serial: None,
            _not_send: PhantomData,
        };
        walk.set_time_limit(MAX_LIST_TIME);
        walk
    }

    /// The same walk, producing at most `limit` entries (more is reported as
    /// [`LinuxError::Unbounded`]).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The same walk, ending after `limit` from its creation (reported as
    /// [`LinuxError::TimedOut`]), or at the deadline of the walk it is nested in if that comes
    /// first. A nested walk cannot extend its enclosing walk's deadline.
    pub fn with_time_limit(mut self, limit: Duration) -> Self {
        self.set_time_limit(limit);
        self
    }

    fn set_time_limit(&mut self, limit: Duration) {
        // A limit too large for the clock is no limit: a day stands in for it.
        let own = self
            .started
            .checked_add(limit)
            .or_else(|| self.started.checked_add(Duration::from_secs(86_400)))
            .unwrap_or(self.started);
        self.time_limit = limit;
        match (self.serial, OUTER_DEADLINE.get()) {
            // The outermost walk changes its own bound, and the one its nested walks inherit.
            (Some(serial), _) => {
                self.deadline = own;
                OUTER_DEADLINE.set(Some((serial, own)));
            }
            // Nested in a live walk: never later than it. An outer deadline that has passed
            // is one whose walk was leaked (`mem::forget`) or is about to stop anyway: it does
            // not hold new walks back.
            (None, Some((_, outer))) if outer > self.started => {
                self.deadline = own.min(outer);
            }
            (None, _) => {
                let serial = NEXT_SERIAL.get();
                NEXT_SERIAL.set(serial.wrapping_add(1));
                OUTER_DEADLINE.set(Some((serial, own)));
                self.serial = Some(serial);
                self.deadline = own;
            }
        }
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
    pub fn into_warning(mut self) -> Option<LinuxError> {
        self.warning.take()
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

impl Drop for ListWalker<'_> {
    fn drop(&mut self) {
        if let Some(serial) = self.serial {
            if OUTER_DEADLINE.get().is_some_and(|(s, _)| s == serial) {
                OUTER_DEADLINE.set(None);
            }
        }
    }
}

impl Iterator for ListWalker<'_> {
    type Item = Va;

    fn next(&mut self) -> Option<Va> {
        if self.done {
            return None;
        }
        // Checked before each step, so the caller's work on the previous entry counts too.
        let now = Instant::now();
        if now >= self.deadline {
            self.done = true;
            self.warning = Some(LinuxError::TimedOut {
                what: self.what,
                head: self.head,
                entries: self.count,
                elapsed: now.saturating_duration_since(self.started),
                limit: self.time_limit,
                inherited: now.saturating_duration_since(self.started) < self.time_limit,
            });
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
    use crate::iter::test_support::{DirectMap, BASE};
    use vmi_core::memory::BufferMemory;
    use vmi_core::{AddressSpace, Pa};

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

    /// The list of `walk`'s layout, as a walker with `f` applied.
    fn walker<'a>(
        mem: &'a BufferMemory,
        f: impl FnOnce(ListWalker<'a>) -> ListWalker<'a>,
    ) -> ListWalker<'a> {
        let space = AddressSpace {
            root: Pa::new(0),
            mode: PagingMode::Ia32e4,
        };
        let vm = VirtualMemory::new(mem, &DirectMap, space);
        f(ListWalker::new(
            vm,
            ListOffsets { next: 0 },
            Va::new(BASE),
            "test list",
        ))
    }

    fn ring(n: usize) -> BufferMemory {
        let mut bytes = vec![0u8; 0x100 * n];
        for i in 0..n {
            let next = node(((i + 1) % n) as u64);
            bytes[i * 0x100..i * 0x100 + 8].copy_from_slice(&next.to_le_bytes());
        }
        BufferMemory::new(Pa::new(0), bytes)
    }

    #[test]
    fn time_limit() {
        let mem = ring(8);
        let mut w = walker(&mem, |w| w.with_time_limit(Duration::ZERO));
        assert_eq!(w.by_ref().count(), 0);
        let warning = w.into_warning().unwrap();
        assert!(matches!(
            warning,
            LinuxError::TimedOut {
                entries: 0,
                inherited: false,
                ..
            }
        ));
        assert!(warning
            .to_string()
            .contains("the time bound of a list walk"));
        // The clock counts the caller's work between entries.
        let mut w = walker(&mem, |w| w.with_time_limit(Duration::from_millis(30)));
        assert!(w.next().is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(w.next().is_none());
        assert!(matches!(
            w.into_warning(),
            Some(LinuxError::TimedOut { entries: 1, .. })
        ));
        // A generous bound changes nothing.
        let mut w = walker(&mem, |w| w.with_time_limit(Duration::MAX));
        assert_eq!(w.by_ref().count(), 7);
        assert!(w.into_warning().is_none());
    }

    #[test]
    fn nested_walks_share_the_outer_deadline() {
        let mem = ring(8);
        let mut outer = walker(&mem, |w| w.with_time_limit(Duration::from_millis(30)));
        assert!(outer.next().is_some());
        // A nested walk with a long bound of its own still ends at the outer deadline.
        let mut inner = walker(&mem, |w| w.with_time_limit(Duration::from_secs(60)));
        assert!(inner.next().is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(inner.next().is_none());
        let warning = inner.into_warning().unwrap();
        assert!(
            matches!(
                warning,
                LinuxError::TimedOut {
                    inherited: true,
                    ..
                }
            ),
            "{warning}"
        );
        assert!(warning.to_string().contains("nested"), "{warning}");
        assert!(outer.next().is_none());
        drop(outer);
        // Once the outer walk is gone, a new walk has its own bound again.
        let mut fresh = walker(&mem, |w| w);
        assert_eq!(fresh.by_ref().count(), 7);
        assert!(fresh.into_warning().is_none());
    }

    #[test]
    fn a_leaked_outer_walk_does_not_stop_later_walks() {
        let mem = ring(4);
        std::mem::forget(walker(&mem, |w| w.with_time_limit(Duration::ZERO)));
        let mut w = walker(&mem, |w| w);
        assert_eq!(w.by_ref().count(), 3);
        assert!(w.into_warning().is_none());
    }

    #[test]
    fn container_of_checks() {
        assert_eq!(container_of(Va::new(0x1890), 0x890), Some(Va::new(0x1000)));
        assert_eq!(container_of(Va::new(0x10), 0x890), None);
    }
}
