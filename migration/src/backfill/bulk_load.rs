//! Bulk-load mode: the join table's foreign keys and reverse index are checked and built
//! once over the loaded table instead of row by row while the backfill writes.
//!
//! Checking two foreign keys row by row costs PostgreSQL about three times the insert itself;
//! validating them once over the finished table is a single join. PostgreSQL's join table is
//! created without them (see the second migration), so nothing has to be dropped: dropping a
//! foreign key would lock its parent `ACCESS EXCLUSIVE`, which hot standbys replay behind
//! their readers. Putting them on is safe on a live database: each key is added `NOT VALID`
//! (from then on new rows are checked and deletes cascade), links whose deployment or agent
//! was deleted meanwhile are removed, and only then is the key validated, which does not
//! block writers. A crash in between leaves the keys missing until the next run of the
//! backfill (or its `down`) adds them. SQLite stops checking on the loading connection and
//! checks every link afterwards. MariaDB keeps its keys throughout.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement, TransactionTrait};

use crate::locks::{TableLock, lock_in_order, with_lock_retries};
use crate::settings::Settings;
use crate::tables::{
    DEPLOYMENT, DEPLOYMENT_FOREIGN_KEY, JOB_AGENT, JOB_AGENT_FOREIGN_KEY, JOB_AGENT_ID_INDEX,
    JOIN_TABLE, job_agent_id_index,
};

/// The join table's foreign keys: (name, column, parent table).
const FOREIGN_KEYS: [(&str, &str, &str); 2] = [
    (DEPLOYMENT_FOREIGN_KEY, "deployment_id", DEPLOYMENT),
    (JOB_AGENT_FOREIGN_KEY, "job_agent_id", JOB_AGENT),
];

/// Stops checking foreign keys on this connection and drops the reverse index (SQLite).
/// PostgreSQL needs nothing: its join table gets its keys and index only in [`restore`]
/// (where a rerun finds them, the load checks them row by row rather than lock a parent).
/// With a maximum replica lag set, though, it builds the reverse index first: built after
/// the load, all its WAL would reach the replicas in one burst no pause can spread out.
pub async fn set_aside<C>(conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    match conn.get_database_backend() {
        DbBackend::Sqlite => {}
        DbBackend::Postgres if Settings::current()?.max_replica_lag.is_some() => {
            return create_job_agent_id_index(conn).await;
        }
        _ => return Ok(()),
    }
    // Only this connection stops checking: another writer's deletes still cascade, and each
    // batch reads and writes in one write transaction, so no link can lose its parent in
    // between. `restore` checks every link afterwards.
    conn.execute_unprepared("PRAGMA foreign_keys = OFF").await?;
    let sql = format!("DROP INDEX IF EXISTS {JOB_AGENT_ID_INDEX}");
    conn.execute_unprepared(&sql).await.map(|_| ())
}

/// Adds the keys and the index the load went without (PostgreSQL, SQLite). Safe to run at
/// any time.
pub async fn restore<C>(conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    match conn.get_database_backend() {
        DbBackend::Postgres => {}
        DbBackend::Sqlite => return restore_sqlite(conn).await,
        _ => return Ok(()),
    }
    for (name, column, parent) in FOREIGN_KEYS {
        if has_constraint(conn, name).await? {
            continue;
        }
        // Adding a key locks the parent against writes (not reads) for an instant.
        let what = format!("putting back the foreign key to {parent}");
        let add = format!(
            "ALTER TABLE {JOIN_TABLE} ADD CONSTRAINT {name} FOREIGN KEY ({column}) \
             REFERENCES {parent} (id) ON DELETE CASCADE NOT VALID"
        );
        let first = TableLock::share_row_exclusive(parent);
        let links = [TableLock::share_row_exclusive(JOIN_TABLE)];
        run_locked(conn, &what, (first, &links), [add]).await?;
        crate::crash_point!("bulk load: constraint step");
        let orphans = format!(
            "DELETE FROM {JOIN_TABLE} l \
             WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = l.{column})"
        );
        conn.execute_unprepared(&orphans).await?;
        crate::crash_point!("bulk load: constraint step");
        // Validation takes no lock that blocks readers or writers of the parent.
        let validate = format!("ALTER TABLE {JOIN_TABLE} VALIDATE CONSTRAINT {name}");
        let first = TableLock {
            table: JOIN_TABLE,
            mode: "SHARE UPDATE EXCLUSIVE",
        };
        run_locked(conn, &what, (first, &[]), [validate]).await?;
        crate::crash_point!("bulk load: constraint step");
    }
    create_job_agent_id_index(conn).await
}

/// Runs fixed statements as one step under the lock timeout, after taking `locks`.
async fn run_locked<C, const N: usize>(
    conn: &C,
    what: &str,
    locks: (TableLock, &[TableLock]),
    statements: [String; N],
) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    with_lock_retries(conn, what, Default::default(), |txn| {
        let statements = statements.clone();
        let then = locks.1.to_vec();
        Box::pin(async move {
            lock_in_order(txn, locks.0, &then).await?;
            for sql in statements {
                txn.execute_unprepared(&sql).await?;
            }
            Ok(())
        })
    })
    .await
}

async fn restore_sqlite<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    create_job_agent_id_index(conn).await?;
    conn.execute_unprepared("PRAGMA foreign_keys = ON").await?;
    let check = "SELECT COUNT(*) FROM pragma_foreign_key_check($1)";
    let statement = Statement::from_sql_and_values(DbBackend::Sqlite, check, [JOIN_TABLE.into()]);
    let row = conn.query_one_raw(statement).await?;
    let violations: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
    match violations {
        0 => Ok(()),
        n => Err(DbErr::Migration(format!(
            "{n} links point to a missing deployment or job agent after the backfill"
        ))),
    }
}

/// Builds the reverse index in one pass over the loaded table, unless it is there.
async fn create_job_agent_id_index<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    let index = job_agent_id_index().if_not_exists().to_owned();
    conn.execute(&index).await.map(|_| ())
}

/// Fresh planner statistics for the join table. The backfill just wrote every row of it, and
/// until the server's own sampling notices, PostgreSQL plans from an empty table's figures:
/// a page's links (100 ids, one index probe each) were then read by a full scan, 300 times
/// slower. MariaDB re-samples on its own; SQLite keeps none unless asked.
pub async fn refresh_statistics<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_unprepared("ANALYZE deployment_job_agent")
            .await?;
    }
    Ok(())
}

async fn has_constraint<C: ConnectionTrait>(conn: &C, name: &str) -> Result<bool, DbErr> {
    let sql = "SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2";
    let values = [JOIN_TABLE.into(), name.into()];
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    Ok(conn.query_one_raw(statement).await?.is_some())
}
