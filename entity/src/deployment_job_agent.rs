//! A link: this job agent runs this deployment, with this configuration.
//!
//! Deleting the deployment or the agent deletes the link (`ON DELETE CASCADE`).
//!
//! SeaORM's macros make the rest of this module from [`Model`]: [`Entity`], [`Column`],
//! [`ActiveModel`], [`Relation`], and 2.0's [`ModelEx`] (a link with its deployment and
//! agent when loaded with them), [`ActiveModelEx`] and [`EntityLoader`].

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `deployment_job_agent`.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "deployment_job_agent")]
pub struct Model {
    /// The deployment (part of the primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub deployment_id: Uuid,
    /// The agent that runs it (part of the primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_agent_id: Uuid,
    /// The agent's configuration for this deployment: always a JSON object.
    #[sea_orm(column_type = "JsonBinary")]
    pub config: Json,
    /// The linked deployment.
    #[sea_orm(belongs_to, from = "deployment_id", to = "id", on_delete = "Cascade")]
    pub deployment: BelongsTo<super::deployment::Entity>,
    /// The linked job agent.
    #[sea_orm(belongs_to, from = "job_agent_id", to = "id", on_delete = "Cascade")]
    pub job_agent: BelongsTo<super::job_agent::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
