//! Replica lag: batched steps pause while a streaming replica falls behind.
//!
//! A backfill writes WAL as fast as the primary can; a hot standby replays it with one
//! process, and a query running there can hold that replay up. With
//! [`Settings::max_replica_lag`] set, every batched step (the backfill, its catch-up, the
//! refill of `job_agents` on the way down) asks the primary, before each batch, how far
//! behind each replica is, and waits while one lags more than that. A wait is bounded by
//! [`Settings::lock_retry_for`]: then the step stops with an error, at a batch boundary, and
//! running the command again goes on from there.
//!
//! How far behind: the age of the oldest WAL a replica has not replayed. The primary keeps
//! no such age, so [`LagClock`] keeps its own: the primary's WAL position each time it is
//! asked, and the replica's replayed position is then dated by the first of those it has
//! not reached. The replica's own report (`replay_lag`, grown by the time since it was
//! sent) is taken when larger: it covers the time before the step started, and a replay
//! that has been stuck since. A replica reports its position when it receives WAL (else
//! every `wal_receiver_status_interval`, 10 s by default): while paused, the step commits
//! an empty transaction each time it asks, so that replicas report at once.
//!
//! PostgreSQL only: a MariaDB primary cannot see its replicas' positions, and a Galera
//! cluster is synchronous (its flow control already slows every node to the slowest).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr};

use crate::backends;
use crate::settings::Settings;

/// Dates WAL positions by when the primary was first seen past them.
///
/// ```
/// use std::time::{Duration, Instant};
/// use migration::replicas::LagClock;
///
/// let start = Instant::now();
/// let mut clock = LagClock::default();
/// clock.record(start, 1_000);
/// clock.record(start + Duration::from_secs(2), 5_000);
/// let now = start + Duration::from_secs(3);
/// // Replayed up to 1,000: the WAL past it was there 2 s ago.
/// assert_eq!(clock.age_of_unreplayed(1_000, now), Duration::from_secs(1));
/// assert_eq!(clock.age_of_unreplayed(999, now), Duration::from_secs(3));
/// assert_eq!(clock.age_of_unreplayed(5_000, now), Duration::ZERO);
/// ```
#[derive(Debug, Default)]
pub struct LagClock {
    /// (when, the primary's position then), positions strictly increasing.
    samples: VecDeque<(Instant, i64)>,
}

impl LagClock {
    /// Notes that the primary's WAL position was `position` at `at`.
    pub fn record(&mut self, at: Instant, position: i64) {
        match self.samples.back() {
            // The earliest sighting of a position is the one that dates it.
            Some(&(_, last)) if last >= position => {}
            _ => self.samples.push_back((at, position)),
        }
    }

    /// How long ago the primary was first seen past `replayed`: a lower bound of the age
    /// of the oldest WAL not replayed (by at most the time between two samples). Zero
    /// when nothing recorded lies past it.
    pub fn age_of_unreplayed(&self, replayed: i64, now: Instant) -> Duration {
        self.samples
            .iter()
            .find(|&&(_, position)| position > replayed)
            .map_or(Duration::ZERO, |&(at, _)| now.saturating_duration_since(at))
    }

    /// Drops the samples every replica has replayed past (they can date nothing any more).
    pub fn forget_replayed(&mut self, slowest: i64) {
        while self.samples.len() > 1 && self.samples[1].1 <= slowest {
            self.samples.pop_front();
        }
    }
}

/// One replica, as the primary last heard from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaLag {
    /// Its `application_name` (`walreceiver`, or the cluster name it was given).
    pub name: String,
    /// WAL the primary has written and the replica not replayed, in bytes.
    pub bytes: i64,
    /// The age of the oldest WAL it has not replayed.
    pub behind: Duration,
}

/// Pauses a batched step while a replica lags more than [`Settings::max_replica_lag`].
#[derive(Debug)]
pub(crate) struct Throttle {
    max_lag: Option<Duration>,
    give_up_after: Duration,
    clock: LagClock,
}

/// How often a paused step asks again.
const POLL: Duration = Duration::from_millis(250);
/// How often a paused step says it is still paused.
const REPORT_EVERY: Duration = Duration::from_secs(10);

impl Throttle {
    /// The throttle for the current settings; checks, when a maximum lag is set, that this
    /// backend and role can see the replicas.
    pub(crate) async fn start<C: ConnectionTrait>(conn: &C) -> Result<Throttle, DbErr> {
        let settings = Settings::current()?;
        let throttle = Throttle {
            max_lag: settings.max_replica_lag,
            give_up_after: settings.lock_retry_for,
            clock: LagClock::default(),
        };
        check_settings(conn).await?;
        Ok(throttle)
    }

