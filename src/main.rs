//! The `keel` command.
#![forbid(unsafe_code)]
fn main() {}
