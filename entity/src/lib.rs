//! SeaORM entities for deployments and the job agents that run them.
//!
//! A [`deployment`] runs on any number of [`job_agent`]s, each with its own JSON `config`;
//! the link is a row of [`deployment_job_agent`]. Both belong to a [`workspace`]. The
//! entities match the schema that the `migration` crate produces, on PostgreSQL,
//! MariaDB/MySQL and SQLite. This crate pulls in no async runtime and no database driver:
//! the application chooses both.
//!
//! Every SeaORM 2 path reaches the link and its config: the entity loader, the
//! `find_with_related` / `find_related` queries and the data loader ([`sea_orm::LoaderTrait`]),
//! and nested active models. A deployment has both `deployment_job_agents` (the links, with
//! their configs) and `job_agents` (the agents, through the links); a job agent the same
//! the other way round.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use entity::{deployment, deployment_job_agent, job_agent};
//! use sea_orm::prelude::Uuid;
//! use sea_orm::{ActiveModelTrait, EntityLoaderTrait, EntityTrait, IntoActiveModel, ModelTrait};
//! use serde_json::json;
//!
//! let db = sea_orm::Database::connect("sqlite::memory:").await?;
//! # use migration::MigratorTrait;
//! # migration::Migrator::up(&db, None).await?; // the schema, as the migrations leave it
//! let cluster = job_agent::Model { id: Uuid::new_v4(), workspace_id: None, name: "prod".into() };
//! cluster.clone().into_active_model().insert(&db).await?;
//!
//! // A nested insert: the deployment, then its link with the link's config.
//! let api = Uuid::new_v4();
//! deployment::ActiveModel::builder()
//!     .set_id(api)
//!     .set_name("api")
//!     .add_deployment_job_agent(
//!         deployment_job_agent::ActiveModel::builder()
//!             .set_job_agent_id(cluster.id)
//!             .set_config(json!({"namespace": "api"})),
//!     )
//!     .insert(&db)
//!     .await?;
//!
//! // The loader: the deployment, its links with their configs, each link's agent
//! // (one statement per hop).
//! let loaded = deployment::Entity::load()
//!     .filter_by_id(api)
//!     .with((deployment_job_agent::Entity, job_agent::Entity))
//!     .one(&db)
//!     .await?
//!     .expect("just inserted");
//! for link in loaded.deployment_job_agents.iter() {
//!     let agent = link.job_agent.as_ref().expect("loaded with the link");
//!     println!("{} runs {} with {}", agent.name, loaded.name, link.config);
//!     assert_eq!(link.config["namespace"], "api");
//! }
//!
//! // The agents alone, through the join table.
//! let api = deployment::Entity::find_by_id(api).one(&db).await?.expect("there");
//! assert_eq!(api.find_related(job_agent::Entity).all(&db).await?, vec![cluster]);
//! # Ok(()) }
//! ```
//!
//! ## Where these entities differ from `sea-orm-cli generate entity`
//!
//! `sea-orm-cli generate entity --entity-format dense` (2.0.4) run on the migrated schema
//! gives these entities field for field on PostgreSQL and SQLite, except for what we chose:
//!
//! - `deployment` and `job_agent` also have the junction's `has_many`
//!   (`deployment_job_agents`). The generator gives only the `via` relation (`job_agents`,
//!   `deployments`), through which the loader and `find_with_related` reach the agents but
//!   never a link's `config`.
//! - `Serialize` / `Deserialize`, and a doc comment on every field.
//! - Foreign-key actions that are the database's default (`NO ACTION`) are left unsaid.
//!
//! On MariaDB the generator reads the ids' `BINARY(16)` as `Vec<u8>` and `config`'s `JSON`
//! (MariaDB's alias of `LONGTEXT`) as an ignored `String`; ours are
//! [`Uuid`](sea_orm::prelude::Uuid) and [`Json`](sea_orm::prelude::Json) there too, which
//! is what SeaORM writes to and reads from those columns, so one set of entities serves all
//! three backends.

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
