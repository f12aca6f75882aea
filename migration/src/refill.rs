//! The way back: legacy `job_agents` filled again from the links, for the drop migration's
//! `down`.
//!
//! After a rollback the legacy columns must mean what the links meant: every link becomes
//! an entry `{"ref": "<agent uuid>", "config": <config>}` (in agent id order, since links
//! have no order), `job_agent_id` is NULL and `job_agent_config` is `{}`. Rows the legacy
//! application wrote since the columns came back (non-NULL) are left as they are.

use std::collections::HashMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::TransactionTrait;

use crate::backends::{json_value, read_id, select_id, select_json_text};
use crate::ids::StoredId;
use crate::tables::{Deployment, DeploymentJobAgent};
use online_migration::context::Context;
use online_migration::locks::with_lock_retries;
use online_migration::replicas::Throttle;

/// Fills the legacy columns of every deployment that has none yet, a batch per transaction
/// (each retried alone if it loses a race for a row lock), writers going on.
pub async fn job_agents_from_links<C>(ctx: &Context, conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let batch_size = ctx.settings.batch_size;
    let mut cursor: Option<StoredId> = None;
    let mut throttle = Throttle::start(ctx, conn).await?;
    let what = "filling job_agents from the links";
    loop {
        throttle.wait_for_replicas(conn, what).await?;
        if ctx.stop.requested() {
            // The columns are back; filling them is what `down` run again finishes.
            return Err(online_migration::stop::stopped(what));
        }
        let last = with_lock_retries(ctx, conn, what, Default::default(), |txn| {
            let after = cursor.clone();
            Box::pin(async move { fill_batch(txn, after.as_ref(), batch_size).await })
        })
        .await?;
        crate::fault::crash_point!("refill: batch committed");
        match last {
            Some(last) => cursor = Some(last),
            None => return Ok(()),
        }
    }
}

/// [`job_agents_from_links`] inside a transaction that already keeps writers out (SQLite's
/// table rebuild).
pub async fn job_agents_from_links_in<C: ConnectionTrait>(
    ctx: &Context,
    txn: &C,
) -> Result<(), DbErr> {
    let batch_size = ctx.settings.batch_size;
    let mut cursor: Option<StoredId> = None;
    while let Some(last) = fill_batch(txn, cursor.as_ref(), batch_size).await? {
        cursor = Some(last);
    }
    Ok(())
}

/// Fills the next `limit` deployments after `after` (in id order) whose columns are still
/// NULL; returns the last id looked at, or `None` past the end. The legacy columns written
/// here come from the links: nothing is applied back (the sync guard).
async fn fill_batch<C: ConnectionTrait>(
    txn: &C,
    after: Option<&StoredId>,
    limit: u64,
) -> Result<Option<StoredId>, DbErr> {
    crate::sync_guard::guarded(txn, async || fill_unguarded(txn, after, limit).await).await
}

async fn fill_unguarded<C: ConnectionTrait>(
    txn: &C,
    after: Option<&StoredId>,
    limit: u64,
) -> Result<Option<StoredId>, DbErr> {
    let backend = txn.get_database_backend();
    let mut query = Query::select();
    query
        .exprs(select_id(backend, Deployment::Table, Deployment::Id))
        .from(Deployment::Table)
        .order_by((Deployment::Table, Deployment::Id), Order::Asc)
        .limit(limit);
    if let Some(after) = after {
        query.and_where(Expr::col((Deployment::Table, Deployment::Id)).gt(after.to_value()));
    }
    let mut ids = vec![];
    for row in txn.query_all(&query).await? {
        ids.extend(read_id(backend, &row, &mut 0)?);
    }
    let Some(last) = ids.last().cloned() else {
        return Ok(None);
    };
    let unfilled = |column: Deployment| Expr::col(column).is_null();
    for (deployment, entries) in links_of(txn, &ids).await? {
        let update = Query::update()
            .table(Deployment::Table)
            .value(
                Deployment::JobAgents,
                json_value(backend, format!("[{}]", entries.join(","))),
            )
            .and_where(Expr::col(Deployment::Id).eq(deployment.to_value()))
            .and_where(unfilled(Deployment::JobAgents))
            .to_owned();
        txn.execute(&update).await?;
    }
    let in_batch = || Expr::col(Deployment::Id).is_in(ids.iter().map(StoredId::to_value));
    for (column, empty) in [
        (Deployment::JobAgents, "[]"),
        (Deployment::JobAgentConfig, "{}"),
    ] {
        let update = Query::update()
            .table(Deployment::Table)
            .value(column, json_value(backend, empty.to_owned()))
            .and_where(in_batch())
            .and_where(unfilled(column))
            .to_owned();
        txn.execute(&update).await?;
    }
    Ok(Some(last))
}

/// The legacy entries of these deployments' links, by deployment.
async fn links_of<C: ConnectionTrait>(
    conn: &C,
    deployments: &[StoredId],
) -> Result<HashMap<StoredId, Vec<String>>, DbErr> {
    let backend = conn.get_database_backend();
    let table = DeploymentJobAgent::Table;
    let mut query = Query::select();
    query
        .exprs(select_id(backend, table, DeploymentJobAgent::DeploymentId))
        .exprs(select_id(backend, table, DeploymentJobAgent::JobAgentId))
        .expr(select_json_text(backend, table, DeploymentJobAgent::Config))
        .from(table)
        .and_where(
            Expr::col(DeploymentJobAgent::DeploymentId)
                .is_in(deployments.iter().map(StoredId::to_value)),
        )
        .order_by(DeploymentJobAgent::DeploymentId, Order::Asc)
        .order_by(DeploymentJobAgent::JobAgentId, Order::Asc);
    let mut entries: HashMap<StoredId, Vec<String>> = HashMap::new();
    for row in conn.query_all(&query).await? {
        let mut index = 0;
        let (Some(deployment), Some(agent)) = (
            read_id(backend, &row, &mut index)?,
            read_id(backend, &row, &mut index)?,
        ) else {
            continue;
        };
        let config: String = row.try_get_by_index(index)?;
        let reference = serde_json::to_string(&agent.key().to_string()).expect("a string");
        let entry = format!("{{\"ref\":{reference},\"config\":{config}}}");
        entries.entry(deployment).or_default().push(entry);
    }
    Ok(entries)
}
