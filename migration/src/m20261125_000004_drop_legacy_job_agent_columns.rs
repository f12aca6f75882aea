//! Drops `job_agents`, `job_agent_id` and `job_agent_config` from `deployment`.
//!
//! PostgreSQL does it in one transaction. MariaDB commits DDL as it goes, so each step
//! checks what is already done. SQLite rebuilds the table (see [`crate::sqlite_rebuild`]),
//! keeping every link. `down` adds the columns back and refills `job_agents` from the links.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

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
        let conn = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Sqlite {
            return sqlite_rebuild::drop_columns(conn, "deployment", &LEGACY_COLUMNS).await;
        }
        if manager.get_database_backend() == DbBackend::MySql {
            drop_mysql_foreign_keys(manager, "job_agent_id").await?;
        }
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
        job_agents_from_links(conn).await
    }
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
