//! `[log]`: what Keel logs and how.

use serde::{Deserialize, Serialize};

use crate::error::Problem;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event, with the time (left out under systemd,
    /// whose journal stamps lines itself).
    #[default]
    Text,
    /// Shorter lines: no span context.
    Compact,
    /// One JSON object per line, for log collectors.
    Json,
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table of [log] settings")]
pub struct LogConfig {
    /// A level ("info") or per-module directives ("info,keel_reactor=debug").
    /// The RUST_LOG environment variable, when set, wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".to_owned(), format: LogFormat::Text }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), Problem> {
        // A bare word is a level; the filter syntax would take a typo such as
        // "inf" for a module name and silently log nothing useful.
        let bare_word = !self.level.contains(['=', ',', ':', '[']);
        if bare_word && !LEVELS.contains(&self.level.trim().to_ascii_lowercase().as_str()) {
            return Err(Problem::new(
                "log.level",
                format!(
                    "\"{}\" is not a level (use one of {LEVELS:?}, or directives like \"info,keel_reactor=debug\")",
                    self.level
                ),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.level).map(|_| ()).map_err(|e| {
            Problem::new("log.level", format!("\"{}\" is not a level or filter directive: {e}", self.level))
        })
    }
}
