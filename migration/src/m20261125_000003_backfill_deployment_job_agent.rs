//! Backfills `deployment_job_agent` from the legacy columns, by the rules in
//! [`crate::backfill::rules`].
//!
//! It manages its own transactions (one per batch) instead of one around the whole table,
//! so a large live table is never locked for the length of the backfill, and a rerun after
//! a crash converges to the same state. Writes made meanwhile are captured by triggers and
//! caught up once it is done; then the expand phase begins ([`crate::expand`]): old and new
//! application versions may run side by side until the drop migration.

use sea_orm_migration::prelude::*;

use crate::backfill::{backfill_all, capture, forget_progress, restore_constraints};
use crate::expand;
use crate::tables::DeploymentJobAgent;
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
        crate::fault::crash_point!("m20261125_000003_backfill_deployment_job_agent: up starts");
        let conn = manager.get_connection();
        online_migration::replicas::check_settings(ctx, conn).await?;
        crate::backends::log_cluster_note(conn).await?;
        // Capture first: a write that lands after this is caught up before the expand phase
        // begins, and from then on each write reaches the other shape by itself.
        capture::install(ctx, conn).await?;
        backfill_all(ctx, conn).await?;
        expand::begin(ctx, manager).await
    }

    /// Removes the links the backfill wrote. The legacy columns still hold (or, after the
    /// drop migration's `down`, hold again) what the links said. Reject rows are kept.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ctx = &self.context;
        // Where an unfinished backfill stopped is forgotten before the capture goes: writes
        // made after that could not be caught up by a run that skips what it walked.
        forget_progress(manager.get_connection()).await?;
        // The sync goes first: deleting the links must not empty the legacy columns.
        expand::end(ctx, manager.get_connection()).await?;
        capture::remove(ctx, manager.get_connection()).await?;
        restore_constraints(ctx, manager.get_connection()).await?;
        let delete = Query::delete()
            .from_table(DeploymentJobAgent::Table)
            .to_owned();
        manager.get_connection().execute(&delete).await.map(|_| ())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
