//! Replica lag: batched steps pause while a streaming replica falls behind.
//!
//! A backfill writes WAL as fast as the primary can; a hot standby replays it with one
//! process, and a query running there can hold that replay up. With
//! [`Settings::max_replica_lag`](crate::settings::Settings::max_replica_lag) set, every
//! batched step (a backfill, its catch-up, a refill on the way down) asks the primary,
//! before each batch, how far behind each replica is, and waits while one lags more than
//! that. A wait is bounded by
//! [`Settings::lock_retry_for`](crate::settings::Settings::lock_retry_for): then the step
//! stops with an error, at a batch boundary, and running the command again goes on from
//! there.
//!
//! How far behind: the age of the oldest WAL a replica has not replayed. The primary keeps
//! no such age, so [`LagClock`] keeps its own: the primary's WAL position each time it is
//! asked, and the replica's replayed position is then dated by the first of those it has
//! not reached. The replica's own report (`replay_lag`, grown by the time since it was
//! sent) is taken when larger: it covers the time before the step started, and a replay
//! that has been stuck since. So is its backlog divided by the speed it has been seen to
//! replay at ([`ReplayRate`]): by age alone, a slow replica's backlog would grow for as long
//! as the maximum before the first pause, and then take far longer than that to replay.
//! The next batch is counted in, at the size of the last one, unless what is waiting is a
//! mere trickle: a replica too slow to replay one batch within the maximum is still let
//! through once it has caught up.
//!
//! A replica reports its position when it receives WAL (else every
//! `wal_receiver_status_interval`, 10 s by default): while paused, the step commits an empty
//! transaction each time it asks, so that replicas report at once.
//!
//! PostgreSQL only: a MariaDB primary cannot see its replicas' positions, and a Galera
//! cluster is synchronous (its flow control already slows every node to the slowest).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr};

use crate::backends;
use crate::context::Context;
use crate::stop::Stop;

/// Dates WAL positions by when the primary was first seen past them.
///
/// ```
/// use std::time::{Duration, Instant};
/// use online_migration::replicas::LagClock;
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
    /// The age of the oldest WAL it has not replayed (or its own report, if larger).
    pub behind: Duration,
    /// How long it would take to replay what is waiting and one more batch, at the speed it
    /// has been replaying; `None` while only a trickle waits or its speed is not known yet.
    pub to_catch_up: Option<Duration>,
}

impl std::fmt::Display for ReplicaLag {
    /// `replica walreceiver is 4.1s behind (2400000 bytes not replayed, 1.2s to replay with
    /// one more batch)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replica {} is {:.1}s behind ({} bytes not replayed",
            self.name,
            self.behind.as_secs_f64(),
            self.bytes
        )?;
        match self.to_catch_up {
            Some(t) => write!(
                f,
                ", {:.1}s to replay with one more batch)",
                t.as_secs_f64()
            ),
            None => write!(f, ")"),
        }
    }
}

impl ReplicaLag {
    /// Whether a batch should wait for this replica: it is behind by more than `max`, or
    /// would need more than half of `max` to replay the next batch and what waits before
    /// it. (Half: its speed changes with the load the backfill itself puts on the
    /// machines; with the whole maximum, the lag measured on a slowed standby overshot
    /// it by half.)
    pub fn over(&self, max: Duration) -> bool {
        self.behind > max || self.to_catch_up.is_some_and(|t| t > max / 2)
    }
}

/// Pauses a batched step while a replica lags more than
/// [`Settings::max_replica_lag`](crate::settings::Settings::max_replica_lag).
#[derive(Debug)]
pub struct Throttle {
    max_lag: Option<Duration>,
    give_up_after: Duration,
    clock: LagClock,
    rates: HashMap<String, ReplayRate>,
    /// The primary's position when the step last went on: what it wrote since is a batch.
    went_on_at: Option<i64>,
    /// The run's stop request: a paused step gives up on it.
    stop: Stop,
}

/// WAL a replica may have waiting and still count as keeping up: the application's own
/// writes keep a little in flight at any time.
const TRICKLE: i64 = 64 << 10;
/// How often a paused step asks again.
const POLL: Duration = Duration::from_millis(250);
/// How often a paused step says it is still paused.
const REPORT_EVERY: Duration = Duration::from_secs(10);

