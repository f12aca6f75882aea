//! What applications do with deployments and their job agents: read them ([`Query`]) and
//! change them ([`Mutation`]), with every rule checked and a typed [`ServiceError`] when one
//! does not hold.
//!
//! Every function is generic over SeaORM's connection traits, so a caller passes a
//! [`DatabaseConnection`](sea_orm::DatabaseConnection) or a transaction of its own. Mutations
//! that check rules run inside a transaction and write nothing when any check fails. The
//! crate chooses no async runtime and no driver: the application's `sea-orm` features do.

mod error;
mod mutation;
mod query;
mod rules;

pub use error::ServiceError;
pub use mutation::{AgentAssignment, Mutation, NewDeployment};
pub use query::{DeploymentLink, DeploymentPage, DeploymentWithAgents, JobAgentLink, Query};
