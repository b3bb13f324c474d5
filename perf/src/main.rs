//! keel-perf: Keel's benchmarks.
#![forbid(unsafe_code)]
fn main() {}
