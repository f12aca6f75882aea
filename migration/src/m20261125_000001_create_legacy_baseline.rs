//! Baseline: the legacy tables, created only where they do not exist yet.
//!
//! A database that already has them (with any extra columns) is left exactly as it is, so
//! platform teams can adopt the migrator on years-old databases. On a new database this
//! creates the legacy shape, which is what the later migrations move away from. It records
//! which tables it created (`deployment_job_agent_created_table`, see [`crate::ownership`]), and its `down` drops
//! only those: never an application's own tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::ownership;
use crate::tables::{DEPLOYMENT, Deployment, JOB_AGENT, JobAgent, Workspace};
use online_migration::table_rows;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::fault::crash_point!("m20261125_000001_create_legacy_baseline: up starts");
        crate::legacy_shape::check(manager).await?;
        let mut missing = vec![];
        for table in LEGACY_TABLES {
            if !manager.has_table(table).await? {
                missing.push(table);
            }
        }
        ownership::record(manager, &missing).await?;
        manager.create_table(workspace()).await?;
        manager.create_table(job_agent()).await?;
        manager
            .create_table(deployment(manager.get_database_backend()))
            .await
    }

    /// Drops the legacy tables this migration created, and only when all of them are empty
    /// (a rollback must never destroy data silently). Tables that existed before it are the
    /// application's: they stay, and the log says so.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let created = ownership::created(manager).await?;
        let ours = |table: &str| created.iter().any(|c| c == table);
        let conn = manager.get_connection();
        for table in LEGACY_TABLES.into_iter().filter(|t| ours(t)) {
            if manager.has_table(table).await? && table_rows::exist(conn, Alias::new(table)).await?
            {
                return Err(DbErr::Migration(format!(
                    "refusing to roll back the baseline: table `{table}` holds rows; \
                     empty or back it up and drop it yourself"
                )));
            }
        }
        let kept: Vec<&str> = LEGACY_TABLES.into_iter().filter(|t| !ours(t)).collect();
        if !kept.is_empty() {
            tracing::info!(
                "baseline down: leaving {} in place: they existed before the baseline",
                kept.join(", ")
            );
        }
        // Children first: `deployment` references the other two.
        for table in LEGACY_TABLES.into_iter().rev().filter(|t| ours(t)) {
            let drop = Table::drop()
                .table(Alias::new(table))
                .if_exists()
                .to_owned();
            manager.drop_table(drop).await?;
        }
        ownership::drop_record(manager).await
    }
}

/// The legacy tables, parents first.
const LEGACY_TABLES: [&str; 3] = ["workspace", JOB_AGENT, DEPLOYMENT];

fn workspace() -> TableCreateStatement {
    Table::create()
        .table(Workspace::Table)
        .if_not_exists()
        .col(
            ColumnDef::new(Workspace::Id)
                .uuid()
                .not_null()
                .primary_key(),
        )
        .col(ColumnDef::new(Workspace::Name).text().not_null())
        .to_owned()
}

fn job_agent() -> TableCreateStatement {
    Table::create()
        .table(JobAgent::Table)
        .if_not_exists()
        .col(ColumnDef::new(JobAgent::Id).uuid().not_null().primary_key())
        .col(ColumnDef::new(JobAgent::WorkspaceId).uuid().null())
        .col(ColumnDef::new(JobAgent::Name).text().not_null())
        .foreign_key(
            ForeignKey::create()
                .name("fk_job_agent_workspace")
                .from(JobAgent::Table, JobAgent::WorkspaceId)
                .to(Workspace::Table, Workspace::Id),
        )
        .to_owned()
}

fn deployment(backend: DbBackend) -> TableCreateStatement {
    let mut id = ColumnDef::new(Deployment::Id);
    id.uuid().not_null().primary_key();
    if let Some(generated) = crate::backends::of(backend).generated_id_default() {
        id.default(Expr::cust(generated));
    }
    Table::create()
        .table(Deployment::Table)
        .if_not_exists()
        .col(id)
        .col(ColumnDef::new(Deployment::Name).text().not_null())
        .col(ColumnDef::new(Deployment::JobAgentId).uuid().null())
        .col(
            ColumnDef::new(Deployment::JobAgentConfig)
                .json_binary()
                .not_null(),
        )
        .col(ColumnDef::new(Deployment::ResourceSelector).text().null())
        .col(ColumnDef::new(Deployment::WorkspaceId).uuid().null())
        .col(
            ColumnDef::new(Deployment::JobAgents)
                .json_binary()
                .not_null(),
        )
        .foreign_key(
            ForeignKey::create()
                .name("fk_deployment_job_agent_id")
                .from(Deployment::Table, Deployment::JobAgentId)
                .to(JobAgent::Table, JobAgent::Id),
        )
        .foreign_key(
            ForeignKey::create()
                .name("fk_deployment_workspace")
                .from(Deployment::Table, Deployment::WorkspaceId)
                .to(Workspace::Table, Workspace::Id),
        )
        .to_owned()
}
