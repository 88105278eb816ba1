//! Results of walks over hostile data: what could be read, and what went wrong on the way.

/// The items a walk produced and the problems it met. A corrupted list or tree yields what
/// was readable plus a warning, never a hang or a panic; callers print the warnings on stderr.
#[derive(Debug)]
pub struct Partial<T> {
    /// What was read.
    pub items: Vec<T>,
    /// Why the walk stopped early or skipped entries.
    pub warnings: Vec<crate::LinuxError>,
}

impl<T> Default for Partial<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            warnings: Vec::new(),
        }
    }
}
