//! Bounded walks over kernel containers: doubly linked lists, maple trees and xarrays.

pub mod list;
pub mod maple;
pub mod xarray;
