//! Beside a PostgreSQL hot standby: how far the standby's replay falls behind while a
//! migration runs on the primary, and what a reader on the standby sees.
//!
//! The lag is measured on the standby itself: every [`SAMPLE_EVERY`] its replayed position
//! (`pg_last_wal_replay_lsn()`) against the primary's (`pg_current_wal_lsn()`), in bytes, and
//! in seconds as the age of the oldest WAL not replayed yet ([`migration::replicas::LagClock`]
//! dates the primary's positions). Sampling goes on after the migration until the standby has
//! replayed all of it. A reader queries `deployment` on the standby in a loop (its longest
//! query, and how many recovery conflicts cancelled); optionally one long query is held open
//! there from the start, the way a report or a dump would.
//!
//! A standby on this machine replays faster than the primary writes. To see what a slower
//! one does (weaker disks or CPU, busy with readers), `replay_share` lets it replay only part
//! of the time: its replay is paused and resumed in turns of [`REPLAY_TURN`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use migration::replicas::LagClock;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::measure::{quantile, quantile_ms};

/// How often the lag is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// One turn of replaying and pausing, for a standby slowed down on purpose.
const REPLAY_TURN: Duration = Duration::from_millis(100);
/// The longest the standby may take to replay a run once it is over.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(300);

/// What the standby saw during one migration.
#[derive(Serialize)]
pub struct StandbyReport {
    /// The migration run on the primary.
    pub variant: String,
    /// Its wall time.
    pub migration_seconds: f64,
    /// WAL it wrote (MiB).
    pub wal_mib: f64,
    pub lag_max_mib: f64,
    pub lag_p99_mib: f64,
    pub lag_max_seconds: f64,
    pub lag_p99_seconds: f64,
    /// Queries the standby reader made, and how many recovery conflicts cancelled.
    pub reader_queries: u64,
    pub reader_cancelled: u64,
    /// The reader's longest query, cancelled or not.
    pub reader_longest_ms: f64,
    /// The long query held open on the standby, if any: how it ended, after how long.
    pub long_query: Option<String>,
    /// The share of the time the standby was let replay (100 unless slowed on purpose).
    pub replay_percent: u8,
}

/// A running measurement; [`Monitor::stop`] ends it.
pub struct Monitor {
    primary: DatabaseConnection,
    standby: DatabaseConnection,
    done: Arc<AtomicBool>,
    sampler: JoinHandle<Result<Vec<(i64, Duration)>, DbErr>>,
    reader: JoinHandle<Result<(Vec<Duration>, u64), DbErr>>,
    long_query: Option<JoinHandle<String>>,
    slowed: Option<JoinHandle<Result<(), DbErr>>>,
    replay_percent: u8,
    wal_at_start: i64,
}

impl Monitor {
    /// Waits until the standby has replayed `database` as it is now on the primary, then
    /// starts sampling, reading and (with `long_query`) holding a query open.
    pub async fn start(
        primary_url: &str,
        standby_url: &str,
        long_query: Option<Duration>,
        replay_percent: u8,
    ) -> Result<Monitor, DbErr> {
        let primary = Database::connect(primary_url).await?;
        let wal_at_start = position(&primary, PRIMARY_POSITION).await?;
        let standby = connect_when_replayed(standby_url, wal_at_start).await?;
        let done = Arc::new(AtomicBool::new(false));
        let long_query =
            long_query.map(|hold| tokio::spawn(hold_query_open(standby.clone(), hold)));
        let sampler = tokio::spawn(sample(primary.clone(), standby.clone(), done.clone()));
        let reader = tokio::spawn(read(standby.clone(), done.clone()));
        let slowed = (replay_percent < 100).then(|| {
            tokio::spawn(replay_part_time(
                standby.clone(),
                replay_percent,
                done.clone(),
            ))
        });
        Ok(Monitor {
            primary,
            standby,
            done,
            sampler,
            reader,
            long_query,
            slowed,
            replay_percent,
            wal_at_start,
        })
    }

