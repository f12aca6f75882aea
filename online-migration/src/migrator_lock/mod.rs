//! One migrator at a time. A rolling deploy starts several replicas whose start-up runs
//! `up`; without a lock they race on the catalogue (`duplicate key … pg_type_typname_nsp_index`)
//! and run the backfill twice. Every `up`, `down`, `fresh`, `refresh` and `reset` holds this
//! lock from before it reads which migrations are pending until it has applied them; the
//! others wait (up to [`Settings::migrator_wait`]), saying who holds it, then find the work
//! done.
//!
//! How each backend holds it, so that a migrator that dies leaves no lock behind:
//! - PostgreSQL: a session advisory lock on a connection of its own, taken out of the pool;
//!   it ends with the session.
//! - MariaDB: a lease, a row of the ledger's lock table claimed by an `UPDATE` and
//!   renewed while the work runs. `GET_LOCK` and `LOCK TABLES` do not hold across a Galera
//!   cluster; a row does, since two nodes claiming it at once fail certification, and one of
//!   them loses. A holder that dies stops renewing: the lease lapses after
//!   [`Settings::migrator_lease`].
//! - SQLite: an exclusive `flock` on the database file (SQLite itself locks with `fcntl`,
//!   which it does not disturb); it ends with the process. An in-memory database has one
//!   process and needs none.
//!
//! The same table says who holds the lock (host, process, step, since) on every backend.

mod holder;
mod mysql;
mod postgres;
mod sqlite;
pub mod steps;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseConnection, DatabaseExecutor, DbBackend};

use crate::context::Context;
use crate::ledger::Ledger;
use crate::runtime;
use crate::settings::{Settings, format_duration};

pub use holder::Holder;

/// How a lock is held while the work runs.
enum Hold {
    /// PostgreSQL: the session that holds the advisory lock.
    Session(postgres::Session),
    /// PostgreSQL inside a caller's transaction: the transaction holds it.
    Transaction,
    /// MariaDB: the lease row, renewed by [`run`], and `GET_LOCK`'s session where the
    /// server allows it.
    Lease(Option<mysql::Session>),
    /// SQLite: the open, locked database file.
    File(std::fs::File),
    /// Nothing to hold (an in-memory SQLite database; a caller's MariaDB transaction).
    Unshared,
}

/// This run, as the holder: what the steps need to say where it is.
pub struct Held {
    /// The holding run's token in the holder row.
    token: String,
    /// Where the migration keeps its records.
    ledger: Ledger,
    /// Where the holder row is written (autocommit, outside any migration's transaction);
    /// none when the caller passed a transaction of its own.
    record: Option<DatabaseConnection>,
}

impl Held {
    /// Says which step the holder is at, for those waiting (best effort: the table may
    /// have just been dropped by `fresh`).
    pub async fn at_step(&self, step: &str) {
        if let Some(db) = &self.record
            && let Err(error) =
                holder::set_step(db, self.ledger.lock_table, &self.token, step).await
        {
            tracing::debug!("could not record the migrator's step: {error}");
        }
    }
}

/// Who holds the migrator lock of `db` now, if anyone says so (`status` prints it).
///
/// ```
/// use online_migration::ledger::Ledger;
/// use online_migration::migrator_lock::migrator_lock_holder;
///
/// const LEDGER: Ledger = Ledger {
///     lock_table: "split_migrator",
///     phase_table: "split_phase",
///     advisory_key: 1,
///     server_lock_name: "split_migrator",
/// };
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sea_orm_migration::DbErr> {
/// let db = sea_orm_migration::sea_orm::Database::connect("sqlite::memory:").await?;
/// // No migrator has run here: nobody holds the lock.
/// assert_eq!(migrator_lock_holder(&db, &LEDGER).await, None);
/// # Ok(()) }
/// ```
pub async fn migrator_lock_holder(db: &DatabaseConnection, ledger: &Ledger) -> Option<Holder> {
    let holder = holder::current(db, ledger.lock_table).await.ok()?;
    (holder != Holder::default()).then_some(holder)
}

/// Runs `work` holding the migrator lock; `work` gets the lock (to report its steps) and,
/// when this run had to wait for another, who that was.
pub async fn run<T, F, Fut>(
    ctx: &Context,
    ledger: &Ledger,
    db: &DatabaseExecutor<'_>,
    work: F,
) -> Result<T, DbErr>
where
    F: FnOnce(Arc<Held>, Option<Holder>) -> Fut,
    Fut: Future<Output = Result<T, DbErr>>,
{
    let settings = ctx.settings;
    let (hold, held, waited_for) = acquire(db, ledger, &settings).await?;
    let held = Arc::new(held);
    let result = if let Hold::Lease(_) = hold {
        let work = std::pin::pin!(work(held.clone(), waited_for));
        let renew = std::pin::pin!(mysql::keep_renewing(db, ledger, &held.token, &settings));
        match futures_util::future::select(work, renew).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right((lost, _)) => Err(lost),
        }
    } else {
        work(held.clone(), waited_for).await
    };
    release(hold, &held).await;
    result
}

