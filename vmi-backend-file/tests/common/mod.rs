//! Helpers of the file backend's integration tests.

#![allow(dead_code)] // each test file uses a different part

pub mod avml;
