//! The built-in registry: backends, architectures and OS detectors join it by themselves
//! before `main` (through `ctor`), so adding one is adding a crate, not editing a match.
//!
//! Registration pushes a `&'static` node onto a lock-free intrusive list: no allocation and no
//! locking before `main`. Use the `register_*!` macros rather than the nodes directly.

use std::error::Error;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::arch::Architecture;
use crate::os::{DetectOptions, Detection};
use crate::session::{Session, Target};

/// A boxed error from a backend or OS crate's own error enum.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// How a target spec names a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecMatch {
    /// The spec starts with `PREFIX:`.
    Prefix(&'static str),
    /// The spec starts with `PREFIX:`, or is a path to an existing file (dumps).
    PrefixOrPath(&'static str),
}

/// Options a user gives when opening a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open for writing (`--write`).
    pub write: bool,
}

/// A backend: turns a target spec into a [`Target`].
pub struct BackendFactory {
    /// Short name ("file", "qemu", "xen").
    pub name: &'static str,
    /// One line for `vmi --help` and `vmi info`.
    pub description: &'static str,
    /// Which specs it takes.
    pub spec: SpecMatch,
    /// Opens the target; `rest` is the spec with the `PREFIX:` removed.
    pub open: fn(rest: &str, options: &OpenOptions) -> Result<Target, BoxError>,
}

/// What an OS detector runs: whether the guest runs its OS, how sure it is, or why not.
pub type DetectFn = fn(&Session, &DetectOptions) -> Detection;

/// An OS detector: recognises a guest OS and binds its profile.
pub struct OsDetector {
    /// Short name ("linux", "windows").
    pub name: &'static str,
    /// One line for `vmi --help` and `vmi info`.
    pub description: &'static str,
    /// Says whether the guest runs this OS. It must be cheap when the guest does not (every
    /// detector runs on every target) and never fail for another OS's guest.
    pub detect: DetectFn,
}

/// An architecture: the paging logic for vCPUs of one instruction set.
pub struct ArchitectureEntry {
    /// Short name ("x86").
    pub name: &'static str,
    /// Makes the (stateless) paging logic.
    pub make: fn() -> Box<dyn Architecture>,
}

/// A node of a registry list. Statics of this type are created by the `register_*!` macros.
pub struct Registration<T: 'static> {
    item: &'static T,
    next: AtomicPtr<Registration<T>>,
}

impl<T> Registration<T> {
    /// A node for `item`, not yet on any list.
    pub const fn new(item: &'static T) -> Self {
        Self {
            item,
            next: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

/// An append-only list of registrations.
pub struct Registry<T: 'static> {
    head: AtomicPtr<Registration<T>>,
}

impl<T> Registry<T> {
    const fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Adds `node`. Adding the same node twice is ignored.
    pub fn submit(&self, node: &'static Registration<T>) {
        if self.iter_nodes().any(|n| ptr::eq(n, node)) {
            return;
        }
        let node_ptr = ptr::from_ref(node).cast_mut();
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            node.next.store(head, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                node_ptr,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }

    fn iter_nodes(&self) -> impl Iterator<Item = &'static Registration<T>> {
        let mut cur = self.head.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            // SAFETY: every pointer on the list came from a `&'static Registration<T>` in
            // `submit`, so it is valid for 'static and never freed.
            let node = unsafe { cur.as_ref() }?;
            cur = node.next.load(Ordering::Acquire);
            Some(node)
        })
    }

    /// The registered items, in registration order.
    pub fn items(&self) -> Vec<&'static T> {
        let mut v: Vec<&'static T> = self.iter_nodes().map(|n| n.item).collect();
        v.reverse();
        v
    }
}

/// Registered backends.
pub static BACKENDS: Registry<BackendFactory> = Registry::new();
/// Registered OS detectors.
pub static OS_DETECTORS: Registry<OsDetector> = Registry::new();
/// Registered architectures.
pub static ARCHITECTURES: Registry<ArchitectureEntry> = Registry::new();

/// Registers a [`BackendFactory`] static before `main`.
///
/// ```ignore
/// static FILE: BackendFactory = BackendFactory { name: "file", .. };
/// vmi_core::register_backend!(FILE);
/// ```
#[macro_export]
macro_rules! register_backend {
    ($factory:path) => {
        $crate::__register!(
            $crate::registry::BACKENDS,
            $crate::registry::BackendFactory,
            $factory
        );
    };
}

/// Registers an [`OsDetector`] static before `main`.
#[macro_export]
macro_rules! register_os_detector {
    ($detector:path) => {
        $crate::__register!(
            $crate::registry::OS_DETECTORS,
            $crate::registry::OsDetector,
            $detector
        );
    };
}

/// Registers an [`ArchitectureEntry`] static before `main`.
#[macro_export]
macro_rules! register_architecture {
    ($entry:path) => {
        $crate::__register!(
            $crate::registry::ARCHITECTURES,
            $crate::registry::ArchitectureEntry,
            $entry
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register {
    ($registry:path, $ty:path, $item:path) => {
        const _: () = {
            static NODE: $crate::registry::Registration<$ty> =
                $crate::registry::Registration::new(&$item);
            #[::vmi_core::__private::ctor::ctor(unsafe, crate_path = ::vmi_core::__private::ctor)]
            fn register() {
                $registry.submit(&NODE);
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: u32 = 1;
    static B: u32 = 2;
    static NODE_A: Registration<u32> = Registration::new(&A);
    static NODE_B: Registration<u32> = Registration::new(&B);

    #[test]
    fn registry_keeps_order_and_ignores_duplicates() {
        static R: Registry<u32> = Registry::new();
        R.submit(&NODE_A);
        R.submit(&NODE_B);
        R.submit(&NODE_A);
        assert_eq!(R.items(), vec![&1, &2]);
    }
}
