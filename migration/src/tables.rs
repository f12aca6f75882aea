//! Table and column names, frozen here for the migrations.
//!
//! The migrations never import the `entity` crate: they must mean the same thing forever,
//! whatever the entities become. These identifiers are the only shared vocabulary.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden, Clone, Copy)]
pub enum Workspace {
    Table,
    Id,
    Name,
}

#[derive(DeriveIden, Clone, Copy)]
pub enum JobAgent {
    Table,
    Id,
    WorkspaceId,
    Name,
}

#[derive(DeriveIden, Clone, Copy)]
pub enum Deployment {
    Table,
    Id,
    Name,
    JobAgentId,
    JobAgentConfig,
    ResourceSelector,
    WorkspaceId,
    JobAgents,
}

#[derive(DeriveIden, Clone, Copy)]
pub enum DeploymentJobAgent {
    Table,
    DeploymentId,
    JobAgentId,
    Config,
}

/// Where the backfill records every legacy value it did not carry over whole.
#[derive(DeriveIden, Clone, Copy)]
pub enum BackfillReject {
    #[sea_orm(iden = "deployment_job_agent_backfill_reject")]
    Table,
    Id,
    DeploymentId,
    LegacyColumn,
    EntryIndex,
    Entry,
    Reason,
}

/// Deployments written while the migration runs, caught up before the legacy columns go.
#[derive(DeriveIden, Clone, Copy)]
pub enum BackfillPending {
    #[sea_orm(iden = "deployment_job_agent_backfill_pending")]
    Table,
    DeploymentId,
}

/// Index names, so `down` drops exactly what `up` created.
pub const JOB_AGENT_ID_INDEX: &str = "deployment_job_agent_job_agent_id_idx";
pub const REJECT_DEPLOYMENT_INDEX: &str = "deployment_job_agent_backfill_reject_deployment_id_idx";

/// The join table's reverse-lookup index: an agent's links in deployment order, so the
/// deployments of an agent are read (and paged) in order without a sort, and deleting an
/// agent finds its links without scanning the table.
pub fn job_agent_id_index() -> IndexCreateStatement {
    Index::create()
        .name(JOB_AGENT_ID_INDEX)
        .table(DeploymentJobAgent::Table)
        .col(DeploymentJobAgent::JobAgentId)
        .col(DeploymentJobAgent::DeploymentId)
        .to_owned()
}

/// The legacy columns the drop migration removes and its `down` gives back.
pub const LEGACY_COLUMNS: [&str; 3] = ["job_agents", "job_agent_id", "job_agent_config"];

/// How each legacy column was declared when the drop migration removed it, so its `down`
/// gives back exactly that (type, nullability, default, foreign key), not what the baseline
/// would have created.
#[derive(DeriveIden, Clone, Copy)]
pub enum LegacyColumnRecord {
    #[sea_orm(iden = "deployment_job_agent_legacy_column")]
    Table,
    ColumnName,
    DeclaredType,
    NotNull,
    DefaultExpr,
    CheckClause,
    FkName,
    FkTable,
    FkColumn,
    FkOnDelete,
}
