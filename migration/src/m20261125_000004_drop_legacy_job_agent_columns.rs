//! Drops `job_agents`, `job_agent_id` and `job_agent_config` from `deployment`.
//!
//! Writers are kept out while the last legacy writes are caught up and the columns go, so
//! nothing written to them is lost: PostgreSQL locks `deployment` for the step's short
//! transaction; MariaDB holds `LOCK TABLES` (its DDL commits as it goes, so each step checks
//! what is already done); SQLite does it in one write transaction while it rebuilds the table
//! (see [`crate::sqlite_rebuild`]), keeping every link. Just before, the columns' declarations
//! are recorded ([`crate::legacy_columns`]), and `down` gives back exactly those, filled from
//! the links in batches.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, DbBackend, Statement};

use crate::backends::{self, sqlite::column_definition};
use crate::backfill::{capture, catch_up, drain_pending};
use crate::legacy_columns::{self, LegacyColumnDef};
use crate::locks::{TableLock, lock_in_order, with_lock_retries};
use crate::refill::{job_agents_from_links, job_agents_from_links_in};
use crate::sqlite_rebuild;
use crate::tables::{Deployment, LEGACY_COLUMNS};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::crash_point!("m20261125_000004_drop_legacy_job_agent_columns: up starts");
        let conn = manager.get_connection();
        // Most captured writes are caught up batch by batch, writers still going, so the
        // part that keeps them out is left with the last few.
        if manager.has_table(PENDING).await? {
            drain_pending(conn).await?;
        }
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                let first = async |txn: &_| {
                    legacy_columns::record(txn).await?;
                    finish_backfill(&SchemaManager::new(txn)).await
                };
                sqlite_rebuild::drop_columns(conn, "deployment", &LEGACY_COLUMNS, first).await
            }
            DbBackend::Postgres => {
                let what = "dropping the legacy columns (locks deployment: reads and writes wait)";
                with_lock_retries(conn, what, Default::default(), |txn| {
                    Box::pin(drop_under_postgres_lock(txn))
                })
                .await
            }
            _ => {
                // Before the foreign key goes; kept if a failed run recorded it already.
                legacy_columns::record(conn).await?;
                let what = "dropping the legacy columns (LOCK TABLES deployment)";
                with_lock_retries(conn, what, Default::default(), |txn| {
                    Box::pin(drop_under_mysql_lock(txn))
                })
                .await
            }
        }
    }

    /// Gives the columns back as they were declared, without blocking the application for
    /// longer than a lock timeout: back nullable and unconstrained with the capture (an
    /// instant), filled from the links in batches, then constrained step by step. SQLite,
    /// which cannot alter a column, does it all in one rebuild.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        let columns = legacy_columns::recorded(manager).await?;
        if manager.get_database_backend() == DbBackend::Sqlite {
            let redefined: Vec<(String, String)> = (columns.iter())
                .map(|c| (c.name.clone(), column_definition(c)))
                .collect();
            let first = async |txn: &_| {
                add_columns_back(txn, &columns).await?;
                job_agents_from_links_in(txn).await
            };
            let last = async |txn: &_| capture::install_in(txn).await;
            sqlite_rebuild::redefine_columns(conn, "deployment", &redefined, first, last).await?;
            return legacy_columns::forget(conn).await;
        }
        let what = "adding the legacy columns back (locks deployment for an instant)";
        with_lock_retries(conn, what, Default::default(), |txn| {
            let columns = columns.clone();
            Box::pin(async move {
                let then = [TableLock::share_row_exclusive("job_agent")];
                lock_in_order(txn, TableLock::access_exclusive("deployment"), &then).await?;
                add_columns_back(txn, &columns).await?;
                // The legacy columns are live again: capture writes until the next `up`.
                capture::install_in(txn).await
            })
        })
        .await?;
        job_agents_from_links(conn).await?;
        restore_constraints(conn, &columns).await?;
        legacy_columns::forget(conn).await
    }

    /// Each locking step runs in a transaction of its own, so a lock timeout rolls back only
    /// that step (see [`crate::locks`]).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

/// The pending table of [`capture`].
const PENDING: &str = "deployment_job_agent_backfill_pending";

/// Takes `deployment` first, waiting at most the lock timeout while holding nothing, then
/// everything else the step touches at once or not at all (`NOWAIT`): the step never waits
/// while holding a lock, so no session can deadlock with it.
async fn drop_under_postgres_lock(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let then = [
        TableLock::exclusive("deployment_job_agent"),
        TableLock::access_exclusive("job_agent"),
    ];
    lock_in_order(txn, TableLock::access_exclusive("deployment"), &then).await?;
    crate::crash_point!("drop: deployment locked");
    legacy_columns::record(txn).await?;
    let manager = SchemaManager::new(txn);
    finish_backfill(&manager).await?;
    crate::crash_point!("drop: caught up");
    drop_legacy_columns(&manager).await
}

