//! SeaORM entities for deployments and the job agents that run them.
//!
//! A [`deployment`] runs on any number of [`job_agent`]s, each with its own JSON `config`;
//! the link is a row of [`deployment_job_agent`]. Both belong to a [`workspace`]. The
//! entities match the schema that the `migration` crate produces, on PostgreSQL,
//! MariaDB/MySQL and SQLite. This crate pulls in no async runtime and no database driver:
//! the application chooses both.
//!
//! ```
//! use entity::{deployment, job_agent};
//! use sea_orm::{EntityTrait, ModelTrait, QueryTrait};
//!
//! // The agents of a deployment, through the join table.
//! let deployment = deployment::Model {
//!     id: sea_orm::prelude::Uuid::nil(),
//!     name: "api".into(),
//!     resource_selector: None,
//!     workspace_id: None,
//! };
//! let sql = deployment
//!     .find_related(job_agent::Entity)
//!     .build(sea_orm::DbBackend::Postgres)
//!     .to_string();
//! assert!(sql.contains(r#"INNER JOIN "deployment_job_agent""#));
//! ```

#![warn(missing_docs)]

pub mod deployment;
pub mod deployment_job_agent;
pub mod job_agent;
pub mod workspace;

pub mod prelude {
    //! The entities under short names: `Deployment`, `JobAgent`, …
    pub use super::deployment::Entity as Deployment;
    pub use super::deployment_job_agent::Entity as DeploymentJobAgent;
    pub use super::job_agent::Entity as JobAgent;
    pub use super::workspace::Entity as Workspace;
}
