//! The legacy tables must have the columns the migrations read before anything is created:
//! a database whose `deployment` is something else entirely is refused with a clear error.

use crate::tables::{DEPLOYMENT, JOB_AGENT};
use sea_orm_migration::prelude::*;

/// Each legacy table and the columns the migrations need from it.
const REQUIRED: [(&str, &[&str]); 3] = [
    ("workspace", &["id"]),
    (JOB_AGENT, &["id", "workspace_id"]),
    (
        DEPLOYMENT,
        &[
            "id",
            "workspace_id",
            "job_agent_id",
            "job_agent_config",
            "job_agents",
        ],
    ),
];

/// Checks every legacy table that exists; missing tables are fine (the baseline creates them).
pub async fn check(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    for (table, columns) in REQUIRED {
        if !manager.has_table(table).await? {
            continue;
        }
        let mut missing = vec![];
        for column in columns {
            if !manager.has_column(table, *column).await? {
                missing.push(*column);
            }
        }
        if !missing.is_empty() {
            return Err(DbErr::Migration(format!(
                "table `{table}` exists but is not the legacy shape (missing {}); \
                 nothing was changed",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}
