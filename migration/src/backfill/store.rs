//! Reading legacy rows and writing links and rejects, in batches with bound values.

use std::collections::{HashMap, HashSet};

use sea_orm_migration::prelude::*;
use std::pin::pin;

use futures_util::StreamExt;
use sea_orm_migration::sea_orm::{DbBackend, QueryResult, StreamTrait};
use uuid::Uuid;

use super::ids::StoredId;
use super::rules::{AgentFacts, LegacyDeployment, Plan, PlannedReject};
use crate::backends::{json_value, read_id, select_id, select_json_text};
use crate::tables::{BackfillReject, Deployment, DeploymentJobAgent, JobAgent, LegacyNames};

/// Rows per multi-row INSERT: far below every backend's bound-parameter limit.
const ROWS_PER_INSERT: usize = 1_024;

/// Every job agent whose id is a UUID, by that UUID.
pub struct AgentDirectory {
    agents: HashMap<Uuid, (StoredId, AgentFacts)>,
}

impl AgentDirectory {
    pub async fn load<C: ConnectionTrait>(conn: &C) -> Result<Self, DbErr> {
        let backend = conn.get_database_backend();
        let mut query = Query::select();
        query
            .exprs(select_id(backend, JobAgent::Table, JobAgent::Id))
            .exprs(select_id(backend, JobAgent::Table, JobAgent::WorkspaceId))
            .from(JobAgent::Table);
        let mut agents = HashMap::new();
        for row in conn.query_all(&query).await? {
            let mut index = 0;
            let id = read_id(backend, &row, &mut index)?.ok_or_else(null_id)?;
            let workspace_id = read_id(backend, &row, &mut index)?.map(|w| w.key());
            if let Some(uuid) = id.key().uuid() {
                agents.insert(uuid, (id, AgentFacts { workspace_id }));
            }
        }
        Ok(Self { agents })
    }

    pub fn facts(&self, id: &Uuid) -> Option<&AgentFacts> {
        self.agents.get(id).map(|(_, facts)| facts)
    }

    fn stored_id(&self, id: &Uuid) -> &StoredId {
        &self.agents[id].0
    }
}

/// A `deployment` row's legacy columns, as stored.
pub struct LegacyRow {
    pub id: StoredId,
    workspace_id: Option<StoredId>,
    job_agent_id: Option<StoredId>,
    job_agent_config: Option<String>,
    job_agents: Option<String>,
}

impl LegacyRow {
    fn decode(backend: DbBackend, row: &QueryResult) -> Result<Self, DbErr> {
        let mut index = 0;
        let id = read_id(backend, row, &mut index)?.ok_or_else(null_id)?;
        let workspace_id = read_id(backend, row, &mut index)?;
        let job_agent_id = read_id(backend, row, &mut index)?;
        Ok(Self {
            id,
            workspace_id,
            job_agent_id,
            job_agent_config: row.try_get_by_index(index)?,
            job_agents: row.try_get_by_index(index + 1)?,
        })
    }

    /// The size of its legacy JSON text, which dominates a row's memory.
    fn text_bytes(&self) -> usize {
        let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
        text(&self.job_agents) + text(&self.job_agent_config)
    }

    pub fn as_legacy(&self) -> LegacyDeployment<'_> {
        LegacyDeployment {
            workspace_id: self.workspace_id.as_ref().map(StoredId::key),
            job_agent_id: self.job_agent_id.as_ref().map(StoredId::key),
            job_agent_config: self.job_agent_config.as_deref(),
            job_agents: self.job_agents.as_deref(),
        }
    }
}

/// A page of deployments in id order: the next `limit` after `after` (from the start when
/// `None`).
pub struct Page<'a> {
    pub after: Option<&'a StoredId>,
    pub limit: u64,
    /// Keep the rows locked against updates and deletes until the transaction ends
    /// (MariaDB/MySQL: a deployment deleted between the read and the insert of its links
    /// would fail the insert's foreign key). PostgreSQL checks the keys after the load
    /// instead; SQLite's write transaction keeps other writers out.
    pub locked: bool,
}

