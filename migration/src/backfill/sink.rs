//! The backfill's sink: each deployment's links replaced and its rejects recorded (never
//! twice), in multi-row inserts with bound values.

use std::collections::{HashMap, HashSet};

use sea_orm_migration::prelude::*;

use super::agents::AgentDirectory;
use super::rules::{Plan, PlannedReject};
use crate::backends::{json_value, read_id, select_id, select_json_text};
use crate::ids::{StoredId, null_id};
use crate::tables::{BackfillReject, DeploymentJobAgent};
use online_migration::table_rows;

/// Rows per multi-row INSERT: far below every backend's bound-parameter limit.
const ROWS_PER_INSERT: usize = 1_024;

/// One deployment's id and what the rules made of it.
pub struct PlannedDeployment<'a> {
    pub id: StoredId,
    pub plan: Plan<'a>,
}

/// What earlier runs left behind. A first run finds neither links nor rejects, and since
/// its batches never overlap, it can skip replacing links and looking for recorded rejects.
#[derive(Clone, Copy)]
pub struct Earlier {
    pub links: bool,
    pub rejects: bool,
}

impl Earlier {
    /// Assume anything may exist (a catch-up rewrites deployments done before).
    pub const ANYTHING: Earlier = Earlier {
        links: true,
        rejects: true,
    };

    pub async fn find<C: ConnectionTrait>(conn: &C) -> Result<Self, DbErr> {
        Ok(Earlier {
            links: table_rows::exist(conn, DeploymentJobAgent::Table).await?,
            rejects: table_rows::exist(conn, BackfillReject::Table).await?,
        })
    }
}

/// Replaces the links of these deployments and records their rejects not yet recorded.
/// The links are not written back to the legacy columns they come from (the sync guard).
pub async fn write_plans<C: ConnectionTrait>(
    conn: &C,
    planned: &[PlannedDeployment<'_>],
    agents: &AgentDirectory,
    earlier: Earlier,
) -> Result<(), DbErr> {
    let write = async || write_unguarded(conn, planned, agents, earlier).await;
    crate::sync_guard::guarded(conn, write).await
}

async fn write_unguarded<C: ConnectionTrait>(
    conn: &C,
    planned: &[PlannedDeployment<'_>],
    agents: &AgentDirectory,
    earlier: Earlier,
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    if earlier.links {
        let ids = planned.iter().map(|p| p.id.to_value());
        let delete = Query::delete()
            .from_table(DeploymentJobAgent::Table)
            .and_where(Expr::col(DeploymentJobAgent::DeploymentId).is_in(ids))
            .to_owned();
        conn.execute(&delete).await?;
    }

    let mut links: Vec<LinkRow> = vec![];
    for p in planned {
        for link in &p.plan.links {
            links.push((&p.id, agents.stored_id(&link.job_agent), &link.config));
        }
    }
    insert_links(conn, links).await?;

    let recorded = match earlier.rejects {
        true => RecordedRejects::load(conn, planned).await?,
        false => RecordedRejects::default(),
    };
    // Rows become bound values a statement at a time: a deployment with a huge `job_agents`
    // may have hundreds of thousands of reject rows.
    let rejects: Vec<(&PlannedDeployment, &PlannedReject)> = planned
        .iter()
        .flat_map(|p| p.plan.rejects.iter().map(move |reject| (p, reject)))
        .filter(|(p, reject)| !recorded.contains(&p.id, reject))
        .collect();
    let rows = rejects.iter().map(|(p, reject)| {
        vec![
            Expr::val(p.id.to_value()),
            Expr::val(reject.column.as_str()),
            Expr::val(reject.entry_index),
            json_value(backend, reject.entry.to_string()),
            Expr::val(reject.reason.as_str()),
        ]
    });
    let reject_columns = [
        BackfillReject::DeploymentId,
        BackfillReject::LegacyColumn,
        BackfillReject::EntryIndex,
        BackfillReject::Entry,
        BackfillReject::Reason,
    ];
    insert_rows(conn, BackfillReject::Table, reject_columns, rows).await
}

/// A link to insert: deployment and agent ids as stored, config as exact JSON text.
type LinkRow<'a> = (&'a StoredId, &'a StoredId, &'a str);

async fn insert_links<C: ConnectionTrait>(conn: &C, links: Vec<LinkRow<'_>>) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let rows = links.into_iter().map(|(deployment, agent, config)| {
        vec![
            Expr::val(deployment.to_value()),
            Expr::val(agent.to_value()),
            json_value(backend, config.to_owned()),
        ]
    });
    let columns = [
        DeploymentJobAgent::DeploymentId,
        DeploymentJobAgent::JobAgentId,
        DeploymentJobAgent::Config,
    ];
    insert_rows(conn, DeploymentJobAgent::Table, columns, rows).await
}

