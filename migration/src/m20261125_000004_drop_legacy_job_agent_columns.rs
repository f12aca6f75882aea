//! Drops `job_agents`, `job_agent_id` and `job_agent_config` from `deployment`.
//!
//! Writers are kept out while the last legacy writes are caught up and the columns go, so
//! nothing written to them is lost: PostgreSQL locks `deployment` against writes for the
//! migration's transaction; MariaDB holds `LOCK TABLES` (its DDL commits as it goes, so each
//! step checks what is already done); SQLite does it in one write transaction while it
//! rebuilds the table (see [`crate::sqlite_rebuild`]), keeping every link. `down` adds the
//! columns back and refills `job_agents` from the links.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseTransaction, DbBackend, Statement};

use crate::backfill::{capture, catch_up, drain_pending};
use crate::dialect::column_type;
use crate::locks::{TableLock, lock_in_order, with_lock_retries};
use crate::restore::job_agents_from_links;
use crate::sqlite_rebuild;
use crate::tables::{Deployment, JobAgent};

const LEGACY_COLUMNS: [&str; 3] = ["job_agents", "job_agent_id", "job_agent_config"];

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
                let first = async |txn: &_| finish_backfill(&SchemaManager::new(txn)).await;
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
                let what = "dropping the legacy columns (LOCK TABLES deployment)";
                with_lock_retries(conn, what, Default::default(), |txn| {
                    Box::pin(drop_under_mysql_lock(txn))
                })
                .await
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            // One transaction: the legacy application never sees the columns half filled,
            // and a write it makes once they are back is captured.
            let what = "restoring the legacy columns (locks deployment: reads and writes wait)";
            return with_lock_retries(conn, what, Default::default(), |txn| {
                Box::pin(restore_under_postgres_lock(txn))
            })
            .await;
        }
        // MariaDB commits each DDL statement and SQLite's pool is one connection: one
        // locking step per statement, each safe to run again.
        for alter in add_legacy_columns(manager).await? {
            let what = "adding a legacy column back to deployment";
            with_lock_retries(conn, what, Default::default(), |txn| {
                let alter = alter.clone();
                Box::pin(async move { txn.execute(&alter).await.map(|_| ()) })
            })
            .await?;
        }
        job_agents_from_links(conn).await?;
        // The legacy columns are live again: capture writes until the next `up`.
        capture::install(conn).await
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
    lock_deployment_first(txn, TableLock::exclusive(JOIN_TABLE)).await?;
    crate::crash_point!("drop: deployment locked");
    let manager = SchemaManager::new(txn);
    finish_backfill(&manager).await?;
    crate::crash_point!("drop: caught up");
    drop_legacy_columns(&manager).await
}

async fn restore_under_postgres_lock(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    lock_deployment_first(txn, TableLock::exclusive(JOIN_TABLE)).await?;
    let manager = SchemaManager::new(txn);
    for alter in add_legacy_columns(&manager).await? {
        txn.execute(&alter).await?;
    }
    job_agents_from_links(txn).await?;
    capture::install_in(txn).await
}

const JOIN_TABLE: &str = "deployment_job_agent";

/// `deployment` exclusively (bounded wait), then `links` and `job_agent` (whose foreign key
/// from `deployment.job_agent_id`, if any, the step drops or adds) without waiting.
async fn lock_deployment_first(txn: &DatabaseTransaction, links: TableLock) -> Result<(), DbErr> {
    let then = [links, TableLock::access_exclusive("job_agent")];
    lock_in_order(txn, TableLock::access_exclusive("deployment"), &then).await
}

/// The `ALTER TABLE`s that give `deployment` back the legacy columns it lacks.
async fn add_legacy_columns(
    manager: &SchemaManager<'_>,
) -> Result<Vec<TableAlterStatement>, DbErr> {
    let backend = manager.get_database_backend();
    let mut alters = vec![];
    if !manager.has_column("deployment", "job_agent_id").await? {
        let id_type = column_type(manager.get_connection(), "job_agent", "id").await?;
        let mut column =
            ColumnDef::new_with_type(Deployment::JobAgentId, ColumnType::custom(id_type));
        column.null();
        let mut alter = Table::alter();
        alter.table(Deployment::Table);
        if backend == DbBackend::Sqlite {
            // SQLite adds a foreign key only inline with the column.
            column.extra("REFERENCES \"job_agent\" (\"id\")");
        } else {
            alter.add_foreign_key(
                TableForeignKey::new()
                    .name("fk_deployment_job_agent_id")
                    .from_tbl(Deployment::Table)
                    .from_col(Deployment::JobAgentId)
                    .to_tbl(JobAgent::Table)
                    .to_col(JobAgent::Id),
            );
        }
        alters.push(alter.add_column(column).to_owned());
    }
    for (column, default) in [
        (Deployment::JobAgentConfig, "{}"),
        (Deployment::JobAgents, "[]"),
    ] {
        if !manager.has_column("deployment", column.to_string()).await? {
            let mut def = ColumnDef::new(column);
            def.json_binary().not_null().default(default);
            let alter = Table::alter()
                .table(Deployment::Table)
                .add_column(def)
                .to_owned();
            alters.push(alter);
        }
    }
    Ok(alters)
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
