//! Memory dumps (being written).
