//! The backfill: legacy `deployment` columns → `deployment_job_agent` links and reject rows.
//!
//! [`rules`] decides what each deployment becomes; this module moves the data. It walks
//! `deployment` in id order, a batch at a time, and applies each batch in its own
//! transaction: the batch's links are replaced and its rejects recorded unless already
//! there. That makes the backfill idempotent: run again after a crash, a `down`, or with
//! some deployments changed, it converges to the same links and never duplicates a reject.
//! Memory stays bounded by the batch size (plus the `job_agent` table, which is read once).

pub mod ids;
pub mod rules;
mod store;

use std::collections::BTreeMap;
use std::time::Instant;

use sea_orm_migration::sea_orm::{ConnectionTrait, DbErr, TransactionSession, TransactionTrait};

pub use rules::{LegacyColumn, RejectReason};

/// Deployments read and written per transaction.
pub const BATCH_SIZE: u64 = 2_000;

/// What a backfill did, for the log line operators read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillSummary {
    pub deployments: u64,
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
}

/// Backfills every deployment. Bad data never aborts it: it becomes reject rows. Only a
/// database error does, and then every batch committed so far is still consistent.
pub async fn backfill_all<C>(conn: &C) -> Result<BackfillSummary, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let started = Instant::now();
    let agents = store::AgentDirectory::load(conn).await?;
    let mut summary = BackfillSummary::default();
    let mut cursor = None;
    loop {
        let txn = conn.begin().await?;
        let batch = store::read_deployments(&txn, cursor.as_ref(), BATCH_SIZE).await?;
        let Some(last) = batch.last() else { break };
        cursor = Some(last.id.clone());
        let planned: Vec<store::PlannedDeployment> = batch
            .iter()
            .map(|row| store::PlannedDeployment {
                id: row.id.clone(),
                plan: rules::plan_deployment(&row.as_legacy(), |id| agents.facts(id)),
            })
            .collect();
        store::write_plans(&txn, &planned, &agents).await?;
        txn.commit().await?;
        planned.iter().for_each(|p| summary.add(&p.plan));
        tracing::debug!(
            deployments = summary.deployments,
            "backfill batch committed"
        );
    }
    tracing::info!(
        "backfill: {} deployments read, {} links written, rejects: {}, {:.1}s",
        summary.deployments,
        summary.links,
        summary.rejects_line(),
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}
