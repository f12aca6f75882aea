//! The naive migration: a loop over deployments through the entities, one round trip per
//! read and per link. It applies the simplest rules (agent exists, first link wins).

use std::time::{Duration, Instant};

use entity::{deployment_job_agent, job_agent};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel,
    Statement,
};
use uuid::Uuid;

/// Links written and the time it took.
pub struct NaiveRun {
    pub links: u64,
    pub wall: Duration,
}

pub async fn run(db: &DatabaseConnection) -> Result<NaiveRun, DbErr> {
    let backend = db.get_database_backend();
    let started = Instant::now();
    let ids = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id FROM deployment ORDER BY id",
        ))
        .await?;
    let mut links = 0;
    for row in ids {
        let id: Uuid = row.try_get_by_index(0)?;
        let select = match backend {
            sea_orm::DbBackend::Postgres => {
                "SELECT CAST(job_agents AS text) FROM deployment WHERE id = $1"
            }
            _ => "SELECT job_agents FROM deployment WHERE id = ?",
        };
        let statement = Statement::from_sql_and_values(backend, select, [id.into()]);
        let Some(row) = db.query_one_raw(statement).await? else {
            continue;
        };
        let text: String = row.try_get_by_index(0)?;
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        for entry in entries {
            let Some(agent) = entry["ref"].as_str().and_then(|r| Uuid::parse_str(r).ok()) else {
                continue;
            };
            if job_agent::Entity::find_by_id(agent)
                .one(db)
                .await?
                .is_none()
            {
                continue;
            }
            let config = match &entry["config"] {
                serde_json::Value::Object(_) => entry["config"].clone(),
                _ => serde_json::json!({}),
            };
            let link = deployment_job_agent::Model {
                deployment_id: id,
                job_agent_id: agent,
                config,
            };
            if link.into_active_model().insert(db).await.is_ok() {
                links += 1;
            }
        }
    }
    Ok(NaiveRun {
        links,
        wall: started.elapsed(),
    })
}
