//! What applications do with deployments and their job agents: read them ([`Query`]) and
//! change them ([`Mutation`]), with every rule checked and a typed [`ServiceError`] when one
//! does not hold.
//!
//! Every function is generic over SeaORM's connection traits, so a caller passes a
//! [`DatabaseConnection`](sea_orm::DatabaseConnection) or a transaction of its own. Mutations
//! that check rules run inside a transaction and write nothing when any check fails. The
//! crate chooses no async runtime and no driver: the application's `sea-orm` features do.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use entity::{job_agent, workspace};
//! use migration::{Migrator, MigratorTrait};
//! use sea_orm::prelude::Uuid;
//! use sea_orm::{ActiveModelTrait, Database, IntoActiveModel};
//! use service::{AgentAssignment, Mutation, NewDeployment, Query};
//!
//! let db = Database::connect("sqlite::memory:").await?;
//! Migrator::up(&db, None).await?;
//! let platform = workspace::Model { id: Uuid::new_v4(), name: "platform".into() };
//! platform.clone().into_active_model().insert(&db).await?;
//! let cluster = job_agent::Model {
//!     id: Uuid::new_v4(),
//!     workspace_id: Some(platform.id),
//!     name: "prod cluster".into(),
//! };
//! cluster.clone().into_active_model().insert(&db).await?;
//!
//! let api = NewDeployment {
//!     name: "api".into(),
//!     resource_selector: None,
//!     workspace_id: Some(platform.id),
//! };
//! let assignment = AgentAssignment {
//!     job_agent_id: cluster.id,
//!     config: serde_json::json!({"namespace": "api"}),
//! };
//! let created = Mutation::create_deployment(&db, api, vec![assignment]).await?;
//!
//! let page = Query::workspace_deployments(&db, platform.id, None, 50).await?;
//! assert_eq!(page.deployments, vec![created]);
//! assert_eq!(page.deployments[0].job_agents[0].config["namespace"], "api");
//!
//! // A config that is not a JSON object is refused, and nothing is written.
//! let elsewhere = job_agent::Model { id: Uuid::new_v4(), workspace_id: None, name: "x".into() };
//! let not_an_object = AgentAssignment { job_agent_id: elsewhere.id, config: serde_json::json!([]) };
//! let error = Mutation::replace_job_agents(&db, page.deployments[0].deployment.id, vec![not_an_object]).await;
//! assert!(matches!(error, Err(service::ServiceError::ConfigNotObject { .. })));
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod error;
mod input;
mod mutation;
mod query;
mod rules;

pub use error::ServiceError;
pub use input::{AgentAssignment, NewDeployment};
pub use mutation::Mutation;
pub use query::{
    DeploymentLink, DeploymentLinkPage, DeploymentPage, DeploymentWithAgents, JobAgentLink, Query,
};
