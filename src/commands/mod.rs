//! One module per subcommand.

pub mod config;
pub mod mkfs;
pub mod serve;
