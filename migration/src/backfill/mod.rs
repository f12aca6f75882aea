//! The backfill: legacy `deployment` columns → `deployment_job_agent` links and reject rows.
//!
//! [`rules`] decides what each deployment becomes; this module moves the data. It walks
//! `deployment` in id order, a batch at a time, and applies each batch in its own
//! transaction: the batch's links are replaced and its rejects recorded unless already
//! there. That makes the backfill idempotent: run again after a crash, a `down`, or with
//! some deployments changed, it converges to the same links and never duplicates a reject.
//! Memory stays bounded by the batch size (plus the `job_agent` table, which is read once).
//!
//! Writes made while it runs are recorded by [`capture`] and applied by [`catch_up`].

mod bulk_load;
pub mod capture;
pub mod ids;
pub mod preview;
mod progress;
pub mod rules;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::time::Instant;

use sea_orm_migration::sea_orm::{
    ConnectionTrait, DbErr, SqliteTransactionMode, TransactionOptions, TransactionSession,
    TransactionTrait,
};

pub use preview::{Preview, preview};
pub use rules::{LegacyColumn, RejectReason};
use store::{AgentDirectory, LegacyRow, PlannedDeployment, Selection};

/// Deployments read and written per transaction.
pub const BATCH_SIZE: u64 = 2_000;

/// What a backfill did, for the log line operators read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillSummary {
    /// Deployments read.
    pub deployments: u64,
    /// Links written.
    pub links: u64,
    /// Reject rows planned per reason (including ones already recorded by an earlier run).
    pub rejects: BTreeMap<RejectReason, u64>,
}

impl BackfillSummary {
    fn add(&mut self, plan: &rules::Plan) {
        self.deployments += 1;
        self.links += plan.links.len() as u64;
        for reject in &plan.rejects {
            *self.rejects.entry(reject.reason).or_default() += 1;
        }
    }

    /// `invalid_ref=2 duplicate=1`, or `none`.
    pub fn rejects_line(&self) -> String {
        if self.rejects.is_empty() {
            return "none".to_owned();
        }
        let parts: Vec<String> = (self.rejects.iter())
            .map(|(reason, count)| format!("{}={count}", reason.as_str()))
            .collect();
        parts.join(" ")
    }

    fn log(&self, what: &str, started: Instant) {
        tracing::info!(
            "{what}: {} deployments read, {} links written, rejects: {}, {:.1}s",
            self.deployments,
            self.links,
            self.rejects_line(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// Backfills every deployment. Bad data never aborts it: it becomes reject rows. Only a
/// database error does, and then every batch committed so far is still consistent (and
/// running it again finishes the job).
pub async fn backfill_all<C>(conn: &C) -> Result<BackfillSummary, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let started = Instant::now();
    let agents = AgentDirectory::load(conn).await?;
    bulk_load::set_aside(conn).await?;
    crate::crash_point!("backfill: constraints set aside");
    let earlier = store::Earlier::find(conn).await?;
    let mut progress = progress::Progress::start(store::count_deployments(conn).await?);
    let mut summary = BackfillSummary::default();
    let mut cursor = None;
    loop {
        let txn = conn.begin_with_options(write_transaction()).await?;
        let page = Selection::LockedPage {
            after: cursor.as_ref(),
            limit: crate::fault::batch_size(BATCH_SIZE),
        };
        let batch = store::read_deployments(&txn, page).await?;
        let Some(last) = batch.last() else { break };
        cursor = Some(last.id.clone());
        apply(&txn, &batch, &agents, earlier, &mut summary).await?;
        crate::crash_point!("backfill: batch written, not committed");
        txn.commit().await?;
        crate::crash_point!("backfill: batch committed");
        progress.advance(batch.len() as u64);
        tracing::debug!(
            deployments = summary.deployments,
            "backfill batch committed"
        );
    }
    progress.finish();
    bulk_load::restore(conn).await?;
    bulk_load::refresh_statistics(conn).await?;
    summary.log("backfill", started);
    Ok(summary)
}

/// Puts back the join table's constraints if a failed backfill left them set aside.
pub async fn restore_constraints<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    bulk_load::restore(conn).await
}

/// SQLite: take the write lock at `BEGIN`, so no other writer commits between a batch's
/// read and its writes. (Other backends ignore the option.)
fn write_transaction() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

/// Backfills again the deployments written since [`capture::install`], until none is
/// pending. Opens no transaction: the caller holds whatever keeps writers out.
pub async fn catch_up<C: ConnectionTrait>(conn: &C) -> Result<BackfillSummary, DbErr> {
    let started = Instant::now();
    let agents = AgentDirectory::load(conn).await?;
    let mut summary = BackfillSummary::default();
    loop {
        let ids = capture::pending(conn, crate::fault::batch_size(BATCH_SIZE)).await?;
        if ids.is_empty() {
            break;
        }
        let batch = store::read_deployments(conn, Selection::Ids(&ids)).await?;
        apply(
            conn,
            &batch,
            &agents,
            store::Earlier::ANYTHING,
            &mut summary,
        )
        .await?;
        crate::crash_point!("catch-up: batch written");
        capture::forget(conn, &ids).await?;
        crate::crash_point!("catch-up: batch forgotten");
    }
    summary.log("catch-up of writes made during the backfill", started);
    Ok(summary)
}

async fn apply<C: ConnectionTrait>(
    conn: &C,
    batch: &[LegacyRow],
    agents: &AgentDirectory,
    earlier: store::Earlier,
    summary: &mut BackfillSummary,
) -> Result<(), DbErr> {
    let planned: Vec<PlannedDeployment> = batch
        .iter()
        .map(|row| PlannedDeployment {
            id: row.id.clone(),
            plan: rules::plan_deployment(&row.as_legacy(), |id| agents.facts(id)),
        })
        .collect();
    store::write_plans(conn, &planned, agents, earlier).await?;
    planned.iter().for_each(|p| summary.add(&p.plan));
    Ok(())
}
