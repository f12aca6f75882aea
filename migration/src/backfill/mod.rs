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

mod agents;
mod bulk_load;
pub mod capture;
pub use crate::ids;
pub mod preview;
mod resume;
pub mod rules;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sea_orm_migration::sea_orm::{
    ConnectionTrait, DbErr, SqliteTransactionMode, StreamTrait, TransactionOptions,
    TransactionTrait,
};

use crate::backends;
use crate::tables::{DEPLOYMENT, Deployment, LEDGER, LegacyNames};
use online_migration::context::Context;
use online_migration::locks::with_lock_retries;
use online_migration::progress::Progress;
use online_migration::replicas::Throttle;
use online_migration::stop;
use online_migration::table_rows;

use agents::AgentDirectory;
pub use preview::{Preview, preview};
pub use rules::{LegacyColumn, RejectReason};
use sink::PlannedDeployment;
use source::{LegacyRow, Page};

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

    fn merge(&mut self, other: BackfillSummary) {
        self.deployments += other.deployments;
        self.links += other.links;
        for (reason, count) in other.rejects {
            *self.rejects.entry(reason).or_default() += count;
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
/// running it again finishes the job). A batch that loses a race for a lock (a deadlock, a
/// lock timeout, a serialization failure) is rolled back and tried again, from that batch.
pub async fn backfill_all<C>(ctx: &Context, conn: &C) -> Result<BackfillSummary, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
    C::Transaction: StreamTrait,
{
    let started = Instant::now();
    let agents = Arc::new(AgentDirectory::load(conn).await?);
    bulk_load::set_aside(ctx, conn).await?;
    crate::fault::crash_point!("backfill: constraints set aside");
    // However the load ends (its last batch, a stop request, an error), the join table gets
    // its constraints back before the step returns.
    let loaded = load(ctx, conn, agents).await;
    let restored = bulk_load::restore(ctx, conn).await;
    let summary = loaded?;
    crate::fault::crash_point!("backfill: every batch committed");
    restored?;
    bulk_load::refresh_statistics(ctx, conn).await?;
    resume::forget(conn).await?;
    summary.log("backfill", started);
    Ok(summary)
}

/// Forgets where an unfinished backfill stopped: the next one walks the whole table. The
/// backfill's `down` does it before it stops capturing writes.
pub async fn forget_progress<C: ConnectionTrait>(conn: &C) -> Result<(), DbErr> {
    resume::forget(conn).await
}

/// Every batch, in id order, from the first one not committed yet.
async fn load<C>(
    ctx: &Context,
    conn: &C,
    agents: Arc<AgentDirectory>,
) -> Result<BackfillSummary, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
    C::Transaction: StreamTrait,
{
    let batch_size = ctx.settings.batch_size;
    let earlier = sink::Earlier::find(conn).await?;
    let mut progress = Progress::start(
        "backfill",
        "deployments",
        table_rows::count(conn, Deployment::Table).await?,
    );
    let mut summary = BackfillSummary::default();
    resume::prepare(conn).await?;
    let mut cursor = resume::last_done(conn).await?;
    if let Some(last) = &cursor {
        tracing::info!(
            "backfill: going on after deployment {} (an earlier run's batches are committed)",
            last.key()
        );
    }
    // A page's rows stay locked until its links are written where the backend needs it for
    // its foreign keys, and wherever an earlier run left the sync on: a legacy write then
    // either commits first (and the page reads it) or waits and replaces the page's links.
    let locked = backends::of(conn.get_database_backend()).locks_page_rows()
        || crate::sync_guard::installed(conn).await?;
    let mut throttle = Throttle::start(ctx, conn).await?;
    loop {
        throttle.wait_for_replicas(conn, "backfill").await?;
        if ctx.stop.requested() {
            progress.finish();
            let done = summary.deployments;
            return Err(stop::stopped(&format!(
                "backfill: {done} deployments done; the join table's constraints are back, \
                 writes to deployment are still captured"
            )));
        }
        let batch = with_lock_retries(ctx, conn, "backfill batch", write_transaction(), |txn| {
            let (agents, after) = (agents.clone(), cursor.clone());
            Box::pin(async move {
                let page = Page {
                    after: after.as_ref(),
                    limit: batch_size,
                    locked,
                };
                let batch = source::read_page(txn, page, BATCH_BYTES).await?;
                let written = apply(txn, &batch, &agents, earlier).await?;
                if let Some(last) = batch.last() {
                    resume::record(txn, &last.id).await?;
                    let walked = format!("backfill: walked up to deployment {}", last.id.key());
                    online_migration::phase::progressed(txn, &LEDGER, DEPLOYMENT, &walked).await?;
                }
                crate::fault::crash_point!("backfill: batch written, not committed");
                Ok(batch.last().map(|last| (last.id.clone(), written)))
            })
        })
        .await?;
        let Some((last, written)) = batch else { break };
        crate::fault::crash_point!("backfill: batch committed");
        cursor = Some(last);
        progress.advance(written.deployments);
        summary.merge(written);
        tracing::debug!(
            deployments = summary.deployments,
            "backfill batch committed"
        );
    }
    progress.finish();
    Ok(summary)
}

/// Puts back the join table's constraints if a failed backfill left them set aside.
pub async fn restore_constraints<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    bulk_load::restore(ctx, conn).await
}

/// SQLite: take the write lock at `BEGIN`, so no other writer commits between a batch's
/// read and its writes. (Other backends ignore the option.)
fn write_transaction() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

/// Legacy JSON text read per page at most (beyond its first row): a batch of 2,000
/// deployments with megabytes of `job_agents` each is cut short instead of held whole.
pub(crate) const BATCH_BYTES: usize = 8 << 20;

/// Fewer pending deployments than this are left to the locked [`catch_up`].
const LEFT_FOR_THE_LOCKED_CATCH_UP: usize = 64;

/// Backfills again the deployments written since [`capture::install`], a batch per
/// transaction and with writers still going, until only a few are pending: the locked
/// [`catch_up`] that follows is then short, whatever the write rate during the backfill.
///
/// Each batch reads its deployments with a shared row lock and forgets their pending mark in
/// the same transaction: a write racing with the batch either commits first (and the locking
/// read sees it) or waits for the batch and marks the deployment pending again.
pub async fn drain_pending<C>(ctx: &Context, conn: &C) -> Result<BackfillSummary, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let what = "catch-up of writes made during the backfill";
    drain(ctx, conn, LegacyNames::Live, Drain::LeaveTheLastFew, what).await
}

