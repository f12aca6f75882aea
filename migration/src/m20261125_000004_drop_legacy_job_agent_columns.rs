//! Drops `job_agents`, `job_agent_id` and `job_agent_config` from `deployment`, each
//! backend its own way, without losing a write made meanwhile; `down` gives them back as
//! they were declared ([`crate::retire`]).

use sea_orm_migration::prelude::*;

use crate::retire;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::fault::crash_point!("m20261125_000004_drop_legacy_job_agent_columns: up starts");
        crate::replicas::check_settings(manager.get_connection()).await?;
        retire::drop_columns(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::replicas::check_settings(manager.get_connection()).await?;
        retire::restore(manager).await
    }

    /// Each locking step runs in a transaction of its own, so a lock timeout rolls back only
    /// that step (see [`crate::locks`]).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
