//! Shared helpers of the vmi benchmarks.
