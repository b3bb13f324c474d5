//! The command line: subcommands and the configuration flags they share.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use keel_config::{ByteSize, Config, ConfigError, Override};

const ABOUT: &str = "Keel: a userspace storage appliance (Redis-protocol key-value and NFSv3 over a Bε-tree, \
                     on NVMe through VFIO or on a file or block device through io_uring)";

const EXAMPLES: &str = "\
Examples:
  Start on the built-in defaults (a 4 GiB data file under ./keel-data;
  the Redis protocol on 127.0.0.1:6379); Ctrl-C stops it cleanly:
    keel serve

  Start from a configuration file (systemd/keel.toml documents every key):
    keel serve --config /etc/keel/keel.toml

  Any key can be set on the command line, after the file:
    keel serve --set reactors.idle=poll --set device.size=16GiB

  Create a volume on a block device, erasing what it holds:
    keel mkfs --device-path /dev/nvme0n1 --force

  Show the device, both superblock copies and the trees of a volume (read only):
    keel inspect --config /etc/keel/keel.toml

  Check a volume: every checksum, reference and allocated page (read only):
    keel fsck --config /etc/keel/keel.toml

  Show the configuration Keel would use:
    keel config --config /etc/keel/keel.toml --reactors 4";

const SERVE_EXAMPLES: &str = "\
Examples:
  keel serve
  keel serve --config /etc/keel/keel.toml
  keel serve --data-dir /srv/keel --kv-listen 0.0.0.0:6379 --reactors 3 --idle poll
  keel serve --backend memory --set device.size=1GiB";

#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = ABOUT,
    after_help = "Run `keel --help` for examples.",
    after_long_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the appliance until SIGINT or SIGTERM.
    ///
    /// Opens the device (creating the data file if needed), creates a volume if
    /// the device is blank, starts one reactor per configured core and the
    /// gateways, prints where the data lives and what it listens on, and stops
    /// cleanly on Ctrl-C (a second Ctrl-C exits at once). Under systemd
    /// (Type=notify) it reports READY, STOPPING and watchdog pings.
    #[command(after_long_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Create a fresh volume on the device.
    ///
    /// Lays out the superblocks, the journal and one data region per shard
    /// (docs/FORMAT.md). Refuses a device that holds a Keel volume or other data
    /// unless --force is given.
    Mkfs(MkfsArgs),
    /// Show the device, both superblock copies, and each shard's tree shape,
    /// cache and space use (read only).
    Inspect(InspectArgs),
    /// Check a volume (read only): superblocks, indirection tables, space
    /// maps, every node and out-of-line value, reachability, allocation
    /// accounting, and the journal. Exits 0 when clean, 4 when problems were found.
    Fsck(FsckArgs),
    /// Print the configuration Keel would use: the file, then the flags.
    Config(ConfigCommandArgs),
    /// Prepare this machine for the nvme backend: hugepages, vfio-pci, IOMMU groups, memlock.
    Setup(crate::setup::SetupArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct MkfsArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Overwrite the device even if it holds a Keel volume or other data.
    #[arg(long)]
    pub force: bool,
    /// Shards of the new volume (default: engine.shards, else one per reactor).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Journal size of the new volume (default: engine.journal_size, else 1/32
    /// of the device between 8MiB and 1GiB).
    #[arg(long, value_name = "SIZE", value_parser = ByteSize::parse)]
    pub journal_size: Option<ByteSize>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Also list every block of every shard's durable checkpoint (kind,
    /// absolute page, pages, node id).
    #[arg(long)]
    pub blocks: bool,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ConfigCommandArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Where the configuration comes from. Flags win over the file; `--set` flags
/// apply last, in the order given.
#[derive(Debug, Args)]
#[command(next_help_heading = "Configuration")]
pub struct ConfigArgs {
    /// Configuration file (TOML). Without one, the built-in defaults apply.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keel's directory (device.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The data file or block device (device.path).
    #[arg(long, value_name = "PATH")]
    pub device_path: Option<PathBuf>,
    /// Device backend (device.backend).
    #[arg(long, value_name = "BACKEND", value_parser = ["uring", "memory", "nvme"])]
    pub backend: Option<String>,
    /// Number of reactors (reactors.count).
    #[arg(long, value_name = "N")]
    pub reactors: Option<u32>,
    /// Idle policy of the reactors (reactors.idle).
    #[arg(long, value_name = "POLICY", value_parser = ["adaptive", "poll"])]
    pub idle: Option<String>,
    /// Address of the Redis-protocol gateway (kv.listen).
    #[arg(long, value_name = "ADDR:PORT")]
    pub kv_listen: Option<String>,
    /// Log level or filter directives (log.level); RUST_LOG wins.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Set any configuration key, e.g. --set kv.max_clients=100 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The flags as overrides, typed flags first, then `--set` in order.
    pub fn overrides(&self) -> Result<Vec<Override>, ConfigError> {
        let mut overrides = Vec::new();
        if let Some(dir) = &self.data_dir {
            overrides.push(Override::new("device.data_dir", path_text(dir, "--data-dir")?, "--data-dir")?);
        }
        if let Some(path) = &self.device_path {
            overrides.push(Override::new("device.path", path_text(path, "--device-path")?, "--device-path")?);
        }
        if let Some(backend) = &self.backend {
            overrides.push(Override::new("device.backend", backend.as_str(), "--backend")?);
        }
        if let Some(count) = self.reactors {
            overrides.push(Override::new("reactors.count", i64::from(count), "--reactors")?);
        }
        if let Some(idle) = &self.idle {
            overrides.push(Override::new("reactors.idle", idle.as_str(), "--idle")?);
        }
        if let Some(listen) = &self.kv_listen {
            overrides.push(Override::new("kv.listen", listen.as_str(), "--kv-listen")?);
        }
        if let Some(level) = &self.log_level {
            overrides.push(Override::new("log.level", level.as_str(), "--log-level")?);
        }
        for arg in &self.set {
            overrides.push(Override::parse_set(arg)?);
        }
        Ok(overrides)
    }

    /// Loads the file (if any) with the flags applied, and validates it.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), &self.overrides()?)
    }
}

fn path_text(path: &std::path::Path, flag: &str) -> Result<String, ConfigError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| ConfigError::BadFlag { flag: flag.to_owned(), reason: "the path is not valid UTF-8".into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_flags_and_set_flags_override_the_defaults() {
        let cli = Cli::try_parse_from([
            "keel",
            "serve",
            "--data-dir",
            "/tmp/k",
            "--backend",
            "memory",
            "--reactors",
            "2",
            "--idle",
            "poll",
            "--kv-listen",
            "0.0.0.0:7000",
            "--set",
            "kv.max_clients=9",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve expected") };
        let config = args.config.load().unwrap();
        assert_eq!(config.device.data_dir, std::path::Path::new("/tmp/k"));
        assert_eq!(config.device.backend, keel_config::Backend::Memory);
        assert_eq!(config.reactors.effective_count(), 2);
        assert_eq!(config.reactors.idle, keel_config::IdleMode::Poll);
        assert_eq!(config.kv.listen.port(), 7000);
        assert_eq!(config.kv.max_clients, 9);
    }

    #[test]
    fn a_bad_flag_value_is_reported_against_its_flag() {
        let cli = Cli::try_parse_from(["keel", "serve", "--kv-listen", "nowhere"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("serve expected") };
        let err = args.config.load().unwrap_err();
        assert!(err.to_string().starts_with("--kv-listen: kv.listen:"), "{err}");
    }
}
