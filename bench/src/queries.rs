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
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    Latency {
        query,
        runs: samples.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        statements_per_call: statements as f64 / samples.len() as f64,
    }
}

pub async fn measure(url: &str, runs: usize) -> Result<Vec<Latency>, DbErr> {
    let mut db = Database::connect(url).await?;
    let statements = Arc::new(AtomicUsize::new(0));
    let counter = statements.clone();
    db.set_metric_callback(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut rng = crate::data::Rng::new(7);
    let mut results = vec![];

    let (mut samples, before) = (vec![], statements.load(Ordering::Relaxed));
    for _ in 0..runs {
        let agent = agent_id(rng.next() % (WORKSPACES * AGENTS_PER_WORKSPACE));
        let started = Instant::now();
        Query::deployments_of_job_agent(&db, agent)
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        samples.push(started.elapsed());
    }
    let used = statements.load(Ordering::Relaxed) - before;
    results.push(latency("deployments of one agent", samples, used));

    let sql = "SELECT deployment_id FROM deployment_job_agent LIMIT 1000";
    let ids: Vec<Uuid> = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .iter()
        .map(|r| r.try_get_by_index(0))
        .collect::<Result<_, _>>()?;
    let (mut samples, before) = (vec![], statements.load(Ordering::Relaxed));
    for i in 0..runs {
        let started = Instant::now();
        Query::job_agents_of_deployment(&db, ids[i % ids.len()])
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        samples.push(started.elapsed());
    }
    let used = statements.load(Ordering::Relaxed) - before;
    results.push(latency("agents of a deployment", samples, used));

    let pages = runs.clamp(1, 100);
    let (mut samples, before) = (vec![], statements.load(Ordering::Relaxed));
    for i in 0..pages {
        let ws = workspace_id(i as u64 % WORKSPACES);
        let started = Instant::now();
        Query::workspace_deployments(&db, ws, None, 100)
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        samples.push(started.elapsed());
    }
    let used = statements.load(Ordering::Relaxed) - before;
    results.push(latency("page of 100 with agents", samples, used));

    let join = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "SELECT d.id, d.name, l.config, a.id, a.name FROM \
             (SELECT * FROM deployment WHERE workspace_id = $1 ORDER BY id LIMIT 100) d \
             LEFT JOIN deployment_job_agent l ON l.deployment_id = d.id \
             LEFT JOIN job_agent a ON a.id = l.job_agent_id ORDER BY d.id, a.id"
        }
        _ => {
            "SELECT d.id, d.name, l.config, a.id, a.name FROM \
             (SELECT * FROM deployment WHERE workspace_id = ? ORDER BY id LIMIT 100) d \
             LEFT JOIN deployment_job_agent l ON l.deployment_id = d.id \
             LEFT JOIN job_agent a ON a.id = l.job_agent_id ORDER BY d.id, a.id"
        }
    };
    let (mut samples, before) = (vec![], statements.load(Ordering::Relaxed));
    for i in 0..pages {
        let ws = workspace_id(i as u64 % WORKSPACES);
        let statement =
            Statement::from_sql_and_values(db.get_database_backend(), join, [ws.into()]);
        let started = Instant::now();
        db.query_all_raw(statement).await?;
        samples.push(started.elapsed());
    }
    let used = statements.load(Ordering::Relaxed) - before;
    results.push(latency("hand-written join, same page", samples, used));
    Ok(results)
}
