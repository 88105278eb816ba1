//! Results of walks over hostile data: what could be read, and what went wrong on the way.

/// The items a walk produced and the problems it met. A corrupted list or tree yields what
/// was readable plus a warning, never a hang or a panic; callers print the warnings on stderr.
#[derive(Debug)]
pub struct Partial<T, E = crate::error::OsError> {
    /// What was read.
    pub items: Vec<T>,
    /// Why the walk stopped early or skipped entries.
    pub warnings: Vec<E>,
}

impl<T, E> Default for Partial<T, E> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl<T, E> Partial<T, E> {
    /// The same walk with items and warnings converted (an OS crate's own types into the
    /// OS-neutral ones).
    pub fn map<U, F>(self, item: impl FnMut(T) -> U, warning: impl FnMut(E) -> F) -> Partial<U, F> {
        Partial {
            items: self.items.into_iter().map(item).collect(),
            warnings: self.warnings.into_iter().map(warning).collect(),
        }
    }
}
