//! A deployment: something to deploy, run by any number of job agents.
//!
//! SeaORM's macros make the rest of this module from [`Model`]: [`Entity`], [`Column`],
//! [`ActiveModel`] and [`Relation`] as in every SeaORM entity, and for 2.0's nested reads
//! and writes [`ModelEx`] (a row with the relations it was loaded with),
//! [`ActiveModelEx`] (a row with related rows to write in the same call) and
//! [`EntityLoader`]. `Entity::load().with((deployment_job_agent::Entity, job_agent::Entity))` loads deployments with
//! their links (each with its `config`) and each link's agent;
//! `.with(job_agent::Entity)` the agents alone. `ActiveModel::builder()` starts a nested write:
//! `.add_deployment_job_agent(…)` adds a link with its config, `.add_job_agent(…)` a link to
//! a new or existing row. The crate's front page shows both.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `deployment`.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "deployment")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Display name.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// Which resources the deployment targets, in the selector language of the platform.
    #[sea_orm(column_type = "Text", nullable)]
    pub resource_selector: Option<String>,
    /// The owning workspace, if any.
    pub workspace_id: Option<Uuid>,
    /// The owning workspace, when there is one.
    #[sea_orm(belongs_to, from = "workspace_id", to = "id")]
    pub workspace: BelongsTo<Option<super::workspace::Entity>>,
    /// The links to the agents that run this deployment, each with its config.
    #[sea_orm(has_many)]
    pub deployment_job_agents: HasMany<super::deployment_job_agent::Entity>,
    /// The agents that run this deployment, through `deployment_job_agent`.
    #[sea_orm(has_many, via = "deployment_job_agent")]
    pub job_agents: HasMany<super::job_agent::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
