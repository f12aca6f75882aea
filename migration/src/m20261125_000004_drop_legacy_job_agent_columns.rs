//! Drops `job_agents`, `job_agent_id` and `job_agent_config` from `deployment`.
//!
//! Writers are kept out while the last legacy writes are caught up and the columns go, so
//! nothing written to them is lost: PostgreSQL locks `deployment` against writes for the
//! migration's transaction; MariaDB holds `LOCK TABLES` (its DDL commits as it goes, so each
//! step checks what is already done); SQLite does it in one write transaction while it
//! rebuilds the table (see [`crate::sqlite_rebuild`]), keeping every link. `down` adds the
//! columns back and refills `job_agents` from the links.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement, TransactionTrait};

use crate::backfill::{capture, catch_up};
use crate::dialect::column_type;
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
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                let first = async |txn: &_| finish_backfill(&SchemaManager::new(txn)).await;
                sqlite_rebuild::drop_columns(conn, "deployment", &LEGACY_COLUMNS, first).await
            }
            DbBackend::Postgres => {
                // Inside this migration's transaction: reads go on, writes wait for the commit.
                let lock = "LOCK TABLE deployment IN SHARE ROW EXCLUSIVE MODE";
                conn.execute_unprepared(lock).await?;
                crate::crash_point!("drop: deployment locked");
                finish_backfill(manager).await?;
                crate::crash_point!("drop: caught up");
                drop_legacy_columns(manager).await
            }
            _ => {
                // LOCK TABLES belongs to one session: a transaction pins one connection.
                let txn = conn.begin().await?;
                let locked = SchemaManager::new(&txn);
                let result = match lock_mysql_tables(&locked).await {
                    Ok(()) => drop_under_mysql_lock(&locked).await,
                    Err(error) => Err(error),
                };
                // Never hand a connection that still holds table locks back to the pool.
                let unlocked = txn.execute_unprepared("UNLOCK TABLES").await;
                result?;
                unlocked?;
                txn.commit().await
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let conn = manager.get_connection();
        if !manager.has_column("deployment", "job_agent_id").await? {
            let id_type = column_type(conn, "job_agent", "id").await?;
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
            manager
                .alter_table(alter.add_column(column).to_owned())
                .await?;
        }
        for (column, default) in [
            (Deployment::JobAgentConfig, "{}"),
            (Deployment::JobAgents, "[]"),
        ] {
            if !manager.has_column("deployment", column.to_string()).await? {
                let mut def = ColumnDef::new(column);
                def.json_binary().not_null().default(default);
                manager
                    .alter_table(
                        Table::alter()
                            .table(Deployment::Table)
                            .add_column(def)
                            .to_owned(),
                    )
                    .await?;
            }
        }
        job_agents_from_links(conn).await?;
        // The legacy columns are live again: capture writes until the next `up`.
        capture::install(conn).await
    }
}

/// Applies the writes captured since the backfill, then stops capturing. Without the
/// pending table there is nothing to do: capture creates it before its triggers and drops
/// it after them. (Under MariaDB's `LOCK TABLES` even `DROP TABLE IF EXISTS` of a missing
/// table fails, so the check is needed, not just tidy.)
async fn finish_backfill(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let pending = "deployment_job_agent_backfill_pending";
    if !manager.has_table(pending).await? {
        return Ok(());
    }
    catch_up(manager.get_connection()).await?;
    capture::remove(manager.get_connection()).await
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
    if manager
        .has_table("deployment_job_agent_backfill_pending")
        .await?
    {
        sql.push_str(", deployment_job_agent_backfill_pending WRITE");
    }
    manager
        .get_connection()
        .execute_unprepared(&sql)
        .await
        .map(|_| ())
}

async fn drop_under_mysql_lock(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::crash_point!("drop: tables locked");
    finish_backfill(manager).await?;
    crate::crash_point!("drop: caught up");
    drop_mysql_foreign_keys(manager, "job_agent_id").await?;
    crate::crash_point!("drop: foreign keys dropped");
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
