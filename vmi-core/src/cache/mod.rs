//! Caches as wrappers: each implements the trait it wraps, so a session stacks them without
//! the code above noticing.

mod page_cache;
mod tlb;

pub use page_cache::PageCache;
pub use tlb::Tlb;

/// Locks a mutex, ignoring poisoning: caches hold no invariant a panic could break that a
/// lookup would trust (entries are complete values written under the lock).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
