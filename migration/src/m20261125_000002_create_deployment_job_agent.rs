//! Creates the join table `deployment_job_agent`, its reverse-lookup index, and the table
//! where the backfill records what it could not carry over ([`crate::join_table`]).

use sea_orm_migration::prelude::*;

use crate::join_table;
use online_migration::context::Context;

/// The migration, run with the settings and stop request of its run.
#[derive(DeriveMigrationName)]
pub struct Migration {
    pub context: Context,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::fault::crash_point!("m20261125_000002_create_deployment_job_agent: up starts");
        join_table::create(&self.context, manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        join_table::drop(&self.context, manager).await
    }

    /// Each locking step runs in a transaction of its own, so a lock timeout rolls back only
    /// that step (see [`online_migration::locks`]).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
