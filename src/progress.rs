//! Progress bars for long operations (sizing the data file, zeroing the
//! journal). They draw on stderr only when it is a terminal, so logs, pipes
//! and systemd's journal never see them.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting bytes towards `total_bytes`.
pub fn bytes(total_bytes: u64, message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new(total_bytes);
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.into());
    bar
}

/// A bar counting items (nodes checked) towards `total`, which may grow.
pub fn count(total: u64, message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} nodes ({per_sec}, {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.into());
    bar
}

/// A spinner for an operation whose length is unknown.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
