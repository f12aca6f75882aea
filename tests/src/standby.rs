//! The PostgreSQL primary and streaming hot standby that `scripts/pg-standby` starts: a fresh
//! database per test on the primary, seen from the standby once replayed, and control of the
//! standby's replay.
//!
//! `TEST_PG_PRIMARY_URL` and `TEST_PG_STANDBY_URL` override the two servers (default
//! `postgres://postgres@127.0.0.1:5433` and `…:5434`). A server that cannot be reached fails
//! the test.

use std::process::Command;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::server::Server;
use crate::{Backend, TestDb, database_name};

/// One test's database on the primary, and the standby's server URL.
pub struct StandbyDb {
    /// The database on the primary, where the migration runs.
    pub primary: TestDb,
    /// The standby's server URL (no database).
    pub standby_server: String,
}

impl StandbyDb {
    /// Drops any database left by an earlier run of this test and creates it anew on the
    /// primary (the standby replays it).
    pub async fn create(test: &str) -> StandbyDb {
        let name = database_name(test);
        let server = Server::new(Backend::Postgres, &primary_server());
        let url = server.url(&name);
        if let Err(error) = server.recreate(&name, None).await {
            panic!("cannot make {name} on the primary at {url}: {error}");
        }
        let conn = crate::connect(&url).await;
        StandbyDb {
            primary: TestDb {
                backend: Backend::Postgres,
                url,
                conn,
            },
            standby_server: standby_server(),
        }
    }

    /// The same database on the standby.
    pub fn standby_url(&self) -> String {
        let name = self
            .primary
            .url
            .rsplit('/')
            .next()
            .expect("a database name");
        format!("{}/{name}", self.standby_server)
    }

    /// Waits (at most `within`) until the standby has replayed everything the primary has
    /// written so far; panics otherwise.
    pub async fn wait_until_replayed(&self, within: Duration) {
        let target = wal_position(&self.primary.conn).await;
        let standby = crate::connect(&format!("{}/postgres", self.standby_server)).await;
        let started = Instant::now();
        loop {
            let replayed = query_i64(
                &standby,
                "SELECT CAST(pg_last_wal_replay_lsn() - '0/0'::pg_lsn AS bigint)",
            )
            .await;
            if replayed >= target {
                return;
            }
            assert!(
                started.elapsed() < within,
                "the standby did not replay up to {target} within {within:?} (at {replayed})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Pauses the standby's replay until the guard is dropped, and waits until the primary
    /// reports it more than `at_least` behind (writing a little WAL meanwhile, so that the
    /// standby keeps reporting).
    pub async fn pause_replay(&self, at_least: Duration) -> PausedReplay {
        let paused = PausedReplay {
            standby_server: self.standby_server.clone(),
        };
        paused.run("SELECT pg_wal_replay_pause()");
        self.primary
            .exec("CREATE TABLE IF NOT EXISTS wal_filler (n integer)", vec![])
            .await;
        let started = Instant::now();
        loop {
            self.primary
                .exec("INSERT INTO wal_filler VALUES (1)", vec![])
                .await;
            let lag = reported_lag(&self.primary.conn).await;
            if lag > at_least {
                return paused;
            }
            assert!(
                started.elapsed() < at_least + Duration::from_secs(30),
                "the primary never reported the paused standby behind (last {lag:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The standby's replay, paused; resumed when dropped (also when the test panics).
pub struct PausedReplay {
    standby_server: String,
}

impl PausedReplay {
    /// Resumes the replay now.
    pub fn resume(self) {}

    fn run(&self, sql: &str) {
        let output = Command::new("psql")
            .args([
                "-X",
                "-Atq",
                "-d",
                &format!("{}/postgres", self.standby_server),
            ])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "{sql} on the standby: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PausedReplay {
    fn drop(&mut self) {
        self.run("SELECT pg_wal_replay_resume()");
    }
}

/// How far behind the primary reports its slowest streaming standby (`replay_lag`).
pub async fn reported_lag(primary: &DatabaseConnection) -> Duration {
    let seconds = query_f64(
        primary,
        "SELECT COALESCE(MAX(EXTRACT(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication",
    )
    .await;
    Duration::from_secs_f64(seconds)
}

async fn wal_position(conn: &DatabaseConnection) -> i64 {
    query_i64(
        conn,
        "SELECT CAST(pg_current_wal_lsn() - '0/0'::pg_lsn AS bigint)",
    )
    .await
}

async fn query_i64(conn: &DatabaseConnection, sql: &str) -> i64 {
    let row = query_one(conn, sql).await;
    row.try_get_by_index(0).expect("a bigint")
}

async fn query_f64(conn: &DatabaseConnection, sql: &str) -> f64 {
    let row = query_one(conn, sql).await;
    row.try_get_by_index(0).expect("a float")
}

async fn query_one(conn: &DatabaseConnection, sql: &str) -> sea_orm::QueryResult {
    let statement = Statement::from_string(DbBackend::Postgres, sql);
    match conn.query_one_raw(statement).await {
        Ok(Some(row)) => row,
        Ok(None) => panic!("no row: {sql}"),
        Err(error) => panic!("{sql}\n{error}"),
    }
}

fn primary_server() -> String {
    crate::server_url("TEST_PG_PRIMARY_URL", "postgres://postgres@127.0.0.1:5433")
}

fn standby_server() -> String {
    crate::server_url("TEST_PG_STANDBY_URL", "postgres://postgres@127.0.0.1:5434")
}