async fn insert_rows<C: ConnectionTrait, T: IntoIden, I: IntoIden + Copy>(
    conn: &C,
    table: T,
    columns: impl IntoIterator<Item = I> + Clone,
    mut rows: impl ExactSizeIterator<Item = Vec<Expr>>,
) -> Result<(), DbErr> {
    let table = table.into_iden();
    let mut left = rows.len();
    while left > 0 {
        let size = chunk_size(left);
        left -= size;
        let mut insert = Query::insert();
        insert.into_table(table.clone()).columns(columns.clone());
        for row in rows.by_ref().take(size) {
            insert.values_panic(row);
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// The next INSERT's row count: full chunks, then the remainder in powers of two. Only a
/// dozen statement shapes ever reach the server, so the driver's and the server's statement
/// caches stay small and warm whatever the batch sizes (one shape per row count otherwise).
fn chunk_size(left: usize) -> usize {
    match left >= ROWS_PER_INSERT {
        true => ROWS_PER_INSERT,
        false => 1 << left.ilog2(),
    }
}

/// The reject rows already recorded for a batch, so a rerun adds none twice.
#[derive(Default)]
struct RecordedRejects {
    /// (deployment, legacy column, entry index, reason) → entries, compared as JSON values.
    entries: HashMap<(StoredId, String, Option<i64>, String), HashSet<String>>,
}

impl RecordedRejects {
    async fn load<C: ConnectionTrait>(
        conn: &C,
        planned: &[PlannedDeployment<'_>],
    ) -> Result<Self, DbErr> {
        let mut entries: HashMap<_, HashSet<String>> = HashMap::new();
        let ids: Vec<Value> = (planned.iter())
            .filter(|p| !p.plan.rejects.is_empty())
            .map(|p| p.id.to_value())
            .collect();
        if ids.is_empty() {
            return Ok(Self { entries });
        }
        let backend = conn.get_database_backend();
        let mut query = Query::select();
        query
            .exprs(select_id(
                backend,
                BackfillReject::Table,
                BackfillReject::DeploymentId,
            ))
            .columns([
                BackfillReject::LegacyColumn,
                BackfillReject::EntryIndex,
                BackfillReject::Reason,
            ])
            .expr(select_json_text(
                backend,
                BackfillReject::Table,
                BackfillReject::Entry,
            ))
            .from(BackfillReject::Table)
            .and_where(Expr::col(BackfillReject::DeploymentId).is_in(ids));
        for row in conn.query_all(&query).await? {
            let mut index = 0;
            let id = read_id(backend, &row, &mut index)?.ok_or_else(null_id)?;
            let column: String = row.try_get_by_index(index)?;
            let entry_index: Option<i32> = row.try_get_by_index(index + 1)?;
            let reason: String = row.try_get_by_index(index + 2)?;
            let entry: String = row.try_get_by_index(index + 3)?;
            let key = (id, column, entry_index.map(i64::from), reason);
            entries
                .entry(key)
                .or_default()
                .insert(canonical_json(&entry));
        }
        Ok(Self { entries })
    }

    fn contains(&self, deployment: &StoredId, reject: &PlannedReject) -> bool {
        let key = (
            deployment.clone(),
            reject.column.as_str().to_owned(),
            reject.entry_index,
            reject.reason.as_str().to_owned(),
        );
        self.entries
            .get(&key)
            .is_some_and(|entries| entries.contains(&canonical_json(&reject.entry)))
    }
}

/// One spelling per JSON value (keys sorted, no spaces), so entries compare as documents
/// whatever formatting the database applied when it stored them.
fn canonical_json(text: &str) -> String {
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(object) => {
                let mut entries: Vec<_> = object.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries.into_iter().map(|(k, v)| (k, sorted(v))).collect()
            }
            serde_json::Value::Array(items) => items.into_iter().map(sorted).collect(),
            other => other,
        }
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => sorted(value).to_string(),
        Err(_) => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{ROWS_PER_INSERT, chunk_size};

    #[test]
    fn chunks_cover_every_row_in_few_shapes() {
        let mut shapes = std::collections::BTreeSet::new();
        for rows in 1..5_000 {
            let (mut left, mut covered) = (rows, 0);
            while left > 0 {
                let size = chunk_size(left);
                assert!(size >= 1 && size <= left && size <= ROWS_PER_INSERT);
                shapes.insert(size);
                covered += size;
                left -= size;
            }
            assert_eq!(covered, rows);
        }
        assert!(shapes.len() <= 11, "{shapes:?}");
    }
}
