//! A job agent: something that runs a deployment's jobs (a Kubernetes cluster, a CI runner…).
//!
//! SeaORM's macros make the rest of this module from [`Model`]: [`Entity`], [`Column`],
//! [`ActiveModel`] and [`Relation`] as in every SeaORM entity, and for 2.0's nested reads
//! and writes [`ModelEx`] (a row with the relations it was loaded with),
//! [`ActiveModelEx`] (a row with related rows to write in the same call) and
//! [`EntityLoader`]. `Entity::load().with((deployment_job_agent::Entity, deployment::Entity))` loads agents with
//! their links (each with its `config`) and each link's deployment;
//! `.with(deployment::Entity)` the deployments alone. `ActiveModel::builder()` starts a nested write:
//! `.add_deployment_job_agent(…)` adds a link with its config, `.add_deployment(…)` a link to
//! a new or existing row. The crate's front page shows both.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `job_agent`.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "job_agent")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The owning workspace; `None` for an agent shared by every workspace.
    pub workspace_id: Option<Uuid>,
    /// Display name.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// The owning workspace, when there is one.
    #[sea_orm(belongs_to, from = "workspace_id", to = "id")]
    pub workspace: BelongsTo<Option<super::workspace::Entity>>,
    /// The links to the deployments this agent runs, each with its config.
    #[sea_orm(has_many)]
    pub deployment_job_agents: HasMany<super::deployment_job_agent::Entity>,
    /// The deployments this agent runs, through `deployment_job_agent`.
    #[sea_orm(has_many, via = "deployment_job_agent")]
    pub deployments: HasMany<super::deployment::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
