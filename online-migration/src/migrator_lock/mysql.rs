//! MariaDB (and Galera): the lock is a lease on the row of the ledger's lock table,
//! claimed with one `UPDATE` that only succeeds on a free or lapsed row, and renewed while
//! the work runs. On Galera two nodes claiming at once both update the row locally, and
//! certification lets one commit: the other gets a deadlock error, and waits like any
//! migrator that found the lock taken. Times are the server's clock.
//!
//! Beside the lease the holder keeps `GET_LOCK` on a session of its own, and the row names
//! that session's server. `GET_LOCK` holds on one server only, but there it tells a dead
//! holder at once: a migrator that gets it on the server the row names knows the row's
//! holder is gone and takes the lease over without waiting for it to lapse. (Where
//! `GET_LOCK` fails, as Galera may refuse it, the row names no server and the lease alone
//! decides.) Waiting migrators only read and `UPDATE` nothing-matching rows; the table is
//! created only when missing, since Galera runs every DDL in total order.

use std::time::{Duration, Instant};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::sqlx::{self, Connection};
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseExecutor};

use super::holder::{self, LOCK_NAME, LockColumn};
use crate::backends;
use crate::ledger::Ledger;
use crate::runtime;
use crate::settings::{Settings, format_duration};

/// The server's clock, in milliseconds since 1970.
fn now_ms() -> SimpleExpr {
    Expr::cust("CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
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

/// The session that holds `GET_LOCK`, taken out of the pool, and the server it is on
/// (`host:port`: behind a proxy, not necessarily the server of the pool's other sessions).
pub(super) struct Session {
    conn: sqlx::MySqlConnection,
    pub(super) node: String,
}

impl Session {
    /// `GET_LOCK` without waiting.
    pub(super) async fn try_lock(db: &DatabaseConnection, ledger: &Ledger) -> SessionLock {
        let pool = db.get_mysql_connection_pool();
        let Ok(conn) = pool.acquire().await else {
            return SessionLock::Unavailable;
        };
        let mut conn = conn.detach();
        // One lock name per database.
        let sql = "SELECT GET_LOCK(CONCAT(?, '.', DATABASE()), 0), \
                   CONCAT(@@hostname, ':', @@port)";
        let locked: Result<(Option<i64>, String), _> = sqlx::query_as(sql)
            .bind(ledger.server_lock_name)
            .fetch_one(&mut conn)
            .await;
        match locked {
            Ok((Some(1), node)) => SessionLock::Held(Session { conn, node }),
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
        if let Err(error) = self.conn.close().await {
            tracing::debug!("closing the migrator lock's session: {error}");
        }
    }
}

/// What an `UPDATE` of the lease row asks for.
pub(super) enum Claim<'a> {
    /// The lease, if it is free, lapsed or left by a dead holder on `session_node`, the
    /// server where this run holds `GET_LOCK` (none: the lease alone decides).
    New { session_node: Option<&'a str> },
    /// A longer lease, if it is still this run's.
    Renew,
}

/// Claims or renews the lease for `token`; whether it is this run's now. The table and
/// its row are made when missing, and only then: a Galera cluster runs every DDL in
/// total order, so waiting migrators must not issue any. Losing a race while making them
/// (a deadlock, a failed certification: two migrators starting on a new database) is a
/// lost try, retried, not an error.
pub(super) async fn try_claim(
    db: &DatabaseExecutor<'_>,
    ledger: &Ledger,
    token: &str,
    lease: Duration,
    claim: Claim<'_>,
) -> Result<bool, DbErr> {
    let update = claim_statement(ledger, token, lease, &claim);
    let claimed = match db.execute(&update).await {
        Ok(result) if result.rows_affected() == 1 => return Ok(true),
        Ok(_) if matches!(claim, Claim::Renew) => return Ok(false),
        Ok(_) => {
            async {
                if row_exists(db, ledger).await? {
                    return Ok(None);
                }
                add_row(db, ledger).await?;
                db.execute(&update).await.map(Some)
            }
            .await
        }
        Err(error) if missing_table(&error) => {
            async {
                holder::create_table(db, ledger.lock_table).await?;
                add_row(db, ledger).await?;
                db.execute(&update).await.map(Some)
            }
            .await
        }
        Err(error) => Err(error),
    };
    match claimed {
        Ok(result) => Ok(result.is_some_and(|result| result.rows_affected() == 1)),
        // Another node's claim (or its table, or its row) won certification, or holds the
        // row a moment: the next try sees who holds it.
        Err(error) if backends::contention(db.get_database_backend(), &error).is_some() => {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

fn claim_statement(
    ledger: &Ledger,
    token: &str,
    lease: Duration,
    claim: &Claim<'_>,
) -> UpdateStatement {
    let lease_ms = <i64 as TryFrom<u128>>::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut values = vec![(LockColumn::LeaseUntil, now_ms().add(lease_ms))];
    let mut mine = Cond::any().add(Expr::col(LockColumn::Owner).eq(token));
    if let Claim::New { session_node } = claim {
        values.push((LockColumn::Owner, Expr::val(token)));
        values.push((LockColumn::Node, Expr::val(session_node.map(str::to_owned))));
        values.push((LockColumn::Step, Expr::val(Option::<String>::None)));
        values.extend(holder::this_process());
        mine = mine
            .add(Expr::col(LockColumn::Owner).is_null())
            .add(Expr::col(LockColumn::LeaseUntil).lt(now_ms()));
        if let Some(node) = session_node {
            // This run holds GET_LOCK where the holder held it: the holder is gone.
            mine = mine.add(Expr::col(LockColumn::Node).eq(*node));
        }
    }
    Query::update()
        .table(Alias::new(ledger.lock_table))
        .values(values)
        .and_where(Expr::col(LockColumn::Name).eq(LOCK_NAME))
        .cond_where(mine)
        .to_owned()
}

async fn row_exists(db: &DatabaseExecutor<'_>, ledger: &Ledger) -> Result<bool, DbErr> {
    let select = Query::select()
        .expr(Expr::val(1))
        .from(Alias::new(ledger.lock_table))
        .and_where(Expr::col(LockColumn::Name).eq(LOCK_NAME))
        .to_owned();
    Ok(db.query_one(&select).await?.is_some())
}

/// The row, free (`ON DUPLICATE KEY UPDATE name = name`: another migrator may add it first).
async fn add_row(db: &DatabaseExecutor<'_>, ledger: &Ledger) -> Result<(), DbErr> {
    let row = Query::insert()
        .into_table(Alias::new(ledger.lock_table))
        .columns([LockColumn::Name])
        .values_panic([LOCK_NAME.into()])
        .on_conflict(
            OnConflict::column(LockColumn::Name)
                .update_column(LockColumn::Name)
                .to_owned(),
        )
        .to_owned();
    db.execute(&row).await.map(|_| ())
}

/// ER_NO_SUCH_TABLE: the lock's table is not there yet (or `fresh` dropped it).
fn missing_table(error: &DbErr) -> bool {
    (backends::database_error(error))
        .and_then(|error| error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|error| error.number() == 1146)
}

/// Renews `token`'s lease six times per lease while the work runs; returns only when the
/// lease is lost (another migrator took it after this one could not renew it in time).
pub(super) async fn keep_renewing(
    db: &DatabaseExecutor<'_>,
    ledger: &Ledger,
    token: &str,
    settings: &Settings,
) -> DbErr {
    let lease = settings.migrator_lease;
    let mut renewed = Instant::now();
    loop {
        runtime::sleep(lease / 6).await;
        // A claim of one's own row renews it; it also puts the row back when `fresh`
        // dropped the table.
        let claimed = match try_claim(db, ledger, token, lease, Claim::Renew).await {
            // `fresh` dropped the table, with the row: claim it again.
            Ok(false) => {
                let claim = Claim::New { session_node: None };
                try_claim(db, ledger, token, lease, claim).await
            }
            renewed => renewed,
        };
        match claimed {
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