    /// Waits until the standby has replayed everything the migration wrote, then stops
    /// and reports.
    pub async fn stop(self, variant: &str, migration_seconds: f64) -> Result<StandbyReport, DbErr> {
        let wal_at_end = position(&self.primary, PRIMARY_POSITION).await?;
        let deadline = Instant::now() + CATCH_UP_WITHIN;
        while position(&self.standby, STANDBY_POSITION).await? < wal_at_end {
            if Instant::now() > deadline {
                return Err(DbErr::Custom(format!(
                    "the standby did not replay the run within {CATCH_UP_WITHIN:?}"
                )));
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        self.done.store(true, Ordering::SeqCst);
        if let Some(slowed) = self.slowed {
            slowed.await.map_err(join_error)??;
        }
        let samples = self.sampler.await.map_err(join_error)??;
        let (mut queries, cancelled) = self.reader.await.map_err(join_error)??;
        let long_query = match self.long_query {
            Some(task) => Some(task.await.map_err(join_error)?),
            None => None,
        };
        let mut bytes: Vec<i64> = samples.iter().map(|&(bytes, _)| bytes).collect();
        let mut behind: Vec<Duration> = samples.iter().map(|&(_, behind)| behind).collect();
        bytes.sort_unstable();
        behind.sort_unstable();
        queries.sort_unstable();
        let mib = |bytes: i64| bytes as f64 / (1 << 20) as f64;
        Ok(StandbyReport {
            variant: variant.to_owned(),
            migration_seconds,
            wal_mib: mib(wal_at_end - self.wal_at_start),
            lag_max_mib: mib(quantile(&bytes, 1.0)),
            lag_p99_mib: mib(quantile(&bytes, 0.99)),
            lag_max_seconds: quantile_ms(&behind, 1.0) / 1e3,
            lag_p99_seconds: quantile_ms(&behind, 0.99) / 1e3,
            reader_queries: queries.len() as u64,
            reader_cancelled: cancelled,
            reader_longest_ms: quantile_ms(&queries, 1.0),
            long_query,
            replay_percent: self.replay_percent,
        })
    }
}

/// Lets the standby replay `percent` of each [`REPLAY_TURN`] until `done`, then for good.
async fn replay_part_time(
    standby: DatabaseConnection,
    percent: u8,
    done: Arc<AtomicBool>,
) -> Result<(), DbErr> {
    let replaying = REPLAY_TURN * u32::from(percent) / 100;
    let run = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
    while !done.load(Ordering::SeqCst) {
        standby
            .execute_raw(run("SELECT pg_wal_replay_resume()"))
            .await?;
        tokio::time::sleep(replaying).await;
        standby
            .execute_raw(run("SELECT pg_wal_replay_pause()"))
            .await?;
        tokio::time::sleep(REPLAY_TURN - replaying).await;
    }
    standby
        .execute_raw(run("SELECT pg_wal_replay_resume()"))
        .await?;
    Ok(())
}

const PRIMARY_POSITION: &str = "SELECT CAST(pg_current_wal_lsn() - '0/0'::pg_lsn AS bigint)";
const STANDBY_POSITION: &str = "SELECT CAST(pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS bigint)";

async fn position(conn: &DatabaseConnection, sql: &str) -> Result<i64, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("no row: {sql}")))?;
    row.try_get_by_index(0)
}

