//! The service's queries on the migrated data: latency percentiles, and the page query
//! against one hand-written join returning the same rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbErr, Statement};
use serde::Serialize;
use service::Query;
use uuid::Uuid;

use crate::data::{AGENTS_PER_WORKSPACE, WORKSPACES, agent_id, workspace_id};
use crate::measure::quantile_ms;

/// Percentiles of one query, in milliseconds.
#[derive(Serialize)]
pub struct Latency {
    pub query: &'static str,
    pub runs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub statements_per_call: f64,
}

fn latency(query: &'static str, mut samples: Vec<Duration>, statements: usize) -> Latency {
    samples.sort();
    Latency {
        query,
        runs: samples.len(),
        p50_ms: quantile_ms(&samples, 0.5),
        p99_ms: quantile_ms(&samples, 0.99),
        statements_per_call: statements as f64 / samples.len() as f64,
    }
}

/// Calls `call` `runs` times (with the call's number) and reports its latency and the
/// statements it sent, counted by the connection's metric callback.
pub(crate) async fn timed(
    query: &'static str,
    runs: usize,
    statements: &AtomicUsize,
    mut call: impl AsyncFnMut(usize) -> Result<(), DbErr>,
) -> Result<Latency, DbErr> {
    let before = statements.load(Ordering::Relaxed);
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        call(i).await?;
        samples.push(started.elapsed());
    }
    let used = statements.load(Ordering::Relaxed) - before;
    Ok(latency(query, samples, used))
}

/// A service call's outcome, its result dropped: only its time counts.
pub(crate) fn done<T>(outcome: Result<T, service::ServiceError>) -> Result<(), DbErr> {
    outcome
        .map(drop)
        .map_err(|error| DbErr::Custom(error.to_string()))
}

pub async fn measure(url: &str, runs: usize) -> Result<Vec<Latency>, DbErr> {
    let mut db = Database::connect(url).await?;
    let statements = Arc::new(AtomicUsize::new(0));
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let db = &db;
    let agents: Vec<Uuid> = {
        let mut rng = crate::data::Rng::new(7);
        (0..runs)
            .map(|_| agent_id(rng.next() % (WORKSPACES * AGENTS_PER_WORKSPACE)))
            .collect()
    };
    let sql = "SELECT deployment_id FROM deployment_job_agent LIMIT 1000";
    let deployments: Vec<Uuid> = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .iter()
        .map(|r| r.try_get_by_index(0))
        .collect::<Result<_, _>>()?;
    let pages = runs.clamp(1, 100);
    let workspace = |i: usize| workspace_id(i as u64 % WORKSPACES);
    let join = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => HAND_WRITTEN_PAGE.to_owned(),
        _ => HAND_WRITTEN_PAGE.replace("$1", "?"),
    };

    Ok(vec![
        timed(
            "deployments of one agent (all)",
            runs,
            &statements,
            async |i| done(Query::deployments_of_job_agent(db, agents[i]).await),
        )
        .await?,
        timed(
            "deployments of one agent (page of 100)",
            runs,
            &statements,
            async |i| done(Query::deployments_of_job_agent_page(db, agents[i], None, 100).await),
        )
        .await?,
        timed("agents of a deployment", runs, &statements, async |i| {
            let id = deployments[i % deployments.len()];
            done(Query::job_agents_of_deployment(db, id).await)
        })
        .await?,
        timed("page of 100 with agents", pages, &statements, async |i| {
            done(Query::workspace_deployments(db, workspace(i), None, 100).await)
        })
        .await?,
        timed(
            "hand-written join, same page",
            pages,
            &statements,
            async |i| {
                let values = [workspace(i).into()];
                let statement =
                    Statement::from_sql_and_values(db.get_database_backend(), &join, values);
                db.query_all_raw(statement).await.map(drop)
            },
        )
        .await?,
    ])
}

/// The page of 100 deployments with their agents, as one join.
const HAND_WRITTEN_PAGE: &str = "SELECT d.id, d.name, l.config, a.id, a.name FROM \
     (SELECT * FROM deployment WHERE workspace_id = $1 ORDER BY id LIMIT 100) d \
     LEFT JOIN deployment_job_agent l ON l.deployment_id = d.id \
     LEFT JOIN job_agent a ON a.id = l.job_agent_id ORDER BY d.id, a.id";
