//! Stopping on request. Ctrl-C or SIGTERM during a long step (a backfill, its catch-up, a
//! refill on the way down) stops it at the next batch boundary: what was
//! committed stays, what was set aside is put back, and the step fails with one line saying
//! where it stopped. Running the command again finishes the job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm_migration::DbErr;

/// A run's stop request: cloned into whatever may ask for it (a signal handler, a test),
/// read by every batched step between batches.
///
/// ```
/// let stop = online_migration::stop::Stop::default();
/// let handler = stop.clone();
/// handler.request();
/// assert!(stop.requested());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Asks every step of the run to stop at its next batch boundary.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The error a step returns when it stopped on request; `where_` says how far it got.
pub fn stopped(where_: &str) -> DbErr {
    DbErr::Migration(format!(
        "stopped on request at a batch boundary ({where_}); run the command again to finish"
    ))
}

/// Turns the first Ctrl-C or SIGTERM into [`Stop::request`] on `stop`; a second one ends the
/// process at once (exit code 130), as a user pressing Ctrl-C twice expects.
#[cfg(feature = "runtime-tokio")]
pub fn stop_on_signals(stop: Stop) {
    tokio::spawn(async move {
        for _ in 0..2 {
            if wait_for_signal().await.is_err() {
                return;
            }
            if stop.requested() {
                eprintln!("stopping now, mid-batch: the open transaction is rolled back");
                std::process::exit(130);
            }
            stop.request();
            tracing::warn!(
                "stop requested: stopping at the next batch boundary (again to stop at once)"
            );
        }
    });
}

#[cfg(feature = "runtime-tokio")]
async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
