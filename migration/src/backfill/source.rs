//! The backfill's source: `deployment` rows' legacy columns, as stored, a page or a set of
//! ids at a time, with bound values.

use std::pin::pin;

use futures_util::StreamExt;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, QueryResult, StreamTrait};

use super::rules::LegacyDeployment;
use crate::backends::{self, read_id, select_id, select_json_text};
use crate::ids::{StoredId, null_id};
use crate::tables::{Deployment, LegacyNames};

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
    /// Keep the rows locked against updates and deletes until the transaction ends (where
    /// the backend has row locks; SQLite's write transaction keeps other writers out).
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
    if page.locked && backends::of(backend).has_row_locks() {
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
    if locked && backends::of(backend).has_row_locks() {
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
