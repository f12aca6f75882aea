//! The rules every mutation enforces, one function each.

use std::collections::{HashMap, HashSet};

use entity::{deployment, job_agent, workspace};
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, QuerySelect, SelectExt};

use crate::ServiceError;
use crate::input::AgentAssignment;

/// The deployment exists (one `SELECT 1`; the row itself is not needed).
pub async fn existing_deployment<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), ServiceError> {
    match deployment::Entity::find_by_id(id).exists(db).await? {
        true => Ok(()),
        false => Err(ServiceError::DeploymentNotFound(id)),
    }
}

/// The deployment exists, and no other mutation of it can proceed until this transaction
/// ends: `SELECT … FOR UPDATE` on PostgreSQL and MySQL. (SQLite needs no row lock: the
/// mutations' transactions take its write lock when they begin.)
pub async fn locked_deployment<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<deployment::Model, ServiceError> {
    let select = deployment::Entity::find_by_id(id).lock_exclusive();
    (select.one(db).await?).ok_or(ServiceError::DeploymentNotFound(id))
}

/// The workspace exists.
pub async fn existing_workspace<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), ServiceError> {
    match workspace::Entity::find_by_id(id).exists(db).await? {
        true => Ok(()),
        false => Err(ServiceError::WorkspaceNotFound(id)),
    }
}

/// The job agent exists.
pub async fn existing_job_agent<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), ServiceError> {
    match job_agent::Entity::find_by_id(id).exists(db).await? {
        true => Ok(()),
        false => Err(ServiceError::JobAgentNotFound(id)),
    }
}

/// Each agent exists and may serve a deployment of `workspace`; loaded in one statement.
pub async fn usable_agents<C: ConnectionTrait>(
    db: &C,
    workspace: Option<Uuid>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, job_agent::Model>, ServiceError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let found: HashMap<Uuid, job_agent::Model> = job_agent::Entity::find()
        .filter(job_agent::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|agent| (agent.id, agent))
        .collect();
    for id in ids {
        let agent = found.get(id).ok_or(ServiceError::JobAgentNotFound(*id))?;
        same_workspace(workspace, agent)?;
    }
    Ok(found)
}

/// When both have a workspace, it is the same one.
fn same_workspace(
    deployment_workspace: Option<Uuid>,
    agent: &job_agent::Model,
) -> Result<(), ServiceError> {
    match (deployment_workspace, agent.workspace_id) {
        (Some(deployment_workspace), Some(agent_workspace))
            if deployment_workspace != agent_workspace =>
        {
            Err(ServiceError::CrossWorkspace {
                job_agent_id: agent.id,
                agent_workspace,
                deployment_workspace,
            })
        }
        _ => Ok(()),
    }
}

/// A config is a JSON object.
pub fn config_is_object(assignment: &AgentAssignment) -> Result<(), ServiceError> {
    match assignment.config.is_object() {
        true => Ok(()),
        false => Err(ServiceError::ConfigNotObject {
            job_agent_id: assignment.job_agent_id,
        }),
    }
}

/// An agent appears at most once in a set.
pub fn agents_unique(assignments: &[AgentAssignment]) -> Result<(), ServiceError> {
    let mut seen = HashSet::new();
    for assignment in assignments {
        if !seen.insert(assignment.job_agent_id) {
            return Err(ServiceError::DuplicateAgent(assignment.job_agent_id));
        }
    }
    Ok(())
}