/// Takes the lock, waiting for the holder up to the setting; returns how it is held, this
/// run as the holder, and who was waited for.
async fn acquire(
    db: &DatabaseExecutor<'_>,
    ledger: &Ledger,
    settings: &Settings,
) -> Result<(Hold, Held, Option<Holder>), DbErr> {
    let token = uuid::Uuid::new_v4().to_string();
    let record = match db {
        DatabaseExecutor::Connection(conn) => Some((*conn).clone()),
        _ => None,
    };
    let started = Instant::now();
    let mut waited_for: Option<Holder> = None;
    let mut pause = Duration::from_millis(100);
    loop {
        if let Some(hold) = try_acquire(db, ledger, &token, settings).await? {
            let ledger = *ledger;
            let held = Held {
                token,
                ledger,
                record,
            };
            if let Some(db) = &held.record
                && !matches!(hold, Hold::Lease(_) | Hold::Unshared)
            {
                // Only what waiters are told: the lock itself is held already.
                if let Err(error) = holder::claim(db, ledger.lock_table, &held.token).await {
                    tracing::debug!("could not record the migrator lock's holder: {error}");
                }
            }
            return Ok((hold, held, waited_for));
        }
        let holder = holder::current(db, ledger.lock_table)
            .await
            .unwrap_or_default();
        if waited_for.as_ref() != Some(&holder) {
            tracing::info!("waiting for another migrator of this database: {holder}");
        }
        waited_for = Some(holder);
        if started.elapsed() >= settings.migrator_wait {
            let holder = waited_for.unwrap_or_default();
            return Err(DbErr::Migration(format!(
                "another migrator still holds the migration lock after {} ({holder}); \
                 nothing was changed (wait longer with --migrator-wait or {})",
                format_duration(settings.migrator_wait),
                crate::settings::MIGRATOR_WAIT_ENV
            )));
        }
        runtime::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// One attempt; `None` while another migrator holds the lock.
async fn try_acquire(
    db: &DatabaseExecutor<'_>,
    ledger: &Ledger,
    token: &str,
    settings: &Settings,
) -> Result<Option<Hold>, DbErr> {
    match (db.get_database_backend(), db) {
        (DbBackend::Postgres, DatabaseExecutor::Connection(conn)) => {
            let session = postgres::Session::try_lock(conn, ledger.advisory_key).await?;
            Ok(session.map(Hold::Session))
        }
        (DbBackend::Postgres, _) => {
            let locked = postgres::try_lock_in_transaction(db, ledger.advisory_key).await?;
            Ok(locked.then_some(Hold::Transaction))
        }
        (DbBackend::MySql, DatabaseExecutor::Connection(conn)) => {
            let lease = settings.migrator_lease;
            match mysql::Session::try_lock(conn, ledger).await {
                mysql::SessionLock::Busy => Ok(None),
                mysql::SessionLock::Held(session) => {
                    let claim = mysql::Claim::New {
                        session_node: Some(&session.node),
                    };
                    if mysql::try_claim(db, ledger, token, lease, claim).await? {
                        return Ok(Some(Hold::Lease(Some(session))));
                    }
                    session.close().await;
                    Ok(None)
                }
                mysql::SessionLock::Unavailable => {
                    let claim = mysql::Claim::New { session_node: None };
                    let claimed = mysql::try_claim(db, ledger, token, lease, claim).await?;
                    Ok(claimed.then_some(Hold::Lease(None)))
                }
            }
        }
        (DbBackend::MySql, _) => Ok(Some(Hold::Unshared)),
        (DbBackend::Sqlite, _) => match sqlite::database_file(db).await? {
            None => Ok(Some(Hold::Unshared)),
            Some(path) => Ok(sqlite::try_lock(&path)?.map(Hold::File)),
        },
        (backend, _) => Err(DbErr::Migration(format!("unsupported backend {backend:?}"))),
    }
}

/// Gives the lock back: the holder row cleared (on MariaDB, the lease), then the session
/// closed, the file closed. Nothing here can keep the lock: a session or file closes with
/// the process, a lease lapses.
async fn release(hold: Hold, held: &Held) {
    if let Some(record) = &held.record
        && let Err(error) = holder::clear(record, held.ledger.lock_table, &held.token).await
    {
        // `fresh` and `reset` may have dropped the table with the row.
        tracing::debug!("could not clear the migrator lock's row: {error}");
    }
    match hold {
        Hold::Session(session) => session.close().await,
        Hold::Lease(Some(session)) => session.close().await,
        Hold::File(file) => drop(file),
        Hold::Transaction | Hold::Lease(None) | Hold::Unshared => {}
    }
}
