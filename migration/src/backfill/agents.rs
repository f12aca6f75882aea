//! The job agents the rules check references against, read once per step.

use std::collections::HashMap;

use sea_orm_migration::prelude::*;
use uuid::Uuid;

use super::rules::AgentFacts;
use crate::backends::{read_id, select_id};
use crate::ids::{StoredId, null_id};
use crate::tables::JobAgent;

/// Every job agent whose id is a UUID, by that UUID.
pub struct AgentDirectory {
    agents: HashMap<Uuid, (StoredId, AgentFacts)>,
}

impl AgentDirectory {
    /// Reads every job agent.
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

    /// What the rules need to know of agent `id`, if there is one.
    pub fn facts(&self, id: &Uuid) -> Option<&AgentFacts> {
        self.agents.get(id).map(|(_, facts)| facts)
    }

    /// The agent's id as stored, for the links that point at it.
    pub(super) fn stored_id(&self, id: &Uuid) -> &StoredId {
        &self.agents[id].0
    }
}
