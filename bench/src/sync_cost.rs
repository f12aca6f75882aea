//! What the expand phase costs a write: the old version's update of `job_agents` and the new
//! version's `replace_job_agents`, each timed with the sync installed, then again on the
//! same database once it is removed.

use migration::context::Context;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DbBackend, DbErr, Statement};
use service::{AgentAssignment, Mutation};
use uuid::Uuid;

use crate::data::{AGENTS_PER_WORKSPACE, WORKSPACES, agent_id, workspace_id};
use crate::queries::{Latency, done, timed};

/// Takes the database at `url` (the legacy baseline) to the expand phase and times `runs`
/// writes of each version with the sync, then `runs` of each without it.
pub async fn measure(url: &str, runs: usize) -> Result<Vec<Latency>, DbErr> {
    let mut db = Database::connect(url).await?;
    Migrator::up(&db, Some(2)).await?;
    let statements = Arc::new(AtomicUsize::new(0));
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let db = &db;
    let targets = deployments_with_workspace(db, runs).await?;
    let update = match db.get_database_backend() {
        DbBackend::Postgres => "UPDATE deployment SET job_agents = CAST($1 AS jsonb) WHERE id = $2",
        _ => "UPDATE deployment SET job_agents = ? WHERE id = ?",
    };
    let mut latencies = vec![];
    for (with, label) in [(true, "with the sync"), (false, "without")] {
        if !with {
            migration::expand::end(&Context::default(), db).await?;
        }
        let old = timed(label, runs, &statements, async |i| {
            let (deployment, agents) = &targets[i % targets.len()];
            let entries: Vec<serde_json::Value> = (agents.iter())
                .map(|a| serde_json::json!({"ref": a.to_string(), "config": {"write": i}}))
                .collect();
            let values = [
                serde_json::Value::Array(entries).to_string().into(),
                (*deployment).into(),
            ];
            let statement =
                Statement::from_sql_and_values(db.get_database_backend(), update, values);
            db.execute_raw(statement).await.map(drop)
        })
        .await?;
        latencies.push(Latency {
            query: old_label(with),
            ..old
        });
        let new = timed(label, runs, &statements, async |i| {
            let (deployment, agents) = &targets[i % targets.len()];
            let set = (agents.iter())
                .map(|a| AgentAssignment {
                    job_agent_id: *a,
                    config: serde_json::json!({"write": i}),
                })
                .collect();
            done(Mutation::replace_job_agents(db, *deployment, set).await)
        })
        .await?;
        latencies.push(Latency {
            query: new_label(with),
            ..new
        });
    }
    Ok(latencies)
}

fn old_label(with_sync: bool) -> &'static str {
    match with_sync {
        true => "old version: update of job_agents, with the sync",
        false => "old version: update of job_agents, without",
    }
}

fn new_label(with_sync: bool) -> &'static str {
    match with_sync {
        true => "new version: replace_job_agents, with the sync",
        false => "new version: replace_job_agents, without",
    }
}

/// Up to `count` deployments that have a workspace, each with two agents of it.
async fn deployments_with_workspace<C: ConnectionTrait>(
    db: &C,
    count: usize,
) -> Result<Vec<(Uuid, Vec<Uuid>)>, DbErr> {
    let index: HashMap<Uuid, u64> = (0..WORKSPACES).map(|w| (workspace_id(w), w)).collect();
    let sql = "SELECT id, workspace_id FROM deployment WHERE workspace_id IS NOT NULL";
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    let mut targets = vec![];
    for row in rows.iter().take(count) {
        let id: Uuid = row.try_get_by_index(0)?;
        let workspace: Uuid = row.try_get_by_index(1)?;
        let first = index[&workspace] * AGENTS_PER_WORKSPACE;
        targets.push((id, vec![agent_id(first), agent_id(first + 1)]));
    }
    Ok(targets)
}