    /// Returns once no replica lags more than the maximum (at once when none is set);
    /// fails after waiting [`Settings::lock_retry_for`], or when a stop is requested.
    pub(crate) async fn wait_for_replicas<C: ConnectionTrait>(
        &mut self,
        conn: &C,
        what: &str,
    ) -> Result<(), DbErr> {
        let Some(max_lag) = self.max_lag else {
            return Ok(());
        };
        let started = Instant::now();
        let mut reported = None;
        loop {
            let lags = self.measure(conn).await?;
            let Some(worst) = lags
                .into_iter()
                .filter(|lag| lag.behind > max_lag)
                .max_by_key(|lag| lag.behind)
            else {
                break;
            };
            let waited = started.elapsed();
            if waited >= self.give_up_after {
                return Err(gave_up(&worst, max_lag, waited, what));
            }
            if crate::stop::requested() {
                return Err(crate::stop::stopped(&format!(
                    "{what}, paused for replica lag"
                )));
            }
            if reported.is_none_or(|at: Instant| at.elapsed() >= REPORT_EVERY) {
                tracing::info!(
                    "{what}: paused, replica {} is {:.1}s behind ({} bytes; at most {} wanted)",
                    worst.name,
                    worst.behind.as_secs_f64(),
                    worst.bytes,
                    humantime::format_duration(max_lag)
                );
                reported = Some(Instant::now());
            }
            if let Some(prompt) = backends::of(conn.get_database_backend()).prompt_replica_reports()
            {
                conn.query_one_raw(prompt).await?;
            }
            crate::runtime::sleep(POLL).await;
        }
        if reported.is_some() {
            let waited = started.elapsed().as_secs_f64();
            tracing::info!("{what}: replicas caught up, going on after {waited:.1}s");
        }
        Ok(())
    }

    async fn measure<C: ConnectionTrait>(&mut self, conn: &C) -> Result<Vec<ReplicaLag>, DbErr> {
        let Some(statement) = backends::of(conn.get_database_backend()).replica_positions() else {
            return Ok(vec![]);
        };
        let rows = conn.query_all_raw(statement).await?;
        let now = Instant::now();
        let mut lags = vec![];
        let mut slowest = None;
        for row in rows {
            let name: String = row.try_get_by_index(0)?;
            let primary: i64 = row.try_get_by_index(1)?;
            let replayed: Option<i64> = row.try_get_by_index(2)?;
            let reported: Option<f64> = row.try_get_by_index(3)?;
            self.clock.record(now, primary);
            // Not reported yet: it has just connected, and will within a status interval.
            let Some(replayed) = replayed else { continue };
            slowest = Some(slowest.map_or(replayed, |s: i64| s.min(replayed)));
            let bytes = (primary - replayed).max(0);
            let behind = match bytes {
                // Replayed everything: its last report may be older, but nothing is behind.
                0 => Duration::ZERO,
                _ => {
                    let reported = Duration::try_from_secs_f64(reported.unwrap_or(0.0));
                    let age = self.clock.age_of_unreplayed(replayed, now);
                    age.max(reported.unwrap_or_default())
                }
            };
            lags.push(ReplicaLag {
                name,
                bytes,
                behind,
            });
        }
        if let Some(slowest) = slowest {
            self.clock.forget_replayed(slowest);
        }
        Ok(lags)
    }
}

/// Fails, when [`Settings::max_replica_lag`] is set, unless this backend and role can see
/// the replicas' positions: steps call it before they change anything.
pub async fn check_settings<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    match Settings::current()?.max_replica_lag {
        Some(_) => require_visible(conn).await,
        None => Ok(()),
    }
}

/// Fails unless this backend and role can see the replicas' positions.
pub async fn require_visible<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let backend = backends::of(conn.get_database_backend());
    let Some(check) = backend.may_see_replica_positions() else {
        return Err(DbErr::Migration(
            "--max-replica-lag (MIGRATION_MAX_REPLICA_LAG) works on PostgreSQL only: this \
             primary cannot see its replicas' positions; unset it"
                .to_owned(),
        ));
    };
    let row = conn.query_one_raw(check).await?;
    let visible = match row {
        Some(row) => row.try_get_by_index::<bool>(0)?,
        None => false,
    };
    if visible {
        return Ok(());
    }
    Err(DbErr::Migration(
        "--max-replica-lag (MIGRATION_MAX_REPLICA_LAG) needs the replicas' replay positions, \
         which this role cannot see: GRANT pg_read_all_stats TO it, or unset the setting"
            .to_owned(),
    ))
}

fn gave_up(worst: &ReplicaLag, max_lag: Duration, waited: Duration, what: &str) -> DbErr {
    DbErr::Migration(format!(
        "{what}: replica {} is still {:.1}s behind ({} bytes), more than the {} allowed, \
         after waiting {}; stopped at a batch boundary: run the command again once it has \
         caught up (or raise --max-replica-lag / --lock-retry-for)",
        worst.name,
        worst.behind.as_secs_f64(),
        worst.bytes,
        humantime::format_duration(max_lag),
        humantime::format_duration(Duration::from_secs(waited.as_secs()))
    ))
}

#[cfg(test)]
mod tests {
    use super::LagClock;
    use std::time::{Duration, Instant};

    #[test]
    fn a_position_is_dated_by_its_first_sighting_and_replayed_samples_are_forgotten() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut clock = LagClock::default();
        clock.record(at(0), 100);
        clock.record(at(1), 100); // no new WAL: still dated 0
        clock.record(at(2), 300);
        clock.record(at(3), 200); // a smaller position (another replica's row): ignored
        assert_eq!(clock.age_of_unreplayed(50, at(10)), Duration::from_secs(10));
        assert_eq!(clock.age_of_unreplayed(100, at(10)), Duration::from_secs(8));
        clock.forget_replayed(300);
        assert_eq!(clock.samples.len(), 1, "only the newest sample is kept");
        assert_eq!(clock.age_of_unreplayed(300, at(10)), Duration::ZERO);
        clock.record(at(11), 400);
        assert_eq!(clock.age_of_unreplayed(300, at(12)), Duration::from_secs(1));
    }
}
