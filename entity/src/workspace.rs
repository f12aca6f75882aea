//! A workspace: the tenant that owns deployments and job agents.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A row of `workspace`.
#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "workspace")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Display name.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// The workspace's own job agents.
    #[sea_orm(has_many)]
    pub job_agents: HasMany<super::job_agent::Entity>,
    /// The workspace's deployments.
    #[sea_orm(has_many)]
    pub deployments: HasMany<super::deployment::Entity>,
}

impl ActiveModelBehavior for ActiveModel {}
