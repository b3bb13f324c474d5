//! `keel config`: the configuration Keel would use, as TOML.

use crate::cli::ConfigCommandArgs;
use crate::error::CliError;

pub fn run(args: &ConfigCommandArgs) -> Result<(), CliError> {
    let config = args.config.load()?;
    print!("{}", config.to_toml());
    println!();
    println!("# Resolved from the defaults above:");
    println!("#   device path:      {}", config.device.image_path().display());
    println!("#   reactors:         {}", config.reactors.effective_count());
    println!("#   shards (at mkfs): {}", config.engine.effective_shards(config.reactors.effective_count()));
    Ok(())
}
