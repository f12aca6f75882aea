//! Migrations that move a deployment's job agents from JSON columns into the join table
//! `deployment_job_agent`.
//!
//! Run them with this crate's binary (`cargo run -p migration -- up`) or `sea-orm-cli
//! migrate`, or from code:
//!
//! ```no_run
//! use migration::{Migrator, MigratorTrait};
//! # async fn run(db: &sea_orm_migration::sea_orm::DatabaseConnection) -> Result<(), sea_orm_migration::DbErr> {
//! Migrator::up(db, None).await?;
//! # Ok(()) }
//! ```
//!
//! The backfill's rules live in [`backfill::rules`]; what it could not carry over whole is
//! recorded in `deployment_job_agent_backfill_reject`.

#![warn(missing_docs)]

pub use sea_orm_migration::prelude::*;

pub mod backfill;
mod dialect;
mod m20261125_000001_create_legacy_baseline;
mod m20261125_000002_create_deployment_job_agent;
mod m20261125_000003_backfill_deployment_job_agent;
mod m20261125_000004_drop_legacy_job_agent_columns;
mod restore;
mod sqlite_rebuild;
mod tables;

/// The migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_legacy_baseline::Migration),
            Box::new(m20261125_000002_create_deployment_job_agent::Migration),
            Box::new(m20261125_000003_backfill_deployment_job_agent::Migration),
            Box::new(m20261125_000004_drop_legacy_job_agent_columns::Migration),
        ]
    }
}
