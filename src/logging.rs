//! Logging: `tracing` events to stderr, filtered by `log.level` (or RUST_LOG).

use keel_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Under systemd (JOURNAL_STREAM set) lines
/// carry no timestamp, since the journal stamps them itself.
pub fn init(config: &LogConfig) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            eprintln!("keel: ignoring RUST_LOG ({e}); using log.level = {:?}", config.level);
            EnvFilter::new(&config.level)
        }),
        _ => EnvFilter::new(&config.level),
    };
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !under_journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let result = match (config.format, under_journal) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Compact, true) => builder.compact().without_time().try_init(),
        (LogFormat::Compact, false) => builder.compact().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("keel: cannot install the logger: {e}");
    }
}
