//! Bounded walks over kernel containers: doubly linked lists, maple trees, red-black
//! trees and xarrays.

pub mod list;
pub mod maple;
pub mod rbtree;
#[cfg(test)]
mod test_support;
pub mod xarray;