/// Adds back, nullable and unconstrained, each legacy column that is missing.
async fn add_columns_back(
    txn: &DatabaseTransaction,
    columns: &[LegacyColumnDef],
) -> Result<(), DbErr> {
    let manager = SchemaManager::new(txn);
    let backend = backends::of(manager.get_database_backend());
    for column in columns {
        if manager.has_column("deployment", &column.name).await? {
            continue;
        }
        for sql in backend.add_legacy_column(column) {
            txn.execute_unprepared(&sql).await?;
        }
    }
    Ok(())
}

/// Defaults, `NOT NULL` and checked foreign keys, one short locking step each.
async fn restore_constraints<C>(conn: &C, columns: &[LegacyColumnDef]) -> Result<(), DbErr>
where
    C: ConnectionTrait + sea_orm_migration::sea_orm::TransactionTrait,
{
    let backend = backends::of(conn.get_database_backend());
    for column in columns {
        for step in backend.restore_constraints(column) {
            let what = format!("restoring the declaration of deployment.{}", column.name);
            with_lock_retries(conn, &what, Default::default(), |txn| {
                let step = step.clone();
                Box::pin(async move {
                    if let Some(lock) = step.lock {
                        lock_in_order(txn, lock, &[]).await?;
                    }
                    for sql in &step.statements {
                        txn.execute_unprepared(sql).await?;
                    }
                    Ok(())
                })
            })
            .await?;
        }
    }
    Ok(())
}

/// Applies the writes captured since the backfill, then stops capturing. Without the
/// pending table there is nothing to do: capture creates it before its triggers and drops
/// it after them. (Under MariaDB's `LOCK TABLES` even `DROP TABLE IF EXISTS` of a missing
/// table fails, so the check is needed, not just tidy.)
async fn finish_backfill(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if !manager.has_table(PENDING).await? {
        return Ok(());
    }
    catch_up(manager.get_connection()).await?;
    capture::remove_in(manager.get_connection()).await
}

async fn drop_legacy_columns(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let mut alter = Table::alter();
    alter.table(Deployment::Table);
    let mut any = false;
    for column in LEGACY_COLUMNS {
        if manager.has_column("deployment", column).await? {
            alter.drop_column(Alias::new(column));
            any = true;
        }
    }
    match any {
        true => manager.alter_table(alter).await,
        false => Ok(()),
    }
}

/// Every table the catch-up and the drop touch; foreign-key parents and trigger targets are
/// locked implicitly.
async fn lock_mysql_tables(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let mut sql = "LOCK TABLES deployment WRITE, deployment_job_agent WRITE, \
                   deployment_job_agent_backfill_reject WRITE, job_agent READ"
        .to_owned();
    if manager.has_table(PENDING).await? {
        sql.push_str(", deployment_job_agent_backfill_pending WRITE");
    }
    manager
        .get_connection()
        .execute_unprepared(&sql)
        .await
        .map(|_| ())
}

/// `LOCK TABLES` belongs to the session: the step's transaction pins one connection, and
/// the tables are always unlocked before it goes back to the pool.
async fn drop_under_mysql_lock(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    let locked = SchemaManager::new(txn);
    let result = match lock_mysql_tables(&locked).await {
        Ok(()) => drop_under_mysql_tables_lock(&locked).await,
        Err(error) => Err(error),
    };
    let unlocked = txn.execute_unprepared("UNLOCK TABLES").await;
    result?;
    unlocked.map(|_| ())
}

/// MariaDB commits each DDL statement, and a step that fails is retried from the start once
/// the tables are unlocked: what can still fail for want of a lock (dropping the foreign key
/// to `job_agent` needs that table too) goes before the triggers, because once they are gone
/// a write made between two tries would not be captured.
async fn drop_under_mysql_tables_lock(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::crash_point!("drop: tables locked");
    drop_mysql_foreign_keys(manager, "job_agent_id").await?;
    crate::crash_point!("drop: foreign keys dropped");
    finish_backfill(manager).await?;
    crate::crash_point!("drop: caught up");
    drop_legacy_columns(manager).await
}

/// MariaDB will not drop a column that a foreign key uses, so its constraints go first.
async fn drop_mysql_foreign_keys(manager: &SchemaManager<'_>, column: &str) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    let sql = "SELECT CONSTRAINT_NAME FROM information_schema.KEY_COLUMN_USAGE \
               WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'deployment' \
               AND COLUMN_NAME = ? AND REFERENCED_TABLE_NAME IS NOT NULL";
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            sql,
            [column.into()],
        ))
        .await?;
    for row in rows {
        let name: String = row.try_get_by_index(0)?;
        let drop = Table::alter()
            .table(Deployment::Table)
            .drop_foreign_key(Alias::new(name))
            .to_owned();
        manager.alter_table(drop).await?;
    }
    Ok(())
}
