//! Progress of a long backfill: a bar with rate and ETA on a terminal, a log line every few
//! seconds otherwise. Silent when `info` logging is off (`RUST_LOG=warn`).

use std::time::{Duration, Instant};

/// How often a progress line is logged when there is no bar.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Counts deployments done out of `total` and reports it.
pub struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    #[cfg(feature = "progress-bar")]
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Starts reporting on a backfill of `total` deployments.
    pub fn start(total: u64) -> Self {
        let now = Instant::now();
        Self {
            total,
            done: 0,
            started: now,
            last_line: now,
            #[cfg(feature = "progress-bar")]
            bar: terminal_bar(total),
        }
    }

    /// `n` more deployments are done.
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
    /// application inserts deployments meanwhile: once the walk has passed it, the total is
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
        format!(
            "backfill progress: {}/{total} deployments ({percent:.1}%), {rate:.0}/s, ETA {eta:.0}s",
            self.done
        )
    }
}

#[cfg(feature = "progress-bar")]
fn terminal_bar(total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || !tracing::enabled!(tracing::Level::INFO) {
        return None;
    }
    let style = indicatif::ProgressStyle::with_template(
        "backfill {bar:40} {pos}/{len} deployments, {per_sec}, ETA {eta}",
    )
    .expect("a valid template");
    Some(indicatif::ProgressBar::new(total).with_style(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_done_total_rate_and_eta() {
        let mut progress = Progress::start(1_000);
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
        let mut progress = Progress::start(2_024);
        progress.done = 4_000;
        let line = progress.line();
        assert!(
            line.starts_with("backfill progress: 4000/4000 deployments (100.0%), "),
            "{line}"
        );
        assert!(line.ends_with("ETA 0s"), "{line}");
    }
}
