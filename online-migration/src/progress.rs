//! Progress of a batched walk (a backfill, say): a bar with rate and ETA on a terminal, a
//! log line every few seconds otherwise. Silent when `info` logging is off
//! (`RUST_LOG=warn`).
//!
//! ```
//! let mut progress = online_migration::progress::Progress::start("backfill", "accounts", 1_000);
//! progress.advance(250);
//! progress.finish();
//! ```

use std::time::{Duration, Instant};

/// How often a progress line is logged when there is no bar.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Counts rows done out of `total` and reports it.
pub struct Progress {
    /// What walks (`backfill`).
    what: &'static str,
    /// What it counts (`deployments`).
    unit: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    #[cfg(feature = "progress-bar")]
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Starts reporting on `what`, a walk over `total` `unit` (the server's estimate).
    pub fn start(what: &'static str, unit: &'static str, total: u64) -> Self {
        let now = Instant::now();
        Self {
            what,
            unit,
            total,
            done: 0,
            started: now,
            last_line: now,
            #[cfg(feature = "progress-bar")]
            bar: terminal_bar(what, unit, total),
        }
    }

    /// `n` more are done.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        #[cfg(feature = "progress-bar")]
        if let Some(bar) = &self.bar {
            // As the line: the estimate grows to what was walked.
            bar.set_length(self.total.max(self.done));
            bar.inc(n);
            return;
        }
        if self.last_line.elapsed() >= LOG_EVERY {
            self.last_line = Instant::now();
            tracing::info!("{}", self.line());
        }
    }

    /// Removes the bar, if any.
    pub fn finish(self) {
        #[cfg(feature = "progress-bar")]
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }

    /// `backfill progress: 120000/1000000 deployments (12.0%), 45000/s, ETA 19s`.
    ///
    /// The total is the server's estimate at the start (MariaDB's is a guess), and the
    /// application inserts rows meanwhile: once the walk has passed it, the total is
    /// what was walked, and the line never reads past 100%.
    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / seconds;
        let total = self.total.max(self.done);
        let left = (total - self.done) as f64;
        let eta = if rate > 0.0 { left / rate } else { 0.0 };
        let percent = match total {
            0 => 100.0,
            total => 100.0 * self.done as f64 / total as f64,
        };
        let (what, unit, done) = (self.what, self.unit, self.done);
        format!(
            "{what} progress: {done}/{total} {unit} ({percent:.1}%), {rate:.0}/s, ETA {eta:.0}s"
        )
    }
}

#[cfg(feature = "progress-bar")]
fn terminal_bar(what: &str, unit: &str, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || !tracing::enabled!(tracing::Level::INFO) {
        return None;
    }
    let template = format!("{what} {{bar:40}} {{pos}}/{{len}} {unit}, {{per_sec}}, ETA {{eta}}");
    let style = indicatif::ProgressStyle::with_template(&template).expect("a valid template");
    Some(indicatif::ProgressBar::new(total).with_style(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_done_total_rate_and_eta() {
        let mut progress = Progress::start("backfill", "deployments", 1_000);
        progress.done = 250;
        let line = progress.line();
        assert!(
            line.starts_with("backfill progress: 250/1000 deployments (25.0%), "),
            "{line}"
        );
        assert!(line.contains("/s, ETA ") && line.ends_with('s'), "{line}");
    }

    #[test]
    fn a_walk_longer_than_the_estimate_reads_100_percent_at_most() {
        let mut progress = Progress::start("backfill", "deployments", 2_024);
        progress.done = 4_000;
        let line = progress.line();
        assert!(
            line.starts_with("backfill progress: 4000/4000 deployments (100.0%), "),
            "{line}"
        );
        assert!(line.ends_with("ETA 0s"), "{line}");
    }
}
