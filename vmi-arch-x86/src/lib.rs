//! x86 paging (being written).
