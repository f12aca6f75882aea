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
    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / seconds;
        let left = self.total.saturating_sub(self.done) as f64;
        let eta = if rate > 0.0 { left / rate } else { 0.0 };
        let percent = match self.total {
            0 => 100.0,
            total => 100.0 * self.done as f64 / total as f64,
        };
        format!(
            "backfill progress: {}/{} deployments ({percent:.1}%), {rate:.0}/s, ETA {eta:.0}s",
            self.done, self.total
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
}