impl Throttle {
    /// The throttle for the current settings; checks, when a maximum lag is set, that this
    /// backend and role can see the replicas.
    pub async fn start<C: ConnectionTrait>(ctx: &Context, conn: &C) -> Result<Throttle, DbErr> {
        let settings = &ctx.settings;
        if settings.max_replica_lag.is_some() {
            require_visible(conn).await?;
        }
        Ok(Throttle {
            max_lag: settings.max_replica_lag,
            give_up_after: settings.lock_retry_for,
            clock: LagClock::default(),
            rates: HashMap::new(),
            went_on_at: None,
            stop: ctx.stop.clone(),
        })
    }

    /// Returns once no replica lags more than the maximum (at once when none is set);
    /// fails after waiting
    /// [`Settings::lock_retry_for`](crate::settings::Settings::lock_retry_for), or when a
    /// stop is requested.
    pub async fn wait_for_replicas<C: ConnectionTrait>(
        &mut self,
        conn: &C,
        what: &str,
    ) -> Result<(), DbErr> {
        let Some(max_lag) = self.max_lag else {
            return Ok(());
        };
        let started = Instant::now();
        let (mut reported, mut next_batch) = (None, None);
        loop {
            let positions = self.positions(conn).await?;
            let primary = positions.first().map_or(0, |p| p.primary);
            // What the last batch wrote (seen at the first look): the next writes as much.
            let next_batch = *next_batch
                .get_or_insert_with(|| self.went_on_at.map_or(0, |at| (primary - at).max(0)));
            let lags = self.assess(&positions, next_batch);
            let Some(worst) = lags
                .into_iter()
                .filter(|lag| lag.over(max_lag))
                .max_by_key(|lag| lag.behind.max(lag.to_catch_up.unwrap_or_default()))
            else {
                break;
            };
            let waited = started.elapsed();
            if waited >= self.give_up_after {
                return Err(gave_up(&worst, max_lag, waited, what));
            }
            if self.stop.requested() {
                return Err(crate::stop::stopped(&format!(
                    "{what}, paused for replica lag"
                )));
            }
            if reported.is_none_or(|at: Instant| at.elapsed() >= REPORT_EVERY) {
                tracing::info!(
                    "{what}: paused, {worst}; at most {} wanted",
                    crate::settings::format_duration(max_lag)
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
        self.went_on_at = self.clock.samples.back().map(|&(_, position)| position);
        Ok(())
    }

    /// Where the primary and each replica are, as the primary last heard.
    async fn positions<C: ConnectionTrait>(&mut self, conn: &C) -> Result<Vec<Position>, DbErr> {
        let Some(statement) = backends::of(conn.get_database_backend()).replica_positions() else {
            return Ok(vec![]);
        };
        let now = Instant::now();
        let mut positions = vec![];
        for row in conn.query_all_raw(statement).await? {
            let position = Position {
                name: row.try_get_by_index(0)?,
                primary: row.try_get_by_index(1)?,
                replayed: row.try_get_by_index(2)?,
                reported: row.try_get_by_index(3)?,
            };
            self.clock.record(now, position.primary);
            if let Some(replayed) = position.replayed {
                let backlog = position.primary - replayed;
                let rate = self.rates.entry(position.name.clone()).or_default();
                rate.record(now, replayed, backlog);
            }
            positions.push(position);
        }
        Ok(positions)
    }

    /// How far behind each replica is (the age of the oldest WAL it has not replayed, or its
    /// own report), and, when more than a trickle is waiting, how long it would take to
    /// replay that and `next_batch` more bytes at the speed it replays. (By age alone, a
    /// slow replica's backlog would grow for as long as the maximum lag before the first
    /// pause, and then take far longer to replay.)
    fn assess(&mut self, positions: &[Position], next_batch: i64) -> Vec<ReplicaLag> {
        let now = Instant::now();
        let mut lags = vec![];
        for position in positions {
            // Not reported yet: it has just connected, and will within a status interval.
            let Some(replayed) = position.replayed else {
                continue;
            };
            let bytes = (position.primary - replayed).max(0);
            let reported = position.reported.unwrap_or(0.0);
            let reported = Duration::try_from_secs_f64(reported).unwrap_or_default();
            let rate = self.rates.get(&position.name);
            lags.push(ReplicaLag {
                name: position.name.clone(),
                bytes,
                // Replayed everything: its last report may be older, but nothing is behind.
                behind: match bytes {
                    0 => Duration::ZERO,
                    _ => self.clock.age_of_unreplayed(replayed, now).max(reported),
                },
                to_catch_up: match bytes > TRICKLE {
                    true => rate.and_then(|r| r.time_to_replay(bytes + next_batch)),
                    false => None,
                },
            });
        }
        if let Some(slowest) = positions.iter().filter_map(|p| p.replayed).min() {
            self.clock.forget_replayed(slowest);
        }
        lags
    }
}

/// One replica's row of `Backend::replica_positions`.
struct Position {
    name: String,
    /// The primary's WAL position (bytes).
    primary: i64,
    /// What the replica has replayed, once it has said.
    replayed: Option<i64>,
    /// The lag it last reported plus the time since (seconds).
    reported: Option<f64>,
}

/// How fast a replica replays when it has plenty to replay, over the last 10 seconds:
/// only stretches with at least [`RATE_MIN_BACKLOG`] waiting at both ends count (with less,
/// it replays only what arrives, which says nothing of its speed).
#[derive(Debug, Default)]
pub struct ReplayRate {
    /// (when, replayed position, bytes waiting then), oldest first.
    seen: VecDeque<(Instant, i64, i64)>,
}

/// How far back [`ReplayRate`] looks.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// WAL waiting for a replica to count as busy replaying.
pub const RATE_MIN_BACKLOG: i64 = 1 << 20;
/// How long a replica must have been seen busy before its speed is trusted.
const RATE_MIN_BUSY: Duration = Duration::from_millis(500);

impl ReplayRate {
    /// Notes that the replica had replayed up to `replayed` at `at`, with `backlog` bytes
    /// received or not yet replayed.
    pub fn record(&mut self, at: Instant, replayed: i64, backlog: i64) {
        self.seen.push_back((at, replayed, backlog));
        while self.seen.len() > 2 && at.duration_since(self.seen[0].0) > RATE_WINDOW {
            self.seen.pop_front();
        }
    }

    /// How long replaying `bytes` takes at the speed seen while busy; `None` until it has
    /// been seen busy for long enough.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use online_migration::replicas::ReplayRate;
    ///
    /// let t = Instant::now();
    /// let at = |s| t + Duration::from_secs(s);
    /// let mib = 1 << 20;
    /// let mut rate = ReplayRate::default();
    /// rate.record(at(0), 0, 8 * mib);
    /// rate.record(at(1), mib, 8 * mib); // 1 MiB/s with plenty waiting
    /// rate.record(at(5), 2 * mib, 1_000); // caught up: not counted
    /// rate.record(at(6), 2 * mib + 1_000, 0);
    /// assert_eq!(rate.time_to_replay(3 * mib), Some(Duration::from_secs(3)));
    /// ```
    pub fn time_to_replay(&self, bytes: i64) -> Option<Duration> {
        let (mut replayed, mut busy) = (0, Duration::ZERO);
        for (before, after) in self.seen.iter().zip(self.seen.iter().skip(1)) {
            if before.2 >= RATE_MIN_BACKLOG && after.2 >= RATE_MIN_BACKLOG {
                replayed += after.1 - before.1;
                busy += after.0.duration_since(before.0);
            }
        }
        if busy < RATE_MIN_BUSY {
            return None;
        }
        let per_second = replayed.max(1) as f64 / busy.as_secs_f64();
        Duration::try_from_secs_f64(bytes as f64 / per_second).ok()
    }
}

/// Fails, when [`Settings::max_replica_lag`](crate::settings::Settings::max_replica_lag) is
/// set, unless this backend and role can see the replicas' positions: steps call it before
/// they change anything.
pub async fn check_settings<C: ConnectionTrait>(ctx: &Context, conn: &C) -> Result<(), DbErr> {
    match ctx.settings.max_replica_lag {
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
        "{what}: after waiting {}, {worst}, more than the {} allowed; stopped at a batch \
         boundary: run the command again once it has caught up (or raise \
         --max-replica-lag / --lock-retry-for, or lower MIGRATION_BATCH_SIZE)",
        crate::settings::format_duration(Duration::from_secs(waited.as_secs())),
        crate::settings::format_duration(max_lag),
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
