//! A writer standing in for the live application while a migration runs: it renames a
//! random deployment every few milliseconds and records how long each write waited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbErr, Statement};
use serde::Serialize;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::measure::quantile_ms;

/// Pause between two writes.
const PAUSE: Duration = Duration::from_millis(5);
/// Deployments the writer picks from.
const SAMPLE: u64 = 10_000;

/// What the writer saw during one migration.
#[derive(Serialize)]
pub struct Stalls {
    /// The migration it ran beside.
    pub during: &'static str,
    /// That migration's wall time with the writer beside it.
    pub migration_seconds: f64,
    /// Writes attempted.
    pub writes: u64,
    /// Writes the server refused (lock timeouts, deadlocks).
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The longest a single write waited, failed or not.
    pub longest_ms: f64,
}

/// A running writer; [`Writer::stop`] ends it and returns what it saw.
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<(Vec<Duration>, u64), DbErr>>,
}

impl Writer {
    /// Connects to `url` and starts writing to deployments that exist there now.
    pub async fn start(url: &str) -> Result<Self, DbErr> {
        let db = Database::connect(url).await?;
        let backend = db.get_database_backend();
        let sql = format!("SELECT id FROM deployment ORDER BY id LIMIT {SAMPLE}");
        let ids: Vec<Uuid> = db
            .query_all_raw(Statement::from_string(backend, sql))
            .await?
            .iter()
            .map(|row| row.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
        let update = match backend {
            sea_orm::DbBackend::Postgres => "UPDATE deployment SET name = $1 WHERE id = $2",
            _ => "UPDATE deployment SET name = ? WHERE id = ?",
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut waits, mut failed) = (vec![], 0);
            let mut rng = crate::data::Rng::new(11);
            while !stopped.load(Ordering::Relaxed) {
                let n = rng.next();
                let id = ids[(n % ids.len() as u64) as usize];
                let values = [format!("renamed {n}").into(), id.into()];
                let started = Instant::now();
                let outcome = db
                    .execute_raw(Statement::from_sql_and_values(backend, update, values))
                    .await;
                waits.push(started.elapsed());
                failed += u64::from(outcome.is_err());
                tokio::time::sleep(PAUSE).await;
            }
            Ok((waits, failed))
        });
        Ok(Writer { stop, task })
    }

    /// Stops writing; `during` names the migration and `seconds` its wall time.
    pub async fn stop(self, during: &'static str, seconds: f64) -> Result<Stalls, DbErr> {
        self.stop.store(true, Ordering::Relaxed);
        let (mut waits, failed) = self
            .task
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))??;
        waits.sort();
        Ok(Stalls {
            during,
            migration_seconds: seconds,
            writes: waits.len() as u64,
            failed,
            p50_ms: quantile_ms(&waits, 0.5),
            p99_ms: quantile_ms(&waits, 0.99),
            longest_ms: quantile_ms(&waits, 1.0),
        })
    }
}
