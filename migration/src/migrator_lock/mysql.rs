//! MariaDB (and Galera): the lock is a lease on the row of `deployment_job_agent_migrator`,
//! claimed with one `UPDATE` that only succeeds on a free or lapsed row, and renewed while
//! the work runs. On Galera two nodes claiming at once both update the row locally, and
//! certification lets one commit: the other gets a deadlock error, and waits like any
//! migrator that found the lock taken. Times are the server's clock.
//!
//! Beside the lease the holder keeps `GET_LOCK` on a session of its own. It holds on one
//! server only, but there it tells a dead holder at once: a migrator that gets it, on the
//! server the row names, knows the row's holder is gone and takes the lease over without
//! waiting for it to lapse. (Where `GET_LOCK` fails, as Galera may refuse it, the lease
//! alone decides.)

use std::time::{Duration, Instant};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::sqlx::{self, Connection};
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseExecutor};

use super::holder::{self, LOCK_NAME};
use crate::backends;
use crate::runtime;
use crate::settings::{Settings, format_duration};
use crate::tables::MigratorLock;

/// The server's clock, in milliseconds since 1970.
fn now_ms() -> SimpleExpr {
    Expr::cust("CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
}

/// This server, as the row names it.
fn this_node() -> SimpleExpr {
    Expr::cust("CONCAT(@@hostname, ':', @@port)")
}

/// `GET_LOCK` beside the lease.
pub(super) enum SessionLock {
    /// This run holds it, on a session of its own.
    Held(Session),
    /// Another session of this server holds it: a live migrator is here.
    Busy,
    /// The server refused it (Galera may): the lease alone decides.
    Unavailable,
}

/// The session that holds `GET_LOCK`, taken out of the pool.
pub(super) struct Session(sqlx::MySqlConnection);

impl Session {
    /// `GET_LOCK` without waiting.
    pub(super) async fn try_lock(db: &DatabaseConnection) -> SessionLock {
        let pool = db.get_mysql_connection_pool();
        let Ok(conn) = pool.acquire().await else {
            return SessionLock::Unavailable;
        };
        let mut conn = conn.detach();
        // One lock name per database.
        let sql = "SELECT GET_LOCK(CONCAT('deployment_job_agent_migrator.', DATABASE()), 0)";
        let locked: Result<Option<i64>, _> = sqlx::query_scalar(sql).fetch_one(&mut conn).await;
        match locked {
            Ok(Some(1)) => SessionLock::Held(Session(conn)),
            Ok(_) => {
                let _ = conn.close().await;
                SessionLock::Busy
            }
            Err(error) => {
                tracing::debug!("GET_LOCK beside the migrator's lease: {error}");
                let _ = conn.close().await;
                SessionLock::Unavailable
            }
        }
    }

    /// Ends the session, and `GET_LOCK` with it.
    pub(super) async fn close(self) {
        if let Err(error) = self.0.close().await {
            tracing::debug!("closing the migrator lock's session: {error}");
        }
    }
}

/// Claims the lease for `token` if the row is free, lapsed or already `token`'s, or, when
/// this run holds `GET_LOCK` (`holds_session`), left by a dead holder on this server.
pub(super) async fn try_claim(
    db: &DatabaseExecutor<'_>,
    token: &str,
    lease: Duration,
    holds_session: bool,
) -> Result<bool, DbErr> {
    holder::create_table(db).await?;
    let row = Query::insert()
        .into_table(MigratorLock::Table)
        .columns([MigratorLock::Name])
        .values_panic([LOCK_NAME.into()])
        // `ON DUPLICATE KEY UPDATE name = name`: the row, if it is not there yet.
        .on_conflict(
            OnConflict::column(MigratorLock::Name)
                .update_column(MigratorLock::Name)
                .to_owned(),
        )
        .to_owned();
    let lease_ms = <i64 as TryFrom<u128>>::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut values = vec![
        (MigratorLock::Owner, Expr::val(token)),
        (MigratorLock::LeaseUntil, now_ms().add(lease_ms)),
        (MigratorLock::Node, this_node()),
    ];
    let mut free = Cond::any()
        .add(Expr::col(MigratorLock::Owner).is_null())
        .add(Expr::col(MigratorLock::LeaseUntil).lt(now_ms()));
    if holds_session {
        free = free.add(Expr::col(MigratorLock::Node).eq(this_node()));
    }
    if holds_session {
        // A new claim: who this is, from now on. (A renewal keeps the row as it is.)
        values.push((MigratorLock::Step, Expr::val(Option::<String>::None)));
        values.extend(holder::this_process());
    }
    let mut claim = Query::update();
    claim
        .table(MigratorLock::Table)
        .and_where(Expr::col(MigratorLock::Name).eq(LOCK_NAME))
        .cond_where(free.add(Expr::col(MigratorLock::Owner).eq(token)));
    claim.values(values);
    let claimed = async {
        db.execute(&row).await?;
        db.execute(&claim).await
    };
    match claimed.await {
        Ok(result) => Ok(result.rows_affected() == 1),
        // Another node's claim won certification, or holds the row a moment.
        Err(error) if backends::contention(db.get_database_backend(), &error).is_some() => {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Renews `token`'s lease six times per lease while the work runs; returns only when the
/// lease is lost (another migrator took it after this one could not renew it in time).
pub(super) async fn keep_renewing(
    db: &DatabaseExecutor<'_>,
    token: &str,
    settings: &Settings,
) -> DbErr {
    let lease = settings.migrator_lease;
    let mut renewed = Instant::now();
    loop {
        runtime::sleep(lease / 6).await;
        // A claim of one's own row renews it; it also puts the row back when `fresh`
        // dropped the table.
        match try_claim(db, token, lease, false).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                return DbErr::Migration(format!(
                    "lost the migrator lock: it was not renewed for {} and another migrator \
                     took it; this one stopped (a rerun of `up` finishes the work)",
                    format_duration(lease)
                ));
            }
            Err(error) if renewed.elapsed() < lease => {
                tracing::debug!("renewing the migrator lock: {error}");
            }
            Err(error) => {
                return DbErr::Migration(format!(
                    "could not renew the migrator lock for {}: {error}",
                    format_duration(lease)
                ));
            }
        }
    }
}