/// Reads a page of deployments' legacy columns. The page ends early, after at least one
/// row, once its legacy text reaches `byte_budget`: memory is bounded by bytes, not only rows,
/// whatever the size of a deployment's `job_agents` (rows are streamed, and those past the
/// budget are left for the next page).
pub async fn read_page<C: ConnectionTrait + StreamTrait>(
    conn: &C,
    page: Page<'_>,
    byte_budget: usize,
) -> Result<Vec<LegacyRow>, DbErr> {
    let backend = ConnectionTrait::get_database_backend(conn);
    let mut query = deployments_query(backend, LegacyNames::Live);
    query.limit(page.limit);
    if let Some(after) = page.after {
        query.and_where(Expr::col((Deployment::Table, Deployment::Id)).gt(after.to_value()));
    }
    if page.locked && backend == DbBackend::MySql {
        query.lock_shared();
    }
    let mut stream = pin!(conn.stream_raw(backend.build(&query)).await?);
    let (mut rows, mut bytes) = (vec![], 0);
    while let Some(row) = stream.next().await {
        let row = LegacyRow::decode(backend, &row?)?;
        bytes += row.text_bytes();
        rows.push(row);
        if bytes >= byte_budget {
            break;
        }
    }
    Ok(rows)
}

/// Reads exactly these deployments (those that still exist), their legacy columns under
/// `names`. `locked` keeps them locked against updates and deletes until the transaction
/// ends (PostgreSQL and MariaDB/MySQL; SQLite's write transaction keeps other writers out),
/// so a write racing with the read waits for it.
pub async fn read_ids<C: ConnectionTrait>(
    conn: &C,
    ids: &[StoredId],
    names: LegacyNames,
    locked: bool,
) -> Result<Vec<LegacyRow>, DbErr> {
    let backend = conn.get_database_backend();
    let mut query = deployments_query(backend, names);
    query.and_where(
        Expr::col((Deployment::Table, Deployment::Id)).is_in(ids.iter().map(StoredId::to_value)),
    );
    if locked && backend != DbBackend::Sqlite {
        query.lock_shared();
    }
    let rows = conn.query_all(&query).await?;
    rows.iter()
        .map(|row| LegacyRow::decode(backend, row))
        .collect()
}

/// Ids, workspace and the legacy columns (under `names`), as stored, in id order.
fn deployments_query(backend: DbBackend, names: LegacyNames) -> SelectStatement {
    let legacy = |column| names.of(column);
    let mut query = Query::select();
    query
        .exprs(select_id(backend, Deployment::Table, Deployment::Id))
        .exprs(select_id(
            backend,
            Deployment::Table,
            Deployment::WorkspaceId,
        ))
        .exprs(select_id(
            backend,
            Deployment::Table,
            legacy(Deployment::JobAgentId),
        ))
        .expr(select_json_text(
            backend,
            Deployment::Table,
            legacy(Deployment::JobAgentConfig),
        ))
        .expr(select_json_text(
            backend,
            Deployment::Table,
            legacy(Deployment::JobAgents),
        ))
        .from(Deployment::Table)
        .order_by((Deployment::Table, Deployment::Id), Order::Asc);
    query
}

/// One deployment's id and what the rules made of it.
pub struct PlannedDeployment<'a> {
    pub id: StoredId,
    pub plan: Plan<'a>,
}

/// How many rows `table` holds.
pub(crate) async fn count_rows<C: ConnectionTrait>(
    conn: &C,
    table: impl IntoIden,
) -> Result<u64, DbErr> {
    let query = Query::select()
        .expr(Expr::col(Asterisk).count())
        .from(table)
        .to_owned();
    let row = conn.query_one(&query).await?;
    let count: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
    Ok(<u64 as TryFrom<i64>>::try_from(count).unwrap_or(0))
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
            links: has_rows(conn, DeploymentJobAgent::Table).await?,
            rejects: has_rows(conn, BackfillReject::Table).await?,
        })
    }
}

/// Whether `table` holds any row.
pub(crate) async fn has_rows<C: ConnectionTrait>(
    conn: &C,
    table: impl IntoIden,
) -> Result<bool, DbErr> {
    let query = Query::select()
        .expr(Expr::val(1))
        .from(table)
        .limit(1)
        .to_owned();
    Ok(conn.query_one(&query).await?.is_some())
}

/// Replaces the links of these deployments and records their rejects not yet recorded.
pub async fn write_plans<C: ConnectionTrait>(
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

fn null_id() -> DbErr {
    DbErr::Migration("a row has a NULL primary key id".to_owned())
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
