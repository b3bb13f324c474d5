//! keel-perf's benchmarks as a library, so that tests can drive them.
#![forbid(unsafe_code)]

pub mod device_engine;
pub mod tree;
pub mod ycsb;