/// A connection to `url` on the standby once it has replayed up to `position` (the
/// database may not exist there before).
async fn connect_when_replayed(url: &str, target: i64) -> Result<DatabaseConnection, DbErr> {
    let deadline = Instant::now() + CATCH_UP_WITHIN;
    loop {
        if let Ok(standby) = Database::connect(url).await
            && position(&standby, STANDBY_POSITION).await? >= target
        {
            return Ok(standby);
        }
        if Instant::now() > deadline {
            return Err(DbErr::Custom(format!(
                "the standby did not replay up to the run's start within {CATCH_UP_WITHIN:?}"
            )));
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// (bytes behind, age of the oldest WAL not replayed) every [`SAMPLE_EVERY`] until `done`.
async fn sample(
    primary: DatabaseConnection,
    standby: DatabaseConnection,
    done: Arc<AtomicBool>,
) -> Result<Vec<(i64, Duration)>, DbErr> {
    let mut clock = LagClock::default();
    let mut samples = vec![];
    while !done.load(Ordering::SeqCst) {
        // The standby first: its position then is never ahead of the primary's.
        let replayed = position(&standby, STANDBY_POSITION).await?;
        let written = position(&primary, PRIMARY_POSITION).await?;
        let now = Instant::now();
        clock.record(now, written);
        samples.push((written - replayed, clock.age_of_unreplayed(replayed, now)));
        clock.forget_replayed(replayed);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    Ok(samples)
}

/// A cheap query on `deployment`, over and over until `done`: each one's time, and how many
/// the standby cancelled for a recovery conflict.
async fn read(
    standby: DatabaseConnection,
    done: Arc<AtomicBool>,
) -> Result<(Vec<Duration>, u64), DbErr> {
    let sql = "SELECT count(*) FROM deployment WHERE name = $1";
    let (mut times, mut cancelled) = (vec![], 0);
    while !done.load(Ordering::SeqCst) {
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, ["absent".into()]);
        let started = Instant::now();
        let outcome = standby.query_one_raw(statement).await;
        times.push(started.elapsed());
        match outcome {
            Ok(_) => {}
            Err(error) if is_recovery_conflict(&error) => cancelled += 1,
            Err(error) => return Err(error),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((times, cancelled))
}

/// Holds one query on `deployment` open for `hold`; says how it ended.
async fn hold_query_open(standby: DatabaseConnection, hold: Duration) -> String {
    let sql = "SELECT count(*) FROM deployment, pg_sleep($1)";
    let statement =
        Statement::from_sql_and_values(DbBackend::Postgres, sql, [hold.as_secs_f64().into()]);
    let started = Instant::now();
    let outcome = standby.query_one_raw(statement).await;
    let after = started.elapsed().as_secs_f64();
    match outcome {
        Ok(_) => format!("finished after {after:.1}s"),
        Err(error) if is_recovery_conflict(&error) => format!("cancelled after {after:.1}s"),
        Err(error) => format!("failed after {after:.1}s: {error}"),
    }
}

/// SQLSTATE 40001 with "conflict with recovery": the standby cancelled the query so that
/// replay could go on.
fn is_recovery_conflict(error: &DbErr) -> bool {
    error.to_string().contains("conflict with recovery")
}

fn join_error(error: tokio::task::JoinError) -> DbErr {
    DbErr::Custom(error.to_string())
}

/// One line for the log.
pub fn row(r: &StandbyReport) -> String {
    format!(
        "{}: {:.1}s, WAL {:.0} MiB, lag max {:.1} MiB / {:.2}s (p99 {:.1} MiB / {:.2}s), \
         reader {} queries, {} cancelled, longest {:.0} ms{}",
        r.variant,
        r.migration_seconds,
        r.wal_mib,
        r.lag_max_mib,
        r.lag_max_seconds,
        r.lag_p99_mib,
        r.lag_p99_seconds,
        r.reader_queries,
        r.reader_cancelled,
        r.reader_longest_ms,
        r.long_query
            .as_ref()
            .map_or(String::new(), |q| format!(", long query {q}"))
    )
}

/// The reports as a Markdown table.
pub fn table(reports: &[StandbyReport]) -> String {
    let mut out = String::from(
        "| on the primary | standby replays | seconds | WAL MiB | lag max MiB | lag p99 MiB | \
         lag max s | lag p99 s | standby reader: queries | cancelled | longest ms | long query |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in reports {
        out.push_str(&format!(
            "| {} | {}% of the time | {:.1} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {:.0} | {} |\n",
            r.variant,
            r.replay_percent,
            r.migration_seconds,
            r.wal_mib,
            r.lag_max_mib,
            r.lag_p99_mib,
            r.lag_max_seconds,
            r.lag_p99_seconds,
            r.reader_queries,
            r.reader_cancelled,
            r.reader_longest_ms,
            r.long_query.as_deref().unwrap_or("")
        ));
    }
    out
}
