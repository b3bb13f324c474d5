//! One module per subcommand.

pub mod config;
pub mod fsck;
pub mod mkfs;
pub mod serve;
