//! Output helpers shared by the subcommands: JSON and the progress bar.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tether::Error;

pub(crate) fn print_json(value: &serde_json::Value) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)
        .map_err(|e| Error::io("print", std::io::Error::other(e)))
        .and_then(|()| writeln!(stdout).map_err(|e| Error::io("print", e)))
}

/// A byte progress bar on stderr when a person is watching; hidden otherwise
/// (scripts, pipes, `--json`).
pub(crate) fn progress_bar(total: Option<u64>, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    let style = ProgressStyle::with_template("{bytes:>10}/{total_bytes:10} {wide_bar} {bytes_per_sec:>12} {eta:>4}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `12.3 MiB/s`.
pub(crate) fn rate(bytes: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    format!("{:.1} MiB/s", bytes as f64 / seconds / (1 << 20) as f64)
}
