//! Bounded walks over kernel containers: doubly linked lists and maple trees.

pub mod list;
pub mod maple;
