//! The way back: legacy `job_agents` rebuilt from the links, for the drop migration's `down`.
//!
//! After a rollback the legacy columns must mean what the links meant: every link becomes
//! an entry `{"ref": "<agent uuid>", "config": <config>}` (in agent id order, since links
//! have no order), `job_agent_id` is NULL and `job_agent_config` is `{}`.

use std::collections::HashMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{TransactionSession, TransactionTrait};

use crate::backfill::ids::StoredId;
use crate::dialect::{json_value, read_id, select_id, select_json_text};
use crate::tables::{Deployment, DeploymentJobAgent};

/// Writes each deployment's links back into its `job_agents` column.
pub async fn job_agents_from_links<C>(conn: &C) -> Result<(), DbErr>
where
    C: ConnectionTrait + TransactionTrait,
{
    let backend = conn.get_database_backend();
    let batch_size = crate::settings::Settings::current()?.batch_size;
    let mut cursor: Option<StoredId> = None;
    loop {
        if crate::stop::requested() {
            // Every legacy column is back; rebuilding `job_agents` is what `down` redoes.
            return Err(crate::stop::stopped("rebuilding job_agents from the links"));
        }
        let txn = conn.begin().await?;
        let mut query = Query::select();
        query
            .exprs(select_id(backend, Deployment::Table, Deployment::Id))
            .from(Deployment::Table)
            .order_by((Deployment::Table, Deployment::Id), Order::Asc)
            .limit(batch_size);
        if let Some(after) = &cursor {
            query.and_where(Expr::col((Deployment::Table, Deployment::Id)).gt(after.to_value()));
        }
        let mut ids = vec![];
        for row in txn.query_all(&query).await? {
            ids.extend(read_id(backend, &row, &mut 0)?);
        }
        let Some(last) = ids.last() else { break };
        cursor = Some(last.clone());
        for (deployment, entries) in links_of(&txn, &ids).await? {
            let update = Query::update()
                .table(Deployment::Table)
                .value(
                    Deployment::JobAgents,
                    json_value(backend, format!("[{}]", entries.join(","))),
                )
                .and_where(Expr::col(Deployment::Id).eq(deployment.to_value()))
                .to_owned();
            txn.execute(&update).await?;
        }
        txn.commit().await?;
    }
    Ok(())
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
