//! Drops `job_agents`, `job_agent_id` and `job_agent_config` from `deployment`, each
//! backend its own way, without losing a write made meanwhile; `down` gives them back as
//! they were declared ([`crate::retire`]).

use sea_orm_migration::prelude::*;

use crate::retire;
use online_migration::context::Context;

/// The migration, run with the settings and stop request of its run.
#[derive(DeriveMigrationName)]
pub struct Migration {
    pub context: Context,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ctx = &self.context;
        crate::fault::crash_point!("m20261125_000004_drop_legacy_job_agent_columns: up starts");
        online_migration::replicas::check_settings(ctx, manager.get_connection()).await?;
        retire::drop_columns(ctx, manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ctx = &self.context;
        online_migration::replicas::check_settings(ctx, manager.get_connection()).await?;
        retire::restore(ctx, manager).await
    }

    /// Each locking step runs in a transaction of its own, so a lock timeout rolls back only
    /// that step (see [`online_migration::locks`]).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