/// Backfills again every deployment still pending, a batch per transaction, reading the
/// legacy columns under their retired names (MariaDB's drop step: no write can change them
/// any more, so the pending set only shrinks).
pub async fn catch_up_retired<C>(ctx: &Context, conn: &C) -> Result<BackfillSummary, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let what = "catch-up of the last writes to the retired columns";
    drain(ctx, conn, LegacyNames::Retired, Drain::All, what).await
}

/// Backfills again every deployment still pending, a batch per transaction, writers going
/// on: once the sync is installed (`crate::expand::begin`), every later write reaches the
/// links by itself, so this ends.
pub async fn catch_up_all<C>(ctx: &Context, conn: &C) -> Result<BackfillSummary, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let what = "catch-up of writes made during the backfill";
    drain(ctx, conn, LegacyNames::Live, Drain::All, what).await
}

/// How far [`drain`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Writers can mark deployments as fast as a batch clears them: stop after a bounded
    /// number of batches, or once a batch finds fewer than [`LEFT_FOR_THE_LOCKED_CATCH_UP`].
    LeaveTheLastFew,
    /// Until none is pending.
    All,
}

async fn drain<C>(
    ctx: &Context,
    conn: &C,
    names: LegacyNames,
    until: Drain,
    what: &str,
) -> Result<BackfillSummary, DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let started = Instant::now();
    let batch_size = ctx.settings.batch_size;
    let agents = Arc::new(AgentDirectory::load(conn).await?);
    let mut summary = BackfillSummary::default();
    let most_batches = match until {
        Drain::LeaveTheLastFew => capture::count_pending(conn).await? / batch_size + 10,
        Drain::All => u64::MAX,
    };
    let mut throttle = Throttle::start(ctx, conn).await?;
    for _ in 0..most_batches {
        throttle.wait_for_replicas(conn, what).await?;
        if ctx.stop.requested() {
            let done = summary.deployments;
            let where_ = format!("catch-up: {done} deployments done, the rest still pending");
            return Err(stop::stopped(&where_));
        }
        let drained = with_lock_retries(ctx, conn, "catch-up batch", write_transaction(), |txn| {
            let agents = agents.clone();
            Box::pin(async move {
                let ids = capture::pending(txn, batch_size).await?;
                if ids.is_empty() {
                    return Ok((0, BackfillSummary::default()));
                }
                let batch = source::read_ids(txn, &ids, names, true).await?;
                let written = apply(txn, &batch, &agents, sink::Earlier::ANYTHING).await?;
                capture::forget(txn, &ids).await?;
                crate::fault::crash_point!("catch-up: batch drained, not committed");
                Ok((ids.len(), written))
            })
        })
        .await?;
        summary.merge(drained.1);
        let done = match until {
            Drain::LeaveTheLastFew => drained.0 < LEFT_FOR_THE_LOCKED_CATCH_UP,
            Drain::All => drained.0 == 0,
        };
        if done {
            break;
        }
    }
    summary.log(what, started);
    Ok(summary)
}

/// Backfills again the deployments still pending since [`capture::install`], until none
/// is. Opens no transaction: the caller holds whatever keeps writers out.
pub async fn catch_up<C: ConnectionTrait>(
    ctx: &Context,
    conn: &C,
) -> Result<BackfillSummary, DbErr> {
    let started = Instant::now();
    let batch_size = ctx.settings.batch_size;
    let agents = AgentDirectory::load(conn).await?;
    let mut summary = BackfillSummary::default();
    loop {
        let ids = capture::pending(conn, batch_size).await?;
        if ids.is_empty() {
            break;
        }
        let batch = source::read_ids(conn, &ids, LegacyNames::Live, false).await?;
        summary.merge(apply(conn, &batch, &agents, sink::Earlier::ANYTHING).await?);
        crate::fault::crash_point!("catch-up: batch written");
        capture::forget(conn, &ids).await?;
        crate::fault::crash_point!("catch-up: batch forgotten");
    }
    summary.log("catch-up under lock", started);
    Ok(summary)
}

/// Plans and writes one batch; what it wrote, for the summary.
async fn apply<C: ConnectionTrait>(
    conn: &C,
    batch: &[LegacyRow],
    agents: &AgentDirectory,
    earlier: sink::Earlier,
) -> Result<BackfillSummary, DbErr> {
    let planned: Vec<PlannedDeployment> = batch
        .iter()
        .map(|row| PlannedDeployment {
            id: row.id.clone(),
            plan: rules::plan_deployment(&row.as_legacy(), |id| agents.facts(id)),
        })
        .collect();
    sink::write_plans(conn, &planned, agents, earlier).await?;
    let mut written = BackfillSummary::default();
    planned.iter().for_each(|p| written.add(&p.plan));
    Ok(written)
}
