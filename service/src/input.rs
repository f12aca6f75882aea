//! What callers hand the mutations: plain data, checked by `rules` before anything is written.

use sea_orm::prelude::*;
use serde::Deserialize;

/// A job agent to link to a deployment, with the link's config (a JSON object).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AgentAssignment {
    /// The agent to link.
    pub job_agent_id: Uuid,
    /// The link's config; must be a JSON object.
    pub config: Json,
}

/// A deployment to create; its id is generated.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct NewDeployment {
    /// Display name.
    pub name: String,
    /// Which resources it targets, if any.
    pub resource_selector: Option<String>,
    /// The owning workspace, if any; it must exist.
    pub workspace_id: Option<Uuid>,
}
